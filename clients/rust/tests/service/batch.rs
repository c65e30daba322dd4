//! Batch claims: one typed answer per key, in request order.

use std::time::Duration;

use dedupd_client::{BatchClaim, ClaimAnswer, ClaimOptions, Error, MAX_BATCH_KEYS, State};
use dedupd_test_support::spawn_app;

use super::{acquired, client_of, duplicate};

#[tokio::test]
async fn each_key_answers_as_a_single_claim_would() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    acquired(
        client
            .claim(ns, "held", &ClaimOptions::new().fingerprint("f1"))
            .await
            .unwrap(),
    );
    let claims = [
        BatchClaim::new("fresh"),
        BatchClaim::new("held").fingerprint("f1"),
    ];
    let options = ClaimOptions::new()
        .lease(Duration::from_secs(20))
        .claimant("batcher");
    let results = client.claim_batch(ns, &claims, &options).await.unwrap();
    let keys: Vec<&str> = results.iter().map(|result| result.key.as_str()).collect();
    assert_eq!(keys, ["fresh", "held"]);
    let mut results = results.into_iter();
    let fresh = acquired(results.next().unwrap().answer.unwrap());
    assert_eq!(fresh.claimant, "batcher");
    assert!(fresh.lease_expires_at.is_some());
    let other = duplicate(results.next().unwrap().answer.unwrap());
    assert_eq!(other.state, State::InProgress);
    assert!(other.retry_after.is_some(), "{other:?}");
    assert!(other.holder.is_some());

    // The batch's claimant gets its own token back.
    let again = client
        .claim_batch(ns, &[BatchClaim::new("fresh")], &options)
        .await
        .unwrap();
    let again = acquired(again.into_iter().next().unwrap().answer.unwrap());
    assert_eq!(again.token, fresh.token);

    // Another fingerprint is that key's error, with its status.
    let mismatch = client
        .claim_batch(
            ns,
            &[
                BatchClaim::new("held").fingerprint("f2"),
                BatchClaim::new("new"),
            ],
            &ClaimOptions::new(),
        )
        .await
        .unwrap();
    match &mismatch[0].answer {
        Err(error @ Error::FingerprintMismatch { .. }) => assert_eq!(error.status(), Some(422)),
        other => panic!("expected a fingerprint mismatch, got {other:?}"),
    }
    assert!(mismatch[1].answer.is_ok(), "{:?}", mismatch[1].answer);
}

#[tokio::test]
async fn completed_keys_replay_as_duplicates() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    let keys: Vec<BatchClaim> = (0..40).map(|i| BatchClaim::new(format!("k{i}"))).collect();
    let once = ClaimOptions::new().complete(true);
    let first = client.claim_batch(ns, &keys, &once).await.unwrap();
    assert!(
        first
            .iter()
            .all(|result| matches!(result.answer, Ok(ClaimAnswer::Acquired(_))))
    );
    let second = client.claim_batch(ns, &keys, &once).await.unwrap();
    for result in second {
        let replay = duplicate(result.answer.unwrap());
        assert_eq!(replay.state, State::Completed);
    }
}

#[tokio::test]
async fn what_a_batch_cannot_carry_is_refused_before_sending() {
    let app = spawn_app().await;
    let client = client_of(&app);
    let ns = &app.namespace;
    let empty = client.claim_batch(ns, &[], &ClaimOptions::new()).await;
    assert!(matches!(empty, Err(Error::Invalid { .. })), "{empty:?}");
    let too_many: Vec<BatchClaim> = (0..=MAX_BATCH_KEYS)
        .map(|i| BatchClaim::new(format!("k{i}")))
        .collect();
    let refused = client
        .claim_batch(ns, &too_many, &ClaimOptions::new())
        .await;
    assert!(matches!(refused, Err(Error::Invalid { .. })), "{refused:?}");
    let waiting = ClaimOptions::new().wait(Duration::from_secs(1));
    let refused = client
        .claim_batch(ns, &[BatchClaim::new("k")], &waiting)
        .await;
    assert!(matches!(refused, Err(Error::Invalid { .. })), "{refused:?}");
    // A key twice is the server's 400: a refusal with its status.
    let twice = [BatchClaim::new("k"), BatchClaim::new("k")];
    let error = client
        .claim_batch(ns, &twice, &ClaimOptions::new())
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(400), "{error}");
}
