//! Owner tokens go only to their owner: a claimant or offerer id that one
//! caller learns from an answer (or guesses) gets another caller nothing.

use dedupd::domain::holder_label;
use dedupd::http::auth::{Auth, AuthFile, TokenFile, hash_token};
use reqwest::StatusCode;
use serde_json::{Value, json};

use dedupd_test_support::{TestApp, TestOptions, json_of, spawn_app, spawn_app_with};

/// Two services allowed in the same namespace, each with its own token.
const FIRST: &str = "token-of-service-a";
const SECOND: &str = "token-of-service-b";

async fn spawn_two_principals() -> TestApp {
    let auth = Auth::from_file(&AuthFile {
        protect_metrics: false,
        protect_health: false,
        tokens: vec![
            TokenFile {
                name: "service-a".into(),
                sha256: hash_token(FIRST),
                namespaces: vec!["*".into()],
                admin: false,
            },
            TokenFile {
                name: "service-b".into(),
                sha256: hash_token(SECOND),
                namespaces: vec!["*".into()],
                admin: false,
            },
        ],
    })
    .unwrap();
    spawn_app_with(TestOptions {
        auth,
        ..TestOptions::default()
    })
    .await
}

async fn post_as(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    json_of(response).await
}

fn claim_path(app: &TestApp, key: &str) -> String {
    format!("/v1/namespaces/{}/claims/{key}", app.namespace)
}

#[tokio::test]
async fn answers_show_a_holder_label_never_the_claimant() {
    let app = spawn_app().await;
    let claimant = "worker-7f3a";
    let token = app.acquire("held", json!({ "claimant": claimant })).await;

    let (status, duplicate) = app.claim_json("held", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(duplicate["holder"], holder_label(claimant));
    let (status, read) = app.get("held").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["holder"], holder_label(claimant));
    let (_, batch) = app
        .claim_batch(json!({ "claims": [{ "key": "held" }] }))
        .await;
    assert_eq!(batch["results"][0]["holder"], holder_label(claimant));
    for answer in [&duplicate, &read, &batch] {
        let text = answer.to_string();
        assert!(!text.contains(claimant), "the claimant leaked: {text}");
        assert!(!text.contains(&token), "the token leaked: {text}");
        assert!(answer.get("claimant").is_none(), "{text}");
    }
}

#[tokio::test]
async fn a_claimant_learned_by_another_token_yields_no_owner_token() {
    let app = spawn_two_principals().await;
    let path = claim_path(&app, "order-1");
    let (status, first) = post_as(&app, FIRST, &path, json!({ "claimant": "worker-1" })).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let owner_token = first["token"].as_str().unwrap().to_owned();

    // Service B sends A's claimant id: another claimant, no token.
    let (status, stolen) = post_as(&app, SECOND, &path, json!({ "claimant": "worker-1" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{stolen}");
    assert!(stolen.get("token").is_none(), "{stolen}");
    assert!(!stolen.to_string().contains(&owner_token));
    let batch_path = format!("/v1/namespaces/{}/claims", app.namespace);
    let (_, batch) = post_as(
        &app,
        SECOND,
        &batch_path,
        json!({ "claims": [{ "key": "order-1" }], "claimant": "worker-1" }),
    )
    .await;
    assert_eq!(batch["results"][0]["status"], 409, "{batch}");
    assert!(!batch.to_string().contains(&owner_token), "{batch}");

    // The real claimant still gets its token back.
    let (status, again) = post_as(&app, FIRST, &path, json!({ "claimant": "worker-1" })).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["token"], owner_token.as_str());
}

#[tokio::test]
async fn an_offerer_learned_by_another_token_is_not_told_accepted() {
    let app = spawn_two_principals().await;
    let path = format!("/v1/namespaces/{}/sequences/payments", app.namespace);
    let offer = json!({ "seq": 1, "offerer": "consumer-1" });
    let (status, body) = post_as(&app, FIRST, &path, offer.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = post_as(&app, SECOND, &path, offer.clone()).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "another token's offer: {body}"
    );
    assert_eq!(body["outcome"], "duplicate");
    let (status, body) = post_as(&app, FIRST, &path, offer).await;
    assert_eq!(status, StatusCode::OK, "the offerer itself, again: {body}");
    assert_eq!(body["outcome"], "accepted");
}
