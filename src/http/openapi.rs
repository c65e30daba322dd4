//! The OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from the code.

use axum::Json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{Ref, Required};
use utoipa::{Modify, OpenApi};

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
    modifiers(&OptionalClaimBody),
    tags(
        (name = "claims", description = "Claim, complete, release, extend and read message ids"),
        (name = "sequences", description = "Per-stream sequence numbers with gap detection"),
        (name = "operations", description = "Probes and metrics"),
    )
)]
pub struct ApiDoc;

/// Describes the claim's body as what it is: a `ClaimBody` that may be left
/// out (`required: false`). Derived from an `Option`, it would come out as
/// `oneOf: [ClaimBody, null]` on a required body.
struct OptionalClaimBody;

impl Modify for OptionalClaimBody {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(item) = openapi
            .paths
            .paths
            .get_mut("/v1/namespaces/{ns}/claims/{key}")
        else {
            return;
        };
        let Some(post) = item.post.as_mut() else {
            return;
        };
        post.request_body = Some(
            RequestBodyBuilder::new()
                .description(Some(
                    "Optional: an absent, empty or `null` body means the namespace's defaults",
                ))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ClaimBody")))
                        .build(),
                )
                .required(Some(Required::False))
                .build()
                .into(),
        );
    }
}

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
