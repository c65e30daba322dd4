//! Everything that speaks CQL: the session, prepared statements, LWT
//! decoding, migrations and the fault seam tests use.

mod claims;
mod error;
pub mod faults;
pub mod lwt;
pub mod migrate;
mod rows;
mod sequences;
mod session;
pub mod tls;

use std::sync::Arc;
use std::time::Instant;

use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;

pub use claims::{ReadMode, statement};
pub use error::{FailureKind, StoreError, classify, is_cas_timeout};
pub use sequences::statement as sequence_statement;
pub use session::{ConnectError, CqlSettings, connect_session};

use crate::domain::KeyspaceName;
use crate::metrics::Metrics;
use claims::ClaimStatements;
use faults::{Fault, FaultPlan};
use sequences::SequenceStatements;

/// Every conditional statement, by its metric name.
pub const CONDITIONAL_STATEMENTS: &[&str] = &[
    statement::INSERT,
    statement::REPLACE,
    statement::TAKEOVER,
    statement::COMPLETE,
    statement::EXTEND,
    statement::RELEASE,
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
        let (consistency, serial) = (settings.consistency, settings.serial_consistency);
        let claims = ClaimStatements::prepare(&session, keyspace, consistency, serial)
            .await
            .map_err(prepare_error)?;
        let sequences = SequenceStatements::prepare(&session, keyspace, consistency, serial)
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
        name: &'static str,
        prepared: &PreparedStatement,
        values: impl SerializeRow,
        partition: &str,
    ) -> Result<QueryResult, StoreError> {
        let fault = self.faults.next(name, partition);
        if fault == Some(Fault::TimeoutBeforeSend) {
            return Err(self.failed(name, faults::injected_error()));
        }
        let started = Instant::now();
        let result = self.session.execute_unpaged(prepared, values).await;
        self.metrics.record_statement(name, started.elapsed());
        match result {
            Ok(_) if fault == Some(Fault::TimeoutAfterApply) => {
                Err(self.failed(name, faults::injected_error()))
            }
            Ok(result) => Ok(result),
            Err(source) => Err(self.failed(name, source)),
        }
    }

    fn failed(&self, name: &'static str, source: scylla::errors::ExecutionError) -> StoreError {
        let error = StoreError::new(name, source);
        self.metrics.record_store_error(name, error.kind.as_str());
        error
    }
}
