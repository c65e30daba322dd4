//! The typed calls, one outcome at a time.

use std::time::Duration;

use dedupd::store::faults::Fault;
use dedupd::store::statement;
use dedupd_client::{ClaimOptions, Error, State};
use dedupd_test_support::{metric_value, spawn_app};
use serde_json::json;

use super::{acquired, client_of, duplicate};

#[tokio::test]
async fn acquired_duplicate_in_progress_complete_and_the_result_replayed() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    let options = ClaimOptions::new()
        .ttl(Duration::from_secs(600))
        .lease(Duration::from_secs(20))
        .claimant("worker-1");
    let lease = acquired(client.claim(ns, "order-1", &options).await.unwrap());
    assert!(!lease.takeover);
    assert_eq!(lease.claimant, "worker-1");
    assert!(lease.lease_expires_at.is_some());

    let other = duplicate(
        client
            .claim(ns, "order-1", &ClaimOptions::new())
            .await
            .unwrap(),
    );
    assert_eq!(other.state, State::InProgress);
    assert!(other.retry_after.is_some(), "{other:?}");
    assert!(other.holder.as_deref().unwrap().starts_with("h:"));
    assert!(other.result.is_none());

    // The same claimant gets its token back.
    let again = acquired(client.claim(ns, "order-1", &options).await.unwrap());
    assert_eq!(again.token, lease.token);

    let result = json!({"charge": "ch_1"});
    let done = client
        .complete(ns, "order-1", &lease.token, Some(&result))
        .await
        .unwrap();
    assert_eq!(done.state, Some(State::Completed));
    // A second complete with the same token is the same answer: retries are safe.
    client
        .complete(ns, "order-1", &lease.token, Some(&result))
        .await
        .unwrap();

    let replay = duplicate(
        client
            .claim(ns, "order-1", &ClaimOptions::new())
            .await
            .unwrap(),
    );
    assert_eq!(replay.state, State::Completed);
    assert_eq!(replay.result, Some(result));
    assert!(replay.completed_at.is_some());
    assert!(replay.retry_after.is_none());
}

#[tokio::test]
async fn a_completion_without_a_result_replays_null() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    let lease = acquired(client.claim(ns, "k", &ClaimOptions::new()).await.unwrap());
    client
        .complete(ns, "k", &lease.token, None::<&()>)
        .await
        .unwrap();
    let replay = duplicate(client.claim(ns, "k", &ClaimOptions::new()).await.unwrap());
    assert_eq!(replay.result, Some(serde_json::Value::Null));
}

#[tokio::test]
async fn a_one_shot_claim_completes_at_once() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    let options = ClaimOptions::new().complete(true);
    let lease = acquired(client.claim(ns, "marker", &options).await.unwrap());
    assert!(lease.lease_expires_at.is_none());
    let again = duplicate(client.claim(ns, "marker", &options).await.unwrap());
    assert_eq!(again.state, State::Completed);
}

#[tokio::test]
async fn a_fingerprint_mismatch_is_its_own_error() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    acquired(
        client
            .claim(ns, "fp", &ClaimOptions::new().fingerprint("aaa"))
            .await
            .unwrap(),
    );
    let error = client
        .claim(ns, "fp", &ClaimOptions::new().fingerprint("bbb"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::FingerprintMismatch { .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn release_frees_the_key_and_a_stale_token_is_refused() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    let first = acquired(client.claim(ns, "rel", &ClaimOptions::new()).await.unwrap());
    client.release(ns, "rel", &first.token).await.unwrap();
    let second = acquired(client.claim(ns, "rel", &ClaimOptions::new()).await.unwrap());
    assert_ne!(second.token, first.token);
    let error = client.release(ns, "rel", &first.token).await.unwrap_err();
    assert!(matches!(error, Error::NotOwner { .. }), "{error:?}");
    let error = client
        .complete(ns, "rel", &first.token, Some(&1))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotOwner { .. }), "{error:?}");
    client
        .complete(ns, "rel", &second.token, Some(&2))
        .await
        .unwrap();
    let error = client.release(ns, "rel", &second.token).await.unwrap_err();
    assert!(matches!(error, Error::AlreadyCompleted { .. }), "{error:?}");
}

#[tokio::test]
async fn extend_moves_the_lease_and_calls_on_no_claim_are_not_found() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    let options = ClaimOptions::new().lease(Duration::from_secs(5));
    let lease = acquired(client.claim(ns, "ext", &options).await.unwrap());
    let extended = client
        .extend(ns, "ext", &lease.token, Duration::from_secs(120))
        .await
        .unwrap();
    assert!(extended.lease_expires_at.unwrap() > lease.lease_expires_at.unwrap());

    let token = uuid::Uuid::new_v4().to_string();
    let error = client
        .extend(ns, "never-claimed", &token, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn get_shows_a_claim_and_none_for_no_claim() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    assert!(client.get(ns, "nothing").await.unwrap().is_none());
    let options = ClaimOptions::new().fingerprint("f1").claimant("c1");
    acquired(client.claim(ns, "seen", &options).await.unwrap());
    let view = client.get(ns, "seen").await.unwrap().expect("a claim");
    assert_eq!(view.state, State::InProgress);
    assert_eq!(view.fingerprint.as_deref(), Some("f1"));
    // Without auth the stored claimant is the claimant as sent.
    assert_eq!(view.holder, Some(dedupd_client::holder_label("c1")));
    assert_eq!(
        dedupd_client::holder_label("orders/worker-1"),
        dedupd::domain::holder_label("orders/worker-1")
    );
}

#[tokio::test]
async fn a_4xx_is_a_problem_and_not_retried() {
    let app = spawn_app().await;
    let client = client_of(&app);
    // A lease with `complete: true` is refused (400).
    let options = ClaimOptions::new()
        .complete(true)
        .lease(Duration::from_secs(5));
    let error = client
        .claim(&app.namespace, "bad", &options)
        .await
        .unwrap_err();
    match &error {
        Error::Problem {
            status,
            problem_type,
            ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(problem_type, "urn:dedupd:problem:invalid-request");
        }
        other => panic!("expected a problem, got {other:?}"),
    }
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn the_keys_dot_and_dot_dot_are_refused_before_sending() {
    let app = spawn_app().await;
    let client = client_of(&app);
    for key in [".", ".."] {
        let error = client
            .claim(&app.namespace, key, &ClaimOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Invalid { .. }), "{error:?}");
    }
}

#[tokio::test]
async fn a_503_is_retried_with_the_same_claimant_and_acquires() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = app.namespace.clone();
    // The claim lands, but its answer is lost and so is every serial read
    // that would resolve it: the server answers 503 (not decided).
    app.faults
        .inject(statement::INSERT, Fault::TimeoutAfterApply, 1);
    app.faults
        .inject(statement::READ_SERIAL, Fault::TimeoutBeforeSend, 100_000);
    let unresolved =
        "dedupd_unknown_outcomes_total{statement=\"claim_insert\",resolution=\"unresolved\"}";
    let healer = async {
        // Heal the database once the 503 went out; bounded.
        for _ in 0..1000 {
            if metric_value(&app.metrics().await, unresolved) >= 1.0 {
                app.faults.clear();
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        app.faults.clear();
        panic!("no 503 within 10 s");
    };
    let options = ClaimOptions::new();
    let (answer, ()) = tokio::join!(client.claim(&ns, "undecided", &options), healer);
    let lease = acquired(answer.unwrap());
    assert!(!lease.takeover, "recovered, not taken over");
    assert_eq!(metric_value(&app.metrics().await, unresolved), 1.0);
    let other = duplicate(
        client
            .claim(&ns, "undecided", &ClaimOptions::new())
            .await
            .unwrap(),
    );
    assert_eq!(other.state, State::InProgress);
    client
        .complete(&ns, "undecided", &lease.token, Some(&"ok"))
        .await
        .unwrap();
}
