//! The duplicate shortcuts: the completed-claims cache answers redeliveries
//! of completed work from memory, a quorum read answers them without a
//! Paxos round, and neither decides anything else.

use dedupd::claims::ReadFirstPolicy;
use reqwest::StatusCode;
use serde_json::json;

use dedupd_test_support::{TestApp, TestOptions, metric_value, spawn_app_with};

/// An app with the read-first policy and the cache off, so that the quorum
/// read is what is tested.
async fn spawn(policy: ReadFirstPolicy) -> TestApp {
    spawn_app_with(TestOptions {
        read_first: policy,
        completed_cache_bytes: 0,
        ..TestOptions::default()
    })
    .await
}

async fn counts(app: &TestApp) -> (f64, f64, f64) {
    let text = app.metrics().await;
    (
        metric_value(&text, "dedupd_read_first_total{result=\"hit\"}"),
        metric_value(&text, "dedupd_read_first_total{result=\"miss\"}"),
        metric_value(
            &text,
            "dedupd_store_latency_seconds_count{statement=\"claim_insert\"}",
        ),
    )
}

#[tokio::test]
async fn a_completed_duplicate_is_answered_without_an_lwt() {
    let app = spawn(ReadFirstPolicy::Always).await;
    let token = app.acquire("done", json!({"fingerprint": "a"})).await;
    app.complete("done", &token, json!({"id": 9})).await;
    let (hits, _, inserts) = counts(&app).await;

    let response = app.claim("done", json!({"fingerprint": "a"})).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["state"], "completed");
    assert_eq!(body["result"], json!({"id": 9}));
    let (hits_after, _, inserts_after) = counts(&app).await;
    assert_eq!(hits_after, hits + 1.0);
    assert_eq!(inserts_after, inserts, "no INSERT … IF NOT EXISTS ran");

    // A different payload is still caught on the shortcut.
    let (status, _) = app.claim_json("done", json!({"fingerprint": "b"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn anything_but_a_completed_row_goes_through_paxos() {
    let app = spawn(ReadFirstPolicy::Always).await;
    let (_, _, inserts) = counts(&app).await;
    app.acquire("new", json!({"lease_secs": 1})).await;
    let (status, _) = app.claim_json("new", json!({})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "in progress: decided by the LWT"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let (status, body) = app.claim_json("new", json!({})).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "an expired lease is taken over: {body}"
    );
    let (hits, misses, inserts_after) = counts(&app).await;
    assert_eq!(hits, 0.0);
    assert_eq!(misses, 3.0);
    assert_eq!(inserts_after, inserts + 3.0);
}

#[tokio::test]
async fn an_expired_completed_claim_is_claimable_again() {
    let app = spawn(ReadFirstPolicy::Always).await;
    app.acquire("brief", json!({"ttl_secs": 2, "complete": true}))
        .await;
    let (status, _) = app.claim_json("brief", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, body) = app.claim_json("brief", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn auto_starts_reading_first_once_redeliveries_dominate() {
    let app = spawn(ReadFirstPolicy::Auto { threshold: 0.25 }).await;
    app.acquire("popular", json!({"complete": true})).await;
    // The share of redeliveries is an average over about the last 50
    // claims: from one new claim it crosses 25 % after 15 redeliveries.
    for _ in 0..60 {
        let (status, _) = app.claim_json("popular", json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
    let (hits, misses, _) = counts(&app).await;
    assert_eq!(hits + misses, 45.0, "reads start after 15 redeliveries");
    assert_eq!(misses, 0.0, "every read found the completed claim");

    let never = spawn(ReadFirstPolicy::Never).await;
    never.acquire("popular", json!({"complete": true})).await;
    for _ in 0..5 {
        never.claim_json("popular", json!({})).await;
    }
    let (hits, misses, _) = counts(&never).await;
    assert_eq!((hits, misses), (0.0, 0.0));
}

fn statement_count(text: &str, statement: &str) -> f64 {
    metric_value(
        text,
        &format!("dedupd_store_latency_seconds_count{{statement=\"{statement}\"}}"),
    )
}

#[tokio::test]
async fn completed_claims_are_answered_from_memory_on_every_instance() {
    let first = spawn_app_with(TestOptions::default()).await;
    let token = first.acquire("cached", json!({"fingerprint": "f"})).await;
    first.complete("cached", &token, json!("r")).await;
    let before = first.metrics().await;
    for _ in 0..5 {
        let (status, body) = first.claim_json("cached", json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["result"], "r");
    }
    let (status, _) = first
        .claim_json("cached", json!({"fingerprint": "other"}))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "fingerprints are checked in memory too"
    );
    let after = first.metrics().await;
    assert_eq!(
        metric_value(&after, "dedupd_completed_cache_total{result=\"hit\"}")
            - metric_value(&before, "dedupd_completed_cache_total{result=\"hit\"}"),
        6.0
    );
    for statement in ["claim_insert", "claim_read", "claim_read_serial"] {
        assert_eq!(
            statement_count(&after, statement),
            statement_count(&before, statement),
            "{statement} ran for a cached duplicate"
        );
    }

    // Another instance learns it from its first duplicate, then answers
    // from memory as well.
    let mut second = spawn_app_with(TestOptions::default()).await;
    second.namespace = first.namespace.clone();
    let (status, _) = second.claim_json("cached", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = second.claim_json("cached", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let text = second.metrics().await;
    assert_eq!(
        metric_value(&text, "dedupd_completed_cache_total{result=\"hit\"}"),
        1.0
    );
}

#[tokio::test]
async fn in_progress_claims_are_never_cached() {
    let app = spawn_app_with(TestOptions::default()).await;
    let token = app.acquire("working", json!({})).await;
    app.claim_json("working", json!({})).await;
    // Released, the key is free at once: nothing remembered it as taken.
    app.release("working", &token).await;
    let (status, _) = app.claim_json("working", json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let text = app.metrics().await;
    assert_eq!(
        metric_value(&text, "dedupd_completed_cache_total{result=\"hit\"}"),
        0.0
    );
}

#[tokio::test]
async fn a_cached_claim_is_forgotten_when_its_window_ends() {
    let app = spawn_app_with(TestOptions::default()).await;
    app.acquire("fleeting", json!({"ttl_secs": 2, "complete": true}))
        .await;
    let (status, _) = app.claim_json("fleeting", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, body) = app.claim_json("fleeting", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
