//! The HTTP edge: routes, shared state, middleware.

pub mod admin;
mod answer_body;
pub mod auth;
pub mod batch;
pub mod claim_answer;
pub mod claim_options;
pub mod claims;
pub mod error;
pub mod extract;
pub mod health;
mod json_int;
pub mod openapi;
mod problem_docs;
pub mod sequences;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::claims::{ClaimService, MAX_WAIT_SECS};
use crate::domain::Namespaces;
use crate::metrics::{HttpLabels, Metrics, method_label};
use crate::sequences::SequenceService;
use error::{ApiError, problem_response};

/// Request bodies above this size get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Readiness flags.
#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
}

impl Health {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The services behind the API, available once the database session is.
pub struct Services {
    pub claims: Arc<ClaimService>,
    pub sequences: Arc<SequenceService>,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Set once the database session is ready; until then requests get 503.
    pub services: Arc<OnceLock<Services>>,
    pub namespaces: Arc<Namespaces>,
    pub auth: Arc<auth::Auth>,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    /// Bounds the requests waiting on Cassandra. A request that finds no
    /// permit is refused at once (503): queueing without limit would only
    /// turn overload into timeouts, and timeouts of LWTs into unknowns.
    pub permits: Arc<Semaphore>,
}

/// A held store permit; counts in the in-flight gauge until dropped.
pub struct Admission {
    permits: u32,
    _permit: OwnedSemaphorePermit,
    metrics: Metrics,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.metrics.in_flight.dec_by(i64::from(self.permits));
    }
}

impl AppState {
    /// The services, or 503 while the database session is not ready.
    pub fn services(&self) -> Result<&Services, ApiError> {
        self.services.get().ok_or_else(|| ApiError::Unavailable {
            detail: "the database session is not ready yet".into(),
            retry_after_secs: 1,
        })
    }

    /// Takes one store permit, or refuses at once.
    pub fn admit(&self) -> Result<Admission, ApiError> {
        self.admit_many(1)
    }

    /// The services and one store permit: what a single-key handler needs
    /// once its input is valid. Not ready is answered before overloaded.
    pub fn admitted(&self) -> Result<(&Services, Admission), ApiError> {
        let services = self.services()?;
        Ok((services, self.admit()?))
    }

    /// Takes `count` store permits (a batch's concurrency), or refuses at once.
    pub fn admit_many(&self, count: u32) -> Result<Admission, ApiError> {
        let Ok(permit) = self.permits.clone().try_acquire_many_owned(count) else {
            self.metrics.overloaded.inc();
            return Err(ApiError::Overloaded);
        };
        self.metrics.in_flight.inc_by(i64::from(count));
        Ok(Admission {
            permits: count,
            _permit: permit,
            metrics: self.metrics.clone(),
        })
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; see /openapi.json".into())
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

/// The route label of a response that no route template matched (the
/// proxy's fallback): one of a few fixed words, never the raw path.
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

/// What the edge middleware needs: where to count, and how long a request
/// may take.
#[derive(Clone)]
struct Edge {
    metrics: Metrics,
    request_timeout: Duration,
}

/// Counts and times every request by its route template (never the raw
/// path, which holds keys and would explode the label set), and answers 503
/// problem+json when a request outlives `request_timeout`: a backstop, as
/// the claim service's own deadline, shorter than this, normally answers
/// first. One middleware rather than two: each layer is a boxed future and
/// a state clone on every request.
async fn edge(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method().as_str());
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let route = matched.as_deref().unwrap_or("unmatched");
    // A single claim may wait for its key's holder (`wait_secs`) on top of
    // deciding; its body is not read yet, so its route gets the most.
    let limit = if method == "POST" && route == claims::CLAIM_ROUTE {
        edge.request_timeout + Duration::from_secs(MAX_WAIT_SECS)
    } else {
        edge.request_timeout
    };
    let response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => problem_response(&ApiError::Unavailable {
            detail: format!(
                "the request did not finish within {} ms; retry",
                limit.as_millis()
            ),
            retry_after_secs: 1,
        }),
    };
    let route = match (matched, response.extensions().get::<RouteLabel>()) {
        (Some(route), _) => route,
        (None, Some(label)) => label.0.to_owned(),
        (None, None) => "unmatched".to_owned(),
    };
    let labels = HttpLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    let metrics = &edge.metrics;
    metrics.http_requests.get_or_create(&labels).inc();
    metrics
        .http_latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    problem_response(&ApiError::Internal("a handler panicked".into()))
}

/// The whole router. `request_timeout` is a backstop above the claim
/// service's own deadline: it answers 503 rather than letting a request hang.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let api = Router::new()
        .route("/v1/namespaces/{ns}/claims", post(batch::claim_batch))
        .route(claims::CLAIM_ROUTE, post(claims::claim).get(claims::get))
        .route(
            "/v1/namespaces/{ns}/claims/{key}/complete",
            post(claims::complete),
        )
        .route(
            "/v1/namespaces/{ns}/claims/{key}/release",
            post(claims::release),
        )
        .route(
            "/v1/namespaces/{ns}/claims/{key}/extend",
            post(claims::extend),
        )
        .route(
            "/v1/namespaces/{ns}/sequences/{stream}",
            post(sequences::advance)
                .put(sequences::set)
                .get(sequences::get)
                .delete(sequences::delete),
        )
        .route(admin::ADMIN_CLAIM_ROUTE, get(admin::inspect))
        .route(
            "/v1/admin/namespaces/{ns}/claims/{key}/force-release",
            post(admin::force_release),
        )
        .route(
            "/v1/admin/namespaces/{ns}/claims/{key}/forget",
            post(admin::forget),
        )
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state.clone());
    edge_layers(api, state.metrics.clone(), request_timeout)
}

/// The layers around every router the service serves (the API's and the
/// proxy's): metrics and the timeout backstop, panics as problem answers,
/// tracing.
pub fn edge_layers(router: Router, metrics: Metrics, request_timeout: Duration) -> Router {
    let edge_state = Edge {
        metrics,
        request_timeout,
    };
    router
        .layer(middleware::from_fn_with_state(edge_state, edge))
        .layer(CatchPanicLayer::custom(panic_response))
        // 503s for overload and undecided outcomes are answers, not failures of
        // the server: at ERROR level they would flood the logs exactly when the
        // service is busiest. Internal errors are logged where they happen.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
}
