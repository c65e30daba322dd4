//! Extractors that turn raw requests into domain types, and every way that
//! can fail into a problem document (axum's own rejections are plain text).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::auth::Auth;
use super::error::ApiError;
use crate::domain::{ClaimKey, Namespace, Principal, RetentionPolicy, StreamName};

/// Decodes one raw path segment: strict percent-decoding (every `%`
/// followed by two hex digits), then UTF-8.
///
/// This is the only decoding a path parameter gets. axum's own extractors
/// (`Path`, `RawPathParams`) decode too, and leniently (a stray `%` passes
/// through): decoding their output again made `a%2520b` and `a%20b` one key,
/// so two messages shared a row and the second was dropped as a duplicate.
pub fn decode_segment(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'%' {
            decoded.push(bytes[index]);
            index += 1;
            continue;
        }
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        let Some(byte) = hex else {
            return Err(format!(
                "invalid percent-encoding in path segment {raw:?}: `%` must be followed by two \
                 hex digits (send a literal `%` as `%25`)"
            ));
        };
        decoded.push(byte);
        index += 3;
    }
    String::from_utf8(decoded).map_err(|_| format!("path segment {raw:?} does not decode to UTF-8"))
}

/// The path's parameters by name, each decoded once from the raw request
/// target.
///
/// The router matched the raw, still-encoded path against the route
/// template, so an encoded `/` (`%2F`) stayed inside its segment; segment
/// `i` of the raw path is therefore the value of segment `i` of the
/// template.
pub(super) fn decoded_params(parts: &Parts) -> Result<Vec<(&'static str, String)>, ApiError> {
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .ok_or_else(|| ApiError::Internal("path extractor outside a matched route".into()))?
        .as_str()
        .to_owned();
    let raw_segments: Vec<&str> = parts.uri.path().split('/').collect();
    let template_segments: Vec<&str> = template.split('/').collect();
    if raw_segments.len() != template_segments.len() {
        return Err(ApiError::Internal(format!(
            "path {:?} does not line up with its route {template:?}",
            parts.uri.path()
        )));
    }
    let mut params = Vec::new();
    for (pattern, raw) in template_segments.iter().zip(raw_segments) {
        let Some(name) = pattern
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
        else {
            continue;
        };
        let name = PATH_PARAMS
            .iter()
            .copied()
            .find(|known| *known == name)
            .ok_or_else(|| ApiError::Internal(format!("route parameter {{{name}}} is unknown")))?;
        params.push((name, decode_segment(raw).map_err(ApiError::InvalidRequest)?));
    }
    Ok(params)
}

/// The parameter names the routes use.
const PATH_PARAMS: [&str; 3] = ["ns", "key", "stream"];

pub(super) fn param<'a>(
    params: &'a [(&'static str, String)],
    name: &str,
) -> Result<&'a str, ApiError> {
    params
        .iter()
        .find(|(param, _)| *param == name)
        .map(|(_, value)| value.as_str())
        .ok_or_else(|| ApiError::Internal(format!("route without {{{name}}}")))
}

/// The namespace in the path, checked in order: the caller's token (401),
/// the name (400), that it exists (404), that the token may use it (403).
/// Also holds the caller's principal (none when authentication is off).
fn namespace_path(
    parts: &Parts,
    params: &[(&'static str, String)],
    state: &AppState,
) -> Result<NamespacePath, ApiError> {
    let grant = state.auth.authenticate(&parts.headers)?;
    let namespace = Namespace::parse(param(params, "ns")?).map_err(ApiError::invalid_request)?;
    Auth::authorize(grant, &namespace)?;
    let policy = state.namespaces.policy(&namespace).ok_or_else(|| {
        ApiError::NotFound(format!(
            "namespace {namespace} is not configured on this server"
        ))
    })?;
    Ok(NamespacePath {
        namespace,
        policy,
        principal: grant.map(|grant| grant.name.clone()),
    })
}

/// The path parameters as the OpenAPI document describes them; the
/// extractors below enforce the same rules. Lengths are in bytes of UTF-8,
/// which JSON Schema cannot say: the document's `maxLength` counts
/// characters, so it is exact only for ASCII.
#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NamespaceParams {
    /// Namespace: `[a-z0-9][a-z0-9_-]{0,62}`.
    #[param(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    ns: String,
}

#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ClaimPathParams {
    /// Namespace: `[a-z0-9][a-z0-9_-]{0,62}`.
    #[param(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    ns: String,
    /// Message id: 1 to 512 bytes of UTF-8, percent-encoded.
    #[param(min_length = 1, max_length = 512)]
    key: String,
}

#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StreamPathParams {
    /// Namespace: `[a-z0-9][a-z0-9_-]{0,62}`.
    #[param(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    ns: String,
    /// Stream name: 1 to 512 bytes of UTF-8, percent-encoded.
    #[param(min_length = 1, max_length = 512)]
    stream: String,
}

/// `{ns}` from the path: a valid, configured namespace and its policy.
pub struct NamespacePath {
    pub namespace: Namespace,
    pub policy: RetentionPolicy,
    /// The caller's token name; `None` when authentication is off.
    pub principal: Option<Principal>,
}

impl FromRequestParts<AppState> for NamespacePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        namespace_path(parts, &decoded_params(parts)?, state)
    }
}

/// Declares the extractor of a path that names one thing inside a
/// namespace: what `NamespacePath` holds, checked first as on every route,
/// then the route parameter of the field's name, parsed into its domain
/// type. A claim's path and a stream's differ only in that parameter.
macro_rules! path_in_namespace {
    ($(#[$meta:meta])* $name:ident { $field:ident: $type:ty }) => {
        $(#[$meta])*
        pub struct $name {
            pub namespace: Namespace,
            pub policy: RetentionPolicy,
            pub principal: Option<Principal>,
            pub $field: $type,
        }

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, ApiError> {
                let params = decoded_params(parts)?;
                let NamespacePath {
                    namespace,
                    policy,
                    principal,
                } = namespace_path(parts, &params, state)?;
                let $field = <$type>::parse(param(&params, stringify!($field))?)
                    .map_err(ApiError::invalid_request)?;
                Ok(Self {
                    namespace,
                    policy,
                    principal,
                    $field,
                })
            }
        }
    };
}

path_in_namespace! {
    /// `{ns}/…/{key}` from the path, validated, with the namespace's policy.
    ClaimPath { key: ClaimKey }
}

path_in_namespace! {
    /// `{ns}/sequences/{stream}` from the path.
    StreamPath { stream: StreamName }
}

fn is_json_content_type(parts_content_type: Option<&str>) -> bool {
    let Some(content_type) = parts_content_type else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn read_body(
    request: Request,
    state: &AppState,
) -> Result<(Option<String>, Bytes), ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or("<not ASCII>").to_owned());
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(format!(
                    "the request body is larger than {} bytes",
                    super::MAX_BODY_BYTES
                ))
            } else {
                ApiError::InvalidRequest(rejection.body_text())
            }
        })?;
    Ok((content_type, bytes))
}

fn parse_json<T: DeserializeOwned>(
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<T, ApiError> {
    if !is_json_content_type(content_type) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body must be application/json, got {}",
            content_type.unwrap_or("no Content-Type")
        )));
    }
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::InvalidRequest(format!("invalid JSON body: {error}")))
}

/// A JSON body that must be present.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (content_type, bytes) = read_body(request, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::InvalidRequest("a JSON body is required".into()));
        }
        parse_json(content_type.as_deref(), &bytes).map(JsonBody)
    }
}

/// A call on one resource with a required JSON body: the path first (the
/// namespace, then its key or stream: 400, 404, 403), then the body, so a
/// bad path is reported before a bad body.
pub struct WithBody<P, B> {
    pub state: AppState,
    pub path: P,
    pub body: B,
}

impl<P, B> FromRequest<AppState> for WithBody<P, B>
where
    P: FromRequestParts<AppState, Rejection = ApiError> + Send,
    B: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let path = P::from_request_parts(&mut parts, state).await?;
        let JsonBody(body) =
            JsonBody::from_request(Request::from_parts(parts, body), state).await?;
        Ok(Self {
            state: state.clone(),
            path,
            body,
        })
    }
}

/// A JSON body that may be absent, empty or `null`, which read as
/// `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (content_type, bytes) = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        // `null` is another way to send no options.
        parse_json::<Option<T>>(content_type.as_deref(), &bytes)
            .map(|body| OptionalJsonBody(body.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(decode_segment("a%2Fb").unwrap(), "a/b");
        assert_eq!(decode_segment("%E2%82%AC").unwrap(), "€");
        assert_eq!(decode_segment("plain+text").unwrap(), "plain+text");
        assert!(decode_segment("a%zz").is_err());
        assert!(decode_segment("a%2").is_err());
        assert!(decode_segment("%").is_err());
        assert!(decode_segment("%FF").is_err());
        // Decoded once: an encoded percent sign stays a percent sign.
        assert_eq!(decode_segment("a%2520b").unwrap(), "a%20b");
        assert_eq!(decode_segment("%2541").unwrap(), "%41");
        assert_eq!(decode_segment("100%25").unwrap(), "100%");
        assert_eq!(decode_segment("%00").unwrap(), "\0");
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type(Some("application/json")));
        assert!(is_json_content_type(Some(
            "application/json; charset=utf-8"
        )));
        assert!(is_json_content_type(Some("Application/JSON")));
        assert!(is_json_content_type(Some("application/problem+json")));
        assert!(!is_json_content_type(Some("text/plain")));
        assert!(!is_json_content_type(None));
    }
}
