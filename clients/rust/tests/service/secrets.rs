//! The bearer token appears in no error's Display or Debug, nor in the
//! client's Debug.

use std::error::Error as _;
use std::time::Duration;

use dedupd::http::auth::{Auth, AuthFile, TokenFile, hash_token};
use dedupd_client::{ClaimOptions, Client, Error, RetryBudget};
use dedupd_test_support::{TestOptions, spawn_app_with, unique_namespace};
use tokio::net::TcpListener;

const GOOD: &str = "good-token-7f3e9a1c-SECRET";
const WRONG: &str = "wrong-token-1b2c3d4e-SECRET";

fn assert_hidden(what: &str, text: String) {
    for secret in [GOOD, WRONG, "SECRET"] {
        assert!(!text.contains(secret), "{what} shows the token: {text}");
    }
}

/// Display, Debug and every source of `error`.
fn assert_error_hides_tokens(error: &Error) {
    assert_hidden("Display", error.to_string());
    assert_hidden("Debug", format!("{error:?}"));
    let mut source = error.source();
    while let Some(cause) = source {
        assert_hidden("a source", format!("{cause} / {cause:?}"));
        source = cause.source();
    }
}

fn client(address: &str, token: &str, budget: RetryBudget) -> Client {
    let builder = Client::builder(address)
        .bearer_token(token)
        .request_timeout(Duration::from_millis(500))
        .retry_budget(budget)
        .max_retry_delay(Duration::from_millis(100));
    assert_hidden("the builder's Debug", format!("{builder:?}"));
    let client = builder.build().unwrap();
    assert_hidden("the client's Debug", format!("{client:?}"));
    client
}

#[tokio::test]
async fn no_error_shows_the_bearer_token() {
    let allowed = unique_namespace();
    let auth = Auth::from_file(&AuthFile {
        protect_metrics: false,
        protect_health: false,
        tokens: vec![TokenFile {
            name: "client-tests".into(),
            sha256: hash_token(GOOD),
            namespaces: vec![allowed.clone()],
            admin: false,
        }],
    })
    .unwrap();
    let app = spawn_app_with(TestOptions {
        auth,
        ..TestOptions::default()
    })
    .await;
    let options = ClaimOptions::new();

    // The good token works.
    let good = client(&app.address, GOOD, RetryBudget::default());
    let answer = good.claim(&allowed, "k", &options).await.unwrap();
    assert!(matches!(answer, dedupd_client::ClaimAnswer::Acquired(_)));

    let mut errors = Vec::new();
    // 401: a wrong token.
    let wrong = client(&app.address, WRONG, RetryBudget::default());
    let error = wrong.claim(&allowed, "k", &options).await.unwrap_err();
    assert_eq!(error.status(), Some(401), "{error:?}");
    errors.push(error);
    // 403: a namespace the token may not use.
    let error = good
        .claim(&unique_namespace(), "k", &options)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(403), "{error:?}");
    errors.push(error);
    // 409 not_owner and 404.
    let stranger = uuid::Uuid::new_v4().to_string();
    errors.push(good.release(&allowed, "k", &stranger).await.unwrap_err());
    errors.push(
        good.complete(&allowed, "none", &stranger, Some(&1))
            .await
            .unwrap_err(),
    );
    // Transport: nothing listens; once, then with the budget spent.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_address = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    for budget in [
        RetryBudget::none(),
        RetryBudget::new(3, Duration::from_secs(5)),
    ] {
        let error = client(&closed_address, GOOD, budget)
            .claim(&allowed, "k", &options)
            .await
            .unwrap_err();
        assert!(error.is_retryable(), "{error:?}");
        errors.push(error);
    }
    // Timeout: a listener that never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_address = format!("http://{}", silent.local_addr().unwrap());
    let error = client(&silent_address, GOOD, RetryBudget::none())
        .claim(&allowed, "k", &options)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    errors.push(error);
    drop(silent);
    // A token that cannot be a header.
    let error = Client::builder(&app.address)
        .bearer_token("bad\nSECRET")
        .build()
        .unwrap_err();
    errors.push(error);

    for error in &errors {
        eprintln!("{error}");
        assert_error_hides_tokens(error);
    }
}
