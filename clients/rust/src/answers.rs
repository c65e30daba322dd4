//! What the server answers, as this crate hands it on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A claim's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    InProgress,
    Completed,
}

/// What a claim answered.
#[derive(Debug, Clone)]
pub enum ClaimAnswer {
    /// 201: you own the key; complete, release or extend it with the token.
    Acquired(Lease),
    /// 409: the key is another claimant's (in progress), or done (completed).
    Duplicate(Duplicate),
}

/// An acquired claim.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The owner token for complete, release and extend.
    pub token: String,
    /// The claimant the claim was made with (yours, or the random one this
    /// crate made): claiming again with it gives this token back while the
    /// claim is in progress.
    pub claimant: String,
    /// When the key is forgotten.
    pub expires_at: DateTime<Utc>,
    /// When another claim may take over (none for `complete: true`).
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// True when this claim took over one whose lease had passed.
    pub takeover: bool,
}

/// A duplicate: someone claimed the key before.
#[derive(Debug, Clone)]
pub struct Duplicate {
    pub state: State,
    /// What the winner stored when completing (`Some(Null)` if nothing);
    /// `None` while in progress.
    pub result: Option<serde_json::Value>,
    pub expires_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// In progress: when the holder's lease ends.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// In progress: the server's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// In progress, when the holder set a claimant: a non-secret label of it
    /// (`h:` and 16 hex digits), never the claimant itself.
    pub holder: Option<String>,
}

/// What complete and extend answered (200): the claim as it now is.
#[derive(Debug, Clone, Deserialize)]
pub struct Transition {
    pub state: Option<State>,
    pub expires_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub result: Option<serde_json::Value>,
}

/// A claim as `GET …/claims/{key}` shows it (never its token or claimant).
#[derive(Debug, Clone, Deserialize)]
pub struct ClaimView {
    pub state: State,
    pub claimed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub result: Option<serde_json::Value>,
    pub fingerprint: Option<String>,
    pub holder: Option<String>,
}

/// The 201 body.
#[derive(Deserialize)]
pub(crate) struct AcquiredBody {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub takeover: bool,
}

/// The 409 body of a claim.
#[derive(Deserialize)]
pub(crate) struct DuplicateBody {
    pub outcome: String,
    pub state: State,
    pub expires_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub holder: Option<String>,
    /// Absent and `null` differ: a completed claim with no stored result
    /// carries `"result": null`.
    #[serde(default, deserialize_with = "present")]
    pub result: Option<serde_json::Value>,
}

/// The 409 body of complete, release and extend.
#[derive(Deserialize)]
pub(crate) struct RefusalBody {
    pub outcome: String,
    pub detail: Option<String>,
}

/// A problem+json body.
#[derive(Deserialize, Default)]
pub(crate) struct ProblemBody {
    #[serde(rename = "type", default)]
    pub problem_type: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub detail: String,
}

pub(crate) fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// The `holder` label answers show for a claimant, so that a worker can
/// recognise its own claims: `h:` and the first 16 hex digits of
/// SHA-256(`"dedupd holder\0"` + the stored claimant). The stored claimant
/// is the claimant as sent when the server runs without auth, and
/// `<token name>/<claimant>` with auth on.
///
/// ```
/// let label = dedupd_client::holder_label("orders/worker-1");
/// assert!(label.starts_with("h:") && label.len() == 18);
/// ```
pub fn holder_label(stored_claimant: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"dedupd holder\0");
    hasher.update(stored_claimant.as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("h:{hex}")
}
