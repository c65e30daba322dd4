//! Batch claims: per-key results in request order, never atomic.

use std::time::Duration;

use dedupd::claims::RetryBudget;
use dedupd::store::faults::Fault;
use dedupd::store::statement;
use reqwest::StatusCode;
use serde_json::{Value, json};

use dedupd_test_support::{TestOptions, result_statuses, spawn_app, spawn_app_with};

fn keys(keys: &[&str]) -> Value {
    Value::Array(keys.iter().map(|key| json!({"key": key})).collect())
}

#[tokio::test]
async fn new_and_duplicate_keys_get_their_own_results_in_order() {
    let app = spawn_app().await;
    app.acquire("b2", json!({})).await;
    let token = app.acquire("b4", json!({})).await;
    app.complete("b4", &token, json!({"done": 4})).await;

    let (status, body) = app
        .claim_batch(json!({"claims": keys(&["b1", "b2", "b3", "b4"]), "lease_secs": 20}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    let summary: Vec<(&str, u64, &str)> = results
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap(),
                r["status"].as_u64().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("b1", 201, "acquired"),
            ("b2", 409, "duplicate"),
            ("b3", 201, "acquired"),
            ("b4", 409, "duplicate"),
        ]
    );
    assert_eq!(results[1]["state"], "in_progress");
    assert_eq!(results[3]["state"], "completed");
    assert_eq!(results[3]["result"], json!({"done": 4}));
    // The tokens handed out own their keys.
    let token = results[0]["token"].as_str().unwrap();
    let (status, _) = app.complete("b1", token, json!(1)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn fingerprints_are_checked_per_key() {
    let app = spawn_app().await;
    app.acquire("f1", json!({"fingerprint": "a"})).await;
    let (_, body) = app
        .claim_batch(json!({"claims": [
            {"key": "f1", "fingerprint": "b"},
            {"key": "f2", "fingerprint": "b"}
        ]}))
        .await;
    assert_eq!(body["results"][0]["status"], 422);
    assert_eq!(body["results"][0]["outcome"], "fingerprint_mismatch");
    assert_eq!(body["results"][1]["status"], 201);
}

#[tokio::test]
async fn a_store_failure_on_some_keys_is_a_503_for_those_keys_only() {
    let app = spawn_app_with(TestOptions {
        budget: RetryBudget {
            deadline: Duration::from_secs(2),
            ..RetryBudget::default()
        },
        ..TestOptions::default()
    })
    .await;
    for key in ["down-1", "down-2"] {
        app.faults
            .inject_for(statement::INSERT, key, Fault::TimeoutBeforeSend, 100);
        app.faults
            .inject_for(statement::READ_SERIAL, key, Fault::TimeoutBeforeSend, 100);
    }
    let (status, body) = app
        .claim_batch(json!({"claims": keys(&["up-1", "down-1", "up-2", "down-2"])}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(result_statuses(&body), vec![201, 503, 201, 503]);
    assert_eq!(body["results"][1]["outcome"], "unavailable");
    assert!(body["results"][1]["detail"].is_string());
    // The failed keys were never claimed: they are free once the store is.
    app.faults.clear();
    let (_, body) = app
        .claim_batch(json!({"claims": keys(&["down-1", "down-2"])}))
        .await;
    assert_eq!(body["results"][0]["status"], 201);
    assert_eq!(body["results"][1]["status"], 201);
}

#[tokio::test]
async fn a_thousand_keys_is_the_limit() {
    let app = spawn_app().await;
    let names: Vec<String> = (0..1000).map(|i| format!("bulk-{i}")).collect();
    let claims: Vec<Value> = names.iter().map(|key| json!({"key": key})).collect();
    let (status, body) = app
        .claim_batch(json!({"claims": claims, "complete": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    assert!(
        results
            .iter()
            .zip(&names)
            .all(|(r, key)| r["key"] == key.as_str() && r["status"] == 201)
    );

    let mut too_many = claims.clone();
    too_many.push(json!({"key": "bulk-1000"}));
    let (status, problem) = app.claim_batch(json!({"claims": too_many})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let response = app.claim("bulk-1000", json!({})).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "a refused batch claims nothing"
    );
}

#[tokio::test]
async fn bad_batches_are_refused_whole() {
    let app = spawn_app().await;
    let long_key = "k".repeat(513);
    for body in [
        json!({"claims": []}),
        json!({"claims": keys(&["same", "other", "same"])}),
        json!({"claims": [{"key": long_key}]}),
        json!({"claims": [{"key": ""}]}),
        json!({"claims": [{"key": "k", "extra": 1}]}),
        json!({"claims": keys(&["k"]), "ttl_secs": 0}),
        json!({"claims": keys(&["k"]), "lease_secs": 5, "complete": true}),
        json!({"claims": "k"}),
        json!({"keys": ["k"]}),
    ] {
        let (status, problem) = app.claim_batch(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert!(problem["detail"].is_string());
    }
    let (status, _) = app.get("same").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
