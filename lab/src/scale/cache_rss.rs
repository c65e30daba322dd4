//! dedupd's resident memory against the completed claims it has cached.
//!
//! A `dedupd serve` with a small completed-claims cache (`--cache-mib`) is
//! fed completed claims in steps through the batch API; after each step
//! its RSS is read from /proc, and a sample of the keys completed so far is
//! redelivered to see what share the cache still answers. Past the cache's
//! capacity RSS should level off while the share falls: the bound holds.
//! The same run with the cache off is the baseline (what the rest of the
//! process, its allocator and its connections take).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use super::points::slope;
use super::{CacheRssArgs, Machine, round};
use crate::bench::scenarios::HttpApi;
use crate::dedupd_process::free_port;
use crate::http_client::{HttpClient, Settings};
use crate::metrics_text;
use dedupd::domain::KeyspaceName;

/// The cache's own estimate of an entry's weight (see
/// `src/claims/completed_cache.rs`): a fixed 160 bytes plus the namespace
/// and the key. Only used to say where the capacity should be reached.
pub fn entry_weight(namespace: &str, key: &str) -> u64 {
    160 + namespace.len() as u64 + key.len() as u64
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RssPoint {
    pub completed_claims: usize,
    pub rss_kib: u64,
    /// Of the redelivered sample, the share the cache answered.
    pub cache_hit_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RssSeries {
    pub cache_mib: u64,
    /// Claims the cache's weight bound should hold (its own estimate).
    pub estimated_capacity_claims: Option<u64>,
    /// RSS growth per completed claim below that capacity.
    pub bytes_per_claim_below_capacity: Option<f64>,
    pub points: Vec<RssPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheRssReport {
    pub sweep: String,
    pub machine: Machine,
    pub step_claims: usize,
    pub series: Vec<RssSeries>,
    pub duration_secs: f64,
}

/// A `dedupd serve` with the cache size this sweep asks for (the bench's
/// `ServerProcess` runs the default one).
struct Served {
    base: String,
    pid: u32,
    child: Child,
    http: HttpClient,
}

impl Served {
    async fn spawn(
        binary: &Path,
        nodes: &[String],
        keyspace: &KeyspaceName,
        cache_mib: u64,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("dedupd-lab-scale-{port}.log"));
        let log_file = std::fs::File::create(&log)?;
        let mut command = Command::new(binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DEDUPD_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--cql-nodes", &nodes.join(",")])
            .args(["--keyspace", keyspace.as_str()])
            .args(["--completed-cache-mib", &cache_mib.to_string()])
            .env("DEDUPD_SHUTDOWN_DELAY_SECS", "0")
            .env("RUST_LOG", "warn,scylla=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} serve", binary.display()))?;
        let pid = child.id().context("dedupd serve exited at once")?;
        let mut served = Self {
            base: format!("http://127.0.0.1:{port}"),
            pid,
            child,
            http: HttpClient::new(Settings::default()),
        };
        for _ in 0..300 {
            if let Some(status) = served.child.try_wait()? {
                anyhow::bail!("dedupd serve exited with {status}; see {}", log.display());
            }
            let ready = served
                .http
                .get(
                    &format!("{}/readyz", served.base),
                    Some(Duration::from_secs(2)),
                )
                .await;
            if ready.is_ok_and(|reply| reply.status == 200) {
                return Ok(served);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("dedupd serve not ready within 30 s; see {}", log.display())
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|status| {
                status.lines().find_map(|line| {
                    let kib = line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?;
                    kib.trim().parse().ok()
                })
            })
            .unwrap_or(0)
    }

    async fn cache_hits(&self) -> anyhow::Result<f64> {
        let reply = self
            .http
            .get(
                &format!("{}/metrics", self.base),
                Some(Duration::from_secs(5)),
            )
            .await
            .map_err(|failure| anyhow::anyhow!("GET /metrics: {failure}"))?;
        let text = String::from_utf8_lossy(&reply.body);
        Ok(metrics_text::value(
            &text,
            "dedupd_completed_cache_total",
            &[("result", "hit")],
        ))
    }

    async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Completes `keys` through the batch API, four batches at a time.
async fn complete(api: &HttpApi, namespace: &str, keys: &[String]) -> anyhow::Result<()> {
    let parts: Vec<_> = keys
        .chunks(keys.len().div_ceil(4).max(1))
        .map(|part| api.preload(namespace, part))
        .collect();
    for result in futures::future::join_all(parts).await {
        result?;
    }
    Ok(())
}

/// Redelivers `sample` one by one and returns the share the cache answered.
async fn hit_share(
    served: &Served,
    api: &HttpApi,
    namespace: &str,
    sample: &[String],
) -> anyhow::Result<Option<f64>> {
    if sample.is_empty() {
        return Ok(None);
    }
    let before = served.cache_hits().await?;
    let redeliveries = api.redeliveries(namespace.to_owned(), sample.to_vec().into());
    for index in 0..sample.len() as u64 {
        redeliveries(index)
            .await
            .map_err(|kind| anyhow::anyhow!("redelivery failed: {kind}"))?;
    }
    let hits = served.cache_hits().await? - before;
    Ok(Some(round(hits / sample.len() as f64, 3)))
}

/// Up to `size` keys spread evenly over `keys`.
fn spread(keys: &[String], size: usize) -> Vec<String> {
    if keys.is_empty() {
        return Vec::new();
    }
    let step = (keys.len() / size.max(1)).max(1);
    keys.iter().step_by(step).take(size).cloned().collect()
}

async fn one_series(
    args: &CacheRssArgs,
    prepared: &super::Prepared,
    cache_mib: u64,
) -> anyhow::Result<RssSeries> {
    let keyspace = &args.common.target.keyspace.name;
    let binary = args.common.target.dedupd.resolve()?;
    let served = Served::spawn(&binary, &prepared.nodes, keyspace, cache_mib).await?;
    let api = HttpApi::new(served.base.clone());
    let namespace = format!("scale-{}-rss{cache_mib}", prepared.run_id);
    let key = |index: usize| format!("rss-{}-{cache_mib}-{index:07}", prepared.run_id);
    // Warm up: connections, statements, the allocator's first arenas.
    let warm: Vec<String> = (0..500).map(|i| format!("warm-{}", key(i))).collect();
    complete(&api, &namespace, &warm).await?;
    let mut completed: Vec<String> = Vec::new();
    let mut points = Vec::new();
    for step in 0..=args.steps {
        if step > 0 {
            let keys: Vec<String> = (completed.len()..completed.len() + args.step_claims)
                .map(key)
                .collect();
            complete(&api, &namespace, &keys).await?;
            completed.extend(keys);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_kib = served.rss_kib();
        let cache_hit_share = if cache_mib == 0 {
            None
        } else {
            hit_share(&served, &api, &namespace, &spread(&completed, 200)).await?
        };
        eprintln!(
            "cache {cache_mib} MiB: {:>7} completed claims, RSS {:>7.1} MiB, hit share {cache_hit_share:?}",
            completed.len(),
            rss_kib as f64 / 1024.0
        );
        points.push(RssPoint {
            completed_claims: completed.len(),
            rss_kib,
            cache_hit_share,
        });
    }
    served.stop().await;
    let estimated_capacity_claims =
        (cache_mib > 0).then(|| (cache_mib << 20) / entry_weight(&namespace, &key(0)));
    let below: Vec<(f64, f64)> = points
        .iter()
        .filter(|point| {
            estimated_capacity_claims
                .is_none_or(|capacity| point.completed_claims as u64 <= capacity)
        })
        .map(|point| (point.completed_claims as f64, point.rss_kib as f64 * 1024.0))
        .collect();
    Ok(RssSeries {
        cache_mib,
        estimated_capacity_claims,
        bytes_per_claim_below_capacity: slope(&below).map(|bytes| round(bytes, 1)),
        points,
    })
}

pub async fn run(args: CacheRssArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let prepared = super::prepare(&args.common.target, &args.common.replication).await?;
    let mut series = vec![one_series(&args, &prepared, args.cache_mib).await?];
    if !args.no_baseline && args.cache_mib > 0 {
        series.push(one_series(&args, &prepared, 0).await?);
    }
    let report = CacheRssReport {
        sweep: "cache-rss".into(),
        machine: prepared.machine.clone(),
        step_claims: args.step_claims,
        series,
        duration_secs: round(started.elapsed().as_secs_f64(), 1),
    };
    super::write_json(&args.common.out.out, "cache-rss", &report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_sample_covers_old_and_new_keys() {
        let keys: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let sample = spread(&keys, 10);
        assert_eq!(sample.len(), 10);
        assert_eq!(sample[0], "0");
        assert_eq!(sample[9], "900");
        assert_eq!(spread(&keys[..3], 10).len(), 3);
        assert!(spread(&[], 10).is_empty());
    }
}
