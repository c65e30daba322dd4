//! An upstream response as the claim's stored result, and back.
//!
//! The claim engine stores one JSON value per completed claim. A response
//! becomes `{"v":1,"status":201,"headers":[["content-type","…"]],"body":"…"}`
//! (the body as text when it is UTF-8, else `"body_b64"`), or, when the
//! route fails closed on a response too large to keep,
//! `{"v":1,"not_stored":"too_large","status":201}`: a marker that says the
//! request was processed, so a retry is told so instead of being forwarded.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Value, json};

const VERSION: u64 = 1;

/// What a completed proxy claim holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredResponse {
    Response {
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
    },
    /// Processed, but the response was not kept (too large, fail closed).
    NotStored { status: StatusCode },
}

/// A stored value the proxy did not write (a claim made through the claim
/// API in the proxy's namespace, or a newer format): never guessed at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the key's stored result is not a response this proxy stored: {0}")]
pub struct UnknownStoredValue(pub &'static str);

impl StoredResponse {
    /// The response to store: its status, the headers `keep` allows, and
    /// its body.
    pub fn of(status: StatusCode, headers: &HeaderMap, keep: &[HeaderName], body: Bytes) -> Self {
        let headers = headers
            .iter()
            .filter(|(name, _)| keep.contains(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        StoredResponse::Response {
            status,
            headers,
            body,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            StoredResponse::NotStored { status } => {
                json!({"v": VERSION, "not_stored": "too_large", "status": status.as_u16()})
            }
            StoredResponse::Response {
                status,
                headers,
                body,
            } => {
                // Header values are bytes; the ones not visible ASCII go
                // base64 so that none is altered on the way back.
                let headers: Vec<Value> = headers
                    .iter()
                    .map(|(name, value)| match value.to_str() {
                        Ok(text) => json!([name.as_str(), text]),
                        Err(_) => json!([name.as_str(), {"b64": BASE64.encode(value.as_bytes())}]),
                    })
                    .collect();
                let mut document = json!({
                    "v": VERSION,
                    "status": status.as_u16(),
                    "headers": headers,
                });
                match std::str::from_utf8(body) {
                    Ok(text) => document["body"] = Value::String(text.to_owned()),
                    Err(_) => document["body_b64"] = Value::String(BASE64.encode(body)),
                }
                document
            }
        }
    }

    pub fn from_json(value: &Value) -> Result<Self, UnknownStoredValue> {
        if value.get("v").and_then(Value::as_u64) != Some(VERSION) {
            return Err(UnknownStoredValue("no version 1 marker"));
        }
        let status = value
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|code| u16::try_from(code).ok())
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or(UnknownStoredValue("no valid status"))?;
        if value.get("not_stored").is_some() {
            return Ok(StoredResponse::NotStored { status });
        }
        let mut headers = Vec::new();
        for pair in value
            .get("headers")
            .and_then(Value::as_array)
            .ok_or(UnknownStoredValue("no header list"))?
        {
            headers.push(decode_header(pair).ok_or(UnknownStoredValue("a malformed header"))?);
        }
        let body = match (value.get("body"), value.get("body_b64")) {
            (Some(Value::String(text)), None) => Bytes::from(text.clone()),
            (None, Some(Value::String(encoded))) => Bytes::from(
                BASE64
                    .decode(encoded)
                    .map_err(|_| UnknownStoredValue("a body that is not base64"))?,
            ),
            _ => return Err(UnknownStoredValue("no body")),
        };
        Ok(StoredResponse::Response {
            status,
            headers,
            body,
        })
    }
}

fn decode_header(pair: &Value) -> Option<(HeaderName, HeaderValue)> {
    let [name, value] = pair.as_array()?.as_slice() else {
        return None;
    };
    let name = HeaderName::try_from(name.as_str()?).ok()?;
    let value = match value {
        Value::String(text) => HeaderValue::from_str(text).ok()?,
        Value::Object(encoded) => {
            let bytes = BASE64.decode(encoded.get("b64")?.as_str()?).ok()?;
            HeaderValue::from_bytes(&bytes).ok()?
        }
        _ => return None,
    };
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn keep() -> Vec<HeaderName> {
        vec![
            HeaderName::from_static("content-type"),
            HeaderName::from_static("location"),
        ]
    }

    #[test]
    fn only_allowed_headers_are_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("set-cookie", HeaderValue::from_static("session=secret"));
        headers.insert("location", HeaderValue::from_static("/orders/7"));
        let stored = StoredResponse::of(StatusCode::CREATED, &headers, &keep(), Bytes::new());
        let StoredResponse::Response { headers, .. } = &stored else {
            panic!("a response");
        };
        let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["content-type", "location"]);
        assert!(!stored.to_json().to_string().contains("secret"));
    }

    #[test]
    fn foreign_values_are_refused_not_guessed() {
        for value in [
            json!({"order": 7}),
            json!("done"),
            json!({"v": 2, "status": 200, "headers": [], "body": ""}),
            json!({"v": 1, "status": 99, "headers": [], "body": ""}),
            json!({"v": 1, "status": 200, "headers": [["bad name", "x"]], "body": ""}),
            json!({"v": 1, "status": 200, "headers": []}),
        ] {
            assert!(StoredResponse::from_json(&value).is_err(), "{value}");
        }
    }

    #[test]
    fn the_not_stored_marker_round_trips() {
        let marker = StoredResponse::NotStored {
            status: StatusCode::CREATED,
        };
        assert_eq!(StoredResponse::from_json(&marker.to_json()), Ok(marker));
    }

    proptest! {
        /// Any status, header bytes and body come back exactly as stored.
        #[test]
        fn responses_round_trip(
            status in 100u16..600,
            value in proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff], 0..40),
            body in proptest::collection::vec(any::<u8>(), 0..300),
            text in "\\PC{0,100}",
        ) {
            let status = StatusCode::from_u16(status).unwrap();
            let mut headers = HeaderMap::new();
            headers.insert("content-type", HeaderValue::from_bytes(&value).unwrap());
            for body in [Bytes::from(body.clone()), Bytes::from(text.clone())] {
                let stored = StoredResponse::of(status, &headers, &keep(), body);
                let text = stored.to_json().to_string();
                let back: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(StoredResponse::from_json(&back).unwrap(), stored);
            }
        }
    }
}
