//! Names that reach the database: namespaces, keys, fingerprints, claimants
//! and the keyspace. Each has a byte limit so that one partition stays small
//! and a request can never smuggle an oversized value into a row.

use std::fmt;

/// Why a value was refused. The message is shown to API callers as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Declares a validated name: a newtype over the `String` its `parse`
/// accepted, readable with `as_str`; with `impl Display;`, shown as is;
/// with `parse with rule("field");`, parsed by that shared rule. Names
/// with rules of their own write `parse` by hand next to the declaration.
macro_rules! validated_name {
    (
        $(#[$attr:meta])*
        pub struct $name:ident;
        $(impl $display:ident;)?
        $(parse with $rule:ident($field:literal);)?
    ) => {
        $(#[$attr])*
        pub struct $name(String);

        impl $name {
            /// The name as parsed.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        $(
            impl fmt::$display for $name {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(&self.0)
                }
            }
        )?

        $(
            impl $name {
                /// Parses a caller's value; refusals name the field.
                pub fn parse(raw: &str) -> Result<Self, ParseError> {
                    $rule($field, raw).map(Self)
                }
            }
        )?
    };
}

validated_name! {
    /// A namespace: `[a-z0-9][a-z0-9_-]{0,62}`. Namespaces partition the key
    /// space (one service or tenant each) and carry their own TTL policy.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct Namespace;
    impl Display;
}

impl Namespace {
    pub const MAX_LEN: usize = 63;

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let bytes = raw.as_bytes();
        let Some(first) = bytes.first() else {
            return Err(ParseError("namespace must not be empty".into()));
        };
        if bytes.len() > Self::MAX_LEN {
            return Err(ParseError(format!(
                "namespace is {} bytes long; the limit is {}",
                bytes.len(),
                Self::MAX_LEN
            )));
        }
        let starts_well = first.is_ascii_lowercase() || first.is_ascii_digit();
        let rest_is_valid = bytes[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
        if !starts_well || !rest_is_valid {
            return Err(ParseError(format!(
                "namespace {raw:?} must match [a-z0-9][a-z0-9_-]{{0,62}}"
            )));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// Parses opaque text of 1 to `max_bytes` bytes, any characters. `limit`
/// is how a refusal states the limit to the caller.
fn parse_bounded(
    field: &str,
    raw: &str,
    max_bytes: usize,
    limit: &str,
) -> Result<String, ParseError> {
    if raw.is_empty() {
        return Err(ParseError(format!("{field} must not be empty")));
    }
    if raw.len() > max_bytes {
        return Err(ParseError(format!(
            "{field} is {} bytes long; the limit is {limit}",
            raw.len()
        )));
    }
    Ok(raw.to_owned())
}

/// Parses an identifier of 1 to 512 bytes of UTF-8, any characters: message
/// ids and stream names, which come from other systems and may hold slashes,
/// spaces or anything else.
fn parse_identifier(field: &str, raw: &str) -> Result<String, ParseError> {
    parse_bounded(field, raw, 512, "512 bytes of UTF-8")
}

validated_name! {
    /// A message id: 1 to 512 bytes of UTF-8.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct ClaimKey;
    parse with parse_identifier("key");
}

validated_name! {
    /// A sequence stream's name: the same rules as a key.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct StreamName;
    parse with parse_identifier("stream");
}

/// Parses a short opaque string of 1 to 128 bytes (fingerprints, claimant ids).
fn parse_short_text(field: &str, raw: &str) -> Result<String, ParseError> {
    parse_bounded(field, raw, 128, "128")
}

validated_name! {
    /// The client's hash of the message payload. A later claim of the same key
    /// with a different fingerprint is refused: the id was reused for another
    /// message, which is a producer bug worth surfacing.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Fingerprint;
    parse with parse_short_text("fingerprint");
}

validated_name! {
    /// Who is calling: the name of the caller's bearer token
    /// (`[[auth.tokens]] name`), when authentication is on. A label, never a
    /// secret: it appears in logs, metrics and 403 answers.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct Principal;
    impl Display;
}

impl Principal {
    pub const MAX_LEN: usize = 64;

    /// `[A-Za-z0-9_.-]{1,64}`. No `/`: a scoped claimant is
    /// `<principal>/<claimant>`, and the first `/` must end the principal.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let well_formed = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !well_formed {
            return Err(ParseError(format!(
                "token name {raw:?} must match [A-Za-z0-9_.-]{{1,64}}"
            )));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// A caller id as the store keeps it: the id the caller sent, prefixed by
/// its principal when authentication is on (`orders-service/worker-1`).
///
/// Why the prefix: a claimant id hands its owner back the owner token of
/// its in-progress claim, so it is a credential. Scoping it to the bearer
/// token means a caller with another token who learns or guesses the id
/// gets nothing; without authentication every caller is one principal and
/// the id stands alone (and rows written before scoping existed still
/// match).
fn scoped_identity(
    field: &str,
    principal: Option<&Principal>,
    raw: &str,
) -> Result<String, ParseError> {
    let raw = parse_short_text(field, raw)?;
    Ok(match principal {
        Some(principal) => format!("{principal}/{raw}"),
        None => raw,
    })
}

validated_name! {
    /// An optional caller id, scoped to the caller's principal. A claimant that
    /// claims its own in-progress key again gets its token back: this is how a
    /// caller recovers after losing the answer to its first claim (a timeout, a
    /// 503, a crash before reading it). `as_str` is the stored identity:
    /// what the `claimant` column holds.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Claimant;
}

impl Claimant {
    /// The claimant `raw` as sent by a caller of `principal`.
    pub fn parse(principal: Option<&Principal>, raw: &str) -> Result<Self, ParseError> {
        scoped_identity("claimant", principal, raw).map(Self)
    }
}

/// The non-secret label that answers show for a holder instead of its
/// claimant: `h:` and the first 16 hex digits of
/// SHA-256("dedupd holder\0" + stored identity). A worker can compute its
/// own label; nobody can turn a label back into a claimant.
pub fn holder_label(stored_identity: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"dedupd holder\0")
        .chain_update(stored_identity.as_bytes())
        .finalize();
    let mut label = String::with_capacity(18);
    label.push_str("h:");
    for byte in &digest[..8] {
        label.push_str(&format!("{byte:02x}"));
    }
    label
}

/// An optional consumer id on a sequence offer, scoped to the caller's
/// principal like a claimant. A consumer that offers a number it already
/// had accepted hears "accepted" again instead of "duplicate": this is how
/// it recovers after losing the answer to its first offer (a timeout, a
/// 503, a crash before reading it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offerer(String);

impl Offerer {
    /// The offerer `raw` as sent by a caller of `principal`.
    pub fn parse(principal: Option<&Principal>, raw: &str) -> Result<Self, ParseError> {
        scoped_identity("offerer", principal, raw).map(Self)
    }

    /// The writer token its offers store in the stream's ring: derived from
    /// the scoped id, so that every offer of one offerer carries the same
    /// token and another principal's offerer of the same name another one.
    pub fn writer_token(&self) -> uuid::Uuid {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"dedupd offerer\0")
            .chain_update(self.0.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }
}

validated_name! {
    /// A CQL keyspace name: `[A-Za-z_][A-Za-z0-9_]{0,47}`. It is spliced into
    /// DDL (keyspace names cannot be bind markers), so it must be this strict.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct KeyspaceName;
    impl Display;
}

impl KeyspaceName {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let mut chars = raw.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok || !rest_ok || raw.len() > 48 {
            return Err(ParseError(format!(
                "keyspace {raw:?} must match [A-Za-z_][A-Za-z0-9_]{{0,47}}"
            )));
        }
        Ok(Self(raw.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_accepts_the_documented_alphabet() {
        for ok in ["a", "0", "payments", "orders-v2", "a_b-c9", &"x".repeat(63)] {
            assert!(Namespace::parse(ok).is_ok(), "{ok} should parse");
        }
    }

    #[test]
    fn namespace_refuses_everything_else() {
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a.b",
            "a/b",
            "é",
            " a",
            &"x".repeat(64),
        ] {
            assert!(Namespace::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn key_limit_counts_bytes_not_chars() {
        assert!(ClaimKey::parse(&"a".repeat(512)).is_ok());
        assert!(ClaimKey::parse(&"a".repeat(513)).is_err());
        // 171 three-byte characters are 513 bytes.
        assert!(ClaimKey::parse(&"€".repeat(171)).is_err());
        assert!(ClaimKey::parse(&"€".repeat(170)).is_ok());
        assert!(ClaimKey::parse("").is_err());
        assert!(ClaimKey::parse("a/b c?d#e").is_ok());
    }

    #[test]
    fn short_texts_are_bounded() {
        assert!(Fingerprint::parse(&"f".repeat(128)).is_ok());
        assert!(Fingerprint::parse(&"f".repeat(129)).is_err());
        assert!(Claimant::parse(None, "").is_err());
        assert!(Claimant::parse(None, &"c".repeat(129)).is_err());
    }

    #[test]
    fn claimants_and_offerers_are_scoped_to_their_principal() {
        let orders = Principal::parse("orders-service").unwrap();
        let billing = Principal::parse("billing").unwrap();
        let bare = Claimant::parse(None, "worker-1").unwrap();
        let as_orders = Claimant::parse(Some(&orders), "worker-1").unwrap();
        let as_billing = Claimant::parse(Some(&billing), "worker-1").unwrap();
        assert_eq!(bare.as_str(), "worker-1");
        assert_eq!(as_orders.as_str(), "orders-service/worker-1");
        assert_ne!(as_orders, as_billing);
        // A principal's name cannot be forged from inside a claimant.
        assert_ne!(
            Claimant::parse(None, "orders-service/worker-1").unwrap(),
            Claimant::parse(Some(&billing), "orders-service/worker-1").unwrap()
        );
        let offer = |principal| {
            Offerer::parse(principal, "consumer-1")
                .unwrap()
                .writer_token()
        };
        assert_ne!(offer(Some(&orders)), offer(Some(&billing)));
        assert_ne!(offer(Some(&orders)), offer(None));
        assert_eq!(offer(Some(&orders)), offer(Some(&orders)));
    }

    #[test]
    fn holder_labels_are_short_stable_and_reveal_nothing() {
        let label = holder_label("worker-1");
        assert_eq!(label, holder_label("worker-1"));
        // The README's formula: printf 'dedupd holder\0%s' worker-1 | sha256sum
        assert_eq!(label, "h:70bba62acf489f99");
        assert_ne!(label, holder_label("worker-2"));
        assert_eq!(label.len(), 18);
        assert!(label.starts_with("h:"));
        assert!(!label.contains("worker"));
    }

    #[test]
    fn principals_are_plain_names_without_slashes() {
        for ok in ["orders", "Orders-Service_2.v1", &"p".repeat(64)] {
            assert!(Principal::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a b", "é", &"p".repeat(65)] {
            assert!(Principal::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keyspace_names_are_cql_identifiers() {
        assert!(KeyspaceName::parse("dedupd").is_ok());
        assert!(KeyspaceName::parse("_t1").is_ok());
        for bad in ["", "1a", "a-b", "a;drop", &"k".repeat(49)] {
            assert!(KeyspaceName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
