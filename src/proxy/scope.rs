//! Whose key it is and what request it names: the claim key a client's
//! `Idempotency-Key` becomes, and the fingerprint that tells a retry from a
//! different request under the same key.
//!
//! The draft's security considerations ask for a composite key: a client
//! must never replay another client's response by guessing its key. The
//! claim key therefore carries a hash of who asks (the credential or the
//! tenant), the method and the path, so the same client key sent by two
//! principals, or to two resources, names two claims.

use axum::http::{HeaderMap, Method, header};
use sha2::{Digest, Sha256};

use super::config::{FingerprintSource, ScopeSource};
use super::header::IdempotencyKey;
use crate::domain::{ClaimKey, Fingerprint};

/// Why a protected request cannot be scoped or fingerprinted: a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("this proxy scopes keys by the {0} header, and the request has none (or an empty one)")]
    TenantMissing(String),
    #[error("send one {0} header, not several")]
    TenantRepeated(String),
    #[error("this route fingerprints JSON fields, and the body is not JSON: {0}")]
    BodyNotJson(String),
}

/// Who the key belongs to, as a label that is never a credential: the
/// tenant's name, or a hash of the `Authorization` header.
pub fn principal(scope: &ScopeSource, headers: &HeaderMap) -> Result<String, ScopeError> {
    match scope {
        ScopeSource::Header(name) => {
            let mut values = headers.get_all(name).iter();
            let value = values
                .next()
                .filter(|value| !value.is_empty())
                .ok_or_else(|| ScopeError::TenantMissing(name.to_string()))?;
            if values.next().is_some() {
                return Err(ScopeError::TenantRepeated(name.to_string()));
            }
            Ok(format!("tenant:{}", hex(&Sha256::digest(value.as_bytes()))))
        }
        ScopeSource::Credential => Ok(match headers.get(header::AUTHORIZATION) {
            // Hashed: the claim key is stored, logged at debug and shown to
            // operators by `dedupd admin get`; a bearer token must not be.
            Some(value) => format!("credential:{}", hex(&Sha256::digest(value.as_bytes()))),
            None => "anonymous".to_owned(),
        }),
    }
}

/// The claim key: a hash of the scope (principal, method, path) and the
/// client's key in clear, so that an operator can find a key with
/// `dedupd admin get` from the scope hash in the logs and the key the
/// client sent. At most 64 + 1 + 255 bytes: always a valid claim key.
pub fn claim_key(principal: &str, method: &Method, path: &str, key: &IdempotencyKey) -> ClaimKey {
    let mut scope = Sha256::new();
    for part in [principal, method.as_str(), path] {
        scope.update(part.as_bytes());
        // A separator no part can hold keeps ("a", "bc") apart from ("ab", "c").
        scope.update([0]);
    }
    let text = format!("{}:{}", hex(&scope.finalize()), key.as_str());
    ClaimKey::parse(&text).expect("a scope hash and a 1-255 character key make a valid claim key")
}

/// The request's fingerprint: SHA-256 of what `source` covers.
pub fn fingerprint(
    source: &FingerprintSource,
    query: Option<&str>,
    body: &[u8],
) -> Result<Fingerprint, ScopeError> {
    let mut digest = Sha256::new();
    match source {
        FingerprintSource::Body => {
            // The query is part of the request: `?amount=5` and `?amount=50`
            // with the same empty body are different requests.
            digest.update(query.unwrap_or("").as_bytes());
            digest.update([0]);
            digest.update(body);
        }
        FingerprintSource::JsonFields(pointers) => {
            let document: serde_json::Value = serde_json::from_slice(body)
                .map_err(|error| ScopeError::BodyNotJson(error.to_string()))?;
            for pointer in pointers {
                let mut text = String::new();
                canonical_json(document.pointer(pointer), &mut text);
                digest.update(pointer.as_bytes());
                digest.update([0]);
                digest.update(text.as_bytes());
                digest.update([0]);
            }
        }
    }
    let text = hex(&digest.finalize());
    Ok(Fingerprint::parse(&text).expect("a SHA-256 in hex is a valid fingerprint"))
}

/// `value` as canonical JSON: object keys sorted, no whitespace, an absent
/// field as `null`. Written out here rather than trusted to `serde_json`'s
/// map order, which a feature elsewhere in the build can change.
fn canonical_json(value: Option<&serde_json::Value>, out: &mut String) {
    use serde_json::Value;
    match value {
        None | Some(Value::Null) => out.push_str("null"),
        Some(Value::Object(map)) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|left, right| left.0.cmp(right.0));
            out.push('{');
            for (index, (name, field)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                canonical_json(Some(field), out);
            }
            out.push('}');
        }
        Some(Value::Array(items)) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                canonical_json(Some(item), out);
            }
            out.push(']');
        }
        Some(scalar) => out.push_str(&scalar.to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    use super::*;
    use crate::proxy::header::idempotency_key;

    fn key(raw: &str) -> IdempotencyKey {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", HeaderValue::from_str(raw).unwrap());
        idempotency_key(&headers).unwrap().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_str(value).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn principals_never_hold_the_credential() {
        let scope = ScopeSource::Credential;
        let alice = principal(
            &scope,
            &headers(&[("authorization", "Bearer alice-secret")]),
        );
        let bob = principal(&scope, &headers(&[("authorization", "Bearer bob-secret")]));
        let alice = alice.unwrap();
        assert_ne!(alice, bob.unwrap());
        assert!(!alice.contains("alice-secret"), "{alice}");
        assert_eq!(principal(&scope, &HeaderMap::new()).unwrap(), "anonymous");
    }

    #[test]
    fn a_tenant_header_scope_requires_exactly_one_tenant() {
        let scope = ScopeSource::Header(HeaderName::from_static("x-tenant"));
        assert!(principal(&scope, &headers(&[("x-tenant", "acme")])).is_ok());
        assert_eq!(
            principal(&scope, &headers(&[("authorization", "Bearer x")])),
            Err(ScopeError::TenantMissing("x-tenant".into()))
        );
        let mut two = headers(&[("x-tenant", "acme")]);
        two.append("x-tenant", HeaderValue::from_static("globex"));
        assert_eq!(
            principal(&scope, &two),
            Err(ScopeError::TenantRepeated("x-tenant".into()))
        );
    }

    #[test]
    fn claim_keys_differ_by_principal_method_and_path_but_not_by_nothing() {
        let client_key = key("order-1");
        let base = claim_key("anonymous", &Method::POST, "/pay", &client_key);
        assert_eq!(
            base,
            claim_key("anonymous", &Method::POST, "/pay", &client_key)
        );
        for other in [
            claim_key("credential:ab", &Method::POST, "/pay", &client_key),
            claim_key("anonymous", &Method::PATCH, "/pay", &client_key),
            claim_key("anonymous", &Method::POST, "/pay/2", &client_key),
            claim_key("anonymous", &Method::POST, "/pay", &key("order-2")),
        ] {
            assert_ne!(base, other);
        }
        assert!(base.as_str().ends_with(":order-1"));
    }

    #[test]
    fn json_field_fingerprints_ignore_order_whitespace_and_other_fields() {
        let source = FingerprintSource::JsonFields(vec!["/amount".into(), "/card".into()]);
        let one = fingerprint(
            &source,
            None,
            br#"{"amount":5,"card":{"n":"4242","exp":"12/30"},"sent_at":"10:00"}"#,
        )
        .unwrap();
        let same = fingerprint(
            &source,
            Some("ignored=1"),
            br#"{ "sent_at": "10:01", "card": {"exp": "12/30", "n": "4242"}, "amount": 5 }"#,
        )
        .unwrap();
        let different = fingerprint(&source, None, br#"{"amount":50,"card":{"n":"4242"}}"#);
        assert_eq!(one, same);
        assert_ne!(one, different.unwrap());
        assert!(matches!(
            fingerprint(&source, None, b"amount=5"),
            Err(ScopeError::BodyNotJson(_))
        ));
    }

    #[test]
    fn body_fingerprints_cover_the_query_and_every_byte() {
        let source = FingerprintSource::Body;
        let base = fingerprint(&source, Some("a=1"), b"{}").unwrap();
        assert_eq!(base, fingerprint(&source, Some("a=1"), b"{}").unwrap());
        assert_ne!(base, fingerprint(&source, Some("a=2"), b"{}").unwrap());
        assert_ne!(base, fingerprint(&source, Some("a=1"), b"{ }").unwrap());
        // The separator keeps the query's end apart from the body's start.
        assert_ne!(
            fingerprint(&source, Some("a"), b"b").unwrap(),
            fingerprint(&source, Some("ab"), b"").unwrap()
        );
    }

    proptest! {
        /// Every key the header accepts becomes a valid claim key that
        /// keeps the client's key whole.
        #[test]
        fn every_accepted_key_makes_a_claim_key(raw in "[!-~]{1,255}") {
            let mut headers = HeaderMap::new();
            headers.insert("idempotency-key", HeaderValue::from_str(&raw).unwrap());
            if let Ok(Some(client_key)) = idempotency_key(&headers) {
                let claim = claim_key("anonymous", &Method::POST, "/", &client_key);
                prop_assert!(claim.as_str().ends_with(client_key.as_str()));
                prop_assert_eq!(claim.as_str().len(), 65 + client_key.as_str().len());
            }
        }
    }
}
