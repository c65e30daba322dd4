//! The checker's clients: claimants that complete, release or abandon what
//! they win, and consumers racing to advance the same streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use dedupd_client::{
    Advance, ClaimAnswer as Claimed, ClaimOptions, Client, Error, Readiness, RetryBudget, State,
};
use tokio::time::Instant;

use super::history::{
    ClaimAnswer, ClaimRecord, History, SequenceAnswer, SequenceRecord, Span, TransitionKind,
    TransitionRecord,
};
use crate::rng::Dice;

/// How long a client waits for an answer before calling it lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// A client of one dedupd instance as the checker needs it: one attempt
/// per call (every attempt is recorded as it happened, so the client must
/// not retry behind the history's back), every wait bounded.
pub fn client_of(base: &str) -> Client {
    Client::builder(base)
        .retry_budget(RetryBudget::none())
        .request_timeout(ANSWER_TIMEOUT)
        // The checker dials processes it kills.
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("a dedupd client for the checker")
}

/// Whether the instance answers `/readyz` with ready.
pub async fn is_ready(client: &Client) -> bool {
    client
        .readiness()
        .await
        .is_ok_and(|readiness| readiness == Readiness::Ready)
}

/// What the history records for an error of a claim or an offer: no answer,
/// a 503 (and whether it said when to retry), or any other status. A body
/// the client could not read is `Unexpected` with its status: the history
/// reports it, it is never taken for a benign answer.
enum Failed {
    NoAnswer,
    Unavailable {
        retry_after: bool,
    },
    /// Any other status, the transitions' refusals among them.
    Status(u16),
}

fn failed(error: &Error) -> Failed {
    match error.status() {
        Some(503) => Failed::Unavailable {
            retry_after: error.has_retry_after(),
        },
        Some(status) => Failed::Status(status),
        None if error.is_no_answer() => Failed::NoAnswer,
        // Only a request this checker could not make: its own bug.
        None => panic!("the checker's request could not be made: {error}"),
    }
}

/// What every client of a phase shares: how it speaks, where it sends, and
/// when it stops.
#[derive(Clone)]
pub struct ClientContext {
    /// A client of each instance, tried in turn.
    pub instances: Arc<Vec<Client>>,
    pub namespace: String,
    pub until: Instant,
}

impl ClientContext {
    fn running(&self) -> bool {
        Instant::now() < self.until
    }

    /// The client of the instance whose `turn` it is.
    fn on(&self, turn: u64) -> &Client {
        &self.instances[(turn % self.instances.len() as u64) as usize]
    }
}

/// Runs `call` and returns its outcome with when it was sent and answered.
async fn timed<T>(call: impl std::future::Future<Output = T>) -> (T, Span) {
    let sent = Utc::now();
    let outcome = call.await;
    let answered = Utc::now();
    (outcome, Span { sent, answered })
}

pub struct ClaimWorkload {
    pub clients: usize,
    /// How many keys are in play at once: few, so that claimants collide.
    pub window: u64,
    /// Every this often the window moves on by one key, so that new keys
    /// keep coming (a key, once completed, only answers duplicates).
    pub shift_every: Duration,
    pub lease_secs: u64,
}

/// The checker's claimant whose holder label an answer showed (answers never
/// name a claimant), or the label itself when it is none of ours: the
/// history then reports a holder nobody was granted.
fn claimant_of_holder(label: &str) -> String {
    static CLAIMANTS: std::sync::LazyLock<std::collections::HashMap<String, String>> =
        std::sync::LazyLock::new(|| {
            (0..1024)
                .map(|client| format!("c{client}"))
                .map(|claimant| (dedupd::domain::holder_label(&claimant), claimant))
                .collect()
        });
    CLAIMANTS
        .get(label)
        .cloned()
        .unwrap_or_else(|| label.to_owned())
}

/// One claimant: claim a random key; when granted, complete it (7 in 10),
/// release it (1.5 in 10) or abandon it as a crashed worker would (1.5 in 10).
pub async fn claimant(
    context: ClientContext,
    workload: Arc<ClaimWorkload>,
    client: usize,
) -> History {
    let mut history = History::default();
    let claimant = format!("c{client}");
    let options = ClaimOptions::new()
        .lease(Duration::from_secs(workload.lease_secs))
        .ttl(Duration::from_secs(3600))
        .claimant(claimant.clone());
    let mut dice = Dice::new(client as u64 + 1);
    let mut turn = client as u64;
    let started = Instant::now();
    while context.running() {
        let window_start =
            (started.elapsed().as_millis() / workload.shift_every.as_millis().max(1)) as u64;
        let key = format!("k{}", window_start + dice.below(workload.window));
        turn += 1;
        let client = context.on(turn);
        let (answer, span) = timed(client.claim(&context.namespace, &key, &options)).await;
        let recorded = match answer {
            Ok(Claimed::Acquired(lease)) => ClaimAnswer::Granted {
                token: lease.token,
                takeover: lease.takeover,
                lease_end: lease.lease_expires_at,
            },
            Ok(Claimed::Duplicate(duplicate)) => ClaimAnswer::Duplicate {
                completed: duplicate.state == State::Completed,
                holder: duplicate.holder.as_deref().map(claimant_of_holder),
                lease_end: duplicate.lease_expires_at,
            },
            Err(error) => match failed(&error) {
                Failed::NoAnswer => ClaimAnswer::NoAnswer,
                Failed::Unavailable { retry_after } => ClaimAnswer::Unavailable { retry_after },
                Failed::Status(status) => ClaimAnswer::Unexpected(status),
            },
        };
        let token = match &recorded {
            ClaimAnswer::Granted { token, .. } => Some(token.clone()),
            _ => None,
        };
        let pause = match &recorded {
            ClaimAnswer::Unavailable { .. } => Duration::from_millis(200),
            ClaimAnswer::NoAnswer => Duration::from_millis(100),
            _ => Duration::from_millis(5),
        };
        history.claims.push(ClaimRecord {
            key: key.clone(),
            claimant: claimant.clone(),
            span,
            answer: recorded,
        });
        let Some(token) = token else {
            tokio::time::sleep(pause).await;
            continue;
        };
        let roll = dice.below(100);
        let kind = match roll {
            0..70 => TransitionKind::Complete,
            70..85 => TransitionKind::Release,
            _ => continue, // abandoned: the lease will pass to someone else
        };
        // The work itself.
        tokio::time::sleep(Duration::from_millis(dice.below(100))).await;
        turn += 1;
        let client = context.on(turn);
        let namespace = &context.namespace;
        let (answer, span) = match kind {
            TransitionKind::Complete => {
                let result = serde_json::json!({"by": claimant});
                let (done, span) =
                    timed(client.complete(namespace, &key, &token, Some(&result))).await;
                (done.map(|_| ()), span)
            }
            TransitionKind::Release => timed(client.release(namespace, &key, &token)).await,
        };
        // 200, or the error's status; none when no answer came. An answer
        // the client could not read is recorded as malformed, with its
        // status, so that the history reports it.
        let (status, malformed) = match &answer {
            Ok(()) => (Some(200), false),
            Err(error) => match failed(error) {
                Failed::NoAnswer => (None, false),
                Failed::Unavailable { .. } => (Some(503), false),
                Failed::Status(status) => (Some(status), matches!(error, Error::Protocol { .. })),
            },
        };
        history.transitions.push(TransitionRecord {
            key,
            token,
            kind,
            span,
            status,
            malformed,
        });
    }
    history
}

/// One consumer of `streams` streams: offers the number after the highest
/// it knows of, racing the other consumers for it.
pub async fn consumer(
    context: ClientContext,
    known: Arc<Vec<AtomicU64>>,
    client: usize,
) -> History {
    let mut history = History::default();
    let mut dice = Dice::new(1000 + client as u64);
    let mut turn = client as u64;
    let offerer = format!("consumer-{client}");
    // An offer whose answer this consumer did not get (no answer, 503) is
    // offered again, as a real consumer would before acting on the
    // message: with its offerer id, a number it won answers "accepted".
    let mut undecided: Option<(usize, u64)> = None;
    while context.running() {
        let (stream_index, seq) = undecided.take().unwrap_or_else(|| {
            let stream_index = dice.below(known.len() as u64) as usize;
            (stream_index, known[stream_index].load(Ordering::SeqCst) + 1)
        });
        let stream = format!("s{stream_index}");
        turn += 1;
        let client = context.on(turn);
        let (answer, span) =
            timed(client.advance(&context.namespace, &stream, seq, Some(&offerer))).await;
        let recorded = match answer {
            Ok(Advance::Accepted { .. }) => {
                known[stream_index].fetch_max(seq, Ordering::SeqCst);
                SequenceAnswer::Accepted
            }
            Ok(Advance::Duplicate { last }) => {
                known[stream_index].fetch_max(last, Ordering::SeqCst);
                SequenceAnswer::Duplicate { last }
            }
            Ok(Advance::Gap { last, .. }) => SequenceAnswer::Gap { last },
            Err(error) => match failed(&error) {
                Failed::NoAnswer => SequenceAnswer::NoAnswer,
                Failed::Unavailable { retry_after } => SequenceAnswer::Unavailable { retry_after },
                Failed::Status(status) => SequenceAnswer::Unexpected(status),
            },
        };
        let pause = match recorded {
            SequenceAnswer::Unavailable { .. } => Duration::from_millis(200),
            SequenceAnswer::NoAnswer => Duration::from_millis(100),
            _ => Duration::from_millis(2),
        };
        if matches!(
            recorded,
            SequenceAnswer::Unavailable { .. } | SequenceAnswer::NoAnswer
        ) {
            undecided = Some((stream_index, seq));
        }
        history.sequences.push(SequenceRecord {
            stream,
            seq,
            offerer: offerer.clone(),
            span,
            answer: recorded,
        });
        tokio::time::sleep(pause).await;
    }
    history
}
