//! The wire-faults phase: a CQL proxy (the `scylla-proxy` crate) sits
//! between the dedupd processes and every node and, at random, loses the
//! answers of conditional writes, turns them into CAS write timeouts, loses
//! requests before they reach Cassandra, holds requests back until the
//! driver has given up on them (they land late, as when Cassandra's
//! coordinator retries a preempted CAS), and drops whole connections.
//!
//! Unlike the failpoints (which fake an error inside dedupd, at the driver
//! boundary), these faults hit the real driver: its stream ids, its own
//! timeouts, its retry policy and its reconnection. A driver that retried a
//! conditional write after a broken connection would show up here as a
//! claimant answered "duplicate" for its own claim.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use scylla::errors::{DbError, WriteType};
use scylla::statement::Consistency;
use scylla_proxy::{
    Condition, Node, Proxy, Reaction, RequestOpcode, RequestReaction, RequestRule, ResponseFrame,
    ResponseOpcode, ResponseReaction, ResponseRule, RunningProxy, ShardAwareness,
};
use serde::Serialize;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// How often each fault strikes.
const LOSE_ANSWER: f64 = 0.03;
const CAS_TIMEOUT_ANSWER: f64 = 0.03;
const LOSE_REQUEST: f64 = 0.01;
const DELAY_REQUEST: f64 = 0.01;
const DROP_CONNECTION: f64 = 0.002;

/// How long a delayed request is held: past the driver's request timeout
/// in this phase (see `WIRE_FAULTS_REQUEST_TIMEOUT_MS`).
const LATE_BY: Duration = Duration::from_millis(1800);

/// The result of a conditional write carries the `[applied]` column in its
/// metadata (dedupd never asks the driver to skip result metadata), and no
/// other answer dedupd gets does: this is how the proxy tells an LWT's
/// answer from the answers of reads.
const APPLIED_COLUMN: &[u8] = b"[applied]";

/// How many faults of each kind the proxy injected.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Injected {
    pub answers_lost: usize,
    pub answers_made_cas_timeouts: usize,
    pub requests_lost: usize,
    pub requests_landed_late: usize,
    pub connections_dropped: usize,
}

impl Injected {
    pub fn total(&self) -> usize {
        self.answers_lost
            + self.answers_made_cas_timeouts
            + self.requests_lost
            + self.requests_landed_late
            + self.connections_dropped
    }
}

type Feedback<F> = (F, Option<scylla_proxy::TargetShard>);

/// Receivers of the frames each rule acted on: counted at the end.
struct Counters {
    answers_lost: UnboundedReceiver<Feedback<ResponseFrame>>,
    answers_made_cas_timeouts: UnboundedReceiver<Feedback<ResponseFrame>>,
    requests_lost: UnboundedReceiver<Feedback<scylla_proxy::RequestFrame>>,
    requests_landed_late: UnboundedReceiver<Feedback<scylla_proxy::RequestFrame>>,
    connections_dropped: UnboundedReceiver<Feedback<scylla_proxy::RequestFrame>>,
}

/// Where the proxy listens for each node, and the address map that makes
/// the driver dial the proxy for every node it discovers.
#[derive(Debug, Clone)]
pub struct ProxyLayout {
    /// (the node's address, the proxy's address for it)
    pub pairs: Vec<(SocketAddr, SocketAddr)>,
    pub address_map: HashMap<SocketAddr, SocketAddr>,
}

impl ProxyLayout {
    /// One proxy address per node: consecutive loopback IPs from
    /// 127.0.0.`first_octet`, all on one free port.
    ///
    /// The driver names a discovered node by the IP it announces and the
    /// port of the address it dialled first (not the node's own port), so
    /// every proxy listens on the same port and the map's keys pair each
    /// node's IP with that port.
    pub fn plan(nodes: &[SocketAddr], first_octet: u8) -> anyhow::Result<Self> {
        let first_ip = Ipv4Addr::new(127, 0, 0, first_octet);
        let port = std::net::TcpListener::bind((first_ip, 0))
            .with_context(|| format!("cannot listen on {first_ip}"))?
            .local_addr()?
            .port();
        let mut pairs = Vec::new();
        let mut address_map = HashMap::new();
        for (index, node) in nodes.iter().enumerate() {
            let octet = u8::try_from(usize::from(first_octet) + index)
                .context("too many nodes for the loopback range")?;
            let proxy = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, octet)), port);
            pairs.push((*node, proxy));
            address_map.insert(SocketAddr::new(node.ip(), port), proxy);
        }
        Ok(Self { pairs, address_map })
    }

    /// A proxy with one listener per node, each with its own rules.
    pub fn proxy(
        &self,
        request_rules: impl Fn() -> Vec<RequestRule>,
        response_rules: impl Fn() -> Vec<ResponseRule>,
    ) -> Proxy {
        let mut builder = Proxy::builder();
        for (real, proxy) in &self.pairs {
            builder = builder.with_node(
                Node::builder()
                    .real_address(*real)
                    .proxy_address(*proxy)
                    .shard_awareness(ShardAwareness::Unaware)
                    .request_rules(request_rules())
                    .response_rules(response_rules())
                    .build(),
            );
        }
        builder.build()
    }

    pub fn contact_points(&self) -> Vec<String> {
        self.pairs
            .iter()
            .map(|(_, proxy)| proxy.to_string())
            .collect()
    }

    /// `DEDUPD_CQL_ADDRESS_MAP`'s value.
    pub fn address_map_arg(&self) -> String {
        let pairs: Vec<String> = self
            .address_map
            .iter()
            .map(|(announced, dial)| format!("{announced}={dial}"))
            .collect();
        pairs.join(",")
    }
}

/// First loopback octet of the checker's proxies (the local nodes use
/// 127.0.0.1-3 and 127.0.0.9).
const PROXY_FIRST_OCTET: u8 = 21;

pub struct WireFaults {
    proxy: RunningProxy,
    counters: Counters,
    pub layout: ProxyLayout,
}

impl WireFaults {
    /// Starts one proxy listener per node.
    pub async fn start(nodes: &[String]) -> anyhow::Result<Self> {
        let nodes = nodes
            .iter()
            .map(|node| {
                node.parse::<SocketAddr>().with_context(|| {
                    format!("the wire-faults phase needs IP:port nodes, not {node}")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let layout = ProxyLayout::plan(&nodes, PROXY_FIRST_OCTET)?;
        let (lost_answer_tx, answers_lost) = unbounded_channel();
        let (cas_timeout_tx, answers_made_cas_timeouts) = unbounded_channel();
        let (lost_request_tx, requests_lost) = unbounded_channel();
        let (late_request_tx, requests_landed_late) = unbounded_channel();
        let (dropped_connection_tx, connections_dropped) = unbounded_channel();
        let proxy = layout.proxy(
            || request_rules(&lost_request_tx, &late_request_tx, &dropped_connection_tx),
            || response_rules(&lost_answer_tx, &cas_timeout_tx),
        );
        let proxy = proxy.run().await.context("cannot start the CQL proxy")?;
        Ok(Self {
            proxy,
            counters: Counters {
                answers_lost,
                answers_made_cas_timeouts,
                requests_lost,
                requests_landed_late,
                connections_dropped,
            },
            layout,
        })
    }

    /// Stops the proxy and counts what it did.
    pub async fn finish(mut self) -> anyhow::Result<Injected> {
        fn drain<T>(receiver: &mut UnboundedReceiver<T>) -> usize {
            std::iter::from_fn(|| receiver.try_recv().ok()).count()
        }
        let injected = Injected {
            answers_lost: drain(&mut self.counters.answers_lost),
            answers_made_cas_timeouts: drain(&mut self.counters.answers_made_cas_timeouts),
            requests_lost: drain(&mut self.counters.requests_lost),
            requests_landed_late: drain(&mut self.counters.requests_landed_late),
            connections_dropped: drain(&mut self.counters.connections_dropped),
        };
        // Worker errors are mostly connections the faults themselves broke.
        if let Err(error) = self.proxy.finish().await {
            tracing::debug!(%error, "the CQL proxy reported an error");
        }
        Ok(injected)
    }
}

/// Matches the answer of a conditional write (applied or not).
pub fn lwt_answer() -> Condition {
    Condition::ResponseOpcode(ResponseOpcode::Result)
        .and(Condition::BodyContainsCaseSensitive(APPLIED_COLUMN.into()))
}

fn response_rules(
    lost_answer: &UnboundedSender<Feedback<ResponseFrame>>,
    cas_timeout: &UnboundedSender<Feedback<ResponseFrame>>,
) -> Vec<ResponseRule> {
    vec![
        // The write happened (or lost its race), but nobody hears of it:
        // the driver's request timeout fires, an unknown outcome.
        ResponseRule(
            lwt_answer().and(Condition::RandomWithProbability(LOSE_ANSWER)),
            ResponseReaction::drop_frame().with_feedback_when_performed(lost_answer.clone()),
        ),
        // What Cassandra answers when Paxos times out after the proposal
        // may have been accepted: WriteTimeout, write type CAS.
        ResponseRule(
            lwt_answer().and(Condition::RandomWithProbability(CAS_TIMEOUT_ANSWER)),
            ResponseReaction::transform_frame(Arc::new(into_cas_write_timeout))
                .with_feedback_when_performed(cas_timeout.clone()),
        ),
    ]
}

fn request_rules(
    lost_request: &UnboundedSender<Feedback<scylla_proxy::RequestFrame>>,
    late_request: &UnboundedSender<Feedback<scylla_proxy::RequestFrame>>,
    dropped_connection: &UnboundedSender<Feedback<scylla_proxy::RequestFrame>>,
) -> Vec<RequestRule> {
    let execute = || Condition::RequestOpcode(RequestOpcode::Execute);
    vec![
        // Lost on the way in: nothing happened, and nobody answers.
        RequestRule(
            execute().and(Condition::RandomWithProbability(LOSE_REQUEST)),
            RequestReaction::drop_frame().with_feedback_when_performed(lost_request.clone()),
        ),
        // Reaches Cassandra after the driver gave up on it: the serial read
        // that resolves the unknown outcome may miss it, and the retry may
        // meet it.
        RequestRule(
            execute().and(Condition::RandomWithProbability(DELAY_REQUEST)),
            RequestReaction::delay(LATE_BY).with_feedback_when_performed(late_request.clone()),
        ),
        // Every request in flight on the connection ends in a broken
        // connection, some of them applied.
        RequestRule(
            execute().and(Condition::RandomWithProbability(DROP_CONNECTION)),
            RequestReaction::drop_connection()
                .with_feedback_when_performed(dropped_connection.clone()),
        ),
    ]
}

/// Replaces an LWT's answer with the error Cassandra gives when Paxos
/// times out, keeping the stream id so that the driver matches it.
pub fn into_cas_write_timeout(answer: ResponseFrame) -> ResponseFrame {
    let error = DbError::WriteTimeout {
        consistency: Consistency::Serial,
        received: 1,
        required: 2,
        write_type: WriteType::Cas,
    };
    let message = Some("CAS operation timed out (injected by dedupd check)");
    match ResponseFrame::forged_error(answer.params, error, message) {
        Ok(mut forged) => {
            forged.params = answer.params;
            forged
        }
        // The message is short: forging cannot fail. Should it, the real
        // answer goes through.
        Err(_) => answer,
    }
}
