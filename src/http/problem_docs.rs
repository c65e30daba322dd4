//! The problem answers that several endpoints document in the same words.
//! Each is a type an endpoint's `responses(...)` can name, so the wording
//! lives in one place and an endpoint spells out only the answers that are
//! its own. The types exist for the OpenAPI document; nothing builds them.

use super::error::Problem;

/// Declares, for each row, a response type with that status and description
/// whose body is a problem document (`application/problem+json`).
macro_rules! problem_answers {
    ($($name:ident: $status:literal, $description:literal;)*) => {$(
        #[allow(dead_code)]
        #[derive(utoipa::IntoResponses)]
        #[response(
            status = $status,
            description = $description,
            content_type = "application/problem+json"
        )]
        pub struct $name(Problem);
    )*};
}

problem_answers! {
    InvalidRequest: 400, "Invalid request";
    UnknownNamespace: 404, "Unknown namespace";
    NoLiveClaim: 404, "No live claim";
    NoSuchStream: 404, "No such stream";
    BodyTooLarge: 413, "Body too large";
    BodyOrResultTooLarge: 413, "Body or result too large";
    BodyNotJson: 415, "Body not JSON";
    NotDecided: 503, "Not decided: retry";
}
