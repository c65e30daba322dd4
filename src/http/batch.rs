//! Batch claims: `POST /v1/namespaces/{ns}/claims`.
//!
//! Conditional batches cannot span partitions in Cassandra or ScyllaDB, and
//! each key is its own partition, so a batch is N independent claims run
//! concurrently under a bound. It is not atomic: each key's result stands on
//! its own, and one key's failure does not fail the others.

use std::collections::HashSet;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use tokio::time::Instant;

use super::answer_body::answer_body;
use super::claim_answer::{ClaimAnswer, StateDto};
use super::claim_options::{ClaimOptions, RawOptions, fingerprint, raw_options_from};
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{NamespaceParams, NamespacePath, WithBody};
use super::problem_docs::{BodyNotJson, BodyTooLarge, UnknownNamespace};
use crate::claims::RetryBudget;
use crate::domain::ClaimKey;

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

raw_options_from!(BatchBody);

answer_body! {
    /// One key's result: the fields of the single-claim answer for its status,
    /// mapped by the same rules (`ClaimAnswer`).
    #[derive(Debug, Serialize, ToSchema)]
    pub struct BatchResult {
        pub key: String,
        /// What a single claim of this key would have answered: 201 acquired,
        /// 409 duplicate, 422 fingerprint mismatch, 400 an option the database
        /// refused for this key (a TTL beyond its expiry limit), 503 not decided,
        /// not attempted or refused by the database (retry this key). Never 500.
        pub status: u16,
        /// `acquired` or `duplicate`; for the others the problem's kind with
        /// `_`: `fingerprint_mismatch`, `invalid_request`, `unavailable`,
        /// `not_attempted`, `store_refused`.
        pub outcome: &'static str,
    }
    optional {
        pub token: Option<Uuid>,
        pub state: Option<StateDto>,
        pub expires_at: Option<DateTime<Utc>>,
        pub lease_expires_at: Option<DateTime<Utc>>,
        pub takeover: Option<bool>,
        pub completed_at: Option<DateTime<Utc>>,
        /// As in a single 409: the holder's label, never its claimant.
        pub holder: Option<String>,
        #[schema(value_type = Option<Object>)]
        pub result: Option<serde_json::Value>,
        /// What a single answer says in `Retry-After`: for a duplicate in
        /// progress, seconds until the lease ends; for a 503, when to retry.
        pub retry_after_secs: Option<u64>,
        /// For a problem: its `type`, as in the single answer's problem document.
        #[serde(rename = "type")]
        #[schema(example = "urn:dedupd:problem:unavailable")]
        pub problem_type: Option<String>,
        pub detail: Option<String>,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One result per requested key, in request order.
    pub results: Vec<BatchResult>,
}

impl BatchResult {
    fn new(key: &str, answer: ClaimAnswer) -> Self {
        let empty = Self {
            key: key.to_owned(),
            status: answer.status().as_u16(),
            outcome: "",
            token: None,
            state: None,
            expires_at: None,
            lease_expires_at: None,
            takeover: None,
            completed_at: None,
            holder: None,
            result: None,
            retry_after_secs: None,
            problem_type: None,
            detail: None,
        };
        match answer {
            ClaimAnswer::Acquired(acquired) => Self {
                outcome: acquired.outcome,
                token: Some(acquired.token),
                state: Some(acquired.state),
                expires_at: Some(acquired.expires_at),
                lease_expires_at: acquired.lease_expires_at,
                takeover: Some(acquired.takeover),
                ..empty
            },
            ClaimAnswer::Duplicate {
                body,
                retry_after_secs,
            } => Self {
                outcome: body.outcome,
                state: Some(body.state),
                expires_at: Some(body.expires_at),
                lease_expires_at: body.lease_expires_at,
                completed_at: body.completed_at,
                holder: body.holder,
                result: body.result,
                retry_after_secs,
                ..empty
            },
            ClaimAnswer::Refused(error) => Self {
                outcome: outcome_of(&error),
                retry_after_secs: error.retry_after_secs(),
                problem_type: Some(error.problem_type()),
                detail: Some(error.to_string()),
                ..empty
            },
        }
    }
}

/// A problem's kind as a batch outcome: its slug with `_`.
fn outcome_of(error: &ApiError) -> &'static str {
    match error {
        ApiError::FingerprintMismatch(_) => "fingerprint_mismatch",
        ApiError::Conflict(_) => "conflict",
        ApiError::InvalidRequest(_) => "invalid_request",
        ApiError::Unavailable { .. } => "unavailable",
        ApiError::NotAttempted => "not_attempted",
        ApiError::StoreRefused => "store_refused",
        ApiError::PayloadTooLarge(_) => "payload_too_large",
        ApiError::Overloaded => "overloaded",
        ApiError::TooManyWaiters => "too_many_waiters",
        ApiError::Unauthorized(_) => "unauthorized",
        ApiError::Forbidden(_) => "forbidden",
        ApiError::NotFound(_) => "not_found",
        ApiError::MethodNotAllowed(_) => "method_not_allowed",
        ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
        ApiError::Internal(_) => "internal",
        // The proxy's own answers; no batch gives them.
        ApiError::IdempotencyKeyMissing => "idempotency_key_missing",
        ApiError::IdempotencyKeyInvalid(_) => "idempotency_key_invalid",
        ApiError::IdempotencyKeyReused => "idempotency_key_reused",
        ApiError::RequestInProgress => "request_in_progress",
        ApiError::ResponseNotStored { .. } => "response_not_stored",
        ApiError::UpstreamUnreachable(_) => "upstream_unreachable",
        ApiError::UpstreamTimeout(_) => "upstream_timeout",
        ApiError::NotImplemented(_) => "not_implemented",
    }
}

/// Claim many message ids at once (not atomic: one result per key).
#[utoipa::path(post, path = "/v1/namespaces/{ns}/claims", tag = "claims",
    params(NamespaceParams), request_body = BatchBody,
    responses(
        (status = 200, description = "One result per key, in request order. NOT atomic: each key is its own lightweight transaction, because conditional batches cannot span partitions", body = BatchResponse),
        (status = 400, description = "Invalid request: no keys, more than 1000, a key twice, an invalid key or option", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded or not ready (per-key 503s are inside a 200)", body = Problem, content_type = "application/problem+json"),
        UnknownNamespace, BodyTooLarge, BodyNotJson,
    )
)]
pub async fn claim_batch(call: WithBody<NamespacePath, BatchBody>) -> ApiResult<Response> {
    let WithBody { state, path, body } = call;
    if body.claims.is_empty() || body.claims.len() > MAX_BATCH_KEYS {
        return Err(ApiError::InvalidRequest(format!(
            "a batch holds 1 to {MAX_BATCH_KEYS} claims, got {}",
            body.claims.len()
        )));
    }
    let options = ClaimOptions::parse(
        &path.policy,
        path.principal.as_ref(),
        RawOptions::from(&body),
    )?;
    let mut seen = HashSet::with_capacity(body.claims.len());
    let mut requests = Vec::with_capacity(body.claims.len());
    for (index, item) in body.claims.iter().enumerate() {
        let key = ClaimKey::parse(&item.key)
            .map_err(|error| ApiError::invalid_request(format!("claims[{index}]: {error}")))?;
        if !seen.insert(item.key.as_str()) {
            return Err(ApiError::invalid_request(format!(
                "claims[{index}]: key {:?} appears twice in one batch",
                item.key
            )));
        }
        let fingerprint = fingerprint(item.fingerprint.as_deref())
            .map_err(|error| ApiError::invalid_request(format!("claims[{index}]: {error}")))?;
        requests.push(options.request(path.namespace.clone(), key, fingerprint));
    }

    let service = state.services()?.claims.clone();
    let concurrency = requests.len().min(BATCH_CONCURRENCY);
    let _permits = state.admit_many(concurrency as u32)?;
    // The batch answers within one request deadline, as a single claim
    // does. A key starts only while a quarter of it is left, and its claim
    // gets what is left as its own deadline; the rest are "not attempted"
    // (nothing written). Otherwise the router's backstop would answer 503
    // for the whole call, orphaning the keys already acquired.
    let budget = service.budget();
    let batch_deadline = Instant::now() + budget.deadline;
    let least_to_start = budget.deadline / 4;
    let results: Vec<BatchResult> = futures::stream::iter(requests)
        .map(|request| {
            let service = service.clone();
            let metrics = state.metrics.clone();
            async move {
                let left = batch_deadline.saturating_duration_since(Instant::now());
                if left < least_to_start {
                    metrics.record_claim("not_attempted");
                    let answer = ClaimAnswer::Refused(ApiError::NotAttempted);
                    return BatchResult::new(request.key.as_str(), answer);
                }
                let within = RetryBudget {
                    deadline: left,
                    ..budget
                };
                let outcome = service.claim_within(&request, within).await;
                BatchResult::new(request.key.as_str(), ClaimAnswer::new(outcome, &request))
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    Ok((StatusCode::OK, Json(BatchResponse { results })).into_response())
}
