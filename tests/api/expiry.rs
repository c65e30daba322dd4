//! Time: retention expiry, lease expiry and takeover, fencing of old tokens,
//! and rows that TTL has only half removed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use dedupd_test_support::TEST_KEYSPACE;
use dedupd_test_support::{TestApp, spawn_app};

async fn sleep_past(seconds: f64) {
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
}

#[tokio::test]
async fn a_key_can_be_claimed_again_after_its_ttl() {
    let app = spawn_app().await;
    let first = app
        .acquire("short", json!({"ttl_secs": 3, "complete": true}))
        .await;
    let (status, _) = app.claim_json("short", json!({"ttl_secs": 1})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    sleep_past(3.5).await;
    let (status, body) = app.claim_json("short", json!({"ttl_secs": 1})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_ne!(body["token"], first.as_str());
    assert_eq!(body["takeover"], false, "a new window is not a takeover");
    let (status, _) = app.get("short").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_the_old_token_fenced_out() {
    let app = spawn_app().await;
    let (_, first) = app
        .claim_json("crashy", json!({"ttl_secs": 120, "lease_secs": 1}))
        .await;
    let old_token = first["token"].as_str().unwrap().to_owned();
    sleep_past(1.3).await;

    let (status, second) = app.claim_json("crashy", json!({"lease_secs": 30})).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["takeover"], true);
    assert_ne!(second["token"], old_token.as_str());
    assert_eq!(
        second["expires_at"], first["expires_at"],
        "the retention window counts from the first claim"
    );

    // The crashed worker wakes up: every transition with its token is refused.
    let (status, body) = app.complete("crashy", &old_token, json!("late")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["outcome"], "not_owner");
    let (status, _) = app.release("crashy", &old_token).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app.extend("crashy", &old_token, 10).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The new owner completes; the late result never landed.
    let new_token = second["token"].as_str().unwrap();
    let (status, body) = app.complete("crashy", new_token, json!("on time")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, view) = app.get("crashy").await;
    assert_eq!(view["result"], "on time");
}

#[tokio::test]
async fn a_token_whose_lease_passed_untaken_may_still_complete() {
    let app = spawn_app().await;
    let token = app
        .acquire("late-but-alone", json!({"lease_secs": 1}))
        .await;
    sleep_past(1.3).await;
    let (status, body) = app.complete("late-but-alone", &token, json!(1)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "fencing is by token, not by clock: {body}"
    );
}

#[tokio::test]
async fn the_same_claimant_after_its_lease_gets_a_fresh_lease_by_takeover() {
    let app = spawn_app().await;
    let token = app
        .acquire("pod-restart", json!({"lease_secs": 1, "claimant": "pod-a"}))
        .await;
    sleep_past(1.3).await;
    let (status, body) = app
        .claim_json("pod-restart", json!({"claimant": "pod-a"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["takeover"], true);
    assert_ne!(body["token"], token.as_str());
}

/// Writes a claim row directly, with an LWT as the service does.
async fn plant_row(app: &TestApp, key: &str, cql_set: &str, values: Vec<scylla::value::CqlValue>) {
    let session = dedupd_test_support::test_session().await;
    let statement = format!(
        "INSERT INTO {TEST_KEYSPACE}.claims (namespace, key{cql_set}) IF NOT EXISTS USING TTL 600"
    );
    let mut bound = vec![
        scylla::value::CqlValue::Text(app.namespace.clone()),
        scylla::value::CqlValue::Text(key.to_owned()),
    ];
    bound.extend(values);
    session
        .query_unpaged(statement, bound)
        .await
        .expect("plant row");
}

#[tokio::test]
async fn a_row_whose_cells_expired_before_its_marker_is_claimable() {
    // TTLs are whole seconds and clocks differ, so a row's marker can outlive
    // its cells by a moment: the row exists for IF NOT EXISTS but holds no
    // owner. The claim must replace it (IF owner = null), not fail on it.
    let app = spawn_app().await;
    plant_row(&app, "hollow", ") VALUES (?, ?", vec![]).await;
    let (status, body) = app.claim_json("hollow", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = app.claim_json("hollow", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_row_past_its_expiry_that_ttl_has_not_removed_is_a_new_window() {
    use scylla::value::{CqlTimestamp, CqlValue};
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp_millis();
    plant_row(
        &app,
        "stale",
        ", owner, state, claimed_at, expires_at, result) VALUES (?, ?, ?, ?, ?, ?, ?",
        vec![
            CqlValue::Uuid(uuid::Uuid::new_v4()),
            CqlValue::Text("completed".into()),
            CqlValue::Timestamp(CqlTimestamp(now - 60_000)),
            CqlValue::Timestamp(CqlTimestamp(now - 1_000)),
            CqlValue::Text("\"old\"".into()),
        ],
    )
    .await;
    let (status, _) = app.get("stale").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "expired is absent");
    let (status, body) = app.claim_json("stale", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["takeover"], false);
    let (_, view) = app.get("stale").await;
    assert!(
        view["result"].is_null(),
        "nothing of the old window survives: {view}"
    );
}

/// The store's takeover, driven directly with a decision made from a view
/// that has gone stale: what a claimant does when the owner acts between
/// its read and its write.
async fn stale_takeover(app: &TestApp, key: &str, owner: &str) -> dedupd::domain::CasOutcome {
    use dedupd::domain::{ClaimKey, ClaimRecord, ClaimToken, Namespace, Retention, now_millis};
    // A store of the test's own: what another dedupd instance would run.
    let store = dedupd_test_support::test_store().await;
    let namespace = Namespace::parse(&app.namespace).unwrap();
    let key = ClaimKey::parse(key).unwrap();
    let now = now_millis();
    let record = ClaimRecord::new_window(
        ClaimToken::generate(),
        now,
        Retention {
            ttl_secs: 60,
            lease_secs: Some(30),
        },
        false,
        None,
        Some("late-taker".into()),
    );
    store
        .take_over_claim(
            &namespace,
            &key,
            &record,
            60,
            ClaimToken::parse(owner).unwrap(),
            now,
        )
        .await
        .expect("the takeover runs")
}

#[tokio::test]
async fn a_takeover_decided_before_a_completion_does_not_overwrite_it() {
    // Found by the fault checker: the takeover used to be conditional on the
    // owner token only, which a completion keeps, so a takeover decided
    // just before the owner completed overwrote the completed claim and the
    // work ran twice.
    let app = spawn_app().await;
    let owner = app.acquire("race", json!({"lease_secs": 1})).await;
    sleep_past(1.3).await;
    let (status, _) = app.complete("race", &owner, json!("done once")).await;
    assert_eq!(status, StatusCode::OK);
    let outcome = stale_takeover(&app, "race", &owner).await;
    assert!(
        matches!(outcome, dedupd::domain::CasOutcome::NotApplied(_)),
        "{outcome:?}"
    );
    let (_, view) = app.get("race").await;
    assert_eq!(view["state"], "completed");
    assert_eq!(view["result"], "done once");
}

#[tokio::test]
async fn a_takeover_decided_before_an_extension_does_not_apply() {
    let app = spawn_app().await;
    let owner = app.acquire("extended", json!({"lease_secs": 1})).await;
    sleep_past(1.3).await;
    let (status, _) = app.extend("extended", &owner, 30).await;
    assert_eq!(status, StatusCode::OK);
    let outcome = stale_takeover(&app, "extended", &owner).await;
    assert!(
        matches!(outcome, dedupd::domain::CasOutcome::NotApplied(_)),
        "{outcome:?}"
    );
    let (status, _) = app.complete("extended", &owner, json!(1)).await;
    assert_eq!(status, StatusCode::OK, "the extended owner keeps its claim");
}
