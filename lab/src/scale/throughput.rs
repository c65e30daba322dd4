//! Throughput against concurrency (closed loop) and latency against offered
//! load (open loop), for the raw claim LWT and an HTTP claim of new keys.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use scylla::statement::SerialConsistency;
use serde::{Deserialize, Serialize};

use super::points::{self, OpenPoint};
use super::{Common, ConcurrencyArgs, OpenLoopArgs, Prepared, Report, round};
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

/// The figures of a concurrency or an open-loop sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Swept<S> {
    pub secs_per_point: f64,
    pub series: Vec<S>,
}

pub type ConcurrencyReport = Report<Swept<ClosedSeries>>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenSeries {
    pub operation: String,
    pub p99_bound_ms: f64,
    /// The highest offered rate served within the bounds.
    pub knee_per_s: Option<f64>,
    pub points: Vec<OpenPoint>,
}

pub type OpenLoopReport = Report<Swept<OpenSeries>>;

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

/// The raw LWT and the HTTP claim, both on new keys of this run, the
/// dedupd process the HTTP one goes through, and the next key index.
struct Operations {
    prepared: Prepared,
    raw: Operation,
    http: Operation,
    server: ServerProcess,
    next_index: Cell<u64>,
}

impl Operations {
    /// Prepares the keyspace, starts dedupd and warms both up; `keys`
    /// names this sweep's keys.
    async fn start(common: &Common, keys: &str) -> anyhow::Result<Self> {
        let prepared = super::prepare(&common.setup).await?;
        let target = &common.setup.target;
        let keyspace = &target.keyspace.name;
        let binary = target.dedupd.resolve()?;
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
        let raw = driver.claim_row_lwt(format!("scale-{run}-raw"), format!("{keys}-raw"));
        let http = HttpApi::new(server.base.clone()).claim_new(
            format!("scale-{run}-http"),
            format!("{keys}-http"),
            dedupd_client::ClaimOptions::new().ttl(std::time::Duration::from_secs(3600)),
        );
        let operations = Self {
            prepared,
            raw,
            http,
            server,
            next_index: Cell::new(0),
        };
        operations.warm_up().await;
        Ok(operations)
    }

    fn named(&self) -> [(&'static str, &Operation); 2] {
        [(RAW, &self.raw), (HTTP, &self.http)]
    }

    /// The first of `count` key indices no earlier call has handed out.
    fn indices(&self, count: u64) -> u64 {
        let first = self.next_index.get();
        self.next_index.set(first + count);
        first
    }

    /// A second of each at 16 clients: connections, prepared statements,
    /// the JIT.
    async fn warm_up(&self) {
        for (_, operation) in self.named() {
            let first = self.indices(1_000_000);
            let _ = closed_loop(operation, first, 1_000_000, 16, Duration::from_secs(1)).await;
        }
    }

    /// Stops dedupd and writes the sweep's series.
    async fn finish<S: Serialize>(
        self,
        common: &Common,
        sweep: &str,
        series: Vec<S>,
    ) -> anyhow::Result<()> {
        self.server.stop().await;
        let figures = Swept {
            secs_per_point: common.secs_per_point,
            series,
        };
        let name = self.prepared.sized(sweep);
        self.prepared
            .write_report(&common.setup.out.out, sweep, &name, figures)
    }
}

pub async fn concurrency(args: ConcurrencyArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let operations = Operations::start(common, "closed").await?;
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
            let first = operations.indices(100_000_000);
            let measured = closed_loop(operation, first, 100_000_000, clients, deadline).await;
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
    operations.finish(common, "concurrency", series).await
}

pub async fn open(args: OpenLoopArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let operations = Operations::start(common, "open").await?;
    let rates = points::offered_rates(args.start_rate, args.factor, args.max_rate);
    let mut series = Vec::new();
    for (name, operation) in operations.named() {
        let mut points = Vec::new();
        for &rate in &rates {
            let count = (rate * common.secs_per_point).ceil().max(1.0) as u64;
            let first = operations.indices(count);
            let measured = open_loop(operation, first, count, rate, 4096).await;
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
    operations.finish(common, "open-loop", series).await
}
