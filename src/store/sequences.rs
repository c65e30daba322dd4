//! The sequence watermark's CQL. As for claims, every write is an LWT.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::errors::PrepareError;
use scylla::policies::retry::FallthroughRetryPolicy;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
use std::sync::Arc;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::domain::{KeyspaceName, Namespace, StreamName};

pub mod statement {
    pub const INSERT: &str = "sequence_insert";
    pub const ADVANCE: &str = "sequence_advance";
    pub const DELETE: &str = "sequence_delete";
    pub const READ_SERIAL: &str = "sequence_read_serial";
}

/// How many recent acceptances a stream's row remembers (see the CQL).
pub const RECENT_SLOTS: u64 = 64;

/// A stream's stored watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    pub last: u64,
    pub writer: Option<Uuid>,
    pub updated_at: Option<DateTime<Utc>>,
    /// (seq, token of the request that accepted it), one per ring slot.
    pub recent: Vec<(u64, Uuid)>,
}

/// Who accepted a number, as far as the ring remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptedBy {
    /// The request with this token.
    Token(Uuid),
    /// The ring has moved past the number: it cannot say.
    Forgotten,
    /// No acceptance of this number is recorded (and none could have been
    /// overwritten yet).
    Nobody,
}

impl Watermark {
    pub fn accepted_by(&self, seq: u64) -> AcceptedBy {
        if let Some((_, token)) = self.recent.iter().find(|(number, _)| *number == seq) {
            return AcceptedBy::Token(*token);
        }
        let slot = seq % RECENT_SLOTS;
        let overwritten = self
            .recent
            .iter()
            .any(|(number, _)| number % RECENT_SLOTS == slot && *number > seq);
        if overwritten {
            AcceptedBy::Forgotten
        } else {
            AcceptedBy::Nobody
        }
    }
}

fn slot(seq: u64) -> i32 {
    (seq % RECENT_SLOTS) as i32
}

/// The result of a conditional write on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceCas {
    Applied,
    /// The condition failed; the stream as the Paxos round saw it (`None`
    /// when the stream does not exist).
    NotApplied(Option<Watermark>),
}

pub(super) struct SequenceStatements {
    insert: PreparedStatement,
    advance: PreparedStatement,
    delete: PreparedStatement,
    read_serial: PreparedStatement,
}

impl SequenceStatements {
    pub(super) async fn prepare(
        session: &Session,
        keyspace: &KeyspaceName,
        consistency: Consistency,
        serial_consistency: SerialConsistency,
    ) -> Result<Self, PrepareError> {
        let table = format!("{keyspace}.sequences");
        let lwt = |mut statement: PreparedStatement| {
            statement.set_consistency(consistency);
            statement.set_serial_consistency(Some(serial_consistency));
            statement.set_retry_policy(Some(Arc::new(FallthroughRetryPolicy)));
            statement.set_is_idempotent(false);
            statement
        };
        let insert = session
            .prepare(format!(
                "INSERT INTO {table} (namespace, stream, last, writer, recent, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?;
        let advance = session
            .prepare(format!(
                "UPDATE {table} SET last = ?, writer = ?, recent[?] = ?, updated_at = ? \
                 WHERE namespace = ? AND stream = ? IF last = ?"
            ))
            .await?;
        let delete = session
            .prepare(format!(
                "DELETE FROM {table} WHERE namespace = ? AND stream = ? IF EXISTS"
            ))
            .await?;
        let mut read_serial = session
            .prepare(format!(
                "SELECT last, writer, recent, updated_at FROM {table} \
                 WHERE namespace = ? AND stream = ?"
            ))
            .await?;
        read_serial.set_consistency(match serial_consistency {
            SerialConsistency::Serial => Consistency::Serial,
            SerialConsistency::LocalSerial => Consistency::LocalSerial,
        });
        Ok(Self {
            insert: lwt(insert),
            advance: lwt(advance),
            delete: lwt(delete),
            read_serial,
        })
    }
}

/// Sequence numbers are stored as CQL bigint; the domain keeps them within
/// 1..=i64::MAX, so the conversion never truncates.
fn to_bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Store {
    /// Creates a stream at `last`, if it does not exist.
    pub async fn insert_sequence(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        last: u64,
        writer: Uuid,
        now: DateTime<Utc>,
    ) -> Result<SequenceCas, StoreError> {
        let recent = std::collections::HashMap::from([(slot(last), (to_bigint(last), writer))]);
        let values = (
            namespace.as_str(),
            stream.as_str(),
            to_bigint(last),
            writer,
            recent,
            now,
        );
        let result = self
            .execute(
                statement::INSERT,
                &self.sequences.insert,
                values,
                stream.as_str(),
            )
            .await?;
        decode_sequence_cas(statement::INSERT, result)
    }

    /// Moves a stream from `expected` to `last`.
    pub async fn advance_sequence(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        expected: u64,
        last: u64,
        writer: Uuid,
        now: DateTime<Utc>,
    ) -> Result<SequenceCas, StoreError> {
        let values = (
            to_bigint(last),
            writer,
            slot(last),
            (to_bigint(last), writer),
            now,
            namespace.as_str(),
            stream.as_str(),
            to_bigint(expected),
        );
        let result = self
            .execute(
                statement::ADVANCE,
                &self.sequences.advance,
                values,
                stream.as_str(),
            )
            .await?;
        decode_sequence_cas(statement::ADVANCE, result)
    }

    pub async fn delete_sequence(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
    ) -> Result<SequenceCas, StoreError> {
        let result = self
            .execute(
                statement::DELETE,
                &self.sequences.delete,
                (namespace.as_str(), stream.as_str()),
                stream.as_str(),
            )
            .await?;
        decode_sequence_cas(statement::DELETE, result)
    }

    pub async fn read_sequence(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
    ) -> Result<Option<Watermark>, StoreError> {
        let name = statement::READ_SERIAL;
        let result = self
            .execute(
                name,
                &self.sequences.read_serial,
                (namespace.as_str(), stream.as_str()),
                stream.as_str(),
            )
            .await?;
        let rows = result
            .into_rows_result()
            .map_err(|error| StoreError::unexpected_response(name, error.to_string()))?;
        let row = rows
            .maybe_first_row::<Row>()
            .map_err(|error| StoreError::unexpected_response(name, error.to_string()))?;
        Ok(row.and_then(|row| watermark(&rows, &row)))
    }
}

fn watermark(
    rows: &scylla::response::query_result::QueryRowsResult,
    row: &Row,
) -> Option<Watermark> {
    let mut last = None;
    let mut writer = None;
    let mut updated_at = None;
    let mut recent = Vec::new();
    for (spec, value) in rows.column_specs().iter().zip(row.columns.iter()) {
        match (spec.name(), value) {
            ("last", Some(CqlValue::BigInt(value))) => last = u64::try_from(*value).ok(),
            ("writer", Some(CqlValue::Uuid(value))) => writer = Some(*value),
            ("updated_at", Some(CqlValue::Timestamp(value))) => {
                updated_at = DateTime::from_timestamp_millis(value.0)
            }
            ("recent", Some(CqlValue::Map(entries))) => {
                recent = entries
                    .iter()
                    .filter_map(|(_, entry)| ring_entry(entry))
                    .collect();
            }
            _ => {}
        }
    }
    Some(Watermark {
        last: last?,
        writer,
        updated_at,
        recent,
    })
}

fn ring_entry(value: &CqlValue) -> Option<(u64, Uuid)> {
    let CqlValue::Tuple(fields) = value else {
        return None;
    };
    match fields.as_slice() {
        [Some(CqlValue::BigInt(seq)), Some(CqlValue::Uuid(token))] => {
            Some((u64::try_from(*seq).ok()?, *token))
        }
        _ => None,
    }
}

fn decode_sequence_cas(
    statement: &'static str,
    result: QueryResult,
) -> Result<SequenceCas, StoreError> {
    let rows = result
        .into_rows_result()
        .map_err(|error| StoreError::unexpected_response(statement, error.to_string()))?;
    let row = rows
        .maybe_first_row::<Row>()
        .map_err(|error| StoreError::unexpected_response(statement, error.to_string()))?
        .ok_or_else(|| StoreError::unexpected_response(statement, "no [applied] row".into()))?;
    match super::rows::applied_flag(&row) {
        Some(true) => Ok(SequenceCas::Applied),
        Some(false) => Ok(SequenceCas::NotApplied(watermark(&rows, &row))),
        None => Err(StoreError::unexpected_response(
            statement,
            "the first column is not [applied]".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watermark(recent: Vec<(u64, Uuid)>) -> Watermark {
        Watermark {
            last: 200,
            writer: None,
            updated_at: None,
            recent,
        }
    }

    #[test]
    fn the_ring_names_who_accepted_a_recent_number() {
        let ours = Uuid::new_v4();
        let theirs = Uuid::new_v4();
        let ring = watermark(vec![(130, ours), (131, theirs)]);
        assert_eq!(ring.accepted_by(130), AcceptedBy::Token(ours));
        assert_eq!(ring.accepted_by(131), AcceptedBy::Token(theirs));
        assert_eq!(ring.accepted_by(132), AcceptedBy::Nobody);
        // 194 = 130 + 64 took the slot of 130: 130 is forgotten.
        let overwritten = watermark(vec![(194, theirs)]);
        assert_eq!(overwritten.accepted_by(130), AcceptedBy::Forgotten);
    }
}
