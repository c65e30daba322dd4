//! Probes and metrics: `/livez`, `/readyz`, `/metrics`, `/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`, `starting` or `draining`.
    pub status: &'static str,
}

/// Liveness: the process answers. Never touches the database, so that a
/// database outage does not make Kubernetes restart every replica.
#[utoipa::path(get, path = "/livez", tag = "operations",
    responses((status = 200, description = "The process is alive", body = HealthResponse)))]
pub async fn livez(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.auth.protect_health
        && let Err(error) = state.auth.authenticate(&headers)
    {
        return error.into_response();
    }
    Json(HealthResponse { status: "ok" }).into_response()
}

/// Readiness: 503 until the database session is ready, and while draining.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve claims", body = HealthResponse),
        (status = 503, description = "Starting or draining", body = HealthResponse),
    ))]
pub async fn readyz(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.auth.protect_health
        && let Err(error) = state.auth.authenticate(&headers)
    {
        return error.into_response();
    }
    let (status, word) = if state.health.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if state.services.get().is_none() {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    } else {
        (StatusCode::OK, "ok")
    };
    (status, Json(HealthResponse { status: word })).into_response()
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.auth.protect_metrics
        && let Err(error) = state.auth.authenticate(&headers)
    {
        return error.into_response();
    }
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
