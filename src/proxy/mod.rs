//! `dedupd proxy`: `Idempotency-Key` for any HTTP API, in front of it.
//!
//! A protected request's key becomes a claim (`scope`), the claim engine
//! decides as it does for `/v1` claims, and the first request is forwarded
//! (`forward`); its response becomes the claim's stored result (`stored`),
//! which retries get back. Everything else is passed through untouched.
//! The service's own probes and metrics live under `/_dedupd/`, out of the
//! upstream's way.

mod buffers;
pub mod config;
mod forward;
pub mod header;
pub mod scope;
pub mod stored;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;

use crate::claims::MAX_WAIT_SECS;
use crate::domain::Retention;
use crate::http::{self, AppState, health};
pub use config::ProxyConfig;

/// How much longer than the upstream's timeout a claim's lease runs: the
/// holder has answered (stored or released) before anyone may take over.
pub const LEASE_MARGIN_SECS: u64 = 10;

/// The proxy's own routes, under a prefix no API is likely to use.
pub const LIVEZ: &str = "/_dedupd/livez";
pub const READYZ: &str = "/_dedupd/readyz";
pub const METRICS: &str = "/_dedupd/metrics";

/// What the proxy's handler shares.
#[derive(Clone)]
pub struct ProxyState {
    app: AppState,
    config: Arc<ProxyConfig>,
    client: upstream::UpstreamClient,
    buffers: buffers::BufferBudget,
    /// Every proxy claim's retention: the namespace's TTL, and a lease that
    /// outlasts the upstream's timeout.
    retention: Retention,
}

impl FromRef<ProxyState> for AppState {
    fn from_ref(state: &ProxyState) -> Self {
        state.app.clone()
    }
}

/// What a proxied request came to: the `outcome` label of
/// `dedupd_proxy_requests_total` (the closed set `metrics::PROXY_OUTCOMES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyOutcome {
    /// Not protected (another method or path, or no key where none is
    /// required): forwarded as is.
    Passthrough,
    /// The first request: forwarded, and its response stored.
    Stored,
    /// Forwarded; its status is not stored (5xx, 408, 409, 425, 429…): the
    /// key was released, a retry reaches the upstream again.
    Released,
    /// A retry answered with the stored response.
    Replayed,
    /// The key's first request is still running: 409.
    InProgress,
    /// The key came with another payload: 422.
    KeyReused,
    /// The request was refused before anything was forwarded: 400, 413 or
    /// 501, or 409 for a key holding a result the proxy did not store.
    Refused,
    /// No room in the proxy's buffer memory (`--max-buffered-mib`): 503
    /// before anything was forwarded.
    Overloaded,
    /// The claim could not be decided; the route fails closed: 503.
    StoreFailedClosed,
    /// The claim could not be decided; the route fails open: forwarded
    /// without protection.
    StoreFailedOpen,
    /// The upstream could not be reached, or timed out: 502 or 504, and
    /// the key released.
    UpstreamFailed,
    /// The response was over the storage cap: returned, key released.
    TooLargeReleased,
    /// The response was over the storage cap: returned, key kept as
    /// processed (fail closed); retries get 409.
    TooLargeKept,
    /// A retry of a key whose response was too large to keep: 409.
    NotStoredReplayed,
    /// The upstream answered, but its response could not be stored (the
    /// completion failed): returned with a warning.
    CompleteFailed,
}

impl ProxyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyOutcome::Passthrough => "passthrough",
            ProxyOutcome::Stored => "stored",
            ProxyOutcome::Released => "released",
            ProxyOutcome::Replayed => "replayed",
            ProxyOutcome::InProgress => "in_progress",
            ProxyOutcome::KeyReused => "key_reused",
            ProxyOutcome::Refused => "refused",
            ProxyOutcome::Overloaded => "overloaded",
            ProxyOutcome::StoreFailedClosed => "store_failed_closed",
            ProxyOutcome::StoreFailedOpen => "store_failed_open",
            ProxyOutcome::UpstreamFailed => "upstream_failed",
            ProxyOutcome::TooLargeReleased => "too_large_released",
            ProxyOutcome::TooLargeKept => "too_large_kept",
            ProxyOutcome::NotStoredReplayed => "not_stored_replayed",
            ProxyOutcome::CompleteFailed => "complete_failed",
        }
    }
}

/// The proxy's router: its probes and metrics, and every other request
/// handled by the proxy. `request_timeout` is the claim API's backstop; a
/// proxied request may also wait for the upstream and for a key's holder.
pub fn router(
    app: AppState,
    config: ProxyConfig,
    request_timeout: Duration,
) -> anyhow::Result<Router> {
    let policy = app.namespaces.policy(&config.namespace).ok_or_else(|| {
        anyhow::anyhow!(
            "the proxy's namespace `{}` is not among the config file's namespaces: add it, or \
             set `namespace` in the proxy config to one of them",
            config.namespace
        )
    })?;
    let lease_secs = config.upstream_timeout.as_secs() + LEASE_MARGIN_SECS;
    let retention = Retention::parse(&policy, None, Some(lease_secs), false).map_err(|error| {
        anyhow::anyhow!(
            "the proxy's namespace `{}` cannot hold a claim for the upstream timeout: {error}",
            config.namespace
        )
    })?;
    let metrics = app.metrics.clone();
    let backstop =
        request_timeout * 2 + config.upstream_timeout + Duration::from_secs(MAX_WAIT_SECS);
    tracing::info!(
        upstream = %config.upstream.authority,
        namespace = %config.namespace,
        routes = config.routes.len(),
        "proxying"
    );
    let buffers = buffers::BufferBudget::new(config.max_buffered_bytes);
    let state = ProxyState {
        app,
        config: Arc::new(config),
        client: upstream::client(),
        buffers,
        retention,
    };
    let router = Router::new()
        .route(LIVEZ, get(health::livez))
        .route(READYZ, get(health::readyz))
        .route(METRICS, get(health::metrics))
        .fallback(forward::proxy)
        .with_state(state);
    Ok(http::edge_layers(router, metrics, backstop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::PROXY_OUTCOMES;

    #[test]
    fn every_outcome_is_a_series_started_at_zero() {
        use ProxyOutcome::*;
        let all = [
            Passthrough,
            Stored,
            Released,
            Replayed,
            InProgress,
            KeyReused,
            Refused,
            Overloaded,
            StoreFailedClosed,
            StoreFailedOpen,
            UpstreamFailed,
            TooLargeReleased,
            TooLargeKept,
            NotStoredReplayed,
            CompleteFailed,
        ];
        let names: Vec<&str> = all.iter().map(|outcome| outcome.as_str()).collect();
        assert_eq!(names, PROXY_OUTCOMES);
    }
}
