//! `wait`: a claim of a key in progress elsewhere waits for its holder.

use std::time::Duration;

use dedupd::claims::WaitSettings;
use dedupd_client::{ClaimOptions, Error, Once, RetryBudget, RunError};
use dedupd_test_support::{TestOptions, spawn_app, spawn_app_with};

use super::{acquired, client_of};

fn waiting() -> ClaimOptions {
    ClaimOptions::new()
        .wait(Duration::from_secs(10))
        .wait_budget(Duration::from_secs(30))
}

#[tokio::test]
async fn a_waiting_run_hears_the_holders_result() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    let holder = acquired(client.claim(ns, "w1", &ClaimOptions::new()).await.unwrap());
    let finish = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        client
            .complete(ns, "w1", &holder.token, Some(&"the holder's"))
            .await
            .unwrap();
    };
    let options = waiting();
    let run = client.run_once(ns, "w1", &options, |_| async {
        Ok::<_, std::io::Error>("the waiter's".to_owned())
    });
    let (outcome, ()) = tokio::join!(run, finish);
    assert_eq!(
        outcome.unwrap(),
        Once::AlreadyDone("the holder's".to_owned())
    );
}

#[tokio::test]
async fn a_waiting_run_runs_the_work_when_the_holder_releases() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    let holder = acquired(client.claim(ns, "w2", &ClaimOptions::new()).await.unwrap());
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.release(ns, "w2", &holder.token).await.unwrap();
    };
    let options = waiting();
    let run = client.run_once(ns, "w2", &options, |_| async {
        Ok::<_, std::io::Error>("the waiter's".to_owned())
    });
    let (outcome, ()) = tokio::join!(run, release);
    assert_eq!(outcome.unwrap(), Once::Ran("the waiter's".to_owned()));
}

#[tokio::test]
async fn too_many_waiters_is_retried_and_never_a_duplicate() {
    let app = spawn_app_with(TestOptions {
        wait: WaitSettings {
            max_waiters: 0,
            ..WaitSettings::default()
        },
        ..TestOptions::default()
    })
    .await;
    let ns = &app.namespace;
    let holder = client_of(&app);
    acquired(holder.claim(ns, "w3", &ClaimOptions::new()).await.unwrap());
    let client = dedupd_client::Client::builder(&app.address)
        .retry_budget(RetryBudget::new(3, Duration::from_secs(10)))
        .max_retry_delay(Duration::from_millis(100))
        .build()
        .unwrap();
    let error = client.claim(ns, "w3", &waiting()).await.unwrap_err();
    match &error {
        Error::BudgetExhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 3);
            match last.as_ref() {
                Error::Unavailable {
                    status,
                    problem_type,
                    retry_after,
                    ..
                } => {
                    assert_eq!(*status, 503);
                    assert_eq!(problem_type, "urn:dedupd:problem:too-many-waiters");
                    assert!(retry_after.is_some());
                }
                other => panic!("expected unavailable, got {other:?}"),
            }
        }
        other => panic!("expected a spent budget, got {other:?}"),
    }
    assert!(error.is_retryable());
    let outcome = client
        .run_once(ns, "w3", &waiting(), |_| async {
            Ok::<_, std::io::Error>(())
        })
        .await;
    assert!(
        matches!(
            outcome,
            Err(RunError::Client(Error::BudgetExhausted { .. }))
        ),
        "{outcome:?}"
    );
}
