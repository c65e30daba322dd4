//! What the proxy protects and how: the `--proxy-config` TOML file, checked
//! once at startup into `ProxyConfig`.
//!
//! ```toml
//! namespace = "payments-api"      # the claims' namespace (default "proxy")
//! tenant_header = "x-tenant-id"   # scope keys by this header instead of the credential
//! max_stored_response_bytes = 65536
//! oversize = "release"            # or "fail-closed"
//! store_statuses = ["2xx", "4xx"] # whole classes, or single codes
//! never_store = [408, 409, 425, 429]
//! stored_headers = ["content-type", "location", "etag"]  # added to the defaults
//! store_set_cookie = false
//!
//! [[routes]]                      # first match wins; none listed: POST and PATCH on /*
//! methods = ["POST"]
//! path = "/v1/payments/*"         # `*` alone is one segment; a final `*` is the rest
//! require_key = true
//! fingerprint_fields = ["/amount", "/currency"]  # JSON Pointers; default the whole body
//! on_store_failure = "closed"     # or "open"
//! ```

use std::path::Path;
use std::time::Duration;

use axum::http::{HeaderName, Method, Uri};
use serde::Deserialize;

use crate::domain::Namespace;

/// The proxy as configured.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub upstream: Upstream,
    /// How long the upstream has to answer (headers and, for a response
    /// that is stored, its body). A claim's lease outlasts it.
    pub upstream_timeout: Duration,
    pub namespace: Namespace,
    pub routes: Vec<ProtectedRoute>,
    pub scope: ScopeSource,
    pub storage: StoragePolicy,
    /// Request bodies of protected requests are read whole (the fingerprint
    /// needs them): larger ones get 413.
    pub max_request_body_bytes: usize,
    /// All that protected requests may hold in memory at once: their bodies
    /// as read, and for each forward the room its response may need to be
    /// stored. A request that finds no room gets 503 before anything is
    /// forwarded, so memory stays bounded whatever clients send.
    pub max_buffered_bytes: usize,
}

/// `--max-request-body-bytes`'s default.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 1 << 20;
/// `--max-buffered-mib`'s default.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 64 << 20;

/// Where requests go: a plain-HTTP/1.1 origin, optionally with a path
/// prefix (`http://127.0.0.1:3000/api`).
#[derive(Debug, Clone)]
pub struct Upstream {
    pub authority: axum::http::uri::Authority,
    /// The prefix, without a trailing `/` (empty for none).
    pub path_prefix: String,
}

impl Upstream {
    /// Parses `--upstream`. TLS and HTTP/2 upstreams are refused here: the
    /// proxy is a sidecar or a hop inside the cluster, in front of a plain
    /// HTTP/1.1 server.
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let uri: Uri = raw
            .parse()
            .map_err(|error| anyhow::anyhow!("--upstream `{raw}` is not a URL: {error}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => anyhow::bail!(
                "--upstream `{raw}`: https upstreams are not supported; the proxy speaks plain \
                 HTTP/1.1 to an upstream beside it (a sidecar, or a Service inside the cluster)"
            ),
            _ => anyhow::bail!("--upstream `{raw}` needs the scheme: http://host:port"),
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("--upstream `{raw}` names no host"))?;
        anyhow::ensure!(
            uri.query().is_none(),
            "--upstream `{raw}` may not carry a query string"
        );
        Ok(Self {
            authority,
            path_prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The upstream URI for a request's path and query.
    pub fn uri_for(&self, path_and_query: &str) -> Result<Uri, axum::http::Error> {
        Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path_and_query}", self.path_prefix))
            .build()
    }
}

/// Who a key belongs to: keys of different scopes never meet (the draft's
/// security considerations: one client must not replay another's response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeSource {
    /// The `Authorization` header the client sent, hashed: every credential
    /// has its own keys; requests without one share the anonymous scope.
    Credential,
    /// A header set by a trusted gateway in front (`x-tenant-id`); a
    /// protected request without it is refused.
    Header(HeaderName),
}

/// One protected route: which requests, and the rules for them.
#[derive(Debug, Clone)]
pub struct ProtectedRoute {
    pub methods: Vec<Method>,
    pub path: PathPattern,
    /// Without a key: 400 when true, forwarded unprotected when false.
    pub require_key: bool,
    pub fingerprint: FingerprintSource,
    pub on_store_failure: StoreFailurePolicy,
}

impl ProtectedRoute {
    /// The default: POST and PATCH, the methods RFC 9110 does not make
    /// idempotent, on every path; keys optional; fail closed.
    pub fn default_route() -> Self {
        Self {
            methods: vec![Method::POST, Method::PATCH],
            path: PathPattern::parse("/*").expect("a valid pattern"),
            require_key: false,
            fingerprint: FingerprintSource::Body,
            on_store_failure: StoreFailurePolicy::Closed,
        }
    }

    pub fn matches(&self, method: &Method, path: &str) -> bool {
        self.methods.contains(method) && self.path.matches(path)
    }
}

/// A path pattern: `/v1/orders/*/pay` (one `*` segment matches any one
/// segment) or `/v1/payments/*` (a final `*` matches the rest, one segment
/// or more), else literal segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<String>,
}

impl PathPattern {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let rest = raw
            .strip_prefix('/')
            .ok_or_else(|| anyhow::anyhow!("route path `{raw}` must start with /"))?;
        Ok(Self {
            segments: rest.split('/').map(str::to_owned).collect(),
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut segments = rest.split('/');
        for (index, pattern) in self.segments.iter().enumerate() {
            let last = index + 1 == self.segments.len();
            let Some(segment) = segments.next() else {
                return false;
            };
            if last && pattern == "*" {
                return true;
            }
            if pattern != "*" && pattern != segment {
                return false;
            }
        }
        segments.next().is_none()
    }
}

/// What the fingerprint covers: a retry must be the same request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FingerprintSource {
    /// The query string and the whole body, byte for byte.
    Body,
    /// The values at these JSON Pointers of the body, canonicalised (keys
    /// sorted, no whitespace): fields a client may legitimately vary, such
    /// as a timestamp, stay out.
    JsonFields(Vec<String>),
}

/// What a protected request does when its claim cannot be decided (the
/// database unreachable, the instance overloaded or not ready).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreFailurePolicy {
    /// 503 with `Retry-After`: nothing reaches the upstream unprotected.
    Closed,
    /// Forward without protection, counted and logged: availability over
    /// at-most-once, for routes whose upstream tolerates a repeat.
    Open,
}

/// What happens to a response over `max_stored_response_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OversizePolicy {
    /// Return it, not stored, with `Idempotency-Warning: response-too-large`,
    /// and release the key: a retry reaches the upstream again.
    Release,
    /// Return it, and keep the key as "processed, response not stored": a
    /// retry gets a 409 saying so and never reaches the upstream again.
    FailClosed,
}

/// Which upstream responses are stored and replayed.
#[derive(Debug, Clone)]
pub struct StoragePolicy {
    /// Status classes (2 for 2xx) and single codes that are stored.
    pub classes: Vec<u16>,
    pub codes: Vec<u16>,
    /// Codes never stored, whatever their class: 408, 409, 425 and 429 say
    /// "try again", so a retry must reach the upstream.
    pub never: Vec<u16>,
    /// Response headers kept with a stored response (lowercase).
    pub headers: Vec<HeaderName>,
    /// The stored response's size limit, as serialised JSON.
    pub max_bytes: usize,
    pub oversize: OversizePolicy,
}

/// Headers replayed by default: what describes the representation and the
/// resource created, and `Allow` (a 405 must carry it) and `Vary`. Never
/// `Set-Cookie` (a session handed to whoever retries) unless
/// `store_set_cookie` says so.
pub const DEFAULT_STORED_HEADERS: [&str; 11] = [
    "allow",
    "content-type",
    "content-encoding",
    "content-language",
    "content-location",
    "location",
    "etag",
    "last-modified",
    "cache-control",
    "link",
    "vary",
];

impl StoragePolicy {
    pub fn stores(&self, status: u16) -> bool {
        if self.never.contains(&status) {
            return false;
        }
        self.codes.contains(&status) || self.classes.contains(&(status / 100))
    }
}

/// The largest `max_stored_response_bytes`: a stored response is one cell
/// of an LWT, and the completed-claims cache holds it too.
pub const MAX_STORED_RESPONSE_BYTES: usize = 1 << 20;

/// The `--proxy-config` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxyFile {
    #[serde(default = "default_namespace")]
    namespace: String,
    tenant_header: Option<String>,
    #[serde(default = "default_max_stored")]
    max_stored_response_bytes: usize,
    #[serde(default = "default_oversize")]
    oversize: OversizePolicy,
    #[serde(default = "default_store_statuses")]
    store_statuses: Vec<StatusSpec>,
    #[serde(default = "default_never_store")]
    never_store: Vec<u16>,
    #[serde(default)]
    stored_headers: Vec<String>,
    #[serde(default)]
    store_set_cookie: bool,
    #[serde(default)]
    routes: Vec<RouteFile>,
}

impl Default for ProxyFile {
    fn default() -> Self {
        // An empty document is the defaults, as serde reads them.
        toml::from_str("").expect("the empty proxy config parses")
    }
}

fn default_namespace() -> String {
    "proxy".into()
}
fn default_max_stored() -> usize {
    64 * 1024
}
fn default_oversize() -> OversizePolicy {
    OversizePolicy::Release
}
fn default_store_statuses() -> Vec<StatusSpec> {
    vec![
        StatusSpec::Text("2xx".into()),
        StatusSpec::Text("4xx".into()),
    ]
}
fn default_never_store() -> Vec<u16> {
    vec![408, 409, 425, 429]
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StatusSpec {
    Code(u16),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    #[serde(default = "default_methods")]
    methods: Vec<String>,
    path: String,
    #[serde(default)]
    require_key: bool,
    #[serde(default)]
    fingerprint_fields: Vec<String>,
    #[serde(default = "default_store_failure")]
    on_store_failure: StoreFailurePolicy,
}

fn default_methods() -> Vec<String> {
    vec!["POST".into(), "PATCH".into()]
}
fn default_store_failure() -> StoreFailurePolicy {
    StoreFailurePolicy::Closed
}

/// What `--upstream`, `--upstream-timeout-ms`, `--proxy-config` and the
/// memory limits say.
pub struct ProxyFlags<'a> {
    pub upstream: &'a str,
    pub upstream_timeout: Duration,
    pub config: Option<&'a Path>,
    pub max_request_body_bytes: usize,
    pub max_buffered_bytes: usize,
}

impl ProxyConfig {
    pub fn from_flags(flags: &ProxyFlags<'_>) -> anyhow::Result<Self> {
        let file = match flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    anyhow::anyhow!("cannot read proxy config {}: {error}", path.display())
                })?;
                toml::from_str(&text).map_err(|error| {
                    anyhow::anyhow!("invalid proxy config {}: {error}", path.display())
                })?
            }
            None => ProxyFile::default(),
        };
        Self::from_file(file, flags)
    }

    /// The defaults, for `upstream`: what `dedupd proxy --upstream URL`
    /// runs with and what the tests start from.
    pub fn for_upstream(upstream: &str) -> anyhow::Result<Self> {
        Self::from_file(
            ProxyFile::default(),
            &ProxyFlags {
                upstream,
                upstream_timeout: Duration::from_secs(30),
                config: None,
                max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
                max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            },
        )
    }

    fn from_file(file: ProxyFile, flags: &ProxyFlags<'_>) -> anyhow::Result<Self> {
        let namespace = Namespace::parse(&file.namespace)
            .map_err(|error| anyhow::anyhow!("proxy config namespace: {error}"))?;
        let scope = match file.tenant_header {
            Some(name) => ScopeSource::Header(
                HeaderName::try_from(name.to_ascii_lowercase())
                    .map_err(|_| anyhow::anyhow!("tenant_header `{name}` is not a header name"))?,
            ),
            None => ScopeSource::Credential,
        };
        anyhow::ensure!(
            (256..=MAX_STORED_RESPONSE_BYTES).contains(&file.max_stored_response_bytes),
            "max_stored_response_bytes must be 256 to {MAX_STORED_RESPONSE_BYTES}, got {}",
            file.max_stored_response_bytes
        );
        let (mut classes, mut codes) = (Vec::new(), Vec::new());
        for spec in &file.store_statuses {
            match spec {
                StatusSpec::Code(code @ 100..=599) => codes.push(*code),
                StatusSpec::Text(text) => match text.as_bytes() {
                    [class @ b'1'..=b'5', b'x', b'x'] => classes.push(u16::from(class - b'0')),
                    _ => anyhow::bail!("store_statuses: `{text}` is not a class such as \"2xx\""),
                },
                StatusSpec::Code(code) => anyhow::bail!("store_statuses: {code} is no status"),
            }
        }
        let mut headers: Vec<HeaderName> = DEFAULT_STORED_HEADERS
            .iter()
            .map(|name| HeaderName::from_static(name))
            .collect();
        for name in &file.stored_headers {
            let header = HeaderName::try_from(name.to_ascii_lowercase())
                .map_err(|_| anyhow::anyhow!("stored_headers: `{name}` is not a header name"))?;
            anyhow::ensure!(
                header != axum::http::header::SET_COOKIE,
                "stored_headers: set `store_set_cookie = true` to store Set-Cookie, knowing that \
                 whoever retries with the key gets the cookie"
            );
            headers.push(header);
        }
        if file.store_set_cookie {
            headers.push(axum::http::header::SET_COOKIE);
        }
        let routes = if file.routes.is_empty() {
            vec![ProtectedRoute::default_route()]
        } else {
            file.routes
                .into_iter()
                .map(RouteFile::into_route)
                .collect::<anyhow::Result<_>>()?
        };
        let one_request = flags.max_request_body_bytes + file.max_stored_response_bytes;
        anyhow::ensure!(
            flags.max_buffered_bytes >= one_request,
            "--max-buffered-mib must hold at least one request: its body \
             (--max-request-body-bytes, {}) and its stored response (max_stored_response_bytes, {})",
            flags.max_request_body_bytes,
            file.max_stored_response_bytes
        );
        let upstream_secs = flags.upstream_timeout.as_secs();
        anyhow::ensure!(
            (1..=600).contains(&upstream_secs),
            "--upstream-timeout-ms must be 1000 to 600000"
        );
        Ok(Self {
            upstream: Upstream::parse(flags.upstream)?,
            upstream_timeout: flags.upstream_timeout,
            namespace,
            routes,
            scope,
            storage: StoragePolicy {
                classes,
                codes,
                never: file.never_store,
                headers,
                max_bytes: file.max_stored_response_bytes,
                oversize: file.oversize,
            },
            max_request_body_bytes: flags.max_request_body_bytes,
            max_buffered_bytes: flags.max_buffered_bytes,
        })
    }

    /// The first protected route `method` and `path` match.
    pub fn route_for(&self, method: &Method, path: &str) -> Option<&ProtectedRoute> {
        self.routes.iter().find(|route| route.matches(method, path))
    }
}

impl RouteFile {
    fn into_route(self) -> anyhow::Result<ProtectedRoute> {
        let methods = self
            .methods
            .iter()
            .map(|name| {
                Method::from_bytes(name.to_ascii_uppercase().as_bytes())
                    .map_err(|_| anyhow::anyhow!("route {}: `{name}` is no method", self.path))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!methods.is_empty(), "route {}: list methods", self.path);
        for pointer in &self.fingerprint_fields {
            anyhow::ensure!(
                pointer.is_empty() || pointer.starts_with('/'),
                "route {}: fingerprint field `{pointer}` is not a JSON Pointer (\"/amount\")",
                self.path
            );
        }
        Ok(ProtectedRoute {
            methods,
            path: PathPattern::parse(&self.path)?,
            require_key: self.require_key,
            fingerprint: if self.fingerprint_fields.is_empty() {
                FingerprintSource::Body
            } else {
                FingerprintSource::JsonFields(self.fingerprint_fields)
            },
            on_store_failure: self.on_store_failure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns_match_segments_and_a_final_rest() {
        let cases = [
            ("/*", "/", true),
            ("/*", "/a/b/c", true),
            ("/v1/payments/*", "/v1/payments/42", true),
            ("/v1/payments/*", "/v1/payments/42/refund", true),
            ("/v1/payments/*", "/v1/payments", false),
            ("/v1/orders/*/pay", "/v1/orders/7/pay", true),
            ("/v1/orders/*/pay", "/v1/orders/7/8/pay", false),
            ("/v1/orders/*/pay", "/v1/orders/7/pay/x", false),
            ("/v1/orders", "/v1/orders", true),
            ("/v1/orders", "/v1/orders/", false),
            ("/v1/orders", "/v1/order", false),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(
                PathPattern::parse(pattern).unwrap().matches(path),
                expected,
                "{pattern} vs {path}"
            );
        }
    }

    #[test]
    fn the_default_storage_policy_keeps_2xx_and_4xx_but_not_retry_later_answers() {
        let config = ProxyConfig::for_upstream("http://127.0.0.1:3000").unwrap();
        let stored: Vec<u16> = [
            200, 201, 204, 301, 400, 404, 408, 409, 422, 425, 429, 500, 503,
        ]
        .into_iter()
        .filter(|status| config.storage.stores(*status))
        .collect();
        assert_eq!(stored, [200, 201, 204, 400, 404, 422]);
    }

    #[test]
    fn the_file_sets_routes_scope_and_storage() {
        let file: ProxyFile = toml::from_str(
            r#"
            namespace = "payments-api"
            tenant_header = "X-Tenant-Id"
            store_statuses = ["2xx", 303]
            stored_headers = ["X-Request-Cost"]
            oversize = "fail-closed"
            [[routes]]
            methods = ["post"]
            path = "/v1/payments/*"
            require_key = true
            fingerprint_fields = ["/amount"]
            on_store_failure = "open"
            "#,
        )
        .unwrap();
        let flags = ProxyFlags {
            upstream: "http://127.0.0.1:3000/api/",
            upstream_timeout: Duration::from_secs(5),
            config: None,
            max_request_body_bytes: 1024,
            max_buffered_bytes: 1 << 20,
        };
        let config = ProxyConfig::from_file(file, &flags).unwrap();
        assert_eq!(config.namespace.as_str(), "payments-api");
        assert_eq!(
            config.scope,
            ScopeSource::Header(HeaderName::from_static("x-tenant-id"))
        );
        assert!(config.storage.stores(303) && !config.storage.stores(404));
        assert!(
            config
                .storage
                .headers
                .contains(&HeaderName::from_static("x-request-cost"))
        );
        assert_eq!(config.storage.oversize, OversizePolicy::FailClosed);
        let route = config.route_for(&Method::POST, "/v1/payments/9").unwrap();
        assert!(route.require_key);
        assert_eq!(route.on_store_failure, StoreFailurePolicy::Open);
        assert!(config.route_for(&Method::PATCH, "/v1/payments/9").is_none());
        assert_eq!(
            config.upstream.uri_for("/v1/x?y=1").unwrap().to_string(),
            "http://127.0.0.1:3000/api/v1/x?y=1"
        );
    }

    #[test]
    fn refusals_say_what_to_fix() {
        for (text, complaint) in [
            ("stored_headers = [\"set-cookie\"]", "store_set_cookie"),
            ("store_statuses = [\"2xy\"]", "2xx"),
            ("max_stored_response_bytes = 10", "256 to"),
            ("[[routes]]\npath = \"v1\"", "start with /"),
            (
                "[[routes]]\npath = \"/v1\"\nfingerprint_fields = [\"amount\"]",
                "JSON Pointer",
            ),
            ("colour = \"blue\"", "unknown field"),
        ] {
            let flags = ProxyFlags {
                upstream: "http://127.0.0.1:3000",
                upstream_timeout: Duration::from_secs(5),
                config: None,
                max_request_body_bytes: 1024,
                max_buffered_bytes: 1 << 20,
            };
            let error = toml::from_str::<ProxyFile>(text)
                .map_err(anyhow::Error::from)
                .and_then(|file| ProxyConfig::from_file(file, &flags))
                .unwrap_err();
            assert!(
                format!("{error:#}").contains(complaint),
                "{text}: {error:#}"
            );
        }
        for (upstream, complaint) in [
            ("https://api:443", "https upstreams are not supported"),
            ("api:3000", "scheme"),
            ("http://api:3000/?a=1", "query"),
        ] {
            let error = Upstream::parse(upstream).unwrap_err();
            assert!(error.to_string().contains(complaint), "{upstream}: {error}");
        }
    }
}
