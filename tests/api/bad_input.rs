//! Bad input: every limit, malformed bodies, wrong methods. Each gets the
//! right 4xx as problem+json, never a 5xx, and nothing stored is lost.

use std::collections::BTreeMap;

use dedupd::domain::Namespaces;
use dedupd::domain::{Namespace, RetentionPolicy};
use reqwest::StatusCode;
use serde_json::json;

use dedupd_test_support::{TestOptions, raw_request, spawn_app, spawn_app_with};

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    expected: u16,
}

fn case(name: &'static str, method: &'static str, path: String, body: &str, expected: u16) -> Case {
    Case {
        name,
        method,
        path,
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        expected,
    }
}

#[tokio::test]
async fn every_bad_input_gets_its_4xx_problem_and_stored_claims_survive() {
    let app = spawn_app().await;
    let ns = app.namespace.clone();
    // A completed claim that the bad requests below aim at.
    let token = app.acquire("precious", json!({"ttl_secs": 600})).await;
    app.complete("precious", &token, json!({"paid": true}))
        .await;

    let claims = |key: &str| format!("/v1/namespaces/{ns}/claims/{key}");
    let precious = claims("precious");
    let long_key = "k".repeat(513);
    let long_text = "f".repeat(129);
    let big_result = format!(
        r#"{{"token":"{token}","result":"{}"}}"#,
        "x".repeat(17 * 1024)
    );
    let huge_body = format!(r#"{{"fingerprint":"{}"}}"#, "x".repeat(70 * 1024));

    let mut cases = vec![
        case(
            "upper-case namespace",
            "POST",
            "/v1/namespaces/BAD/claims/k".into(),
            "",
            400,
        ),
        case(
            "namespace with a dot",
            "POST",
            "/v1/namespaces/a.b/claims/k".into(),
            "",
            400,
        ),
        case(
            "namespace of 64 bytes",
            "POST",
            format!("/v1/namespaces/{}/claims/k", "n".repeat(64)),
            "",
            400,
        ),
        case(
            "namespace starting with -",
            "POST",
            "/v1/namespaces/-ns/claims/k".into(),
            "",
            400,
        ),
        case("key of 513 bytes", "POST", claims(&long_key), "", 400),
        case("bad percent-encoding", "POST", claims("a%zz"), "", 400),
        case("truncated percent-encoding", "POST", claims("a%2"), "", 400),
        case(
            "percent-encoding that is not UTF-8",
            "POST",
            claims("%FF%FE"),
            "",
            400,
        ),
        case("ttl_secs 0", "POST", claims("k"), r#"{"ttl_secs":0}"#, 400),
        case(
            "ttl_secs above the 20-year cap",
            "POST",
            claims("k"),
            r#"{"ttl_secs":630720001}"#,
            400,
        ),
        case(
            "ttl_secs negative",
            "POST",
            claims("k"),
            r#"{"ttl_secs":-5}"#,
            400,
        ),
        case(
            "ttl_secs a string",
            "POST",
            claims("k"),
            r#"{"ttl_secs":"60"}"#,
            400,
        ),
        case(
            "ttl_secs a fraction",
            "POST",
            claims("k"),
            r#"{"ttl_secs":1.5}"#,
            400,
        ),
        case(
            "ttl_secs beyond exact floats",
            "POST",
            claims("k"),
            r#"{"ttl_secs":1e16}"#,
            400,
        ),
        case(
            "ttl_secs out of range",
            "POST",
            claims("k"),
            r#"{"ttl_secs":1e30}"#,
            400,
        ),
        case(
            "lease_secs 0",
            "POST",
            claims("k"),
            r#"{"lease_secs":0}"#,
            400,
        ),
        case(
            "lease longer than ttl",
            "POST",
            claims("k"),
            r#"{"ttl_secs":10,"lease_secs":11}"#,
            400,
        ),
        case(
            "lease with complete",
            "POST",
            claims("k"),
            r#"{"complete":true,"lease_secs":5}"#,
            400,
        ),
        case(
            "wait_secs above 30",
            "POST",
            claims("k"),
            r#"{"wait_secs":31}"#,
            400,
        ),
        case(
            "wait_secs negative",
            "POST",
            claims("k"),
            r#"{"wait_secs":-1}"#,
            400,
        ),
        case(
            "wait_secs fractional",
            "POST",
            claims("k"),
            r#"{"wait_secs":0.5}"#,
            400,
        ),
        case(
            "wait_secs a string",
            "POST",
            claims("k"),
            r#"{"wait_secs":"5"}"#,
            400,
        ),
        case(
            "complete not a bool",
            "POST",
            claims("k"),
            r#"{"complete":"yes"}"#,
            400,
        ),
        case(
            "fingerprint of 129 bytes",
            "POST",
            claims("k"),
            &format!(r#"{{"fingerprint":"{long_text}"}}"#),
            400,
        ),
        case(
            "empty fingerprint",
            "POST",
            claims("k"),
            r#"{"fingerprint":""}"#,
            400,
        ),
        case(
            "claimant of 129 bytes",
            "POST",
            claims("k"),
            &format!(r#"{{"claimant":"{long_text}"}}"#),
            400,
        ),
        case("unknown field", "POST", claims("k"), r#"{"ttl":60}"#, 400),
        case(
            "wait_secs in a batch (single claims only)",
            "POST",
            format!("/v1/namespaces/{ns}/claims"),
            r#"{"claims":[{"key":"k"}],"wait_secs":5}"#,
            400,
        ),
        case(
            "duplicate field",
            "POST",
            claims("k"),
            r#"{"ttl_secs":60,"ttl_secs":70}"#,
            400,
        ),
        case(
            "malformed JSON",
            "POST",
            claims("k"),
            r#"{"ttl_secs":"#,
            400,
        ),
        case("a JSON array", "POST", claims("k"), "[]", 400),
        case("trailing garbage", "POST", claims("k"), r#"{} x"#, 400),
        case("body over 64 KiB", "POST", claims("k"), &huge_body, 413),
        case(
            "complete without a body",
            "POST",
            format!("{precious}/complete"),
            "",
            400,
        ),
        case(
            "complete without a token",
            "POST",
            format!("{precious}/complete"),
            r#"{"result":1}"#,
            400,
        ),
        case(
            "complete with a non-UUID token",
            "POST",
            format!("{precious}/complete"),
            r#"{"token":"abc"}"#,
            400,
        ),
        case(
            "complete with a result over 16 KiB",
            "POST",
            format!("{precious}/complete"),
            &big_result,
            413,
        ),
        case(
            "complete with an unknown field",
            "POST",
            format!("{precious}/complete"),
            &format!(r#"{{"token":"{token}","extra":1}}"#),
            400,
        ),
        case(
            "release with a token of the wrong type",
            "POST",
            format!("{precious}/release"),
            r#"{"token":42}"#,
            400,
        ),
        case(
            "extend without lease_secs",
            "POST",
            format!("{precious}/extend"),
            &format!(r#"{{"token":"{token}"}}"#),
            400,
        ),
        case(
            "extend with lease_secs 0",
            "POST",
            format!("{precious}/extend"),
            &format!(r#"{{"token":"{token}","lease_secs":0}}"#),
            400,
        ),
        case("PUT a claim", "PUT", precious.clone(), "{}", 405),
        case("DELETE a claim", "DELETE", precious.clone(), "", 405),
        case("PATCH a claim", "PATCH", precious.clone(), "{}", 405),
        case(
            "GET complete",
            "GET",
            format!("{precious}/complete"),
            "",
            405,
        ),
        case("POST livez", "POST", "/livez".into(), "", 405),
        case(
            "unknown route",
            "POST",
            format!("/v1/namespaces/{ns}/claimz/k"),
            "",
            404,
        ),
        case(
            "unknown action",
            "POST",
            format!("{precious}/cancel"),
            "{}",
            404,
        ),
        case(
            "no key",
            "POST",
            format!("/v1/namespaces/{ns}/claims/"),
            "",
            404,
        ),
        case(
            "v2",
            "POST",
            format!("/v2/namespaces/{ns}/claims/k"),
            "",
            404,
        ),
    ];
    cases.push(Case {
        name: "text/plain body",
        method: "POST",
        path: claims("k"),
        content_type: Some("text/plain"),
        body: b"{}".to_vec(),
        expected: 415,
    });
    cases.push(Case {
        name: "body without a content type",
        method: "POST",
        path: claims("k"),
        content_type: None,
        body: b"{\"ttl_secs\":5}".to_vec(),
        expected: 415,
    });
    cases.push(Case {
        name: "form-encoded complete",
        method: "POST",
        path: format!("{precious}/complete"),
        content_type: Some("application/x-www-form-urlencoded"),
        body: format!("token={token}").into_bytes(),
        expected: 415,
    });

    let mut failures = Vec::new();
    for case in &cases {
        let headers: Vec<(&str, &str)> = case
            .content_type
            .map(|content_type| vec![("Content-Type", content_type)])
            .unwrap_or_default();
        let (status, head, body) =
            raw_request(&app, case.method, &case.path, &headers, &case.body).await;
        let is_problem = head
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json");
        let parsed: Option<serde_json::Value> = serde_json::from_str(&body).ok();
        let well_formed = parsed.as_ref().is_some_and(|problem| {
            problem["status"] == case.expected
                && problem["type"].is_string()
                && problem["title"].is_string()
                && problem["detail"].as_str().is_some_and(|d| !d.is_empty())
        });
        if status != case.expected || !is_problem || !well_formed {
            failures.push(format!(
                "{}: {} {} gave {status} (expected {}), problem+json: {is_problem}, body: {body}",
                case.name,
                case.method,
                case.path.chars().take(80).collect::<String>(),
                case.expected
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing stored was lost.
    let (status, view) = app.get("precious").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["state"], "completed");
    assert_eq!(view["result"], json!({"paid": true}));
    // And the keys that bad requests named were never claimed.
    let (status, _) = app.get("k").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn configured_namespaces_close_the_set_and_bound_the_ttl() {
    let mut listed = BTreeMap::new();
    let ns = dedupd_test_support::unique_namespace();
    listed.insert(
        Namespace::parse(&ns).unwrap(),
        RetentionPolicy {
            default_ttl_secs: 300,
            max_ttl_secs: 3600,
            default_lease_secs: 10,
        },
    );
    let mut app = spawn_app_with(TestOptions {
        namespaces: Namespaces::Listed(listed),
        ..TestOptions::default()
    })
    .await;
    app.namespace = ns;

    let (status, body) = app.claim_json("k", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let lease_end =
        chrono::DateTime::parse_from_rfc3339(body["lease_expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires_at - lease_end).num_seconds(), 290);

    let (status, problem) = app.claim_json("k2", json!({"ttl_secs": 3601})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("3600"));

    let response = app
        .client
        .post(app.url("/v1/namespaces/not-configured/claims/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}
