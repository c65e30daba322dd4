//! The Rust consumer of the Kafka example: one member of the `payments`
//! consumer group (rdkafka), applying each payment at most once in effect
//! through dedupd (`dedupd_client::Client::run_once`).
//!
//! For each record: log that it was delivered; claim its payment id in the
//! namespace with this process's claimant, waiting for another holder; when
//! acquired, append the payment to the ledger and complete the claim; then,
//! and only then, store the record's offset for the next auto-commit. A
//! duplicate is acknowledged (offset stored) without touching the ledger.
//!
//! Configuration through the environment (see examples/kafka/README.md):
//! KAFKA_BOOTSTRAP, KAFKA_TOPIC, KAFKA_GROUP, DEDUPD_URL, LEDGER, EVENTS,
//! CONSUMER_NAME, APPLY_MS, DEDUPD_NAMESPACE, LEASE_SECS.
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dedupd_client::{ClaimOptions, Client, Lease, Once, RunError};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde_json::{Value, json};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("rust-consumer: {name} is not set");
        std::process::exit(2)
    })
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Appends one line with a single write(2) on a file opened O_APPEND: lines
/// of both consumers interleave whole, and a SIGKILL loses none written.
fn append_line(path: &Path, line: &Value) -> std::io::Result<()> {
    let mut text = line.to_string();
    text.push('\n');
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(text.as_bytes())
}

/// The ledger line of `payment_id`, if one was written (by anyone).
fn ledger_has(path: &Path, payment_id: &str) -> std::io::Result<bool> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    Ok(text.lines().any(|line| {
        serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|row| {
                row.get("payment_id")
                    .and_then(Value::as_str)
                    .map(|id| id == payment_id)
            })
            .unwrap_or(false)
    }))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Default)]
struct Counts {
    delivered: u64,
    applied: u64,
    duplicate: u64,
    reconciled: u64,
    retried: u64,
    store_errors: u64,
}

struct Worker {
    name: String,
    ledger: PathBuf,
    events: PathBuf,
    apply: Duration,
}

impl Worker {
    fn event(&self, event: Value) {
        if let Err(error) = append_line(&self.events, &event) {
            eprintln!("rust-consumer: cannot write the events file: {error}");
        }
    }

    /// Applying a payment: the effect that must happen once. A takeover
    /// (the previous holder's lease passed: it crashed, or hung) first looks
    /// whether that holder applied it before dying, between its ledger write
    /// and its completion; dedupd cannot know that, the ledger can.
    async fn apply(
        &self,
        payment: &Value,
        payment_id: &str,
        lease: &Lease,
    ) -> std::io::Result<Value> {
        if lease.takeover && ledger_has(&self.ledger, payment_id)? {
            return Ok(json!({"by": self.name, "reconciled": true}));
        }
        tokio::time::sleep(self.apply).await;
        let at = now();
        append_line(
            &self.ledger,
            &json!({
                "payment_id": payment_id,
                "amount_cents": payment.get("amount_cents"),
                "consumer": self.name,
                "applied_at": at,
            }),
        )?;
        Ok(json!({"by": self.name, "applied_at": at}))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bootstrap = env("KAFKA_BOOTSTRAP");
    let topic = env("KAFKA_TOPIC");
    let group = env("KAFKA_GROUP");
    let dedupd_url = env("DEDUPD_URL");
    let namespace = env_or("DEDUPD_NAMESPACE", "payments");
    let lease_secs: u64 = env_or("LEASE_SECS", "5")
        .parse()
        .expect("LEASE_SECS is a number");
    let apply_ms: u64 = env_or("APPLY_MS", "5")
        .parse()
        .expect("APPLY_MS is a number");
    let label = env_or("CONSUMER_NAME", "rust");
    // Unique to this process: a restarted consumer is another claimant, so
    // the claim its killed predecessor held is taken over, not re-entered.
    let name = format!(
        "{label}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let this = Worker {
        name: name.clone(),
        ledger: PathBuf::from(env("LEDGER")),
        events: PathBuf::from(env("EVENTS")),
        apply: Duration::from_millis(apply_ms),
    };

    let client = Client::builder(dedupd_url)
        .request_timeout(Duration::from_secs(40))
        .build()
        .expect("a dedupd client");
    let options = ClaimOptions::new()
        .claimant(name.clone())
        .lease(Duration::from_secs(lease_secs))
        .wait(Duration::from_secs(10))
        .wait_budget(Duration::from_secs(30));

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("client.id", &name)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "120000")
        .set("auto.offset.reset", "earliest")
        // Offsets are stored by hand after the claim completed, and the
        // stored ones committed every second.
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .create()
        .expect("a Kafka consumer");
    consumer.subscribe(&[&topic]).expect("subscribed");
    eprintln!("rust-consumer {name}: consuming {topic} as group {group}");
    this.event(json!({"event": "started", "consumer": name, "at": now()}));

    let mut counts = Counts::default();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    let mut report = tokio::time::interval(Duration::from_secs(5));
    loop {
        let message = tokio::select! {
            _ = terminate.recv() => break,
            _ = report.tick() => {
                summary(&name, &counts, false);
                continue;
            }
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                eprintln!("rust-consumer {name}: Kafka error (carrying on): {error}");
                continue;
            }
        };
        counts.delivered += 1;
        let (partition, offset) = (message.partition(), message.offset());
        let payment: Value = match message.payload().map(serde_json::from_slice) {
            Some(Ok(payment)) => payment,
            _ => {
                eprintln!(
                    "rust-consumer {name}: record {partition}/{offset} is not a payment; skipped"
                );
                continue;
            }
        };
        let Some(payment_id) = payment
            .get("payment_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            eprintln!(
                "rust-consumer {name}: record {partition}/{offset} has no payment_id; skipped"
            );
            continue;
        };
        this.event(
            json!({"event": "delivered", "consumer": name, "partition": partition,
                          "offset": offset, "payment_id": payment_id}),
        );
        // Until the payment is applied (by anyone): a payment in progress
        // elsewhere is never taken as done.
        let outcome = loop {
            let run = client
                .run_once(&namespace, &payment_id, &options, |lease| {
                    let (this, payment, payment_id) = (&this, &payment, &payment_id);
                    async move { this.apply(payment, payment_id, &lease).await }
                })
                .await;
            match run {
                Ok(Once::Ran(result)) if result.get("reconciled").is_some() => break "reconciled",
                Ok(Once::Ran(_)) => break "applied",
                Ok(Once::AlreadyDone(_)) => break "duplicate",
                Err(
                    error @ (RunError::InProgress { .. }
                    | RunError::LeaseLost(_)
                    | RunError::Work(_)
                    | RunError::Client(_)),
                ) => {
                    counts.retried += 1;
                    eprintln!("rust-consumer {name}: {payment_id}: {error}; claiming again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => {
                    eprintln!(
                        "rust-consumer {name}: {payment_id}: {error}; giving up on this record"
                    );
                    break "failed";
                }
            }
        };
        match outcome {
            "applied" => counts.applied += 1,
            "reconciled" => counts.reconciled += 1,
            "duplicate" => counts.duplicate += 1,
            _ => {}
        }
        this.event(
            json!({"event": outcome, "consumer": name, "partition": partition,
                          "offset": offset, "payment_id": payment_id}),
        );
        if outcome != "failed" {
            // A partition revoked meanwhile refuses the store: the record is
            // redelivered to its new owner, which hears "duplicate".
            if let Err(error) = consumer.store_offset_from_message(&message) {
                counts.store_errors += 1;
                eprintln!(
                    "rust-consumer {name}: storing offset {partition}/{offset} (carrying on): {error}"
                );
            }
        }
    }
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        eprintln!("rust-consumer {name}: final commit (carrying on): {error}");
    }
    this.event(json!({"event": "stopped", "consumer": name, "at": now()}));
    summary(&name, &counts, true);
}

fn summary(name: &str, counts: &Counts, last: bool) {
    println!(
        "{}",
        json!({
            "consumer": name, "final": last, "delivered": counts.delivered, "applied": counts.applied,
            "duplicate": counts.duplicate, "reconciled": counts.reconciled, "retried": counts.retried,
            "store_errors": counts.store_errors,
        })
    );
}
