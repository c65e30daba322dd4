//! The checker's clients: claimants that complete, release or abandon what
//! they win, and consumers racing to advance the same streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::history::{
    ClaimAnswer, ClaimRecord, History, SequenceAnswer, SequenceRecord, Span, TransitionKind,
    TransitionRecord,
};
use crate::http_client::{HttpClient, Settings};
use crate::rng::Dice;

/// How long a client waits for an answer before calling it lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// An HTTP response as the clients need it.
pub struct Answer {
    pub status: u16,
    pub retry_after: bool,
    pub body: Value,
}

/// The checker's view of the HTTP API: every wait bounded, and any failure
/// to answer is `None` (the history records it as no answer).
#[derive(Clone)]
pub struct Api {
    http: HttpClient,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            http: HttpClient::new(Settings {
                connect_timeout: Some(Duration::from_secs(2)),
                ..Settings::default()
            }),
        }
    }
}

impl Api {
    /// POSTs `body` to `url`; `None` when no answer came back.
    pub async fn post(&self, url: &str, body: &Value) -> Option<Answer> {
        let reply = self
            .http
            .post_json(url, Bytes::from(body.to_string()), Some(ANSWER_TIMEOUT))
            .await
            .ok()?;
        Some(Answer {
            status: reply.status,
            retry_after: reply.retry_after,
            body: serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
        })
    }

    pub async fn get_text(&self, url: &str) -> Option<String> {
        let reply = self
            .http
            .get(url, Some(Duration::from_secs(5)))
            .await
            .ok()?;
        String::from_utf8(reply.body.to_vec()).ok()
    }
}

fn time_of(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|time| time.with_timezone(&Utc))
}

/// What every client of a phase shares: how it speaks, where it sends, and
/// when it stops.
#[derive(Clone)]
pub struct ClientContext {
    pub api: Api,
    /// The instances' base URLs, tried in turn.
    pub bases: Arc<Vec<String>>,
    pub namespace: String,
    pub until: Instant,
}

impl ClientContext {
    fn running(&self) -> bool {
        Instant::now() < self.until
    }

    /// POSTs `body` to `path` in the phase's namespace, on the instance
    /// whose `turn` it is: the answer, and when it was sent and answered.
    async fn post(&self, turn: u64, path: &str, body: &Value) -> (Option<Answer>, Span) {
        let base = &self.bases[(turn % self.bases.len() as u64) as usize];
        let url = format!("{base}/v1/namespaces/{}/{path}", self.namespace);
        let sent = Utc::now();
        let answer = self.api.post(&url, body).await;
        let answered = Utc::now();
        (answer, Span { sent, answered })
    }
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
    let mut dice = Dice::new(client as u64 + 1);
    let mut turn = client as u64;
    let started = Instant::now();
    while context.running() {
        let window_start =
            (started.elapsed().as_millis() / workload.shift_every.as_millis().max(1)) as u64;
        let key = format!("k{}", window_start + dice.below(workload.window));
        turn += 1;
        let body =
            json!({"lease_secs": workload.lease_secs, "ttl_secs": 3600, "claimant": claimant});
        let (answer, span) = context.post(turn, &format!("claims/{key}"), &body).await;
        let recorded = match &answer {
            None => ClaimAnswer::NoAnswer,
            Some(answer) => match answer.status {
                201 => ClaimAnswer::Granted {
                    token: answer.body["token"].as_str().unwrap_or_default().to_owned(),
                    takeover: answer.body["takeover"].as_bool().unwrap_or(false),
                    lease_end: time_of(&answer.body["lease_expires_at"]),
                },
                409 => ClaimAnswer::Duplicate {
                    completed: answer.body["state"] == "completed",
                    holder: answer.body["holder"].as_str().map(claimant_of_holder),
                    lease_end: time_of(&answer.body["lease_expires_at"]),
                },
                503 => ClaimAnswer::Unavailable {
                    retry_after: answer.retry_after,
                },
                status => ClaimAnswer::Unexpected(status),
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
        let (action, body) = match kind {
            TransitionKind::Complete => (
                "complete",
                json!({"token": token, "result": {"by": claimant}}),
            ),
            TransitionKind::Release => ("release", json!({"token": token})),
        };
        let (answer, span) = context
            .post(turn, &format!("claims/{key}/{action}"), &body)
            .await;
        history.transitions.push(TransitionRecord {
            key,
            token,
            kind,
            span,
            status: answer.map(|answer| answer.status),
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
        let body = json!({"seq": seq, "offerer": offerer});
        let (answer, span) = context
            .post(turn, &format!("sequences/{stream}"), &body)
            .await;
        let last = |answer: &Answer| answer.body["last"].as_u64().unwrap_or(0);
        let recorded = match &answer {
            None => SequenceAnswer::NoAnswer,
            Some(answer) => match (answer.status, answer.body["outcome"].as_str()) {
                (200, _) => {
                    known[stream_index].fetch_max(seq, Ordering::SeqCst);
                    SequenceAnswer::Accepted
                }
                (409, Some("duplicate")) => {
                    known[stream_index].fetch_max(last(answer), Ordering::SeqCst);
                    SequenceAnswer::Duplicate { last: last(answer) }
                }
                (409, Some("gap")) => SequenceAnswer::Gap { last: last(answer) },
                (503, _) => SequenceAnswer::Unavailable {
                    retry_after: answer.retry_after,
                },
                (status, _) => SequenceAnswer::Unexpected(status),
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
