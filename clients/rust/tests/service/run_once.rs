//! `run_once`: the whole protocol.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use dedupd_client::{ClaimAnswer, ClaimOptions, Once, RunError, State};
use dedupd_test_support::spawn_app;

use super::{acquired, client_of, duplicate};

#[tokio::test]
async fn sequential_calls_run_the_work_once_and_replay_its_value() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let runs = AtomicUsize::new(0);
    let work = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(vec!["charged".to_owned(), "ch_1".to_owned()])
    };
    let options = ClaimOptions::new();
    let first = client
        .run_once(&app.namespace, "seq", &options, |_| work())
        .await
        .unwrap();
    let second = client
        .run_once(&app.namespace, "seq", &options, |_| work())
        .await
        .unwrap();
    assert_eq!(first, Once::Ran(vec!["charged".into(), "ch_1".into()]));
    assert_eq!(
        second,
        Once::AlreadyDone(vec!["charged".into(), "ch_1".into()])
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_callers_of_one_key_run_it_once_and_all_get_its_value() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let runs = Arc::new(AtomicUsize::new(0));
    let options = ClaimOptions::new()
        .lease(Duration::from_secs(10))
        .wait(Duration::from_secs(10))
        .wait_budget(Duration::from_secs(60));
    let callers: Vec<_> = (0..8)
        .map(|caller| {
            let client = client.clone();
            let namespace = app.namespace.clone();
            let options = options.clone();
            let runs = runs.clone();
            tokio::spawn(async move {
                client
                    .run_once(&namespace, "hot", &options, |_| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        Ok::<_, std::io::Error>(format!("done by {caller}"))
                    })
                    .await
            })
        })
        .collect();
    let mut ran = 0;
    let mut values = Vec::new();
    for caller in callers {
        match caller.await.unwrap().unwrap() {
            Once::Ran(value) => {
                ran += 1;
                values.push(value);
            }
            Once::AlreadyDone(value) => values.push(value),
        }
    }
    assert_eq!(ran, 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(values.iter().all(|value| *value == values[0]), "{values:?}");
}

#[tokio::test]
async fn a_work_error_releases_the_key_and_the_next_run_runs_it() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let options = ClaimOptions::new();
    let failed = client
        .run_once(&app.namespace, "flaky", &options, |_| async {
            Err::<u32, _>("the payment provider said no")
        })
        .await;
    assert!(
        matches!(failed, Err(RunError::Work("the payment provider said no"))),
        "{failed:?}"
    );
    let next = client
        .run_once(&app.namespace, "flaky", &options, |_| async {
            Ok::<u32, &str>(7)
        })
        .await
        .unwrap();
    assert_eq!(next, Once::Ran(7));
}

#[tokio::test]
async fn work_longer_than_the_lease_keeps_it_and_no_one_else_acquires() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = app.namespace.clone();
    let options = ClaimOptions::new().lease(Duration::from_secs(2));
    let started = AtomicBool::new(false);
    let working = AtomicBool::new(true);
    let rival_acquired = AtomicBool::new(false);
    let run = async {
        let outcome = client
            .run_once(&ns, "long", &options, |_| async {
                started.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, std::io::Error>("slow but sure".to_owned())
            })
            .await;
        working.store(false, Ordering::SeqCst);
        outcome
    };
    let rival = async {
        // The rival starts once the work holds the key (bounded).
        for _ in 0..1000 {
            if started.load(Ordering::SeqCst) || !working.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Bounded: the work ends within its 5 s, or the count runs out.
        for _ in 0..100 {
            if !working.load(Ordering::SeqCst) {
                break;
            }
            let answer = client
                .claim(
                    &ns,
                    "long",
                    &ClaimOptions::new().lease(Duration::from_secs(2)),
                )
                .await
                .unwrap();
            if let ClaimAnswer::Acquired(_) = answer {
                rival_acquired.store(true, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let (outcome, ()) = tokio::join!(run, rival);
    assert_eq!(outcome.unwrap(), Once::Ran("slow but sure".to_owned()));
    assert!(!rival_acquired.load(Ordering::SeqCst));
    let replay = duplicate(
        client
            .claim(&ns, "long", &ClaimOptions::new())
            .await
            .unwrap(),
    );
    assert_eq!(replay.state, State::Completed);
}

#[tokio::test]
async fn a_lost_lease_refuses_the_completion() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = app.namespace.clone();
    let options = ClaimOptions::new().lease(Duration::from_secs(1));
    let outcome = client
        .run_once(&ns, "lost", &options, |lease| {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                // Someone frees the claim under the work's feet.
                client.release(&ns, "lost", &lease.token).await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, std::io::Error>(1)
            }
        })
        .await;
    assert!(
        matches!(outcome, Err(RunError::LeaseLost(_))),
        "{outcome:?}"
    );
    // The result was not stored: the key is free.
    acquired(
        client
            .claim(&ns, "lost", &ClaimOptions::new())
            .await
            .unwrap(),
    );
}

#[tokio::test]
async fn a_key_in_progress_elsewhere_is_in_progress_after_the_wait_budget() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    acquired(
        client
            .claim(
                ns,
                "busy",
                &ClaimOptions::new().lease(Duration::from_secs(60)),
            )
            .await
            .unwrap(),
    );
    let outcome = client
        .run_once(ns, "busy", &ClaimOptions::new(), |_| async {
            Ok::<_, std::io::Error>(())
        })
        .await;
    match outcome {
        Err(RunError::InProgress { retry_after }) => assert!(retry_after.is_some()),
        other => panic!("expected in progress, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stored_result_of_another_type_is_a_decode_error() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    let lease = acquired(
        client
            .claim(ns, "typed", &ClaimOptions::new())
            .await
            .unwrap(),
    );
    client
        .complete(ns, "typed", &lease.token, Some(&"a string"))
        .await
        .unwrap();
    let outcome = client
        .run_once(ns, "typed", &ClaimOptions::new(), |_| async {
            Ok::<u64, std::io::Error>(1)
        })
        .await;
    assert!(matches!(outcome, Err(RunError::Decode(_))), "{outcome:?}");
}
