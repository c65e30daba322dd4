//! Batch claims: `POST /v1/namespaces/{ns}/claims`.
//!
//! Conditional batches cannot span partitions in Cassandra or ScyllaDB, and
//! each key is its own partition, so a batch is N independent claims run
//! concurrently under a bound. It is not atomic: each key's result stands on
//! its own, and one key's failure does not fail the others.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{JsonBody, NamespaceParams, NamespacePath};
use crate::claims::{Acquisition, ClaimOutcome, ClaimRequest};
use crate::domain::{ClaimKey, ClaimState, Claimant, Fingerprint, Retention, StoredResult};
use crate::resolve::DecideError;

/// The most keys one batch may hold.
pub const MAX_BATCH_KEYS: usize = 1000;

/// How many of a batch's claims run at once (and store permits it takes).
pub const BATCH_CONCURRENCY: usize = 32;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// The message id, 1 to 512 bytes of UTF-8.
    #[schema(min_length = 1, max_length = 512)]
    pub key: String,
    #[schema(min_length = 1, max_length = 128)]
    pub fingerprint: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// 1 to 1000 claims, each key at most once.
    #[schema(min_items = 1, max_items = 1000)]
    pub claims: Vec<BatchItem>,
    #[schema(minimum = 1, maximum = 630720000)]
    #[serde(default, deserialize_with = "super::json_int::optional_whole")]
    pub ttl_secs: Option<u64>,
    #[schema(minimum = 1, maximum = 630720000)]
    #[serde(default, deserialize_with = "super::json_int::optional_whole")]
    pub lease_secs: Option<u64>,
    pub complete: Option<bool>,
    /// As for a single claim: the same claimant gets its own in-progress
    /// keys back.
    #[schema(min_length = 1, max_length = 128)]
    pub claimant: Option<String>,
}

/// One key's result: the fields of the single-claim answer for its status.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub key: String,
    /// 201 acquired, 409 duplicate, 422 fingerprint mismatch, 503 not
    /// decided (retry this key), 500 internal error.
    pub status: u16,
    /// `acquired`, `duplicate`, `fingerprint_mismatch`, `unavailable` or `error`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<super::claims::StateDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub takeover: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One result per requested key, in request order.
    pub results: Vec<BatchResult>,
}

impl BatchResult {
    fn new(key: &str, status: StatusCode, outcome: &'static str) -> Self {
        Self {
            key: key.to_owned(),
            status: status.as_u16(),
            outcome,
            token: None,
            state: None,
            expires_at: None,
            lease_expires_at: None,
            takeover: None,
            completed_at: None,
            result: None,
            detail: None,
        }
    }

    fn from_outcome(key: &str, outcome: Result<ClaimOutcome, DecideError>) -> Self {
        match outcome {
            Ok(ClaimOutcome::Acquired { record, how }) => Self {
                token: Some(record.token.0),
                state: Some(record.state.into()),
                expires_at: Some(record.expires_at),
                lease_expires_at: record.lease_expires_at,
                takeover: Some(how == Acquisition::Takeover),
                ..Self::new(key, StatusCode::CREATED, "acquired")
            },
            Ok(ClaimOutcome::Duplicate { record }) => {
                let completed = record.state == ClaimState::Completed;
                Self {
                    state: Some(record.state.into()),
                    expires_at: Some(record.expires_at),
                    lease_expires_at: record.lease_expires_at.filter(|_| !completed),
                    completed_at: record.completed_at.filter(|_| completed),
                    result: completed.then(|| {
                        record
                            .result
                            .as_ref()
                            .map(StoredResult::to_json)
                            .unwrap_or(serde_json::Value::Null)
                    }),
                    ..Self::new(key, StatusCode::CONFLICT, "duplicate")
                }
            }
            Ok(ClaimOutcome::FingerprintMismatch { .. }) => Self {
                detail: Some("the key was claimed with a different fingerprint".into()),
                ..Self::new(
                    key,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "fingerprint_mismatch",
                )
            },
            Err(DecideError::Undecided { detail }) => Self {
                detail: Some(detail),
                ..Self::new(key, StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            },
            Err(error) => {
                tracing::error!(error = %error, "batch claim failed");
                Self {
                    detail: Some("the server failed to claim this key; it has been logged".into()),
                    ..Self::new(key, StatusCode::INTERNAL_SERVER_ERROR, "error")
                }
            }
        }
    }
}

fn bad(error: impl ToString) -> ApiError {
    ApiError::InvalidRequest(error.to_string())
}

/// Claim many message ids at once (not atomic: one result per key).
#[utoipa::path(
    post,
    path = "/v1/namespaces/{ns}/claims",
    tag = "claims",
    params(NamespaceParams),
    request_body(content = BatchBody, content_type = "application/json"),
    responses(
        (status = 200, description = "One result per key, in request order. NOT atomic: each key is its own lightweight transaction, because conditional batches cannot span partitions", body = BatchResponse),
        (status = 400, description = "Invalid request: no keys, more than 1000, a key twice, an invalid key or option", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown namespace", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded or not ready", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn claim_batch(
    State(state): State<AppState>,
    path: NamespacePath,
    JsonBody(body): JsonBody<BatchBody>,
) -> ApiResult<Response> {
    if body.claims.is_empty() || body.claims.len() > MAX_BATCH_KEYS {
        return Err(ApiError::InvalidRequest(format!(
            "a batch holds 1 to {MAX_BATCH_KEYS} claims, got {}",
            body.claims.len()
        )));
    }
    let complete = body.complete.unwrap_or(false);
    let retention =
        Retention::parse(&path.policy, body.ttl_secs, body.lease_secs, complete).map_err(bad)?;
    let claimant = body
        .claimant
        .as_deref()
        .map(Claimant::parse)
        .transpose()
        .map_err(bad)?;
    let mut seen = HashSet::with_capacity(body.claims.len());
    let mut requests = Vec::with_capacity(body.claims.len());
    for (index, item) in body.claims.iter().enumerate() {
        let key =
            ClaimKey::parse(&item.key).map_err(|error| bad(format!("claims[{index}]: {error}")))?;
        if !seen.insert(item.key.as_str()) {
            return Err(bad(format!(
                "claims[{index}]: key {:?} appears twice in one batch",
                item.key
            )));
        }
        let fingerprint = item
            .fingerprint
            .as_deref()
            .map(Fingerprint::parse)
            .transpose()
            .map_err(|error| bad(format!("claims[{index}]: {error}")))?;
        requests.push(ClaimRequest {
            namespace: path.namespace.clone(),
            key,
            retention,
            complete,
            fingerprint,
            claimant: claimant.clone(),
        });
    }

    let service = state.services()?.claims.clone();
    let concurrency = requests.len().min(BATCH_CONCURRENCY);
    let _permits = state.admit_many(concurrency as u32)?;
    let results: Vec<BatchResult> = futures::stream::iter(requests)
        .map(|request| {
            let service = service.clone();
            async move {
                let outcome = service.claim(&request).await;
                BatchResult::from_outcome(request.key.as_str(), outcome)
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    Ok((StatusCode::OK, Json(BatchResponse { results })).into_response())
}
