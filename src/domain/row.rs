//! What a claim's row holds, as the lifecycles see it, and the writes they
//! ask the store for. The store decodes rows into these and runs these;
//! nothing here knows CQL.

use super::{ClaimRecord, ClaimState, ClaimToken, StoredResult};
use chrono::{DateTime, Utc};

/// What a read (or a refused INSERT) found in a claim's partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowView {
    /// No row: the key was never claimed, was released, or fully expired.
    Absent,
    /// A claim inside its retention window.
    Live(ClaimRecord),
    /// A row past `expires_at`, or missing cells, that TTL has not removed
    /// yet. Cells written by different statements can expire a second apart
    /// (TTLs are whole seconds, clocks differ), so a row near its end may
    /// linger half-present. It counts as absent, but `INSERT … IF NOT
    /// EXISTS` still sees it, so it is replaced with `UPDATE … IF owner = ?`
    /// on the token it holds (possibly null).
    Remnant { token: Option<ClaimToken> },
}

impl RowView {
    pub fn token(&self) -> Option<ClaimToken> {
        match self {
            RowView::Absent => None,
            RowView::Live(record) => Some(record.token),
            RowView::Remnant { token } => *token,
        }
    }
}

/// What a refused conditional write on a claim row reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A refused `INSERT … IF NOT EXISTS`: the row that exists, whole.
    Exists(RowView),
    /// A refused `UPDATE`/`DELETE … IF owner = ? …`: the owner and state the
    /// Paxos round saw (Cassandra returns only the conditioned columns).
    Held {
        owner: Option<ClaimToken>,
        state: Option<ClaimState>,
    },
}

/// The answer to a conditional write: applied, or refused with what the
/// row showed (`R`: what the refusal of that kind of write reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas<R> {
    Applied,
    NotApplied(R),
}

/// The answer to a conditional write on a claim row.
pub type CasOutcome = Cas<Refusal>;

/// One conditional write on a claim row, as a lifecycle decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimWrite {
    /// `INSERT … IF NOT EXISTS USING TTL`: claim an empty slot.
    Insert { record: ClaimRecord, ttl_secs: u64 },
    /// Overwrite every column `IF owner = expected` (possibly null): a new
    /// window over a row past its end.
    Replace {
        record: ClaimRecord,
        ttl_secs: u64,
        expected: Option<ClaimToken>,
    },
    /// Take over `expected`'s in-progress claim, if its lease still ended by
    /// `decided_at` inside the Paxos round.
    TakeOver {
        record: ClaimRecord,
        ttl_secs: u64,
        expected: ClaimToken,
        decided_at: DateTime<Utc>,
    },
    /// Mark `token`'s in-progress claim completed.
    Complete {
        token: ClaimToken,
        completed_at: DateTime<Utc>,
        result: Option<StoredResult>,
        ttl_secs: u64,
    },
    /// Move the lease end of `token`'s in-progress claim.
    Extend {
        token: ClaimToken,
        lease_expires_at: DateTime<Utc>,
        ttl_secs: u64,
    },
    /// Delete `token`'s in-progress claim.
    Release { token: ClaimToken },
    /// Delete `token`'s claim whatever its state: an operator's `forget`.
    Forget { token: ClaimToken },
}

/// The window a token's record belongs to began with that token: a new
/// window. Any other window was inherited, by a takeover.
pub fn began_window(record: &ClaimRecord) -> bool {
    record.window == record.token.0
}
