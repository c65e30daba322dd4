//! Where the benchmark's processes run. Production never shares a core
//! between a database node and its clients, so the headline run pins them
//! apart: Cassandra on CPU 0, the load generator and the dedupd process on
//! the rest. The ratios then measure what dedupd adds, not CPU it takes
//! from the database. A second run leaves every process on every core, as
//! the benchmark used to, and is labelled so.

use serde::Serialize;

use crate::local_cluster;
use crate::process::{self, cpu_range};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Topology {
    /// The database's processes on `database_cpus`; this process (the load
    /// generator) and the dedupd it starts on `service_cpus`.
    Pinned {
        database_cpus: String,
        service_cpus: String,
    },
    /// Everything on every core.
    SharedCores,
}

impl Topology {
    /// The pinned split of this machine: CPU 0 for the database, the rest
    /// for the service side. None on one CPU.
    pub fn pinned() -> Option<Self> {
        let cpus = process::cpu_count(&process::online_cpus());
        (cpus >= 2).then(|| Topology::Pinned {
            database_cpus: "0".into(),
            service_cpus: cpu_range(1, cpus - 1),
        })
    }

    /// The label in the report's headings.
    pub fn label(&self) -> String {
        match self {
            Topology::Pinned {
                database_cpus,
                service_cpus,
            } => format!(
                "production-shaped: database on CPU {database_cpus}, load generator and dedupd on CPU {service_cpus}"
            ),
            Topology::SharedCores => {
                "shared cores: database, load generator and dedupd on every CPU".into()
            }
        }
    }

    /// Puts the local cluster's nodes and this process where the topology
    /// says. Processes this one starts afterwards inherit its CPUs.
    pub async fn apply(&self, local_cassandra: &Path) -> anyhow::Result<()> {
        let (database, service) = match self {
            Topology::Pinned {
                database_cpus,
                service_cpus,
            } => (database_cpus.clone(), service_cpus.clone()),
            Topology::SharedCores => (process::online_cpus(), process::online_cpus()),
        };
        for pid in local_cluster::pids(local_cassandra).await? {
            process::pin(pid, &database).await?;
        }
        process::pin(std::process::id(), &service).await
    }
}
