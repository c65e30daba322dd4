//! The claim lifecycle: claim, complete, release, extend, read.
//!
//! Two rules carry the guarantee:
//! - every write is a compare-and-set (an LWT) on the claim's owner token;
//! - an outcome we did not hear (timeout, broken connection) is never
//!   guessed. A serial read, which itself runs Paxos and so settles any
//!   half-finished proposal, says what happened; the claim then answers or
//!   takes its next step from that. When even the read fails the caller gets
//!   503 with `Retry-After`, never "duplicate" and never "acquired".

mod completed_cache;
mod decide;
mod read_first;

use std::sync::Arc;

use tokio::time::Instant;

use completed_cache::CompletedCache;
use decide::{Step, next_step};
use read_first::ReadFirst;
pub use read_first::ReadFirstPolicy;

use crate::domain::{
    ClaimKey, ClaimRecord, ClaimState, ClaimToken, Claimant, Fingerprint, LeaseRequest, Namespace,
    Retention, StoredResult, now_millis, secs,
};
use crate::metrics::Metrics;
pub use crate::resolve::{DecideError, RetryBudget};
use crate::resolve::{read_with_retries, rejected};
use crate::store::{CasOutcome, FailureKind, ReadMode, RowView, Store, StoreError, returned_state};

/// A claim as asked for, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub namespace: Namespace,
    pub key: ClaimKey,
    pub retention: Retention,
    pub complete: bool,
    pub fingerprint: Option<Fingerprint>,
    pub claimant: Option<Claimant>,
}

/// How a claim was won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquisition {
    /// An empty or expired slot.
    New,
    /// An in-progress claim whose lease had passed.
    Takeover,
    /// The same claimant's own in-progress claim, handed back.
    Reentrant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Acquired {
        record: ClaimRecord,
        how: Acquisition,
    },
    Duplicate {
        record: ClaimRecord,
    },
    FingerprintMismatch {
        record: ClaimRecord,
    },
}

/// The answer to complete, release and extend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    /// Done (or already done by this same token: completing twice is fine).
    Done(ClaimRecord),
    /// Released: the row is gone.
    Released,
    /// The token does not own the claim (never did, or was taken over).
    NotOwner,
    /// The claim is completed: it can no longer be released or extended.
    AlreadyCompleted(ClaimRecord),
    /// No live claim for this key.
    NotFound,
}

/// A token-guarded update of an in-progress claim.
enum Transition {
    Complete(Option<StoredResult>),
    Extend(LeaseRequest),
}

/// How the claim service trades work for speed; none of it changes answers.
#[derive(Debug, Clone, Copy)]
pub struct ClaimSettings {
    pub budget: RetryBudget,
    pub read_first: ReadFirstPolicy,
    /// Memory for the completed-claims cache, in bytes; 0 turns it off.
    pub completed_cache_bytes: u64,
}

impl Default for ClaimSettings {
    fn default() -> Self {
        Self {
            budget: RetryBudget::default(),
            read_first: ReadFirstPolicy::default(),
            completed_cache_bytes: 64 << 20,
        }
    }
}

pub struct ClaimService {
    store: Arc<Store>,
    metrics: Metrics,
    budget: RetryBudget,
    read_first: ReadFirst,
    completed: CompletedCache,
}

/// What the serial read after an unknown outcome found, for the metric.
fn resolution_label(view: &RowView, ours: ClaimToken) -> &'static str {
    match view.token() {
        Some(token) if token == ours => "ours",
        Some(_) => "theirs",
        None => "absent",
    }
}

impl ClaimService {
    pub fn new(store: Arc<Store>, metrics: Metrics, settings: ClaimSettings) -> Self {
        Self {
            store,
            metrics,
            budget: settings.budget,
            read_first: ReadFirst::new(settings.read_first),
            completed: CompletedCache::new(settings.completed_cache_bytes),
        }
    }

    /// Remembers what a call learned if the claim is completed.
    fn remember(&self, namespace: &Namespace, key: &ClaimKey, record: &ClaimRecord) {
        self.completed.remember(namespace, key, record);
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
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
        let outcome = match self.answer_from_memory(request) {
            Some(answer) => Ok(answer),
            None => {
                let outcome = match self.completed_duplicate(request).await {
                    Some(answer) => Ok(answer),
                    None => self.claim_inner(request, budget).await,
                };
                // Only claims the cache could not answer count towards
                // reading first: when the cache catches the redeliveries, a
                // read before every new key would be wasted.
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
        };
        let label = match &outcome {
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
        outcome
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
            .store
            .read_claim(
                &request.namespace,
                &request.key,
                ReadMode::Quorum,
                now_millis(),
            )
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

    async fn claim_inner(
        &self,
        request: &ClaimRequest,
        budget: RetryBudget,
    ) -> Result<ClaimOutcome, DecideError> {
        let started = Instant::now();
        // One fresh token per claim request, reused across its retries: if
        // an earlier attempt of this request did land, the serial read shows
        // this token and we know the claim is ours.
        let token = ClaimToken::generate();
        let mut step = next_step(&RowView::Absent, request, token, now_millis());
        for _ in 0..budget.max_steps {
            let is_insert = matches!(step, Step::Insert { .. });
            let (written, how, result) = match step {
                Step::Answer(outcome) => return Ok(outcome),
                Step::Insert { record, ttl_secs } => {
                    let result = self
                        .store
                        .insert_claim(&request.namespace, &request.key, &record, ttl_secs)
                        .await;
                    (record, Acquisition::New, result)
                }
                Step::Replace {
                    record,
                    ttl_secs,
                    expected,
                    how,
                } => {
                    let result = self
                        .store
                        .replace_claim(
                            &request.namespace,
                            &request.key,
                            &record,
                            ttl_secs,
                            expected,
                        )
                        .await;
                    (record, how, result)
                }
                Step::TakeOver {
                    record,
                    ttl_secs,
                    expected,
                    decided_at,
                } => {
                    let result = self
                        .store
                        .take_over_claim(
                            &request.namespace,
                            &request.key,
                            &record,
                            ttl_secs,
                            expected,
                            decided_at,
                        )
                        .await;
                    (record, Acquisition::Takeover, result)
                }
            };
            let view = match result {
                Ok(CasOutcome::Applied) => {
                    return Ok(ClaimOutcome::Acquired {
                        record: written,
                        how,
                    });
                }
                Ok(CasOutcome::NotApplied(columns)) if is_insert => {
                    // A refused INSERT returns the whole existing row. One
                    // with no cells at all is a row marker that outlived
                    // them: a remnant to replace on a null owner.
                    match columns.into_view(now_millis()) {
                        RowView::Absent => RowView::Remnant { token: None },
                        view => view,
                    }
                }
                Ok(CasOutcome::NotApplied(_)) => {
                    // A refused UPDATE returns only the conditioned column
                    // (on Cassandra): read the row whole.
                    self.read_serial(request, started, budget).await?
                }
                Err(error) => {
                    let view = self
                        .resolve_unknown(request, error, token, started, budget)
                        .await?;
                    if let RowView::Live(record) = &view
                        && record.token == token
                    {
                        return Ok(ClaimOutcome::Acquired {
                            record: record.clone(),
                            how,
                        });
                    }
                    view
                }
            };
            step = next_step(&view, request, token, now_millis());
            if started.elapsed() > budget.deadline {
                break;
            }
        }
        if let Step::Answer(outcome) = step {
            return Ok(outcome);
        }
        Err(DecideError::Undecided {
            detail: format!(
                "the claim of {:?} in {} could not be decided in {} steps; retry (with the same claimant, if you set one)",
                request.key.as_str(),
                request.namespace,
                budget.max_steps
            ),
        })
    }

    /// A serial read that retries with backoff inside the request's budget.
    async fn read_serial(
        &self,
        request: &ClaimRequest,
        started: Instant,
        budget: RetryBudget,
    ) -> Result<RowView, DecideError> {
        read_serial_with_retries(
            &self.store,
            &request.namespace,
            &request.key,
            started,
            budget,
        )
        .await
    }

    /// Settles a conditional write whose outcome is unknown.
    async fn resolve_unknown(
        &self,
        request: &ClaimRequest,
        error: StoreError,
        token: ClaimToken,
        started: Instant,
        budget: RetryBudget,
    ) -> Result<RowView, DecideError> {
        let statement = error.statement;
        if error.kind == FailureKind::Rejected {
            return Err(rejected(error));
        }
        tracing::warn!(
            statement,
            namespace = %request.namespace,
            error = %error,
            "conditional write outcome unknown, resolving with a serial read"
        );
        match self.read_serial(request, started, budget).await {
            Ok(view) => {
                self.metrics
                    .record_unknown_outcome(statement, resolution_label(&view, token));
                Ok(view)
            }
            Err(undecided) => {
                self.metrics.record_unknown_outcome(statement, "unresolved");
                Err(undecided)
            }
        }
    }

    /// Completes the claim `token` owns, storing `result`.
    pub async fn complete(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        token: ClaimToken,
        result: Option<StoredResult>,
    ) -> Result<TransitionOutcome, DecideError> {
        let outcome = self
            .transition(namespace, key, token, &Transition::Complete(result))
            .await;
        if let Ok(TransitionOutcome::Done(record)) = &outcome {
            self.remember(namespace, key, record);
        }
        self.count("complete", &outcome);
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
        let outcome = self
            .transition(namespace, key, token, &Transition::Extend(lease))
            .await;
        self.count("extend", &outcome);
        outcome
    }

    /// Writes one token-guarded update of `record`, returning the record as
    /// it will be if the update applies.
    async fn write_transition(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        record: &ClaimRecord,
        transition: &Transition,
    ) -> (Result<CasOutcome, StoreError>, ClaimRecord) {
        let now = now_millis();
        // The updated cells must die with the rest of the row.
        let ttl_secs = record.remaining_ttl_secs(now).unwrap_or(1);
        match transition {
            Transition::Complete(result) => {
                let completed = ClaimRecord {
                    state: ClaimState::Completed,
                    completed_at: Some(now),
                    lease_expires_at: None,
                    result: result.clone(),
                    ..record.clone()
                };
                let cas = self
                    .store
                    .complete_claim(namespace, key, record.token, now, result.as_ref(), ttl_secs)
                    .await;
                (cas, completed)
            }
            Transition::Extend(lease) => {
                let lease_end = (now + secs(lease.0)).min(record.expires_at);
                let extended = ClaimRecord {
                    lease_expires_at: Some(lease_end),
                    ..record.clone()
                };
                let cas = self
                    .store
                    .extend_lease(namespace, key, record.token, lease_end, ttl_secs)
                    .await;
                (cas, extended)
            }
        }
    }

    /// Runs one token-guarded update (complete or extend).
    ///
    /// It starts from a quorum read: cheap, and enough to learn the row's
    /// expiry (the updated cells' TTL must end with the row). The update is
    /// conditional on the token, so a stale read can only make it refuse,
    /// never apply wrongly. Every negative answer comes from a serial read.
    async fn transition(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        token: ClaimToken,
        transition: &Transition,
    ) -> Result<TransitionOutcome, DecideError> {
        let started = Instant::now();
        let mut view = self
            .store
            .read_claim(namespace, key, ReadMode::Quorum, now_millis())
            .await
            .unwrap_or(RowView::Absent);
        let mut authoritative = false;
        for _ in 0..self.budget.max_steps {
            match &view {
                RowView::Live(record) if record.token == token => {
                    if record.state == ClaimState::Completed {
                        // Completing twice with the same token is a success
                        // that returns what the first completion stored.
                        return Ok(match transition {
                            Transition::Complete(_) => TransitionOutcome::Done(record.clone()),
                            Transition::Extend(_) => {
                                TransitionOutcome::AlreadyCompleted(record.clone())
                            }
                        });
                    }
                    let (cas, updated) = self
                        .write_transition(namespace, key, record, transition)
                        .await;
                    match cas {
                        Ok(CasOutcome::Applied) => return Ok(TransitionOutcome::Done(updated)),
                        Ok(CasOutcome::NotApplied(_)) => {}
                        Err(error) if error.kind == FailureKind::Rejected => {
                            return Err(rejected(error));
                        }
                        Err(error) => {
                            tracing::warn!(
                                statement = error.statement,
                                namespace = %namespace,
                                error = %error,
                                "conditional write outcome unknown, resolving with a serial read"
                            );
                            let resolved = read_serial_with_retries(
                                &self.store,
                                namespace,
                                key,
                                started,
                                self.budget,
                            )
                            .await;
                            let label = match &resolved {
                                Ok(view) => resolution_label(view, token),
                                Err(_) => "unresolved",
                            };
                            self.metrics.record_unknown_outcome(error.statement, label);
                            view = resolved?;
                            authoritative = true;
                            if let RowView::Live(current) = &view
                                && current.token == token
                                && *current == updated
                            {
                                return Ok(TransitionOutcome::Done(updated));
                            }
                            continue;
                        }
                    }
                }
                _ if authoritative => {
                    return Ok(match &view {
                        RowView::Live(_) => TransitionOutcome::NotOwner,
                        RowView::Absent | RowView::Remnant { .. } => TransitionOutcome::NotFound,
                    });
                }
                _ => {}
            }
            view =
                read_serial_with_retries(&self.store, namespace, key, started, self.budget).await?;
            authoritative = true;
        }
        Err(DecideError::Undecided {
            detail: format!(
                "the update of {:?} in {namespace} could not be decided; retry",
                key.as_str()
            ),
        })
    }

    /// Releases the in-progress claim `token` owns, so the key can be
    /// claimed again at once.
    pub async fn release(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        token: ClaimToken,
    ) -> Result<TransitionOutcome, DecideError> {
        let outcome = self.release_inner(namespace, key, token).await;
        self.count("release", &outcome);
        outcome
    }

    async fn release_inner(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        token: ClaimToken,
    ) -> Result<TransitionOutcome, DecideError> {
        let started = Instant::now();
        // The window our token holds, read first: if the answer to the
        // delete is lost and someone else holds the key by the time we look,
        // the window tells whether they took it over from us (same window:
        // our delete did not apply) or claimed it after it was free (a new
        // window: our delete freed it).
        let before = match self
            .store
            .read_claim(namespace, key, ReadMode::Quorum, now_millis())
            .await
        {
            Ok(view) => view,
            Err(_) => {
                read_serial_with_retries(&self.store, namespace, key, started, self.budget).await?
            }
        };
        let our_window = match &before {
            RowView::Live(record) if record.token == token => Some(record.window),
            _ => None,
        };
        // Set once a delete's outcome is unknown: that delete may still
        // apply later (Cassandra's coordinator retries a preempted CAS
        // until cas_contention_timeout, even after the client gave up), so
        // a later refusal is read as a view of the row, not taken at its
        // word: "no claim" may be our own delete, landed late.
        let mut uncertain = false;
        for _ in 0..self.budget.max_steps {
            let view = match self.store.release_claim(namespace, key, token).await {
                Ok(CasOutcome::Applied) => return Ok(TransitionOutcome::Released),
                Ok(CasOutcome::NotApplied(_)) if uncertain => {
                    read_serial_with_retries(&self.store, namespace, key, started, self.budget)
                        .await?
                }
                Ok(CasOutcome::NotApplied(columns)) => {
                    // The refused DELETE reports the token and state it saw,
                    // read inside the same Paxos round: decisive.
                    return Ok(match (columns.token, returned_state(&columns)) {
                        (None, _) => TransitionOutcome::NotFound,
                        (Some(held), _) if held != token => TransitionOutcome::NotOwner,
                        (Some(_), Some(ClaimState::Completed)) => {
                            let view = read_serial_with_retries(
                                &self.store,
                                namespace,
                                key,
                                started,
                                self.budget,
                            )
                            .await?;
                            match view {
                                RowView::Live(record) => {
                                    TransitionOutcome::AlreadyCompleted(record)
                                }
                                _ => TransitionOutcome::NotFound,
                            }
                        }
                        // Our token without a state: a remnant past its expiry.
                        (Some(_), _) => TransitionOutcome::NotFound,
                    });
                }
                Err(error) if error.kind == FailureKind::Rejected => return Err(rejected(error)),
                Err(error) => {
                    uncertain = true;
                    tracing::warn!(
                        statement = error.statement,
                        namespace = %namespace,
                        error = %error,
                        "conditional delete outcome unknown, resolving with a serial read"
                    );
                    let resolved =
                        read_serial_with_retries(&self.store, namespace, key, started, self.budget)
                            .await;
                    let label = match &resolved {
                        Ok(view) => resolution_label(view, token),
                        Err(_) => "unresolved",
                    };
                    self.metrics.record_unknown_outcome(error.statement, label);
                    resolved?
                }
            };
            match view {
                // Gone: our delete applied (or the claim expired meanwhile);
                // either way the key is free, which is what release means.
                RowView::Absent | RowView::Remnant { token: None } => {
                    return Ok(TransitionOutcome::Released);
                }
                RowView::Live(record) if record.token == token => {
                    if record.state == ClaimState::Completed {
                        return Ok(TransitionOutcome::AlreadyCompleted(record));
                    }
                    // Still ours and in progress: the delete did not land; try again.
                }
                RowView::Remnant { token: Some(held) } if held == token => {}
                // Someone else holds a new window: the key was free after
                // ours, which only our delete (or the end of our window) can
                // have done, so the lost answer was a success and the key
                // was claimed again at once.
                RowView::Live(record)
                    if our_window.is_some_and(|window| window != record.window) =>
                {
                    return Ok(TransitionOutcome::Released);
                }
                // Someone holds our window: they took it over from our token
                // (its lease had passed) before the delete could apply.
                RowView::Live(_) | RowView::Remnant { .. } => {
                    return Ok(TransitionOutcome::NotOwner);
                }
            }
        }
        Err(DecideError::Undecided {
            detail: format!(
                "the release of {:?} in {namespace} could not be decided; retry",
                key.as_str()
            ),
        })
    }

    /// Reads a claim linearizably.
    pub async fn get(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
    ) -> Result<Option<ClaimRecord>, DecideError> {
        let started = Instant::now();
        let view =
            read_serial_with_retries(&self.store, namespace, key, started, self.budget).await;
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

/// The answer to a claim of a key whose claim is completed: the decision the
/// LWT path would make for that row (duplicate, or a fingerprint mismatch).
fn answer_for_completed(
    record: ClaimRecord,
    request: &ClaimRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<ClaimOutcome> {
    match next_step(&RowView::Live(record), request, ClaimToken::generate(), now) {
        Step::Answer(outcome) => Some(outcome),
        _ => None,
    }
}

async fn read_serial_with_retries(
    store: &Store,
    namespace: &Namespace,
    key: &ClaimKey,
    started: Instant,
    budget: RetryBudget,
) -> Result<RowView, DecideError> {
    read_with_retries(budget, started, || {
        store.read_claim(namespace, key, ReadMode::Serial, now_millis())
    })
    .await
}
