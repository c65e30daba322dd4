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

/// A stream's stored watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    pub last: u64,
    pub writer: Option<Uuid>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The result of a conditional write on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
                "INSERT INTO {table} (namespace, stream, last, writer, updated_at) \
                 VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?;
        let advance = session
            .prepare(format!(
                "UPDATE {table} SET last = ?, writer = ?, updated_at = ? \
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
                "SELECT last, writer, updated_at FROM {table} WHERE namespace = ? AND stream = ?"
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
        let values = (
            namespace.as_str(),
            stream.as_str(),
            to_bigint(last),
            writer,
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
    for (spec, value) in rows.column_specs().iter().zip(row.columns.iter()) {
        match (spec.name(), value) {
            ("last", Some(CqlValue::BigInt(value))) => last = u64::try_from(*value).ok(),
            ("writer", Some(CqlValue::Uuid(value))) => writer = Some(*value),
            ("updated_at", Some(CqlValue::Timestamp(value))) => {
                updated_at = DateTime::from_timestamp_millis(value.0)
            }
            _ => {}
        }
    }
    Some(Watermark {
        last: last?,
        writer,
        updated_at,
    })
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
