//! Any key the server accepts goes through the client's encoding intact.

use dedupd_client::{ClaimAnswer, ClaimOptions, State};
use dedupd_test_support::spawn_app;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Any UTF-8 string of 1 to 512 bytes but `.` and `..`.
fn keys() -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        any::<char>(),
        // Bytes that matter to a path, more often than chance gives them.
        prop::sample::select(vec!['/', '%', ' ', '+', '?', '#', '.', '\0', '~', '&', 'é']),
    ];
    prop::collection::vec(chars, 1..200)
        .prop_map(|chars| {
            let mut key = String::new();
            for c in chars {
                if key.len() + c.len_utf8() > 512 {
                    break;
                }
                key.push(c);
            }
            key
        })
        .prop_filter("a key the path can carry", |key| {
            !key.is_empty() && key != "." && key != ".."
        })
}

#[test]
fn any_key_claims_reads_and_answers_duplicate_to_another_claimant() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(spawn_app());
    let client = super::client_of(&app);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&keys(), |key| {
            runtime.block_on(async {
                let first = ClaimOptions::new().claimant("first");
                let answer = client.claim(&app.namespace, &key, &first).await.unwrap();
                // A key the strategy made twice is the first claimant's again.
                prop_assert!(
                    matches!(answer, ClaimAnswer::Acquired(_)),
                    "{key:?}: {answer:?}"
                );
                let view = client.get(&app.namespace, &key).await.unwrap();
                prop_assert_eq!(view.map(|view| view.state), Some(State::InProgress));
                let second = ClaimOptions::new().claimant("second");
                let answer = client.claim(&app.namespace, &key, &second).await.unwrap();
                prop_assert!(
                    matches!(answer, ClaimAnswer::Duplicate(_)),
                    "{key:?}: {answer:?}"
                );
                Ok(())
            })
        })
        .unwrap();
    drop(app);
}
