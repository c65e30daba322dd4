//! `dedupd-lab scale`: how cost grows as work grows.
//!
//! - `concurrency`: closed loop at 1 to 256 clients, the raw claim LWT and
//!   an HTTP claim, each a new key: throughput and latency per point;
//! - `open-loop`: offered rates rising until the knee (p99 past a bound or
//!   less than 90 % served);
//! - `cache-rss`: a `dedupd serve`'s RSS against the completed claims its
//!   cache holds, up to the configured capacity and beyond;
//! - `storage`: disk, rows and tombstones of the claims table and the Paxos
//!   state over a run of short-TTL claims, then after TTL, gc_grace and a
//!   compaction;
//! - `charts`: the SVGs again from the JSON already in `--out`.
//!
//! Each sweep writes its JSON (every point) into `--out`, named after the
//! sweep and the cluster's size, and redraws every chart from every JSON
//! there, so that one-node and three-node runs share their charts.
//! The load generator and the operations are the bench's.

mod cache_rss;
mod charts;
pub mod points;
mod storage;
pub mod svg;
mod throughput;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Subcommand};
use scylla::client::session::Session;
use serde::{Deserialize, Serialize};

use crate::cql::{Machine, lab_session};
use crate::local_cluster;
use crate::target::Target;
use dedupd::store::migrate::Replication;

#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    #[command(subcommand)]
    pub sweep: Sweep,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Sweep {
    /// Throughput and latency against closed-loop clients (1 to 256).
    Concurrency(ConcurrencyArgs),
    /// Latency against offered load, rising until the knee.
    OpenLoop(OpenLoopArgs),
    /// dedupd's RSS against the completed claims it has cached.
    CacheRss(CacheRssArgs),
    /// Disk, rows and tombstones over a run of short-TTL claims.
    Storage(storage::StorageArgs),
    /// Redraw the SVGs from the JSON in `--out`.
    Charts(OutArgs),
}

/// Where the results go.
#[derive(Debug, Clone, Args)]
pub struct OutArgs {
    /// The directory for the JSON and the SVGs.
    #[arg(long, default_value = "docs/scale")]
    pub out: PathBuf,
}

/// What every sweep that runs against a cluster takes: the target, the
/// replication, the output (each sweep sets its keyspace's default).
#[derive(Debug, Clone, Args)]
pub struct Setup {
    #[command(flatten)]
    pub target: Target,
    /// Replication of the lab keyspace: `1`, `3`, or `dc1:3`.
    #[arg(long, default_value = "1")]
    pub replication: Replication,
    #[command(flatten)]
    pub out: OutArgs,
}

/// What the load sweeps share: the setup and the time per point.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("keyspace", |keyspace| keyspace.default_value("dedupd_scale")))]
pub struct Common {
    #[command(flatten)]
    pub setup: Setup,
    /// Seconds each point runs (keep it short on a shared machine).
    #[arg(long, default_value_t = 3.0)]
    pub secs_per_point: f64,
}

#[derive(Debug, Clone, Args)]
pub struct ConcurrencyArgs {
    #[command(flatten)]
    pub common: Common,
    /// The largest client count; the sweep doubles from 1 up to it.
    #[arg(long, default_value_t = 256)]
    pub max_clients: usize,
}

#[derive(Debug, Clone, Args)]
pub struct OpenLoopArgs {
    #[command(flatten)]
    pub common: Common,
    /// The first offered rate (requests per second).
    #[arg(long, default_value_t = 50.0)]
    pub start_rate: f64,
    /// Each next rate is this many times the last.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// Never offer more than this.
    #[arg(long, default_value_t = 20_000.0)]
    pub max_rate: f64,
    /// The knee: p99 above this (ms), or less than 90 % served, at two
    /// rates in a row (the sweep stops there).
    #[arg(long, default_value_t = 100.0)]
    pub p99_bound_ms: f64,
}

#[derive(Debug, Clone, Args)]
pub struct CacheRssArgs {
    #[command(flatten)]
    pub common: Common,
    /// The completed-claims cache of the measured dedupd (MiB).
    #[arg(long, default_value_t = 8)]
    pub cache_mib: u64,
    /// Completed claims added per step.
    #[arg(long, default_value_t = 10_000)]
    pub step_claims: usize,
    /// Steps (the last ones go past the cache's capacity).
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// Skip the same run with the cache off (the baseline).
    #[arg(long)]
    pub no_baseline: bool,
}

/// A sweep's JSON: which sweep, where it ran, its own figures (at the top
/// level beside these), and how long it took.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report<T> {
    pub sweep: String,
    pub machine: Machine,
    #[serde(flatten)]
    pub figures: T,
    pub duration_secs: f64,
}

/// A connected session on a prepared lab keyspace.
pub struct Prepared {
    pub session: Arc<Session>,
    pub nodes: Vec<String>,
    pub machine: Machine,
    pub run_id: String,
    /// When the sweep began (before connecting).
    pub started: Instant,
}

impl Prepared {
    /// `<sweep>-<size>`: the name of a sweep's JSON when each cluster size
    /// keeps its own.
    pub fn sized(&self, sweep: &str) -> String {
        format!("{sweep}-{}", size_label(self.nodes.len()))
    }

    /// Writes `figures` as the report of `sweep` to `<out>/<name>.json`
    /// and redraws every chart.
    pub fn write_report<T: Serialize>(
        &self,
        out: &Path,
        sweep: &str,
        name: &str,
        figures: T,
    ) -> anyhow::Result<()> {
        let report = Report {
            sweep: sweep.to_owned(),
            machine: self.machine.clone(),
            figures,
            duration_secs: round(self.started.elapsed().as_secs_f64(), 1),
        };
        write_json(out, name, &report)
    }
}

/// The label of a cluster's size in file names and legends.
pub fn size_label(nodes: usize) -> String {
    if nodes == 1 {
        "1node".into()
    } else {
        format!("{nodes}node")
    }
}

/// Connects, passes the keyspace guard, applies the migrations and the
/// bench tables (the raw driver prepares statements on them).
pub async fn prepare(setup: &Setup) -> anyhow::Result<Prepared> {
    let started = Instant::now();
    let Setup {
        target,
        replication,
        ..
    } = setup;
    let nodes = match &target.cql_nodes {
        Some(nodes) => nodes.clone(),
        None => local_cluster::up(&target.local_cassandra).await?,
    };
    let session = Arc::new(lab_session(&nodes, &target.keyspace, replication).await?);
    let machine = Machine {
        note: Some(
            "a shared 2-core machine (database nodes, dedupd and the load generator \
             on the same cores, beside other work): read the shapes, not the values"
                .into(),
        ),
        ..Machine::read(&session, &nodes, replication).await
    };
    Ok(Prepared {
        session,
        nodes,
        machine,
        run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        started,
    })
}

/// Writes `report` as `<out>/<name>.json` and redraws every chart.
fn write_json(out: &Path, name: &str, report: &impl Serialize) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let path = out.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(report)? + "\n")?;
    eprintln!("wrote {}", path.display());
    charts::render_all(out)
}

/// Rounds to `digits` decimals, for readable JSON.
pub fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

pub async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    match args.sweep {
        Sweep::Concurrency(args) => throughput::concurrency(args).await,
        Sweep::OpenLoop(args) => throughput::open(args).await,
        Sweep::CacheRss(args) => cache_rss::run(args).await,
        Sweep::Storage(args) => storage::run(args).await,
        Sweep::Charts(args) => charts::render_all(&args.out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        sweep: Sweep,
    }

    #[test]
    fn a_report_keeps_its_figures_beside_its_header() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Figures {
            step_claims: usize,
        }
        let report = Report {
            sweep: "cache-rss".into(),
            machine: Machine {
                cores: 2,
                os: "linux x86_64".into(),
                database_version: "5.0".into(),
                paxos_variant: "v2".into(),
                nodes: vec!["127.0.0.1:9042".into()],
                replication: "1".into(),
                note: None,
            },
            figures: Figures { step_claims: 3 },
            duration_secs: 1.5,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["sweep"], "cache-rss");
        assert_eq!(json["step_claims"], 3);
        assert_eq!(json["duration_secs"], 1.5);
        let read: Report<Figures> = serde_json::from_value(json).unwrap();
        assert_eq!(read.figures, Figures { step_claims: 3 });
    }

    #[test]
    fn the_committed_sweeps_still_read_with_the_shared_machine_header() {
        // Written before the header was shared with the bench: no `os`.
        let json: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/scale/cache-rss.json")).unwrap();
        let machine: Machine = serde_json::from_value(json["machine"].clone()).unwrap();
        assert!(
            machine
                .note
                .is_some_and(|note| note.contains("shared 2-core"))
        );
        assert!(machine.cores > 0);
    }

    #[test]
    fn each_sweep_parses_with_its_own_keyspace() {
        let keyspace = |args: &[&str]| match Cli::parse_from(args).sweep {
            Sweep::Concurrency(args) => args.common.setup.target.keyspace.name,
            Sweep::OpenLoop(args) => args.common.setup.target.keyspace.name,
            Sweep::CacheRss(args) => args.common.setup.target.keyspace.name,
            Sweep::Storage(args) => args.setup.target.keyspace.name,
            Sweep::Charts(_) => unreachable!(),
        };
        assert_eq!(keyspace(&["s", "concurrency"]).as_str(), "dedupd_scale");
        assert_eq!(
            keyspace(&["s", "open-loop", "--p99-bound-ms", "50"]).as_str(),
            "dedupd_scale"
        );
        assert_eq!(
            keyspace(&["s", "cache-rss", "--cache-mib", "4"]).as_str(),
            "dedupd_scale"
        );
        assert_eq!(
            keyspace(&["s", "storage", "--ttl-secs", "30"]).as_str(),
            "dedupd_scale_ttl"
        );
        assert!(Cli::try_parse_from(["s", "charts", "--out", "x"]).is_ok());
        assert!(Cli::try_parse_from(["s", "storage", "--keyspace", "bad-name"]).is_err());
    }
}
