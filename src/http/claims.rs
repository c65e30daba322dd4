//! The claim endpoints: `POST …/claims/{key}` and its transitions.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::answer_body::answer_body;
use super::claim_answer::{AcquiredResponse, ClaimAnswer, DuplicateResponse, StateDto, holder_of};
use super::claim_options::{ClaimOptions, RawOptions, fingerprint, raw_options_from};
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ClaimPath, ClaimPathParams, OptionalJsonBody, WithBody};
use super::problem_docs::{
    BodyNotJson, BodyOrResultTooLarge, BodyTooLarge, InvalidRequest, NoLiveClaim, NotDecided,
    UnknownNamespace,
};
use std::time::Duration;

use crate::claims::{MAX_WAIT_SECS, TooManyWaiters, TransitionOutcome};
use crate::domain::{ClaimRecord, ClaimToken, LeaseRequest, StoredResult};

/// The body of a claim. Every field is optional; so is the body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    /// How long the key is remembered, counted from the first claim
    /// (1 to the namespace's maximum; default from the namespace, 24 h).
    #[schema(minimum = 1, maximum = 630720000, example = 86400)]
    #[serde(default, deserialize_with = "super::json_int::optional_whole")]
    pub ttl_secs: Option<u64>,
    /// How long the claimant has to complete before the next claim may take
    /// over (1 to ttl_secs; default 30, or ttl_secs when shorter).
    #[schema(minimum = 1, maximum = 630720000, example = 30)]
    #[serde(default, deserialize_with = "super::json_int::optional_whole")]
    pub lease_secs: Option<u64>,
    /// Claim and complete at once: a one-shot marker with no lease.
    pub complete: Option<bool>,
    /// The client's hash of the payload, up to 128 bytes. A later claim with
    /// a different fingerprint gets 422.
    #[schema(min_length = 1, max_length = 128)]
    pub fingerprint: Option<String>,
    /// An optional caller id, up to 128 bytes. The same claimant (with the
    /// same bearer token, when auth is on) claiming its own in-progress key
    /// again gets its token back (201): treat it as a recovery credential,
    /// and keep it unguessable where callers sharing a token do not trust
    /// each other. Answers never echo it (they show a `holder` label).
    #[schema(min_length = 1, max_length = 128)]
    pub claimant: Option<String>,
    /// When another claimant holds the key in progress, wait up to this many
    /// seconds (0 to 30; default 0) for it to complete (409 with the
    /// result), release (201) or lose its lease (201, a takeover), instead
    /// of answering 409 in progress at once. Single claims only.
    #[schema(minimum = 0, maximum = 30, example = 10)]
    #[serde(default, deserialize_with = "super::json_int::optional_whole")]
    pub wait_secs: Option<u64>,
}

raw_options_from!(ClaimBody);

/// The route a claim that waits is served on: the edge's backstop deadline
/// gives it `MAX_WAIT_SECS` more.
pub const CLAIM_ROUTE: &str = "/v1/namespaces/{ns}/claims/{key}";

/// How long a claim may wait for the key's holder (`wait_secs`).
fn wait_for(wait_secs: Option<u64>) -> ApiResult<Duration> {
    match wait_secs.unwrap_or(0) {
        secs @ 0..=MAX_WAIT_SECS => Ok(Duration::from_secs(secs)),
        secs => Err(ApiError::InvalidRequest(format!(
            "wait_secs must be 0 to {MAX_WAIT_SECS}, got {secs}"
        ))),
    }
}

/// A token-guarded call: complete, release and extend.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The owner token the claim was answered with.
    #[schema(format = Uuid)]
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// The owner token the claim was answered with.
    #[schema(format = Uuid)]
    pub token: String,
    /// Any JSON, up to 16 KiB once serialized; replayed to later duplicates.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// The owner token the claim was answered with.
    #[schema(format = Uuid)]
    pub token: String,
    /// The new lease, counted from now and cut at the claim's expiry.
    #[schema(minimum = 1, maximum = 630720000)]
    #[serde(deserialize_with = "super::json_int::whole")]
    pub lease_secs: u64,
}

answer_body! {
    /// 200 after complete, release or extend; 409 when refused.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct TransitionResponse {
        /// `completed`, `released`, `extended`, `not_owner` or `already_completed`.
        pub outcome: &'static str,
    }
    optional {
        pub state: Option<StateDto>,
        pub expires_at: Option<DateTime<Utc>>,
        pub lease_expires_at: Option<DateTime<Utc>>,
        pub completed_at: Option<DateTime<Utc>>,
        #[schema(value_type = Option<Object>)]
        pub result: Option<serde_json::Value>,
        pub detail: Option<String>,
    }
}

/// 200 for a read: state and times, never the token.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimView {
    pub state: StateDto,
    pub claimed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub fingerprint: Option<String>,
    /// The holder's label when it set a claimant (as in a 409), never the
    /// claimant itself.
    #[schema(example = "h:9f86d081884c7d65")]
    pub holder: Option<String>,
}

/// The 404 of every call on a claim's key: a transition and a read alike.
fn no_live_claim() -> ApiError {
    ApiError::NotFound("no live claim for this key (never claimed, released, or expired)".into())
}

fn json_with_status(status: StatusCode, body: &impl Serialize) -> Response {
    (status, Json(body)).into_response()
}

/// Claim a message id.
#[utoipa::path(post, path = "/v1/namespaces/{ns}/claims/{key}", tag = "claims",
    params(ClaimPathParams),
    request_body(content = Option<ClaimBody>, content_type = "application/json", description = "Optional"),
    responses(
        (status = 201, description = "Acquired: the caller owns the key", body = AcquiredResponse),
        (status = 409, description = "Duplicate: another claimant holds the key (after waiting up to wait_secs for it, when asked)", body = DuplicateResponse,
            headers(("Retry-After" = u64, description = "For in_progress: seconds until the lease ends"))),
        (status = 422, description = "The key was claimed with a different fingerprint", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded, not ready, the outcome could not be decided, the database refused the statement (store-refused; nothing written), or every waiter slot was taken (too-many-waiters; the key is still held): retry after Retry-After", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        InvalidRequest, UnknownNamespace, BodyTooLarge, BodyNotJson,
    )
)]
pub async fn claim(
    State(state): State<AppState>,
    path: ClaimPath,
    OptionalJsonBody(body): OptionalJsonBody<ClaimBody>,
) -> ApiResult<Response> {
    let options = ClaimOptions::parse(
        &path.policy,
        path.principal.as_ref(),
        RawOptions::from(&body),
    )?;
    let fingerprint =
        fingerprint(body.fingerprint.as_deref()).map_err(ApiError::invalid_request)?;
    let wait = wait_for(body.wait_secs)?;
    let request = options.request(path.namespace, path.key, fingerprint);
    let (services, permit) = state.admitted()?;
    let outcome = services
        .claims
        .claim_waiting(&request, wait, permit, || state.admit().ok())
        .await
        .map_err(|TooManyWaiters| ApiError::TooManyWaiters)?;
    Ok(ClaimAnswer::new(outcome, &request).into_response())
}

fn transition_response(outcome: TransitionOutcome, done: &'static str) -> ApiResult<Response> {
    let empty = |outcome| TransitionResponse {
        outcome,
        state: None,
        expires_at: None,
        lease_expires_at: None,
        completed_at: None,
        result: None,
        detail: None,
    };
    let with_record = |outcome, record: &ClaimRecord| TransitionResponse {
        outcome,
        state: Some(record.state.into()),
        expires_at: Some(record.expires_at),
        lease_expires_at: record.lease_expires_at,
        completed_at: record.completed_at,
        result: record.result.as_ref().map(StoredResult::to_json),
        detail: None,
    };
    Ok(match outcome {
        TransitionOutcome::Done(record) => {
            json_with_status(StatusCode::OK, &with_record(done, &record))
        }
        TransitionOutcome::Released => json_with_status(StatusCode::OK, &empty("released")),
        TransitionOutcome::NotOwner => json_with_status(
            StatusCode::CONFLICT,
            &TransitionResponse {
                detail: Some("this token does not own the claim (it was taken over, released, or never owned it)".into()),
                ..empty("not_owner")
            },
        ),
        TransitionOutcome::AlreadyCompleted(record) => json_with_status(
            StatusCode::CONFLICT,
            &TransitionResponse {
                detail: Some("the claim is completed: it can no longer be released or extended".into()),
                ..with_record("already_completed", &record)
            },
        ),
        TransitionOutcome::NotFound => return Err(no_live_claim()),
    })
}

/// A body that carries the owner token: what complete, release and extend
/// are guarded by.
pub trait GuardedBody: DeserializeOwned {
    fn token(&self) -> &str;
}

macro_rules! guarded_bodies {
    ($($body:ty),*) => {$(
        impl GuardedBody for $body {
            fn token(&self) -> &str {
                &self.token
            }
        }
    )*};
}

guarded_bodies!(TokenBody, CompleteBody, ExtendBody);

/// What a token-guarded call extracts: the claim's path, then its body,
/// whose owner token is parsed before anything else is looked at.
pub struct TokenCall<B> {
    state: AppState,
    path: ClaimPath,
    token: ClaimToken,
    body: B,
}

impl<B: GuardedBody> FromRequest<AppState> for TokenCall<B> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let WithBody { state, path, body } =
            WithBody::<ClaimPath, B>::from_request(request, state).await?;
        let token = ClaimToken::parse(body.token()).map_err(ApiError::invalid_request)?;
        Ok(Self {
            state,
            path,
            token,
            body,
        })
    }
}

/// What a token's owner asks of its claim, once the body is valid.
enum TokenAction {
    Complete(Option<StoredResult>),
    Release,
    Extend(LeaseRequest),
}

impl<B> TokenCall<B> {
    /// What complete, release and extend share once their input is valid:
    /// the services and a permit, then the call, answered by its outcome.
    async fn transition(&self, action: TokenAction) -> ApiResult<Response> {
        let (services, _permit) = self.state.admitted()?;
        let claims = services.claims.as_ref();
        let (namespace, key, token) = (&self.path.namespace, &self.path.key, self.token);
        let (done, outcome) = match action {
            TokenAction::Complete(result) => (
                "completed",
                claims.complete(namespace, key, token, result).await,
            ),
            TokenAction::Release => ("released", claims.release(namespace, key, token).await),
            TokenAction::Extend(lease) => (
                "extended",
                claims.extend(namespace, key, token, lease).await,
            ),
        };
        transition_response(outcome?, done)
    }
}

/// The answers complete, release and extend share: the claim as it now is,
/// or why the token may not do what it asked.
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
enum TransitionAnswers {
    #[response(
        status = 200,
        description = "Done: `completed` (also when completed before by this token), `released` or `extended`"
    )]
    Done(TransitionResponse),
    #[response(
        status = 409,
        description = "`not_owner`: the token does not own the claim; `already_completed`: a completed claim cannot be released or extended"
    )]
    Refused(TransitionResponse),
}

/// Complete a claim, storing its result.
#[utoipa::path(post, path = "/v1/namespaces/{ns}/claims/{key}/complete", tag = "claims",
    params(ClaimPathParams), request_body = CompleteBody,
    responses(TransitionAnswers, BodyOrResultTooLarge, InvalidRequest, NoLiveClaim, BodyNotJson, NotDecided)
)]
pub async fn complete(call: TokenCall<CompleteBody>) -> ApiResult<Response> {
    let result = call
        .body
        .result
        .as_ref()
        .map(StoredResult::from_json)
        .transpose()
        .map_err(|error| ApiError::PayloadTooLarge(error.to_string()))?;
    call.transition(TokenAction::Complete(result)).await
}

/// Release an in-progress claim so the key can be claimed again at once.
#[utoipa::path(post, path = "/v1/namespaces/{ns}/claims/{key}/release", tag = "claims",
    params(ClaimPathParams), request_body = TokenBody,
    responses(TransitionAnswers, InvalidRequest, NoLiveClaim, BodyNotJson, NotDecided)
)]
pub async fn release(call: TokenCall<TokenBody>) -> ApiResult<Response> {
    call.transition(TokenAction::Release).await
}

/// Extend the lease of an in-progress claim.
#[utoipa::path(post, path = "/v1/namespaces/{ns}/claims/{key}/extend", tag = "claims",
    params(ClaimPathParams), request_body = ExtendBody,
    responses(TransitionAnswers, InvalidRequest, NoLiveClaim, BodyNotJson, NotDecided)
)]
pub async fn extend(call: TokenCall<ExtendBody>) -> ApiResult<Response> {
    let lease = LeaseRequest::parse(&call.path.policy, call.body.lease_secs)
        .map_err(ApiError::invalid_request)?;
    call.transition(TokenAction::Extend(lease)).await
}

/// Read a claim's state and times (never its token).
#[utoipa::path(get, path = "/v1/namespaces/{ns}/claims/{key}", tag = "claims",
    params(ClaimPathParams),
    responses((status = 200, description = "The claim", body = ClaimView), InvalidRequest, NoLiveClaim, NotDecided)
)]
pub async fn get(State(state): State<AppState>, path: ClaimPath) -> ApiResult<Response> {
    let (services, _permit) = state.admitted()?;
    let Some(record) = services.claims.get(&path.namespace, &path.key).await? else {
        return Err(no_live_claim());
    };
    Ok(json_with_status(
        StatusCode::OK,
        &ClaimView {
            state: record.state.into(),
            claimed_at: record.claimed_at,
            expires_at: record.expires_at,
            lease_expires_at: record.lease_expires_at,
            completed_at: record.completed_at,
            result: record.result.as_ref().map(StoredResult::to_json),
            holder: holder_of(&record),
            fingerprint: record.fingerprint,
        },
    ))
}
