//! Races: many claimants, one key.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use dedupd_test_support::{json_of, spawn_app};

#[tokio::test]
async fn sixty_four_concurrent_claims_of_one_key_give_exactly_one_winner() {
    let app = spawn_app().await;
    let attempts = (0..64).map(|i| {
        let client = app.client.clone();
        let url = app.claim_url("hot-key");
        async move {
            let response = client
                .post(url)
                .json(&json!({"claimant": format!("worker-{i}")}))
                .send()
                .await
                .expect("claim");
            json_of(response).await
        }
    });
    let answers = join_all(attempts).await;
    let winners: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .collect();
    let duplicates = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CONFLICT)
        .count();
    let others: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status != StatusCode::CREATED && *status != StatusCode::CONFLICT)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {answers:?}");
    assert!(others.is_empty(), "only 201 and 409: {others:?}");
    assert_eq!(duplicates, 63);

    // And the store agrees with the answer: the winner's token completes.
    let token = winners[0].1["token"].as_str().unwrap();
    let (status, body) = app.complete("hot-key", token, json!("won")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn concurrent_takeovers_of_an_expired_lease_give_one_new_owner() {
    let app = spawn_app().await;
    app.acquire("contended-takeover", json!({"lease_secs": 1}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let attempts = (0..16).map(|_| app.claim_json("contended-takeover", json!({})));
    let answers = join_all(attempts).await;
    let winners: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert_eq!(winners[0].1["takeover"], true);
    assert!(
        answers
            .iter()
            .all(|(status, _)| *status == StatusCode::CREATED || *status == StatusCode::CONFLICT),
        "{answers:?}"
    );
}

#[tokio::test]
async fn concurrent_claims_of_distinct_keys_all_win() {
    let app = spawn_app().await;
    let attempts = (0..32).map(|i| app.claim_json_owned(format!("distinct-{i}")));
    let answers = join_all(attempts).await;
    assert!(
        answers
            .iter()
            .all(|(status, _)| *status == StatusCode::CREATED),
        "{answers:?}"
    );
}
