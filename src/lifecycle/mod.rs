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

use chrono::{DateTime, Utc};

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

/// One lifecycle's decisions.
pub trait Machine {
    /// A conditional write it may ask for.
    type Write;
    /// What a write answers.
    type Written;
    /// What a read finds.
    type View;
    /// Its answer.
    type Answer;

    /// The first action.
    fn start(&mut self, now: DateTime<Utc>) -> Action<Self::Write, Self::Answer>;

    /// The next action, given what the last one observed.
    fn observe(
        &mut self,
        observation: Observation<Self::Written, Self::View>,
        now: DateTime<Utc>,
    ) -> Action<Self::Write, Self::Answer>;

    /// What a serial read after an unknown outcome says of the write.
    fn resolution(&self, view: &Self::View) -> Resolution;

    /// The 503's detail when the budget runs out first.
    fn undecided(&self) -> String;
}

/// The store half of a lifecycle: runs its writes and reads.
pub trait Io<M: Machine> {
    fn write(
        &self,
        write: &M::Write,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<M::Written, StoreError>> + Send;

    fn read_serial(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<M::View, StoreError>> + Send;

    fn read_quorum(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<M::View, StoreError>> + Send;

    /// Where the request came from, for the log line of an unknown outcome.
    fn namespace(&self) -> &str;
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
