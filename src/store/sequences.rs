//! The sequence watermark's CQL. As for claims, every write is an LWT.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::errors::PrepareError;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
use uuid::Uuid;

use super::lwt::{self, LwtAnswer, NamedColumns};
use super::{Store, StoreError};
use crate::domain::{
    KeyspaceName, Namespace, RECENT_SLOTS, SequenceCas, SequenceWrite, StreamName, StreamRow,
};

pub mod statement {
    pub const INSERT: &str = "sequence_insert";
    pub const ADVANCE: &str = "sequence_advance";
    pub const DELETE: &str = "sequence_delete";
    pub const READ_SERIAL: &str = "sequence_read_serial";
}

fn slot(seq: u64) -> i32 {
    (seq % RECENT_SLOTS) as i32
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
        let lwt = |statement| lwt::conditional(statement, consistency, serial_consistency);
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
        let read_serial = lwt::serial_read(
            session
                .prepare(format!(
                    "SELECT last, writer, recent, updated_at FROM {table} \
                     WHERE namespace = ? AND stream = ?"
                ))
                .await?,
            serial_consistency,
        );
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
    /// Runs one conditional write a sequence lifecycle decided on.
    pub async fn write_sequence(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        write: &SequenceWrite,
        now: DateTime<Utc>,
    ) -> Result<SequenceCas, StoreError> {
        match *write {
            SequenceWrite::Insert { last, writer } => {
                self.insert_sequence(namespace, stream, last, writer, now)
                    .await
            }
            SequenceWrite::Advance {
                expected,
                last,
                writer,
            } => {
                self.advance_sequence(namespace, stream, expected, last, writer, now)
                    .await
            }
            SequenceWrite::Delete => self.delete_sequence(namespace, stream).await,
        }
    }

    /// Creates a stream at `last`, if it does not exist.
    async fn insert_sequence(
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
    async fn advance_sequence(
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

    async fn delete_sequence(
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
    ) -> Result<Option<StreamRow>, StoreError> {
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
        Ok(row.and_then(|row| stream_row(&lwt::named(&rows, row))))
    }
}

/// A stream's row from its columns by name; `None` without `last` (a
/// stream that does not exist, or a refusal that sent nothing).
fn stream_row(columns: &NamedColumns) -> Option<StreamRow> {
    let mut last = None;
    let mut writer = None;
    let mut updated_at = None;
    let mut recent = Vec::new();
    for (name, value) in columns {
        match (name.as_str(), value) {
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
    Some(StreamRow {
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
    Ok(match lwt::decode(statement, result)? {
        LwtAnswer::Applied => SequenceCas::Applied,
        LwtAnswer::NotApplied(columns) => SequenceCas::NotApplied(stream_row(&columns)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_advance_reads_last_in_both_shapes() {
        let token = Uuid::new_v4();
        // Cassandra: the conditioned column alone.
        let cassandra: NamedColumns = vec![("last".into(), Some(CqlValue::BigInt(7)))];
        let row = stream_row(&cassandra).unwrap();
        assert_eq!((row.last, row.writer, row.recent.len()), (7, None, 0));
        // ScyllaDB: every column, the ring included.
        let ring = CqlValue::Map(vec![(
            CqlValue::Int(7),
            CqlValue::Tuple(vec![Some(CqlValue::BigInt(7)), Some(CqlValue::Uuid(token))]),
        )]);
        let scylla: NamedColumns = vec![
            ("last".into(), Some(CqlValue::BigInt(7))),
            ("writer".into(), Some(CqlValue::Uuid(token))),
            ("recent".into(), Some(ring)),
            ("updated_at".into(), None),
        ];
        let row = stream_row(&scylla).unwrap();
        assert_eq!(row.writer, Some(token));
        assert_eq!(row.recent, vec![(7, token)]);
        // A refused delete of a stream that is not there sends no `last`.
        assert_eq!(stream_row(&vec![("last".into(), None)]), None);
    }
}
