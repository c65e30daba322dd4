//! The admin API and `dedupd admin`: inspect, force-release (fencing the
//! holder), forget, and refusal to anyone without an admin token.

use std::time::Duration;

use dedupd::http::auth::{Auth, AuthFile, TokenFile, hash_token};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use dedupd_test_support::{
    TestApp, TestOptions, encode, json_of, metric_value, spawn_app_with, unique_namespace,
};

const USER_TOKEN: &str = "user-token-orders";
const ADMIN_TOKEN: &str = "admin-token-orders";
const OTHER_ADMIN_TOKEN: &str = "admin-token-elsewhere";

/// Auth with a user token and an admin token for `namespace`, and an admin
/// token for another namespace only.
fn auth_for(namespace: &str, with_admins: bool) -> Auth {
    let token = |name: &str, secret: &str, namespace: &str, admin: bool| TokenFile {
        name: name.into(),
        sha256: hash_token(secret),
        namespaces: vec![namespace.into()],
        admin,
    };
    let mut tokens = vec![token("orders-svc", USER_TOKEN, namespace, false)];
    if with_admins {
        tokens.push(token("oncall", ADMIN_TOKEN, namespace, true));
        tokens.push(token("elsewhere", OTHER_ADMIN_TOKEN, "elsewhere", true));
    }
    Auth::from_file(&AuthFile {
        tokens,
        ..AuthFile::default()
    })
    .unwrap()
}

fn client_with(token: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// An app whose own client (claims, completes) sends the user token.
async fn spawn_with(namespace: &str, options: TestOptions) -> TestApp {
    let mut app = spawn_app_with(options).await;
    app.namespace = namespace.to_owned();
    app.client = client_with(USER_TOKEN);
    app
}

async fn spawn_with_admins() -> TestApp {
    let namespace = unique_namespace();
    let options = TestOptions {
        auth: auth_for(&namespace, true),
        ..TestOptions::default()
    };
    spawn_with(&namespace, options).await
}

fn admin_url(app: &TestApp, key: &str, action: Option<&str>) -> String {
    let path = format!(
        "/v1/admin/namespaces/{}/claims/{}",
        app.namespace,
        encode(key)
    );
    match action {
        Some(action) => app.url(&format!("{path}/{action}")),
        None => app.url(&path),
    }
}

async fn admin_get(app: &TestApp, token: &str, key: &str) -> (StatusCode, Value) {
    let response = client_with(token)
        .get(admin_url(app, key, None))
        .send()
        .await
        .unwrap();
    json_of(response).await
}

async fn admin_act(
    app: &TestApp,
    token: &str,
    key: &str,
    action: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = client_with(token)
        .post(admin_url(app, key, Some(action)))
        .json(&body)
        .send()
        .await
        .unwrap();
    json_of(response).await
}

#[tokio::test]
async fn inspect_shows_the_holder_and_never_the_token() {
    let app = spawn_with_admins().await;
    let key = "order/7 100% 🦀";
    let token = app
        .acquire(key, json!({"claimant": "worker-1", "lease_secs": 60}))
        .await;
    let (status, view) = admin_get(&app, ADMIN_TOKEN, key).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "in_progress");
    // The stored claimant, scoped by the token that claimed it.
    assert_eq!(view["claimant"], "orders-svc/worker-1");
    let (_, duplicate) = app.claim_json(key, json!({})).await;
    assert_eq!(view["holder"], duplicate["holder"]);
    assert_eq!(view["lease_expired"], false);
    assert!(view["lease_expires_at"].is_string());
    assert!(view["window"].is_string());
    assert!(
        !view.to_string().contains(&token),
        "the token is a credential"
    );

    let (status, problem) = admin_get(&app, ADMIN_TOKEN, "never-claimed").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
}

#[tokio::test]
async fn force_release_frees_the_key_and_fences_the_holder() {
    let app = spawn_with_admins().await;
    let key = "stuck-payment";
    let old = app.acquire(key, json!({"lease_secs": 600})).await;

    let (status, answer) = admin_act(
        &app,
        ADMIN_TOKEN,
        key,
        "force-release",
        json!({"reason": "worker evicted"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "force_released");
    assert_eq!(answer["before"]["state"], "in_progress");

    // The key is free at once: a new claim wins a new window.
    let (status, claimed) = app.claim_json(key, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{claimed}");
    assert_eq!(claimed["takeover"], false);
    let new = claimed["token"].as_str().unwrap().to_owned();
    // The old holder is fenced: its token owns nothing.
    let (status, refused) = app.complete(key, &old, json!({"paid": true})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["outcome"], "not_owner");
    let (status, _) = app.extend(key, &old, 60).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app.release(key, &old).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // The new holder is untouched.
    let (status, done) = app.complete(key, &new, json!({"paid": true})).await;
    assert_eq!(status, StatusCode::OK, "{done}");

    // Nothing to release in a completed claim, nor in an absent one; and
    // both leave the claim as it was.
    let (status, problem) = admin_act(&app, ADMIN_TOKEN, key, "force-release", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "urn:dedupd:problem:conflict");
    let (_, view) = admin_get(&app, ADMIN_TOKEN, key).await;
    assert_eq!(view["state"], "completed");
    let (status, _) = admin_act(&app, ADMIN_TOKEN, "absent", "force-release", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let metrics = client_with(USER_TOKEN)
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |outcome: &str| {
        metric_value(
            &metrics,
            &format!(
                "dedupd_admin_actions_total{{action=\"force_release\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(
        (count("done"), count("completed"), count("not_found")),
        (1.0, 1.0, 1.0)
    );
}

#[tokio::test]
async fn forget_lets_a_completed_key_be_claimed_again() {
    let app = spawn_with_admins().await;
    let key = "refunded-order";
    let token = app.acquire(key, json!({})).await;
    app.complete(key, &token, json!({"charged": 10})).await;
    // Answered from this instance's cache from now on.
    let (status, _) = app.claim_json(key, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);

    for body in [json!({}), json!({"reason": " "}), json!(null)] {
        let (status, problem) = admin_act(&app, ADMIN_TOKEN, key, "forget", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
    }
    let (status, _) = app.claim_json(key, json!({})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a refused forget changes nothing"
    );

    let (status, answer) = admin_act(
        &app,
        ADMIN_TOKEN,
        key,
        "forget",
        json!({"reason": "refund reversed, OPS-124"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "forgotten");
    assert_eq!(answer["before"]["state"], "completed");
    assert_eq!(answer["before"]["result"], json!({"charged": 10}));
    assert!(answer["heard_everywhere_within_secs"].as_u64().unwrap() > 0);

    let (status, claimed) = app.claim_json(key, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{claimed}");
    let (status, _) = admin_act(
        &app,
        ADMIN_TOKEN,
        "absent",
        "forget",
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_instance_hears_a_forget_within_its_cache_max_age() {
    let namespace = unique_namespace();
    let options = || TestOptions {
        auth: auth_for(&namespace, true),
        completed_cache_max_age: Duration::from_secs(1),
        ..TestOptions::default()
    };
    let first = spawn_with(&namespace, options()).await;
    let second = spawn_with(&namespace, options()).await;
    let key = "seen-by-both";
    let token = first.acquire(key, json!({})).await;
    first.complete(key, &token, json!(null)).await;
    // The second instance learns the completed claim and caches it.
    let (status, _) = second.claim_json(key, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, answer) = admin_act(
        &first,
        ADMIN_TOKEN,
        key,
        "forget",
        json!({"reason": "redo"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["heard_everywhere_within_secs"], 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, claimed) = second.claim_json(key, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{claimed}");
}

#[tokio::test]
async fn the_admin_api_refuses_anyone_without_an_admin_token() {
    let app = spawn_with_admins().await;
    let key = "held";
    let token = app.acquire(key, json!({"lease_secs": 600})).await;
    let calls = [
        ("get", None),
        ("force-release", Some(json!({"reason": "r"}))),
        ("forget", Some(json!({"reason": "r"}))),
    ];
    let call = async |app: &TestApp, token: Option<&str>, action: &str, body: &Option<Value>| {
        let client = match token {
            Some(token) => client_with(token),
            None => reqwest::Client::new(),
        };
        let request = match body {
            None => client.get(admin_url(app, key, None)),
            Some(body) => client.post(admin_url(app, key, Some(action))).json(body),
        };
        let response = request.send().await.unwrap();
        let content_type = response.headers()["content-type"].clone();
        let (status, problem) = json_of(response).await;
        assert_eq!(content_type, "application/problem+json");
        for secret in [USER_TOKEN, ADMIN_TOKEN, OTHER_ADMIN_TOKEN] {
            assert!(!problem.to_string().contains(secret), "{problem}");
        }
        status
    };
    for (action, body) in &calls {
        // A user token, even for this namespace.
        assert_eq!(
            call(&app, Some(USER_TOKEN), action, body).await,
            StatusCode::FORBIDDEN
        );
        // An admin token for another namespace.
        assert_eq!(
            call(&app, Some(OTHER_ADMIN_TOKEN), action, body).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&app, None, action, body).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&app, Some("made-up"), action, body).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // Nothing was done: the holder still owns its claim.
    let (status, released) = app.release(key, &token).await;
    assert_eq!(status, StatusCode::OK, "{released}");

    // No admin token configured, or no auth at all: the admin API is off,
    // whatever the request carries.
    let namespace = unique_namespace();
    let users_only = TestOptions {
        auth: auth_for(&namespace, false),
        ..TestOptions::default()
    };
    let no_admins = spawn_with(&namespace, users_only).await;
    let mut open = spawn_app_with(TestOptions::default()).await;
    open.namespace = unique_namespace();
    for app in [&no_admins, &open] {
        for (action, body) in &calls {
            for token in [None, Some(USER_TOKEN), Some(ADMIN_TOKEN)] {
                assert_eq!(
                    call(app, token, action, body).await,
                    StatusCode::FORBIDDEN,
                    "{action} with {token:?}"
                );
            }
        }
    }
}

/// Runs `dedupd admin …` against `app` with `token` in the environment.
async fn admin_command(app: &TestApp, token: &str, args: &[&str]) -> (bool, Value, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dedupd"))
        .arg("admin")
        .args(args)
        .env("DEDUPD_URL", &app.address)
        .env("DEDUPD_ADMIN_TOKEN", token)
        .env_remove("DEDUPD_ADMIN_TOKEN_FILE")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run dedupd admin");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    for secret in [USER_TOKEN, ADMIN_TOKEN] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.success(), json, stderr)
}

#[tokio::test]
async fn the_admin_command_line_inspects_releases_and_forgets() {
    let app = spawn_with_admins().await;
    let ns = app.namespace.clone();
    // Keys the command must encode: a slash, a percent sign, `?` and `#`.
    for key in ["a/b%2F 🦀", "x?y#z &"] {
        let old = app
            .acquire(key, json!({"claimant": "w", "lease_secs": 600}))
            .await;

        let (ok, view, stderr) = admin_command(&app, ADMIN_TOKEN, &["get", &ns, key]).await;
        assert!(ok, "{stderr}");
        assert_eq!(view["state"], "in_progress");
        assert_eq!(view["claimant"], "orders-svc/w");

        let (ok, _, stderr) = admin_command(&app, USER_TOKEN, &["get", &ns, key]).await;
        assert!(!ok);
        assert!(stderr.contains("403"), "{stderr}");

        let release = ["force-release", &ns, key, "--reason", "stuck"];
        let (ok, answer, stderr) = admin_command(&app, ADMIN_TOKEN, &release).await;
        assert!(ok, "{stderr}");
        assert_eq!(answer["outcome"], "force_released");
        let (status, _) = app.complete(key, &old, json!(null)).await;
        assert_ne!(status, StatusCode::OK, "the old holder is fenced");

        let new = app.acquire(key, json!({})).await;
        app.complete(key, &new, json!({"n": 1})).await;
        let (ok, _, stderr) = admin_command(&app, ADMIN_TOKEN, &release).await;
        assert!(!ok && stderr.contains("409"), "{stderr}");
        let forget = ["forget", &ns, key, "--reason", "reprocess"];
        let (ok, answer, stderr) = admin_command(&app, ADMIN_TOKEN, &forget).await;
        assert!(ok, "{stderr}");
        assert_eq!(answer["before"]["result"], json!({"n": 1}));
        let (status, _) = app.claim_json(key, json!({})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    // `forget` without a reason does not even reach the service.
    let (ok, _, stderr) = admin_command(&app, ADMIN_TOKEN, &["forget", &ns, "k"]).await;
    assert!(!ok && stderr.contains("--reason"), "{stderr}");
}
