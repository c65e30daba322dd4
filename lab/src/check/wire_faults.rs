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

/// One kind of fault: the frames it may strike, how often, what it does to
/// them, and the channel on which the proxy reports every strike (counted
/// when the phase ends).
struct Fault<R: Reaction> {
    frames: fn() -> Condition,
    probability: f64,
    reaction: fn() -> R,
    struck_tx: UnboundedSender<Feedback<R::Incoming>>,
    struck_rx: UnboundedReceiver<Feedback<R::Incoming>>,
}

type Feedback<F> = (F, Option<scylla_proxy::TargetShard>);

impl<R: Reaction> Fault<R> {
    fn new(frames: fn() -> Condition, probability: f64, reaction: fn() -> R) -> Self {
        let (struck_tx, struck_rx) = unbounded_channel();
        Self {
            frames,
            probability,
            reaction,
            struck_tx,
            struck_rx,
        }
    }

    /// The proxy rule (`RequestRule` or `ResponseRule`) that injects it.
    fn rule<Rule>(&self, rule: fn(Condition, R) -> Rule) -> Rule {
        rule(
            (self.frames)().and(Condition::RandomWithProbability(self.probability)),
            (self.reaction)().with_feedback_when_performed(self.struck_tx.clone()),
        )
    }

    /// How many times it struck so far.
    fn count(&mut self) -> usize {
        std::iter::from_fn(|| self.struck_rx.try_recv().ok()).count()
    }
}

/// The faults the proxy injects, each frame kind in the order its rules
/// are tried.
struct Faults {
    answers_lost: Fault<ResponseReaction>,
    answers_made_cas_timeouts: Fault<ResponseReaction>,
    requests_lost: Fault<RequestReaction>,
    requests_landed_late: Fault<RequestReaction>,
    connections_dropped: Fault<RequestReaction>,
}

impl Faults {
    fn new() -> Self {
        let execute = || Condition::RequestOpcode(RequestOpcode::Execute);
        Self {
            // The write happened (or lost its race), but nobody hears of it:
            // the driver's request timeout fires, an unknown outcome.
            answers_lost: Fault::new(lwt_answer, LOSE_ANSWER, ResponseReaction::drop_frame),
            // What Cassandra answers when Paxos times out after the proposal
            // may have been accepted: WriteTimeout, write type CAS.
            answers_made_cas_timeouts: Fault::new(lwt_answer, CAS_TIMEOUT_ANSWER, || {
                ResponseReaction::transform_frame(Arc::new(into_cas_write_timeout))
            }),
            // Lost on the way in: nothing happened, and nobody answers.
            requests_lost: Fault::new(execute, LOSE_REQUEST, RequestReaction::drop_frame),
            // Reaches Cassandra after the driver gave up on it: the serial
            // read that resolves the unknown outcome may miss it, and the
            // retry may meet it.
            requests_landed_late: Fault::new(execute, DELAY_REQUEST, || {
                RequestReaction::delay(LATE_BY)
            }),
            // Every request in flight on the connection ends in a broken
            // connection, some of them applied.
            connections_dropped: Fault::new(
                execute,
                DROP_CONNECTION,
                RequestReaction::drop_connection,
            ),
        }
    }

    fn request_rules(&self) -> Vec<RequestRule> {
        [
            &self.requests_lost,
            &self.requests_landed_late,
            &self.connections_dropped,
        ]
        .map(|fault| fault.rule(RequestRule))
        .into()
    }

    fn response_rules(&self) -> Vec<ResponseRule> {
        [&self.answers_lost, &self.answers_made_cas_timeouts]
            .map(|fault| fault.rule(ResponseRule))
            .into()
    }

    fn injected(&mut self) -> Injected {
        Injected {
            answers_lost: self.answers_lost.count(),
            answers_made_cas_timeouts: self.answers_made_cas_timeouts.count(),
            requests_lost: self.requests_lost.count(),
            requests_landed_late: self.requests_landed_late.count(),
            connections_dropped: self.connections_dropped.count(),
        }
    }
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
    faults: Faults,
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
        let faults = Faults::new();
        let proxy = layout.proxy(|| faults.request_rules(), || faults.response_rules());
        let proxy = proxy.run().await.context("cannot start the CQL proxy")?;
        Ok(Self {
            proxy,
            faults,
            layout,
        })
    }

    /// Stops the proxy and counts what it did.
    pub async fn finish(mut self) -> anyhow::Result<Injected> {
        let injected = self.faults.injected();
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
