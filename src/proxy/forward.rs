//! One proxied request, start to end.
//!
//! A protected request with a key is claimed before anything reaches the
//! upstream. The claim's answer decides: acquired → forward, then store the
//! response as the claim's result (or release the key when the response is
//! not one to replay); completed duplicate → replay the stored response;
//! in progress → 409; another payload → 422. Whatever fails after the
//! claim, the key is either completed or released before the client hears
//! anything, so a retry never waits out a lease for nothing.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header, request};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::time::{Instant, timeout_at};

use super::buffers::Reserved;
use super::config::{OversizePolicy, ProtectedRoute, StoreFailurePolicy};
use super::header::{REPLAYED, WARNING, idempotency_key, preferred_wait_secs};
use super::stored::{StoredResponse, UnknownStoredValue};
use super::upstream::{ReadBody, read_then_rest, read_up_to, strip_hop_by_hop, upstream_request};
use super::{ProxyOutcome, ProxyState, scope};
use crate::claims::{ClaimOutcome, ClaimRequest, MAX_WAIT_SECS, TransitionOutcome};
use crate::domain::{ClaimState, ClaimToken, StoredResult};
use crate::http::error::ApiError;
use crate::http::{RouteLabel, Services};
use crate::metrics::OutcomeLabels;

/// The route label of every proxied request in the HTTP metrics: one
/// series per status, whatever paths the clients use.
const PROXIED: RouteLabel = RouteLabel("proxied");

type Handled = Result<(ProxyOutcome, Response), (ProxyOutcome, ApiError)>;

/// The fallback handler: every request that is not one of the proxy's own.
///
/// The request is handled in a task of its own, not in the connection's:
/// hyper drops a handler whose client hung up, and a client that gives up
/// waiting is exactly the one that retries. Dropped between the claim and
/// the upstream's answer, the forward would be cut off (perhaps after the
/// upstream acted) and the claim left in progress until its lease ran out,
/// and then forwarded again. Detached, it runs to its end: the response is
/// stored (or the key released), and the retry gets what it should.
pub async fn proxy(State(state): State<ProxyState>, request: Request) -> Response {
    let handled = tokio::spawn(async move {
        let (outcome, response) = match handle(&state, request).await {
            Ok(handled) => handled,
            Err((outcome, error)) => (outcome, error.into_response()),
        };
        state
            .app
            .metrics
            .proxy_requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
        response
    })
    .await;
    let mut response = handled.unwrap_or_else(|error| {
        ApiError::Internal(format!("the proxy's request task failed: {error}")).into_response()
    });
    response.extensions_mut().insert(PROXIED);
    response
}

async fn handle(state: &ProxyState, request: Request) -> Handled {
    let config = &state.config;
    if request.method() == Method::CONNECT || request.headers().contains_key(header::UPGRADE) {
        return Err((
            ProxyOutcome::Refused,
            ApiError::NotImplemented(
                "the proxy forwards HTTP/1.1 requests and responses; CONNECT and protocol \
                 upgrades (WebSockets, h2c) are not supported"
                    .into(),
            ),
        ));
    }
    let Some(route) = config.route_for(request.method(), request.uri().path()) else {
        return pass_through(state, request).await;
    };
    let key = idempotency_key(request.headers()).map_err(|error| {
        (
            ProxyOutcome::Refused,
            ApiError::IdempotencyKeyInvalid(error.to_string()),
        )
    })?;
    let Some(key) = key else {
        if route.require_key {
            return Err((ProxyOutcome::Refused, ApiError::IdempotencyKeyMissing));
        }
        return pass_through(state, request).await;
    };
    let principal = scope::principal(&config.scope, request.headers())
        .map_err(|error| (ProxyOutcome::Refused, ApiError::invalid_request(error)))?;
    let (parts, body) = request.into_parts();
    // The whole body, bounded: the fingerprint needs it, and so does a
    // forward that may happen only after the claim. What it holds of the
    // buffer budget is given back when this request ends.
    let mut held = Reserved::default();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    let body = read_request_body(state, declared, body, &mut held).await?;
    // And room for the response it may store, before anything is claimed:
    // refused now, nothing has happened that a retry could repeat.
    if state
        .buffers
        .reserve(&mut held, config.storage.max_bytes)
        .is_err()
    {
        return Err((ProxyOutcome::Overloaded, no_buffer_room()));
    }
    let fingerprint = scope::fingerprint(&route.fingerprint, parts.uri.query(), &body)
        .map_err(|error| (ProxyOutcome::Refused, ApiError::invalid_request(error)))?;
    let claim = ClaimRequest {
        namespace: config.namespace.clone(),
        key: scope::claim_key(&principal, &parts.method, parts.uri.path(), &key),
        retention: state.retention,
        complete: false,
        fingerprint: Some(fingerprint),
        claimant: None,
    };
    let wait_secs = preferred_wait_secs(&parts.headers)
        .unwrap_or(0)
        .min(MAX_WAIT_SECS);
    let decided = match state.app.admitted() {
        Ok((services, permit)) => {
            let waited = services
                .claims
                .claim_waiting(
                    &claim,
                    std::time::Duration::from_secs(wait_secs),
                    permit,
                    || state.app.admit().ok(),
                )
                .await;
            match waited {
                // Every waiter slot is taken: the key is held, as a claim
                // without waiting would have said.
                Err(_) => return Err((ProxyOutcome::InProgress, ApiError::RequestInProgress)),
                Ok(Ok(outcome)) => Ok((services, outcome)),
                Ok(Err(error)) => Err(ApiError::from(error)),
            }
        }
        Err(error) => Err(error),
    };
    let (services, outcome) = match decided {
        Ok(decided) => decided,
        Err(error) => return store_failed(state, route, parts, body, error).await,
    };
    match outcome {
        ClaimOutcome::Acquired { record, .. } => {
            let claimed = Claimed {
                services,
                claim: &claim,
                token: record.token,
            };
            forward_claimed(state, claimed, parts, body).await
        }
        ClaimOutcome::Duplicate { record } if record.state == ClaimState::Completed => {
            replay(record.result)
        }
        ClaimOutcome::Duplicate { .. } => {
            Err((ProxyOutcome::InProgress, ApiError::RequestInProgress))
        }
        ClaimOutcome::FingerprintMismatch { .. } => {
            Err((ProxyOutcome::KeyReused, ApiError::IdempotencyKeyReused))
        }
    }
}

/// Reads a protected request's body whole, within the per-request limit
/// (413, at once when `Content-Length` already says so) and the buffer
/// budget (503).
async fn read_request_body(
    state: &ProxyState,
    declared_length: Option<usize>,
    mut body: Body,
    held: &mut Reserved,
) -> Result<Bytes, (ProxyOutcome, ApiError)> {
    let limit = state.config.max_request_body_bytes;
    let too_large = || {
        (
            ProxyOutcome::Refused,
            ApiError::PayloadTooLarge(format!(
                "a protected request's body may hold at most {limit} bytes (the proxy reads it \
                 whole to fingerprint it)"
            )),
        )
    };
    if declared_length.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            (
                ProxyOutcome::Refused,
                ApiError::invalid_request(format!("the request body could not be read: {error}")),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if read.len() + data.len() > limit {
            return Err(too_large());
        }
        if state.buffers.reserve(held, data.len()).is_err() {
            return Err((ProxyOutcome::Overloaded, no_buffer_room()));
        }
        read.extend_from_slice(&data);
    }
    Ok(read.freeze())
}

fn no_buffer_room() -> ApiError {
    ApiError::Unavailable {
        detail: "the proxy's memory for request and response bodies (--max-buffered-mib) is \
                 taken by other requests; nothing was forwarded: retry shortly"
            .into(),
        retry_after_secs: 1,
    }
}

/// The claim could not be decided: the route's policy says whether the
/// request is refused (503, nothing forwarded) or forwarded unprotected.
async fn store_failed(
    state: &ProxyState,
    route: &ProtectedRoute,
    parts: request::Parts,
    body: Bytes,
    error: ApiError,
) -> Handled {
    match route.on_store_failure {
        StoreFailurePolicy::Closed => Err((ProxyOutcome::StoreFailedClosed, error)),
        StoreFailurePolicy::Open => {
            tracing::warn!(
                path = parts.uri.path(),
                error = %error,
                "claim not decided, forwarding without protection (the route fails open)"
            );
            let (_, response) = send(state, &parts, Body::from(body)).await?;
            Ok((ProxyOutcome::StoreFailedOpen, response))
        }
    }
}

/// Forwards as is: the body streams both ways, nothing is claimed.
async fn pass_through(state: &ProxyState, request: Request) -> Handled {
    let (parts, body) = request.into_parts();
    let (_, response) = send(state, &parts, body).await?;
    Ok((ProxyOutcome::Passthrough, response))
}

/// Sends the request upstream and waits, up to the upstream timeout, for
/// its response's head; the body is the caller's to read or stream. Hands
/// back the deadline, which also bounds reading that body.
async fn send(
    state: &ProxyState,
    parts: &request::Parts,
    body: Body,
) -> Result<(Instant, Response), (ProxyOutcome, ApiError)> {
    let config = &state.config;
    let request = upstream_request(&config.upstream, parts, body).map_err(|error| {
        (
            ProxyOutcome::Refused,
            ApiError::invalid_request(format!("the request cannot be forwarded: {error}")),
        )
    })?;
    let deadline = Instant::now() + config.upstream_timeout;
    match timeout_at(deadline, state.client.request(request)).await {
        Ok(Ok(response)) => {
            let (mut head, body) = response.into_parts();
            strip_hop_by_hop(&mut head.headers);
            Ok((deadline, Response::from_parts(head, Body::new(body))))
        }
        Ok(Err(error)) => Err((
            ProxyOutcome::UpstreamFailed,
            ApiError::UpstreamUnreachable(format!(
                "the upstream did not answer: {error}; the request may not have reached it"
            )),
        )),
        Err(_) => Err((
            ProxyOutcome::UpstreamFailed,
            ApiError::UpstreamTimeout(format!(
                "the upstream did not answer within {} ms",
                config.upstream_timeout.as_millis()
            )),
        )),
    }
}

/// A won claim: who completes or releases it.
struct Claimed<'a> {
    services: &'a Services,
    claim: &'a ClaimRequest,
    token: ClaimToken,
}

impl Claimed<'_> {
    /// Lets the key go, so that a retry reaches the upstream again. A
    /// release that fails leaves the claim to its lease: retries hear 409
    /// until it runs out, never a replay of nothing.
    async fn release(&self, why: &'static str) {
        let released = self
            .services
            .claims
            .release(&self.claim.namespace, &self.claim.key, self.token)
            .await;
        if !matches!(released, Ok(TransitionOutcome::Released)) {
            tracing::warn!(key = self.claim.key.as_str(), why, outcome = ?released.map(|_| ()), "proxy claim not released; it ends with its lease");
        }
    }

    /// Stores `stored` as the claim's result; false when it could not be.
    async fn complete(&self, stored: &StoredResponse, limit: usize) -> bool {
        let Ok(result) = StoredResult::from_json_within(&stored.to_json(), limit) else {
            return false;
        };
        let completed = self
            .services
            .claims
            .complete(
                &self.claim.namespace,
                &self.claim.key,
                self.token,
                Some(result),
            )
            .await;
        match completed {
            Ok(TransitionOutcome::Done(_)) => true,
            other => {
                tracing::warn!(key = self.claim.key.as_str(), outcome = ?other.map(|_| ()), "the upstream answered but its response could not be stored");
                false
            }
        }
    }
}

async fn forward_claimed(
    state: &ProxyState,
    claimed: Claimed<'_>,
    parts: request::Parts,
    body: Bytes,
) -> Handled {
    let storage = &state.config.storage;
    let (deadline, response) = match send(state, &parts, Body::from(body)).await {
        Ok(sent) => sent,
        Err(failed) => {
            claimed.release("upstream failed").await;
            return Err(failed);
        }
    };
    let (head, body) = response.into_parts();
    if !storage.stores(head.status.as_u16()) {
        claimed.release("status not stored").await;
        return Ok((ProxyOutcome::Released, Response::from_parts(head, body)));
    }
    let read = match timeout_at(deadline, read_up_to(body, storage.max_bytes)).await {
        Ok(read) => read,
        Err(_) => ReadBody::Failed("timed out".into()),
    };
    let stored_body = match read {
        ReadBody::Failed(error) => {
            claimed.release("upstream body failed").await;
            return Err((
                ProxyOutcome::UpstreamFailed,
                ApiError::UpstreamUnreachable(format!(
                    "the upstream's response body broke off ({error}); the request was released, \
                     a retry reaches the upstream again"
                )),
            ));
        }
        ReadBody::TooLarge { read, rest } => {
            let response = Response::from_parts(head, read_then_rest(read, rest));
            return too_large(&claimed, state, response).await;
        }
        ReadBody::Whole(bytes) => bytes,
    };
    let stored = StoredResponse::of(
        head.status,
        &head.headers,
        &storage.headers,
        stored_body.clone(),
    );
    // The body fitted, but with its headers the stored form may not.
    if StoredResult::from_json_within(&stored.to_json(), storage.max_bytes).is_err() {
        let response = Response::from_parts(head, Body::from(stored_body));
        return too_large(&claimed, state, response).await;
    }
    let mut response = Response::from_parts(head, Body::from(stored_body));
    if claimed.complete(&stored, storage.max_bytes).await {
        return Ok((ProxyOutcome::Stored, response));
    }
    response
        .headers_mut()
        .insert(WARNING, HeaderValue::from_static("not-stored"));
    Ok((ProxyOutcome::CompleteFailed, response))
}

/// A response over the storage cap, by the configured policy.
async fn too_large(claimed: &Claimed<'_>, state: &ProxyState, mut response: Response) -> Handled {
    let status = response.status();
    match state.config.storage.oversize {
        OversizePolicy::Release => {
            claimed.release("response too large").await;
            response.headers_mut().insert(
                WARNING,
                HeaderValue::from_static("response-too-large; released"),
            );
            Ok((ProxyOutcome::TooLargeReleased, response))
        }
        OversizePolicy::FailClosed => {
            let marker = StoredResponse::NotStored { status };
            let warning = if claimed.complete(&marker, usize::MAX).await {
                "response-too-large; not-replayable"
            } else {
                "not-stored"
            };
            response
                .headers_mut()
                .insert(WARNING, HeaderValue::from_static(warning));
            Ok((ProxyOutcome::TooLargeKept, response))
        }
    }
}

/// The stored response of the key's first request, marked as a replay.
fn replay(result: Option<StoredResult>) -> Handled {
    let stored = result
        .ok_or(UnknownStoredValue(
            "the claim was completed without a result",
        ))
        .and_then(|result| StoredResponse::from_json(&result.to_json()));
    match stored {
        Ok(StoredResponse::Response {
            status,
            headers,
            body,
        }) => {
            let mut response = (status, body).into_response();
            response.headers_mut().remove(header::CONTENT_TYPE);
            response
                .headers_mut()
                .extend(headers.into_iter().map(|(name, value)| (Some(name), value)));
            response
                .headers_mut()
                .insert(REPLAYED, HeaderValue::from_static("true"));
            Ok((ProxyOutcome::Replayed, response))
        }
        Ok(StoredResponse::NotStored { status }) => Err((
            ProxyOutcome::NotStoredReplayed,
            ApiError::ResponseNotStored {
                status: status.as_u16(),
            },
        )),
        // Something else holds the key (a claim made through the claim API
        // in the proxy's namespace): say so rather than replay a guess.
        Err(error) => Err((ProxyOutcome::Refused, ApiError::Conflict(error.to_string()))),
    }
}
