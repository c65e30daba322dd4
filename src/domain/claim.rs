//! The claim itself: its state, its owner token, its retention window and
//! lease, and the result stored on completion.
//!
//! Its length is the claim record's invariants and their unit tests.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::ParseError;

/// Cassandra refuses TTLs above 20 years (`Attributes.MAX_TTL`).
pub const CASSANDRA_MAX_TTL_SECS: u64 = 20 * 365 * 24 * 60 * 60;

/// The largest `result` a completion may store. Every later duplicate
/// carries it, so it must stay small next to the 64 KiB request limit.
pub const MAX_RESULT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    InProgress,
    Completed,
}

impl ClaimState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimState::InProgress => "in_progress",
            ClaimState::Completed => "completed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "in_progress" => Some(ClaimState::InProgress),
            "completed" => Some(ClaimState::Completed),
            _ => None,
        }
    }
}

/// The owner token of one claim attempt. Every winning claim writes a fresh
/// one, and every later transition (complete, release, extend) is a
/// compare-and-set on it, so a token that lost its claim to a takeover can
/// never change the row again: it is fenced out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClaimToken(pub Uuid);

impl ClaimToken {
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| ParseError(format!("token {raw:?} is not a UUID")))
    }
}

impl std::fmt::Display for ClaimToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A completion result: any JSON value, kept as its compact text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResult(String);

impl StoredResult {
    pub fn from_json(value: &serde_json::Value) -> Result<Self, ParseError> {
        Self::from_json_within(value, MAX_RESULT_BYTES)
    }

    /// `from_json` with another limit than the claim API's: the proxy
    /// stores whole responses, under its own configured cap.
    pub fn from_json_within(value: &serde_json::Value, limit: usize) -> Result<Self, ParseError> {
        let text = value.to_string();
        if text.len() > limit {
            return Err(ParseError(format!(
                "result is {} bytes of JSON; the limit is {limit}",
                text.len()
            )));
        }
        Ok(Self(text))
    }

    /// Wraps text read back from the database, which only this service writes.
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_json(&self) -> serde_json::Value {
        // Only `from_json` produces what is stored, so this parse succeeds;
        // a hand-edited row degrades to a string rather than an error.
        serde_json::from_str(&self.0).unwrap_or_else(|_| serde_json::Value::String(self.0.clone()))
    }
}

/// A namespace's retention rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub default_ttl_secs: u64,
    pub max_ttl_secs: u64,
    pub default_lease_secs: u64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            default_ttl_secs: 24 * 60 * 60,
            max_ttl_secs: CASSANDRA_MAX_TTL_SECS,
            default_lease_secs: 30,
        }
    }
}

/// How long a claim is remembered and, unless it is completed at once, how
/// long its claimant has to complete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub ttl_secs: u64,
    /// `None` for a claim completed at once: there is nothing to lease.
    pub lease_secs: Option<u64>,
}

impl Retention {
    pub fn parse(
        policy: &RetentionPolicy,
        ttl_secs: Option<u64>,
        lease_secs: Option<u64>,
        complete: bool,
    ) -> Result<Self, ParseError> {
        let ttl_secs = ttl_secs.unwrap_or(policy.default_ttl_secs);
        if ttl_secs == 0 || ttl_secs > policy.max_ttl_secs {
            return Err(ParseError(format!(
                "ttl_secs must be between 1 and {} for this namespace, got {ttl_secs}",
                policy.max_ttl_secs
            )));
        }
        if complete {
            if lease_secs.is_some() {
                return Err(ParseError(
                    "lease_secs has no meaning with complete: true (nothing is left in progress)"
                        .into(),
                ));
            }
            return Ok(Self {
                ttl_secs,
                lease_secs: None,
            });
        }
        let lease_secs = match lease_secs {
            Some(lease) if lease == 0 || lease > ttl_secs => {
                return Err(ParseError(format!(
                    "lease_secs must be between 1 and ttl_secs ({ttl_secs}), got {lease}"
                )));
            }
            Some(lease) => lease,
            None => policy.default_lease_secs.min(ttl_secs),
        };
        Ok(Self {
            ttl_secs,
            lease_secs: Some(lease_secs),
        })
    }
}

/// The lease asked for by an extend call: 1 second up to the namespace's
/// maximum TTL. It is cut at the claim's expiry when applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRequest(pub u64);

impl LeaseRequest {
    pub fn parse(policy: &RetentionPolicy, lease_secs: u64) -> Result<Self, ParseError> {
        if lease_secs == 0 || lease_secs > policy.max_ttl_secs {
            return Err(ParseError(format!(
                "lease_secs must be between 1 and {}, got {lease_secs}",
                policy.max_ttl_secs
            )));
        }
        Ok(Self(lease_secs))
    }
}

/// One claim as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRecord {
    pub token: ClaimToken,
    pub state: ClaimState,
    pub fingerprint: Option<String>,
    pub claimant: Option<String>,
    /// The retention window's id: the token of the claim that opened it,
    /// kept by takeovers. Unlike `claimed_at`, two windows never share it.
    pub window: Uuid,
    /// When the current retention window began (the first claim).
    pub claimed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub result: Option<StoredResult>,
}

impl ClaimRecord {
    /// The record a winning claim writes into an empty (or expired) slot.
    pub fn new_window(
        token: ClaimToken,
        now: DateTime<Utc>,
        retention: Retention,
        complete: bool,
        fingerprint: Option<String>,
        claimant: Option<String>,
    ) -> Self {
        let expires_at = now + secs(retention.ttl_secs);
        let (state, lease_expires_at, completed_at) = if complete {
            (ClaimState::Completed, None, Some(now))
        } else {
            let lease = retention.lease_secs.unwrap_or(retention.ttl_secs);
            (ClaimState::InProgress, Some(now + secs(lease)), None)
        };
        Self {
            token,
            state,
            fingerprint,
            claimant,
            window: token.0,
            claimed_at: now,
            expires_at,
            lease_expires_at,
            completed_at,
            result: None,
        }
    }

    /// The record a takeover writes: `claim`, the new owner's record as
    /// `new_window` made it, moved into this row's retention window, which
    /// is counted from the first claim and does not restart. Its lease is
    /// cut at the window's end; a fingerprint it lacks is inherited.
    pub fn taken_over(&self, claim: ClaimRecord) -> Self {
        Self {
            fingerprint: claim.fingerprint.or_else(|| self.fingerprint.clone()),
            window: self.window,
            claimed_at: self.claimed_at,
            expires_at: self.expires_at,
            lease_expires_at: claim
                .lease_expires_at
                .map(|lease_end| lease_end.min(self.expires_at)),
            ..claim
        }
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }

    pub fn lease_expired(&self, now: DateTime<Utc>) -> bool {
        self.state == ClaimState::InProgress
            && self
                .lease_expires_at
                .is_some_and(|lease_end| lease_end <= now)
    }

    /// The TTL that makes a cell written now expire with the rest of the row.
    ///
    /// Every cell of a claim row is meant to die at `expires_at`. The INSERT
    /// that creates the row gives the row marker and its cells the full TTL;
    /// an UPDATE later writes only some cells, and they must not outlive (or
    /// die long before) the others, or the row would linger half-written. So
    /// updates use the time left, rounded up to whole seconds.
    pub fn remaining_ttl_secs(&self, now: DateTime<Utc>) -> Option<u64> {
        let remaining_ms = (self.expires_at - now).num_milliseconds();
        if remaining_ms <= 0 {
            return None;
        }
        Some((remaining_ms as u64).div_ceil(1000))
    }
}

pub fn secs(n: u64) -> Duration {
    Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000))
}

/// Now, at the millisecond precision Cassandra timestamps keep, so that what
/// is written compares equal to what is read back.
pub fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetentionPolicy {
        RetentionPolicy {
            default_ttl_secs: 3600,
            max_ttl_secs: 7200,
            default_lease_secs: 30,
        }
    }

    #[test]
    fn retention_defaults_follow_the_policy() {
        let retention = Retention::parse(&policy(), None, None, false).unwrap();
        assert_eq!(retention.ttl_secs, 3600);
        assert_eq!(retention.lease_secs, Some(30));
    }

    #[test]
    fn default_lease_is_cut_to_a_shorter_ttl() {
        let retention = Retention::parse(&policy(), Some(10), None, false).unwrap();
        assert_eq!(retention.lease_secs, Some(10));
    }

    #[test]
    fn retention_limits() {
        assert!(Retention::parse(&policy(), Some(0), None, false).is_err());
        assert!(Retention::parse(&policy(), Some(7201), None, false).is_err());
        assert!(Retention::parse(&policy(), Some(7200), None, false).is_ok());
        assert!(Retention::parse(&policy(), Some(10), Some(11), false).is_err());
        assert!(Retention::parse(&policy(), Some(10), Some(0), false).is_err());
        assert!(Retention::parse(&policy(), Some(10), Some(10), false).is_ok());
    }

    #[test]
    fn complete_claims_have_no_lease() {
        let retention = Retention::parse(&policy(), None, None, true).unwrap();
        assert_eq!(retention.lease_secs, None);
        assert!(Retention::parse(&policy(), None, Some(5), true).is_err());
    }

    #[test]
    fn takeover_keeps_the_window_and_cuts_the_lease_at_expiry() {
        let now = now_millis();
        let retention = Retention {
            ttl_secs: 60,
            lease_secs: Some(30),
        };
        let first = ClaimRecord::new_window(
            ClaimToken::generate(),
            now,
            retention,
            false,
            Some("fp".into()),
            None,
        );
        let later = now + secs(45);
        let second = first.taken_over(ClaimRecord::new_window(
            ClaimToken::generate(),
            later,
            retention,
            false,
            None,
            None,
        ));
        assert_eq!(second.claimed_at, first.claimed_at);
        assert_eq!(
            second.window, first.window,
            "a takeover stays in the window"
        );
        assert_eq!(second.expires_at, first.expires_at);
        assert_eq!(second.lease_expires_at, Some(first.expires_at));
        assert_eq!(second.fingerprint.as_deref(), Some("fp"));
        assert_ne!(second.token, first.token);
    }

    #[test]
    fn remaining_ttl_rounds_up_and_ends_at_expiry() {
        let now = now_millis();
        let record = ClaimRecord::new_window(
            ClaimToken::generate(),
            now,
            Retention {
                ttl_secs: 10,
                lease_secs: Some(5),
            },
            false,
            None,
            None,
        );
        assert_eq!(record.remaining_ttl_secs(now), Some(10));
        assert_eq!(
            record.remaining_ttl_secs(now + Duration::milliseconds(1)),
            Some(10)
        );
        assert_eq!(
            record.remaining_ttl_secs(now + Duration::milliseconds(9001)),
            Some(1)
        );
        assert_eq!(record.remaining_ttl_secs(now + secs(10)), None);
    }

    #[test]
    fn results_are_bounded() {
        let small = serde_json::json!({"ok": true});
        assert_eq!(StoredResult::from_json(&small).unwrap().to_json(), small);
        let big = serde_json::Value::String("x".repeat(MAX_RESULT_BYTES));
        assert!(StoredResult::from_json(&big).is_err());
    }
}
