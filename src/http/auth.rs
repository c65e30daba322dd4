//! Who may claim: bearer tokens, each allowed a set of namespaces, and
//! who may act as an operator: tokens with `admin = true`.
//!
//! The admin API is open to admin tokens only. With authentication off, or
//! with no token marked admin, there is no admin token, so it refuses
//! everyone: an operator turns it on by listing one.
//!
//! The config file lists tokens by the SHA-256 of their text, never the
//! text itself (`dedupd hash-token` computes it), so neither the file nor a
//! log line can leak one. With no token listed, authentication is off.

use std::collections::{BTreeSet, HashMap};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::domain::{Namespace, Principal};

/// One `[[auth.tokens]]` entry of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// Who holds the token, for logs and metrics (never the token):
    /// `[A-Za-z0-9_.-]{1,64}`. It also scopes the claimant and offerer ids
    /// its callers send (see `domain::Claimant`).
    pub name: String,
    /// Hex SHA-256 of the token's text.
    pub sha256: String,
    /// Namespaces the token may use; `"*"` for all.
    pub namespaces: Vec<String>,
    /// Whether the token may also use the admin API (inspect, force-release,
    /// forget) in those namespaces. Give operators a token of their own:
    /// every admin action is logged with the token's name.
    #[serde(default)]
    pub admin: bool,
}

/// The `[auth]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// Whether /metrics needs a token (any valid token will do).
    #[serde(default)]
    pub protect_metrics: bool,
    /// Whether /livez and /readyz need a token. Kubernetes probes send none,
    /// so leave this off where they are used.
    #[serde(default)]
    pub protect_health: bool,
    #[serde(default)]
    pub tokens: Vec<TokenFile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    All,
    Only(BTreeSet<Namespace>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub name: Principal,
    allowed: Allowed,
    admin: bool,
}

/// The tokens the server accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    tokens: HashMap<[u8; 32], Grant>,
    pub protect_metrics: bool,
    pub protect_health: bool,
}

/// The SHA-256 of a token, as hex: what the config file lists.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(digest)
}

impl Auth {
    pub fn from_file(file: &AuthFile) -> anyhow::Result<Self> {
        let mut tokens = HashMap::new();
        for token in &file.tokens {
            let digest = parse_digest(&token.sha256.to_ascii_lowercase()).ok_or_else(|| {
                anyhow::anyhow!(
                    "[[auth.tokens]] {}: sha256 must be 64 hex digits (`dedupd hash-token` prints it)",
                    token.name
                )
            })?;
            let allowed = if token.namespaces.iter().any(|namespace| namespace == "*") {
                Allowed::All
            } else {
                let mut set = BTreeSet::new();
                for namespace in &token.namespaces {
                    set.insert(Namespace::parse(namespace).map_err(|error| {
                        anyhow::anyhow!("[[auth.tokens]] {}: {error}", token.name)
                    })?);
                }
                Allowed::Only(set)
            };
            let name = Principal::parse(&token.name)
                .map_err(|error| anyhow::anyhow!("[[auth.tokens]]: {error}"))?;
            let grant = Grant {
                name,
                allowed,
                admin: token.admin,
            };
            anyhow::ensure!(
                tokens.insert(digest, grant).is_none(),
                "[[auth.tokens]] {}: the same token is listed twice",
                token.name
            );
        }
        Ok(Self {
            tokens,
            protect_metrics: file.protect_metrics,
            protect_health: file.protect_health,
        })
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The grant of the request's bearer token: `Ok(None)` when
    /// authentication is off, 401 when it is on and the token is missing
    /// or unknown.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Option<&Grant>, ApiError> {
        if !self.enabled() {
            return Ok(None);
        }
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Err(ApiError::Unauthorized(
                "this server needs a bearer token (Authorization: Bearer <token>)".into(),
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.tokens
            .get(&digest)
            .map(Some)
            .ok_or_else(|| ApiError::Unauthorized("the bearer token is not valid".into()))
    }

    /// The admin behind the request: 401 as `authenticate`, then 403 unless
    /// its token is an admin token (with authentication off there is none).
    pub fn authenticate_admin(&self, headers: &HeaderMap) -> Result<&Grant, ApiError> {
        if !self.tokens.values().any(|grant| grant.admin) {
            return Err(ApiError::Forbidden(
                "the admin API is off: no token with `admin = true` is configured \
                 ([[auth.tokens]] in the auth config)"
                    .into(),
            ));
        }
        let grant = self
            .authenticate(headers)?
            .ok_or_else(|| ApiError::Internal("an admin token exists but auth is off".into()))?;
        if !grant.admin {
            return Err(ApiError::Forbidden(format!(
                "this token ({}) may not use the admin API: it is not an admin token",
                grant.name
            )));
        }
        Ok(grant)
    }

    /// 403 unless `grant` may use `namespace`.
    pub fn authorize(grant: Option<&Grant>, namespace: &Namespace) -> Result<(), ApiError> {
        let Some(grant) = grant else { return Ok(()) };
        let allowed = match &grant.allowed {
            Allowed::All => true,
            Allowed::Only(set) => set.contains(namespace),
        };
        if allowed {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "this token ({}) may not use namespace {namespace}",
            grant.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> Auth {
        Auth::from_file(&AuthFile {
            protect_metrics: true,
            protect_health: false,
            tokens: vec![
                TokenFile {
                    name: "orders".into(),
                    sha256: hash_token("s3cret-orders"),
                    namespaces: vec!["orders".into()],
                    admin: false,
                },
                TokenFile {
                    name: "admin".into(),
                    sha256: hash_token("s3cret-admin").to_uppercase(),
                    namespaces: vec!["*".into()],
                    admin: true,
                },
            ],
        })
        .unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn tokens_authenticate_by_their_hash() {
        let auth = auth();
        assert_eq!(
            auth.authenticate(&headers("Bearer s3cret-orders"))
                .unwrap()
                .unwrap()
                .name
                .as_str(),
            "orders"
        );
        assert!(
            auth.authenticate(&headers("bearer s3cret-admin"))
                .unwrap()
                .is_some()
        );
        for bad in [
            "Bearer nope",
            "Basic s3cret-orders",
            "Bearer ",
            "s3cret-orders",
        ] {
            assert!(
                matches!(
                    auth.authenticate(&headers(bad)),
                    Err(ApiError::Unauthorized(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            auth.authenticate(&HeaderMap::new()),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn grants_are_limited_to_their_namespaces() {
        let auth = auth();
        let orders = auth.authenticate(&headers("Bearer s3cret-orders")).unwrap();
        let admin = auth.authenticate(&headers("Bearer s3cret-admin")).unwrap();
        let ns = |name| Namespace::parse(name).unwrap();
        assert!(Auth::authorize(orders, &ns("orders")).is_ok());
        assert!(matches!(
            Auth::authorize(orders, &ns("payments")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(Auth::authorize(admin, &ns("payments")).is_ok());
    }

    #[test]
    fn only_admin_tokens_reach_the_admin_api() {
        let auth = auth();
        assert_eq!(
            auth.authenticate_admin(&headers("Bearer s3cret-admin"))
                .unwrap()
                .name
                .as_str(),
            "admin"
        );
        assert!(matches!(
            auth.authenticate_admin(&headers("Bearer s3cret-orders")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            auth.authenticate_admin(&headers("Bearer nope")),
            Err(ApiError::Unauthorized(_))
        ));
        // No admin token configured (or auth off): refused, token or not.
        for off in [Auth::default(), {
            let mut only_users = auth.clone();
            only_users.tokens.retain(|_, grant| !grant.admin);
            only_users
        }] {
            assert!(matches!(
                off.authenticate_admin(&headers("Bearer s3cret-admin")),
                Err(ApiError::Forbidden(_))
            ));
            assert!(matches!(
                off.authenticate_admin(&HeaderMap::new()),
                Err(ApiError::Forbidden(_))
            ));
        }
    }

    #[test]
    fn without_tokens_everything_is_open() {
        let auth = Auth::default();
        assert!(!auth.enabled());
        assert_eq!(auth.authenticate(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn bad_entries_are_refused() {
        for (name, sha, namespaces) in [
            ("t", "abc", vec!["x"]),
            ("t", &*hash_token("t"), vec!["Bad"]),
            ("", &*hash_token("t"), vec!["x"]),
            ("team/a", &*hash_token("t"), vec!["x"]),
        ] {
            let file = AuthFile {
                tokens: vec![TokenFile {
                    name: name.into(),
                    sha256: sha.into(),
                    namespaces: namespaces.into_iter().map(String::from).collect(),
                    admin: false,
                }],
                ..AuthFile::default()
            };
            assert!(Auth::from_file(&file).is_err());
        }
    }

    #[test]
    fn the_hash_is_the_known_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
