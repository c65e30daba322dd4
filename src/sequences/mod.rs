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

mod advance;
mod delete;
mod set;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use advance::AdvanceMachine;
use delete::DeleteMachine;
use set::SetMachine;

use crate::domain::{
    Namespace, Offerer, SequenceCas, SequenceNumber, SequenceWrite, StreamName, StreamRow,
    WatermarkValue,
};
use crate::lifecycle::executor::read_with_retries;
use crate::lifecycle::{
    self, DecideError, Io, Machine, Observation, Resolution, RetryBudget, Subject, Table,
};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

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

    /// Runs a stream lifecycle on `stream`'s row.
    async fn run<M>(
        &self,
        machine: M,
        namespace: &Namespace,
        stream: &StreamName,
    ) -> Result<M::Answer, DecideError>
    where
        M: Machine<Table = Streams>,
    {
        let io = SequenceIo {
            store: &self.store,
            namespace,
            stream,
        };
        lifecycle::run(machine, &io, self.budget, &self.metrics).await
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
        // Written with the advance: after an unknown outcome, a serial read
        // that finds it proves the advance was this request's, not that of
        // a concurrent consumer offering the same number. With an offerer,
        // the token is the offerer's own, so its retries find it too.
        let writer = offerer.map_or_else(Uuid::new_v4, Offerer::writer_token);
        let machine = AdvanceMachine::new(
            seq.get(),
            allow_gaps,
            offerer.is_some(),
            writer,
            Subject::new(stream.as_str(), namespace),
        );
        let outcome = self.run(machine, namespace, stream).await;
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

    /// Sets the watermark to `last`, creating the stream if needed.
    pub async fn set(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
        last: WatermarkValue,
    ) -> Result<(), DecideError> {
        let machine = SetMachine::new(
            last.get(),
            Uuid::new_v4(),
            Subject::new(stream.as_str(), namespace),
        );
        let outcome = self.run(machine, namespace, stream).await;
        let label = if outcome.is_ok() {
            "done"
        } else {
            "unavailable"
        };
        self.metrics.record_operation("sequence_set", label);
        outcome
    }

    /// Deletes a stream: its next message starts from `last = 0` again.
    pub async fn delete(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
    ) -> Result<StreamOutcome, DecideError> {
        let machine = DeleteMachine::new(Subject::new(stream.as_str(), namespace));
        self.run(machine, namespace, stream).await
    }

    /// Reads a stream's watermark linearizably.
    pub async fn get(
        &self,
        namespace: &Namespace,
        stream: &StreamName,
    ) -> Result<Option<StreamRow>, DecideError> {
        read_with_retries(self.budget, Instant::now(), || {
            self.store.read_sequence(namespace, stream)
        })
        .await
    }
}

/// The stream rows, as the sequence lifecycles see them.
pub struct Streams;

impl Table for Streams {
    type Write = SequenceWrite;
    type Written = SequenceCas;
    type View = Option<StreamRow>;
}

/// What a retried compare-and-set (advance, set) makes of an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CasStep {
    /// The write applied.
    Applied,
    /// Decide from the stream as seen (refused, read, or found after a lost
    /// answer).
    Seen(Option<StreamRow>),
    /// Refused after a lost answer: a refused UPDATE returns only `last`,
    /// and whether the earlier attempt landed since takes the whole row
    /// (its writer, its ring). Read it.
    ReadRow,
}

/// Sorts an observation for a machine that retries its compare-and-set
/// from the stream it sees. A lost answer sets `uncertain`: from then on
/// that attempt may still land, so every later answer is checked for it.
fn cas_step(
    observation: Observation<SequenceCas, Option<StreamRow>>,
    uncertain: &mut bool,
) -> CasStep {
    match observation {
        Observation::Written(SequenceCas::Applied) => CasStep::Applied,
        Observation::Written(SequenceCas::NotApplied(seen)) if !*uncertain => CasStep::Seen(seen),
        Observation::Written(SequenceCas::NotApplied(_)) => CasStep::ReadRow,
        Observation::Resolved(seen) => {
            *uncertain = true;
            CasStep::Seen(seen)
        }
        Observation::Read(seen) => CasStep::Seen(seen),
        Observation::QuorumRead(seen) => CasStep::Seen(seen.flatten()),
    }
}

/// Whether a stream, as a serial read after a lost answer found it, shows
/// the write (`ours`), someone else's, or no stream at all.
fn stream_resolution(
    seen: &Option<StreamRow>,
    ours: impl FnOnce(&StreamRow) -> bool,
) -> Resolution {
    match seen {
        Some(row) if ours(row) => Resolution::Ours,
        Some(_) => Resolution::Theirs,
        None => Resolution::Absent,
    }
}

/// The store half of the sequence lifecycles: one stream's row.
struct SequenceIo<'a> {
    store: &'a Store,
    namespace: &'a Namespace,
    stream: &'a StreamName,
}

impl Io<Streams> for SequenceIo<'_> {
    async fn write(
        &self,
        write: &SequenceWrite,
        now: DateTime<Utc>,
    ) -> Result<SequenceCas, StoreError> {
        self.store
            .write_sequence(self.namespace, self.stream, write, now)
            .await
    }

    async fn read_serial(&self, _now: DateTime<Utc>) -> Result<Option<StreamRow>, StoreError> {
        self.store.read_sequence(self.namespace, self.stream).await
    }

    /// Streams have no quorum read: every read of one is decisive.
    async fn read_quorum(&self, now: DateTime<Utc>) -> Result<Option<StreamRow>, StoreError> {
        self.read_serial(now).await
    }

    fn namespace(&self) -> &str {
        self.namespace.as_str()
    }
}

/// What the sequence lifecycles' unit tests share.
#[cfg(test)]
mod fixtures {
    use uuid::Uuid;

    use crate::domain::StreamRow;
    use crate::lifecycle::Subject;

    /// The stream every test works on, as a 503 would name it.
    pub const SUBJECT: Subject<'static> = Subject {
        name: "s",
        namespace: "ns",
    };

    /// A stream at `last`, last written by `writer`, remembering `recent`.
    pub fn stream(last: u64, writer: Option<Uuid>, recent: Vec<(u64, Uuid)>) -> Option<StreamRow> {
        Some(StreamRow {
            last,
            writer,
            updated_at: None,
            recent,
        })
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
