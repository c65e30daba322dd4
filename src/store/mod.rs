//! Everything that speaks CQL: the session, prepared statements, LWT
//! decoding, migrations and the fault seam tests use.

mod claims;
mod error;
pub mod faults;
pub mod lwt;
pub mod migrate;
mod prepare;
mod rows;
mod sequences;
mod session;
pub mod tls;

use std::sync::Arc;
use std::time::Instant;

use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;

pub use claims::{ReadMode, statement};
pub use error::{FailureKind, StoreError, classify, is_cas_timeout};
pub use sequences::statement as sequence_statement;
pub use session::{ConnectError, CqlSettings, connect_session};

use crate::domain::{Cas, KeyspaceName};
use crate::metrics::Metrics;
use claims::ClaimStatements;
use faults::{Fault, FaultPlan};
use lwt::NamedColumns;
use prepare::{NamedStatement, Preparer};
use sequences::SequenceStatements;

/// Every conditional statement, by its metric name.
pub const CONDITIONAL_STATEMENTS: &[&str] = &[
    statement::INSERT,
    statement::REPLACE,
    statement::TAKEOVER,
    statement::COMPLETE,
    statement::EXTEND,
    statement::RELEASE,
    statement::FORGET,
    sequence_statement::INSERT,
    sequence_statement::ADVANCE,
    sequence_statement::DELETE,
];

/// Every read, by its metric name.
pub const READ_STATEMENTS: &[&str] = &[
    statement::READ_SERIAL,
    statement::READ,
    sequence_statement::READ_SERIAL,
];

/// The claim store: one session and its prepared statements.
pub struct Store {
    session: Arc<Session>,
    claims: ClaimStatements,
    sequences: SequenceStatements,
    metrics: Metrics,
    faults: Arc<FaultPlan>,
}

impl Store {
    /// Prepares every statement on a connected session. Preparing fails when
    /// the schema is missing, which names the fix (`dedupd migrate`).
    pub async fn with_session(
        session: Arc<Session>,
        settings: &CqlSettings,
        keyspace: &KeyspaceName,
        metrics: Metrics,
        faults: Arc<FaultPlan>,
    ) -> Result<Self, ConnectError> {
        let prepare_error = |source| ConnectError::Prepare {
            keyspace: keyspace.to_string(),
            source,
        };
        let preparer = Preparer {
            session: &session,
            keyspace,
            consistency: settings.consistency,
            serial_consistency: settings.serial_consistency,
        };
        let claims = ClaimStatements::prepare(&preparer)
            .await
            .map_err(prepare_error)?;
        let sequences = SequenceStatements::prepare(&preparer)
            .await
            .map_err(prepare_error)?;
        let kinds = FailureKind::ALL.map(FailureKind::as_str);
        metrics.start_store_series(CONDITIONAL_STATEMENTS, READ_STATEMENTS, &kinds);
        Ok(Self {
            session,
            claims,
            sequences,
            metrics,
            faults,
        })
    }

    /// Runs one prepared statement, timing it and counting its failures.
    /// This is also where planned faults strike; `partition` (the key or
    /// stream) lets a plan aim at one partition.
    async fn execute(
        &self,
        statement: &NamedStatement,
        values: impl SerializeRow,
        partition: &str,
    ) -> Result<QueryResult, StoreError> {
        let name = statement.name;
        let fault = self.faults.next(name, partition);
        if fault == Some(Fault::TimeoutBeforeSend) {
            return Err(self.failed(name, faults::injected_error()));
        }
        let started = Instant::now();
        let result = self
            .session
            .execute_unpaged(&statement.prepared, values)
            .await;
        self.metrics.record_statement(name, started.elapsed());
        match result {
            Ok(_) if fault == Some(Fault::TimeoutAfterApply) => {
                Err(self.failed(name, faults::injected_error()))
            }
            Ok(result) => Ok(result),
            Err(source) => Err(self.failed(name, source)),
        }
    }

    /// Runs one conditional statement on `partition` and decodes its
    /// answer; `refused` reads what a refusal sent back (which depends on
    /// the statement and the database: see `lwt`).
    async fn execute_conditional<R>(
        &self,
        statement: &NamedStatement,
        values: impl SerializeRow,
        partition: &str,
        refused: impl FnOnce(&NamedColumns) -> R,
    ) -> Result<Cas<R>, StoreError> {
        let result = self.execute(statement, values, partition).await?;
        Ok(match lwt::decode(statement.name, result)? {
            Cas::Applied => Cas::Applied,
            Cas::NotApplied(columns) => Cas::NotApplied(refused(&columns)),
        })
    }

    fn failed(&self, name: &'static str, source: scylla::errors::ExecutionError) -> StoreError {
        let error = StoreError::new(name, source);
        self.metrics.record_store_error(name, error.kind.as_str());
        error
    }
}
