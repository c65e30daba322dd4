//! `wait_secs`: a claim of a key held in progress waits for the holder
//! instead of answering "in progress" at once.

use std::time::Duration;

use dedupd::claims::WaitSettings;
use reqwest::StatusCode;
use serde_json::{Value, json};

use dedupd_test_support::{TestApp, TestOptions, metric_value, spawn_app, spawn_app_with};

/// Claims `key` with `wait_secs` in a task of its own: the answer comes when
/// the wait ends.
fn claim_waiting(
    app: &TestApp,
    key: &str,
    wait_secs: u64,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let client = app.client.clone();
    let url = app.claim_url(key);
    tokio::spawn(async move {
        let response = client
            .post(url)
            .json(&json!({"wait_secs": wait_secs, "claimant": "waiter"}))
            .send()
            .await
            .expect("waiting claim");
        let status = response.status();
        (status, response.json().await.expect("a JSON answer"))
    })
}

/// Until `app` counts `waiters` waiting claims (bounded: 10 s).
async fn until_waiting(app: &TestApp, waiters: f64) {
    for _ in 0..200 {
        if metric_value(&app.metrics().await, "dedupd_claim_waiters") == waiters {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{waiters} claim(s) never started waiting");
}

#[tokio::test]
async fn a_completion_answers_a_waiter_with_the_result() {
    let app = spawn_app().await;
    let token = app.acquire("k", json!({"lease_secs": 60})).await;
    let waiter = claim_waiting(&app, "k", 20);
    until_waiting(&app, 1.0).await;

    let (status, _) = app.complete("k", &token, json!({"charge": "ch_1"})).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["state"], "completed", "{body}");
    assert_eq!(body["result"], json!({"charge": "ch_1"}), "{body}");
    until_waiting(&app, 0.0).await;
}

#[tokio::test]
async fn a_release_hands_the_key_to_a_waiter() {
    let app = spawn_app().await;
    let token = app.acquire("k", json!({"lease_secs": 60})).await;
    let waiter = claim_waiting(&app, "k", 20);
    until_waiting(&app, 1.0).await;

    let (status, _) = app.release("k", &token).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["takeover"], false, "{body}");
    // The waiter owns the key now: the old token is fenced out.
    let (status, body) = app.complete("k", &token, json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["outcome"], "not_owner", "{body}");
}

#[tokio::test]
async fn a_lease_that_passes_hands_the_key_to_a_waiter_by_takeover() {
    let app = spawn_app().await;
    let token = app.acquire("k", json!({"lease_secs": 1})).await;
    let waiter = claim_waiting(&app, "k", 20);

    let (status, body) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["takeover"], true, "{body}");
    let (status, body) = app.complete("k", &token, json!(null)).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the old holder is fenced: {body}"
    );
    assert_eq!(body["outcome"], "not_owner", "{body}");
}

#[tokio::test]
async fn a_wait_that_ends_first_answers_in_progress_as_before() {
    let app = spawn_app().await;
    app.acquire("k", json!({"lease_secs": 60})).await;
    let (status, body) = claim_waiting(&app, "k", 1).await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["state"], "in_progress", "{body}");
}

#[tokio::test]
async fn beyond_the_waiter_bound_a_claim_that_waits_is_refused_at_once() {
    let app = spawn_app_with(TestOptions {
        wait: WaitSettings {
            max_waiters: 1,
            ..WaitSettings::default()
        },
        ..TestOptions::default()
    })
    .await;
    let token = app.acquire("k", json!({"lease_secs": 60})).await;
    let first = claim_waiting(&app, "k", 20);
    until_waiting(&app, 1.0).await;

    let refused = app
        .claim("k", json!({"wait_secs": 20, "claimant": "second"}))
        .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(
        problem["type"], "urn:dedupd:problem:too-many-waiters",
        "{problem}"
    );
    assert_eq!(
        metric_value(&app.metrics().await, "dedupd_claim_waits_refused_total"),
        1.0
    );
    // A claim that does not wait is still answered.
    let (status, body) = app.claim_json("k", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    app.complete("k", &token, json!(7)).await;
    let (status, body) = first.await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["result"], json!(7), "{body}");
}

#[tokio::test]
async fn a_completion_through_another_instance_reaches_the_waiter() {
    let app = spawn_app().await;
    let mut other = spawn_app().await;
    other.namespace = app.namespace.clone();
    let token = app.acquire("k", json!({"lease_secs": 60})).await;
    let waiter = claim_waiting(&app, "k", 20);
    until_waiting(&app, 1.0).await;

    let (status, _) = other.complete("k", &token, json!("done elsewhere")).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["result"], json!("done elsewhere"), "{body}");
}

#[tokio::test]
async fn a_drain_answers_waiters_at_once_with_what_they_have() {
    let mut app = spawn_app_with(TestOptions {
        shutdown_delay: Duration::from_secs(2),
        ..TestOptions::default()
    })
    .await;
    app.acquire("k", json!({"lease_secs": 60})).await;
    let waiter = claim_waiting(&app, "k", 30);
    until_waiting(&app, 1.0).await;

    app.begin_shutdown();
    let (status, body) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["state"], "in_progress", "{body}");
}
