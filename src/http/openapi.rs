//! The OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from the code.

use axum::Json;
use utoipa::OpenApi;

use super::batch::{BatchBody, BatchItem, BatchResponse, BatchResult};
use super::claims::{
    AcquiredResponse, ClaimBody, ClaimView, CompleteBody, DuplicateResponse, ExtendBody, StateDto,
    TokenBody, TransitionResponse,
};
use super::error::Problem;
use super::health::HealthResponse;
use super::sequences::{AdvanceBody, AdvanceResponse, SetBody, SkippedRange, StreamView};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dedupd",
        description = "A claim ledger for at-least-once consumers: claim a message id before acting on it; \
                       inside the retention window exactly one claimant wins.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::batch::claim_batch,
        super::claims::claim,
        super::claims::get,
        super::claims::complete,
        super::claims::release,
        super::claims::extend,
        super::sequences::advance,
        super::sequences::set,
        super::sequences::get,
        super::sequences::delete,
        super::health::livez,
        super::health::readyz,
        super::health::metrics,
    ),
    components(schemas(
        ClaimBody, AcquiredResponse, DuplicateResponse, StateDto, TokenBody, CompleteBody,
        ExtendBody, TransitionResponse, ClaimView, Problem, HealthResponse, BatchBody,
        BatchItem, BatchResult, BatchResponse, AdvanceBody, SetBody, AdvanceResponse,
        SkippedRange, StreamView
    )),
    tags(
        (name = "claims", description = "Claim, complete, release, extend and read message ids"),
        (name = "sequences", description = "Per-stream sequence numbers with gap detection"),
        (name = "operations", description = "Probes and metrics"),
    )
)]
pub struct ApiDoc;

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
