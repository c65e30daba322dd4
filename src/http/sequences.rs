//! The sequence endpoints: `…/sequences/{stream}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{StreamPath, StreamPathParams, WithBody};
use super::problem_docs::{
    BodyNotJson, InvalidRequest, NoSuchStream, NotDecided, UnknownNamespace,
};
use crate::domain::{Offerer, SequenceNumber, WatermarkValue};
use crate::sequences::{AdvanceOutcome, StreamOutcome};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceBody {
    /// The message's number in its stream, 1 to 2^63−1.
    #[schema(minimum = 1, maximum = 9223372036854775807_u64)]
    #[serde(deserialize_with = "super::json_int::whole")]
    pub seq: u64,
    /// Accept a jump, reporting the skipped range, instead of answering
    /// `gap` (for producers that may leave holes, such as several nodes).
    pub allow_gaps: Option<bool>,
    /// An optional consumer id, up to 128 bytes. Offering a number this
    /// offerer (with the same bearer token, when auth is on) already had
    /// accepted answers `accepted` again (among the stream's last 64
    /// numbers), not `duplicate`: retry with it after a lost answer or a
    /// 503. Keep it unguessable where callers sharing a token do not trust
    /// each other.
    #[schema(min_length = 1, max_length = 128)]
    pub offerer: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBody {
    /// The new watermark, 0 to 2^63−1.
    #[schema(minimum = 0, maximum = 9223372036854775807_u64)]
    #[serde(deserialize_with = "super::json_int::whole")]
    pub last: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SkippedRange {
    pub from: u64,
    pub to: u64,
}

/// The answer to an offered number.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdvanceResponse {
    /// `accepted`, `duplicate` or `gap`.
    pub outcome: &'static str,
    /// The stream's watermark after this call.
    pub last: u64,
    /// For `gap`: ask for redelivery from this number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    /// For `accepted` with `allow_gaps`: the numbers jumped over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<SkippedRange>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamView {
    pub last: u64,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The 404 of a read or delete of a stream that has no watermark.
fn no_such_stream(path: &StreamPath) -> ApiError {
    ApiError::NotFound(format!(
        "no stream {:?} in {}",
        path.stream.as_str(),
        path.namespace
    ))
}

/// Offer a message's sequence number.
#[utoipa::path(post, path = "/v1/namespaces/{ns}/sequences/{stream}", tag = "sequences",
    params(StreamPathParams), request_body = AdvanceBody,
    responses(
        (status = 200, description = "Accepted: the watermark moved", body = AdvanceResponse),
        (status = 409, description = "duplicate (at or below the watermark) or gap (numbers missing: redeliver from `expected`)", body = AdvanceResponse),
        InvalidRequest, UnknownNamespace, BodyNotJson, NotDecided,
    )
)]
pub async fn advance(call: WithBody<StreamPath, AdvanceBody>) -> ApiResult<Response> {
    let WithBody { state, path, body } = call;
    let seq = SequenceNumber::parse(body.seq).map_err(ApiError::invalid_request)?;
    let offerer = body
        .offerer
        .as_deref()
        .map(|offerer| Offerer::parse(path.principal.as_ref(), offerer))
        .transpose()
        .map_err(ApiError::invalid_request)?;
    let (services, _permit) = state.admitted()?;
    let outcome = services
        .sequences
        .advance(
            &path.namespace,
            &path.stream,
            seq,
            body.allow_gaps.unwrap_or(false),
            offerer.as_ref(),
        )
        .await?;
    let (status, body) = match outcome {
        AdvanceOutcome::Accepted { last, skipped } => (
            StatusCode::OK,
            AdvanceResponse {
                outcome: "accepted",
                last,
                expected: None,
                skipped: skipped.map(|(from, to)| SkippedRange { from, to }),
            },
        ),
        AdvanceOutcome::Duplicate { last } => (
            StatusCode::CONFLICT,
            AdvanceResponse {
                outcome: "duplicate",
                last,
                expected: None,
                skipped: None,
            },
        ),
        AdvanceOutcome::Gap { last, expected } => (
            StatusCode::CONFLICT,
            AdvanceResponse {
                outcome: "gap",
                last,
                expected: Some(expected),
                skipped: None,
            },
        ),
    };
    Ok((status, Json(body)).into_response())
}

/// Set a stream's watermark (streams numbered elsewhere, operator resets).
#[utoipa::path(put, path = "/v1/namespaces/{ns}/sequences/{stream}", tag = "sequences",
    params(StreamPathParams), request_body = SetBody,
    responses((status = 200, description = "Set", body = StreamView), InvalidRequest, UnknownNamespace, BodyNotJson, NotDecided)
)]
pub async fn set(call: WithBody<StreamPath, SetBody>) -> ApiResult<Response> {
    let last = WatermarkValue::parse(call.body.last).map_err(ApiError::invalid_request)?;
    let path = &call.path;
    let (services, _permit) = call.state.admitted()?;
    let sequences = &services.sequences;
    sequences.set(&path.namespace, &path.stream, last).await?;
    let view = sequences.get(&path.namespace, &path.stream).await?;
    Ok(Json(StreamView {
        last: view.as_ref().map_or(last.get(), |watermark| watermark.last),
        updated_at: view.and_then(|watermark| watermark.updated_at),
    })
    .into_response())
}

/// Read a stream's watermark.
#[utoipa::path(get, path = "/v1/namespaces/{ns}/sequences/{stream}", tag = "sequences",
    params(StreamPathParams),
    responses((status = 200, description = "The watermark", body = StreamView), InvalidRequest, NoSuchStream, NotDecided)
)]
pub async fn get(State(state): State<AppState>, path: StreamPath) -> ApiResult<Response> {
    let (services, _permit) = state.admitted()?;
    let sequences = &services.sequences;
    let Some(watermark) = sequences.get(&path.namespace, &path.stream).await? else {
        return Err(no_such_stream(&path));
    };
    Ok(Json(StreamView {
        last: watermark.last,
        updated_at: watermark.updated_at,
    })
    .into_response())
}

/// Delete a stream: its next number starts from `last = 0` again.
#[utoipa::path(delete, path = "/v1/namespaces/{ns}/sequences/{stream}", tag = "sequences",
    params(StreamPathParams),
    responses((status = 204, description = "Deleted"), InvalidRequest, NoSuchStream, NotDecided)
)]
pub async fn delete(State(state): State<AppState>, path: StreamPath) -> ApiResult<Response> {
    let (services, _permit) = state.admitted()?;
    let sequences = &services.sequences;
    match sequences.delete(&path.namespace, &path.stream).await? {
        StreamOutcome::Done => Ok(StatusCode::NO_CONTENT.into_response()),
        StreamOutcome::NotFound => Err(no_such_stream(&path)),
    }
}
