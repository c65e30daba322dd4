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

use super::admin::{AdminActionResponse, AdminClaimView, ForceReleaseBody, ForgetBody};
use super::batch::{BatchBody, BatchItem, BatchResponse, BatchResult};
use super::claim_answer::{AcquiredResponse, DuplicateResponse, StateDto};
use super::claims::{
    ClaimBody, ClaimView, CompleteBody, ExtendBody, TokenBody, TransitionResponse,
};
use super::error::{PROBLEM_JSON, Problem};
use super::health::HealthResponse;
use super::sequences::{AdvanceBody, AdvanceResponse, SetBody, SkippedRange, StreamView};
use super::{admin, batch, claims, health, sequences};

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
        admin::inspect, admin::force_release, admin::forget,
    ),
    components(schemas(
        ClaimBody, AcquiredResponse, DuplicateResponse, StateDto, TokenBody, CompleteBody,
        ExtendBody, TransitionResponse, ClaimView, Problem, HealthResponse, BatchBody,
        BatchItem, BatchResult, BatchResponse, AdvanceBody, SetBody, AdvanceResponse,
        SkippedRange, StreamView, AdminClaimView, AdminActionResponse, ForceReleaseBody,
        ForgetBody
    )),
    modifiers(&OptionalBodies, &BearerAuth),
    tags(
        (name = "claims", description = "Claim, complete, release, extend and read message ids"),
        (name = "sequences", description = "Per-stream sequence numbers with gap detection"),
        (name = "operations", description = "Probes and metrics"),
        (name = "admin", description = "Operators' actions on stuck claims (admin tokens only)"),
    )
)]
pub struct ApiDoc;

/// Describes the optional bodies as what they are: the body's schema, or
/// `null`, that may be left out (`required: false`). Derived from an
/// `Option`, a body would come out as required. Without the `null` a fuzzer
/// rightly reports the accepted `null` body as a schema-violating request
/// accepted.
struct OptionalBodies;

/// The POST routes whose body may be absent, empty or `null`: the route,
/// its body's schema, and what leaving it out means.
const OPTIONAL_BODIES: [(&str, &str, &str); 2] = [
    (
        "/v1/namespaces/{ns}/claims/{key}",
        "ClaimBody",
        "Optional: an absent, empty or `null` body means the namespace's defaults",
    ),
    (
        "/v1/admin/namespaces/{ns}/claims/{key}/force-release",
        "ForceReleaseBody",
        "Optional: an absent, empty or `null` body gives no reason",
    ),
];

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, schema, description) in OPTIONAL_BODIES {
            let Some(post) = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
            else {
                continue;
            };
            post.request_body = Some(
                RequestBodyBuilder::new()
                    .description(Some(description))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(
                                OneOfBuilder::new()
                                    .item(Ref::from_schema_name(schema))
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
                    // The admin routes document their own 403.
                    responses
                        .entry("403".into())
                        .or_insert_with(|| forbidden.clone().into());
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
        assert_eq!(versioned, 13);
    }
}
