//! What the lab tools need of a CQL session before they start: one that
//! waits for a database still coming up, on a prepared lab keyspace, and
//! what their reports say of the machine and the database it reached.

use std::time::Duration;

use scylla::client::session::Session;
use serde::{Deserialize, Serialize};

use crate::bench::scenarios::BENCH_TABLES;
use crate::keyspace::KeyspaceArgs;
use crate::process;
use dedupd::store::migrate::Replication;
use dedupd::store::{CqlSettings, connect_session};

/// A session on `nodes` whose lab keyspace exists (guarded: never the
/// service's) and holds the benchmark's own tables, the schema agreed.
pub async fn lab_session(
    nodes: &[String],
    keyspace: &KeyspaceArgs,
    replication: &Replication,
) -> anyhow::Result<Session> {
    let session = wait_for_cql(&CqlSettings::local(nodes.to_vec())).await?;
    crate::keyspace::prepare(&session, keyspace, replication).await?;
    for table in BENCH_TABLES {
        session
            .query_unpaged(table.replace("{ks}", keyspace.name.as_str()), ())
            .await?;
    }
    session.await_schema_agreement().await?;
    Ok(session)
}

/// Where a run measured, as its report states it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    #[serde(default)]
    pub os: String,
    pub database_version: String,
    pub paxos_variant: String,
    pub nodes: Vec<String>,
    pub replication: String,
    /// How to read the figures, where the run has something to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Machine {
    /// This machine, and the database `session` reaches.
    pub async fn read(session: &Session, nodes: &[String], replication: &Replication) -> Self {
        Self {
            cores: process::cpu_count(&process::online_cpus()),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            database_version: query_text(session, "SELECT release_version FROM system.local").await,
            paxos_variant: query_text(
                session,
                "SELECT value FROM system_views.settings WHERE name = 'paxos_variant'",
            )
            .await,
            nodes: nodes.to_vec(),
            replication: format!("{replication:?}"),
            note: None,
        }
    }
}

/// A session, retried once a second for up to a minute: a cluster the
/// local-cluster script has just started takes a while to answer.
pub async fn wait_for_cql(settings: &CqlSettings) -> anyhow::Result<Session> {
    let mut last_error = None;
    for _ in 0..60 {
        match connect_session(settings).await {
            Ok(session) => return Ok(session),
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(anyhow::anyhow!(
        "the database did not answer: {last_error:?}"
    ))
}

/// The first text column of the first row `cql` returns, or "unknown".
pub async fn query_text(session: &Session, cql: &str) -> String {
    let Ok(result) = session.query_unpaged(cql, ()).await else {
        return "unknown".into();
    };
    result
        .into_rows_result()
        .ok()
        .and_then(|rows| rows.maybe_first_row::<(Option<String>,)>().ok().flatten())
        .and_then(|(value,)| value)
        .unwrap_or_else(|| "unknown".into())
}
