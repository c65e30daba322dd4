//! Prometheus metrics. Each application owns its registry (no global
//! recorder), so several instances in one process, as in the tests, keep
//! their figures apart.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Declares label sets: structs of a family's label names and types, all
/// with what a family's key needs (`Clone`, `Hash`, `Eq`) and the encoding.
macro_rules! label_sets {
    ($(
        $(#[$meta:meta])*
        $name:ident { $($(#[$field_meta:meta])* $field:ident: $type:ty),* $(,)? }
    )*) => {$(
        $(#[$meta])*
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
        }
    )*};
}

label_sets! {
    OutcomeLabels { outcome: &'static str }
    OperationLabels { operation: &'static str, outcome: &'static str }
    StatementLabels { statement: &'static str }
    StoreErrorLabels { statement: &'static str, kind: &'static str }
    UnknownOutcomeLabels {
        statement: &'static str,
        /// What the serial read found: `ours`, `theirs`, `absent` or `unresolved`.
        resolution: &'static str,
    }
    /// Every label of an HTTP series comes from a small closed set, whatever
    /// clients send: a method outside `HTTP_METHODS` is `other`, a path no
    /// route matches is `unmatched`, and statuses are the server's own. Junk
    /// requests (scanners, made-up methods) therefore add no series: each new
    /// label value would be a histogram's worth of lines held for the life of
    /// the process.
    HttpLabels {
        method: &'static str,
        /// The route template (never the raw path, which holds keys), or
        /// `unmatched`.
        route: String,
        status: u16,
    }
    AdminLabels {
        /// `force_release` or `forget`.
        action: &'static str,
        /// `done`, `not_found`, `completed`, `changed`, `unavailable` or `error`.
        outcome: &'static str,
    }
    ReadFirstLabels {
        /// `hit`: a completed claim answered without Paxos; `miss`: it was not.
        result: &'static str,
    }
}

/// The methods counted by name.
pub const HTTP_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// A request method as a label: its name if it is one of `HTTP_METHODS`,
/// else `other`.
pub fn method_label(method: &str) -> &'static str {
    HTTP_METHODS
        .iter()
        .copied()
        .find(|known| *known == method)
        .unwrap_or("other")
}

const CLAIM_OUTCOMES: [&str; 9] = [
    "acquired",
    "takeover",
    "reentrant",
    "duplicate_in_progress",
    "duplicate_completed",
    "fingerprint_mismatch",
    "unavailable",
    "not_attempted",
    "error",
];
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to ~13 s: LWTs on a healthy cluster sit in the low milliseconds,
    // contention timeouts in the seconds.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

fn latency_family<L: Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
    Family::new_with_constructor(latency_histogram)
}

/// A handle on the service's metrics: cheap to clone (one reference count),
/// which matters because every request clones it.
#[derive(Clone)]
pub struct Metrics(Arc<MetricSet>);

impl std::ops::Deref for Metrics {
    type Target = MetricSet;

    fn deref(&self) -> &MetricSet {
        &self.0
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self(Arc::new(MetricSet::new()))
    }
}

/// Declares `MetricSet`, one row per metric: its help (the row's doc
/// comment, which is also the field's), its field and type, how it is made,
/// and the name it is registered under. Declaring a metric is thereby
/// registering it: none can miss the registry or the set.
macro_rules! metric_set {
    ($($(#[doc = $help:literal])+ $field:ident: $type:ty = $make:expr => $name:literal;)*) => {
        /// Every metric the service exports.
        pub struct MetricSet {
            registry: Registry,
            $($(#[doc = $help])+ pub $field: $type,)*
        }

        impl MetricSet {
            /// Every metric, registered in the order of the rows (the order
            /// of the exposition).
            fn registered() -> Self {
                let mut registry = Registry::with_prefix("dedupd");
                $(
                    let $field: $type = $make;
                    // Each doc line starts with a space, which joins the
                    // lines into one sentence; the first is trimmed.
                    let help = concat!($($help),+).trim_start();
                    registry.register($name, help, $field.clone());
                )*
                Self { registry, $($field,)* }
            }
        }
    };
}

metric_set! {
    /// Claims answered, by outcome (acquired, takeover, reentrant, duplicate_in_progress,
    /// duplicate_completed, fingerprint_mismatch, unavailable, not_attempted, error)
    claims: Family<OutcomeLabels, Counter> = Family::default() => "claims";
    /// Complete, release, extend and get calls, by outcome
    operations: Family<OperationLabels, Counter> = Family::default() => "claim_operations";
    /// Latency of each CQL statement, including the ones that failed
    store_latency: HistogramFamily<StatementLabels> = latency_family() => "store_latency_seconds";
    /// CQL statements that failed, by statement and error kind
    store_errors: Family<StoreErrorLabels, Counter> = Family::default() => "store_errors";
    /// Conditional writes whose outcome was unknown (timeout, broken connection), by how the serial
    /// read resolved them
    unknown_outcomes: Family<UnknownOutcomeLabels, Counter> = Family::default() => "unknown_outcomes";
    /// HTTP requests by method (other for unknown methods), route template (unmatched for unknown
    /// paths) and status
    http_requests: Family<HttpLabels, Counter> = Family::default() => "http_requests";
    /// HTTP request latency by method, route and status
    http_latency: HistogramFamily<HttpLabels> = latency_family() => "http_request_duration_seconds";
    /// Requests holding one of the bounded store permits
    in_flight: Gauge = Gauge::default() => "store_in_flight";
    /// Requests refused at once because every store permit was taken
    overloaded: Counter = Counter::default() => "overloaded";
    /// Quorum reads made before a claim: hit (a completed duplicate answered without Paxos) or miss
    read_first: Family<ReadFirstLabels, Counter> = Family::default() => "read_first";
    /// Claims looked up in the completed-claims cache: hit (answered from memory) or miss
    completed_cache: Family<ReadFirstLabels, Counter> = Family::default() => "completed_cache";
    /// Claims waiting for their key's holder to complete, release or lose its lease (wait_secs)
    claim_waiters: Gauge = Gauge::default() => "claim_waiters";
    /// Claims that asked to wait and were refused at once (503) because every waiter slot was taken
    claim_waits_refused: Counter = Counter::default() => "claim_waits_refused";
    /// Operators' actions on claims through the admin API, by action and outcome
    admin_actions: Family<AdminLabels, Counter> = Family::default() => "admin_actions";
    /// Requests through `dedupd proxy`, by what became of them (see PROXY_OUTCOMES)
    proxy_requests: Family<OutcomeLabels, Counter> = Family::default() => "proxy_requests";
}

/// What a request through `dedupd proxy` came to (`proxy::ProxyOutcome`).
pub const PROXY_OUTCOMES: [&str; 15] = [
    "passthrough",
    "stored",
    "released",
    "replayed",
    "in_progress",
    "key_reused",
    "refused",
    "overloaded",
    "store_failed_closed",
    "store_failed_open",
    "upstream_failed",
    "too_large_released",
    "too_large_kept",
    "not_stored_replayed",
    "complete_failed",
];

/// The admin API's actions and outcomes, each series started at zero.
const ADMIN_ACTIONS: [&str; 2] = ["force_release", "forget"];
const ADMIN_OUTCOMES: [&str; 6] = [
    "done",
    "not_found",
    "completed",
    "changed",
    "unavailable",
    "error",
];

impl MetricSet {
    fn new() -> Self {
        let set = Self::registered();
        for result in ["hit", "miss"] {
            let _ = set.read_first.get_or_create(&ReadFirstLabels { result });
            let _ = set
                .completed_cache
                .get_or_create(&ReadFirstLabels { result });
        }
        // Every known series starts at zero, so dashboards and alerts see
        // `0` rather than no data before the first event.
        for outcome in CLAIM_OUTCOMES {
            let _ = set.claims.get_or_create(&OutcomeLabels { outcome });
        }
        for outcome in PROXY_OUTCOMES {
            let _ = set.proxy_requests.get_or_create(&OutcomeLabels { outcome });
        }
        for action in ADMIN_ACTIONS {
            for outcome in ADMIN_OUTCOMES {
                let _ = set
                    .admin_actions
                    .get_or_create(&AdminLabels { action, outcome });
            }
        }
        set
    }

    #[cfg(test)]
    fn http_label_values(&self) -> usize {
        self.render()
            .lines()
            .filter(|line| line.starts_with("dedupd_http_requests_total{"))
            .count()
    }

    /// Starts the store's series at zero: every conditional statement's
    /// unknown outcomes by resolution, and every statement's errors by kind.
    /// The store names its statements and error kinds; this module names
    /// none of them, so it depends on no layer above it.
    pub fn start_store_series(
        &self,
        conditional: &[&'static str],
        reads: &[&'static str],
        error_kinds: &[&'static str],
    ) {
        for &statement in conditional {
            for resolution in ["ours", "theirs", "absent", "unresolved"] {
                let _ = self.unknown_outcomes.get_or_create(&UnknownOutcomeLabels {
                    statement,
                    resolution,
                });
            }
        }
        for &statement in conditional.iter().chain(reads) {
            for &kind in error_kinds {
                let _ = self
                    .store_errors
                    .get_or_create(&StoreErrorLabels { statement, kind });
            }
        }
    }

    pub fn record_statement(&self, statement: &'static str, elapsed: Duration) {
        self.store_latency
            .get_or_create(&StatementLabels { statement })
            .observe(elapsed.as_secs_f64());
    }

    pub fn record_store_error(&self, statement: &'static str, kind: &'static str) {
        self.store_errors
            .get_or_create(&StoreErrorLabels { statement, kind })
            .inc();
    }

    pub fn record_unknown_outcome(&self, statement: &'static str, resolution: &'static str) {
        self.unknown_outcomes
            .get_or_create(&UnknownOutcomeLabels {
                statement,
                resolution,
            })
            .inc();
    }

    pub fn record_read_first(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.read_first
            .get_or_create(&ReadFirstLabels { result })
            .inc();
    }

    pub fn record_completed_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.completed_cache
            .get_or_create(&ReadFirstLabels { result })
            .inc();
    }

    pub fn record_claim(&self, outcome: &'static str) {
        self.claims.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn record_operation(&self, operation: &'static str, outcome: &'static str) {
        self.operations
            .get_or_create(&OperationLabels { operation, outcome })
            .inc();
    }

    pub fn record_admin_action(&self, action: &'static str, outcome: &'static str) {
        self.admin_actions
            .get_or_create(&AdminLabels { action, outcome })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("PATCH"), "PATCH");
        for junk in ["BREW", "get", "PROPFIND", "X-\u{1F600}", ""] {
            assert_eq!(method_label(junk), "other", "{junk:?}");
        }
    }

    #[test]
    fn junk_methods_add_no_series() {
        let metrics = Metrics::new();
        let count = |method: &str| {
            metrics
                .http_requests
                .get_or_create(&HttpLabels {
                    method: method_label(method),
                    route: "unmatched".into(),
                    status: 405,
                })
                .inc();
        };
        count("BREW");
        let before = metrics.http_label_values();
        for index in 0..300 {
            count(&format!("JUNK{index}"));
        }
        assert_eq!(metrics.http_label_values(), before);
    }
}
