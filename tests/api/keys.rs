//! One message id, one row: a key is the exact UTF-8 string the client
//! meant, whether it arrives percent-encoded in a path or as a JSON string
//! in a batch body, and two distinct ids never share a row.
//!
//! Requests go over raw TCP (`raw_request`), not reqwest: a WHATWG URL
//! parser removes `.`/`..` segments (even `%2E%2E`) and would never send
//! some of these paths as written.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use dedupd_test_support::{TestApp, encode, raw_request, spawn_app, unique_namespace};

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// POST/GET a claim path in `namespace` with the key encoded by `encode`.
async fn path_call(
    app: &TestApp,
    method: &str,
    namespace: &str,
    encoded_key: &str,
    body: &str,
) -> (u16, Value) {
    let path = format!("/v1/namespaces/{namespace}/claims/{encoded_key}");
    let (status, head, text) = raw_request(app, method, &path, &[JSON], body.as_bytes()).await;
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{method} {path}: {status} {head}: body not JSON: {text:?}"));
    (status, value)
}

async fn batch_call(app: &TestApp, namespace: &str, keys: &[&str]) -> (u16, Value) {
    let claims: Vec<Value> = keys.iter().map(|key| json!({ "key": key })).collect();
    let body = json!({ "claims": claims }).to_string();
    let path = format!("/v1/namespaces/{namespace}/claims");
    let (status, head, text) = raw_request(app, "POST", &path, &[JSON], body.as_bytes()).await;
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("batch: {status} {head}: body not JSON: {text:?}"));
    (status, value)
}

/// The pairs that collided when paths were decoded twice, and others of the
/// same kind: each pair is two distinct ids.
const DISTINCT_PAIRS: &[(&str, &str)] = &[
    ("a b", "a%20b"),
    ("x/y", "x%2Fy"),
    ("%41", "A"),
    ("k?x", "k%3Fx"),
    ("h#1", "h%231"),
    ("100%", "100%25"),
    ("%zz", "%25zz"),
    ("%%", "%"),
    ("a+b", "a b"),
    ("\u{e9}", "e\u{301}"),
    (".", ".."),
    ("key", "key\0"),
];

#[tokio::test]
async fn ids_that_collided_when_decoded_twice_are_distinct_keys() {
    let app = spawn_app().await;
    for (first, second) in DISTINCT_PAIRS {
        // A namespace per pair: some ids appear in two pairs.
        let namespace = &unique_namespace();
        for key in [first, second] {
            let (status, body) = path_call(&app, "POST", namespace, &encode(key), "{}").await;
            assert_eq!(status, 201, "{key:?} must be a key of its own: {body}");
        }
        for key in [first, second] {
            let (status, body) = path_call(&app, "GET", namespace, &encode(key), "").await;
            assert_eq!(status, 200, "{key:?}: {body}");
            assert_eq!(body["state"], "in_progress");
        }
    }
}

#[tokio::test]
async fn legitimate_ids_with_percent_signs_are_accepted_when_encoded() {
    let app = spawn_app().await;
    for (encoded, key) in [
        ("100%25", "100%"),
        ("%25zz", "%zz"),
        ("%25%25", "%%"),
        ("%2541", "%41"),
        ("50%25%20off", "50% off"),
    ] {
        let (status, body) = path_call(&app, "POST", &app.namespace, encoded, "{}").await;
        assert_eq!(status, 201, "{encoded}: {body}");
        // The batch body names the same id as the JSON string itself.
        let (status, body) = batch_call(&app, &app.namespace, &[key]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"][0]["key"], key);
        assert_eq!(
            body["results"][0]["status"], 409,
            "{key:?} by batch is the row {encoded} claimed: {body}"
        );
    }
}

#[tokio::test]
async fn the_path_and_the_batch_body_name_one_key() {
    let app = spawn_app().await;
    // `%41` in a body is the three characters; in a path it is `A`.
    let (status, body) = batch_call(&app, &app.namespace, &["%41"]).await;
    assert_eq!((status, &body["results"][0]["status"]), (200, &json!(201)));
    let (status, _) = path_call(&app, "POST", &app.namespace, "%2541", "{}").await;
    assert_eq!(status, 409, "…/claims/%2541 is the key %41");
    let (status, _) = path_call(&app, "POST", &app.namespace, "%41", "{}").await;
    assert_eq!(status, 201, "…/claims/%41 is the key A, another one");
}

#[tokio::test]
async fn bad_encodings_and_sizes_are_refused_with_a_problem() {
    let app = spawn_app().await;
    let four_byte = "\u{1F600}";
    let at_limit = four_byte.repeat(128);
    let over_limit = format!("{at_limit}a");
    for (encoded, complaint) in [
        ("%zz".to_owned(), "percent-encoding"),
        ("a%".to_owned(), "percent-encoding"),
        ("a%2".to_owned(), "percent-encoding"),
        ("%FF".to_owned(), "UTF-8"),
        ("%C3".to_owned(), "UTF-8"),
        (encode(&over_limit), "513 bytes"),
    ] {
        let path = format!("/v1/namespaces/{}/claims/{encoded}", app.namespace);
        let (status, head, text) = raw_request(&app, "POST", &path, &[JSON], b"{}").await;
        assert_eq!(status, 400, "{encoded}: {text}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{head}"
        );
        assert!(text.contains(complaint), "{encoded}: {text}");
    }
    // 512 bytes of four-byte characters is the largest key, by path and body.
    let (status, body) = path_call(&app, "POST", &app.namespace, &encode(&at_limit), "{}").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = batch_call(&app, &app.namespace, &[&at_limit]).await;
    assert_eq!(body["results"][0]["status"], 409, "{status} {body}");
    let (status, body) = batch_call(&app, &app.namespace, &[&over_limit]).await;
    assert_eq!(status, 400, "{body}");
}

/// Ids from the characters that break decoders, or from all of Unicode.
fn awkward_key() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "%",
        "%%",
        "%zz",
        "%2F",
        "%25",
        "%41",
        "/",
        "?",
        "#",
        "+",
        " ",
        "&",
        "=",
        ";",
        ".",
        "..",
        "\\",
        "\"",
        "'",
        "<",
        ">",
        "\u{e9}",
        "e\u{301}",
        "\u{4e2d}",
        "\u{1F600}",
        "\0",
        "\n",
        "\t",
        "a",
        "Z",
        "9",
    ]);
    let awkward = prop::collection::vec(pieces, 1..40).prop_map(|pieces| pieces.concat());
    let anything = prop::collection::vec(any::<char>(), 1..128).prop_map(String::from_iter);
    prop_oneof![awkward, anything]
        .prop_filter("1 to 512 bytes", |key| !key.is_empty() && key.len() <= 512)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_utf8_key_round_trips_through_path_and_batch_as_one_row() {
    let app = spawn_app().await;
    let runtime = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&(awkward_key(), awkward_key()), |(first, second)| {
        tokio::task::block_in_place(|| {
            runtime.block_on(async {
                // A fresh namespace per case: keys of earlier cases (and
                // shrinking, which retries similar ones) never interfere.
                let namespace = unique_namespace();
                let (status, body) =
                    path_call(&app, "POST", &namespace, &encode(&first), "{}").await;
                prop_assert_eq!(status, 201, "claim {:?} by path: {}", first, body);
                let (status, body) = path_call(&app, "GET", &namespace, &encode(&first), "").await;
                prop_assert_eq!(status, 200, "read {:?} by path: {}", first, body);

                let distinct = first != second;
                let keys: Vec<&str> = if distinct {
                    vec![&first, &second]
                } else {
                    vec![&first]
                };
                let (status, body) = batch_call(&app, &namespace, &keys).await;
                prop_assert_eq!(status, 200, "{}", body);
                let results = &body["results"];
                prop_assert_eq!(&results[0]["key"], &json!(first));
                prop_assert_eq!(
                    &results[0]["status"],
                    &json!(409),
                    "{:?} by batch must be the row the path claimed: {}",
                    first,
                    body
                );
                if distinct {
                    prop_assert_eq!(
                        &results[1]["status"],
                        &json!(201),
                        "{:?} and {:?} must not share a row: {}",
                        first,
                        second,
                        body
                    );
                    let (status, body) =
                        path_call(&app, "POST", &namespace, &encode(&second), "{}").await;
                    prop_assert_eq!(status, 409, "{:?} by path after batch: {}", second, body);
                }
                Ok(())
            })
        })
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
