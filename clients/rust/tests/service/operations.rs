//! The service's own endpoints: readiness and the metrics text.

use std::time::Duration;

use dedupd_client::{ClaimOptions, Readiness};
use dedupd_test_support::{TestOptions, spawn_app, spawn_app_with};

use super::client_of;

#[tokio::test]
async fn a_ready_service_says_so_and_its_metrics_count_the_calls() {
    let app = spawn_app().await;
    let client = client_of(&app);
    assert_eq!(client.readiness().await.unwrap(), Readiness::Ready);
    client
        .claim(&app.namespace, "k", &ClaimOptions::new())
        .await
        .unwrap();
    let text = client.metrics_text().await.unwrap();
    assert!(
        text.contains("dedupd_http_requests_total{") && text.contains("# EOF"),
        "{text}"
    );
}

#[tokio::test]
async fn a_draining_service_answers_draining_not_an_error() {
    let mut app = spawn_app_with(TestOptions {
        shutdown_delay: Duration::from_secs(5),
        ..TestOptions::default()
    })
    .await;
    let client = client_of(&app);
    app.begin_shutdown();
    let mut seen = None;
    for _ in 0..100 {
        let readiness = client.readiness().await.unwrap();
        if readiness != Readiness::Ready {
            seen = Some(readiness);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, Some(Readiness::Draining));
}
