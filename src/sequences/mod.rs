//! Per-stream sequence numbers: consumer-side dedup without a time bound,
//! and gap reports that tell a consumer what to ask to have redelivered.
//!
//! A producer numbers a stream's messages 1, 2, 3… The consumer advances
//! the stream's watermark with each message it processes. A number at or
//! below the watermark is a duplicate; the next number is accepted; a jump
//! means messages were lost, and is reported (strict) or accepted with the
//! skipped range (`allow_gaps`).
//!
//! Every advance is a compare-and-set on the watermark (`IF last = ?`), so
//! two consumers racing with the same number can never both be accepted.

use std::sync::Arc;

use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::{Namespace, Offerer, SequenceNumber, StreamName, WatermarkValue, now_millis};
use crate::metrics::Metrics;
use crate::resolve::{DecideError, RetryBudget, read_with_retries, rejected};
use crate::store::{AcceptedBy, FailureKind, SequenceCas, Store, StoreError, Watermark};

/// What a consumer hears for a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvanceOutcome {
    /// The watermark moved to `last`. `skipped` is the range of numbers
    /// jumped over (only with `allow_gaps`).
    Accepted {
        last: u64,
        skipped: Option<(u64, u64)>,
    },
    /// Already processed: the number is at or below the watermark.
    Duplicate { last: u64 },
    /// Numbers are missing: ask for redelivery from `expected`.
    Gap { last: u64, expected: u64 },
}

/// The verdict for `seq` against a watermark, before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Advance,
    Refuse(AdvanceOutcome),
}

/// Pure: what to do with `seq` when the stream stands at `last`.
pub fn judge(seq: u64, allow_gaps: bool, last: u64) -> Verdict {
    if seq <= last {
        return Verdict::Refuse(AdvanceOutcome::Duplicate { last });
    }
    let expected = last + 1;
    if seq > expected && !allow_gaps {
        return Verdict::Refuse(AdvanceOutcome::Gap { last, expected });
    }
    Verdict::Advance
}

fn skipped(seq: u64, last: u64) -> Option<(u64, u64)> {
    (seq > last + 1).then(|| (last + 1, seq - 1))
}

/// The answer to a watermark set, delete or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    Done,
    NotFound,
}

pub struct SequenceService {
    store: Arc<Store>,
    metrics: Metrics,
    budget: RetryBudget,
}

impl SequenceService {
    pub fn new(store: Arc<Store>, metrics: Metrics, budget: RetryBudget) -> Self {
        Self {
            store,
            metrics,
            budget,
        }
    }

    async fn read(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        started: Instant,
    ) -> Result<Option<Watermark>, DecideError> {
        read_with_retries(self.budget, started, || {
            self.store.read_sequence(namespace, stream)
        })
        .await
    }

    /// Logs an unknown outcome, resolves it with a serial read and counts how.
    /// `offered` is the number an advance offered: the ring says whether it
    /// landed with `writer` (an offerer's token is shared by all its offers,
    /// so "some entry is ours" would not do); without one, the writer column.
    async fn resolve(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        error: StoreError,
        writer: Uuid,
        offered: Option<u64>,
        started: Instant,
    ) -> Result<Option<Watermark>, DecideError> {
        if error.kind == FailureKind::Rejected {
            return Err(rejected(error));
        }
        tracing::warn!(
            statement = error.statement,
            namespace = %namespace,
            error = %error,
            "conditional write outcome unknown, resolving with a serial read"
        );
        let resolved = self.read(namespace, stream, started).await;
        let landed = |watermark: &Watermark| match offered {
            Some(seq) => watermark.accepted_by(seq) == AcceptedBy::Token(writer),
            None => watermark.writer == Some(writer),
        };
        let label = match &resolved {
            Ok(Some(watermark)) if landed(watermark) => "ours",
            Ok(Some(_)) => "theirs",
            Ok(None) => "absent",
            Err(_) => "unresolved",
        };
        self.metrics.record_unknown_outcome(error.statement, label);
        resolved
    }

    /// Whether the stream's ring shows `seq` accepted with `writer`: an
    /// offerer's earlier offer of this number. Read serially, since a
    /// refused UPDATE returns only `last`.
    async fn accepted_from(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        seq: u64,
        writer: Uuid,
        started: Instant,
    ) -> Result<bool, DecideError> {
        let watermark = self.read(namespace, stream, started).await?;
        Ok(watermark.is_some_and(
            |watermark| matches!(watermark.accepted_by(seq), AcceptedBy::Token(token) if token == writer),
        ))
    }

    /// Offers `seq` to the stream.
    pub async fn advance(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        seq: SequenceNumber,
        allow_gaps: bool,
        offerer: Option<&Offerer>,
    ) -> Result<AdvanceOutcome, DecideError> {
        let outcome = self
            .advance_inner(namespace, stream, seq.get(), allow_gaps, offerer)
            .await;
        let label = match &outcome {
            Ok(AdvanceOutcome::Accepted { skipped: None, .. }) => "accepted",
            Ok(AdvanceOutcome::Accepted {
                skipped: Some(_), ..
            }) => "accepted_with_gap",
            Ok(AdvanceOutcome::Duplicate { .. }) => "duplicate",
            Ok(AdvanceOutcome::Gap { .. }) => "gap",
            Err(DecideError::Undecided { .. }) => "unavailable",
            Err(_) => "error",
        };
        self.metrics.record_operation("sequence_advance", label);
        outcome
    }

    async fn advance_inner(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        seq: u64,
        allow_gaps: bool,
        offerer: Option<&Offerer>,
    ) -> Result<AdvanceOutcome, DecideError> {
        let started = Instant::now();
        // Written with the advance: after an unknown outcome, a serial read
        // that finds it proves the advance was this request's, not that of
        // a concurrent consumer offering the same number. With an offerer,
        // the token is the offerer's own, so its retries find it too.
        let writer = offerer.map_or_else(Uuid::new_v4, Offerer::writer_token);
        // The first attempt guesses the common case, in-order delivery: the
        // stream stands at seq - 1 (or does not exist, for seq 1). A wrong
        // guess costs nothing but a refused CAS, which returns the truth.
        let mut current: Option<u64> = (seq > 1).then_some(seq - 1);
        let mut known = false;
        // Set once an attempt's outcome is unknown: from then on, that
        // attempt may still apply. Cassandra's coordinator retries a
        // preempted CAS until cas_contention_timeout, even after the client
        // gave up on it, so a serial read that missed it proves nothing
        // about later. Every attempt carries the same writer, and every
        // later answer is checked for it.
        let mut uncertain = false;
        for _ in 0..self.budget.max_steps {
            let last = current.unwrap_or(0);
            if known && let Verdict::Refuse(outcome) = judge(seq, allow_gaps, last) {
                if offerer.is_some()
                    && matches!(outcome, AdvanceOutcome::Duplicate { .. })
                    && self
                        .accepted_from(namespace, stream, seq, writer, started)
                        .await?
                {
                    return Ok(AdvanceOutcome::Accepted {
                        last: seq,
                        skipped: None,
                    });
                }
                return Ok(outcome);
            }
            let now = now_millis();
            let cas = match current {
                None => {
                    self.store
                        .insert_sequence(namespace, stream, seq, writer, now)
                        .await
                }
                Some(expected) => {
                    self.store
                        .advance_sequence(namespace, stream, expected, seq, writer, now)
                        .await
                }
            };
            let seen = match cas {
                Ok(SequenceCas::Applied) => {
                    return Ok(AdvanceOutcome::Accepted {
                        last: seq,
                        skipped: skipped(seq, last),
                    });
                }
                Ok(SequenceCas::NotApplied(seen)) if !uncertain => seen,
                // A refused UPDATE returns only `last`; the ring, which says
                // whether the earlier attempt landed since, needs the row.
                Ok(SequenceCas::NotApplied(_)) => self.read(namespace, stream, started).await?,
                Err(error) => {
                    uncertain = true;
                    self.resolve(namespace, stream, error, writer, Some(seq), started)
                        .await?
                }
            };
            if uncertain {
                // Other consumers may have moved the stream past `seq`
                // since: the ring, not `last`, says who accepted it.
                match seen.as_ref().map(|watermark| watermark.accepted_by(seq)) {
                    Some(AcceptedBy::Token(token)) if token == writer => {
                        return Ok(AdvanceOutcome::Accepted {
                            last: seq,
                            skipped: skipped(seq, last),
                        });
                    }
                    Some(AcceptedBy::Forgotten) => {
                        return Err(DecideError::Undecided {
                            detail: format!(
                                "the answer to offering {seq} to stream {:?} was lost and \
                                 the stream has moved on too far to tell whether it was \
                                 accepted; retry",
                                stream.as_str()
                            ),
                        });
                    }
                    _ => {}
                }
            }
            current = seen.map(|watermark| watermark.last);
            known = true;
        }
        Err(DecideError::Undecided {
            detail: format!(
                "the advance of stream {:?} in {namespace} kept losing races; retry",
                stream.as_str()
            ),
        })
    }

    /// Sets the watermark to `last`, creating the stream if needed.
    pub async fn set(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        last: WatermarkValue,
    ) -> Result<(), DecideError> {
        let started = Instant::now();
        let target = last.get();
        let writer = Uuid::new_v4();
        let mut current: Option<u64> = None;
        let mut uncertain = false;
        for _ in 0..self.budget.max_steps {
            let now = now_millis();
            let cas = match current {
                None => {
                    self.store
                        .insert_sequence(namespace, stream, target, writer, now)
                        .await
                }
                Some(expected) => {
                    self.store
                        .advance_sequence(namespace, stream, expected, target, writer, now)
                        .await
                }
            };
            let seen = match cas {
                Ok(SequenceCas::Applied) => {
                    self.metrics.record_operation("sequence_set", "done");
                    return Ok(());
                }
                Ok(SequenceCas::NotApplied(seen)) if !uncertain => seen,
                // An earlier attempt may have landed since (see `advance`);
                // a refused UPDATE does not return the writer.
                Ok(SequenceCas::NotApplied(_)) => self.read(namespace, stream, started).await?,
                Err(error) => {
                    uncertain = true;
                    self.resolve(namespace, stream, error, writer, None, started)
                        .await?
                }
            };
            if uncertain
                && seen
                    .as_ref()
                    .is_some_and(|watermark| watermark.writer == Some(writer))
            {
                self.metrics.record_operation("sequence_set", "done");
                return Ok(());
            }
            current = seen.map(|watermark| watermark.last);
        }
        self.metrics.record_operation("sequence_set", "unavailable");
        Err(DecideError::Undecided {
            detail: format!(
                "setting stream {:?} in {namespace} kept losing races; retry",
                stream.as_str()
            ),
        })
    }

    /// Deletes a stream: its next message starts from `last = 0` again.
    pub async fn delete(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
    ) -> Result<StreamOutcome, DecideError> {
        let started = Instant::now();
        // Set once a delete's outcome is unknown: it may still land later
        // (see `advance`), so "nothing to delete" is then our own delete.
        let mut uncertain = false;
        for _ in 0..self.budget.max_steps {
            match self.store.delete_sequence(namespace, stream).await {
                Ok(SequenceCas::Applied) => return Ok(StreamOutcome::Done),
                Ok(SequenceCas::NotApplied(_)) if uncertain => return Ok(StreamOutcome::Done),
                Ok(SequenceCas::NotApplied(_)) => return Ok(StreamOutcome::NotFound),
                Err(error) => {
                    uncertain = true;
                    // Gone after an unknown delete: deleted (by us, or by a
                    // concurrent delete); either way the answer is "deleted".
                    let seen = self
                        .resolve(namespace, stream, error, Uuid::nil(), None, started)
                        .await?;
                    if seen.is_none() {
                        return Ok(StreamOutcome::Done);
                    }
                }
            }
        }
        Err(DecideError::Undecided {
            detail: format!(
                "deleting stream {:?} in {namespace} could not be decided; retry",
                stream.as_str()
            ),
        })
    }

    /// Reads a stream's watermark linearizably.
    pub async fn get(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
    ) -> Result<Option<Watermark>, DecideError> {
        self.read(namespace, stream, Instant::now()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_number_advances() {
        assert_eq!(judge(1, false, 0), Verdict::Advance);
        assert_eq!(judge(8, false, 7), Verdict::Advance);
    }

    #[test]
    fn numbers_at_or_below_the_watermark_are_duplicates() {
        assert_eq!(
            judge(7, false, 7),
            Verdict::Refuse(AdvanceOutcome::Duplicate { last: 7 })
        );
        assert_eq!(
            judge(1, true, 7),
            Verdict::Refuse(AdvanceOutcome::Duplicate { last: 7 })
        );
    }

    #[test]
    fn a_jump_is_a_gap_unless_gaps_are_allowed() {
        assert_eq!(
            judge(10, false, 7),
            Verdict::Refuse(AdvanceOutcome::Gap {
                last: 7,
                expected: 8
            })
        );
        assert_eq!(judge(10, true, 7), Verdict::Advance);
        assert_eq!(skipped(10, 7), Some((8, 9)));
        assert_eq!(skipped(8, 7), None);
        assert_eq!(skipped(5, 0), Some((1, 4)));
    }
}
