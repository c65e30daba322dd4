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

use dedupd::check::wire_faults::{ProxyLayout, into_cas_write_timeout, lwt_answer};
use dedupd::claims::ReadFirstPolicy;
use dedupd::store::statement;
use reqwest::StatusCode;
use scylla_proxy::{
    Condition, Reaction, RequestFrame, RequestOpcode, RequestReaction, RequestRule, ResponseFrame,
    ResponseReaction, ResponseRule, RunningProxy, TargetShard,
};
use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::database::database;
use crate::faults::unknown;
use crate::helpers::{TestApp, TestOptions, metric_value, spawn_app_with};

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
        ..TestOptions::default()
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
