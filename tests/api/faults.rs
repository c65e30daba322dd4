//! Unknown outcomes. The fault seam makes a statement's answer get lost
//! (after it applied) or the statement itself get lost (before it ran), the
//! two halves of a CAS timeout, against the real database. Each must be
//! resolved by a serial read into the answer an unfaulted run would give.

use dedupd::store::faults::Fault;
use dedupd::store::statement;
use reqwest::StatusCode;
use serde_json::json;

use dedupd_test_support::{metric_value, spawn_app};

/// The metric line counting unknown outcomes of `statement` resolved so.
pub fn unknown(statement: &str, resolution: &str) -> String {
    format!(
        "dedupd_unknown_outcomes_total{{statement=\"{statement}\",resolution=\"{resolution}\"}}"
    )
}

#[tokio::test]
async fn a_claim_that_applied_but_lost_its_answer_is_acquired() {
    let app = spawn_app().await;
    app.faults
        .inject(statement::INSERT, Fault::TimeoutAfterApply, 1);
    let (status, body) = app.claim_json("lost-answer", json!({})).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the winner must hear it won: {body}"
    );
    // The token handed out is the one stored: it completes.
    let token = body["token"].as_str().unwrap();
    let (status, _) = app.complete("lost-answer", token, json!(1)).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, &unknown(statement::INSERT, "ours")),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_claim_lost_before_it_ran_is_retried_and_acquired() {
    let app = spawn_app().await;
    app.faults
        .inject(statement::INSERT, Fault::TimeoutBeforeSend, 2);
    let (status, body) = app.claim_json("lost-request", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, &unknown(statement::INSERT, "absent")),
        2.0,
        "{metrics}"
    );
    let (status, _) = app.claim_json("lost-request", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_lost_claim_against_a_real_owner_is_a_duplicate() {
    let app = spawn_app().await;
    app.acquire("taken", json!({})).await;
    app.faults
        .inject(statement::INSERT, Fault::TimeoutBeforeSend, 1);
    let (status, body) = app.claim_json("taken", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, &unknown(statement::INSERT, "theirs")),
        1.0
    );
}

#[tokio::test]
async fn a_takeover_that_lost_its_answer_is_acquired_as_a_takeover() {
    let app = spawn_app().await;
    app.acquire("takeover-lost", json!({"lease_secs": 1})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    app.faults
        .inject(statement::TAKEOVER, Fault::TimeoutAfterApply, 1);
    let (status, body) = app.claim_json("takeover-lost", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["takeover"], true);
    let (status, _) = app
        .complete("takeover-lost", body["token"].as_str().unwrap(), json!(1))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn when_even_the_serial_read_fails_the_answer_is_503_never_a_guess() {
    let app = spawn_app().await;
    app.faults
        .inject(statement::INSERT, Fault::TimeoutAfterApply, 1);
    app.faults
        .inject(statement::READ_SERIAL, Fault::TimeoutBeforeSend, 100);
    let response = app.claim("undecided", json!({"claimant": "pod-a"})).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, &unknown(statement::INSERT, "unresolved")),
        1.0
    );

    // The claim did land. Retrying with the same claimant recovers it: the
    // caller that really won gets its token, instead of hearing "duplicate".
    app.faults.clear();
    let (status, body) = app
        .claim_json("undecided", json!({"claimant": "pod-a"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = app
        .claim_json("undecided", json!({"claimant": "pod-b"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_completion_that_lost_its_answer_is_completed() {
    let app = spawn_app().await;
    let token = app.acquire("complete-lost", json!({})).await;
    app.faults
        .inject(statement::COMPLETE, Fault::TimeoutAfterApply, 1);
    let (status, body) = app.complete("complete-lost", &token, json!("r")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], "r");
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, &unknown(statement::COMPLETE, "ours")),
        1.0
    );
}

#[tokio::test]
async fn a_completion_lost_before_it_ran_is_retried() {
    let app = spawn_app().await;
    let token = app.acquire("complete-unsent", json!({})).await;
    app.faults
        .inject(statement::COMPLETE, Fault::TimeoutBeforeSend, 1);
    let (status, body) = app.complete("complete-unsent", &token, json!("r")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, view) = app.get("complete-unsent").await;
    assert_eq!(view["state"], "completed");
    assert_eq!(view["result"], "r");
}

#[tokio::test]
async fn a_release_that_lost_its_answer_is_released() {
    let app = spawn_app().await;
    let token = app.acquire("release-lost", json!({})).await;
    app.faults
        .inject(statement::RELEASE, Fault::TimeoutAfterApply, 1);
    let (status, body) = app.release("release-lost", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.claim_json("release-lost", json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_release_lost_before_it_ran_is_retried() {
    let app = spawn_app().await;
    let token = app.acquire("release-unsent", json!({})).await;
    app.faults
        .inject(statement::RELEASE, Fault::TimeoutBeforeSend, 1);
    let (status, body) = app.release("release-unsent", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.claim_json("release-unsent", json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn an_extension_that_lost_its_answer_is_extended() {
    let app = spawn_app().await;
    let token = app.acquire("extend-lost", json!({"lease_secs": 5})).await;
    app.faults
        .inject(statement::EXTEND, Fault::TimeoutAfterApply, 1);
    let (status, body) = app.extend("extend-lost", &token, 100).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, duplicate) = app.claim_json("extend-lost", json!({})).await;
    assert_eq!(duplicate["lease_expires_at"], body["lease_expires_at"]);
}

/// Found by a fault run: a release whose token held nothing used to count
/// an absent row after a lost answer as its own release (200). Without
/// the fault it is 404 (already released) or 409 (fenced by a takeover),
/// and a faulted call must give the same answer.
#[tokio::test]
async fn a_lost_answer_to_a_release_that_held_nothing_is_what_it_would_have_been() {
    let app = spawn_app().await;
    // Already released.
    let token = app.acquire("released-twice", json!({})).await;
    let (status, _) = app.release("released-twice", &token).await;
    assert_eq!(status, StatusCode::OK);
    app.faults
        .inject(statement::RELEASE, Fault::TimeoutAfterApply, 1);
    let (status, body) = app.release("released-twice", &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Fenced by a takeover that still holds the key.
    let fenced = app.acquire("fenced", json!({"lease_secs": 1})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let (status, body) = app.claim_json("fenced", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["takeover"], true);
    app.faults
        .inject(statement::RELEASE, Fault::TimeoutAfterApply, 1);
    let (status, body) = app.release("fenced", &fenced).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["outcome"], "not_owner");
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, &unknown(statement::RELEASE, "absent")),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, &unknown(statement::RELEASE, "theirs")),
        1.0,
        "{metrics}"
    );
}
