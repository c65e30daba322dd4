//! Probes, metrics, the OpenAPI document, overload and shutdown.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use dedupd_test_support::{TestOptions, metric_value, spawn_app, spawn_app_with};

#[tokio::test]
async fn livez_and_readyz_answer_when_the_database_is_up() {
    let app = spawn_app().await;
    let live = app.client.get(app.url("/livez")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_a_database_the_process_is_live_but_not_ready() {
    // Port 1 on loopback: nothing listens there.
    let app = spawn_app_with(TestOptions {
        nodes: Some(vec!["127.0.0.1:1".into()]),
        wait_ready: false,
        ..TestOptions::default()
    })
    .await;
    let live = app.client.get(app.url("/livez")).send().await.unwrap();
    assert_eq!(
        live.status(),
        StatusCode::OK,
        "liveness never touches the database"
    );
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let claim = app.claim("k", json!({})).await;
    assert_eq!(claim.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(claim.headers()["content-type"], "application/problem+json");
    assert!(claim.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn metrics_count_claims_by_outcome_and_time_the_store() {
    let app = spawn_app().await;
    let token = app.acquire("m1", json!({})).await;
    app.claim_json("m1", json!({})).await;
    app.complete("m1", &token, json!(null)).await;
    app.claim_json("m1", json!({})).await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    assert_eq!(
        metric_value(&text, "dedupd_claims_total{outcome=\"acquired\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "dedupd_claims_total{outcome=\"duplicate_in_progress\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            "dedupd_claims_total{outcome=\"duplicate_completed\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            "dedupd_claim_operations_total{operation=\"complete\",outcome=\"done\"}"
        ),
        1.0
    );
    // The last duplicate came from the completed-claims cache: two INSERTs.
    assert_eq!(
        metric_value(
            &text,
            "dedupd_store_latency_seconds_count{statement=\"claim_insert\"}"
        ),
        2.0
    );
    assert_eq!(
        metric_value(&text, "dedupd_completed_cache_total{result=\"hit\"}"),
        1.0
    );
    assert!(text.contains("dedupd_store_errors_total"));
    assert!(text.contains("dedupd_unknown_outcomes_total"));
    assert!(text.contains("dedupd_http_requests_total{method=\"POST\",route=\"/v1/namespaces/{ns}/claims/{key}\",status=\"201\"}"));
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let document: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/v1/namespaces/{ns}/claims",
        "/v1/namespaces/{ns}/sequences/{stream}",
        "/v1/namespaces/{ns}/claims/{key}",
        "/v1/namespaces/{ns}/claims/{key}/complete",
        "/v1/namespaces/{ns}/claims/{key}/release",
        "/v1/namespaces/{ns}/claims/{key}/extend",
        "/livez",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} missing from {paths:?}");
    }
    let claim = &paths["/v1/namespaces/{ns}/claims/{key}"];
    assert!(claim["post"]["responses"]["201"].is_object());
    assert!(claim["post"]["responses"]["409"].is_object());
    assert!(claim["get"]["responses"]["200"].is_object());
}

#[tokio::test]
async fn overload_is_refused_fast_with_503_and_retry_after() {
    // One permit: the requests that find it taken are refused, not queued.
    let app = spawn_app_with(TestOptions {
        max_in_flight: 1,
        ..TestOptions::default()
    })
    .await;
    let answers = join_all((0..24).map(|i| {
        let client = app.client.clone();
        let url = app.claim_url(&format!("burst-{i}"));
        async move { client.post(url).send().await.unwrap() }
    }))
    .await;
    let mut created = 0;
    let mut refused = 0;
    for response in answers {
        match response.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(response.headers().contains_key("retry-after"));
                assert_eq!(
                    response.headers()["content-type"],
                    "application/problem+json"
                );
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(created >= 1);
    assert!(
        refused >= 1,
        "24 concurrent requests against one permit: some must be refused"
    );
    let text = app.metrics().await;
    assert_eq!(
        metric_value(&text, "dedupd_overloaded_total"),
        refused as f64
    );
}

#[tokio::test]
async fn shutdown_turns_readiness_off_while_requests_still_drain() {
    let mut app = spawn_app_with(TestOptions {
        shutdown_delay: Duration::from_secs(2),
        ..TestOptions::default()
    })
    .await;
    app.begin_shutdown();
    let mut saw_draining = false;
    for _ in 0..15 {
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        if ready.status() == StatusCode::SERVICE_UNAVAILABLE {
            let body: serde_json::Value = ready.json().await.unwrap();
            assert_eq!(body["status"], "draining");
            saw_draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_draining);
    // Still serving during the delay, so in-flight work completes.
    let (status, _) = app.claim_json("during-drain", json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let server = std::mem::replace(&mut app.server, tokio::spawn(async { Ok(()) }));
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("the server stops after draining")
        .unwrap()
        .unwrap();
}

/// The metric series `/metrics` shows (one line each, comments aside).
fn series_count(text: &str) -> usize {
    text.lines().filter(|line| !line.starts_with('#')).count()
}

#[tokio::test]
async fn junk_methods_and_paths_add_no_metric_series() {
    let app = spawn_app().await;
    let claim_path = format!("/v1/namespaces/{}/claims/k", app.namespace);
    let junk = |index: usize| -> (String, String) {
        match index % 4 {
            // A made-up method on a real route, and on no route.
            0 => (format!("BREW{index}"), claim_path.clone()),
            1 => (format!("X-SCAN-{index}"), format!("/wp-admin/{index}.php")),
            // Known methods on paths no route matches.
            2 => ("GET".into(), format!("/.env.{index}")),
            _ => ("POST".into(), format!("/v2/unknown/{index}")),
        }
    };
    // One of each shape first: the `other` and `unmatched` series exist
    // from then on, and nothing after may add another.
    for index in 0..4 {
        let (method, path) = junk(index);
        dedupd_test_support::raw_request(&app, &method, &path, &[], b"").await;
    }
    // Scrape once first: the scrape itself is a request (GET /metrics 200).
    app.metrics().await;
    let before = series_count(&app.metrics().await);
    for index in 4..304 {
        let (method, path) = junk(index);
        let (status, _, _) = dedupd_test_support::raw_request(&app, &method, &path, &[], b"").await;
        assert!(
            (400..500).contains(&status),
            "{method} {path} answered {status}"
        );
    }
    let text = app.metrics().await;
    assert_eq!(
        series_count(&text),
        before,
        "300 junk requests must add no series"
    );
    assert!(
        metric_value(
            &text,
            "dedupd_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"}"
        ) >= 75.0,
        "{text}"
    );
}
