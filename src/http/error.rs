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
    #[error("internal error")]
    Internal(String),
}

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
            ApiError::Conflict(_) => StatusCode::CONFLICT,
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

    /// `urn:dedupd:problem:<slug>`: the problem document's `type`.
    pub fn problem_type(&self) -> String {
        format!("urn:dedupd:problem:{}", self.slug())
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
            ApiError::Internal(_) => ("internal", "Internal error"),
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::Overloaded | ApiError::TooManyWaiters | ApiError::NotAttempted => Some(1),
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
