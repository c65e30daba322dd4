//! What the claim lifecycles' unit tests share: one key, one retention, and
//! records and machines built from them.

use std::fmt::Debug;

use chrono::{DateTime, Utc};

use super::{ClaimRequest, Claims};
use crate::domain::{ClaimKey, ClaimRecord, ClaimToken, Namespace, Retention, RowView};
use crate::lifecycle::{Action, Machine, Next, Observation, Subject};

/// The key every test claims, as a 503 would name it.
pub const SUBJECT: Subject<'static> = Subject {
    name: "k",
    namespace: "ns",
};

/// A minute's window with a ten-second lease.
pub const RETENTION: Retention = Retention {
    ttl_secs: 60,
    lease_secs: Some(10),
};

/// A claim of `SUBJECT`'s key under `RETENTION`, with no options.
pub fn request() -> ClaimRequest {
    ClaimRequest {
        namespace: Namespace::parse(SUBJECT.namespace).unwrap(),
        key: ClaimKey::parse(SUBJECT.name).unwrap(),
        retention: RETENTION,
        complete: false,
        fingerprint: None,
        claimant: None,
    }
}

/// The in-progress claim `token` opened at `now` under `RETENTION`.
pub fn in_progress(token: ClaimToken, now: DateTime<Utc>) -> ClaimRecord {
    ClaimRecord::new_window(token, now, RETENTION, false, None, None)
}

/// Starts `machine`, which reads the row at quorum first, and tells it the
/// read found `view`: what it asks for next.
pub fn after_quorum_read<M>(machine: &mut M, view: RowView, now: DateTime<Utc>) -> Next<M>
where
    M: Machine<Table = Claims>,
    M::Answer: PartialEq + Debug,
{
    assert_eq!(machine.start(now), Action::ReadQuorum);
    machine.observe(Observation::QuorumRead(Some(view)), now)
}
