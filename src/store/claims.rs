//! The claim row's CQL: one prepared statement per transition.
//!
//! Every write to a claim row is a lightweight transaction. Mixing plain
//! writes into rows that LWTs manage breaks linearizability (their
//! timestamps come from different clocks), so there are none here.
//!
//! Long because each of the nine statements has its CQL, its bindings and
//! its decoding here, side by side, so a column can be checked in one read.

use chrono::{DateTime, Utc};
use scylla::value::MaybeUnset;

use super::lwt::{self, NamedColumns};
use super::prepare::prepared_statements;
use super::rows::{ClaimColumns, refused_insert, refused_update};
use super::{Store, StoreError};
use crate::domain::{
    CasOutcome, ClaimKey, ClaimRecord, ClaimToken, ClaimWrite, Namespace, RowView, StoredResult,
};

/// Statement names, as they appear in metrics, logs and fault plans.
pub mod statement {
    pub const INSERT: &str = "claim_insert";
    pub const REPLACE: &str = "claim_replace";
    pub const TAKEOVER: &str = "claim_takeover";
    pub const COMPLETE: &str = "claim_complete";
    pub const EXTEND: &str = "claim_extend";
    pub const RELEASE: &str = "claim_release";
    pub const FORGET: &str = "claim_forget";
    pub const READ_SERIAL: &str = "claim_read_serial";
    pub const READ: &str = "claim_read";
}

const COLUMNS: &str = "owner, state, fingerprint, claimant, window, claimed_at, expires_at, \
                       lease_expires_at, completed_at, result";

/// The `SET` of the statements that overwrite every column of a claim row
/// (replace, takeover), in the order `overwrite_values!` binds them.
const OVERWRITE_SET: &str = "owner = ?, state = ?, fingerprint = ?, claimant = ?, window = ?, \
                             claimed_at = ?, expires_at = ?, lease_expires_at = ?, \
                             completed_at = ?, result = ?";

prepared_statements! {
    /// Every statement on the claim rows. The two reads are one `SELECT` at
    /// two consistencies.
    pub(super) struct ClaimStatements on "claims" {
        insert: Conditional statement::INSERT =>
            "INSERT INTO {table} (namespace, key, {COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
        replace: Conditional statement::REPLACE =>
            "UPDATE {table} USING TTL ? SET {OVERWRITE_SET} WHERE namespace = ? AND key = ? \
             IF owner = ?",
        takeover: Conditional statement::TAKEOVER =>
            "UPDATE {table} USING TTL ? SET {OVERWRITE_SET} WHERE namespace = ? AND key = ? \
             IF owner = ? AND state = 'in_progress' AND lease_expires_at <= ?",
        complete: Conditional statement::COMPLETE =>
            "UPDATE {table} USING TTL ? SET state = 'completed', completed_at = ?, \
             result = ?, lease_expires_at = null WHERE namespace = ? AND key = ? \
             IF owner = ? AND state = 'in_progress'",
        extend: Conditional statement::EXTEND =>
            "UPDATE {table} USING TTL ? SET lease_expires_at = ? \
             WHERE namespace = ? AND key = ? IF owner = ? AND state = 'in_progress'",
        release: Conditional statement::RELEASE =>
            "DELETE FROM {table} WHERE namespace = ? AND key = ? \
             IF owner = ? AND state = 'in_progress'",
        // An operator's `forget`: the claim goes whatever its state, but
        // only if the owner the operator's read saw still holds it.
        forget: Conditional statement::FORGET =>
            "DELETE FROM {table} WHERE namespace = ? AND key = ? IF owner = ?",
        read_serial: SerialRead statement::READ_SERIAL =>
            "SELECT {COLUMNS} FROM {table} WHERE namespace = ? AND key = ?",
        read: Read statement::READ =>
            "SELECT {COLUMNS} FROM {table} WHERE namespace = ? AND key = ?",
    }
}

/// Which read to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Linearizable: a Paxos round. Decisive.
    Serial,
    /// A quorum read: sees every committed write, may miss an LWT in flight.
    /// Good as a hint that a conditional write then confirms.
    Quorum,
}

fn ttl_value(ttl_secs: u64) -> i32 {
    i32::try_from(ttl_secs).unwrap_or(i32::MAX)
}

fn unset_if_none<T>(value: Option<T>) -> MaybeUnset<T> {
    match value {
        Some(value) => MaybeUnset::Set(value),
        None => MaybeUnset::Unset,
    }
}

/// The values an overwrite (replace, takeover) binds: its TTL, every claim
/// column in `OVERWRITE_SET` order, the row's key, then the statement's own
/// `IF` values. Absent values are bound as nulls, on purpose: they must
/// erase whatever the previous owner left in those columns. A macro because
/// the driver binds one flat tuple, and the two statements' conditions
/// differ in length.
macro_rules! overwrite_values {
    ($ttl_secs:expr, $record:expr, $namespace:expr, $key:expr; $($condition:expr),+) => {{
        let record: &ClaimRecord = $record;
        (
            ttl_value($ttl_secs),
            record.token.0,
            record.state.as_str(),
            record.fingerprint.as_deref(),
            record.claimant.as_deref(),
            record.window,
            record.claimed_at,
            record.expires_at,
            record.lease_expires_at,
            record.completed_at,
            record.result.as_ref().map(StoredResult::as_str),
            $namespace.as_str(),
            $key.as_str(),
            $($condition,)+
        )
    }};
}

impl Store {
    /// Runs one conditional write a claim lifecycle decided on; `now`
    /// classifies the row a refused INSERT reports.
    pub async fn write_claim(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        write: &ClaimWrite,
        now: DateTime<Utc>,
    ) -> Result<CasOutcome, StoreError> {
        let claims = &self.claims;
        match write {
            ClaimWrite::Insert { record, ttl_secs } => {
                // Absent values stay unset rather than null: a bound null
                // would write a tombstone for every empty column of every
                // claim.
                let values = (
                    namespace.as_str(),
                    key.as_str(),
                    record.token.0,
                    record.state.as_str(),
                    unset_if_none(record.fingerprint.as_deref()),
                    unset_if_none(record.claimant.as_deref()),
                    record.window,
                    record.claimed_at,
                    record.expires_at,
                    unset_if_none(record.lease_expires_at),
                    unset_if_none(record.completed_at),
                    unset_if_none(record.result.as_ref().map(StoredResult::as_str)),
                    ttl_value(*ttl_secs),
                );
                let refused = |columns: &NamedColumns| refused_insert(columns, now);
                self.execute_conditional(&claims.insert, values, key.as_str(), refused)
                    .await
            }
            ClaimWrite::Replace {
                record,
                ttl_secs,
                expected,
            } => {
                let expected = expected.map(|token| token.0);
                let values = overwrite_values!(*ttl_secs, record, namespace, key; expected);
                self.execute_conditional(&claims.replace, values, key.as_str(), refused_update)
                    .await
            }
            ClaimWrite::TakeOver {
                record,
                ttl_secs,
                expected,
                decided_at,
            } => {
                self.take_over_claim(namespace, key, record, *ttl_secs, *expected, *decided_at)
                    .await
            }
            ClaimWrite::Complete {
                token,
                completed_at,
                result,
                ttl_secs,
            } => {
                let values = (
                    ttl_value(*ttl_secs),
                    *completed_at,
                    result.as_ref().map(StoredResult::as_str),
                    namespace.as_str(),
                    key.as_str(),
                    token.0,
                );
                self.execute_conditional(&claims.complete, values, key.as_str(), refused_update)
                    .await
            }
            ClaimWrite::Extend {
                token,
                lease_expires_at,
                ttl_secs,
            } => {
                let values = (
                    ttl_value(*ttl_secs),
                    *lease_expires_at,
                    namespace.as_str(),
                    key.as_str(),
                    token.0,
                );
                self.execute_conditional(&claims.extend, values, key.as_str(), refused_update)
                    .await
            }
            ClaimWrite::Release { token } => {
                let values = (namespace.as_str(), key.as_str(), token.0);
                self.execute_conditional(&claims.release, values, key.as_str(), refused_update)
                    .await
            }
            ClaimWrite::Forget { token } => {
                let values = (namespace.as_str(), key.as_str(), token.0);
                self.execute_conditional(&claims.forget, values, key.as_str(), refused_update)
                    .await
            }
        }
    }

    /// Takes over an in-progress claim whose lease had passed at
    /// `decided_at`, if inside the Paxos round it still holds
    /// `expected_token`, is still in progress and its lease still ended by
    /// then (its owner may have completed or extended it meanwhile).
    pub async fn take_over_claim(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        record: &ClaimRecord,
        ttl_secs: u64,
        expected_token: ClaimToken,
        decided_at: DateTime<Utc>,
    ) -> Result<CasOutcome, StoreError> {
        let values =
            overwrite_values!(ttl_secs, record, namespace, key; expected_token.0, decided_at);
        let takeover = &self.claims.takeover;
        self.execute_conditional(takeover, values, key.as_str(), refused_update)
            .await
    }

    /// Reads a claim row and classifies it as of `now`.
    pub async fn read_claim(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        mode: ReadMode,
        now: DateTime<Utc>,
    ) -> Result<RowView, StoreError> {
        let statement = match mode {
            ReadMode::Serial => &self.claims.read_serial,
            ReadMode::Quorum => &self.claims.read,
        };
        let values = (namespace.as_str(), key.as_str());
        let result = self.execute(statement, values, key.as_str()).await?;
        Ok(match lwt::first_row(statement.name, result)? {
            None => RowView::Absent,
            Some(columns) => ClaimColumns::from_named(&columns).into_view(now),
        })
    }
}
