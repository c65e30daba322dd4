//! The lifecycles' shared shape: a pure machine decides, one executor acts.
//!
//! Every operation on a claim or a stream (claim, complete, extend,
//! release; advance, set, delete) is a small state machine in the style of
//! quinn-proto: it is told what happened (`Observation`: what a write
//! answered, what a serial read found, `now`) and answers with what to do
//! next (`Action`). It never performs I/O, never sleeps and never reads the
//! clock, so every rule it holds is a table-driven unit test.
//!
//! The executor (`executor::run`) is the only place that talks to the
//! store on a lifecycle's behalf. It owns what every lifecycle needs alike:
//! the retry budget (steps and deadline), resolving a write whose outcome
//! is unknown with a serial read (never a guess), retrying failed serial
//! reads with backoff, the warning log line and the unknown-outcome metric.

pub mod executor;

use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::Namespace;
use crate::store::StoreError;

pub use executor::{RetryBudget, run};

/// What a machine asks for next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<W, A> {
    /// Run this conditional write.
    Write(W),
    /// Read the row at the serial consistency (a Paxos round: decisive).
    ReadSerial,
    /// Read the row at the normal consistency: a cheap hint, never decisive.
    ReadQuorum,
    /// Done: this is the answer.
    Answer(A),
    /// No answer can be given without guessing: 503, retry.
    Undecided(String),
}

/// What happened to the last action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation<C, V> {
    /// The write was answered.
    Written(C),
    /// The write's outcome was unknown (a timeout, a broken connection);
    /// the serial read that followed found this. The write may still land
    /// later: a coordinator retries a preempted proposal by itself.
    Resolved(V),
    /// The serial read found this.
    Read(V),
    /// The quorum read found this, or failed (`None`).
    QuorumRead(Option<V>),
}

/// What a serial read after an unknown outcome says of the write, for the
/// `dedupd_unknown_outcomes_total{resolution}` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The write landed.
    Ours,
    /// Someone else's write stands there.
    Theirs,
    /// Nothing stands there.
    Absent,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Ours => "ours",
            Resolution::Theirs => "theirs",
            Resolution::Absent => "absent",
        }
    }
}

/// The rows a family of lifecycles works on (claims, streams): what they
/// write there, what a write answers, what a read finds. Every lifecycle
/// of a family shares these, and so does the family's `Io`.
pub trait Table {
    /// A conditional write a machine may ask for.
    type Write;
    /// What a write answers.
    type Written;
    /// What a read finds.
    type View;
}

/// One lifecycle's decisions.
pub trait Machine {
    /// The rows it works on.
    type Table: Table;
    /// Its answer.
    type Answer;

    /// The first action.
    fn start(&mut self, now: DateTime<Utc>) -> Next<Self>;

    /// The next action, given what the last one observed.
    fn observe(&mut self, observation: Seen<Self>, now: DateTime<Utc>) -> Next<Self>;

    /// What a serial read after an unknown outcome says of the write.
    fn resolution(&self, view: &ViewOf<Self>) -> Resolution;

    /// The 503's detail when the budget runs out first.
    fn undecided(&self) -> String;
}

/// What machine `M` asks for next.
pub type Next<M> = Action<<<M as Machine>::Table as Table>::Write, <M as Machine>::Answer>;

/// What machine `M` is told happened.
pub type Seen<M> = Observation<<<M as Machine>::Table as Table>::Written, ViewOf<M>>;

/// What a read finds, for machine `M`.
pub type ViewOf<M> = <<M as Machine>::Table as Table>::View;

/// The store half of a family of lifecycles: runs their writes and reads.
pub trait Io<T: Table> {
    fn write(
        &self,
        write: &T::Write,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<T::Written, StoreError>> + Send;

    fn read_serial(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<T::View, StoreError>> + Send;

    fn read_quorum(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<T::View, StoreError>> + Send;

    /// Where the request came from, for the log line of an unknown outcome.
    fn namespace(&self) -> &str;
}

/// What a 503 names: a key or a stream, quoted, and its namespace
/// (`"order-7" in payments`). Borrowed, and formatted only if a lifecycle
/// gives up, not on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
}

impl<'a> Subject<'a> {
    /// The key or stream `name` in `namespace`.
    pub fn new(name: &'a str, namespace: &'a Namespace) -> Self {
        Self {
            name,
            namespace: namespace.as_str(),
        }
    }
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} in {}", self.name, self.namespace)
    }
}

/// Why a lifecycle gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The outcome could not be decided in time: 503 with `Retry-After`.
    #[error("{detail}")]
    Undecided { detail: String },
    /// Cassandra refused the TTL (its storage format cannot hold the expiry).
    #[error("the database refused this TTL: {0}")]
    TtlRejected(String),
    /// The database refused a statement: a bug or a broken schema.
    #[error(transparent)]
    Store(StoreError),
}

/// The error for a statement the database refused outright.
pub fn rejected(error: StoreError) -> DecideError {
    if error.is_ttl_rejected() {
        DecideError::TtlRejected(error.message)
    } else {
        DecideError::Store(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_reads_as_the_503s_always_named_it() {
        let namespace = Namespace::parse("payments").unwrap();
        assert_eq!(
            Subject::new("order 7", &namespace).to_string(),
            "\"order 7\" in payments"
        );
    }
}
