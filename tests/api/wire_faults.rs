//! Faults on the wire: a CQL proxy (scylla-proxy) between dedupd and the
//! database loses an answer, forges a CAS write timeout, loses a request,
//! drops the connection, or holds a write back until the driver has given
//! up on it, once, at a chosen moment. Unlike the fault seam (faults.rs),
//! nothing inside dedupd is faked: the real driver meets the fault, with
//! its own timeouts, retry policy and reconnection. The rules count
//! requests in order, so these tests assume one node (the local one).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dedupd::claims::ReadFirstPolicy;
use dedupd::store::statement;
use dedupd_lab::check::wire_faults::{ProxyLayout, into_cas_write_timeout, lwt_answer};
use reqwest::StatusCode;
use scylla_proxy::{
    Condition, Reaction, RequestFrame, RequestOpcode, RequestReaction, RequestRule, ResponseFrame,
    ResponseReaction, ResponseRule, RunningProxy, TargetShard,
};
use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::faults::unknown;
use dedupd_test_support::database;
use dedupd_test_support::{TestApp, TestOptions, metric_value, result_statuses, spawn_app_with};

/// First loopback octet of these tests' proxies (the checker's use 21 on).
const PROXY_FIRST_OCTET: u8 = 11;

/// The driver's request timeout here: what a lost answer costs.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(2000);

struct ProxiedApp {
    app: TestApp,
    proxy: RunningProxy,
}

/// A dedupd whose every CQL connection goes through a proxy that, for now,
/// passes everything: the rules are set once the app is ready, so that
/// start-up traffic never meets them.
async fn spawn_proxied_app() -> ProxiedApp {
    spawn_proxied_app_with(TestOptions::default()).await
}

/// `spawn_proxied_app` with other knobs (the proxy's are always set).
async fn spawn_proxied_app_with(options: TestOptions) -> ProxiedApp {
    let mut nodes = Vec::new();
    for node in &database().nodes {
        let real: SocketAddr = tokio::net::lookup_host(node.as_str())
            .await
            .unwrap_or_else(|error| panic!("cannot resolve {node}: {error}"))
            .next()
            .unwrap_or_else(|| panic!("{node} resolves to no address"));
        nodes.push(real);
    }
    let layout = ProxyLayout::plan(&nodes, PROXY_FIRST_OCTET).expect("free loopback addresses");
    let proxy = layout
        .proxy(Vec::new, Vec::new)
        .run()
        .await
        .expect("start the CQL proxy");
    let app = spawn_app_with(TestOptions {
        nodes: Some(layout.contact_points()),
        address_map: layout.address_map,
        request_timeout: Some(REQUEST_TIMEOUT),
        // Every claim goes straight to its LWT, so the first EXECUTE after
        // the rules are set is the claim's.
        read_first: ReadFirstPolicy::Never,
        ..options
    })
    .await;
    ProxiedApp { app, proxy }
}

impl ProxiedApp {
    /// Acts once on the next LWT answer; the receiver hears when it did.
    fn on_next_lwt_answer(
        &mut self,
        reaction: ResponseReaction,
    ) -> UnboundedReceiver<(ResponseFrame, Option<TargetShard>)> {
        let (done, heard) = unbounded_channel();
        for node in &mut self.proxy.running_nodes {
            node.change_response_rules(Some(vec![ResponseRule(
                lwt_answer().and(Condition::TrueForLimitedTimes(1)),
                reaction.clone().with_feedback_when_performed(done.clone()),
            )]));
        }
        heard
    }

    /// Acts once on the next EXECUTE request.
    fn on_next_execute(
        &mut self,
        reaction: RequestReaction,
    ) -> UnboundedReceiver<(RequestFrame, Option<TargetShard>)> {
        let (done, heard): (UnboundedSender<_>, _) = unbounded_channel();
        for node in &mut self.proxy.running_nodes {
            node.change_request_rules(Some(vec![RequestRule(
                Condition::RequestOpcode(RequestOpcode::Execute)
                    .and(Condition::TrueForLimitedTimes(1)),
                reaction.clone().with_feedback_when_performed(done.clone()),
            )]));
        }
        heard
    }

    /// The next EXECUTE requests, in order, meet these reactions (`None`
    /// passes one through); later ones pass.
    fn on_next_executes(&mut self, reactions: Vec<Option<RequestReaction>>) {
        let rules: Vec<RequestRule> = reactions
            .into_iter()
            .map(|reaction| {
                RequestRule(
                    Condition::RequestOpcode(RequestOpcode::Execute)
                        .and(Condition::TrueForLimitedTimes(1)),
                    reaction.unwrap_or_else(RequestReaction::noop),
                )
            })
            .collect();
        for node in &mut self.proxy.running_nodes {
            node.change_request_rules(Some(rules.clone()));
        }
    }

    async fn unknown_outcomes(&self, statement: &str, resolution: &str) -> f64 {
        metric_value(&self.app.metrics().await, &unknown(statement, resolution))
    }

    /// The claim is held by `token`: others hear duplicate, and it completes.
    async fn assert_held_by(&self, key: &str, token: &str) {
        let (status, body) = self.app.claim_json(key, json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["state"], "in_progress", "{body}");
        let (status, body) = self.app.complete(key, token, json!("done")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the token handed out owns it: {body}"
        );
    }
}

fn fired<T>(heard: &mut UnboundedReceiver<T>) -> bool {
    heard.try_recv().is_ok()
}

#[tokio::test]
async fn a_claim_whose_answer_is_lost_on_the_wire_is_acquired() {
    let mut proxied = spawn_proxied_app().await;
    let mut heard = proxied.on_next_lwt_answer(ResponseReaction::drop_frame());
    let (status, body) = proxied.app.claim_json("answer-lost", json!({})).await;
    assert!(fired(&mut heard), "the proxy must have dropped the answer");
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the winner must hear it won: {body}"
    );
    assert_eq!(
        proxied.unknown_outcomes(statement::INSERT, "ours").await,
        1.0
    );
    let token = body["token"].as_str().unwrap().to_owned();
    proxied.assert_held_by("answer-lost", &token).await;
}

#[tokio::test]
async fn a_claim_answered_with_a_cas_write_timeout_after_applying_is_acquired() {
    let mut proxied = spawn_proxied_app().await;
    let mut heard = proxied.on_next_lwt_answer(ResponseReaction::transform_frame(Arc::new(
        into_cas_write_timeout,
    )));
    let (status, body) = proxied.app.claim_json("cas-timeout", json!({})).await;
    assert!(fired(&mut heard), "the proxy must have forged the timeout");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        proxied.unknown_outcomes(statement::INSERT, "ours").await,
        1.0
    );
    let token = body["token"].as_str().unwrap().to_owned();
    proxied.assert_held_by("cas-timeout", &token).await;
}

#[tokio::test]
async fn a_claim_whose_request_is_lost_on_the_wire_is_tried_again_and_acquired() {
    let mut proxied = spawn_proxied_app().await;
    let mut heard = proxied.on_next_execute(RequestReaction::drop_frame());
    let (status, body) = proxied.app.claim_json("request-lost", json!({})).await;
    assert!(fired(&mut heard), "the proxy must have dropped the request");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        proxied.unknown_outcomes(statement::INSERT, "absent").await,
        1.0,
        "the serial read found nothing, so the claim was written again"
    );
    let token = body["token"].as_str().unwrap().to_owned();
    proxied.assert_held_by("request-lost", &token).await;
}

#[tokio::test]
async fn a_connection_dropped_under_a_claim_loses_nothing() {
    let mut proxied = spawn_proxied_app().await;
    let mut heard = proxied.on_next_execute(RequestReaction::drop_connection());
    let (status, body) = proxied
        .app
        .claim_json("connection-dropped", json!({}))
        .await;
    assert!(
        fired(&mut heard),
        "the proxy must have dropped the connection"
    );
    // The claim's request died with the connection, unsent. The driver
    // does not retry a non-idempotent statement by itself; dedupd resolves
    // the unknown outcome on the reconnected pool and writes the claim.
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        proxied.unknown_outcomes(statement::INSERT, "absent").await,
        1.0
    );
    let token = body["token"].as_str().unwrap().to_owned();
    proxied.assert_held_by("connection-dropped", &token).await;
}

#[tokio::test]
async fn a_completion_whose_answer_is_lost_on_the_wire_is_completed() {
    let mut proxied = spawn_proxied_app().await;
    let token = proxied.app.acquire("complete-lost", json!({})).await;
    let mut heard = proxied.on_next_lwt_answer(ResponseReaction::drop_frame());
    let (status, body) = proxied
        .app
        .complete("complete-lost", &token, json!({"charged": 42}))
        .await;
    assert!(fired(&mut heard), "the proxy must have dropped the answer");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        proxied.unknown_outcomes(statement::COMPLETE, "ours").await,
        1.0
    );
    let (status, body) = proxied.app.claim_json("complete-lost", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["state"], "completed", "{body}");
    assert_eq!(body["result"], json!({"charged": 42}), "{body}");
}

/// A conditional write that reaches Cassandra only after the driver gave up
/// on it: held back past the request timeout, so that the serial read
/// resolving the unknown outcome misses it, and it lands before the retry.
/// (Cassandra's coordinator does the same on its own: it retries a
/// preempted CAS until cas_contention_timeout, client or no client.)
fn lands_late() -> Option<RequestReaction> {
    Some(RequestReaction::delay(
        REQUEST_TIMEOUT + Duration::from_millis(300),
    ))
}

/// The retry after the resolution, held back until the late write landed.
fn retried_after_it() -> Option<RequestReaction> {
    Some(RequestReaction::delay(Duration::from_millis(600)))
}

#[tokio::test]
async fn an_advance_that_lands_after_its_timeout_is_accepted_not_called_a_duplicate() {
    let mut proxied = spawn_proxied_app().await;
    let (status, body) = proxied.app.offer("late", json!({"seq": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The advance to 2, the serial read, the advance again.
    proxied.on_next_executes(vec![lands_late(), None, retried_after_it()]);
    let (status, body) = proxied.app.offer("late", json!({"seq": 2})).await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({"outcome": "accepted", "last": 2})),
        "the number this request wrote was reported as someone else's"
    );
    let (status, body) = proxied.app.offer("late", json!({"seq": 2})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn a_release_that_lands_after_its_timeout_is_released_not_called_missing() {
    let mut proxied = spawn_proxied_app().await;
    let token = proxied.app.acquire("late-release", json!({})).await;
    // The read of our window, the delete, the serial read, the delete again.
    proxied.on_next_executes(vec![None, lands_late(), None, retried_after_it()]);
    let (status, body) = proxied.app.release("late-release", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "released", "{body}");
    let (status, body) = proxied.app.claim_json("late-release", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "the key is free: {body}");
}

#[tokio::test]
async fn a_claim_that_lands_after_its_timeout_is_acquired_by_its_own_token() {
    let mut proxied = spawn_proxied_app().await;
    // The insert, the serial read (nothing yet), the insert again (refused:
    // the late one landed, with this request's token).
    proxied.on_next_executes(vec![lands_late(), None, retried_after_it()]);
    let (status, body) = proxied.app.claim_json("late-claim", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    proxied.assert_held_by("late-claim", &token).await;
}

#[tokio::test]
async fn a_stream_delete_that_lands_after_its_timeout_is_deleted_not_called_missing() {
    let mut proxied = spawn_proxied_app().await;
    let (status, body) = proxied.app.offer("late-delete", json!({"seq": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The delete, the serial read (still there), the delete again.
    proxied.on_next_executes(vec![lands_late(), None, retried_after_it()]);
    let status = proxied.app.delete_stream("late-delete").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = proxied.app.offer("late-delete", json!({"seq": 1})).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a deleted stream starts again: {body}"
    );
}

/// Every EXECUTE (every statement) is held back this long from now on.
fn slow_down_every_statement(proxied: &mut ProxiedApp, delay: Duration) {
    for node in &mut proxied.proxy.running_nodes {
        node.change_request_rules(Some(vec![RequestRule(
            Condition::RequestOpcode(RequestOpcode::Execute),
            RequestReaction::delay(delay),
        )]));
    }
}

#[tokio::test]
async fn a_batch_on_a_slow_database_answers_every_key_within_its_deadline() {
    let mut proxied = spawn_proxied_app_with(TestOptions {
        budget: dedupd::claims::RetryBudget {
            deadline: Duration::from_secs(2),
            ..Default::default()
        },
        ..TestOptions::default()
    })
    .await;
    let keys: Vec<String> = (0..256).map(|index| format!("slow-{index:03}")).collect();
    let claims: Vec<_> = keys.iter().map(|key| json!({ "key": key })).collect();
    // 256 keys, 32 at a time, 400 ms a statement: eight rounds take 3.2 s,
    // past the 2 s deadline, so some keys cannot start in time.
    slow_down_every_statement(&mut proxied, Duration::from_millis(400));
    let (status, body) = proxied.app.claim_batch(json!({ "claims": claims })).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "never a whole-call 503 once keys were acquired"
    );
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), keys.len());
    let (mut acquired, mut not_attempted) = (Vec::new(), Vec::new());
    for result in results {
        let key = result["key"].as_str().unwrap().to_owned();
        match (result["status"].as_u64(), result["outcome"].as_str()) {
            (Some(201), Some("acquired")) => acquired.push(key),
            (Some(503), Some("not_attempted")) => {
                assert_eq!(result["type"], "urn:dedupd:problem:not-attempted");
                assert_eq!(result["retry_after_secs"], 1);
                not_attempted.push(key);
            }
            _ => panic!("every key is acquired or not attempted: {result}"),
        }
    }
    println!(
        "batch of {} keys, 400 ms a statement, 2 s deadline: {} acquired, {} not attempted",
        keys.len(),
        acquired.len(),
        not_attempted.len()
    );
    assert!(
        !acquired.is_empty(),
        "the first round had the whole deadline"
    );
    assert!(!not_attempted.is_empty(), "8 rounds cannot fit in 2 s");
    for node in &mut proxied.proxy.running_nodes {
        node.change_request_rules(Some(Vec::new()));
    }
    let app = &proxied.app;
    // Acquired keys are held; keys not attempted were never written.
    let (status, body) = app.claim_json(&acquired[0], json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for key in not_attempted.iter().take(8) {
        let (status, body) = app.claim_json(key, json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{key} was not written: {body}");
    }
}

#[tokio::test]
async fn a_statement_the_database_refuses_is_a_503_for_that_key_alone() {
    let mut proxied = spawn_proxied_app().await;
    // Single claim: a refusal (nothing written) is a retryable 503.
    let mut heard = proxied.on_next_execute(RequestReaction::forge().invalid());
    let response = proxied.app.claim("refused", json!({})).await;
    assert!(fired(&mut heard), "the proxy must have forged the refusal");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    let (_, body) = dedupd_test_support::json_of(response).await;
    assert_eq!(body["type"], "urn:dedupd:problem:store-refused", "{body}");
    let (status, body) = proxied.app.claim_json("refused", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "nothing was written: {body}");

    // Batch: one key's refusal is that key's 503, the others are claimed.
    proxied.on_next_executes(vec![Some(RequestReaction::forge().invalid())]);
    let (status, body) = proxied
        .app
        .claim_batch(json!({ "claims": [{ "key": "b1" }, { "key": "b2" }, { "key": "b3" }] }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let statuses = result_statuses(&body);
    assert_eq!(
        statuses.iter().filter(|status| **status == 503).count(),
        1,
        "{body}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 201).count(),
        2,
        "{body}"
    );
    let refused = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|result| result["status"] == 503)
        .unwrap();
    assert_eq!(refused["outcome"], "store_refused", "{body}");
    assert_eq!(refused["retry_after_secs"], 5, "{body}");
}

#[tokio::test]
async fn a_ttl_the_database_refuses_is_a_400_in_a_batch_too() {
    let mut proxied = spawn_proxied_app().await;
    // What Cassandra says of an expiry past its storage format's limit.
    let refusal = || {
        RequestReaction::forge_with_error_and_message(
            scylla::errors::DbError::Invalid,
            Some("Request on table with ttl of 630720000 seconds exceeds maximum supported expiration date of 2038-01-19T03:14:06+00:00".into()),
        )
    };
    proxied.on_next_executes(vec![Some(refusal())]);
    let (status, body) = proxied.app.claim_json("ttl-single", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    proxied.on_next_executes(vec![Some(refusal())]);
    let (status, body) = proxied
        .app
        .claim_batch(json!({ "claims": [{ "key": "ttl-batch" }] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result = &body["results"][0];
    assert_eq!(result["status"], 400, "the single claim's answer: {body}");
    assert_eq!(result["outcome"], "invalid_request");
    assert_eq!(result["type"], "urn:dedupd:problem:invalid-request");
}
