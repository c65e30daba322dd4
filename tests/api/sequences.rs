//! Per-stream sequence numbers: ordered runs, duplicates, gaps, races,
//! resets and bad input.

use dedupd::store::faults::Fault;
use dedupd::store::sequence_statement;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::faults::unknown;
use dedupd_test_support::{TestApp, metric_value, raw_request, spawn_app};

#[tokio::test]
async fn an_ordered_run_is_accepted_one_by_one() {
    let app = spawn_app().await;
    for seq in 1..=20 {
        let (status, body) = app.offer_seq("orders", seq).await;
        assert_eq!(status, StatusCode::OK, "{seq}: {body}");
        assert_eq!(body, json!({"outcome": "accepted", "last": seq}));
    }
    let (status, body) = app.stream("orders").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["last"], 20);
    assert!(body["updated_at"].is_string());
}

#[tokio::test]
async fn numbers_at_or_below_the_watermark_are_duplicates() {
    let app = spawn_app().await;
    for seq in 1..=3 {
        app.offer_seq("s", seq).await;
    }
    for seq in [1, 2, 3] {
        let (status, body) = app.offer_seq("s", seq).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body, json!({"outcome": "duplicate", "last": 3}));
    }
}

#[tokio::test]
async fn a_strict_stream_reports_a_gap_and_does_not_move() {
    let app = spawn_app().await;
    for seq in 1..=3 {
        app.offer_seq("strict", seq).await;
    }
    let (status, body) = app.offer_seq("strict", 6).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, json!({"outcome": "gap", "last": 3, "expected": 4}));
    let (_, view) = app.stream("strict").await;
    assert_eq!(view["last"], 3);
    // Redelivered from `expected`, the stream goes on.
    for seq in 4..=6 {
        let (status, _) = app.offer_seq("strict", seq).await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn allowed_gaps_are_accepted_with_the_skipped_range() {
    let app = spawn_app().await;
    app.offer_seq("multi", 1).await;
    let (status, body) = app
        .offer("multi", json!({"seq": 6, "allow_gaps": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"outcome": "accepted", "last": 6, "skipped": {"from": 2, "to": 5}})
    );
    let (status, body) = app
        .offer("multi", json!({"seq": 4, "allow_gaps": true}))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a skipped number stays behind the watermark"
    );
    assert_eq!(body["outcome"], "duplicate");
}

#[tokio::test]
async fn a_new_stream_stands_at_zero() {
    let app = spawn_app().await;
    let (status, body) = app.offer_seq("fresh", 5).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, json!({"outcome": "gap", "last": 0, "expected": 1}));
    let (status, _) = app.stream("fresh").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused offer creates nothing"
    );
    let (status, body) = app
        .offer("fresh", json!({"seq": 5, "allow_gaps": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["skipped"], json!({"from": 1, "to": 4}));
}

async fn race(app: &TestApp, stream: &str, seq: u64) -> Vec<(StatusCode, Value)> {
    join_all((0..32).map(|_| app.offer_seq(stream, seq))).await
}

#[tokio::test]
async fn thirty_two_concurrent_advancers_with_one_number_give_one_acceptance() {
    let app = spawn_app().await;
    // seq 1 races on creating the stream (INSERT … IF NOT EXISTS) …
    let answers = race(&app, "raced", 1).await;
    let accepted = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(accepted, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, body)| *status == StatusCode::OK
                || (*status == StatusCode::CONFLICT && body["outcome"] == "duplicate"))
    );
    // … seq 2 on moving it (UPDATE … IF last = 1).
    let answers = race(&app, "raced", 2).await;
    let accepted = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(accepted, 1, "{answers:?}");
    let (_, view) = app.stream("raced").await;
    assert_eq!(view["last"], 2);
}

#[tokio::test]
async fn put_resets_and_delete_removes_a_stream() {
    let app = spawn_app().await;
    let (status, body) = app.set_last("imported", 100).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["last"], 100);
    let (status, _) = app.offer_seq("imported", 101).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.offer_seq("imported", 50).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, body) = app.set_last("imported", 0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["last"], 0);
    let (status, body) = app.offer_seq("imported", 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_eq!(app.delete_stream("imported").await, StatusCode::NO_CONTENT);
    assert_eq!(app.delete_stream("imported").await, StatusCode::NOT_FOUND);
    let (status, _) = app.stream("imported").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.offer_seq("imported", 1).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a deleted stream starts again at zero"
    );
}

#[tokio::test]
async fn an_advance_that_lost_its_answer_is_accepted_once() {
    let app = spawn_app().await;
    app.offer_seq("flaky", 1).await;
    app.faults
        .inject(sequence_statement::ADVANCE, Fault::TimeoutAfterApply, 1);
    let (status, body) = app.offer_seq("flaky", 2).await;
    assert_eq!(status, StatusCode::OK, "the advance was ours: {body}");
    app.faults
        .inject(sequence_statement::ADVANCE, Fault::TimeoutBeforeSend, 1);
    let (status, body) = app.offer_seq("flaky", 3).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, view) = app.stream("flaky").await;
    assert_eq!(view["last"], 3);
    let metrics = app.metrics().await;
    let unknown = |resolution: &str| {
        metric_value(&metrics, &unknown(sequence_statement::ADVANCE, resolution))
    };
    assert_eq!(unknown("ours"), 1.0);
    assert_eq!(
        unknown("theirs"),
        1.0,
        "the unsent advance found the stream at 2"
    );
}

#[tokio::test]
async fn bad_sequence_input_gets_a_400_problem() {
    let app = spawn_app().await;
    let ns = app.namespace.clone();
    let path = |stream: &str| format!("/v1/namespaces/{ns}/sequences/{stream}");
    let long = "s".repeat(513);
    let long_offerer = format!(r#"{{"seq":1,"offerer":"{}"}}"#, "o".repeat(129));
    let cases: Vec<(&str, String, &str, u16)> = vec![
        ("POST", path("s"), r#"{"seq":0}"#, 400),
        ("POST", path("s"), r#"{"seq":-1}"#, 400),
        ("POST", path("s"), r#"{"seq":9223372036854775808}"#, 400),
        ("POST", path("s"), r#"{"seq":18446744073709551616}"#, 400),
        ("POST", path("s"), r#"{"seq":"1"}"#, 400),
        ("POST", path("s"), r#"{"seq":1.5}"#, 400),
        ("POST", path("s"), r#"{}"#, 400),
        ("POST", path("s"), "", 400),
        ("POST", path("s"), r#"{"seq":1,"gaps":true}"#, 400),
        ("POST", path("s"), r#"{"seq":1,"allow_gaps":"yes"}"#, 400),
        ("POST", path("s"), r#"{"seq":1,"offerer":""}"#, 400),
        ("POST", path("s"), &long_offerer, 400),
        ("POST", path("s"), r#"{"seq":1,"offerer":7}"#, 400),
        ("PUT", path("s"), r#"{"last":-1}"#, 400),
        ("PUT", path("s"), r#"{"last":9223372036854775808}"#, 400),
        ("PUT", path("s"), r#"{"seq":1}"#, 400),
        ("POST", path(&long), r#"{"seq":1}"#, 400),
        ("POST", path("a%zz"), r#"{"seq":1}"#, 400),
        (
            "POST",
            "/v1/namespaces/UPPER/sequences/s".into(),
            r#"{"seq":1}"#,
            400,
        ),
        ("PATCH", path("s"), r#"{"seq":1}"#, 405),
    ];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &cases {
        let (status, head, text) = raw_request(
            &app,
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await;
        let is_problem = head
            .to_ascii_lowercase()
            .contains("application/problem+json");
        if status != *expected || !is_problem {
            failures.push(format!("{method} {path} {body} gave {status}: {text}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let (status, _) = app.stream("s").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was written");
}

#[tokio::test]
async fn an_offerer_offering_its_own_number_again_hears_accepted() {
    let app = spawn_app().await;
    let offer = |seq: u64, offerer: &'static str| {
        let app = &app;
        async move {
            app.offer("mine", json!({"seq": seq, "offerer": offerer}))
                .await
        }
    };
    let (status, body) = offer(1, "consumer-a").await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({"outcome": "accepted", "last": 1}))
    );
    // Its retry (say, after a 503 or a lost answer) is re-entrant...
    let (status, body) = offer(1, "consumer-a").await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({"outcome": "accepted", "last": 1}))
    );
    // ...and stays so after others moved the stream on.
    let (status, _) = offer(2, "consumer-b").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = offer(1, "consumer-a").await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({"outcome": "accepted", "last": 1}))
    );
    // Anyone else, or no offerer at all, hears duplicate.
    for (status, body) in [offer(1, "consumer-b").await, app.offer_seq("mine", 1).await] {
        assert_eq!(
            (status, &body),
            (
                StatusCode::CONFLICT,
                &json!({"outcome": "duplicate", "last": 2})
            )
        );
    }
    // An advance lost before it ran is counted as not landed, although the
    // ring holds the offerer's token (for 1): only the offered number counts.
    app.faults
        .inject(sequence_statement::ADVANCE, Fault::TimeoutBeforeSend, 1);
    let (status, body) = offer(3, "consumer-a").await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({"outcome": "accepted", "last": 3}))
    );
    let metrics = app.metrics().await;
    let unknown = |resolution: &str| {
        metric_value(&metrics, &unknown(sequence_statement::ADVANCE, resolution))
    };
    assert_eq!((unknown("ours"), unknown("theirs")), (0.0, 1.0));
}
