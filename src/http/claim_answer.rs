//! What one claim answers, whether it came alone (`POST …/claims/{key}`) or
//! as one key of a batch. Both go through `ClaimAnswer::new`, so a key means
//! the same thing either way: the same status, the same fields, the same
//! mapping of every error (a TTL the database refuses is a 400 in a batch
//! too, never a 500).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::answer_body::answer_body;
use super::error::ApiError;
use crate::claims::{Acquisition, ClaimOutcome, ClaimRequest, DecideError};
use crate::domain::{ClaimRecord, ClaimState, StoredResult, holder_label, now_millis};

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateDto {
    InProgress,
    Completed,
}

impl From<ClaimState> for StateDto {
    fn from(state: ClaimState) -> Self {
        match state {
            ClaimState::InProgress => StateDto::InProgress,
            ClaimState::Completed => StateDto::Completed,
        }
    }
}

/// 201: the caller owns the key.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcquiredResponse {
    /// Always `acquired`.
    #[schema(example = "acquired")]
    pub outcome: &'static str,
    /// The owner token: pass it to complete, release and extend.
    pub token: Uuid,
    pub state: StateDto,
    pub expires_at: DateTime<Utc>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// True when this claim took over one whose lease had passed; the old
    /// token is fenced out.
    pub takeover: bool,
}

answer_body! {
    /// 409: someone else holds the key.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct DuplicateResponse {
        /// Always `duplicate`.
        #[schema(example = "duplicate")]
        pub outcome: &'static str,
        /// `in_progress`: retry after `Retry-After` (the winner may still fail);
        /// `completed`: the work is done, `result` holds what the winner stored.
        pub state: StateDto,
        pub expires_at: DateTime<Utc>,
    }
    optional {
        pub lease_expires_at: Option<DateTime<Utc>>,
        pub completed_at: Option<DateTime<Utc>>,
        /// For in_progress, when the holder set a claimant: a non-secret label
        /// of it, `h:` and 16 hex digits (see the README, "Claimants"). Never
        /// the claimant itself: a claimant id hands its in-progress token back.
        #[schema(example = "h:9f86d081884c7d65")]
        pub holder: Option<String>,
        /// Present when completed (null if the winner stored none).
        #[schema(value_type = Option<Object>)]
        pub result: Option<serde_json::Value>,
    }
}

/// The label an answer shows for a record's claimant, if it has one.
pub fn holder_of(record: &ClaimRecord) -> Option<String> {
    record.claimant.as_deref().map(holder_label)
}

/// Seconds until `at`, rounded up, at least 1: a `Retry-After` value.
pub fn seconds_until(at: DateTime<Utc>) -> u64 {
    let millis = (at - now_millis()).num_milliseconds().max(0) as u64;
    millis.div_ceil(1000).max(1)
}

/// One claim's answer.
pub enum ClaimAnswer {
    Acquired(AcquiredResponse),
    /// The 409 body and, for in progress, the seconds to wait.
    Duplicate {
        body: DuplicateResponse,
        retry_after_secs: Option<u64>,
    },
    /// Every other answer is a problem: 4xx or 503.
    Refused(ApiError),
}

impl ClaimAnswer {
    pub fn new(outcome: Result<ClaimOutcome, DecideError>, request: &ClaimRequest) -> Self {
        match outcome {
            Ok(ClaimOutcome::Acquired { record, how }) => Self::Acquired(AcquiredResponse {
                outcome: "acquired",
                token: record.token.0,
                state: record.state.into(),
                expires_at: record.expires_at,
                lease_expires_at: record.lease_expires_at,
                takeover: how == Acquisition::Takeover,
            }),
            Ok(ClaimOutcome::Duplicate { record }) => Self::duplicate(&record),
            Ok(ClaimOutcome::FingerprintMismatch { .. }) => {
                Self::Refused(ApiError::FingerprintMismatch(format!(
                    "key {:?} in {} was claimed with a different fingerprint: the id was reused for another payload",
                    request.key.as_str(),
                    request.namespace
                )))
            }
            Err(error) => Self::Refused(error.into()),
        }
    }

    fn duplicate(record: &ClaimRecord) -> Self {
        let completed = record.state == ClaimState::Completed;
        let lease_expires_at = record.lease_expires_at.filter(|_| !completed);
        let body = DuplicateResponse {
            outcome: "duplicate",
            state: record.state.into(),
            expires_at: record.expires_at,
            lease_expires_at,
            completed_at: record.completed_at.filter(|_| completed),
            holder: holder_of(record).filter(|_| !completed),
            result: completed.then(|| {
                record
                    .result
                    .as_ref()
                    .map(StoredResult::to_json)
                    .unwrap_or(serde_json::Value::Null)
            }),
        };
        Self::Duplicate {
            body,
            retry_after_secs: lease_expires_at.map(seconds_until),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Acquired(_) => StatusCode::CREATED,
            Self::Duplicate { .. } => StatusCode::CONFLICT,
            Self::Refused(error) => error.status(),
        }
    }
}

impl IntoResponse for ClaimAnswer {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            Self::Acquired(body) => (status, Json(body)).into_response(),
            Self::Duplicate {
                body,
                retry_after_secs,
            } => {
                let mut response = (status, Json(body)).into_response();
                if let Some(seconds) = retry_after_secs {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
            Self::Refused(error) => error.into_response(),
        }
    }
}
