//! Offers of sequence numbers: accepted, duplicate, gap, and the errors a
//! caller that sees every attempt (no retries) needs to tell apart.

use std::time::Duration;

use dedupd::store::faults::Fault;
use dedupd::store::sequence_statement;
use dedupd_client::{Advance, Client, RetryBudget};
use dedupd_test_support::{spawn_app, unique_namespace};

use super::client_of;

#[tokio::test]
async fn accepted_duplicate_and_gap_with_the_watermark() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    assert_eq!(
        client.advance(ns, "orders", 1, None).await.unwrap(),
        Advance::Accepted { last: 1 }
    );
    assert_eq!(
        client.advance(ns, "orders", 2, None).await.unwrap(),
        Advance::Accepted { last: 2 }
    );
    assert_eq!(
        client.advance(ns, "orders", 1, None).await.unwrap(),
        Advance::Duplicate { last: 2 }
    );
    assert_eq!(
        client.advance(ns, "orders", 5, None).await.unwrap(),
        Advance::Gap {
            last: 2,
            expected: 3
        }
    );
    // Streams are per namespace: the same name elsewhere starts afresh.
    let other = unique_namespace();
    assert_eq!(
        client.advance(&other, "orders", 1, None).await.unwrap(),
        Advance::Accepted { last: 1 }
    );
}

#[tokio::test]
async fn an_offerer_offering_its_own_number_again_hears_accepted() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    let me = Some("consumer-1");
    assert_eq!(
        client.advance(ns, "s", 1, me).await.unwrap(),
        Advance::Accepted { last: 1 }
    );
    // A retry after a lost answer: the same offerer, the same number.
    assert_eq!(
        client.advance(ns, "s", 1, me).await.unwrap(),
        Advance::Accepted { last: 1 }
    );
    assert_eq!(
        client
            .advance(ns, "s", 1, Some("consumer-2"))
            .await
            .unwrap(),
        Advance::Duplicate { last: 1 }
    );
}

#[tokio::test]
async fn without_retries_a_503_keeps_its_status_and_retry_after() {
    let app = spawn_app().await;
    let client = Client::builder(&app.address)
        .retry_budget(RetryBudget::none())
        .build()
        .unwrap();
    let ns = &app.namespace;
    // The stream's first write never reaches the database: not decided.
    app.faults.inject(
        sequence_statement::INSERT,
        Fault::TimeoutBeforeSend,
        100_000,
    );
    let error = client.advance(ns, "s", 1, Some("c")).await.unwrap_err();
    app.faults.clear();
    assert_eq!(error.status(), Some(503), "{error}");
    assert!(error.has_retry_after(), "{error:?}");
    assert!(error.retry_after().is_some());
    assert!(error.is_retryable() && !error.is_no_answer());
    // Nothing was written: the same offer is accepted once the database is back.
    assert_eq!(
        client.advance(ns, "s", 1, Some("c")).await.unwrap(),
        Advance::Accepted { last: 1 }
    );
}

#[tokio::test]
async fn no_answer_is_told_apart_from_an_answer() {
    // A port nothing listens on: the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::builder(format!("http://127.0.0.1:{port}"))
        .retry_budget(RetryBudget::none())
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let error = client.advance("ns", "s", 1, None).await.unwrap_err();
    assert!(error.is_no_answer(), "{error:?}");
    assert_eq!(error.status(), None);
    assert!(!error.has_retry_after());
}
