//! What a lab tool aims at: the cluster, the keyspace it writes there, and
//! the dedupd binary it runs. One set of flags for the bench, the soak and
//! the checker, so that none of them can be aimed differently by accident.

use std::path::PathBuf;

use clap::Args;

use crate::dedupd_process::DedupdBin;
use crate::keyspace::KeyspaceArgs;

#[derive(Debug, Clone, Args)]
pub struct Target {
    /// CQL contact points. Unset: the local cluster (the bench and the soak
    /// start its node if none runs; the checker's node faults need three).
    /// Never read from the service's DEDUPD_CQL_NODES.
    #[arg(long, env = "DEDUPD_LAB_CQL_NODES", value_delimiter = ',')]
    pub cql_nodes: Option<Vec<String>>,
    /// The local-cluster script: it starts, stops and restarts local nodes.
    #[arg(long, default_value = "deploy/local/cassandra")]
    pub local_cassandra: PathBuf,
    #[command(flatten)]
    pub keyspace: KeyspaceArgs,
    #[command(flatten)]
    pub dedupd: DedupdBin,
}
