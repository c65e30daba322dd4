//! Names that reach the database: namespaces, keys, fingerprints, claimants
//! and the keyspace. Each has a byte limit so that one partition stays small
//! and a request can never smuggle an oversized value into a row.

use std::fmt;

/// Why a value was refused. The message is shown to API callers as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// A namespace: `[a-z0-9][a-z0-9_-]{0,62}`. Namespaces partition the key
/// space (one service or tenant each) and carry their own TTL policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

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

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses an identifier of 1 to 512 bytes of UTF-8, any characters: message
/// ids and stream names, which come from other systems and may hold slashes,
/// spaces or anything else.
fn parse_identifier(field: &str, raw: &str) -> Result<String, ParseError> {
    const MAX_BYTES: usize = 512;
    if raw.is_empty() {
        return Err(ParseError(format!("{field} must not be empty")));
    }
    if raw.len() > MAX_BYTES {
        return Err(ParseError(format!(
            "{field} is {} bytes long; the limit is {MAX_BYTES} bytes of UTF-8",
            raw.len()
        )));
    }
    Ok(raw.to_owned())
}

/// A message id: 1 to 512 bytes of UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimKey(String);

impl ClaimKey {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        parse_identifier("key", raw).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A sequence stream's name: the same rules as a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamName(String);

impl StreamName {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        parse_identifier("stream", raw).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses a short opaque string of 1 to 128 bytes (fingerprints, claimant ids).
fn parse_short_text(field: &str, raw: &str) -> Result<String, ParseError> {
    const MAX_BYTES: usize = 128;
    if raw.is_empty() {
        return Err(ParseError(format!("{field} must not be empty")));
    }
    if raw.len() > MAX_BYTES {
        return Err(ParseError(format!(
            "{field} is {} bytes long; the limit is {MAX_BYTES}",
            raw.len()
        )));
    }
    Ok(raw.to_owned())
}

/// The client's hash of the message payload. A later claim of the same key
/// with a different fingerprint is refused: the id was reused for another
/// message, which is a producer bug worth surfacing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        parse_short_text("fingerprint", raw).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An optional caller id. A claimant that claims its own in-progress key
/// again gets its token back: this is how a caller recovers after losing the
/// answer to its first claim (a timeout, a 503, a crash before reading it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant(String);

impl Claimant {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        parse_short_text("claimant", raw).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An optional consumer id on a sequence offer. A consumer that offers a
/// number it already had accepted hears "accepted" again instead of
/// "duplicate": this is how it recovers after losing the answer to its
/// first offer (a timeout, a 503, a crash before reading it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offerer(String);

impl Offerer {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        parse_short_text("offerer", raw).map(Self)
    }

    /// The writer token its offers store in the stream's ring: derived from
    /// the id, so that every offer of one offerer carries the same token.
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

/// A CQL keyspace name: `[A-Za-z_][A-Za-z0-9_]{0,47}`. It is spliced into
/// DDL (keyspace names cannot be bind markers), so it must be this strict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceName(String);

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

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyspaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
        assert!(Claimant::parse("").is_err());
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
