//! `dedupd-lab check`: the guarantee under faults.
//!
//! Many clients claim keys and advance sequences through two dedupd
//! processes sharing one Cassandra cluster, while a fault runs: a node
//! stopped and restarted, two nodes stopped, one dedupd process killed
//! (SIGKILL) and restarted, random CAS timeouts injected inside dedupd at
//! the driver boundary, or answers, requests and connections lost on the
//! wire by a CQL proxy between dedupd and Cassandra. Every request and
//! answer is recorded with its times, and afterwards the history is
//! checked (see history.rs): no key granted twice while a grant was live, no
//! claim lost to a false "duplicate", no sequence number accepted twice, no
//! 5xx but a 503 with Retry-After.
//!
//! Its length is the phases' orchestration: each fault's setup and
//! teardown (nodes, processes, the proxy, faketime) in one match, so a
//! reader sees every phase's wiring side by side.

mod history;
pub mod wire_faults;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::dedupd_process::free_port;
use crate::target::Target;
use crate::{local_cluster, metrics_text};
use dedupd::store::migrate::Replication;
use dedupd::store::{CqlSettings, connect_session};
pub use history::{Figures, History};
use wire_faults::{Injected, WireFaults};
use workload::{ClaimWorkload, ClientContext, claimant, client_of, consumer, is_ready};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// No fault: the baseline.
    Steady,
    /// One of three nodes stopped mid-run, then started again.
    NodeRestart,
    /// Two of three nodes stopped: no quorum, so 503s; then started again.
    TwoNodesDown,
    /// One dedupd process killed with SIGKILL, then started again.
    InstanceKill,
    /// Random CAS timeouts, before and after the write applied, injected
    /// inside dedupd at the driver boundary (failpoints).
    CasTimeouts,
    /// LWT answers lost or turned into CAS write timeouts, requests lost and
    /// connections dropped by a CQL proxy between dedupd and Cassandra.
    WireFaults,
    /// One of the two processes runs with its clock ahead by less than the
    /// clock-skew margin (faketime): the guarantee must hold.
    ClockSkew,
    /// The same, ahead by more than the margin: the checker must see the
    /// guarantee break (a takeover of a live lease). This phase shows the
    /// limit; it fails if nothing breaks.
    ClockSkewBeyond,
}

/// The clock-skew margin both processes run with in the skew phases
/// (`--max-clock-skew-ms`; the default, stated).
const SKEW_MARGIN_MS: u64 = 1000;
/// How far ahead the second process's clock runs: within, and beyond.
const SKEW_WITHIN_MS: u64 = 800;
const SKEW_BEYOND_MS: u64 = 3000;

/// The driver's request timeout in the wire-faults phase: a lost answer
/// costs this long, so it is short, yet far above a healthy LWT. Requests
/// the proxy delays are held longer (`wire_faults::LATE_BY`).
const WIRE_FAULTS_REQUEST_TIMEOUT_MS: &str = "1500";

/// The failpoints the cas-timeouts phase arms in both processes: the two
/// halves of a timeout on every conditional write, and lost serial reads.
const CAS_TIMEOUT_FAILPOINTS: &str = "claim_insert=after:0.05,claim_insert=before:0.03,\
claim_replace=after:0.1,claim_takeover=after:0.1,claim_complete=after:0.05,claim_release=after:0.05,\
sequence_advance=after:0.05,sequence_advance=before:0.03,sequence_insert=after:0.05,\
claim_read_serial=before:0.02";

#[derive(Debug, Clone, Args)]
// The checker's keyspace is its own.
#[command(mut_arg("keyspace", |keyspace| keyspace.default_value("dedupd_check")))]
pub struct CheckArgs {
    /// The faults to run, one phase each.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![
        Fault::Steady, Fault::NodeRestart, Fault::TwoNodesDown, Fault::InstanceKill, Fault::CasTimeouts,
        Fault::WireFaults, Fault::ClockSkew, Fault::ClockSkewBeyond,
    ])]
    pub faults: Vec<Fault>,
    #[command(flatten)]
    pub target: Target,
    #[arg(long, default_value = "3")]
    pub replication: Replication,
    /// Length of each phase.
    #[arg(long, default_value_t = 40)]
    pub phase_secs: u64,
    #[arg(long, default_value_t = 12)]
    pub claim_clients: usize,
    #[arg(long, default_value_t = 6)]
    pub sequence_clients: usize,
    /// Keys in play at once: few enough that claimants collide.
    #[arg(long, default_value_t = 12)]
    pub window: u64,
    /// Every this many milliseconds a new key enters the window.
    #[arg(long, default_value_t = 500)]
    pub shift_ms: u64,
    #[arg(long, default_value_t = 3)]
    pub streams: usize,
    /// Lease of every claim: short, so that abandoned claims are taken over
    /// within the phase.
    #[arg(long, default_value_t = 2)]
    pub lease_secs: u64,
    /// Write the figures and violations as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One dedupd process.
struct Instance {
    port: u16,
    child: Child,
    log: PathBuf,
    /// The nodes it dials, and the environment of the fault it runs under.
    wiring: Wiring,
    /// Unknown-outcome counters of its earlier lives (a kill resets them).
    unknown_before: BTreeMap<String, f64>,
}

#[derive(Debug, Clone)]
struct Wiring {
    /// The dedupd binary.
    binary: PathBuf,
    nodes: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// Run under faketime with the clock this far ahead (0: the real one).
    clock_ahead_ms: u64,
}

impl Instance {
    async fn spawn(
        port: u16,
        wiring: Wiring,
        keyspace: &str,
        log: PathBuf,
        unknown_before: BTreeMap<String, f64>,
    ) -> anyhow::Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let dedupd = &wiring.binary;
        let mut command = if wiring.clock_ahead_ms == 0 {
            Command::new(dedupd)
        } else {
            // The wall clock only: tokio's timers run on the monotonic one.
            let mut faked = Command::new("faketime");
            faked
                .arg("-f")
                .arg(format!("+{:.3}", wiring.clock_ahead_ms as f64 / 1000.0))
                .arg(dedupd)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
            faked
        };
        command
            .arg("serve")
            // A flag, not the environment: it wins over any DEDUPD_CQL_NODES
            // this process inherited.
            .arg("--cql-nodes")
            .arg(wiring.nodes.join(","))
            .env("DEDUPD_LISTEN", format!("127.0.0.1:{port}"))
            .env("DEDUPD_KEYSPACE", keyspace)
            .env("DEDUPD_SHUTDOWN_DELAY_SECS", "0")
            .env("RUST_LOG", "warn,scylla=error")
            .env_remove("DEDUPD_FAILPOINTS")
            .env_remove("DEDUPD_CQL_ADDRESS_MAP")
            .env_remove("DEDUPD_CQL_REQUEST_TIMEOUT_MS")
            .envs(wiring.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // Its own process group, so that `kill` reaches dedupd itself
            // when faketime runs it as a child of its own.
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .context("cannot start dedupd serve (the clock-skew phases need faketime)")?;
        let mut instance = Self {
            port,
            child,
            log,
            wiring,
            unknown_before,
        };
        let client = &client_of(&instance.base());
        // Up to 60 s: behind the wire-fault proxy, on a loaded 2-core
        // machine, the driver's first connections to three nodes have taken
        // longer than 30 s. A process that exits fails at once.
        crate::process::wait_ready(&mut instance.child, 600, move || is_ready(client))
            .await
            .with_context(|| {
                format!(
                    "dedupd on port {} did not become ready; see {}",
                    instance.port,
                    instance.log.display()
                )
            })?;
        Ok(instance)
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Unknown-outcome counters of this life, by `statement/resolution`.
    async fn unknown_outcomes(&self) -> BTreeMap<String, f64> {
        let text = client_of(&self.base())
            .metrics_text()
            .await
            .unwrap_or_default();
        metrics_text::samples(&text, "dedupd_unknown_outcomes_total")
            .filter(|sample| sample.value > 0.0)
            .map(|sample| {
                let label = |name| sample.label(name).unwrap_or_default();
                let name = format!("{}/{}", label("statement"), label("resolution"));
                (name, sample.value)
            })
            .collect()
    }

    async fn all_unknown_outcomes(&self) -> BTreeMap<String, f64> {
        let mut total = self.unknown_before.clone();
        for (name, value) in self.unknown_outcomes().await {
            *total.entry(name).or_default() += value;
        }
        total
    }

    /// SIGKILL, no drain: in-flight requests die with the process.
    async fn kill(&mut self) -> BTreeMap<String, f64> {
        let counts = self.all_unknown_outcomes().await;
        // The whole group: under faketime the child is the wrapper, and
        // killing it alone left dedupd running (orphaned) after the phase.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        counts
    }

    async fn stop(mut self) -> BTreeMap<String, f64> {
        self.kill().await
    }
}

#[derive(Debug, Serialize)]
pub struct PhaseReport {
    pub fault: Fault,
    pub seconds: f64,
    pub figures: Figures,
    /// Unknown outcomes the two processes met, by `statement/resolution`.
    pub unknown_outcomes: BTreeMap<String, f64>,
    /// What the proxy did, in the wire-faults phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injected: Option<Injected>,
    pub violations: Vec<String>,
    /// In the beyond-the-margin skew phase: the double grants it was there
    /// to show (expected, so not violations).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub beyond_margin: Vec<String>,
    /// What the fault did, with times since the phase start.
    pub events: Vec<String>,
}

async fn run_phase(
    args: &CheckArgs,
    fault: Fault,
    nodes: &[String],
    run_id: &str,
    work_dir: &std::path::Path,
) -> anyhow::Result<PhaseReport> {
    let started = Instant::now();
    let mut events = Vec::new();
    let log = |events: &mut Vec<String>, what: String| {
        events.push(format!("{:.1}s {what}", started.elapsed().as_secs_f64()));
    };
    let phase = format!("{fault:?}").to_lowercase();
    let mut wiring = Wiring {
        binary: args.target.dedupd.resolve()?,
        nodes: nodes.to_vec(),
        env: Vec::new(),
        clock_ahead_ms: 0,
    };
    let mut proxy = None;
    match fault {
        Fault::CasTimeouts => wiring
            .env
            .push(("DEDUPD_FAILPOINTS", CAS_TIMEOUT_FAILPOINTS.into())),
        Fault::WireFaults => {
            let wire_faults = WireFaults::start(nodes).await?;
            wiring.nodes = wire_faults.layout.contact_points();
            wiring.env.extend([
                (
                    "DEDUPD_CQL_ADDRESS_MAP",
                    wire_faults.layout.address_map_arg(),
                ),
                (
                    "DEDUPD_CQL_REQUEST_TIMEOUT_MS",
                    WIRE_FAULTS_REQUEST_TIMEOUT_MS.into(),
                ),
            ]);
            log(
                &mut events,
                format!(
                    "CQL proxy on {}",
                    wire_faults.layout.contact_points().join(",")
                ),
            );
            proxy = Some(wire_faults);
        }
        Fault::ClockSkew | Fault::ClockSkewBeyond => wiring
            .env
            .push(("DEDUPD_MAX_CLOCK_SKEW_MS", SKEW_MARGIN_MS.to_string())),
        _ => {}
    }
    let skew_ms = match fault {
        Fault::ClockSkew => SKEW_WITHIN_MS,
        Fault::ClockSkewBeyond => SKEW_BEYOND_MS,
        _ => 0,
    };
    if skew_ms > 0 {
        log(
            &mut events,
            format!("dedupd 1's clock runs {skew_ms} ms ahead; margin {SKEW_MARGIN_MS} ms"),
        );
    }
    let mut instances = Vec::new();
    for index in 0..2 {
        let log = work_dir.join(format!("{phase}-dedupd-{index}.log"));
        let wiring = Wiring {
            clock_ahead_ms: if index == 1 { skew_ms } else { 0 },
            ..wiring.clone()
        };
        instances.push(
            Instance::spawn(
                free_port()?,
                wiring,
                args.target.keyspace.name.as_str(),
                log,
                BTreeMap::new(),
            )
            .await?,
        );
    }
    let context = ClientContext {
        instances: Arc::new(
            instances
                .iter()
                .map(|instance| client_of(&instance.base()))
                .collect(),
        ),
        namespace: format!("check-{run_id}-{phase}"),
        until: Instant::now() + Duration::from_secs(args.phase_secs),
    };
    let workload = Arc::new(ClaimWorkload {
        clients: args.claim_clients,
        window: args.window,
        shift_every: Duration::from_millis(args.shift_ms),
        lease_secs: args.lease_secs,
    });
    let known = Arc::new(
        (0..args.streams)
            .map(|_| AtomicU64::new(0))
            .collect::<Vec<_>>(),
    );
    let mut clients = Vec::new();
    for client in 0..workload.clients {
        clients.push(tokio::spawn(claimant(
            context.clone(),
            workload.clone(),
            client,
        )));
    }
    for client in 0..args.sequence_clients {
        clients.push(tokio::spawn(consumer(
            context.clone(),
            known.clone(),
            client,
        )));
    }

    let at = |fraction: f64| started + Duration::from_secs_f64(args.phase_secs as f64 * fraction);
    let script = &args.target.local_cassandra;
    match fault {
        Fault::Steady
        | Fault::CasTimeouts
        | Fault::WireFaults
        | Fault::ClockSkew
        | Fault::ClockSkewBeyond => {}
        Fault::NodeRestart => {
            tokio::time::sleep_until(at(0.2)).await;
            local_cluster::run(script, &["stop-node", "2"]).await?;
            log(&mut events, "node 2 stopped".into());
            tokio::time::sleep_until(at(0.45)).await;
            local_cluster::run(script, &["start-node", "2"]).await?;
            log(&mut events, "node 2 started".into());
        }
        Fault::TwoNodesDown => {
            tokio::time::sleep_until(at(0.2)).await;
            local_cluster::run(script, &["stop-node", "2"]).await?;
            local_cluster::run(script, &["stop-node", "3"]).await?;
            log(&mut events, "nodes 2 and 3 stopped".into());
            tokio::time::sleep_until(at(0.45)).await;
            local_cluster::run(script, &["start-node", "2"]).await?;
            local_cluster::run(script, &["start-node", "3"]).await?;
            log(&mut events, "nodes 2 and 3 started".into());
        }
        Fault::InstanceKill => {
            tokio::time::sleep_until(at(0.3)).await;
            let victim = &mut instances[0];
            let counted_before_kill = victim.kill().await;
            log(
                &mut events,
                format!("dedupd on port {} killed (SIGKILL)", victim.port),
            );
            tokio::time::sleep_until(at(0.5)).await;
            let replacement = Instance::spawn(
                victim.port,
                victim.wiring.clone(),
                args.target.keyspace.name.as_str(),
                victim.log.clone(),
                counted_before_kill,
            )
            .await?;
            instances[0] = replacement;
            log(&mut events, "dedupd restarted on the same port".into());
        }
    }

    let mut history = History::default();
    for client in clients {
        history.merge(client.await.context("a checker client panicked")?);
    }
    log(&mut events, "clients done".into());
    let mut unknown_outcomes: BTreeMap<String, f64> = BTreeMap::new();
    for instance in instances {
        for (name, value) in instance.stop().await {
            *unknown_outcomes.entry(name).or_default() += value;
        }
    }
    let injected = match proxy {
        Some(proxy) => Some(proxy.finish().await?),
        None => None,
    };
    std::fs::write(
        work_dir.join(format!("{phase}-history.json")),
        serde_json::to_string(&history)?,
    )?;
    let figures = history.figures();
    let mut violations = history.violations();
    if figures.grants == 0 || figures.sequence_accepted == 0 {
        violations.push("the phase made no progress: no grant or no accepted number".into());
    }
    if fault == Fault::TwoNodesDown && figures.unavailable_503 == 0 {
        violations
            .push("two nodes were down but no request got 503: the fault did not bite".into());
    }
    if fault == Fault::CasTimeouts && unknown_outcomes.is_empty() {
        violations.push("failpoints were armed but no unknown outcome was resolved".into());
    }
    if let Some(injected) = injected
        && (injected.total() == 0 || unknown_outcomes.is_empty())
    {
        violations.push(format!(
            "the proxy's faults did not bite: {injected:?}, unknown outcomes {unknown_outcomes:?}"
        ));
    }
    // Beyond the margin the guarantee is expected to break, and only as an
    // early takeover does: a key granted while another's lease was live,
    // and that holder then told "duplicate". That is the limit shown.
    let mut beyond_margin = Vec::new();
    if fault == Fault::ClockSkewBeyond {
        let (double_grants, others): (Vec<String>, Vec<String>) =
            violations.into_iter().partition(|violation| {
                violation.starts_with("double grant") || violation.starts_with("lost claim")
            });
        violations = others;
        if double_grants.is_empty() {
            violations.push(format!(
                "a clock {SKEW_BEYOND_MS} ms ahead of a {SKEW_MARGIN_MS} ms margin granted no \
                 key twice: the phase did not show the limit"
            ));
        }
        beyond_margin = double_grants;
    }
    Ok(PhaseReport {
        fault,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        figures,
        unknown_outcomes,
        injected,
        violations,
        beyond_margin,
        events,
    })
}

pub async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let nodes = match &args.target.cql_nodes {
        Some(nodes) => nodes.clone(),
        None => local_cluster::contact_points(&args.target.local_cassandra).await?,
    };
    anyhow::ensure!(
        !nodes.is_empty(),
        "no Cassandra to check against: run `{} up --nodes 3` or set DEDUPD_LAB_CQL_NODES",
        args.target.local_cassandra.display()
    );
    let node_faults = args
        .faults
        .iter()
        .any(|fault| matches!(fault, Fault::NodeRestart | Fault::TwoNodesDown));
    anyhow::ensure!(
        !node_faults || nodes.len() >= 3,
        "the node faults need three nodes; run `{} up --nodes 3`",
        args.target.local_cassandra.display()
    );
    let session = connect_session(&CqlSettings::local(nodes.clone())).await?;
    crate::keyspace::prepare(&session, &args.target.keyspace, &args.replication).await?;
    drop(session);

    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let work_dir = std::env::temp_dir().join(format!("dedupd-check-{run_id}"));
    std::fs::create_dir_all(&work_dir)?;
    eprintln!(
        "dedupd check: {} phases of {} s against {} (logs in {})",
        args.faults.len(),
        args.phase_secs,
        nodes.join(","),
        work_dir.display()
    );
    let mut reports = Vec::new();
    for fault in &args.faults {
        eprintln!("phase {fault:?}…");
        let report = run_phase(&args, *fault, &nodes, &run_id, &work_dir).await?;
        print_phase(&report);
        reports.push(report);
    }
    let violations: usize = reports.iter().map(|r| r.violations.len()).sum();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&reports)?)?;
    }
    println!(
        "\ndedupd check: {} phases, {violations} violations, {:.0} s",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        violations == 0,
        "the guarantee was broken: {violations} violations"
    );
    Ok(())
}

fn print_phase(report: &PhaseReport) {
    let f = &report.figures;
    println!("\n## {:?} ({} s)", report.fault, report.seconds);
    for event in &report.events {
        println!("  {event}");
    }
    println!(
        "  requests {} | grants {} (takeovers {}, re-entrant answers {}) | duplicates {} in progress, {} completed | completions {} | releases {}",
        f.requests,
        f.grants,
        f.takeovers,
        f.reentrant,
        f.duplicates_in_progress,
        f.duplicates_completed,
        f.completions,
        f.releases
    );
    println!(
        "  sequences: {} offers, {} accepted, {} duplicates | 503s {} | no answer {}",
        f.sequence_offers,
        f.sequence_accepted,
        f.sequence_duplicates,
        f.unavailable_503,
        f.no_answer
    );
    if let Some(injected) = &report.injected {
        println!(
            "  injected on the wire: {} LWT answers lost, {} LWT answers made CAS write timeouts, {} requests lost, {} requests landed late, {} connections dropped",
            injected.answers_lost,
            injected.answers_made_cas_timeouts,
            injected.requests_lost,
            injected.requests_landed_late,
            injected.connections_dropped
        );
    }
    if report.unknown_outcomes.is_empty() {
        println!("  unknown outcomes: none");
    } else {
        let listed: Vec<String> = report
            .unknown_outcomes
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        println!(
            "  unknown outcomes (statement/resolution): {}",
            listed.join(", ")
        );
    }
    if report.fault == Fault::ClockSkewBeyond {
        println!(
            "  beyond the margin, as expected: {} double grants or lost claims",
            report.beyond_margin.len()
        );
        for shown in report.beyond_margin.iter().take(3) {
            println!("    {shown}");
        }
    }
    println!("  violations: {}", report.violations.len());
    for violation in report.violations.iter().take(20) {
        println!("    {violation}");
    }
}
