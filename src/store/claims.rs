//! The claim row's CQL: one prepared statement per transition.
//!
//! Every write to a claim row is a lightweight transaction. Mixing plain
//! writes into rows that LWTs manage breaks linearizability (their
//! timestamps come from different clocks), so there are none here.
//!
//! Long because each of the eight statements has its CQL, its bindings and
//! its decoding here, side by side, so a column can be checked in one read.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::errors::PrepareError;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{MaybeUnset, Row};

use super::lwt::{self, LwtAnswer};
use super::rows::{ClaimColumns, Conditional, refusal};
use super::{Store, StoreError};
use crate::domain::{
    CasOutcome, ClaimKey, ClaimRecord, ClaimToken, ClaimWrite, KeyspaceName, Namespace, RowView,
    StoredResult,
};

/// Statement names, as they appear in metrics, logs and fault plans.
pub mod statement {
    pub const INSERT: &str = "claim_insert";
    pub const REPLACE: &str = "claim_replace";
    pub const TAKEOVER: &str = "claim_takeover";
    pub const COMPLETE: &str = "claim_complete";
    pub const EXTEND: &str = "claim_extend";
    pub const RELEASE: &str = "claim_release";
    pub const READ_SERIAL: &str = "claim_read_serial";
    pub const READ: &str = "claim_read";
}

const COLUMNS: &str = "owner, state, fingerprint, claimant, window, claimed_at, expires_at, \
                       lease_expires_at, completed_at, result";

pub(super) struct ClaimStatements {
    insert: PreparedStatement,
    replace: PreparedStatement,
    takeover: PreparedStatement,
    complete: PreparedStatement,
    extend: PreparedStatement,
    release: PreparedStatement,
    read_serial: PreparedStatement,
    read: PreparedStatement,
}

impl ClaimStatements {
    pub(super) async fn prepare(
        session: &Session,
        keyspace: &KeyspaceName,
        consistency: Consistency,
        serial_consistency: SerialConsistency,
    ) -> Result<Self, PrepareError> {
        // Fully qualified: prepared statements must not depend on a
        // session-wide `USE`, which Cassandra warns is ambiguous.
        let table = format!("{keyspace}.claims");
        let lwt = |statement| lwt::conditional(statement, consistency, serial_consistency);
        let insert = session
            .prepare(format!(
                "INSERT INTO {table} (namespace, key, {COLUMNS}) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
            ))
            .await?;
        let replace = session
            .prepare(format!(
                "UPDATE {table} USING TTL ? SET owner = ?, state = ?, fingerprint = ?, \
                 claimant = ?, window = ?, claimed_at = ?, expires_at = ?, lease_expires_at = ?, \
                 completed_at = ?, result = ? WHERE namespace = ? AND key = ? IF owner = ?"
            ))
            .await?;
        let takeover = session
            .prepare(format!(
                "UPDATE {table} USING TTL ? SET owner = ?, state = ?, fingerprint = ?, \
                 claimant = ?, window = ?, claimed_at = ?, expires_at = ?, lease_expires_at = ?, \
                 completed_at = ?, result = ? WHERE namespace = ? AND key = ? \
                 IF owner = ? AND state = 'in_progress' AND lease_expires_at <= ?"
            ))
            .await?;
        let complete = session
            .prepare(format!(
                "UPDATE {table} USING TTL ? SET state = 'completed', completed_at = ?, \
                 result = ?, lease_expires_at = null WHERE namespace = ? AND key = ? \
                 IF owner = ? AND state = 'in_progress'"
            ))
            .await?;
        let extend = session
            .prepare(format!(
                "UPDATE {table} USING TTL ? SET lease_expires_at = ? \
                 WHERE namespace = ? AND key = ? IF owner = ? AND state = 'in_progress'"
            ))
            .await?;
        let release = session
            .prepare(format!(
                "DELETE FROM {table} WHERE namespace = ? AND key = ? \
                 IF owner = ? AND state = 'in_progress'"
            ))
            .await?;
        let select = format!("SELECT {COLUMNS} FROM {table} WHERE namespace = ? AND key = ?");
        let read_serial =
            lwt::serial_read(session.prepare(select.as_str()).await?, serial_consistency);
        let mut read = session.prepare(select.as_str()).await?;
        read.set_consistency(consistency);
        read.set_is_idempotent(true);
        Ok(Self {
            insert: lwt(insert),
            replace: lwt(replace),
            takeover: lwt(takeover),
            complete: lwt(complete),
            extend: lwt(extend),
            release: lwt(release),
            read_serial,
            read,
        })
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

impl Store {
    /// Runs one conditional write a claim lifecycle decided on.
    pub async fn write_claim(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        write: &ClaimWrite,
        now: DateTime<Utc>,
    ) -> Result<CasOutcome, StoreError> {
        match write {
            ClaimWrite::Insert { record, ttl_secs } => {
                self.insert_claim(namespace, key, record, *ttl_secs, now)
                    .await
            }
            ClaimWrite::Replace {
                record,
                ttl_secs,
                expected,
            } => {
                self.replace_claim(namespace, key, record, *ttl_secs, *expected)
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
                self.complete_claim(
                    namespace,
                    key,
                    *token,
                    *completed_at,
                    result.as_ref(),
                    *ttl_secs,
                )
                .await
            }
            ClaimWrite::Extend {
                token,
                lease_expires_at,
                ttl_secs,
            } => {
                self.extend_lease(namespace, key, *token, *lease_expires_at, *ttl_secs)
                    .await
            }
            ClaimWrite::Release { token } => self.release_claim(namespace, key, *token).await,
        }
    }

    /// Claims an empty slot: `INSERT … IF NOT EXISTS USING TTL`.
    async fn insert_claim(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        record: &ClaimRecord,
        ttl_secs: u64,
        now: DateTime<Utc>,
    ) -> Result<CasOutcome, StoreError> {
        // Absent values stay unset rather than null: a bound null would
        // write a tombstone for every empty column of every claim.
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
            ttl_value(ttl_secs),
        );
        let result = self
            .execute(statement::INSERT, &self.claims.insert, values, key.as_str())
            .await?;
        decode_cas(statement::INSERT, Conditional::Insert, result, now)
    }

    /// Overwrites every column of a claim row if it still holds
    /// `expected_token` (or no token, when `None`): the takeover of an
    /// expired lease, and the reuse of an expired row TTL has not removed yet.
    async fn replace_claim(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        record: &ClaimRecord,
        ttl_secs: u64,
        expected_token: Option<ClaimToken>,
    ) -> Result<CasOutcome, StoreError> {
        // Here absent values are bound as nulls on purpose: they must erase
        // whatever the previous owner left in those columns.
        let values = (
            ttl_value(ttl_secs),
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
            namespace.as_str(),
            key.as_str(),
            expected_token.map(|token| token.0),
        );
        let result = self
            .execute(
                statement::REPLACE,
                &self.claims.replace,
                values,
                key.as_str(),
            )
            .await?;
        decode_cas(statement::REPLACE, Conditional::Update, result, Utc::now())
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
        let values = (
            ttl_value(ttl_secs),
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
            namespace.as_str(),
            key.as_str(),
            expected_token.0,
            decided_at,
        );
        let result = self
            .execute(
                statement::TAKEOVER,
                &self.claims.takeover,
                values,
                key.as_str(),
            )
            .await?;
        decode_cas(statement::TAKEOVER, Conditional::Update, result, Utc::now())
    }

    /// Marks an in-progress claim completed, if `token` still owns it.
    async fn complete_claim(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        token: ClaimToken,
        completed_at: DateTime<Utc>,
        result: Option<&StoredResult>,
        ttl_secs: u64,
    ) -> Result<CasOutcome, StoreError> {
        let values = (
            ttl_value(ttl_secs),
            completed_at,
            result.map(StoredResult::as_str),
            namespace.as_str(),
            key.as_str(),
            token.0,
        );
        let result = self
            .execute(
                statement::COMPLETE,
                &self.claims.complete,
                values,
                key.as_str(),
            )
            .await?;
        decode_cas(statement::COMPLETE, Conditional::Update, result, Utc::now())
    }

    /// Moves the lease end of an in-progress claim, if `token` still owns it.
    async fn extend_lease(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        token: ClaimToken,
        lease_expires_at: DateTime<Utc>,
        ttl_secs: u64,
    ) -> Result<CasOutcome, StoreError> {
        let values = (
            ttl_value(ttl_secs),
            lease_expires_at,
            namespace.as_str(),
            key.as_str(),
            token.0,
        );
        let result = self
            .execute(statement::EXTEND, &self.claims.extend, values, key.as_str())
            .await?;
        decode_cas(statement::EXTEND, Conditional::Update, result, Utc::now())
    }

    /// Deletes an in-progress claim, if `token` still owns it.
    async fn release_claim(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        token: ClaimToken,
    ) -> Result<CasOutcome, StoreError> {
        let values = (namespace.as_str(), key.as_str(), token.0);
        let result = self
            .execute(
                statement::RELEASE,
                &self.claims.release,
                values,
                key.as_str(),
            )
            .await?;
        decode_cas(statement::RELEASE, Conditional::Update, result, Utc::now())
    }

    /// Reads a claim row and classifies it as of `now`.
    pub async fn read_claim(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        mode: ReadMode,
        now: DateTime<Utc>,
    ) -> Result<RowView, StoreError> {
        let (name, prepared) = match mode {
            ReadMode::Serial => (statement::READ_SERIAL, &self.claims.read_serial),
            ReadMode::Quorum => (statement::READ, &self.claims.read),
        };
        let result = self
            .execute(
                name,
                prepared,
                (namespace.as_str(), key.as_str()),
                key.as_str(),
            )
            .await?;
        let rows = result
            .into_rows_result()
            .map_err(|error| StoreError::unexpected_response(name, error.to_string()))?;
        let row = rows
            .maybe_first_row::<Row>()
            .map_err(|error| StoreError::unexpected_response(name, error.to_string()))?;
        Ok(match row {
            None => RowView::Absent,
            Some(row) => ClaimColumns::from_named(&lwt::named(&rows, row)).into_view(now),
        })
    }
}

/// Decodes a conditional write's answer into what the lifecycles read.
fn decode_cas(
    statement: &'static str,
    kind: Conditional,
    result: QueryResult,
    now: DateTime<Utc>,
) -> Result<CasOutcome, StoreError> {
    Ok(match lwt::decode(statement, result)? {
        LwtAnswer::Applied => CasOutcome::Applied,
        LwtAnswer::NotApplied(columns) => CasOutcome::NotApplied(refusal(kind, &columns, now)),
    })
}
