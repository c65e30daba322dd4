//! The request headers the proxy reads: `Idempotency-Key` (the draft's
//! section 2.1: an Item Structured Field whose value is a String) and
//! `Prefer: wait=N` (RFC 7240, section 4.3).

use axum::http::HeaderMap;

/// The header a client names its request with.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set to `true` on an answer the proxy replayed from storage instead of
/// forwarding (the draft leaves the name open; Stripe's clients know this one).
pub const REPLAYED: &str = "idempotent-replayed";
/// Set on a first answer the proxy forwarded but did not store: a retry
/// reaches the upstream again. Its value says why (`response-too-large`,
/// `not-stored`).
pub const WARNING: &str = "idempotency-warning";

/// The longest key accepted, in characters (all ASCII: a Structured Field
/// String holds printable ASCII only).
pub const MAX_KEY_CHARS: usize = 255;

/// A client's idempotency key, unquoted and unescaped: `"a\"b"` is `a"b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why an `Idempotency-Key` header was refused; the message goes to the
/// caller as the problem's detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyHeaderError {
    #[error("send one Idempotency-Key header, not {0}")]
    Repeated(usize),
    #[error("the Idempotency-Key is empty; send 1 to {MAX_KEY_CHARS} characters")]
    Empty,
    #[error("the Idempotency-Key is {0} characters long; the limit is {MAX_KEY_CHARS}")]
    TooLong(usize),
    #[error(
        "the Idempotency-Key is not a Structured Field String (a quoted string of printable \
         ASCII, with \\\" and \\\\ the only escapes) nor a bare value of printable ASCII \
         without spaces, quotes, backslashes, commas or semicolons: {0}"
    )]
    Malformed(&'static str),
}

/// The request's `Idempotency-Key`: `None` when absent.
///
/// The draft asks for a String (`"8e03978e-40d5-43e8-bc93-6894a57f9324"`).
/// Most clients in the wild send the bare value (`8e03…9324`), so a bare
/// value of printable ASCII is accepted too and means the same key: the
/// quotes are syntax, not part of the key. Parameters (`"k";a=1`) and lists
/// are refused rather than half-understood.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, KeyHeaderError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let extra = values.count();
    if extra > 0 {
        return Err(KeyHeaderError::Repeated(extra + 1));
    }
    let raw = std::str::from_utf8(value.as_bytes())
        .map_err(|_| KeyHeaderError::Malformed("it holds bytes outside ASCII"))?;
    parse_key(raw.trim_matches(' ')).map(Some)
}

fn parse_key(raw: &str) -> Result<IdempotencyKey, KeyHeaderError> {
    let key = match raw.strip_prefix('"') {
        Some(quoted) => parse_sf_string(quoted)?,
        None => parse_bare(raw)?,
    };
    match key.chars().count() {
        0 => Err(KeyHeaderError::Empty),
        length if length > MAX_KEY_CHARS => Err(KeyHeaderError::TooLong(length)),
        _ => Ok(IdempotencyKey(key)),
    }
}

/// The rest of an sf-string after its opening quote (RFC 9651, 4.2.5).
fn parse_sf_string(rest: &str) -> Result<String, KeyHeaderError> {
    let mut key = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(char) = chars.next() {
        match char {
            '\\' => match chars.next() {
                Some(escaped @ ('"' | '\\')) => key.push(escaped),
                _ => {
                    return Err(KeyHeaderError::Malformed(
                        "a backslash escapes only \" or \\",
                    ));
                }
            },
            '"' => {
                if chars.next().is_some() {
                    return Err(KeyHeaderError::Malformed(
                        "something follows the closing quote (parameters are not supported)",
                    ));
                }
                return Ok(key);
            }
            ' '..='~' => key.push(char),
            _ => {
                return Err(KeyHeaderError::Malformed(
                    "it holds a character outside printable ASCII",
                ));
            }
        }
    }
    Err(KeyHeaderError::Malformed("the closing quote is missing"))
}

fn parse_bare(raw: &str) -> Result<String, KeyHeaderError> {
    let refused = |char: char| !matches!(char, '!'..='~') || matches!(char, '"' | '\\' | ',' | ';');
    if raw.contains(refused) {
        return Err(KeyHeaderError::Malformed(
            "a bare value may not hold spaces, quotes, backslashes, commas or semicolons; quote it",
        ));
    }
    Ok(raw.to_owned())
}

/// The `wait` preference of `Prefer` headers (RFC 7240: `Prefer: wait=10`),
/// in seconds, if any; a malformed value is ignored, as a preference may be.
pub fn preferred_wait_secs(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| {
            // A preference's own parameters follow a `;`.
            let head = preference.split(';').next()?.trim();
            let (name, value) = head.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())?
        })
        .next()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(IDEMPOTENCY_KEY, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    fn key_of(value: &[u8]) -> Result<Option<IdempotencyKey>, KeyHeaderError> {
        idempotency_key(&headers(&[value]))
    }

    #[test]
    fn quoted_and_bare_values_name_the_same_key() {
        let quoted = key_of(br#""8e03978e-40d5-43e8""#).unwrap().unwrap();
        let bare = key_of(b"8e03978e-40d5-43e8").unwrap().unwrap();
        assert_eq!(quoted, bare);
        assert_eq!(quoted.as_str(), "8e03978e-40d5-43e8");
    }

    #[test]
    fn escapes_unescape_and_spaces_inside_quotes_stay() {
        let key = key_of(br#""a \"b\" \\c""#).unwrap().unwrap();
        assert_eq!(key.as_str(), r#"a "b" \c"#);
    }

    #[test]
    fn what_is_refused_and_why() {
        let cases: [(&[u8], &str); 9] = [
            (br#""""#, "empty"),
            (br#""abc"#, "closing quote"),
            (br#""abc";a=1"#, "parameters"),
            (br#""a\nb""#, "escapes only"),
            (b"a b", "quote it"),
            (b"a,b", "quote it"),
            (b"a;b", "quote it"),
            ("\"caf\u{e9}\"".as_bytes(), "outside printable ASCII"),
            (b"", "empty"),
        ];
        for (value, complaint) in cases {
            let error = key_of(value).unwrap_err();
            assert!(
                error.to_string().contains(complaint),
                "{:?}: {error}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn two_headers_are_refused_and_none_is_no_key() {
        assert_eq!(
            idempotency_key(&headers(&[b"a", b"b"])),
            Err(KeyHeaderError::Repeated(2))
        );
        assert_eq!(idempotency_key(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn the_length_limit_counts_the_unescaped_key() {
        let at_limit = format!("\"{}\"", "k".repeat(MAX_KEY_CHARS));
        assert!(key_of(at_limit.as_bytes()).unwrap().is_some());
        let over = "k".repeat(MAX_KEY_CHARS + 1);
        assert_eq!(
            key_of(over.as_bytes()),
            Err(KeyHeaderError::TooLong(MAX_KEY_CHARS + 1))
        );
    }

    #[test]
    fn the_wait_preference_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append("prefer", HeaderValue::from_static("respond-async, wait=7"));
        assert_eq!(preferred_wait_secs(&headers), Some(7));
        let mut headers = HeaderMap::new();
        headers.append("prefer", HeaderValue::from_static("return=minimal"));
        headers.append("prefer", HeaderValue::from_static("WAIT = 3;x=y"));
        assert_eq!(preferred_wait_secs(&headers), Some(3));
        let mut headers = HeaderMap::new();
        headers.append("prefer", HeaderValue::from_static("wait=soon"));
        assert_eq!(preferred_wait_secs(&headers), None);
    }

    proptest! {
        /// Every printable-ASCII key survives quoting: the key a client
        /// means is the key the proxy claims, escapes and all.
        #[test]
        fn every_sf_string_round_trips(key in "[ -~]{1,255}") {
            let quoted = format!(
                "\"{}\"",
                key.replace('\\', "\\\\").replace('"', "\\\"")
            );
            let parsed = key_of(quoted.as_bytes()).unwrap().unwrap();
            prop_assert_eq!(parsed.as_str(), key.as_str());
        }

        /// No header value panics the parser or yields an empty key.
        #[test]
        fn no_header_value_panics(value in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'\\'), Just(b' '), 0x21u8..0x7f, 0x80u8..=0xff], 0..40)
        ) {
            if let Ok(header) = HeaderValue::from_bytes(&value) {
                let mut headers = HeaderMap::new();
                headers.insert(IDEMPOTENCY_KEY, header);
                if let Ok(Some(key)) = idempotency_key(&headers) {
                    prop_assert!(!key.as_str().is_empty());
                    prop_assert!(key.as_str().chars().count() <= MAX_KEY_CHARS);
                }
            }
        }
    }
}
