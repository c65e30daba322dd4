//! `dedupd-lab bench`: what the guarantee costs, measured side by side in one
//! run against one cluster.
//!
//! It starts what it measures: a `dedupd serve` process of its own on a free
//! loopback port (see `dedupd_process`), over the Cassandra in
//! DEDUPD_LAB_CQL_NODES or the local node (started with
//! deploy/local/cassandra when none is named), and, to compare with what
//! users would pick instead, a private Redis and PostgreSQL (see
//! `alternatives`). Scenarios run interleaved, a slice each per round, so
//! that drift of the machine (other load, compaction, JIT warm-up) lands
//! on all of them alike; the open-loop pairs whose ratios are headline
//! figures (`plain_insert` and `lwt_insert`, `lwt_claim_row` and
//! `http_claim`, `upstream_post` and `proxy_post`) go further and share one
//! schedule, a request of each in turn.
//!
//! Its length is the scenario list and the run that interleaves them; the
//! load generator, the scenarios' operations, the alternatives and the
//! report are modules of their own.

mod alternatives;
pub mod load;
mod proxy;
mod report;
pub mod scenarios;
mod server_counts;
pub mod soak;
mod targets;
mod topology;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use scylla::statement::SerialConsistency;
use serde::Serialize;

use crate::cql::{Machine, lab_session, query_text, wait_for_cql};
use crate::dedupd_process::ServerProcess;
use crate::local_cluster;
use crate::process::{self, Pid};
use crate::target::Target;
use alternatives::{Alternatives, AlternativesReport, CassandraSettings, Durability, Plan};
use dedupd::domain::KeyspaceName;
use dedupd::store::CqlSettings;
use dedupd::store::migrate::Replication;
use dedupd_client::ClaimOptions;
use load::{Measurement, Operation, closed_loop, open_loop, open_loop_in_turn};
use report::{Check, Ratios, ScenarioReport};
use scenarios::{HttpApi, RawDriver};
use server_counts::{Counted, ServerCounts};
use topology::Topology;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileName {
    /// A few minutes: every scenario but the Paxos v1 restart.
    Ci,
    /// Larger samples, and Paxos v1 against v2 (restarts the local node).
    Full,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// How much to run.
    #[arg(long, value_enum, default_value = "full")]
    pub profile: ProfileName,
    #[command(flatten)]
    pub target: Target,
    /// Skip the second, shared-cores run (the production-shaped run always
    /// comes first).
    #[arg(long)]
    pub no_shared_cores_run: bool,
    /// Replication of the benchmark keyspace: `1`, `3`, or `dc1:3`.
    #[arg(long, default_value = "1")]
    pub replication: Replication,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the Markdown table here.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write the latency chart (SVG) here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Exit non-zero when a check fails (always on in the ci profile).
    #[arg(long)]
    pub check: bool,
    /// Run only the scenarios whose names contain one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// Sizes of one profile.
#[derive(Debug, Clone, Copy, Serialize)]
struct Profile {
    rounds: u64,
    warmup_ops: u64,
    open_rate_per_s: f64,
    open_ops_per_round: u64,
    closed_workers: usize,
    closed_ops_per_round: u64,
    contention_ops_per_round: u64,
    batch_rows: usize,
    batch_ops_per_round: u64,
    dup_preloaded_keys: usize,
    dup_ops_per_round: u64,
    paxos_v1: bool,
    slice_deadline_secs: u64,
}

impl Profile {
    fn of(name: ProfileName) -> Self {
        match name {
            // Many short rounds rather than a few long ones: a stall of the
            // node (a garbage collection, a flush) then costs each
            // scenario a slice or two of nine instead of a third of its
            // samples.
            ProfileName::Ci => Self {
                rounds: 9,
                warmup_ops: 150,
                open_rate_per_s: 150.0,
                open_ops_per_round: 100,
                closed_workers: 16,
                closed_ops_per_round: 1000,
                contention_ops_per_round: 50,
                batch_rows: 10,
                batch_ops_per_round: 34,
                dup_preloaded_keys: 1000,
                dup_ops_per_round: 2000,
                paxos_v1: false,
                slice_deadline_secs: 30,
            },
            ProfileName::Full => Self {
                rounds: 5,
                warmup_ops: 300,
                open_rate_per_s: 150.0,
                open_ops_per_round: 600,
                closed_workers: 16,
                closed_ops_per_round: 3000,
                contention_ops_per_round: 400,
                batch_rows: 10,
                batch_ops_per_round: 300,
                dup_preloaded_keys: 10_000,
                dup_ops_per_round: 6000,
                paxos_v1: true,
                slice_deadline_secs: 60,
            },
        }
    }
}

#[derive(Clone, Copy)]
enum Load {
    Open { rate_per_s: f64 },
    Closed { workers: usize },
}

impl Load {
    /// The profile's open loop, the one latencies are compared under.
    fn open(profile: &Profile) -> Self {
        Load::Open {
            rate_per_s: profile.open_rate_per_s,
        }
    }

    fn describe(self) -> String {
        match self {
            Load::Open { rate_per_s } => format!("open loop {rate_per_s:.0}/s"),
            Load::Closed { workers } => format!("closed loop, {workers} workers"),
        }
    }
}

struct Scenario {
    name: String,
    load: Load,
    operation: Operation,
    ops_per_round: u64,
    measured: Measurement,
    next_index: u64,
    /// CPU time this process spent during the measured slices.
    cpu: Duration,
    /// The dedupd process an HTTP scenario talks to, and the CPU time it
    /// spent during the measured slices.
    server: Option<u32>,
    server_cpu: Duration,
    /// The scenarios this one shares an open-loop schedule with, in turn
    /// (see `Group`); empty when it runs alone.
    in_turn_with: Vec<String>,
}

impl Scenario {
    fn new(name: &str, load: Load, operation: Operation, ops_per_round: u64) -> Self {
        Self {
            name: name.to_owned(),
            load,
            operation,
            ops_per_round,
            measured: Measurement::default(),
            next_index: 0,
            cpu: Duration::ZERO,
            server: None,
            server_cpu: Duration::ZERO,
            in_turn_with: Vec::new(),
        }
    }

    /// Also account the CPU of the dedupd process `server` serves it with.
    fn served_by(mut self, server: &ServerProcess) -> Self {
        self.server = Some(server.pid());
        self
    }

    fn report(&self) -> ScenarioReport {
        let load = match self.in_turn_with.as_slice() {
            [] => self.load.describe(),
            partners => format!(
                "{}, in turn with {}",
                self.load.describe(),
                partners.join(", ")
            ),
        };
        let mut report = ScenarioReport::new(&self.name, load, &self.measured);
        let answered = self.measured.count() + self.measured.errors;
        let per_op = |cpu: Duration| (cpu.as_secs_f64() * 1e6 / answered as f64).round() as u64;
        if answered > 0 {
            // Scenarios sent in turn share this process's CPU, which
            // cannot be split between them; a server's CPU can, as each
            // serves one of them.
            if self.in_turn_with.is_empty() {
                report.process_cpu_us_per_op = Some(per_op(self.cpu));
            }
            report.server_cpu_us_per_op = self.server.map(|_| per_op(self.server_cpu));
        }
        report
    }

    async fn run_slice(&mut self, ops: u64, deadline: Duration) -> Measurement {
        let first = self.next_index;
        self.next_index += ops;
        match self.load {
            Load::Open { rate_per_s } => {
                open_loop(&self.operation, first, ops, rate_per_s, 2048).await
            }
            Load::Closed { workers } => {
                closed_loop(&self.operation, first, ops, workers, deadline).await
            }
        }
    }
}

/// What a round runs as one slice: a scenario alone, or open-loop scenarios
/// sent in turn on one schedule (`load::open_loop_in_turn`). A headline
/// ratio between two open-loop scenarios measured one after the other
/// moved with whatever the machine did in between (0.95 to 1.64 for
/// `http_over_lwt_p50` over consecutive runs on a quiet machine); sent in
/// turn, the two see the same moments. The schedule keeps the profile's
/// rate, so each of two scenarios gets every other send and a slice takes
/// as long as their two slices did.
struct Group {
    scenarios: Vec<Scenario>,
}

impl Group {
    fn alone(scenario: Scenario) -> Self {
        Self {
            scenarios: vec![scenario],
        }
    }

    /// Open-loop scenarios of one rate and one slice size, sent in turn.
    fn in_turn(mut scenarios: Vec<Scenario>) -> Self {
        let names: Vec<String> = scenarios.iter().map(|s| s.name.clone()).collect();
        for scenario in &mut scenarios {
            assert!(
                matches!(scenario.load, Load::Open { .. }),
                "only open loops share a schedule: {}",
                scenario.name
            );
            scenario.in_turn_with = names
                .iter()
                .filter(|name| **name != scenario.name)
                .cloned()
                .collect();
        }
        Self { scenarios }
    }

    /// For progress lines: `a` or `a + b`.
    fn name(&self) -> String {
        let names: Vec<&str> = self.scenarios.iter().map(|s| s.name.as_str()).collect();
        names.join(" + ")
    }

    /// Whether any of its scenarios is named `name`: a group runs whole.
    fn has(&self, wanted: impl Fn(&str) -> bool) -> bool {
        self.scenarios.iter().any(|s| wanted(&s.name))
    }

    /// A slice of `ops` requests per scenario, not measured.
    async fn warm_up(&mut self, ops: u64, deadline: Duration) {
        let _discarded = self.run(ops, deadline).await;
    }

    /// A measured slice of every scenario's `ops_per_round`, added with the
    /// CPU it cost to each scenario's totals.
    async fn measure_slice(&mut self, deadline: Duration) {
        let server_cpus = |scenarios: &[Scenario]| -> Vec<Option<Duration>> {
            scenarios
                .iter()
                .map(|s| s.server.map(|pid| process::cpu_time(Pid::Of(pid))))
                .collect()
        };
        let ops = self.scenarios[0].ops_per_round;
        let (cpu_before, servers_before) =
            (process::cpu_time(Pid::Own), server_cpus(&self.scenarios));
        let slices = self.run(ops, deadline).await;
        let cpu = process::cpu_time(Pid::Own).saturating_sub(cpu_before);
        let servers_after = server_cpus(&self.scenarios);
        for (((scenario, slice), before), after) in self
            .scenarios
            .iter_mut()
            .zip(slices)
            .zip(servers_before)
            .zip(servers_after)
        {
            scenario.cpu += cpu;
            if let (Some(before), Some(after)) = (before, after) {
                scenario.server_cpu += after.saturating_sub(before);
            }
            scenario.measured.merge(&slice);
        }
    }

    /// `ops_each` requests of every scenario: a scenario alone under its
    /// own load, several in turn on one open-loop schedule.
    async fn run(&mut self, ops_each: u64, deadline: Duration) -> Vec<Measurement> {
        if let [scenario] = self.scenarios.as_mut_slice() {
            return vec![scenario.run_slice(ops_each, deadline).await];
        }
        let Load::Open { rate_per_s } = self.scenarios[0].load else {
            unreachable!("Group::in_turn takes open loops only");
        };
        let first = self.scenarios[0].next_index;
        let operations: Vec<Operation> = self
            .scenarios
            .iter_mut()
            .map(|scenario| {
                scenario.next_index += ops_each;
                scenario.operation.clone()
            })
            .collect();
        open_loop_in_turn(&operations, first, ops_each, rate_per_s, 2048).await
    }

    fn reports(&self) -> impl Iterator<Item = ScenarioReport> + '_ {
        self.scenarios.iter().map(Scenario::report)
    }
}

#[derive(Serialize)]
struct Memory {
    rss_after_warmup_mib: f64,
    rss_end_mib: f64,
}

#[derive(Serialize)]
struct BenchReport {
    profile: ProfileName,
    sizes: Profile,
    machine: Machine,
    /// Where the processes of the figures below ran.
    topology: Topology,
    scenarios: Vec<ScenarioReport>,
    ratios: Ratios,
    cross_partition_batch_error: String,
    memory: Memory,
    /// The same comparisons on another topology (shared cores), labelled.
    other_topologies: Vec<TopologyRun>,
    /// What an acknowledged claim is worth on each system measured, keyed
    /// `cassandra`, `postgres_synchronous_commit_on`, `…_off`, `redis`.
    durability: BTreeMap<String, Durability>,
    /// Redis and PostgreSQL beside dedupd: where they ran, what was
    /// skipped and why.
    alternatives: Option<AlternativesReport>,
    /// The performance targets, met or not, in the headline run.
    targets: Vec<targets::Target>,
    checks: Vec<Check>,
    duration_secs: f64,
}

struct Progress {
    terminal: bool,
}

impl Progress {
    fn show(&self, text: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K{text}");
        }
    }

    fn line(&self, text: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{text}");
    }
}

/// What the run shares across topologies.
struct Bench<'a> {
    args: &'a BenchArgs,
    profile: Profile,
    progress: Progress,
    binary: PathBuf,
    nodes: Vec<String>,
    raw: Arc<RawDriver>,
    run_id: String,
}

/// One topology's figures.
#[derive(Serialize)]
struct TopologyRun {
    topology: Topology,
    label: String,
    scenarios: Vec<ScenarioReport>,
    ratios: Ratios,
    cross_partition_batch_error: String,
    /// The measured dedupd process's resident memory.
    memory: Memory,
    /// Measured in the first run only (the headline topology).
    #[serde(skip)]
    alternatives: Option<AlternativesReport>,
    /// What the served dedupd counted over the measured slices.
    #[serde(skip)]
    counted: Counted,
}

/// The proxy's scenarios (headline run only).
const PROXY_SCENARIOS: [&str; 5] = [
    "upstream_post",
    "proxy_post",
    "upstream_post_c16",
    "proxy_post_c16",
    "proxy_replay_c16",
];

/// The scenarios the shared-cores run repeats: the comparisons the
/// topology changes.
const SHARED_CORES_SCENARIOS: [&str; 10] = [
    "lwt_insert",
    "lwt_claim_row",
    "lwt_claim_row_c16",
    "http_claim",
    "lwt_insert_c16",
    "http_claim_c16",
    "cached_duplicate_c16",
    "dup_heavy_bare_lwt_c16",
    "dup_heavy_dedupd_c16",
    "plain_insert",
];

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let progress = Progress {
        terminal: std::io::stderr().is_terminal(),
    };
    let binary = args.target.dedupd.resolve()?;
    let uses_local_node = args.target.cql_nodes.is_none();
    let nodes = match &args.target.cql_nodes {
        Some(nodes) => nodes.clone(),
        None => {
            progress.line("starting (or finding) the local Cassandra node");
            local_cluster::up(&args.target.local_cassandra).await?
        }
    };
    let settings = CqlSettings::local(nodes.clone());
    let keyspace = args.target.keyspace.name.clone();
    let session = Arc::new(lab_session(&nodes, &args.target.keyspace, &args.replication).await?);
    let machine = Machine::read(&session, &nodes, &args.replication).await;
    let cassandra_durability = cassandra_settings(&session, &keyspace, nodes.len())
        .await
        .durability();
    let raw = Arc::new(
        RawDriver::prepare(session.clone(), &keyspace, SerialConsistency::LocalSerial).await?,
    );
    let bench = Bench {
        args: &args,
        profile: Profile::of(args.profile),
        progress,
        binary,
        nodes: nodes.clone(),
        raw,
        run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
    };

    // Pinning needs the database's processes: only the local cluster's.
    let mut topologies = Vec::new();
    match Topology::pinned() {
        Some(pinned) if uses_local_node => topologies.push(pinned),
        _ => bench.progress.line(
            "production-shaped run: skipped (it pins the local node's processes, on 2+ CPUs)",
        ),
    }
    if topologies.is_empty() || !args.no_shared_cores_run {
        topologies.push(Topology::SharedCores);
    }
    let mut runs = Vec::new();
    for (index, topology) in topologies.into_iter().enumerate() {
        let only_headline = index > 0;
        let result = bench.measure(&topology, only_headline).await;
        if uses_local_node {
            // Whatever happened, give every process every core back.
            Topology::SharedCores
                .apply(&args.target.local_cassandra)
                .await?;
        }
        runs.push(result?);
    }
    let Bench {
        profile,
        progress,
        raw,
        run_id,
        ..
    } = bench;

    let paxos_v1_wanted = args.only.is_empty()
        || args
            .only
            .iter()
            .any(|part| "lwt_insert_paxos_v1".contains(part.as_str()));
    // The restart would make this process's sessions log their lost
    // connections: close them first.
    drop(raw);
    drop(session);
    if profile.paxos_v1 && paxos_v1_wanted {
        if uses_local_node {
            let v1 = paxos_v1_scenarios(&args, &settings, &keyspace, &profile, &run_id, &progress)
                .await?;
            let main = &mut runs[0];
            main.scenarios.extend(v1);
            main.ratios = Ratios::compute(&main.scenarios);
            main.counted.fill(&mut main.ratios);
        } else {
            progress.line(
                "paxos v1: skipped (only the local node can be restarted with another variant)",
            );
        }
    }
    let mut main = runs.remove(0);
    let mut alternatives = main.alternatives.take();
    let mut checks = report::checks(&main.scenarios, &main.ratios);
    let mut durability = BTreeMap::from([("cassandra".to_owned(), cassandra_durability.clone())]);
    let targets = targets::targets(&main.scenarios, &main.ratios);
    if let Some(alternatives) = &mut alternatives {
        durability.extend(alternatives.durability.clone());
        // Binaries that are there but a server that does not start is a
        // broken scenario; missing binaries are a loud skip, not a failure.
        for failure in &alternatives.failed_to_start {
            checks.push(Check::new("alternative started", false, failure.clone()));
        }
    }
    let mut markdown = String::new();
    for (index, run) in std::iter::once(&main).chain(&runs).enumerate() {
        let table = report::markdown_table(&run.scenarios);
        let mut ratio_table = report::markdown_ratios(&run.ratios);
        if let (0, Some(alternatives)) = (index, &alternatives) {
            ratio_table.push('\n');
            ratio_table.push_str(&alternatives::markdown(
                &run.scenarios,
                &cassandra_durability,
                alternatives,
            ));
        }
        if index == 0 {
            ratio_table.push('\n');
            ratio_table.push_str(&targets::markdown(&targets));
        }
        println!(
            "\n## dedupd bench ({:?} profile) on {} cores, database {} (paxos {}), {}\n\n{}\n\n{table}\n{ratio_table}",
            args.profile,
            machine.cores,
            machine.database_version,
            machine.paxos_variant,
            machine.replication,
            run.label,
        );
        println!(
            "dedupd's memory (RSS of the served process): {} MiB after warm-up, {} MiB at the end\n",
            run.memory.rss_after_warmup_mib, run.memory.rss_end_mib
        );
        markdown.push_str(&format!("### {}\n\n{table}\n{ratio_table}\n", run.label));
    }
    println!(
        "conditional batch across two partitions: {}\n",
        main.cross_partition_batch_error
    );
    report::print_checks(&checks);
    let title = format!(
        "dedupd bench: latency percentiles ({:?} profile, {} cores, database {}, {})",
        args.profile, machine.cores, machine.database_version, main.label
    );
    let svg = report::svg_chart(&main.scenarios, &title);
    let report = BenchReport {
        profile: args.profile,
        sizes: profile,
        machine,
        topology: main.topology.clone(),
        scenarios: main.scenarios,
        ratios: main.ratios,
        cross_partition_batch_error: main.cross_partition_batch_error,
        memory: main.memory,
        other_topologies: runs,
        durability,
        alternatives,
        targets,
        checks: checks.clone(),
        duration_secs: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, markdown)?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, svg)?;
    }
    println!("\nbench took {:.0} s", started.elapsed().as_secs_f64());
    let gate = args.check || args.profile == ProfileName::Ci;
    let failed = report::failed(&checks);
    if gate && !failed.is_empty() {
        anyhow::bail!("benchmark checks failed: {}", failed.join(", "));
    }
    Ok(())
}

impl Bench<'_> {
    /// Every scenario (or, with `only_headline`, those the topology
    /// changes) under `topology`, against a `dedupd serve` process started
    /// for it.
    async fn measure(
        &self,
        topology: &Topology,
        only_headline: bool,
    ) -> anyhow::Result<TopologyRun> {
        let (args, profile, progress) = (self.args, &self.profile, &self.progress);
        let label = topology.label();
        progress.line(&format!("run: {label}"));
        if args.target.cql_nodes.is_none() {
            topology.apply(&args.target.local_cassandra).await?;
        }
        let keyspace = &args.target.keyspace.name;
        let server = ServerProcess::spawn(&self.binary, &self.nodes, keyspace, 4096).await?;
        // Keys of each topology's run stay apart from the other's.
        let tag = match topology {
            Topology::Pinned { .. } => format!("{}p", self.run_id),
            Topology::SharedCores => format!("{}s", self.run_id),
        };
        let run_id = tag.as_str();
        let raw = &self.raw;
        let http = HttpApi::new(server.base.clone());
        // One namespace per stream of claims, as services would use them:
        // the read-first policy adapts per namespace.
        let new_keys_namespace = format!("bench-{run_id}-new");
        let dup_namespace = format!("bench-{run_id}-dup");
        let cached_namespace = format!("bench-{run_id}-cached");

        // Redeliveries need something to be redelivered: completed claims
        // on one side, existing rows on the other, the same keys for both.
        // The claims are completed through a second instance, so the
        // measured one starts with a cold cache, as a replica would whose
        // peers did the work.
        progress.line(&format!(
            "preloading {} completed keys for the duplicate-heavy stream",
            profile.dup_preloaded_keys
        ));
        let preloaded: Arc<Vec<String>> = Arc::new(
            (0..profile.dup_preloaded_keys)
                .map(|i| format!("{run_id}-dup-{i}"))
                .collect(),
        );
        raw.preload(&preloaded).await?;
        let peer = ServerProcess::spawn(&self.binary, &self.nodes, keyspace, 4096).await?;
        HttpApi::new(peer.base.clone())
            .preload(&dup_namespace, &preloaded)
            .await?;
        peer.stop().await;
        // Redeliveries the measured instance has seen completed: its cache
        // answers every one of them (dedupd's own cost of a duplicate).
        let cached: Arc<Vec<String>> = Arc::new(
            (0..CACHED_KEYS)
                .map(|i| format!("{run_id}-cached-{i}"))
                .collect(),
        );
        http.preload(&cached_namespace, &cached).await?;

        let open = Load::open(profile);
        let closed = Load::Closed {
            workers: profile.closed_workers,
        };
        let claim_options = ClaimOptions::new().ttl(Duration::from_secs(3600));
        let raw_claims_namespace = format!("bench-{run_id}-raw");
        let mut groups = vec![
            plain_and_lwt_inserts(raw, profile, run_id, "", ""),
            Group::in_turn(vec![
                Scenario::new(
                    "lwt_claim_row",
                    open,
                    raw.claim_row_lwt(raw_claims_namespace.clone(), format!("{run_id}-rawc")),
                    profile.open_ops_per_round,
                ),
                Scenario::new(
                    "http_claim",
                    open,
                    http.claim_new(
                        new_keys_namespace.clone(),
                        format!("{run_id}-http"),
                        claim_options.clone(),
                    ),
                    profile.open_ops_per_round,
                )
                .served_by(&server),
            ]),
        ];
        let mut scenarios = vec![
            Scenario::new(
                "lwt_claim_row_c16",
                closed,
                raw.claim_row_lwt(raw_claims_namespace.clone(), format!("{run_id}-rawcc")),
                profile.closed_ops_per_round,
            ),
            Scenario::new(
                "lwt_insert_c16",
                closed,
                raw.lwt_insert(format!("{run_id}-lwtc")),
                profile.closed_ops_per_round,
            ),
            Scenario::new(
                "http_claim_c16",
                closed,
                http.claim_new(
                    new_keys_namespace.clone(),
                    format!("{run_id}-httpc"),
                    claim_options,
                ),
                profile.closed_ops_per_round,
            )
            .served_by(&server),
            Scenario::new(
                "cached_duplicate_c16",
                closed,
                http.redeliveries(cached_namespace.clone(), cached.clone()),
                profile.dup_ops_per_round,
            )
            .served_by(&server),
        ];
        for workers in [1, 4, 16, 64] {
            let load = Load::Closed { workers };
            scenarios.push(Scenario::new(
                &format!("same_key_c{workers}"),
                load,
                raw.lwt_same_key(format!("{run_id}-hot-{workers}")),
                profile.contention_ops_per_round,
            ));
            scenarios.push(Scenario::new(
                &format!("distinct_keys_c{workers}"),
                load,
                raw.lwt_insert(format!("{run_id}-cold-{workers}")),
                profile.contention_ops_per_round,
            ));
        }
        let rows = profile.batch_rows;
        let batch_load = Load::Closed { workers: 4 };
        scenarios.push(Scenario::new(
            &format!("conditional_batch_{rows}_rows"),
            batch_load,
            raw.conditional_batch(format!("{run_id}-batch"), rows),
            profile.batch_ops_per_round,
        ));
        scenarios.push(Scenario::new(
            &format!("separate_lwts_{rows}_keys"),
            batch_load,
            raw.separate_lwts(format!("{run_id}-sep"), rows),
            profile.batch_ops_per_round,
        ));
        scenarios.push(Scenario::new(
            "dup_heavy_bare_lwt_c16",
            closed,
            raw.dup_heavy_bare(preloaded.clone(), format!("{run_id}-dupraw")),
            profile.dup_ops_per_round,
        ));
        scenarios.push(
            Scenario::new(
                "dup_heavy_dedupd_c16",
                closed,
                http.dup_heavy(
                    dup_namespace.clone(),
                    preloaded.clone(),
                    format!("{run_id}-duphttp"),
                ),
                profile.dup_ops_per_round,
            )
            .served_by(&server),
        );
        // The idempotency proxy's cost, in the headline run only: the same
        // POSTs to a trivial upstream alone and through `dedupd proxy`.
        let proxied = if !only_headline && PROXY_SCENARIOS.iter().any(|name| args.wants(name)) {
            progress.line("starting an upstream and a dedupd proxy in front of it");
            let upstream = proxy::Upstream::start().await?;
            let proxy_server = ServerProcess::spawn_proxy(
                &self.binary,
                &self.nodes,
                keyspace,
                4096,
                &upstream.base,
            )
            .await?;
            let posts = proxy::KeyedPosts::default();
            let stored: Arc<Vec<String>> = Arc::new(
                (0..CACHED_KEYS)
                    .map(|i| format!("{run_id}-proxy-stored-{i}"))
                    .collect(),
            );
            posts.send_once(&proxy_server.base, &stored).await?;
            let (upstream_base, proxy_base) = (upstream.base.as_str(), proxy_server.base.as_str());
            // In the report's order: what came before, then the proxy's.
            groups.extend(scenarios.drain(..).map(Group::alone));
            groups.push(Group::in_turn(vec![
                Scenario::new(
                    "upstream_post",
                    open,
                    posts.new_keys(upstream_base, format!("{run_id}-up")),
                    profile.open_ops_per_round,
                ),
                Scenario::new(
                    "proxy_post",
                    open,
                    posts.new_keys(proxy_base, format!("{run_id}-px")),
                    profile.open_ops_per_round,
                )
                .served_by(&proxy_server),
            ]));
            scenarios.extend([
                Scenario::new(
                    "upstream_post_c16",
                    closed,
                    posts.new_keys(upstream_base, format!("{run_id}-upc")),
                    profile.closed_ops_per_round,
                ),
                Scenario::new(
                    "proxy_post_c16",
                    closed,
                    posts.new_keys(proxy_base, format!("{run_id}-pxc")),
                    profile.closed_ops_per_round,
                )
                .served_by(&proxy_server),
                Scenario::new(
                    "proxy_replay_c16",
                    closed,
                    posts.retries(proxy_base, stored),
                    profile.dup_ops_per_round,
                )
                .served_by(&proxy_server),
            ]);
            Some((upstream, proxy_server))
        } else {
            None
        };
        // What users would pick instead, in the headline run only: on the
        // database CPUs of a pinned topology, as the Cassandra node.
        let alternatives = if only_headline {
            None
        } else {
            let database_cpus = match topology {
                Topology::Pinned { database_cpus, .. } => Some(database_cpus.as_str()),
                Topology::SharedCores => None,
            };
            let plan = Plan {
                redis: wants_any(args, &[alternatives::System::Redis]),
                postgres: wants_any(
                    args,
                    &[
                        alternatives::System::POSTGRES,
                        alternatives::System::POSTGRES_ASYNC,
                    ],
                ),
                cpus: database_cpus,
                connections: profile.closed_workers,
                dup_namespace: &dup_namespace,
                preloaded: &preloaded,
            };
            if plan.redis || plan.postgres {
                progress.line("starting the alternatives (a private Redis and PostgreSQL)");
            }
            let started = Alternatives::start(&plan).await;
            scenarios.extend(alternative_scenarios(
                &started,
                profile,
                run_id,
                &new_keys_namespace,
                &dup_namespace,
                &preloaded,
            ));
            Some(started)
        };
        groups.extend(scenarios.into_iter().map(Group::alone));
        if only_headline {
            groups.retain(|group| group.has(|name| SHARED_CORES_SCENARIOS.contains(&name)));
        }
        groups.retain(|group| group.has(|name| args.wants(name)));
        let deadline = Duration::from_secs(profile.slice_deadline_secs);
        for group in &mut groups {
            progress.show(&format!("warm-up: {}", group.name()));
            // The duplicate-heavy pair warms up over one pass of the
            // preloaded keys: it is measured in the steady state of a
            // long-running replica, whose completed-claims cache has seen
            // the stream.
            let ops = if group.has(|name| name.starts_with("dup_heavy")) {
                profile.dup_preloaded_keys as u64
            } else {
                profile.warmup_ops.min(group.scenarios[0].ops_per_round)
            };
            group.warm_up(ops, deadline).await;
        }
        let rss_after_warmup = server.rss_mib();
        // What the served instance counts over some measured slices: its
        // cache's hits and misses over the duplicate-heavy ones (9 in 10
        // of those requests are redeliveries of completed keys, so a
        // working cache hits about 90 % of the time), its own clocks over
        // the new-key claims at 16 workers.
        let mut counted = Counted::default();
        for round in 1..=profile.rounds {
            for group in &mut groups {
                progress.show(&format!(
                    "round {round}/{}: {} ({} ops each)",
                    profile.rounds,
                    group.name(),
                    group.scenarios[0].ops_per_round
                ));
                let counts = if group.has(|name| name == "dup_heavy_dedupd_c16") {
                    Some(&mut counted.dup_heavy)
                } else if group.has(|name| name == "http_claim_c16") {
                    Some(&mut counted.new_keys_c16)
                } else {
                    None
                };
                let Some(counts) = counts else {
                    group.measure_slice(deadline).await;
                    continue;
                };
                let before = ServerCounts::read(&server).await?;
                group.measure_slice(deadline).await;
                counts.add(ServerCounts::read(&server).await?.since(before));
            }
            progress.line(&format!("round {round}/{} done", profile.rounds));
        }
        let cross_partition_batch_error = raw.cross_partition_batch_error().await;
        let reports: Vec<ScenarioReport> = groups.iter().flat_map(Group::reports).collect();
        let mut ratios = Ratios::compute(&reports);
        counted.fill(&mut ratios);
        let memory = Memory {
            rss_after_warmup_mib: rss_after_warmup,
            rss_end_mib: server.rss_mib(),
        };
        server.stop().await;
        if let Some((upstream, proxy_server)) = proxied {
            proxy_server.stop().await;
            drop(upstream);
        }
        let alternatives = match alternatives {
            Some(started) => Some(started.stop().await),
            None => None,
        };
        Ok(TopologyRun {
            topology: topology.clone(),
            label,
            scenarios: reports,
            ratios,
            cross_partition_batch_error,
            memory,
            alternatives,
            counted,
        })
    }
}

impl BenchArgs {
    /// Whether `--only` (if given) admits the scenario `name`.
    fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|part| name.contains(part.as_str()))
    }
}

/// Whether `--only` admits any scenario of `systems`: those not wanted are
/// not started.
fn wants_any(args: &BenchArgs, systems: &[alternatives::System]) -> bool {
    systems
        .iter()
        .flat_map(|system| system.scenario_names())
        .any(|name| args.wants(&name))
}

/// Redis and PostgreSQL on the streams dedupd is measured on, at the same
/// loads: new keys under the profile's open loop (`redis_claim`,
/// `postgres_claim`, beside `http_claim`) and closed loop (`…_c16`, beside
/// `http_claim_c16`), and the duplicate-heavy stream (`dup_heavy_…_c16`,
/// beside `dup_heavy_dedupd_c16`, over the same preloaded keys). Systems
/// that did not start have none.
fn alternative_scenarios(
    alternatives: &Alternatives,
    profile: &Profile,
    run_id: &str,
    new_keys_namespace: &str,
    dup_namespace: &str,
    preloaded: &Arc<Vec<String>>,
) -> Vec<Scenario> {
    use alternatives::{Stream, System};
    let scenario = |(system, stream): (System, Stream)| {
        let (name, tag) = system.scenario(stream)?;
        let prefix = format!("{run_id}-{tag}");
        let ns = new_keys_namespace;
        let closed = Load::Closed {
            workers: profile.closed_workers,
        };
        let (load, operation, ops) = match stream {
            Stream::NewOpen => (
                Load::open(profile),
                alternatives.new_keys(system, ns, &prefix),
                profile.open_ops_per_round,
            ),
            Stream::NewClosed => (
                closed,
                alternatives.new_keys(system, ns, &prefix),
                profile.closed_ops_per_round,
            ),
            Stream::DupHeavy => (
                closed,
                alternatives.dup_heavy(system, dup_namespace, preloaded.clone(), &prefix),
                profile.dup_ops_per_round,
            ),
        };
        operation.map(|operation| Scenario::new(name, load, operation, ops))
    };
    System::ALL
        .into_iter()
        .flat_map(|system| Stream::ALL.map(|stream| (system, stream)))
        .filter_map(scenario)
        .collect()
}

/// The settings dedupd's durability rests on, as the cluster reports them.
async fn cassandra_settings(
    session: &scylla::client::session::Session,
    keyspace: &KeyspaceName,
    nodes: usize,
) -> CassandraSettings {
    let mut period = setting(session, "commitlog_sync_period").await;
    if period == "unknown" {
        // Cassandra 4.0 names it with its unit.
        period = setting(session, "commitlog_sync_period_in_ms").await;
    }
    let replication = keyspace_replication(session, keyspace).await;
    CassandraSettings {
        commitlog_sync: setting(session, "commitlog_sync").await,
        commitlog_sync_period: period,
        commitlog_sync_group_window: setting(session, "commitlog_sync_group_window").await,
        replication_factor: replication.as_ref().and_then(replication_factor),
        replication: replication.map_or_else(|| "unknown".into(), |map| describe_replication(&map)),
        nodes,
        // As the bench's raw LWTs and the dedupd process it starts set them.
        consistency: "LOCAL_QUORUM".into(),
        serial_consistency: "LOCAL_SERIAL".into(),
    }
}

/// A node setting (`system_views.settings`), "unknown" when it has none.
async fn setting(session: &scylla::client::session::Session, name: &str) -> String {
    let cql = format!("SELECT value FROM system_views.settings WHERE name = '{name}'");
    query_text(session, &cql).await
}

async fn keyspace_replication(
    session: &scylla::client::session::Session,
    keyspace: &KeyspaceName,
) -> Option<BTreeMap<String, String>> {
    let result = session
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (keyspace.as_str(),),
        )
        .await
        .ok()?;
    let rows = result.into_rows_result().ok()?;
    let (map,) = rows
        .maybe_first_row::<(std::collections::HashMap<String, String>,)>()
        .ok()??;
    Some(map.into_iter().collect())
}

/// `SimpleStrategy replication_factor=1`, `NetworkTopologyStrategy dc1=3`.
fn describe_replication(map: &BTreeMap<String, String>) -> String {
    let class = map
        .get("class")
        .map(|class| class.rsplit('.').next().unwrap_or(class).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let factors: Vec<String> = map
        .iter()
        .filter(|(name, _)| name.as_str() != "class")
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    format!("{class} {}", factors.join(" "))
}

/// The replicas a claim is written to: the replication factor, or the
/// largest data center's.
fn replication_factor(map: &BTreeMap<String, String>) -> Option<u32> {
    map.iter()
        .filter(|(name, _)| name.as_str() != "class")
        .filter_map(|(_, value)| value.parse().ok())
        .max()
}

/// Completed keys the measured instance redelivers in
/// `cached_duplicate_c16`: few enough to stay in its cache.
const CACHED_KEYS: usize = 1000;

/// The floor and what the guarantee costs on it: plain and conditional
/// inserts of new keys under the profile's open loop, in turn. A run on
/// another cluster setting names its scenarios with `name_suffix` and keeps
/// its keys apart with `key_suffix`.
fn plain_and_lwt_inserts(
    raw: &Arc<RawDriver>,
    profile: &Profile,
    run_id: &str,
    name_suffix: &str,
    key_suffix: &str,
) -> Group {
    let open = Load::open(profile);
    Group::in_turn(vec![
        Scenario::new(
            &format!("plain_insert{name_suffix}"),
            open,
            raw.plain_insert(format!("{run_id}-plain{key_suffix}")),
            profile.open_ops_per_round,
        ),
        Scenario::new(
            &format!("lwt_insert{name_suffix}"),
            open,
            raw.lwt_insert(format!("{run_id}-lwt{key_suffix}")),
            profile.open_ops_per_round,
        ),
    ])
}

/// Restarts the local node with Paxos v1, measures plain and LWT inserts
/// again, and restores v2.
async fn paxos_v1_scenarios(
    args: &BenchArgs,
    settings: &CqlSettings,
    keyspace: &KeyspaceName,
    profile: &Profile,
    run_id: &str,
    progress: &Progress,
) -> anyhow::Result<Vec<ScenarioReport>> {
    progress.line("restarting the local node with paxos_variant v1");
    local_cluster::run(&args.target.local_cassandra, &["restart", "--paxos", "v1"]).await?;
    let result = async {
        let session = Arc::new(wait_for_cql(settings).await?);
        let raw =
            Arc::new(RawDriver::prepare(session, keyspace, SerialConsistency::LocalSerial).await?);
        let mut inserts = plain_and_lwt_inserts(&raw, profile, run_id, "_paxos_v1", "v1");
        let deadline = Duration::from_secs(profile.slice_deadline_secs);
        inserts.warm_up(profile.warmup_ops, deadline).await;
        for round in 1..=profile.rounds {
            progress.show(&format!(
                "paxos v1 round {round}/{}: {}",
                profile.rounds,
                inserts.name()
            ));
            inserts.measure_slice(deadline).await;
        }
        anyhow::Ok(inserts.reports().collect::<Vec<_>>())
    }
    .await;
    progress.line("restoring paxos_variant v2");
    local_cluster::run(&args.target.local_cassandra, &["restart", "--paxos", "v2"]).await?;
    result
}
