//! dedupd's resident memory against the completed claims it has cached.
//!
//! A `dedupd serve` with a small completed-claims cache (`--cache-mib`) is
//! fed completed claims in steps through the batch API; after each step
//! its RSS is read from /proc, and a sample of the keys completed so far is
//! redelivered to see what share the cache still answers. Past the cache's
//! capacity RSS should level off while the share falls: the bound holds.
//! The same run with the cache off is the baseline (what the rest of the
//! process, its allocator and its connections take).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::points::slope;
use super::{CacheRssArgs, Report, round};
use crate::bench::scenarios::HttpApi;
use crate::dedupd_process::ServerProcess;
use crate::metrics_text;

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

/// The figures of a cache-rss sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheRss {
    pub step_claims: usize,
    pub series: Vec<RssSeries>,
}

pub type CacheRssReport = Report<CacheRss>;

/// The serve default of `--max-in-flight`, which this sweep does not vary.
const MAX_IN_FLIGHT: usize = 512;

/// Completed claims the cache has answered so far.
async fn cache_hits(server: &ServerProcess) -> anyhow::Result<f64> {
    Ok(metrics_text::value(
        &server.metrics().await?,
        "dedupd_completed_cache_total",
        &[("result", "hit")],
    ))
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
    server: &ServerProcess,
    api: &HttpApi,
    namespace: &str,
    sample: &[String],
) -> anyhow::Result<Option<f64>> {
    if sample.is_empty() {
        return Ok(None);
    }
    let before = cache_hits(server).await?;
    let redeliveries = api.redeliveries(namespace.to_owned(), sample.to_vec().into());
    for index in 0..sample.len() as u64 {
        redeliveries(index)
            .await
            .map_err(|kind| anyhow::anyhow!("redelivery failed: {kind}"))?;
    }
    let hits = cache_hits(server).await? - before;
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
    let target = &args.common.setup.target;
    let binary = target.dedupd.resolve()?;
    let server = ServerProcess::spawn_with(
        &binary,
        &prepared.nodes,
        &target.keyspace.name,
        MAX_IN_FLIGHT,
        &["--completed-cache-mib".to_owned(), cache_mib.to_string()],
    )
    .await?;
    let api = HttpApi::new(server.base.clone());
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
        let rss_kib = server.rss_kib();
        let cache_hit_share = if cache_mib == 0 {
            None
        } else {
            hit_share(&server, &api, &namespace, &spread(&completed, 200)).await?
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
    server.stop().await;
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
    let prepared = super::prepare(&args.common.setup).await?;
    let mut series = vec![one_series(&args, &prepared, args.cache_mib).await?];
    if !args.no_baseline && args.cache_mib > 0 {
        series.push(one_series(&args, &prepared, 0).await?);
    }
    let figures = CacheRss {
        step_claims: args.step_claims,
        series,
    };
    prepared.write_report(
        &args.common.setup.out.out,
        "cache-rss",
        "cache-rss",
        figures,
    )
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
