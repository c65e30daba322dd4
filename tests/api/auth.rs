//! Who may claim: bearer tokens mapped to namespaces.

use dedupd::http::auth::{Auth, AuthFile, TokenFile, hash_token};
use reqwest::StatusCode;

use dedupd_test_support::{TestApp, TestOptions, spawn_app_with, unique_namespace};

async fn spawn_with_auth(protect_metrics: bool) -> (TestApp, String) {
    let allowed = unique_namespace();
    let auth = Auth::from_file(&AuthFile {
        protect_metrics,
        protect_health: false,
        tokens: vec![
            TokenFile {
                name: "orders-consumer".into(),
                sha256: hash_token("token-for-orders"),
                namespaces: vec![allowed.clone()],
                admin: false,
            },
            TokenFile {
                name: "operator".into(),
                sha256: hash_token("token-for-everything"),
                namespaces: vec!["*".into()],
                admin: false,
            },
        ],
    })
    .unwrap();
    let mut app = spawn_app_with(TestOptions {
        auth,
        ..TestOptions::default()
    })
    .await;
    app.namespace = allowed.clone();
    (app, allowed)
}

async fn claim_with(app: &TestApp, namespace: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/namespaces/{namespace}/claims/k")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn requests_need_a_valid_token_for_their_namespace() {
    let (app, allowed) = spawn_with_auth(false).await;

    let missing = claim_with(&app, &allowed, None).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"dedupd\""
    );
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );

    let wrong = claim_with(&app, &allowed, Some("not-a-token")).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let other = claim_with(&app, "someone-else", Some("token-for-orders")).await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = other.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("orders-consumer"));
    assert!(
        !body.to_string().contains("token-for-orders"),
        "never echo the token"
    );

    let granted = claim_with(&app, &allowed, Some("token-for-orders")).await;
    assert_eq!(granted.status(), StatusCode::CREATED);
    let operator = claim_with(&app, "someone-else", Some("token-for-everything")).await;
    assert_eq!(operator.status(), StatusCode::CREATED);

    // Sequences and batches are guarded the same way.
    let sequence = app
        .client
        .post(app.url("/v1/namespaces/someone-else/sequences/s"))
        .bearer_auth("token-for-orders")
        .json(&serde_json::json!({"seq": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(sequence.status(), StatusCode::FORBIDDEN);
    let batch = app
        .client
        .post(app.url(&format!("/v1/namespaces/{allowed}/claims")))
        .json(&serde_json::json!({"claims": [{"key": "b"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_refused_request_claims_nothing() {
    let (app, allowed) = spawn_with_auth(false).await;
    claim_with(&app, &allowed, Some("wrong")).await;
    let first = claim_with(&app, &allowed, Some("token-for-orders")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn metrics_need_a_token_only_when_configured() {
    let (open, _) = spawn_with_auth(false).await;
    let response = open.client.get(open.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let (guarded, _) = spawn_with_auth(true).await;
    let response = guarded
        .client
        .get(guarded.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = guarded
        .client
        .get(guarded.url("/metrics"))
        .bearer_auth("token-for-orders")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Probes stay open for Kubernetes.
    let ready = guarded
        .client
        .get(guarded.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}
