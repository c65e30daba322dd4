//! Throughput against concurrency (closed loop) and latency against offered
//! load (open loop), for the raw claim LWT and an HTTP claim of new keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scylla::statement::SerialConsistency;
use serde::{Deserialize, Serialize};

use super::points::{self, OpenPoint};
use super::{Common, ConcurrencyArgs, Machine, OpenLoopArgs, Prepared, round, size_label};
use crate::bench::load::{Measurement, Operation, closed_loop, open_loop};
use crate::bench::scenarios::{HttpApi, RawDriver};
use crate::dedupd_process::ServerProcess;

/// The two ways of claiming a new key the sweeps compare.
pub const RAW: &str = "raw LWT";
pub const HTTP: &str = "HTTP claim";

/// One closed-loop point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClosedPoint {
    pub clients: usize,
    pub throughput_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ok: u64,
    pub errors: u64,
    pub error_kinds: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClosedSeries {
    pub operation: String,
    pub points: Vec<ClosedPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConcurrencyReport {
    pub sweep: String,
    pub machine: Machine,
    pub secs_per_point: f64,
    pub series: Vec<ClosedSeries>,
    pub duration_secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenSeries {
    pub operation: String,
    pub p99_bound_ms: f64,
    /// The highest offered rate served within the bounds.
    pub knee_per_s: Option<f64>,
    pub points: Vec<OpenPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenLoopReport {
    pub sweep: String,
    pub machine: Machine,
    pub secs_per_point: f64,
    pub series: Vec<OpenSeries>,
    pub duration_secs: f64,
}

fn millis(measurement: &Measurement, quantile: f64) -> f64 {
    // No answer, no latency (charts skip points without answers).
    if measurement.count() == 0 {
        return 0.0;
    }
    round(
        measurement.latency.value_at_quantile(quantile) as f64 / 1000.0,
        2,
    )
}

/// The raw LWT and the HTTP claim, both on new keys of this run, and the
/// dedupd process the HTTP one goes through.
struct Operations {
    raw: Operation,
    http: Operation,
    server: ServerProcess,
}

impl Operations {
    async fn start(common: &Common, prepared: &Prepared, sweep: &str) -> anyhow::Result<Self> {
        let keyspace = &common.target.keyspace.name;
        let binary = common.target.dedupd.resolve()?;
        let driver = Arc::new(
            RawDriver::prepare(
                prepared.session.clone(),
                keyspace,
                SerialConsistency::LocalSerial,
            )
            .await?,
        );
        let server = ServerProcess::spawn(&binary, &prepared.nodes, keyspace, 4096).await?;
        let run = &prepared.run_id;
        let raw = driver.claim_row_lwt(format!("scale-{run}-raw"), format!("{sweep}-raw"));
        let http = HttpApi::new(server.base.clone()).claim_new(
            format!("scale-{run}-http"),
            format!("{sweep}-http"),
            serde_json::json!({"ttl_secs": 3600}),
        );
        Ok(Self { raw, http, server })
    }

    fn named(&self) -> [(&'static str, &Operation); 2] {
        [(RAW, &self.raw), (HTTP, &self.http)]
    }

    /// A second of each at 16 clients: connections, prepared statements,
    /// the JIT.
    async fn warm_up(&self, next_index: &mut u64) {
        for (_, operation) in self.named() {
            let _ = closed_loop(
                operation,
                *next_index,
                1_000_000,
                16,
                Duration::from_secs(1),
            )
            .await;
            *next_index += 1_000_000;
        }
    }
}

pub async fn concurrency(args: ConcurrencyArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let common = &args.common;
    let prepared = super::prepare(&common.target, &common.replication).await?;
    let operations = Operations::start(common, &prepared, "closed").await?;
    let mut next_index = 0;
    operations.warm_up(&mut next_index).await;
    let deadline = Duration::from_secs_f64(common.secs_per_point);
    let mut series: Vec<ClosedSeries> = operations
        .named()
        .iter()
        .map(|(name, _)| ClosedSeries {
            operation: (*name).to_owned(),
            points: Vec::new(),
        })
        .collect();
    // Both operations at each client count before the next: drift of the
    // shared machine lands on both alike.
    for clients in points::client_counts(args.max_clients) {
        for (index, (name, operation)) in operations.named().into_iter().enumerate() {
            let measured = closed_loop(operation, next_index, 100_000_000, clients, deadline).await;
            next_index += 100_000_000;
            let point = ClosedPoint {
                clients,
                throughput_per_s: round(measured.throughput_per_s(), 1),
                p50_ms: millis(&measured, 0.5),
                p99_ms: millis(&measured, 0.99),
                ok: measured.count(),
                errors: measured.errors,
                error_kinds: measured.error_kinds.clone(),
            };
            eprintln!(
                "{name:>10} c{clients:<3} {:>8.1}/s p50 {:>7.2} ms p99 {:>7.2} ms errors {}",
                point.throughput_per_s, point.p50_ms, point.p99_ms, point.errors
            );
            series[index].points.push(point);
        }
    }
    operations.server.stop().await;
    let report = ConcurrencyReport {
        sweep: "concurrency".into(),
        machine: prepared.machine.clone(),
        secs_per_point: common.secs_per_point,
        series,
        duration_secs: round(started.elapsed().as_secs_f64(), 1),
    };
    let name = format!("concurrency-{}", size_label(prepared.nodes.len()));
    super::write_json(&common.out.out, &name, &report)
}

pub async fn open(args: OpenLoopArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let common = &args.common;
    let prepared = super::prepare(&common.target, &common.replication).await?;
    let operations = Operations::start(common, &prepared, "open").await?;
    let mut next_index = 0;
    operations.warm_up(&mut next_index).await;
    let rates = points::offered_rates(args.start_rate, args.factor, args.max_rate);
    let mut series = Vec::new();
    for (name, operation) in operations.named() {
        let mut points = Vec::new();
        for &rate in &rates {
            let count = (rate * common.secs_per_point).ceil().max(1.0) as u64;
            let measured = open_loop(operation, next_index, count, rate, 4096).await;
            next_index += count;
            let point = OpenPoint {
                offered_per_s: rate,
                achieved_per_s: round(measured.throughput_per_s(), 1),
                p50_ms: millis(&measured, 0.5),
                p99_ms: millis(&measured, 0.99),
                ok: measured.count(),
                errors: measured.errors,
            };
            eprintln!(
                "{name:>10} {rate:>7.0}/s offered {:>8.1}/s served p50 {:>7.2} ms p99 {:>8.2} ms errors {}",
                point.achieved_per_s, point.p50_ms, point.p99_ms, point.errors
            );
            points.push(point);
            if points::sweep_done(&points, args.p99_bound_ms) {
                break;
            }
            // Let the queue of the last point drain before the next.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        series.push(OpenSeries {
            operation: name.to_owned(),
            p99_bound_ms: args.p99_bound_ms,
            knee_per_s: points::knee(&points, args.p99_bound_ms),
            points,
        });
    }
    operations.server.stop().await;
    let report = OpenLoopReport {
        sweep: "open-loop".into(),
        machine: prepared.machine.clone(),
        secs_per_point: common.secs_per_point,
        series,
        duration_secs: round(started.elapsed().as_secs_f64(), 1),
    };
    let name = format!("open-loop-{}", size_label(prepared.nodes.len()));
    super::write_json(&common.out.out, &name, &report)
}
