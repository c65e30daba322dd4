//! What the served dedupd counts itself, read from its `/metrics` around
//! the measured slices of a scenario: its completed-claims cache, and how
//! long its claims and their LWTs took by its own clocks. The load
//! generator sees a claim's whole round trip; these split it into the
//! service's own handling and the statement it waited for.

use crate::dedupd_process::ServerProcess;
use crate::metrics_text;

use super::report::Ratios;

/// The claim route as the request metrics label it.
const CLAIM_ROUTE: &str = "/v1/namespaces/{ns}/claims/{key}";

/// Counters of the served instance, or their growth over some slices.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerCounts {
    pub cache_hits: f64,
    pub cache_misses: f64,
    /// Claims answered 201 (a new key acquired), and the seconds they took
    /// from request to answer.
    pub acquired: f64,
    pub acquired_seconds: f64,
    /// Claim LWTs (`claim_insert`), and the seconds the driver took for them.
    pub claim_lwts: f64,
    pub claim_lwt_seconds: f64,
}

impl ServerCounts {
    pub async fn read(server: &ServerProcess) -> anyhow::Result<Self> {
        Ok(Self::parse(&server.metrics().await?))
    }

    fn parse(text: &str) -> Self {
        let cache = |result| {
            metrics_text::value(text, "dedupd_completed_cache_total", &[("result", result)])
        };
        let acquired = |series| {
            metrics_text::value(
                text,
                series,
                &[
                    ("method", "POST"),
                    ("route", CLAIM_ROUTE),
                    ("status", "201"),
                ],
            )
        };
        let lwt = |series| metrics_text::value(text, series, &[("statement", "claim_insert")]);
        Self {
            cache_hits: cache("hit"),
            cache_misses: cache("miss"),
            acquired: acquired("dedupd_http_request_duration_seconds_count"),
            acquired_seconds: acquired("dedupd_http_request_duration_seconds_sum"),
            claim_lwts: lwt("dedupd_store_latency_seconds_count"),
            claim_lwt_seconds: lwt("dedupd_store_latency_seconds_sum"),
        }
    }

    /// What grew from `before` to `self`.
    pub fn since(self, before: Self) -> Self {
        self.each(before, |now, then| now - then)
    }

    pub fn add(&mut self, other: Self) {
        *self = self.each(other, |total, more| total + more);
    }

    /// `op` on each counter of `self` and `other`.
    fn each(self, other: Self, op: fn(f64, f64) -> f64) -> Self {
        Self {
            cache_hits: op(self.cache_hits, other.cache_hits),
            cache_misses: op(self.cache_misses, other.cache_misses),
            acquired: op(self.acquired, other.acquired),
            acquired_seconds: op(self.acquired_seconds, other.acquired_seconds),
            claim_lwts: op(self.claim_lwts, other.claim_lwts),
            claim_lwt_seconds: op(self.claim_lwt_seconds, other.claim_lwt_seconds),
        }
    }
}

/// The counts a run kept: over the duplicate-heavy slices, and over the
/// new-key slices at 16 workers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counted {
    pub dup_heavy: ServerCounts,
    pub new_keys_c16: ServerCounts,
}

impl Counted {
    /// Adds what dedupd counted to the figures computed from the scenarios.
    pub fn fill(&self, ratios: &mut Ratios) {
        let round = |value: f64, unit: f64| (value * unit).round() / unit;
        let lookups = self.dup_heavy.cache_hits + self.dup_heavy.cache_misses;
        ratios.completed_cache_hit_share =
            (lookups > 0.0).then(|| round(self.dup_heavy.cache_hits / lookups, 1000.0));
        let new = &self.new_keys_c16;
        let mean_us =
            |seconds: f64, count: f64| (count > 0.0).then(|| round(seconds / count * 1e6, 1.0));
        ratios.server_claim_mean_us_c16 = mean_us(new.acquired_seconds, new.acquired);
        ratios.server_lwt_mean_us_c16 = mean_us(new.claim_lwt_seconds, new.claim_lwts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
dedupd_completed_cache_total{result=\"hit\"} 10
dedupd_completed_cache_total{result=\"miss\"} 5
dedupd_http_request_duration_seconds_sum{method=\"POST\",route=\"/v1/namespaces/{ns}/claims/{key}\",status=\"201\"} 1.0
dedupd_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/namespaces/{ns}/claims/{key}\",status=\"201\"} 100
dedupd_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/namespaces/{ns}/claims/{key}\",status=\"409\"} 7
dedupd_store_latency_seconds_sum{statement=\"claim_insert\"} 0.9
dedupd_store_latency_seconds_count{statement=\"claim_insert\"} 100
dedupd_store_latency_seconds_count{statement=\"claim_complete\"} 3
";

    const AFTER: &str = "\
dedupd_completed_cache_total{result=\"hit\"} 100
dedupd_completed_cache_total{result=\"miss\"} 15
dedupd_http_request_duration_seconds_sum{method=\"POST\",route=\"/v1/namespaces/{ns}/claims/{key}\",status=\"201\"} 2.5
dedupd_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/namespaces/{ns}/claims/{key}\",status=\"201\"} 1100
dedupd_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/namespaces/{ns}/claims/{key}\",status=\"409\"} 70
dedupd_store_latency_seconds_sum{statement=\"claim_insert\"} 2.3
dedupd_store_latency_seconds_count{statement=\"claim_insert\"} 1100
dedupd_store_latency_seconds_count{statement=\"claim_complete\"} 30
";

    #[test]
    fn the_growth_of_the_served_counters_becomes_means_and_a_hit_share() {
        let grown = ServerCounts::parse(AFTER).since(ServerCounts::parse(BEFORE));
        assert_eq!(grown.cache_hits, 90.0);
        assert_eq!(grown.acquired, 1000.0);
        assert_eq!(grown.claim_lwts, 1000.0);
        let mut twice = grown;
        twice.add(grown);
        assert_eq!((twice.cache_hits, twice.acquired_seconds), (180.0, 3.0));
        let counted = Counted {
            dup_heavy: grown,
            new_keys_c16: grown,
        };
        let mut ratios = Ratios::default();
        counted.fill(&mut ratios);
        // 90 hits in 100 lookups; 1.5 s over 1000 claims, 1.4 s over
        // their 1000 LWTs: the 409s and other statements are not counted.
        assert_eq!(ratios.completed_cache_hit_share, Some(0.9));
        assert_eq!(ratios.server_claim_mean_us_c16, Some(1500.0));
        assert_eq!(ratios.server_lwt_mean_us_c16, Some(1400.0));
    }

    #[test]
    fn nothing_counted_is_no_figure() {
        let mut ratios = Ratios::default();
        Counted::default().fill(&mut ratios);
        assert_eq!(ratios.completed_cache_hit_share, None);
        assert_eq!(ratios.server_claim_mean_us_c16, None);
        assert_eq!(ratios.server_lwt_mean_us_c16, None);
    }
}
