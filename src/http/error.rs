//! The one error type of the HTTP edge. Every error leaves as an RFC 9457
//! `application/problem+json` document; causes are logged, not returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::lifecycle::DecideError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[schema(example = "urn:dedupd:problem:invalid-request")]
    pub r#type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("this resource does not support the {0} method")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    FingerprintMismatch(String),
    /// An admin action found the claim other than it was, or not in a
    /// state the action applies to: nothing was done.
    #[error("{0}")]
    Conflict(String),
    #[error("too many requests are waiting on the database; retry shortly")]
    Overloaded,
    /// A claim asked to wait (`wait_secs`) while every waiter slot of this
    /// instance was taken: nothing changed, the key is still held.
    #[error(
        "too many claims are waiting on this instance; the key is still held in progress: retry shortly, or without wait_secs to hear the holder now"
    )]
    TooManyWaiters,
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after_secs: u64,
    },
    /// The database refused a statement outright (a schema or permission
    /// problem): nothing was written, so a retry once an operator has fixed
    /// it is safe. The cause is in the logs, not the answer.
    #[error(
        "the database refused the statement (the cause is logged for the operator); nothing was written: retry later"
    )]
    StoreRefused,
    /// A batch's deadline came before this key's turn: nothing was written.
    #[error(
        "not attempted: the batch's deadline came before this key's turn; nothing was written for it: retry it"
    )]
    NotAttempted,
    /// The proxy's answers (`dedupd proxy`): the draft's error scenarios,
    /// whose problem types link to the draft's section, and the upstream's.
    #[error(
        "this route requires an Idempotency-Key header (a Structured Field String, 1 to 255 characters)"
    )]
    IdempotencyKeyMissing,
    #[error("{0}")]
    IdempotencyKeyInvalid(String),
    #[error(
        "this Idempotency-Key was used for a request with a different payload; a retry must repeat the request exactly, a new request needs a new key"
    )]
    IdempotencyKeyReused,
    #[error(
        "a request with this Idempotency-Key is still being processed; retry after Retry-After, or send `Prefer: wait=N` to wait for its response"
    )]
    RequestInProgress,
    /// The first request was processed, but its response was too large to
    /// store and the route fails closed: it is never forwarded again.
    #[error(
        "the request with this Idempotency-Key was processed (the upstream answered {status}), but its response was too large to store; it is not sent again"
    )]
    ResponseNotStored { status: u16 },
    #[error("{0}")]
    UpstreamUnreachable(String),
    #[error("{0}")]
    UpstreamTimeout(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("internal error")]
    Internal(String),
}

/// The revision of the Idempotency-Key draft the proxy implements; the
/// problem types of its error scenarios point into it.
pub const IDEMPOTENCY_DRAFT: &str =
    "https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-idempotency-key-header-07";

impl ApiError {
    /// A 400 that says what a check refused, in the check's own words (the
    /// domain's parse errors and the handlers' own messages alike).
    pub fn invalid_request(error: impl ToString) -> Self {
        ApiError::InvalidRequest(error.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::FingerprintMismatch(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_)
            | ApiError::RequestInProgress
            | ApiError::ResponseNotStored { .. } => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyMissing | ApiError::IdempotencyKeyInvalid(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Overloaded
            | ApiError::TooManyWaiters
            | ApiError::Unavailable { .. }
            | ApiError::StoreRefused
            | ApiError::NotAttempted => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem's kind, as in `urn:dedupd:problem:<slug>`.
    pub fn slug(&self) -> &'static str {
        self.slug_and_title().0
    }

    /// The problem document's `type`: `urn:dedupd:problem:<slug>`, or for
    /// the draft's error scenarios the draft's section that names them
    /// (2.1, the header's syntax; 2.7, the error scenarios).
    pub fn problem_type(&self) -> String {
        let section = match self {
            ApiError::IdempotencyKeyInvalid(_) => "2.1",
            ApiError::IdempotencyKeyMissing
            | ApiError::IdempotencyKeyReused
            | ApiError::RequestInProgress => "2.7",
            _ => return format!("urn:dedupd:problem:{}", self.slug()),
        };
        format!("{IDEMPOTENCY_DRAFT}#section-{section}")
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::InvalidRequest(_) => ("invalid-request", "Invalid request"),
            ApiError::Unauthorized(_) => ("unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => ("forbidden", "Forbidden"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            ApiError::PayloadTooLarge(_) => ("payload-too-large", "Payload too large"),
            ApiError::UnsupportedMediaType(_) => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::FingerprintMismatch(_) => (
                "fingerprint-mismatch",
                "The key was claimed for a different payload",
            ),
            ApiError::Conflict(_) => ("conflict", "The claim is not as the action expected"),
            ApiError::Overloaded => ("overloaded", "Overloaded"),
            ApiError::TooManyWaiters => ("too-many-waiters", "Too many waiters"),
            ApiError::Unavailable { .. } => ("unavailable", "Outcome not decided"),
            ApiError::StoreRefused => ("store-refused", "The database refused the statement"),
            ApiError::NotAttempted => ("not-attempted", "Not attempted"),
            ApiError::IdempotencyKeyMissing => {
                ("idempotency-key-missing", "Idempotency-Key is missing")
            }
            ApiError::IdempotencyKeyInvalid(_) => {
                ("idempotency-key-invalid", "Idempotency-Key is invalid")
            }
            ApiError::IdempotencyKeyReused => {
                ("idempotency-key-reused", "Idempotency-Key is already used")
            }
            ApiError::RequestInProgress => (
                "request-in-progress",
                "A request is outstanding for this Idempotency-Key",
            ),
            ApiError::ResponseNotStored { .. } => {
                ("response-not-stored", "The first response was not stored")
            }
            ApiError::UpstreamUnreachable(_) => ("upstream-unreachable", "Upstream unreachable"),
            ApiError::UpstreamTimeout(_) => ("upstream-timeout", "Upstream timed out"),
            ApiError::NotImplemented(_) => ("not-implemented", "Not implemented"),
            ApiError::Internal(_) => ("internal", "Internal error"),
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::Overloaded
            | ApiError::TooManyWaiters
            | ApiError::NotAttempted
            | ApiError::RequestInProgress => Some(1),
            // A refusal lasts until someone fixes the schema or the grants:
            // no point in hammering.
            ApiError::StoreRefused => Some(5),
            ApiError::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

impl From<DecideError> for ApiError {
    fn from(error: DecideError) -> Self {
        match error {
            DecideError::Undecided { detail } => ApiError::Unavailable {
                detail,
                retry_after_secs: 1,
            },
            DecideError::TtlRejected(message) => ApiError::InvalidRequest(format!(
                "the database refused this ttl_secs (its storage format cannot hold the expiry \
                 date; Cassandra 5.0 in its default compatibility mode stops at 2038-01-19): {message}"
            )),
            DecideError::Store(error) => {
                tracing::error!(statement = error.statement, error = %error, "database refused a statement");
                ApiError::StoreRefused
            }
        }
    }
}

/// Builds the problem response for `status` with a ready-made detail (used
/// where axum produces the status, such as the 405 fallback).
pub fn problem_response(error: &ApiError) -> Response {
    let status = error.status();
    let title = error.slug_and_title().1;
    let detail = match error {
        // The cause is for the logs; callers get a stable sentence.
        ApiError::Internal(cause) => {
            tracing::error!(cause = %cause, "internal error");
            "the server failed to handle this request; it has been logged".to_owned()
        }
        other => other.to_string(),
    };
    let problem = Problem {
        r#type: error.problem_type(),
        title: title.to_owned(),
        status: status.as_u16(),
        detail,
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if matches!(error, ApiError::Unauthorized(_)) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"dedupd\""),
        );
    }
    if let Some(seconds) = error.retry_after_secs() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        problem_response(&self)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
