//! The sequence watermark's CQL. As for claims, every write is an LWT.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use scylla::value::CqlValue;
use uuid::Uuid;

use super::lwt::{self, NamedColumns};
use super::prepare::prepared_statements;
use super::{Store, StoreError};
use crate::domain::{Namespace, RECENT_SLOTS, SequenceCas, SequenceWrite, StreamName, StreamRow};

pub mod statement {
    pub const INSERT: &str = "sequence_insert";
    pub const ADVANCE: &str = "sequence_advance";
    pub const DELETE: &str = "sequence_delete";
    pub const READ_SERIAL: &str = "sequence_read_serial";
}

fn slot(seq: u64) -> i32 {
    (seq % RECENT_SLOTS) as i32
}

prepared_statements! {
    /// Every statement on the stream rows.
    pub(super) struct SequenceStatements on "sequences" {
        insert: Conditional statement::INSERT =>
            "INSERT INTO {table} (namespace, stream, last, writer, recent, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
        advance: Conditional statement::ADVANCE =>
            "UPDATE {table} SET last = ?, writer = ?, recent[?] = ?, updated_at = ? \
             WHERE namespace = ? AND stream = ? IF last = ?",
        delete: Conditional statement::DELETE =>
            "DELETE FROM {table} WHERE namespace = ? AND stream = ? IF EXISTS",
        read_serial: SerialRead statement::READ_SERIAL =>
            "SELECT last, writer, recent, updated_at FROM {table} \
             WHERE namespace = ? AND stream = ?",
    }
}

/// Sequence numbers are stored as CQL bigint; the domain keeps them within
/// 1..=i64::MAX, so the conversion never truncates.
fn to_bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Store {
    /// Runs one conditional write a sequence lifecycle decided on. A
    /// refusal reports the stream as it stands (or only its conditioned
    /// `last`).
    pub async fn write_sequence(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        write: &SequenceWrite,
        now: DateTime<Utc>,
    ) -> Result<SequenceCas, StoreError> {
        let (sequences, partition) = (&self.sequences, stream.as_str());
        match *write {
            SequenceWrite::Insert { last, writer } => {
                let recent = HashMap::from([(slot(last), (to_bigint(last), writer))]);
                let values = (
                    namespace.as_str(),
                    stream.as_str(),
                    to_bigint(last),
                    writer,
                    recent,
                    now,
                );
                self.execute_conditional(&sequences.insert, values, partition, stream_row)
                    .await
            }
            SequenceWrite::Advance {
                expected,
                last,
                writer,
            } => {
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
                self.execute_conditional(&sequences.advance, values, partition, stream_row)
                    .await
            }
            SequenceWrite::Delete => {
                let values = (namespace.as_str(), stream.as_str());
                self.execute_conditional(&sequences.delete, values, partition, stream_row)
                    .await
            }
        }
    }

    /// Reads a stream's row linearizably.
    pub async fn read_sequence(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
    ) -> Result<Option<StreamRow>, StoreError> {
        let statement = &self.sequences.read_serial;
        let values = (namespace.as_str(), stream.as_str());
        let result = self.execute(statement, values, stream.as_str()).await?;
        Ok(lwt::first_row(statement.name, result)?.and_then(|columns| stream_row(&columns)))
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
