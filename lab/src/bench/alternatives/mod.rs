//! What users would pick instead of dedupd, measured in the same run by
//! the same load generator at the same concurrency on the same streams:
//! Redis (`SET key token NX PX ttl`, no persistence) and PostgreSQL
//! (`INSERT … ON CONFLICT DO NOTHING RETURNING` on an idempotency table,
//! `synchronous_commit` on, and off as a second, labelled scenario).
//!
//! Both are Debian's packages, started here as private servers on free
//! loopback ports in temporary directories and stopped here (also on an
//! error: their guards stop them when dropped). In the production-shaped
//! topology they run on the database CPU, as the Cassandra node does, so
//! that each store gets the core Cassandra gets. A system whose binaries
//! are missing is skipped, and the report says so and why.
//!
//! The figures differ in what an acknowledged claim is worth, and the
//! report states it beside them ([`Durability`]): that difference is the
//! point of the comparison.

mod pool;
pub mod postgres;
pub mod redis;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::load::{Operation, on_keys};
use super::report::ScenarioReport;
use super::scenarios::dup_heavy_key;
use crate::process;
use postgres::{PostgresClaims, PostgresServer};
use redis::{RedisClaims, RedisServer};

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    Acquired,
    Duplicate,
}

/// The claims' time to live, as the HTTP scenarios ask for it.
pub const TTL_SECS: u64 = 3600;

/// A system the alternatives' scenarios claim on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Redis,
    /// PostgreSQL, its sessions with `synchronous_commit` on or off.
    Postgres {
        synchronous_commit: bool,
    },
}

/// A stream the alternatives are measured on, as dedupd is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// New keys under the profile's open loop: beside `http_claim`.
    NewOpen,
    /// New keys, closed loop: beside `http_claim_c16`.
    NewClosed,
    /// The duplicate-heavy stream, closed loop: beside `dup_heavy_dedupd_c16`.
    DupHeavy,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::NewOpen, Stream::NewClosed, Stream::DupHeavy];
}

impl System {
    /// PostgreSQL as deployed by default: `synchronous_commit` on.
    pub const POSTGRES: System = System::Postgres {
        synchronous_commit: true,
    };
    /// The same with `synchronous_commit = off` on its sessions.
    pub const POSTGRES_ASYNC: System = System::Postgres {
        synchronous_commit: false,
    };
    pub const ALL: [System; 3] = [System::Redis, System::POSTGRES, System::POSTGRES_ASYNC];

    /// Its scenario on `stream` and the tag of that scenario's keys, if it
    /// is measured there (asynchronous commit is not measured on the
    /// duplicate-heavy stream).
    pub fn scenario(self, stream: Stream) -> Option<(&'static str, &'static str)> {
        use Stream::{DupHeavy, NewClosed, NewOpen};
        Some(match (self, stream) {
            (System::Redis, NewOpen) => ("redis_claim", "redis"),
            (System::Redis, NewClosed) => ("redis_claim_c16", "redisc"),
            (System::Redis, DupHeavy) => ("dup_heavy_redis_c16", "dupredis"),
            (System::POSTGRES, NewOpen) => ("postgres_claim", "pg"),
            (System::POSTGRES, NewClosed) => ("postgres_claim_c16", "pgc"),
            (System::POSTGRES, DupHeavy) => ("dup_heavy_postgres_c16", "duppg"),
            (System::POSTGRES_ASYNC, NewOpen) => ("postgres_claim_async_commit", "pga"),
            (System::POSTGRES_ASYNC, NewClosed) => ("postgres_claim_c16_async_commit", "pgac"),
            (System::POSTGRES_ASYNC, DupHeavy) => return None,
        })
    }

    /// The name of its scenario on `stream`, "" if it has none there.
    pub fn scenario_name(self, stream: Stream) -> &'static str {
        self.scenario(stream).map_or("", |(name, _)| name)
    }

    /// Its scenarios' names, in stream order.
    pub fn scenario_names(self) -> Vec<String> {
        Stream::ALL
            .into_iter()
            .filter_map(|stream| self.scenario(stream))
            .map(|(name, _)| name.to_owned())
            .collect()
    }
}

/// What an acknowledged claim is worth on one system, beside its figures.
#[derive(Debug, Clone, Serialize)]
pub struct Durability {
    /// The system, in words.
    pub system: String,
    /// The scenarios that measured it.
    pub scenarios: Vec<String>,
    /// The settings the statement rests on, as the system reported them.
    pub settings: BTreeMap<String, String>,
    /// Whether two claimants of one key can never both win, in every
    /// failure the system's setup survives.
    pub linearizable: String,
    /// What an acknowledged claim survives, in words.
    pub summary: String,
}

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// The Cassandra settings dedupd's durability rests on.
#[derive(Debug, Clone)]
pub struct CassandraSettings {
    pub commitlog_sync: String,
    pub commitlog_sync_period: String,
    pub commitlog_sync_group_window: String,
    /// The bench keyspace's replication, as the schema holds it.
    pub replication: String,
    pub replication_factor: Option<u32>,
    pub nodes: usize,
    pub consistency: String,
    pub serial_consistency: String,
}

impl CassandraSettings {
    pub fn durability(&self) -> Durability {
        let flush = match self.commitlog_sync.as_str() {
            "periodic" => format!(
                "acknowledged once in the commit log, which is flushed to disk every {} \
                 (commitlog_sync periodic): a node's crash loses nothing the OS holds, its \
                 power loss can lose its last {} of writes",
                self.commitlog_sync_period, self.commitlog_sync_period
            ),
            "batch" => "flushed to the commit log on disk before it is acknowledged \
                        (commitlog_sync batch)"
                .to_owned(),
            "group" => format!(
                "flushed to the commit log on disk, in groups every {}, before it is \
                 acknowledged (commitlog_sync group)",
                self.commitlog_sync_group_window
            ),
            other => format!("commitlog_sync {other}"),
        };
        let copies = match self.replication_factor {
            Some(1) => format!(
                "replication factor 1 on {} node(s): one copy, no replica, so that loss is \
                 final (this run's setup; production runs 3 replicas)",
                self.nodes
            ),
            Some(rf) => format!(
                "replication factor {rf}, written at {}: on a majority of replicas before \
                 the answer, so a claim survives the loss of a minority of them",
                self.consistency
            ),
            None => format!("replication {}", self.replication),
        };
        Durability {
            system: "dedupd on Cassandra (lightweight transactions)".into(),
            scenarios: [
                "http_claim",
                "http_claim_c16",
                "dup_heavy_dedupd_c16",
                "lwt_claim_row",
                "lwt_claim_row_c16",
            ]
            .map(str::to_owned)
            .to_vec(),
            settings: settings(&[
                ("commitlog_sync", &self.commitlog_sync),
                ("commitlog_sync_period", &self.commitlog_sync_period),
                ("replication", &self.replication),
                ("consistency", &self.consistency),
                ("serial_consistency", &self.serial_consistency),
            ]),
            linearizable: format!(
                "yes: a Paxos round at {} decides each claim, across node failures \
                 (a majority of replicas must agree)",
                self.serial_consistency
            ),
            summary: format!("{flush}; {copies}"),
        }
    }
}

/// PostgreSQL's settings as the server reported them.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    pub version: String,
    pub fsync: String,
    pub wal_sync_method: String,
    pub wal_writer_delay: String,
}

impl PostgresSettings {
    pub fn durability(&self, synchronous_commit: bool) -> Durability {
        let fsync_off = self.fsync != "on";
        let commit = if synchronous_commit {
            format!(
                "each commit waits for its WAL record's flush to the local disk \
                 (synchronous_commit on, fsync {}, wal_sync_method {}): an acknowledged claim \
                 survives a crash or a power loss",
                self.fsync, self.wal_sync_method
            )
        } else {
            format!(
                "a commit is acknowledged before its WAL flush (synchronous_commit off; the WAL \
                 writer flushes every {}): a crash can lose the last 3 × {} of acknowledged \
                 claims (the database stays consistent)",
                self.wal_writer_delay, self.wal_writer_delay
            )
        };
        let caveat = if fsync_off {
            "; fsync is off: nothing is crash-safe"
        } else {
            ""
        };
        let mode = if synchronous_commit { "on" } else { "off" };
        Durability {
            system: format!("PostgreSQL {}, synchronous_commit {mode}", self.version),
            scenarios: System::Postgres { synchronous_commit }.scenario_names(),
            settings: settings(&[
                ("synchronous_commit", mode),
                ("fsync", &self.fsync),
                ("wal_sync_method", &self.wal_sync_method),
                ("wal_writer_delay", &self.wal_writer_delay),
                ("replicas", "none (single node)"),
            ]),
            linearizable: "on the one node (its primary key decides); no failover to be \
                           linearizable across"
                .into(),
            summary: format!(
                "{commit}{caveat}; a single node with no replica: losing its disk loses every \
                 claim, and its outage stops claims"
            ),
        }
    }
}

/// Redis's settings as the server reported them.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub version: String,
    pub save: String,
    pub appendonly: String,
}

impl RedisSettings {
    pub fn durability(&self) -> Durability {
        let persistence = if self.save.is_empty() && self.appendonly == "no" {
            "no persistence (save '', appendonly no): claims live in memory only, and a \
             restart of redis-server loses every one (redeliveries then pass as new)"
                .to_owned()
        } else {
            format!(
                "persistence save '{}', appendonly {}",
                self.save, self.appendonly
            )
        };
        Durability {
            system: format!("Redis {}, no persistence", self.version),
            scenarios: System::Redis.scenario_names(),
            settings: settings(&[
                ("save", &self.save),
                ("appendonly", &self.appendonly),
                ("replicas", "none (single node)"),
            ]),
            linearizable: "on the one node only: replication, if added, is asynchronous, so a \
                           failover can lose acknowledged claims and let a second claimant win"
                .into(),
            summary: format!("{persistence}; a single node with no replica"),
        }
    }
}

/// The alternatives' part of the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlternativesReport {
    /// Where each server ran, as /proc says.
    pub placement: Vec<String>,
    /// Systems not measured because their binaries are missing, and why.
    pub skipped: Vec<String>,
    /// Systems whose binaries are there but that did not start: broken.
    pub failed_to_start: Vec<String>,
    /// Keyed `redis`, `postgres_synchronous_commit_on`, `…_off`.
    pub durability: BTreeMap<String, Durability>,
}

/// What the alternatives' scenarios need: where they answer, and the
/// preloaded duplicate-heavy keys already claimed on each.
pub struct Alternatives {
    redis: Option<(RedisServer, Arc<RedisClaims>)>,
    postgres: Option<PostgresSide>,
    pub report: AlternativesReport,
}

struct PostgresSide {
    server: PostgresServer,
    synchronous: Arc<PostgresClaims>,
    asynchronous: Arc<PostgresClaims>,
}

/// Which alternatives to start, where, and what to preload.
pub struct Plan<'a> {
    pub redis: bool,
    pub postgres: bool,
    /// The database CPUs of a pinned topology (None: this process's own).
    pub cpus: Option<&'a str>,
    /// Connections per system: the closed loops' workers.
    pub connections: usize,
    /// The duplicate-heavy stream's namespace and its preloaded keys.
    pub dup_namespace: &'a str,
    pub preloaded: &'a [String],
}

impl Alternatives {
    /// Starts what `plan` asks for. Never fails: a system that is missing
    /// or does not start is recorded as such and left out.
    pub async fn start(plan: &Plan<'_>) -> Self {
        let mut alternatives = Self {
            redis: None,
            postgres: None,
            report: AlternativesReport::default(),
        };
        let placement = match plan.cpus {
            Some(cpus) => format!("pinned to CPU {cpus}, as the Cassandra node"),
            None => "on every CPU, as the Cassandra node".to_owned(),
        };
        if plan.redis {
            match redis::binary() {
                None => alternatives.report.skipped.push(
                    "Redis: no redis-server on the PATH (install Debian's redis-server)".into(),
                ),
                Some(binary) => match start_redis(&binary, plan).await {
                    Ok((server, claims, settings)) => {
                        alternatives.report.placement.push(format!(
                            "redis-server {} (pid {}) {placement}: allowed CPUs {}",
                            settings.version,
                            server.pid,
                            process::cpus_allowed(server.pid)
                        ));
                        alternatives
                            .report
                            .durability
                            .insert("redis".into(), settings.durability());
                        alternatives.redis = Some((server, claims));
                    }
                    Err(error) => alternatives
                        .report
                        .failed_to_start
                        .push(format!("Redis ({}): {error:#}", binary.display())),
                },
            }
        }
        if plan.postgres {
            match postgres::bindir() {
                Err(why) => alternatives
                    .report
                    .skipped
                    .push(format!("PostgreSQL: {why}")),
                Ok(bindir) => match start_postgres(&bindir, plan).await {
                    Ok((side, settings)) => {
                        alternatives.report.placement.push(format!(
                            "postgres {} (postmaster pid {} and the backends it forks) \
                             {placement}: allowed CPUs {}",
                            settings.version,
                            side.server.postmaster_pid,
                            process::cpus_allowed(side.server.postmaster_pid)
                        ));
                        for synchronous in [true, false] {
                            let key = format!(
                                "postgres_synchronous_commit_{}",
                                if synchronous { "on" } else { "off" }
                            );
                            alternatives
                                .report
                                .durability
                                .insert(key, settings.durability(synchronous));
                        }
                        alternatives.postgres = Some(side);
                    }
                    Err(error) => alternatives
                        .report
                        .failed_to_start
                        .push(format!("PostgreSQL ({}): {error:#}", bindir.display())),
                },
            }
        }
        alternatives
    }

    /// Where `system`'s claims go, if it started.
    fn store(&self, system: System) -> Option<Store> {
        match system {
            System::Redis => self
                .redis
                .as_ref()
                .map(|(_, claims)| Store::Redis(claims.clone())),
            System::Postgres { synchronous_commit } => self.postgres.as_ref().map(|side| {
                Store::Postgres(if synchronous_commit {
                    side.synchronous.clone()
                } else {
                    side.asynchronous.clone()
                })
            }),
        }
    }

    /// `system`'s claims of new keys `{prefix}-{index}`.
    pub fn new_keys(&self, system: System, namespace: &str, prefix: &str) -> Option<Operation> {
        let prefix = prefix.to_owned();
        let keys = move |index| format!("{prefix}-{index}");
        Some(claim_operation(
            self.store(system)?,
            namespace,
            keys,
            new_key,
        ))
    }

    /// `system` on the duplicate-heavy stream over `preloaded`.
    pub fn dup_heavy(
        &self,
        system: System,
        namespace: &str,
        preloaded: Arc<Vec<String>>,
        prefix: &str,
    ) -> Option<Operation> {
        let prefix = prefix.to_owned();
        let keys = move |index| dup_heavy_key(&preloaded, &prefix, index);
        Some(claim_operation(
            self.store(system)?,
            namespace,
            keys,
            answered,
        ))
    }

    /// Stops the servers and hands back the report.
    pub async fn stop(self) -> AlternativesReport {
        if let Some((server, claims)) = self.redis {
            drop(claims);
            server.stop().await;
        }
        if let Some(side) = self.postgres {
            drop((side.synchronous, side.asynchronous));
            side.server.stop().await;
        }
        self.report
    }
}

/// A started system's claims.
#[derive(Clone)]
enum Store {
    Redis(Arc<RedisClaims>),
    Postgres(Arc<PostgresClaims>),
}

impl Store {
    /// Claims `key` in `namespace` for the HTTP scenarios' time to live.
    async fn claim(&self, namespace: &str, key: &str) -> Result<Claimed, String> {
        match self {
            Store::Redis(claims) => claims.claim(namespace, key, TTL_SECS * 1000).await,
            Store::Postgres(claims) => claims.claim(namespace, key, TTL_SECS as f64).await,
        }
    }
}

/// Claims of `key_of(index)` in `namespace` on `store`, each answer judged
/// by `judge`.
fn claim_operation(
    store: Store,
    namespace: &str,
    key_of: impl Fn(u64) -> String + Send + Sync + 'static,
    judge: fn(Result<Claimed, String>) -> Result<(), String>,
) -> Operation {
    let namespace = Arc::new(namespace.to_owned());
    on_keys(store, key_of, move |store, key| {
        let namespace = namespace.clone();
        async move { judge(store.claim(&namespace, &key).await) }
    })
}

/// On the duplicate-heavy stream acquired and duplicate are both answers.
fn answered(claimed: Result<Claimed, String>) -> Result<(), String> {
    claimed.map(|_| ())
}

/// A new key must be acquired: a duplicate would be a key clash.
fn new_key(claimed: Result<Claimed, String>) -> Result<(), String> {
    match claimed? {
        Claimed::Acquired => Ok(()),
        Claimed::Duplicate => Err("not_acquired".into()),
    }
}

async fn start_redis(
    binary: &Path,
    plan: &Plan<'_>,
) -> anyhow::Result<(RedisServer, Arc<RedisClaims>, RedisSettings)> {
    let server = RedisServer::start(binary, plan.cpus).await?;
    let settings = RedisSettings {
        version: server_version(binary).await,
        save: server.config("save").await,
        appendonly: server.config("appendonly").await,
    };
    let claims = RedisClaims::connect(server.port, plan.connections).await?;
    for chunk in plan.preloaded.chunks(plan.connections.max(1)) {
        let claimed = chunk
            .iter()
            .map(|key| claims.claim(plan.dup_namespace, key, TTL_SECS * 1000));
        for result in futures::future::join_all(claimed).await {
            result.map_err(|error| anyhow::anyhow!("preloading Redis failed: {error}"))?;
        }
    }
    Ok((server, claims, settings))
}

/// `redis-server --version`'s `v=7.0.15`.
async fn server_version(binary: &Path) -> String {
    let output = tokio::process::Command::new(binary)
        .arg("--version")
        .output()
        .await;
    output
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .split_whitespace()
                .find_map(|word| word.strip_prefix("v=").map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".into())
}

async fn start_postgres(
    bindir: &Path,
    plan: &Plan<'_>,
) -> anyhow::Result<(PostgresSide, PostgresSettings)> {
    let server = PostgresServer::start(bindir, plan.cpus).await?;
    let setup = postgres::connect(server.port).await?;
    postgres::prepare(&setup, plan.dup_namespace, plan.preloaded).await?;
    let settings = PostgresSettings {
        version: postgres::show(&setup, "server_version").await,
        fsync: postgres::show(&setup, "fsync").await,
        wal_sync_method: postgres::show(&setup, "wal_sync_method").await,
        wal_writer_delay: postgres::show(&setup, "wal_writer_delay").await,
    };
    anyhow::ensure!(
        postgres::show(&setup, "synchronous_commit").await == "on",
        "the private PostgreSQL does not default to synchronous_commit = on"
    );
    drop(setup);
    let synchronous = PostgresClaims::connect(server.port, plan.connections, true).await?;
    let asynchronous = PostgresClaims::connect(server.port, plan.connections, false).await?;
    Ok((
        PostgresSide {
            server,
            synchronous,
            asynchronous,
        },
        settings,
    ))
}

fn ms(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

/// The systems side by side: dedupd's figures and the alternatives', each
/// beside what it promises; then where each ran, and what was not measured.
pub fn markdown(
    scenarios: &[ScenarioReport],
    cassandra: &Durability,
    report: &AlternativesReport,
) -> String {
    let find = |name: &str| scenarios.iter().find(|s| s.name == name);
    let p50 = |name: &str| find(name).map_or("n/a".into(), |s| ms(s.p50_us));
    let p99 = |name: &str| find(name).map_or("n/a".into(), |s| ms(s.p99_us));
    let tput = |name: Option<&str>| {
        name.and_then(find)
            .map_or("n/a".into(), |s| format!("{:.0}", s.throughput_per_s))
    };
    // (durability, new keys open loop, new keys c16, duplicate-heavy c16)
    let row = |durability: &str, system: System| {
        (
            report.durability.get(durability),
            system.scenario_name(Stream::NewOpen),
            system.scenario_name(Stream::NewClosed),
            system.scenario(Stream::DupHeavy).map(|(name, _)| name),
        )
    };
    let rows: [(Option<&Durability>, &str, &str, Option<&str>); 4] = [
        (
            Some(cassandra),
            "http_claim",
            "http_claim_c16",
            Some("dup_heavy_dedupd_c16"),
        ),
        row("postgres_synchronous_commit_on", System::POSTGRES),
        row("postgres_synchronous_commit_off", System::POSTGRES_ASYNC),
        row("redis", System::Redis),
    ];
    let mut text = String::from(
        "What users would pick instead, in the same run (same load generator, same \
         concurrency, same streams), each beside what an acknowledged claim is worth on it:\n\n\
         | system | scenarios | new-key p50 ms (open loop) | new-key p99 ms | new keys/s (c16) | \
         duplicate-heavy claims/s (c16) | linearizable | durability |\n\
         |---|---|---:|---:|---:|---:|---|---|\n",
    );
    for (durability, open, closed, dup) in rows {
        // A system that was not started has no row: the lines below say why.
        let Some(durability) = durability else {
            continue;
        };
        let mut measured = vec![open, closed];
        measured.extend(dup);
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            durability.system,
            measured.join(", "),
            p50(open),
            p99(open),
            tput(Some(closed)),
            tput(dup),
            durability.linearizable,
            durability.summary,
        );
    }
    text.push('\n');
    for line in &report.placement {
        let _ = writeln!(text, "- placement: {line}");
    }
    for line in &report.skipped {
        let _ = writeln!(text, "- **SKIPPED** {line}: its figures and ratios are n/a");
    }
    for line in &report.failed_to_start {
        let _ = writeln!(text, "- **FAILED TO START** {line}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cassandra(sync: &str, rf: Option<u32>) -> CassandraSettings {
        CassandraSettings {
            commitlog_sync: sync.into(),
            commitlog_sync_period: "10000ms".into(),
            commitlog_sync_group_window: "0ms".into(),
            replication: "SimpleStrategy replication_factor=1".into(),
            replication_factor: rf,
            nodes: 1,
            consistency: "LOCAL_QUORUM".into(),
            serial_consistency: "LOCAL_SERIAL".into(),
        }
    }

    #[test]
    fn cassandra_says_what_periodic_sync_and_one_replica_risk() {
        let durability = cassandra("periodic", Some(1)).durability();
        assert!(
            durability.summary.contains("every 10000ms"),
            "{durability:?}"
        );
        assert!(
            durability
                .summary
                .contains("power loss can lose its last 10000ms")
        );
        assert!(durability.summary.contains("replication factor 1"));
        assert!(durability.linearizable.starts_with("yes"));
        assert!(durability.linearizable.contains("LOCAL_SERIAL"));
        assert_eq!(durability.settings["commitlog_sync"], "periodic");

        let three = cassandra("batch", Some(3)).durability();
        assert!(three.summary.contains("before it is acknowledged"));
        assert!(three.summary.contains("loss of a minority"));
    }

    #[test]
    fn each_system_names_its_scenarios_once() {
        let names: Vec<String> = System::ALL
            .into_iter()
            .flat_map(System::scenario_names)
            .collect();
        assert_eq!(
            names,
            [
                "redis_claim",
                "redis_claim_c16",
                "dup_heavy_redis_c16",
                "postgres_claim",
                "postgres_claim_c16",
                "dup_heavy_postgres_c16",
                "postgres_claim_async_commit",
                "postgres_claim_c16_async_commit",
            ]
        );
        assert_eq!(System::POSTGRES_ASYNC.scenario(Stream::DupHeavy), None);
        assert_eq!(System::POSTGRES_ASYNC.scenario_name(Stream::DupHeavy), "");
    }

    #[test]
    fn postgres_on_and_off_say_different_things() {
        let settings = PostgresSettings {
            version: "15.18".into(),
            fsync: "on".into(),
            wal_sync_method: "fdatasync".into(),
            wal_writer_delay: "200ms".into(),
        };
        let on = settings.durability(true);
        assert!(on.summary.contains("waits for its WAL record's flush"));
        assert!(on.summary.contains("no replica"));
        assert_eq!(on.settings["synchronous_commit"], "on");
        assert!(on.scenarios.contains(&"postgres_claim".to_owned()));
        let off = settings.durability(false);
        assert!(off.summary.contains("last 3 × 200ms"));
        assert_eq!(off.settings["synchronous_commit"], "off");
        assert!(
            off.scenarios
                .contains(&"postgres_claim_async_commit".to_owned())
        );
        let unsafe_settings = PostgresSettings {
            fsync: "off".into(),
            ..settings
        };
        assert!(
            unsafe_settings
                .durability(true)
                .summary
                .contains("nothing is crash-safe")
        );
    }

    #[test]
    fn redis_without_persistence_says_so() {
        let durability = RedisSettings {
            version: "7.0.15".into(),
            save: String::new(),
            appendonly: "no".into(),
        }
        .durability();
        assert!(durability.summary.starts_with("no persistence"));
        assert!(durability.linearizable.contains("failover"));
    }

    #[test]
    fn a_skipped_system_is_said_loudly_and_has_no_row() {
        let report = AlternativesReport {
            skipped: vec!["Redis: no redis-server on the PATH".into()],
            ..AlternativesReport::default()
        };
        let text = markdown(&[], &cassandra("periodic", Some(1)).durability(), &report);
        assert!(text.contains("**SKIPPED** Redis: no redis-server on the PATH"));
        assert!(!text.contains("| Redis"));
        assert!(text.contains("| dedupd on Cassandra"));
    }
}
