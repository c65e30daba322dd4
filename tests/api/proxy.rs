//! `dedupd proxy` in front of a real upstream: a small HTTP app started by
//! each test, which counts how often each request reached it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as UpstreamStatus};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dedupd::proxy::ProxyConfig;
use dedupd::proxy::config::{OversizePolicy, ProtectedRoute, ScopeSource, StoreFailurePolicy};
use dedupd::store::faults::Fault;
use dedupd::store::statement;
use reqwest::StatusCode;
use serde_json::{Value, json};

use dedupd_test_support::{TestApp, TestOptions, metric_value, spawn_app_with};

const DRAFT: &str =
    "https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-idempotency-key-header-07";

/// How often each request reached the upstream, by `METHOD path key`.
#[derive(Clone, Default)]
struct Hits(Arc<Mutex<HashMap<String, usize>>>);

impl Hits {
    fn count(&self, headers: &HeaderMap, what: &str) -> usize {
        let key = headers
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-");
        let mut hits = self.0.lock().unwrap();
        let count = hits.entry(format!("{what} {key}")).or_default();
        *count += 1;
        *count
    }

    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
}

async fn pay(State(hits): State<Hits>, headers: HeaderMap, body: String) -> Response {
    let order = hits.count(&headers, "pay");
    let principal = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned();
    (
        UpstreamStatus::CREATED,
        [
            ("content-type", "application/json"),
            ("location", "/orders/7"),
            ("set-cookie", "session=upstream-secret"),
            ("x-internal", "not-for-replay"),
        ],
        json!({"order": order, "charged": body, "by": principal}).to_string(),
    )
        .into_response()
}

async fn slow(State(hits): State<Hits>, headers: HeaderMap) -> Response {
    let order = hits.count(&headers, "slow");
    tokio::time::sleep(Duration::from_millis(800)).await;
    (UpstreamStatus::CREATED, format!("slow order {order}")).into_response()
}

async fn hang(State(hits): State<Hits>, headers: HeaderMap) -> Response {
    hits.count(&headers, "hang");
    tokio::time::sleep(Duration::from_secs(3)).await;
    (UpstreamStatus::CREATED, "too late").into_response()
}

async fn status(State(hits): State<Hits>, Path(code): Path<u16>, headers: HeaderMap) -> Response {
    hits.count(&headers, "status");
    UpstreamStatus::from_u16(code).unwrap().into_response()
}

async fn big(State(hits): State<Hits>, headers: HeaderMap) -> Response {
    hits.count(&headers, "big");
    (UpstreamStatus::OK, "x".repeat(4096)).into_response()
}

async fn look(State(hits): State<Hits>, headers: HeaderMap) -> Response {
    let count = hits.count(&headers, "look");
    format!("looked {count} times").into_response()
}

/// The upstream: its address and its hit counts.
async fn spawn_upstream() -> (String, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route("/pay", post(pay))
        .route("/pay/{*rest}", post(pay))
        .route("/slow", post(slow))
        .route("/hang", post(hang))
        .route("/status/{code}", post(status))
        .route("/big", post(big))
        .route("/look", get(look).post(look))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, hits)
}

/// A proxy in front of a fresh upstream, `configure`d from the defaults.
async fn spawn_proxy(configure: impl FnOnce(&mut ProxyConfig)) -> (TestApp, Hits) {
    spawn_proxy_with(TestOptions::default(), configure).await
}

async fn spawn_proxy_with(
    options: TestOptions,
    configure: impl FnOnce(&mut ProxyConfig),
) -> (TestApp, Hits) {
    let (upstream, hits) = spawn_upstream().await;
    let mut config = ProxyConfig::for_upstream(&upstream).unwrap();
    // Each test its own namespace: keys of one never meet another's.
    config.namespace =
        dedupd::domain::Namespace::parse(&dedupd_test_support::unique_namespace()).unwrap();
    configure(&mut config);
    let app = spawn_app_with(TestOptions {
        proxy: Some(config),
        ..options
    })
    .await;
    (app, hits)
}

async fn send_keyed(app: &TestApp, path: &str, key: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("idempotency-key", key)
        .body(body.to_owned())
        .send()
        .await
        .expect("proxied request")
}

/// A keyed POST that may wait up to `wait_secs` for the key's first request
/// to finish (`Prefer: wait`).
async fn send_waiting(app: &TestApp, path: &str, key: &str, wait_secs: u32) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("idempotency-key", key)
        .header("prefer", format!("wait={wait_secs}"))
        .send()
        .await
        .expect("proxied request")
}

async fn problem(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    (status, response.json().await.expect("a problem document"))
}

fn replayed(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|value| value == "true")
}

async fn proxy_outcome(app: &TestApp, outcome: &str) -> f64 {
    metric_value(
        &app.metrics().await,
        &format!("dedupd_proxy_requests_total{{outcome=\"{outcome}\"}}"),
    )
}

#[tokio::test]
async fn the_first_request_is_forwarded_and_a_retry_gets_its_stored_response() {
    let (app, hits) = spawn_proxy(|_| {}).await;
    let first = send_keyed(&app, "/pay", "\"order-1\"", r#"{"amount":5}"#).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(!replayed(&first));
    assert_eq!(first.headers()["set-cookie"], "session=upstream-secret");
    let first_body = first.text().await.unwrap();

    // The bare value names the same key as the quoted one.
    let retry = send_keyed(&app, "/pay", "order-1", r#"{"amount":5}"#).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(replayed(&retry));
    assert_eq!(retry.headers()["location"], "/orders/7");
    assert_eq!(retry.headers()["content-type"], "application/json");
    assert!(
        retry.headers().get("set-cookie").is_none(),
        "Set-Cookie is never replayed unless configured"
    );
    assert!(retry.headers().get("x-internal").is_none());
    assert_eq!(retry.text().await.unwrap(), first_body);
    assert_eq!(hits.total(), 1, "the retry never reached the upstream");

    let other = send_keyed(&app, "/pay", "order-2", r#"{"amount":5}"#).await;
    assert!(!replayed(&other));
    assert_eq!(hits.total(), 2);
    assert_eq!(proxy_outcome(&app, "stored").await, 2.0);
    assert_eq!(proxy_outcome(&app, "replayed").await, 1.0);
}

#[tokio::test]
async fn the_same_key_with_another_payload_is_422_and_never_forwarded() {
    let (app, hits) = spawn_proxy(|_| {}).await;
    send_keyed(&app, "/pay", "k", r#"{"amount":5}"#).await;
    let (status, body) = problem(send_keyed(&app, "/pay", "k", r#"{"amount":500}"#).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["type"], format!("{DRAFT}#section-2.7"));
    // The query is part of the request too.
    let (status, _) =
        problem(send_keyed(&app, "/pay?amount=500", "k", r#"{"amount":5}"#).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(hits.total(), 1);
}

#[tokio::test]
async fn json_field_fingerprints_let_other_fields_vary() {
    let (app, hits) = spawn_proxy(|config| {
        let mut route = ProtectedRoute::default_route();
        route.fingerprint =
            dedupd::proxy::config::FingerprintSource::JsonFields(vec!["/amount".into()]);
        config.routes = vec![route];
    })
    .await;
    send_keyed(&app, "/pay", "k", r#"{"amount":5,"sent_at":"10:00"}"#).await;
    let retry = send_keyed(&app, "/pay", "k", r#"{"sent_at":"10:01", "amount":5}"#).await;
    assert!(replayed(&retry));
    let (status, _) = problem(send_keyed(&app, "/pay", "k", r#"{"amount":6}"#).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = problem(send_keyed(&app, "/pay", "k2", "amount=5").await).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "not JSON: refused, not hashed"
    );
    assert_eq!(hits.total(), 1);
}

#[tokio::test]
async fn a_concurrent_retry_hears_409_or_waits_for_the_response() {
    let (app, hits) = spawn_proxy(|_| {}).await;
    let first = {
        let (client, url) = (app.client.clone(), app.url("/slow"));
        tokio::spawn(async move {
            let response = client
                .post(url)
                .header("idempotency-key", "s")
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        })
    };
    // Until the first request holds the key (bounded: 5 s).
    for _ in 0..100 {
        if hits.total() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hits.total(), 1);
    let concurrent = send_keyed(&app, "/slow", "s", "").await;
    assert_eq!(concurrent.headers()["retry-after"], "1");
    let (status, body) = problem(concurrent).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["type"], format!("{DRAFT}#section-2.7"));

    let waiting = send_waiting(&app, "/slow", "s", 10).await;
    assert_eq!(waiting.status(), StatusCode::CREATED);
    assert!(replayed(&waiting));
    let (first_status, first_body) = first.await.unwrap();
    assert_eq!(first_status, StatusCode::CREATED);
    assert_eq!(waiting.text().await.unwrap(), first_body);
    assert_eq!(hits.total(), 1);
}

#[tokio::test]
async fn a_client_that_hangs_up_still_gets_the_first_response_on_retry() {
    let (app, hits) = spawn_proxy(|_| {}).await;
    // Gives up long before the upstream's 800 ms answer.
    let impatient = app
        .client
        .post(app.url("/slow"))
        .header("idempotency-key", "gave-up")
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(impatient.is_err(), "the client timed out");
    // The proxy finishes the request without the client: the retry hears
    // the stored response, not 409 for the length of a lease.
    let retry = send_waiting(&app, "/slow", "gave-up", 10).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(replayed(&retry));
    assert_eq!(retry.text().await.unwrap(), "slow order 1");
    assert_eq!(hits.total(), 1);
}

#[tokio::test]
async fn bodies_are_bounded_per_request_and_across_requests() {
    let (app, hits) = spawn_proxy(|config| {
        config.max_request_body_bytes = 512 * 1024;
        config.max_buffered_bytes = 256 * 1024;
    })
    .await;
    // Over the per-request limit: 413, said before the body is read.
    let (status, _) =
        problem(send_keyed(&app, "/pay", "huge", &"h".repeat(600 * 1024)).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Within it, but more than all requests may hold at once: 503, with
    // nothing forwarded.
    let refused = send_keyed(&app, "/pay", "big", &"b".repeat(300 * 1024)).await;
    assert!(refused.headers().contains_key("retry-after"));
    let (status, _) = problem(refused).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(hits.total(), 0);
    assert_eq!(proxy_outcome(&app, "overloaded").await, 1.0);
    // The refused request gave its room back: one that fits (with room for
    // its response) goes through.
    let fits = send_keyed(&app, "/pay", "fits", &"f".repeat(150 * 1024)).await;
    assert_eq!(fits.status(), StatusCode::CREATED);
    assert_eq!(hits.total(), 1);
}

#[tokio::test]
async fn answers_that_say_try_again_are_not_stored() {
    let (app, hits) = spawn_proxy(|_| {}).await;
    for code in [500, 503, 429, 409, 408] {
        for _ in 0..2 {
            let response = send_keyed(&app, &format!("/status/{code}"), "again", "").await;
            assert_eq!(response.status().as_u16(), code);
            assert!(!replayed(&response));
        }
    }
    assert_eq!(hits.total(), 10, "every retry reached the upstream again");
    // A 4xx that is an answer is stored like a 2xx.
    send_keyed(&app, "/status/404", "gone", "").await;
    assert!(replayed(&send_keyed(&app, "/status/404", "gone", "").await));
    assert_eq!(hits.total(), 11);
}

#[tokio::test]
async fn an_upstream_timeout_releases_the_key() {
    let (app, hits) = spawn_proxy(|config| {
        config.upstream_timeout = Duration::from_secs(1);
    })
    .await;
    let (status, body) = problem(send_keyed(&app, "/hang", "h", "").await).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["type"], "urn:dedupd:problem:upstream-timeout");
    let (status, _) = problem(send_keyed(&app, "/hang", "h", "").await).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(hits.total(), 2, "the retry reached the upstream again");
    assert_eq!(proxy_outcome(&app, "upstream_failed").await, 2.0);
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_and_releases_the_key() {
    let (app, _hits) = spawn_proxy(|config| {
        // A port nothing listens on.
        config.upstream = dedupd::proxy::config::Upstream::parse("http://127.0.0.1:1").unwrap();
    })
    .await;
    for _ in 0..2 {
        let (status, body) = problem(send_keyed(&app, "/pay", "u", "").await).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(body["type"], "urn:dedupd:problem:upstream-unreachable");
    }
}

#[tokio::test]
async fn a_response_over_the_cap_is_returned_whole_and_released() {
    let (app, hits) = spawn_proxy(|config| config.storage.max_bytes = 1024).await;
    for _ in 0..2 {
        let response = send_keyed(&app, "/big", "b", "").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["idempotency-warning"],
            "response-too-large; released"
        );
        assert_eq!(response.text().await.unwrap(), "x".repeat(4096));
    }
    assert_eq!(hits.total(), 2, "released: the retry reached the upstream");
}

#[tokio::test]
async fn a_response_over_the_cap_fails_closed_when_configured() {
    let (app, hits) = spawn_proxy(|config| {
        config.storage.max_bytes = 1024;
        config.storage.oversize = OversizePolicy::FailClosed;
    })
    .await;
    let response = send_keyed(&app, "/big", "b", "").await;
    assert_eq!(
        response.headers()["idempotency-warning"],
        "response-too-large; not-replayable"
    );
    assert_eq!(response.text().await.unwrap(), "x".repeat(4096));
    let (status, body) = problem(send_keyed(&app, "/big", "b", "").await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["type"], "urn:dedupd:problem:response-not-stored");
    assert!(body["detail"].as_str().unwrap().contains("200"));
    assert_eq!(hits.total(), 1, "never forwarded twice");
}

#[tokio::test]
async fn two_principals_with_the_same_key_never_meet() {
    let (app, hits) = spawn_proxy(|_| {}).await;
    let send = |token: &'static str| {
        app.client
            .post(app.url("/pay"))
            .header("idempotency-key", "shared")
            .header("authorization", format!("Bearer {token}"))
            .body("{}")
            .send()
    };
    let alice = send("alice").await.unwrap();
    let bob = send("bob").await.unwrap();
    assert!(!replayed(&alice) && !replayed(&bob));
    let bob_body: Value = bob.json().await.unwrap();
    assert_eq!(
        bob_body["by"], "Bearer bob",
        "bob never sees alice's response"
    );
    let alice_again = send("alice").await.unwrap();
    assert!(replayed(&alice_again));
    let alice_body: Value = alice_again.json().await.unwrap();
    assert_eq!(alice_body["by"], "Bearer alice");
    assert_eq!(hits.total(), 2);
    // Another path is another resource: the key names another request.
    assert!(!replayed(
        &send_keyed(&app, "/pay/other", "shared", "{}").await
    ));
}

#[tokio::test]
async fn a_tenant_header_scopes_keys_and_is_required() {
    let (app, hits) = spawn_proxy(|config| {
        config.scope = ScopeSource::Header(axum::http::HeaderName::from_static("x-tenant"));
    })
    .await;
    let (status, body) = problem(send_keyed(&app, "/pay", "t", "{}").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("x-tenant"));
    for tenant in ["acme", "globex"] {
        let response = app
            .client
            .post(app.url("/pay"))
            .header("idempotency-key", "t")
            .header("x-tenant", tenant)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert!(!replayed(&response));
    }
    assert_eq!(hits.total(), 2);
}

#[tokio::test]
async fn with_the_store_down_a_route_fails_closed_or_open_as_configured() {
    let down = || TestOptions {
        nodes: Some(vec!["127.0.0.1:1".into()]),
        wait_ready: false,
        ..TestOptions::default()
    };
    let (closed, hits) = spawn_proxy_with(down(), |_| {}).await;
    let response = send_keyed(&closed, "/pay", "d", "{}").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(hits.total(), 0, "nothing reached the upstream unprotected");
    assert_eq!(proxy_outcome(&closed, "store_failed_closed").await, 1.0);

    let (open, hits) = spawn_proxy_with(down(), |config| {
        let mut route = ProtectedRoute::default_route();
        route.on_store_failure = StoreFailurePolicy::Open;
        config.routes = vec![route];
    })
    .await;
    for _ in 0..2 {
        let response = send_keyed(&open, "/pay", "d", "{}").await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(!replayed(&response));
    }
    assert_eq!(hits.total(), 2, "forwarded without protection, each time");
    assert_eq!(proxy_outcome(&open, "store_failed_open").await, 2.0);
}

#[tokio::test]
async fn a_response_that_could_not_be_stored_says_so() {
    let (app, hits) = spawn_proxy(|_| {}).await;
    app.faults
        .inject(statement::COMPLETE, Fault::TimeoutBeforeSend, 1000);
    let response = send_keyed(&app, "/pay", "c", "{}").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["idempotency-warning"], "not-stored");
    assert_eq!(proxy_outcome(&app, "complete_failed").await, 1.0);
    // The claim stays in progress until its lease ends: a retry hears 409,
    // never a replay of a response nobody stored.
    let (status, _) = problem(send_keyed(&app, "/pay", "c", "{}").await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(hits.total(), 1);
}

#[tokio::test]
async fn sixty_four_concurrent_retries_reach_the_upstream_once() {
    let (app, hits) = spawn_proxy(|_| {}).await;
    let retries: Vec<_> = (0..64)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/slow"));
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header("idempotency-key", "once")
                    .header("prefer", "wait=20")
                    .send()
                    .await
                    .unwrap();
                let replay = replayed(&response);
                (response.status(), replay, response.text().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for retry in retries {
        answers.push(retry.await.unwrap());
    }
    assert_eq!(hits.total(), 1, "one of 64 reached the upstream");
    assert!(
        answers
            .iter()
            .all(|(status, _, _)| *status == StatusCode::CREATED)
    );
    assert_eq!(answers.iter().filter(|(_, replay, _)| !replay).count(), 1);
    assert!(answers.iter().all(|(_, _, body)| body == "slow order 1"));
}

#[tokio::test]
async fn keys_are_checked_as_the_draft_says() {
    let (app, hits) = spawn_proxy(|config| {
        let mut required = ProtectedRoute::default_route();
        required.path = dedupd::proxy::config::PathPattern::parse("/pay/*").unwrap();
        required.require_key = true;
        config.routes = vec![required, ProtectedRoute::default_route()];
    })
    .await;
    for (key, section) in [
        ("\"\"", "2.1"),
        ("\"unterminated", "2.1"),
        ("a b", "2.1"),
        (&"k".repeat(256), "2.1"),
    ] {
        let (status, body) = problem(send_keyed(&app, "/pay", key, "{}").await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}");
        assert_eq!(body["type"], format!("{DRAFT}#section-{section}"));
    }
    let two = app
        .client
        .post(app.url("/pay"))
        .header("idempotency-key", "a")
        .header("idempotency-key", "b")
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), StatusCode::BAD_REQUEST);
    // Required on /pay/*: missing is 400; optional elsewhere: passed through.
    let missing = app.client.post(app.url("/pay/x")).send().await.unwrap();
    let (status, body) = problem(missing).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], format!("{DRAFT}#section-2.7"));
    assert_eq!(hits.total(), 0);
    for _ in 0..2 {
        let response = app.client.post(app.url("/pay")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    assert_eq!(hits.total(), 2, "without a key, nothing is deduplicated");
}

#[tokio::test]
async fn keys_with_percent_slash_and_quotes_are_keys_like_any_other() {
    let (app, hits) = spawn_proxy(|_| {}).await;
    let keys = ["a/b", "a%2Fb", "\"a\\\"b\"", "a\"b", "%F0%9F%A6%80", "🦀"];
    let mut fresh = 0;
    for key in keys {
        // Raw bytes: the emoji goes as UTF-8, which no header may hold.
        let value = reqwest::header::HeaderValue::from_bytes(key.as_bytes()).unwrap();
        let response = app
            .client
            .post(app.url("/pay"))
            .header("idempotency-key", value)
            .body("{}")
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::CREATED {
            fresh += usize::from(!replayed(&response));
        } else {
            let (status, _) = problem(response).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{key}");
        }
    }
    // The bare `a"b` (a quote) and the emoji (not ASCII) are refused; the
    // quoted `"a\"b"` is the key `a"b`; every accepted key is its own.
    assert_eq!(fresh, hits.total());
    assert_eq!(hits.total(), 4, "a/b, a%2Fb, a\"b (quoted), %F0%9F%A6%80");
}

#[tokio::test]
async fn other_methods_pass_through_and_upgrades_are_refused() {
    let (app, hits) = spawn_proxy(|_| {}).await;
    for expected in ["looked 1 times", "looked 2 times"] {
        let response = app
            .client
            .get(app.url("/look"))
            .header("idempotency-key", "g")
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), expected);
    }
    let upgrade = app
        .client
        .get(app.url("/look"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .send()
        .await
        .unwrap();
    let (status, _) = problem(upgrade).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(hits.total(), 2);
    // The service's own routes stay reachable under /_dedupd.
    let ready = app.client.get(app.probe("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(proxy_outcome(&app, "passthrough").await, 2.0);
}

/// The proxy's input handling, fuzzed against the real thing: any key
/// bytes, body, method and path. No input makes it answer 5xx or panic;
/// every refusal is a problem document; and a request it stored is never
/// forwarded again: sent twice, the second is the first's replay.
#[test]
fn no_key_body_method_or_path_makes_the_proxy_fail_or_forward_twice() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (app, hits) = runtime.block_on(spawn_proxy(|_| {}));
    // Mostly keys the header accepts (bare, or quoted with escapes), so
    // that many cases are stored; the rest any bytes at all.
    let bare = "[!#-+\\--:<-\\[\\]-~]{1,24}".prop_map(String::into_bytes);
    let quoted = "[ -~]{0,24}".prop_map(|key| {
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\"")).into_bytes()
    });
    let any_bytes = proptest::collection::vec(
        prop_oneof![
            Just(b'"'),
            Just(b'\\'),
            Just(b' '),
            Just(b','),
            Just(b';'),
            0x21u8..0x7f,
            0x80u8..=0xff,
        ],
        0..24,
    );
    let key_bytes = prop_oneof![5 => bare, 3 => quoted, 2 => any_bytes];
    let body = proptest::collection::vec(any::<u8>(), 0..48);
    let method = prop_oneof![Just("POST"), Just("PATCH"), Just("PUT"), Just("GET")];
    let path = prop_oneof![
        Just("/pay"),
        Just("/pay/a%2Fb"),
        Just("/pay/%F0%9F%A6%80"),
        Just("/pay?x=%25"),
        Just("/nowhere"),
    ];
    // How many cases were stored and then replayed: the property must not
    // hold only because nothing was ever stored.
    let replays = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    runner
        .run(
            &(key_bytes, body, method, path),
            |(key, body, method, path)| {
                runtime.block_on(async {
                    let send = || {
                        let mut request = app
                            .client
                            .request(method.parse().unwrap(), app.url(path))
                            .body(body.clone());
                        if let Ok(value) = reqwest::header::HeaderValue::from_bytes(&key) {
                            request = request.header("idempotency-key", value);
                        }
                        request.send()
                    };
                    let first = send().await.unwrap();
                    let first_status = first.status();
                    let first_replayed = replayed(&first);
                    let is_problem = first
                        .headers()
                        .get("content-type")
                        .is_some_and(|value| value == "application/problem+json");
                    let first_body = first.bytes().await.unwrap();
                    prop_assert!(
                        first_status.as_u16() < 500,
                        "{method} {path} key {key:?}: {first_status}"
                    );
                    if is_problem {
                        let problem: Value = serde_json::from_slice(&first_body).unwrap();
                        prop_assert_eq!(
                            problem["status"].as_u64(),
                            Some(u64::from(first_status.as_u16()))
                        );
                        prop_assert!(problem["type"].is_string() && problem["detail"].is_string());
                    }
                    // Forwarded by a protected route, and a status the default
                    // policy stores (the upstream's own 4xx included).
                    let code = first_status.as_u16();
                    let stored = ["POST", "PATCH"].contains(&method)
                        && !is_problem
                        && !first_replayed
                        && matches!(code / 100, 2 | 4)
                        && ![408, 409, 425, 429].contains(&code);
                    let hits_before = hits.total();
                    let second = send().await.unwrap();
                    prop_assert!(second.status().as_u16() < 500);
                    if stored {
                        prop_assert_eq!(second.status(), first_status);
                        prop_assert!(replayed(&second), "{method} {path} key {key:?}");
                        prop_assert_eq!(hits.total(), hits_before, "forwarded twice");
                        prop_assert_eq!(second.bytes().await.unwrap(), first_body);
                        replays.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(())
                })
            },
        )
        .unwrap();
    let replays = replays.into_inner();
    assert!(
        replays >= 5,
        "only {replays} of 96 cases were stored and replayed"
    );
    drop(app);
}
