//! Every outcome of claim, complete, release, extend and get.

use reqwest::StatusCode;
use serde_json::json;

use dedupd_test_support::spawn_app;

#[tokio::test]
async fn a_first_claim_acquires_with_a_token_and_a_lease() {
    let app = spawn_app().await;
    let (status, body) = app
        .claim_json("order-1", json!({"ttl_secs": 600, "lease_secs": 20}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["outcome"], "acquired");
    assert_eq!(body["state"], "in_progress");
    assert_eq!(body["takeover"], false);
    assert!(uuid::Uuid::parse_str(body["token"].as_str().unwrap()).is_ok());
    let expires_at = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap())
        .expect("expires_at is RFC 3339");
    let lease_end =
        chrono::DateTime::parse_from_rfc3339(body["lease_expires_at"].as_str().unwrap())
            .expect("lease_expires_at is RFC 3339");
    assert_eq!((expires_at - lease_end).num_seconds(), 580);
}

#[tokio::test]
async fn the_body_may_be_absent_empty_or_an_empty_object() {
    let app = spawn_app().await;
    let absent = app
        .client
        .post(app.claim_url("k-absent"))
        .send()
        .await
        .unwrap();
    assert_eq!(absent.status(), StatusCode::CREATED);
    let empty = app
        .client
        .post(app.claim_url("k-empty"))
        .header("content-type", "application/json")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::CREATED);
    let null = app
        .client
        .post(app.claim_url("k-null"))
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(null.status(), StatusCode::CREATED, "null is no options");
    let whole = app.claim_json("k-whole", json!({"ttl_secs": 60.0})).await;
    assert_eq!(
        whole.0,
        StatusCode::CREATED,
        "60.0 is the integer 60: {}",
        whole.1
    );
    let (status, body) = app.claim_json("k-object", json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    // Defaults: 24 h retention, 30 s lease.
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let lease_end =
        chrono::DateTime::parse_from_rfc3339(body["lease_expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires_at - lease_end).num_seconds(), 86_400 - 30);
}

#[tokio::test]
async fn a_second_claim_in_progress_is_a_duplicate_with_retry_after() {
    let app = spawn_app().await;
    app.acquire("dup", json!({"lease_secs": 40})).await;
    let response = app.claim("dup", json!({})).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=40).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["outcome"], "duplicate");
    assert_eq!(body["state"], "in_progress");
    assert!(body["lease_expires_at"].is_string());
    assert!(
        body.get("token").is_none(),
        "a duplicate never sees the token"
    );
    assert!(body.get("result").is_none());
}

#[tokio::test]
async fn complete_stores_the_result_and_duplicates_replay_it() {
    let app = spawn_app().await;
    let token = app.acquire("pay-7", json!({})).await;
    let (status, body) = app
        .complete("pay-7", &token, json!({"charge": "ch_1", "amount": 42}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "completed");
    assert_eq!(body["state"], "completed");
    assert!(body["completed_at"].is_string());

    let response = app.claim("pay-7", json!({})).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(
        response.headers().get("retry-after").is_none(),
        "completed work is not worth retrying"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["outcome"], "duplicate");
    assert_eq!(body["state"], "completed");
    assert_eq!(body["result"], json!({"charge": "ch_1", "amount": 42}));
    assert!(body["completed_at"].is_string());
    assert!(body.get("lease_expires_at").is_none());
}

#[tokio::test]
async fn completing_twice_with_the_same_token_is_ok_and_keeps_the_first_result() {
    let app = spawn_app().await;
    let token = app.acquire("twice", json!({})).await;
    let (first, _) = app.complete("twice", &token, json!(1)).await;
    assert_eq!(first, StatusCode::OK);
    let (second, body) = app.complete("twice", &token, json!(2)).await;
    assert_eq!(second, StatusCode::OK, "{body}");
    assert_eq!(body["result"], json!(1));
}

#[tokio::test]
async fn a_completed_claim_without_a_result_replays_null() {
    let app = spawn_app().await;
    let token = app.acquire("no-result", json!({})).await;
    let (status, _) = app
        .action("no-result", "complete", json!({"token": token}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.claim_json("no-result", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["result"].is_null());
    assert!(body.as_object().unwrap().contains_key("result"));
}

#[tokio::test]
async fn complete_with_a_foreign_token_is_not_owner_and_changes_nothing() {
    let app = spawn_app().await;
    app.acquire("guarded", json!({})).await;
    let stranger = uuid::Uuid::new_v4().to_string();
    let (status, body) = app.complete("guarded", &stranger, json!("x")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["outcome"], "not_owner");
    let (_, view) = app.get("guarded").await;
    assert_eq!(view["state"], "in_progress");
}

#[tokio::test]
async fn transitions_on_an_unclaimed_key_are_not_found() {
    let app = spawn_app().await;
    let token = uuid::Uuid::new_v4().to_string();
    for (action, body) in [
        ("complete", json!({"token": token})),
        ("release", json!({"token": token})),
        ("extend", json!({"token": token, "lease_secs": 5})),
    ] {
        let (status, problem) = app.action("never", action, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}: {problem}");
        assert_eq!(problem["status"], 404);
    }
    let (status, _) = app.get("never").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn release_frees_the_key_at_once() {
    let app = spawn_app().await;
    let token = app.acquire("retry-me", json!({})).await;
    let (status, body) = app.release("retry-me", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "released");
    let second = app.acquire("retry-me", json!({})).await;
    assert_ne!(second, token);
    // The released token is fenced out of the new claim.
    let (status, body) = app.complete("retry-me", &token, json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["outcome"], "not_owner");
}

#[tokio::test]
async fn release_with_a_foreign_token_is_refused() {
    let app = spawn_app().await;
    app.acquire("mine", json!({})).await;
    let (status, body) = app.release("mine", &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["outcome"], "not_owner");
    let (status, _) = app.claim_json("mine", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "the claim must survive");
}

#[tokio::test]
async fn a_completed_claim_cannot_be_released_or_extended() {
    let app = spawn_app().await;
    let token = app.acquire("done", json!({})).await;
    app.complete("done", &token, json!("ok")).await;
    let (status, body) = app.release("done", &token).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["outcome"], "already_completed");
    let (status, body) = app.extend("done", &token, 10).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["outcome"], "already_completed");
    let (status, body) = app.claim_json("done", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["result"], "ok");
}

#[tokio::test]
async fn extend_moves_the_lease_but_never_past_the_expiry() {
    let app = spawn_app().await;
    let (_, claimed) = app
        .claim_json("slow", json!({"ttl_secs": 120, "lease_secs": 5}))
        .await;
    let token = claimed["token"].as_str().unwrap();
    let (status, body) = app.extend("slow", token, 60).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "extended");
    let old_lease =
        chrono::DateTime::parse_from_rfc3339(claimed["lease_expires_at"].as_str().unwrap())
            .unwrap();
    let new_lease =
        chrono::DateTime::parse_from_rfc3339(body["lease_expires_at"].as_str().unwrap()).unwrap();
    assert!(new_lease - old_lease >= chrono::Duration::seconds(50));

    let (status, body) = app.extend("slow", token, 10_000).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["lease_expires_at"], claimed["expires_at"]);

    let (_, duplicate) = app.claim_json("slow", json!({})).await;
    assert_eq!(duplicate["lease_expires_at"], claimed["expires_at"]);
}

#[tokio::test]
async fn extend_with_a_foreign_token_is_refused() {
    let app = spawn_app().await;
    app.acquire("ext", json!({})).await;
    let (status, body) = app
        .extend("ext", &uuid::Uuid::new_v4().to_string(), 10)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["outcome"], "not_owner");
}

#[tokio::test]
async fn get_shows_state_and_times_but_never_the_token() {
    let app = spawn_app().await;
    let token = app
        .acquire(
            "seen",
            json!({"fingerprint": "sha256:abc", "claimant": "worker-1"}),
        )
        .await;
    let (status, body) = app.get("seen").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "in_progress");
    assert_eq!(body["fingerprint"], "sha256:abc");
    // The holder's label, not its claimant: a claimant id hands back the
    // owner token of its in-progress claim.
    assert_eq!(body["holder"], dedupd::domain::holder_label("worker-1"));
    assert!(!body.to_string().contains("worker-1"), "{body}");
    assert!(body["claimed_at"].is_string());
    assert!(!body.to_string().contains(&token));
}

#[tokio::test]
async fn complete_at_once_is_a_one_shot_marker() {
    let app = spawn_app().await;
    let (status, body) = app.claim_json("marker", json!({"complete": true})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "completed");
    assert!(body["lease_expires_at"].is_null());
    let (status, body) = app.claim_json("marker", json!({"complete": true})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["state"], "completed");
}

#[tokio::test]
async fn a_different_fingerprint_is_unprocessable() {
    let app = spawn_app().await;
    app.acquire("fp", json!({"fingerprint": "sha256:aaa"}))
        .await;
    let response = app.claim("fp", json!({"fingerprint": "sha256:bbb"})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    // The same fingerprint, or none, is an ordinary duplicate.
    let (status, _) = app
        .claim_json("fp", json!({"fingerprint": "sha256:aaa"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app.claim_json("fp", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_different_fingerprint_on_a_completed_key_is_unprocessable_too() {
    let app = spawn_app().await;
    let token = app.acquire("fp-done", json!({"fingerprint": "v1"})).await;
    app.complete("fp-done", &token, json!(null)).await;
    let (status, _) = app
        .claim_json("fp-done", json!({"fingerprint": "v2"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_same_claimant_gets_its_own_token_back() {
    let app = spawn_app().await;
    let token = app.acquire("reentrant", json!({"claimant": "pod-a"})).await;
    let (status, body) = app
        .claim_json("reentrant", json!({"claimant": "pod-a"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["token"], token.as_str());
    assert_eq!(body["takeover"], false);
    let (status, body) = app
        .claim_json("reentrant", json!({"claimant": "pod-b"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = app.claim_json("reentrant", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_completed_claim_is_a_duplicate_even_for_its_own_claimant() {
    let app = spawn_app().await;
    let token = app.acquire("own-done", json!({"claimant": "pod-a"})).await;
    app.complete("own-done", &token, json!(7)).await;
    let (status, body) = app
        .claim_json("own-done", json!({"claimant": "pod-a"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["result"], 7);
}

#[tokio::test]
async fn a_markers_claimant_whose_answer_was_lost_hears_201_again() {
    let app = spawn_app().await;
    let marker = json!({"complete": true, "claimant": "delivery-41"});
    let (status, first) = app.claim_json("marker-lost", marker.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    // The same call again, as a client does when the first answer was lost:
    // the answer it would have had, with the same token.
    let (status, again) = app.claim_json("marker-lost", marker).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["token"], first["token"]);
    assert_eq!(again["state"], "completed");
    // Anyone else, or a claim that is not a marker, hears the duplicate.
    for other in [
        json!({"complete": true, "claimant": "delivery-42"}),
        json!({"complete": true}),
        json!({"claimant": "delivery-41"}),
    ] {
        let (status, body) = app.claim_json("marker-lost", other.clone()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{other}: {body}");
    }
}

#[tokio::test]
async fn keys_are_utf8_and_may_hold_slashes_and_spaces() {
    let app = spawn_app().await;
    for key in [
        "a/b/c",
        "with space",
        "ünïcødé-€",
        "x?y#z",
        &"k".repeat(512),
    ] {
        let (status, body) = app.claim_json(key, json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{key}: {body}");
        let (status, _) = app.claim_json(key, json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{key}");
    }
}

#[tokio::test]
async fn namespaces_keep_keys_apart() {
    let app = spawn_app().await;
    app.acquire("shared-id", json!({})).await;
    let other = format!("{}-other", app.namespace);
    let response = app
        .client
        .post(app.url(&format!("/v1/namespaces/{other}/claims/shared-id")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}
