//! `dedupd-lab soak`: a bounded soak. Steady load through the claim API for a
//! few minutes, watching memory and tail latency window by window; then
//! load far beyond what the service admits, where the excess must be
//! refused fast (503 with Retry-After) rather than queued.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use dedupd_client::{ClaimAnswer, ClaimOptions, Client, RetryBudget};
use serde::Serialize;
use tokio::time::Instant;

use super::load::{new_histogram, open_loop};
use super::report::{self, Check};
use super::scenarios::HttpApi;
use crate::cql::wait_for_cql;
use crate::dedupd_process::ServerProcess;
use crate::target::Target;
use crate::{local_cluster, metrics_text};
use dedupd::store::CqlSettings;
use dedupd::store::migrate::Replication;

#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    #[command(flatten)]
    pub target: Target,
    /// Steady claims per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Steady windows, and their length.
    #[arg(long, default_value_t = 12)]
    pub windows: u64,
    #[arg(long, default_value_t = 10)]
    pub window_secs: u64,
    /// Overload: this many concurrent clients against a server that admits
    /// `--overload-permits` requests to the database at once.
    #[arg(long, default_value_t = 256)]
    pub overload_clients: usize,
    #[arg(long, default_value_t = 16)]
    pub overload_permits: usize,
    #[arg(long, default_value_t = 20)]
    pub overload_secs: u64,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Window {
    index: u64,
    count: u64,
    errors: u64,
    p50_us: u64,
    p99_us: u64,
    rss_mib: f64,
}

#[derive(Debug, Serialize)]
struct Overload {
    clients: usize,
    permits: usize,
    accepted: u64,
    refused: u64,
    refused_without_retry_after: u64,
    other: u64,
    accepted_p50_us: u64,
    accepted_p99_us: u64,
    refused_p50_us: u64,
    refused_p99_us: u64,
    /// Server-side mean handling time, from the service's own histogram:
    /// the client-side figures above also hold the load generator's own
    /// queueing on the same two cores.
    server_mean_accepted_us: u64,
    server_mean_refused_us: u64,
}

#[derive(Debug, Serialize)]
struct SoakReport {
    windows: Vec<Window>,
    overload: Overload,
    /// Last window's p99 over the first's (flat: near 1).
    p99_drift: f64,
    /// RSS at the end minus after the first window, MiB.
    rss_growth_mib: f64,
    checks: Vec<Check>,
}

fn quantile(histogram: &hdrhistogram::Histogram<u64>, q: f64) -> u64 {
    if histogram.is_empty() {
        0
    } else {
        histogram.value_at_quantile(q)
    }
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let nodes = match &args.target.cql_nodes {
        Some(nodes) => nodes.clone(),
        None => local_cluster::up(&args.target.local_cassandra).await?,
    };
    let settings = CqlSettings::local(nodes);
    let keyspace = &args.target.keyspace.name;
    let session = wait_for_cql(&settings).await?;
    crate::keyspace::prepare(&session, &args.target.keyspace, &Replication::Everywhere(1)).await?;
    drop(session);
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    // Steady: open loop at a fixed rate, one measurement per window.
    let binary = args.target.dedupd.resolve()?;
    let nodes = &settings.nodes;
    let server = ServerProcess::spawn(&binary, nodes, keyspace, 4096).await?;
    let api = HttpApi::new(server.base.clone());
    let claim = api.claim_new(
        format!("soak-{run_id}"),
        format!("{run_id}-steady"),
        ClaimOptions::new()
            .ttl(Duration::from_secs(600))
            .complete(true),
    );
    let per_window = (args.rate * args.window_secs as f64) as u64;
    let mut windows = Vec::new();
    for index in 0..args.windows {
        let measured = open_loop(&claim, index * per_window, per_window, args.rate, 4096).await;
        let window = Window {
            index,
            count: measured.count(),
            errors: measured.errors,
            p50_us: quantile(&measured.latency, 0.5),
            p99_us: quantile(&measured.latency, 0.99),
            rss_mib: server.rss_mib(),
        };
        eprintln!(
            "window {index}: {} claims, {} errors, p50 {:.2} ms, p99 {:.2} ms, rss {} MiB",
            window.count,
            window.errors,
            window.p50_us as f64 / 1000.0,
            window.p99_us as f64 / 1000.0,
            window.rss_mib
        );
        windows.push(window);
    }
    server.stop().await;

    // Overload: far more concurrent clients than database permits.
    let server = ServerProcess::spawn(&binary, nodes, keyspace, args.overload_permits).await?;
    let mut overload = overload(&server.base, &args, &run_id).await?;
    let text = server.metrics().await?;
    overload.server_mean_accepted_us = server_mean_us(&text, 201);
    overload.server_mean_refused_us = server_mean_us(&text, 503);
    server.stop().await;
    eprintln!("overload: {overload:?}");

    let first = windows.first().context("no windows ran")?;
    let last = windows.last().context("no windows ran")?;
    let p99_drift = last.p99_us as f64 / first.p99_us.max(1) as f64;
    let rss_growth_mib = last.rss_mib - first.rss_mib;
    let errors: u64 = windows.iter().map(|w| w.errors).sum();
    let checks = vec![
        Check::new(
            "steady load had no errors",
            errors == 0,
            format!("{errors} errors"),
        ),
        // Loose bounds: a single slow window on a shared machine must not
        // fail the run; a leak or a queue that grows would.
        Check::new(
            "p99 stayed flat",
            p99_drift <= 3.0,
            format!("last window's p99 is {p99_drift:.2}x the first's (at most 3)"),
        ),
        Check::new(
            "memory stayed flat",
            rss_growth_mib <= 64.0,
            format!("{rss_growth_mib:.1} MiB growth after the first window (at most 64)"),
        ),
        Check::new(
            "overload was refused, not queued",
            overload.refused > 0
                && overload.refused_without_retry_after == 0
                && overload.other == 0,
            format!(
                "{} refused (all with Retry-After: {}), {} other answers",
                overload.refused,
                overload.refused_without_retry_after == 0,
                overload.other
            ),
        ),
        Check::new(
            "refusals are fast",
            overload.server_mean_refused_us * 10 <= overload.server_mean_accepted_us,
            format!(
                "server-side mean: refused {} µs, accepted {} µs (refused at most a tenth)",
                overload.server_mean_refused_us, overload.server_mean_accepted_us
            ),
        ),
    ];
    let report = SoakReport {
        windows,
        overload,
        p99_drift,
        rss_growth_mib,
        checks,
    };
    report::print_checks(&report.checks);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    let failed = report::failed(&report.checks);
    anyhow::ensure!(
        failed.is_empty(),
        "soak checks failed: {}",
        failed.join(", ")
    );
    Ok(())
}

async fn overload(base: &str, args: &SoakArgs, run_id: &str) -> anyhow::Result<Overload> {
    // No retries: every refusal is counted as it came.
    let client = Client::builder(base)
        .retry_budget(RetryBudget::none())
        .request_timeout(Duration::from_secs(120))
        .build()?;
    let options = Arc::new(
        ClaimOptions::new()
            .ttl(Duration::from_secs(600))
            .complete(true)
            .claimant(format!("soak-{run_id}")),
    );
    let namespace = Arc::new(format!("soak-{run_id}"));
    let until = Instant::now() + Duration::from_secs(args.overload_secs);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.overload_clients {
        let client = client.clone();
        let (options, namespace) = (options.clone(), namespace.clone());
        let next = next.clone();
        let key_prefix = format!("{run_id}-over-");
        workers.push(tokio::spawn(async move {
            let (mut accepted, mut refused) = (new_histogram(), new_histogram());
            let (mut no_retry_after, mut other) = (0u64, 0u64);
            while Instant::now() < until {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let key = format!("{key_prefix}{index}");
                let sent = Instant::now();
                let answer = client.claim(&namespace, &key, &options).await;
                let micros = sent.elapsed().as_micros() as u64;
                match answer {
                    Ok(ClaimAnswer::Acquired(_)) => accepted.saturating_record(micros.max(1)),
                    Err(error) if error.status() == Some(503) => {
                        refused.saturating_record(micros.max(1));
                        no_retry_after += u64::from(!error.has_retry_after());
                    }
                    _ => other += 1,
                }
            }
            (accepted, refused, no_retry_after, other)
        }));
    }
    let (mut accepted, mut refused) = (new_histogram(), new_histogram());
    let (mut no_retry_after, mut other) = (0, 0);
    for worker in workers {
        let (a, r, n, o) = worker.await?;
        let _ = accepted.add(&a);
        let _ = refused.add(&r);
        no_retry_after += n;
        other += o;
    }
    Ok(Overload {
        clients: args.overload_clients,
        permits: args.overload_permits,
        accepted: accepted.len(),
        refused: refused.len(),
        refused_without_retry_after: no_retry_after,
        other,
        accepted_p50_us: quantile(&accepted, 0.5),
        accepted_p99_us: quantile(&accepted, 0.99),
        refused_p50_us: quantile(&refused, 0.5),
        refused_p99_us: quantile(&refused, 0.99),
        server_mean_accepted_us: 0,
        server_mean_refused_us: 0,
    })
}

/// The mean server-side time of single claims answered `status`, from the
/// OpenMetrics text (the histogram's sum over its count).
fn server_mean_us(text: &str, status: u16) -> u64 {
    let status = status.to_string();
    let labels = [
        ("method", "POST"),
        ("route", "/v1/namespaces/{ns}/claims/{key}"),
        ("status", status.as_str()),
    ];
    let series = |suffix: &str| {
        metrics_text::value(
            text,
            &format!("dedupd_http_request_duration_seconds_{suffix}"),
            &labels,
        )
    };
    let count = series("count");
    if count == 0.0 {
        return 0;
    }
    (series("sum") / count * 1e6).round() as u64
}
