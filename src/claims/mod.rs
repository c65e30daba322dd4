//! The claim lifecycles: claim, complete, release, extend, read.
//!
//! Two rules carry the guarantee:
//! - every write is a compare-and-set (an LWT) on the claim's owner token;
//! - an outcome we did not hear (timeout, broken connection) is never
//!   guessed: a serial read says what happened, and the lifecycle answers
//!   or takes its next step from that (see `lifecycle`).
//!
//! Each lifecycle is a pure machine (`claim`, `transition`, `release`,
//! with the claim's rules in `decide`) driven by the one executor; this
//! module adds what sits around them: the completed-claims cache, reading
//! first for redeliveries, and the outcome metrics.
//!
//! Its length is the service around the machines (cache, read-first,
//! metrics) and the store adapter the executor drives.

mod admin;
mod claim;
mod completed_cache;
mod decide;
#[cfg(test)]
mod fixtures;
mod outcome;
mod read_first;
mod release;
mod transition;
mod wait;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

pub use admin::{AdminAction, AdminOutcome};
use claim::ClaimMachine;
use completed_cache::CompletedCache;
use decide::{Step, next_step};
pub use outcome::{Acquisition, ClaimOutcome, ClaimRequest, TransitionOutcome};
use read_first::ReadFirst;
pub use read_first::ReadFirstPolicy;
use release::ReleaseMachine;
use transition::{Transition, TransitionMachine};
pub use wait::{DEFAULT_MAX_WAITERS, DEFAULT_WAIT_POLL, MAX_WAIT_SECS, TooManyWaiters};
use wait::{Waiter, Waiters, Wake, is_held_by_another, worth_asking};

use crate::domain::{
    CasOutcome, ClaimKey, ClaimRecord, ClaimState, ClaimToken, ClaimWrite, LeaseRequest, Namespace,
    RowView, StoredResult, now_millis,
};
use crate::lifecycle::executor::read_with_retries;
use crate::lifecycle::{self, Io, Machine, Subject, Table};
pub use crate::lifecycle::{DecideError, RetryBudget};
use crate::metrics::Metrics;
use crate::store::{ReadMode, Store, StoreError};

/// How the claim service trades work for speed; none of it changes answers.
#[derive(Debug, Clone, Copy)]
pub struct ClaimSettings {
    pub budget: RetryBudget,
    pub read_first: ReadFirstPolicy,
    /// Memory for the completed-claims cache, in bytes; 0 turns it off.
    pub completed_cache_bytes: u64,
    /// How long a cached completed claim is trusted after it was learned: an
    /// operator's `forget` on another instance is heard within it.
    pub completed_cache_max_age: std::time::Duration,
    /// The most any instance's clock may run ahead of another's: a takeover
    /// and a window's end must clear it (`--max-clock-skew-ms`).
    pub max_clock_skew: std::time::Duration,
    pub wait: WaitSettings,
}

/// How claims that ask to wait for a key's holder (`wait_secs`) wait.
#[derive(Debug, Clone, Copy)]
pub struct WaitSettings {
    /// How many claims may wait at once on this instance (`--max-waiters`);
    /// more are refused with 503.
    pub max_waiters: usize,
    /// How often a waiter looks for what other instances did
    /// (`--wait-poll-ms`): a completion elsewhere is heard within it.
    pub poll: std::time::Duration,
}

impl Default for WaitSettings {
    fn default() -> Self {
        Self {
            max_waiters: DEFAULT_MAX_WAITERS,
            poll: DEFAULT_WAIT_POLL,
        }
    }
}

impl Default for ClaimSettings {
    fn default() -> Self {
        Self {
            budget: RetryBudget::default(),
            read_first: ReadFirstPolicy::default(),
            completed_cache_bytes: 64 << 20,
            completed_cache_max_age: DEFAULT_COMPLETED_CACHE_MAX_AGE,
            max_clock_skew: std::time::Duration::from_millis(DEFAULT_MAX_CLOCK_SKEW_MS),
            wait: WaitSettings::default(),
        }
    }
}

/// The default clock-skew margin (README, "Clocks"): NTP keeps a
/// Kubernetes cluster's nodes within milliseconds of each other; a second
/// covers a node that lost its time source for hours (10–100 ppm of drift)
/// while delaying a takeover by only a second.
pub const DEFAULT_MAX_CLOCK_SKEW_MS: u64 = 1_000;

/// How long a cached completed claim is trusted (`--completed-cache-max-age-secs`):
/// redeliveries mostly come within seconds of the first delivery (a retry, a
/// rebalance), and a minute bounds how long an operator's `forget` may go
/// unheard by another instance.
pub const DEFAULT_COMPLETED_CACHE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

pub struct ClaimService {
    store: Arc<Store>,
    metrics: Metrics,
    budget: RetryBudget,
    skew: chrono::Duration,
    read_first: ReadFirst,
    completed: CompletedCache,
    waiters: Waiters,
}

impl ClaimService {
    pub fn new(store: Arc<Store>, metrics: Metrics, settings: ClaimSettings) -> Self {
        Self {
            store,
            metrics,
            budget: settings.budget,
            skew: chrono::Duration::from_std(settings.max_clock_skew)
                .unwrap_or(chrono::Duration::zero()),
            read_first: ReadFirst::new(settings.read_first),
            completed: CompletedCache::new(
                settings.completed_cache_bytes,
                settings.completed_cache_max_age,
            ),
            waiters: Waiters::new(settings.wait.max_waiters, settings.wait.poll),
        }
    }

    /// Remembers what a call learned if the claim is completed.
    fn remember(&self, namespace: &Namespace, key: &ClaimKey, record: &ClaimRecord) {
        self.completed.remember(namespace, key, record);
    }

    /// The store half of the claim lifecycles, for one key, classifying
    /// rows `behind` now (see `ClaimIo`).
    fn io<'a>(
        &'a self,
        namespace: &'a Namespace,
        key: &'a ClaimKey,
        behind: chrono::Duration,
    ) -> ClaimIo<'a> {
        ClaimIo {
            store: &self.store,
            namespace,
            key,
            behind,
        }
    }

    /// How long another instance may answer a forgotten completed claim
    /// from its cache.
    pub fn completed_cache_max_age(&self) -> std::time::Duration {
        self.completed.max_age()
    }

    /// How hard one request tries before answering 503.
    pub fn budget(&self) -> RetryBudget {
        self.budget
    }

    /// Claims `request.key`. Exactly one caller wins a key per retention
    /// window (per lease, counting takeovers).
    pub async fn claim(&self, request: &ClaimRequest) -> Result<ClaimOutcome, DecideError> {
        self.claim_within(request, self.budget).await
    }

    /// `claim` inside `budget` instead of the service's own: a batch gives
    /// each key what is left of the batch's deadline.
    pub async fn claim_within(
        &self,
        request: &ClaimRequest,
        budget: RetryBudget,
    ) -> Result<ClaimOutcome, DecideError> {
        let outcome = self.settle(request, budget).await;
        self.count_claim(&outcome);
        outcome
    }

    /// `claim`, and then, if the key is held in progress by someone else
    /// and `wait` is not zero, waiting up to `wait` for the holder to
    /// complete, release or lose its lease (see `wait`): the answer is then
    /// what a claim gets at that moment. `permit` is the store permit of the
    /// first claim; `admit` takes one for each later look, and a look that
    /// finds none is skipped, so a waiter holds no permit while it waits.
    pub async fn claim_waiting<P>(
        &self,
        request: &ClaimRequest,
        wait: std::time::Duration,
        permit: P,
        admit: impl Fn() -> Option<P>,
    ) -> Result<Result<ClaimOutcome, DecideError>, TooManyWaiters> {
        let first = self.settle(request, self.budget).await;
        drop(permit);
        let held = matches!(&first, Ok(outcome) if is_held_by_another(outcome));
        if wait.is_zero() || !held {
            self.count_claim(&first);
            return Ok(first);
        }
        let waiter = match self.waiters.register(&request.namespace, &request.key) {
            Ok(waiter) => waiter,
            Err(refused) => {
                self.count_claim(&first);
                self.metrics.claim_waits_refused.inc();
                return Err(refused);
            }
        };
        let outcome = self
            .wait_for_holder(&waiter, request, first, Instant::now() + wait, admit)
            .await;
        self.count_claim(&outcome);
        Ok(outcome)
    }

    /// The waiting half of `claim_waiting`: asks again whenever the holder
    /// may be done, until the answer is no longer "held by another" or the
    /// deadline passes (then the last answer stands).
    async fn wait_for_holder<P>(
        &self,
        waiter: &Waiter<'_>,
        request: &ClaimRequest,
        mut last: Result<ClaimOutcome, DecideError>,
        deadline: Instant,
        admit: impl Fn() -> Option<P>,
    ) -> Result<ClaimOutcome, DecideError> {
        let _counted = CountedWaiter::new(&self.metrics.claim_waiters);
        loop {
            let wake = waiter.next_wake(deadline).await;
            if wake == Wake::Over {
                return last;
            }
            let Some(_permit) = admit() else {
                continue;
            };
            if wake == Wake::Poll && !self.worth_asking(request).await {
                continue;
            }
            let outcome = self.settle(request, self.budget).await;
            if !matches!(&outcome, Ok(answer) if is_held_by_another(answer)) {
                return outcome;
            }
            last = outcome;
        }
    }

    /// A waiter's look at the row (a quorum read): whether a claim would now
    /// answer anything but "held by another". A failed read says nothing
    /// has changed: the waiter looks again at its next poll.
    async fn worth_asking(&self, request: &ClaimRequest) -> bool {
        let now = now_millis();
        let view = self
            .io(&request.namespace, &request.key, self.skew)
            .read(ReadMode::Quorum, now)
            .await;
        match view {
            Ok(view) => worth_asking(&view, request, now, self.skew),
            Err(_) => false,
        }
    }

    /// Ends every wait at once: the instance drains, and a waiter answers
    /// what it has rather than hold up the shutdown.
    pub fn stop_waiting(&self) {
        self.waiters.close();
    }

    /// The claim's answer, uncounted: the cache, reading first, or the
    /// claim lifecycle.
    async fn settle(
        &self,
        request: &ClaimRequest,
        budget: RetryBudget,
    ) -> Result<ClaimOutcome, DecideError> {
        if let Some(answer) = self.answer_from_memory(request) {
            return Ok(answer);
        }
        let outcome = match self.completed_duplicate(request).await {
            Some(answer) => Ok(answer),
            None => {
                let machine = ClaimMachine::new(request, ClaimToken::generate(), self.skew);
                let io = self.io(&request.namespace, &request.key, self.skew);
                lifecycle::run(machine, &io, budget, &self.metrics).await
            }
        };
        // Only claims the cache could not answer count towards reading
        // first: when the cache catches the redeliveries, a read before
        // every new key would be wasted.
        let completed_duplicate = matches!(
            &outcome,
            Ok(ClaimOutcome::Duplicate { record }) if record.state == ClaimState::Completed
        );
        self.read_first
            .observe(&request.namespace, completed_duplicate);
        if let Ok(
            ClaimOutcome::Acquired { record, .. }
            | ClaimOutcome::Duplicate { record }
            | ClaimOutcome::FingerprintMismatch { record },
        ) = &outcome
        {
            self.remember(&request.namespace, &request.key, record);
        }
        outcome
    }

    fn count_claim(&self, outcome: &Result<ClaimOutcome, DecideError>) {
        let label = match outcome {
            Ok(ClaimOutcome::Acquired { how, .. }) => match how {
                Acquisition::New => "acquired",
                Acquisition::Takeover => "takeover",
                Acquisition::Reentrant => "reentrant",
            },
            Ok(ClaimOutcome::Duplicate { record }) => match record.state {
                ClaimState::InProgress => "duplicate_in_progress",
                ClaimState::Completed => "duplicate_completed",
            },
            Ok(ClaimOutcome::FingerprintMismatch { .. }) => "fingerprint_mismatch",
            Err(DecideError::Undecided { .. }) => "unavailable",
            Err(_) => "error",
        };
        self.metrics.record_claim(label);
    }

    /// Answers a redelivery of completed work from the completed-claims
    /// cache, which cannot be stale (see `completed_cache`).
    fn answer_from_memory(&self, request: &ClaimRequest) -> Option<ClaimOutcome> {
        let now = now_millis();
        let Some(record) = self.completed.get(&request.namespace, &request.key, now) else {
            self.metrics.record_completed_cache(false);
            return None;
        };
        self.metrics.record_completed_cache(true);
        answer_for_completed(record, request, now)
    }

    /// The shortcut for redeliveries of finished work: one quorum read
    /// instead of a Paxos round.
    ///
    /// Why a plain read may decide here, when everywhere else only a serial
    /// read or an LWT may: `completed` is terminal inside the window. No
    /// transition leaves it (release and extend refuse it, takeover applies
    /// only to in-progress claims, completing again changes nothing), and
    /// only expiry ends it. A quorum read returns only committed values, and
    /// a value committed by Paxos was chosen and stays chosen. So a live
    /// completed row seen now stays the linearizable state until
    /// `expires_at`, and "duplicate, completed" is the answer an LWT would
    /// give. Anything else (absent, in progress, expired, a failed read)
    /// decides nothing and falls through to the LWT.
    async fn completed_duplicate(&self, request: &ClaimRequest) -> Option<ClaimOutcome> {
        if !self.read_first.applies_to(&request.namespace) {
            return None;
        }
        let view = self
            .io(&request.namespace, &request.key, chrono::Duration::zero())
            .read(ReadMode::Quorum, now_millis())
            .await;
        let record = match view {
            Ok(RowView::Live(record)) if record.state == ClaimState::Completed => record,
            _ => {
                self.metrics.record_read_first(false);
                return None;
            }
        };
        self.metrics.record_read_first(true);
        answer_for_completed(record, request, now_millis())
    }

    /// Completes the claim `token` owns, storing `result`.
    pub async fn complete(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        token: ClaimToken,
        result: Option<StoredResult>,
    ) -> Result<TransitionOutcome, DecideError> {
        let machine = TransitionMachine::new(
            token,
            Transition::Complete(result),
            Subject::new(key.as_str(), namespace),
        );
        let outcome = self.update("complete", machine, namespace, key).await;
        if let Ok(TransitionOutcome::Done(record)) = &outcome {
            self.remember(namespace, key, record);
            self.waiters.wake(namespace, key);
        }
        outcome
    }

    /// Extends the lease of the claim `token` owns, up to its expiry.
    pub async fn extend(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        token: ClaimToken,
        lease: LeaseRequest,
    ) -> Result<TransitionOutcome, DecideError> {
        let machine = TransitionMachine::new(
            token,
            Transition::Extend(lease),
            Subject::new(key.as_str(), namespace),
        );
        self.update("extend", machine, namespace, key).await
    }

    /// Releases the in-progress claim `token` owns, so the key can be
    /// claimed again at once.
    pub async fn release(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        token: ClaimToken,
    ) -> Result<TransitionOutcome, DecideError> {
        let machine = ReleaseMachine::new(token, Subject::new(key.as_str(), namespace));
        let outcome = self.update("release", machine, namespace, key).await;
        if let Ok(TransitionOutcome::Released) = &outcome {
            self.waiters.wake(namespace, key);
        }
        outcome
    }

    /// Runs a token-guarded lifecycle and counts its outcome.
    async fn update<M>(
        &self,
        operation: &'static str,
        machine: M,
        namespace: &Namespace,
        key: &ClaimKey,
    ) -> Result<TransitionOutcome, DecideError>
    where
        M: Machine<Table = Claims, Answer = TransitionOutcome>,
    {
        let io = self.io(namespace, key, chrono::Duration::zero());
        let outcome = lifecycle::run(machine, &io, self.budget, &self.metrics).await;
        self.count(operation, &outcome);
        outcome
    }

    /// Reads a claim linearizably.
    pub async fn get(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
    ) -> Result<Option<ClaimRecord>, DecideError> {
        let io = self.io(namespace, key, chrono::Duration::zero());
        let view = read_with_retries(self.budget, Instant::now(), || {
            io.read(ReadMode::Serial, now_millis())
        })
        .await;
        let outcome = match view {
            Ok(RowView::Live(record)) => {
                self.remember(namespace, key, &record);
                Ok(Some(record))
            }
            Ok(_) => Ok(None),
            Err(error) => Err(error),
        };
        let label = match &outcome {
            Ok(Some(_)) => "found",
            Ok(None) => "not_found",
            Err(_) => "unavailable",
        };
        self.metrics.record_operation("get", label);
        outcome
    }

    fn count(&self, operation: &'static str, outcome: &Result<TransitionOutcome, DecideError>) {
        let label = match outcome {
            Ok(TransitionOutcome::Done(_)) => "done",
            Ok(TransitionOutcome::Released) => "released",
            Ok(TransitionOutcome::NotOwner) => "not_owner",
            Ok(TransitionOutcome::AlreadyCompleted(_)) => "already_completed",
            Ok(TransitionOutcome::NotFound) => "not_found",
            Err(DecideError::Undecided { .. }) => "unavailable",
            Err(_) => "error",
        };
        self.metrics.record_operation(operation, label);
    }
}

/// One waiter in the waiters gauge, for as long as it lives: dropped on
/// every exit, a request dropped mid-wait (its client went away) included.
struct CountedWaiter<'a>(&'a Gauge);

impl<'a> CountedWaiter<'a> {
    fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for CountedWaiter<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The answer to a claim of a key whose claim is completed: the decision the
/// LWT path would make for that row (duplicate, or a fingerprint mismatch).
fn answer_for_completed(
    record: ClaimRecord,
    request: &ClaimRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<ClaimOutcome> {
    let no_margin = chrono::Duration::zero();
    match next_step(
        &RowView::Live(record),
        request,
        ClaimToken::generate(),
        now,
        no_margin,
    ) {
        Step::Answer(outcome) => Some(outcome),
        _ => None,
    }
}

/// The claim rows, as the claim lifecycles see them.
pub struct Claims;

impl Table for Claims {
    type Write = ClaimWrite;
    type Written = CasOutcome;
    type View = RowView;
}

/// The store half of the claim lifecycles: one key's row.
struct ClaimIo<'a> {
    store: &'a Store,
    namespace: &'a Namespace,
    key: &'a ClaimKey,
    /// How far behind `now` rows are classified: a claim treats a window
    /// as ended (a row to replace) only once it ended the clock-skew margin
    /// ago. Complete, extend, release and get classify at `now`.
    behind: chrono::Duration,
}

impl ClaimIo<'_> {
    /// Reads the row and classifies it as of `now`, less the margin.
    async fn read(&self, mode: ReadMode, now: DateTime<Utc>) -> Result<RowView, StoreError> {
        self.store
            .read_claim(self.namespace, self.key, mode, now - self.behind)
            .await
    }
}

impl Io<Claims> for ClaimIo<'_> {
    async fn write(
        &self,
        write: &ClaimWrite,
        now: DateTime<Utc>,
    ) -> Result<CasOutcome, StoreError> {
        self.store
            .write_claim(self.namespace, self.key, write, now - self.behind)
            .await
    }

    async fn read_serial(&self, now: DateTime<Utc>) -> Result<RowView, StoreError> {
        self.read(ReadMode::Serial, now).await
    }

    async fn read_quorum(&self, now: DateTime<Utc>) -> Result<RowView, StoreError> {
        self.read(ReadMode::Quorum, now).await
    }

    fn namespace(&self) -> &str {
        self.namespace.as_str()
    }
}
