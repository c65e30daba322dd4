//! What every lightweight transaction shares: how its statement is set up,
//! and how its answer is decoded. One place, because a wrong setting here
//! (a driver retry, a speculative copy) breaks the guarantee for every
//! lifecycle at once.
//!
//! The two databases answer an LWT in different shapes:
//! - Cassandra sends `[applied]` alone when the write applied, and when it
//!   did not, `[applied]` plus the existing row: the whole row for an
//!   `INSERT … IF NOT EXISTS`, only the conditioned columns for an
//!   `UPDATE`/`DELETE … IF`;
//! - ScyllaDB always sends `[applied]` plus every column (null where the
//!   row has none), applied or not.
//!
//! Decoding by column name reads both.

use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
use std::sync::Arc;

use scylla::policies::retry::FallthroughRetryPolicy;

use super::StoreError;
use crate::domain::Cas;

/// The name of the first column of every LWT answer.
pub const APPLIED_COLUMN: &str = "[applied]";

/// Sets up a conditional statement.
pub fn conditional(
    mut statement: PreparedStatement,
    consistency: Consistency,
    serial_consistency: SerialConsistency,
) -> PreparedStatement {
    statement.set_consistency(consistency);
    statement.set_serial_consistency(Some(serial_consistency));
    // Never retried by the driver: a retried LWT can report "not applied"
    // for the row its own first attempt wrote. The lifecycles resolve every
    // failure themselves with a serial read.
    statement.set_retry_policy(Some(Arc::new(FallthroughRetryPolicy)));
    // Not idempotent, so never speculatively executed either.
    statement.set_is_idempotent(false);
    statement
}

/// Sets up a read at the serial consistency. It runs a Paxos round of its
/// own: it finishes (or, on Paxos v2, scrubs) any proposal left half-done,
/// so what it returns is decided and will not change under us.
pub fn serial_read(
    mut statement: PreparedStatement,
    serial_consistency: SerialConsistency,
) -> PreparedStatement {
    statement.set_consistency(match serial_consistency {
        SerialConsistency::Serial => Consistency::Serial,
        SerialConsistency::LocalSerial => Consistency::LocalSerial,
    });
    statement
}

/// Columns by name, as an answer sent them (null ones included).
pub type NamedColumns = Vec<(String, Option<CqlValue>)>;

/// A decoded LWT answer: applied, or not applied with the columns sent
/// back (`[applied]` left out).
pub type LwtAnswer = Cas<NamedColumns>;

/// Decodes the answer to a conditional statement.
pub fn decode(statement: &'static str, result: QueryResult) -> Result<LwtAnswer, StoreError> {
    let columns = first_row(statement, result)?
        .ok_or_else(|| StoreError::unexpected_response(statement, "no [applied] row".into()))?;
    decode_columns(columns).map_err(|message| StoreError::unexpected_response(statement, message))
}

/// The first row of an answer, its columns by name; `None` when it sent
/// no rows. Reads and LWT answers alike are decoded by name, because the
/// two databases send different columns (see above).
pub fn first_row(
    statement: &'static str,
    result: QueryResult,
) -> Result<Option<NamedColumns>, StoreError> {
    let rows = result
        .into_rows_result()
        .map_err(|error| StoreError::unexpected_response(statement, error.to_string()))?;
    let row = rows
        .maybe_first_row::<Row>()
        .map_err(|error| StoreError::unexpected_response(statement, error.to_string()))?;
    Ok(row.map(|row| {
        rows.column_specs()
            .iter()
            .map(|spec| spec.name().to_owned())
            .zip(row.columns)
            .collect()
    }))
}

/// The shape-independent part of `decode`.
fn decode_columns(mut columns: NamedColumns) -> Result<LwtAnswer, String> {
    let applied = match columns.first() {
        Some((name, Some(CqlValue::Boolean(applied)))) if name == APPLIED_COLUMN => *applied,
        _ => return Err("the first column is not [applied]".into()),
    };
    if applied {
        return Ok(LwtAnswer::Applied);
    }
    columns.remove(0);
    Ok(LwtAnswer::NotApplied(columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of column `name`, if sent and not null.
    fn column<'c>(columns: &'c NamedColumns, name: &str) -> Option<&'c CqlValue> {
        columns
            .iter()
            .find(|(column, _)| column == name)
            .and_then(|(_, value)| value.as_ref())
    }

    pub fn answer(applied: bool, rest: &[(&str, Option<CqlValue>)]) -> NamedColumns {
        let mut columns = vec![(APPLIED_COLUMN.to_owned(), Some(CqlValue::Boolean(applied)))];
        columns.extend(
            rest.iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone())),
        );
        columns
    }

    #[test]
    fn cassandra_applied_is_the_flag_alone() {
        assert_eq!(decode_columns(answer(true, &[])), Ok(LwtAnswer::Applied));
    }

    #[test]
    fn scylla_applied_carries_every_column_and_is_still_applied() {
        let columns = answer(
            true,
            &[
                ("owner", None),
                ("state", Some(CqlValue::Text("in_progress".into()))),
            ],
        );
        assert_eq!(decode_columns(columns), Ok(LwtAnswer::Applied));
    }

    #[test]
    fn a_refusal_returns_the_columns_sent_without_the_flag() {
        let owner = CqlValue::Uuid(uuid::Uuid::new_v4());
        let LwtAnswer::NotApplied(columns) = decode_columns(answer(
            false,
            &[("owner", Some(owner.clone())), ("state", None)],
        ))
        .unwrap() else {
            panic!("refused")
        };
        assert_eq!(column(&columns, "owner"), Some(&owner));
        assert_eq!(column(&columns, "state"), None);
        assert_eq!(column(&columns, APPLIED_COLUMN), None);
    }

    #[test]
    fn an_answer_without_the_flag_first_is_a_bad_response() {
        assert!(decode_columns(vec![("owner".into(), None)]).is_err());
        assert!(decode_columns(vec![(APPLIED_COLUMN.into(), Some(CqlValue::Int(1)))]).is_err());
        assert!(decode_columns(Vec::new()).is_err());
    }
}
