//! The OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from the code.

use axum::Json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Ref, Required};
use utoipa::{Modify, OpenApi};

use super::batch::{BatchBody, BatchItem, BatchResponse, BatchResult};
use super::claim_answer::{AcquiredResponse, DuplicateResponse, StateDto};
use super::claims::{
    ClaimBody, ClaimView, CompleteBody, ExtendBody, TokenBody, TransitionResponse,
};
use super::error::{PROBLEM_JSON, Problem};
use super::health::HealthResponse;
use super::sequences::{AdvanceBody, AdvanceResponse, SetBody, SkippedRange, StreamView};
use super::{batch, claims, health, sequences};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dedupd",
        description = "A claim ledger for at-least-once consumers: claim a message id before acting on it; \
                       inside the retention window exactly one claimant wins.",
        license(name = "Apache-2.0")
    ),
    // One line per module: its endpoints.
    paths(
        batch::claim_batch,
        claims::claim, claims::get, claims::complete, claims::release, claims::extend,
        sequences::advance, sequences::set, sequences::get, sequences::delete,
        health::livez, health::readyz, health::metrics,
    ),
    components(schemas(
        ClaimBody, AcquiredResponse, DuplicateResponse, StateDto, TokenBody, CompleteBody,
        ExtendBody, TransitionResponse, ClaimView, Problem, HealthResponse, BatchBody,
        BatchItem, BatchResult, BatchResponse, AdvanceBody, SetBody, AdvanceResponse,
        SkippedRange, StreamView
    )),
    modifiers(&OptionalClaimBody, &BearerAuth),
    tags(
        (name = "claims", description = "Claim, complete, release, extend and read message ids"),
        (name = "sequences", description = "Per-stream sequence numbers with gap detection"),
        (name = "operations", description = "Probes and metrics"),
    )
)]
pub struct ApiDoc;

/// Describes the claim's body as what it is: a `ClaimBody`, or `null`, that
/// may be left out (`required: false`). Derived from an `Option`, it would
/// come out as a required body. Without the `null` a fuzzer rightly reports
/// the accepted `null` body as a schema-violating request accepted.
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
                        .schema(Some(
                            OneOfBuilder::new()
                                .item(Ref::from_schema_name("ClaimBody"))
                                .item(ObjectBuilder::new().schema_type(Type::Null)),
                        ))
                        .build(),
                )
                .required(Some(Required::False))
                .build()
                .into(),
        );
    }
}

/// Declares the bearer-token scheme, and on every operation what it means
/// there: `/v1` routes need a token when the server lists any (401 without
/// a valid one, 403 for a namespace the token may not use); the probes and
/// `/metrics` need one only when `protect_health` / `protect_metrics` say
/// so, which the empty requirement (`{}`) makes optional.
struct BearerAuth;

const BEARER: &str = "bearer";

fn problem_answer(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token listed (by its SHA-256) in the server's `[auth]` config. \
                         With no token listed, authentication is off.",
                    ))
                    .build(),
            ),
        );
        let unauthorized = ResponseBuilder::from(problem_answer(
            "Unauthorized: authentication is on and the bearer token is missing, malformed or unknown",
        ))
        .header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some("`Bearer realm=\"dedupd\"`"))
                .build(),
        )
        .build();
        let forbidden = problem_answer("Forbidden: this token may not use the namespace");
        for (path, item) in openapi.paths.paths.iter_mut() {
            let versioned = path.starts_with("/v1/");
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let responses = &mut operation.responses.responses;
                responses.insert("401".into(), unauthorized.clone().into());
                if versioned {
                    responses.insert("403".into(), forbidden.clone().into());
                    operation.security =
                        Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                } else {
                    operation.security = Some(vec![
                        SecurityRequirement::default(),
                        SecurityRequirement::new(BEARER, Vec::<String>::new()),
                    ]);
                }
            }
        }
    }
}

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_v1_operation_needs_the_bearer_token_and_documents_401_and_403() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let scheme = &document["components"]["securitySchemes"][BEARER];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
        let mut versioned = 0;
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = &operation["responses"];
                assert!(responses["401"].is_object(), "{method} {path}: no 401");
                let security = operation["security"].as_array().unwrap();
                if path.starts_with("/v1/") {
                    versioned += 1;
                    assert!(responses["403"].is_object(), "{method} {path}: no 403");
                    assert_eq!(security, &vec![serde_json::json!({BEARER: []})], "{path}");
                } else {
                    // Optional: `{}` (no token) or the bearer token.
                    assert!(security.contains(&serde_json::json!({})), "{path}");
                }
            }
        }
        assert_eq!(versioned, 10);
    }
}
