//! What a claim asks for.

use std::time::Duration;

use serde::Serialize;

/// The longest `wait` the server takes in one request.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);

/// The options of a claim; every one is optional.
///
/// ```
/// use std::time::Duration;
/// let options = dedupd_client::ClaimOptions::new()
///     .ttl(Duration::from_secs(3600))
///     .lease(Duration::from_secs(20))
///     .fingerprint("sha256:9f86d0")
///     .claimant("worker-7/delivery-3")
///     .wait(Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClaimOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) lease: Option<Duration>,
    pub(crate) fingerprint: Option<String>,
    pub(crate) claimant: Option<String>,
    pub(crate) wait: Duration,
    pub(crate) wait_budget: Duration,
    pub(crate) complete: bool,
}

impl ClaimOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// How long the key is remembered, from the first claim (sent in whole
    /// seconds, rounded up). Default: the namespace's (24 h).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long the winner has to complete before another claim may take
    /// over (whole seconds, rounded up). Default: the namespace's (30 s).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Your hash of the payload (≤ 128 bytes): a later claim of the key with
    /// another fingerprint is [`Error::FingerprintMismatch`](crate::Error).
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }

    /// Your claimant id (≤ 128 bytes). Claiming your own in-progress key
    /// again gives your token back: it is a recovery credential, keep it
    /// unguessable. When unset, each logical claim gets a random one.
    pub fn claimant(mut self, claimant: impl Into<String>) -> Self {
        self.claimant = Some(claimant.into());
        self
    }

    /// How long the server may hold a claim of a key another claimant has in
    /// progress, answering as soon as it completes, is released or loses its
    /// lease (sent as `wait_secs`, whole seconds rounded up, at most 30).
    /// Default 0: answer at once. Needs a dedupd that knows `wait_secs`
    /// (an older one refuses it with a 400).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(MAX_WAIT);
        self
    }

    /// [`Client::run_once`](crate::Client::run_once) only: how long in all
    /// to keep claiming a key in progress elsewhere (each claim waiting up to
    /// [`wait`](Self::wait)) before giving up with
    /// [`RunError::InProgress`](crate::RunError::InProgress). Default 0.
    pub fn wait_budget(mut self, budget: Duration) -> Self {
        self.wait_budget = budget;
        self
    }

    /// Claim and complete at once: a one-shot marker with no lease.
    /// [`Client::run_once`](crate::Client::run_once) ignores it.
    ///
    /// Beware: a retry of a one-shot claim whose answer was lost hears a
    /// completed duplicate (a claimant gets its token back only while the
    /// claim is in progress), so "acquired" and "duplicate" cannot be told
    /// apart after a lost answer. Claim without it, then complete, when the
    /// difference matters.
    pub fn complete(mut self, complete: bool) -> Self {
        self.complete = complete;
        self
    }

    pub(crate) fn body<'a>(&'a self, claimant: &'a str, wait: Duration) -> ClaimBody<'a> {
        ClaimBody {
            terms: self.terms(),
            fingerprint: self.fingerprint.as_deref(),
            claimant,
            wait_secs: (!wait.is_zero()).then(|| whole_secs(wait.min(MAX_WAIT))),
        }
    }

    /// What a single claim and a batch both send of these options.
    pub(crate) fn terms(&self) -> ClaimTerms {
        ClaimTerms {
            ttl_secs: self.ttl.map(whole_secs),
            lease_secs: self.lease.map(whole_secs),
            complete: self.complete.then_some(true),
        }
    }
}

/// Whole seconds, rounded up, at least 1.
pub(crate) fn whole_secs(duration: Duration) -> u64 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    secs.max(1)
}

/// The fields a claim body and a batch body share; absent when unset, so
/// the namespace's defaults apply.
#[derive(Serialize)]
pub(crate) struct ClaimTerms {
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    complete: Option<bool>,
}

#[derive(Serialize)]
pub(crate) struct ClaimBody<'a> {
    #[serde(flatten)]
    terms: ClaimTerms,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a str>,
    claimant: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    wait_secs: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_go_as_whole_seconds_rounded_up() {
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs(Duration::ZERO), 1);
        assert_eq!(whole_secs(Duration::from_millis(2500)), 3);
        assert_eq!(whole_secs(Duration::from_secs(30)), 30);
    }

    #[test]
    fn the_body_sends_only_what_is_set_and_always_a_claimant() {
        let options = ClaimOptions::new();
        let body = serde_json::to_value(options.body("me", Duration::ZERO)).unwrap();
        assert_eq!(body, serde_json::json!({"claimant": "me"}));
        let options = ClaimOptions::new()
            .lease(Duration::from_secs(2))
            .wait(Duration::from_secs(90));
        let body = serde_json::to_value(options.body("me", options.wait)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"claimant": "me", "lease_secs": 2, "wait_secs": 30})
        );
    }
}
