//! The admin API: an operator inspects a stuck claim, force-releases it or
//! forgets it (`dedupd admin …` is its command line).
//!
//! Only admin tokens reach it (`auth::Auth::authenticate_admin`): with no
//! admin token configured it refuses everyone. Each action is the
//! compare-and-set of `claims::admin`, and each writes one audit log line
//! (target `dedupd::audit`): who, what, which key, the claim before and
//! after, and the reason given.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Auth;
use super::claim_answer::{StateDto, holder_of};
use super::error::{ApiError, ApiResult};
use super::extract::{OptionalJsonBody, WithBody, decoded_params, param};
use super::problem_docs::{InvalidRequest, NoLiveClaim, NotDecided};
use crate::claims::{AdminAction, AdminOutcome};
use crate::domain::{ClaimKey, ClaimRecord, Namespace, Principal, StoredResult};

/// The longest reason an action may carry, in bytes: a sentence or a
/// ticket reference, not a document (it goes into a log line).
pub const MAX_REASON_BYTES: usize = 512;

/// The admin routes' path: the claim routes' under `/v1/admin`.
pub const ADMIN_CLAIM_ROUTE: &str = "/v1/admin/namespaces/{ns}/claims/{key}";

/// An admin's call on one claim: the admin token first (403 when there is
/// none, 401 without a valid token), then the namespace and key, which the
/// token must be allowed.
pub struct AdminClaimPath {
    pub admin: Principal,
    pub namespace: Namespace,
    pub key: ClaimKey,
}

impl FromRequestParts<AppState> for AdminClaimPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let grant = state.auth.authenticate_admin(&parts.headers)?;
        let params = decoded_params(parts)?;
        let namespace =
            Namespace::parse(param(&params, "ns")?).map_err(ApiError::invalid_request)?;
        Auth::authorize(Some(grant), &namespace)?;
        let key = ClaimKey::parse(param(&params, "key")?).map_err(ApiError::invalid_request)?;
        Ok(Self {
            admin: grant.name.clone(),
            namespace,
            key,
        })
    }
}

/// The body of force-release: the reason is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceReleaseBody {
    /// Why, for the audit log (up to 512 bytes).
    #[schema(max_length = 512, example = "worker pod evicted, ticket OPS-123")]
    pub reason: Option<String>,
}

/// The body of forget: the reason is required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetBody {
    /// Why, for the audit log (1 to 512 bytes).
    #[schema(
        min_length = 1,
        max_length = 512,
        example = "refund reversed; reprocess, ticket OPS-124"
    )]
    pub reason: String,
}

fn checked_reason(reason: Option<String>, required: bool) -> ApiResult<Option<String>> {
    let reason = reason.filter(|reason| !reason.trim().is_empty());
    match reason {
        None if required => Err(ApiError::InvalidRequest(
            "a reason is required: say why the claim is forgotten (it goes to the audit log)"
                .into(),
        )),
        Some(reason) if reason.len() > MAX_REASON_BYTES => Err(ApiError::InvalidRequest(format!(
            "the reason is {} bytes; at most {MAX_REASON_BYTES}",
            reason.len()
        ))),
        reason => Ok(reason),
    }
}

/// A claim as an operator sees it: everything but the owner token.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminClaimView {
    pub state: StateDto,
    /// The holder's claimant id as stored (`<token name>/<claimant>` when
    /// auth is on), if it sent one. Shown to admins only.
    pub claimant: Option<String>,
    /// The label the claim answers show for that claimant.
    #[schema(example = "h:9f86d081884c7d65")]
    pub holder: Option<String>,
    /// A label of the retention window: a takeover keeps it, a new claim
    /// after a release or forget starts another. A hash, because the
    /// stored window id is the first claim's token: a credential.
    #[schema(example = "w:1c6a4b5e0d9f2a37")]
    pub window: String,
    pub claimed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Whether the lease has passed: the next claim takes the key over.
    pub lease_expired: bool,
    pub completed_at: Option<DateTime<Utc>>,
    pub fingerprint: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
}

impl AdminClaimView {
    fn of(record: &ClaimRecord) -> Self {
        Self {
            state: record.state.into(),
            claimant: record.claimant.clone(),
            holder: holder_of(record),
            window: window_label(record.window),
            claimed_at: record.claimed_at,
            expires_at: record.expires_at,
            lease_expires_at: record.lease_expires_at,
            lease_expired: record.lease_expired(crate::domain::now_millis()),
            completed_at: record.completed_at,
            fingerprint: record.fingerprint.clone(),
            result: record.result.as_ref().map(StoredResult::to_json),
        }
    }
}

/// 200 after force-release or forget.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminActionResponse {
    /// `force_released` or `forgotten`.
    pub outcome: &'static str,
    /// The claim as it was: its holder's token no longer owns anything.
    pub before: AdminClaimView,
    /// Seconds within which every instance has heard of it: other instances
    /// may answer a forgotten completed claim from memory until then.
    pub heard_everywhere_within_secs: u64,
}

/// Inspect a claim: its state, holder's claimant, lease and window.
#[utoipa::path(get, path = "/v1/admin/namespaces/{ns}/claims/{key}", tag = "admin",
    params(super::extract::ClaimPathParams),
    responses((status = 200, description = "The claim", body = AdminClaimView), AdminRefusals, InvalidRequest, NoLiveClaim, NotDecided)
)]
pub async fn inspect(State(state): State<AppState>, path: AdminClaimPath) -> ApiResult<Response> {
    let (services, _permit) = state.admitted()?;
    let Some(record) = services.claims.get(&path.namespace, &path.key).await? else {
        return Err(no_live_claim());
    };
    Ok((StatusCode::OK, Json(AdminClaimView::of(&record))).into_response())
}

/// Force-release an in-progress claim, fencing its holder: the key can be
/// claimed again at once, and the holder's token owns nothing.
#[utoipa::path(post, path = "/v1/admin/namespaces/{ns}/claims/{key}/force-release", tag = "admin",
    params(super::extract::ClaimPathParams),
    request_body(content = Option<ForceReleaseBody>, content_type = "application/json", description = "Optional"),
    responses((status = 200, description = "Released; `before` is the claim that was", body = AdminActionResponse), AdminRefusals, AdminConflict, InvalidRequest, NoLiveClaim, NotDecided)
)]
pub async fn force_release(
    State(state): State<AppState>,
    path: AdminClaimPath,
    OptionalJsonBody(body): OptionalJsonBody<ForceReleaseBody>,
) -> ApiResult<Response> {
    let reason = checked_reason(body.reason, false)?;
    act(&state, &path, AdminAction::ForceRelease, reason).await
}

/// Forget a claim, completed or not, so its key can be claimed again.
#[utoipa::path(post, path = "/v1/admin/namespaces/{ns}/claims/{key}/forget", tag = "admin",
    params(super::extract::ClaimPathParams),
    request_body = ForgetBody,
    responses((status = 200, description = "Forgotten; `before` is the claim that was", body = AdminActionResponse), AdminRefusals, AdminConflict, InvalidRequest, NoLiveClaim, NotDecided)
)]
pub async fn forget(call: WithBody<AdminClaimPath, ForgetBody>) -> ApiResult<Response> {
    let reason = checked_reason(Some(call.body.reason), true)?;
    act(&call.state, &call.path, AdminAction::Forget, reason).await
}

async fn act(
    state: &AppState,
    path: &AdminClaimPath,
    action: AdminAction,
    reason: Option<String>,
) -> ApiResult<Response> {
    let (services, _permit) = state.admitted()?;
    let outcome = services
        .claims
        .administer(action, &path.namespace, &path.key)
        .await;
    audit(path, action, reason.as_deref(), &outcome);
    match outcome? {
        AdminOutcome::Done { before } => {
            let answer = AdminActionResponse {
                outcome: match action {
                    AdminAction::ForceRelease => "force_released",
                    AdminAction::Forget => "forgotten",
                },
                before: AdminClaimView::of(&before),
                heard_everywhere_within_secs: services.claims.completed_cache_max_age().as_secs(),
            };
            Ok((StatusCode::OK, Json(answer)).into_response())
        }
        AdminOutcome::NotFound => Err(no_live_claim()),
        AdminOutcome::Completed(_) => Err(ApiError::Conflict(
            "the claim is completed: there is no holder to release; `forget` it to let the key \
             be claimed again"
                .into(),
        )),
        AdminOutcome::Changed => Err(ApiError::Conflict(
            "the claim changed while acting on it (its holder completed, released or was taken \
             over): nothing was done; inspect it again"
                .into(),
        )),
    }
}

/// The audit line: one per action, whatever its outcome. The key and reason
/// are Debug-formatted, so a newline in them cannot forge a second line.
fn audit(
    path: &AdminClaimPath,
    action: AdminAction,
    reason: Option<&str>,
    outcome: &Result<AdminOutcome, crate::claims::DecideError>,
) {
    let (result, before, after) = match outcome {
        Ok(AdminOutcome::Done { before }) => ("done", describe(Some(before)), "absent"),
        Ok(AdminOutcome::Completed(record)) => ("completed", describe(Some(record)), "unchanged"),
        Ok(AdminOutcome::NotFound) => ("not_found", describe(None), "unchanged"),
        Ok(AdminOutcome::Changed) => ("changed", "unknown".to_owned(), "unchanged"),
        Err(_) => ("undecided", "unknown".to_owned(), "unknown"),
    };
    tracing::info!(
        target: "dedupd::audit",
        admin = %path.admin,
        action = action.as_str(),
        namespace = %path.namespace,
        key = ?path.key.as_str(),
        result,
        before = %before,
        after,
        reason = ?reason.unwrap_or(""),
        "admin action"
    );
}

/// A claim, for the audit line: state, holder label, window label and
/// lease end (never the token, the window id, the claimant or the result).
fn describe(record: Option<&ClaimRecord>) -> String {
    let Some(record) = record else {
        return "absent".to_owned();
    };
    let lease = record
        .lease_expires_at
        .map_or_else(|| "none".to_owned(), |at| at.to_rfc3339());
    format!(
        "state={} holder={} window={} lease_expires_at={lease}",
        record.state.as_str(),
        holder_of(record).unwrap_or_else(|| "none".to_owned()),
        window_label(record.window),
    )
}

/// `w:` and 16 hex digits of SHA-256("dedupd window\0" + window id): tells
/// windows apart without revealing the id, which is the token of the claim
/// that opened the window.
fn window_label(window: Uuid) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"dedupd window\0")
        .chain_update(window.as_bytes())
        .finalize();
    let hex: String = digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("w:{hex}")
}

fn no_live_claim() -> ApiError {
    ApiError::NotFound("no live claim for this key (never claimed, released, or expired)".into())
}

/// The refusals every admin route shares.
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
enum AdminRefusals {
    #[response(
        status = 401,
        description = "No valid bearer token",
        content_type = "application/problem+json"
    )]
    Unauthorized(super::error::Problem),
    #[response(
        status = 403,
        description = "Not an admin token, a namespace the token may not use, or no admin token is configured (the admin API is off)",
        content_type = "application/problem+json"
    )]
    Forbidden(super::error::Problem),
}

#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
#[response(
    status = 409,
    description = "The claim changed between the read and the write, or force-release of a completed claim: nothing was done",
    content_type = "application/problem+json"
)]
struct AdminConflict(super::error::Problem);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_and_forget_needs_one() {
        assert!(checked_reason(None, true).is_err());
        assert!(checked_reason(Some("  ".into()), true).is_err());
        assert_eq!(checked_reason(None, false).unwrap(), None);
        assert_eq!(checked_reason(Some(" ".into()), false).unwrap(), None);
        assert!(checked_reason(Some("x".repeat(MAX_REASON_BYTES + 1)), false).is_err());
        assert_eq!(
            checked_reason(Some("ticket 1".into()), true)
                .unwrap()
                .as_deref(),
            Some("ticket 1")
        );
    }
}
