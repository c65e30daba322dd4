//! What dedupd's integration tests share: the database they run against
//! (found or started once per run), `spawn_app` with its options, a CQL
//! session and a store of the tests' own for planting rows, and metric
//! sampling. A member of the workspace, never a dependency of the service.

pub mod app;
pub mod database;
pub mod metrics;

use std::sync::Arc;

use scylla::client::session::Session;

use dedupd::domain::KeyspaceName;
use dedupd::metrics::Metrics;
use dedupd::store::faults::FaultPlan;
use dedupd::store::{CqlSettings, Store, connect_session};

pub use app::*;
pub use database::{TEST_KEYSPACE, TestDatabase, database};
pub use metrics::{metric_sum, metric_value};

/// A CQL session of the test's own on the test database, for writing rows
/// the service would never write.
pub async fn test_session() -> Arc<Session> {
    let nodes = database().nodes.clone();
    let session = connect_session(&CqlSettings::local(nodes.clone()))
        .await
        .unwrap_or_else(|error| panic!("cannot reach the test database at {nodes:?}: {error}"));
    Arc::new(session)
}

/// A claim store of the test's own (its own session and metrics, no
/// faults), for driving one statement directly.
pub async fn test_store() -> Store {
    let settings = CqlSettings::local(database().nodes.clone());
    let keyspace = KeyspaceName::parse(TEST_KEYSPACE).expect("a valid keyspace name");
    Store::with_session(
        test_session().await,
        &settings,
        &keyspace,
        Metrics::new(),
        Arc::new(FaultPlan::default()),
    )
    .await
    .expect("the test keyspace is migrated")
}
