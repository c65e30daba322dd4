//! Deleting a stream, as a machine: its next number starts from `last = 0`.
//!
//! | what happened                         | answer              |
//! |---------------------------------------|---------------------|
//! | applied                               | deleted             |
//! | refused (nothing to delete)           | not_found           |
//! | lost answer, gone                     | deleted (by us, or a concurrent delete: deleted either way) |
//! | lost answer, still there              | delete again        |
//! | after a lost answer, refused          | deleted: our first delete landed late |

use chrono::{DateTime, Utc};

use super::{StreamOutcome, Streams, stream_resolution};
use crate::domain::{SequenceCas, SequenceWrite, StreamRow};
use crate::lifecycle::{Action, Machine, Next, Observation, Resolution, Seen, Subject};

pub struct DeleteMachine<'a> {
    uncertain: bool,
    /// What the 503 names.
    what: Subject<'a>,
}

impl<'a> DeleteMachine<'a> {
    pub fn new(what: Subject<'a>) -> Self {
        Self {
            uncertain: false,
            what,
        }
    }
}

impl Machine for DeleteMachine<'_> {
    type Table = Streams;
    type Answer = StreamOutcome;

    fn start(&mut self, _now: DateTime<Utc>) -> Next<Self> {
        Action::Write(SequenceWrite::Delete)
    }

    fn observe(&mut self, observation: Seen<Self>, _now: DateTime<Utc>) -> Next<Self> {
        match observation {
            Observation::Written(SequenceCas::Applied) => Action::Answer(StreamOutcome::Done),
            Observation::Written(SequenceCas::NotApplied(_)) if self.uncertain => {
                Action::Answer(StreamOutcome::Done)
            }
            Observation::Written(SequenceCas::NotApplied(_)) => {
                Action::Answer(StreamOutcome::NotFound)
            }
            Observation::Resolved(seen) | Observation::Read(seen) => {
                self.uncertain = true;
                match seen {
                    None => Action::Answer(StreamOutcome::Done),
                    Some(_) => Action::Write(SequenceWrite::Delete),
                }
            }
            Observation::QuorumRead(_) => Action::Write(SequenceWrite::Delete),
        }
    }

    fn resolution(&self, seen: &Option<StreamRow>) -> Resolution {
        // A delete leaves nothing of its own: a stream still there is
        // someone's.
        stream_resolution(seen, |_| false)
    }

    fn undecided(&self) -> String {
        format!("deleting stream {} could not be decided; retry", self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now_millis;
    use crate::sequences::fixtures::{SUBJECT, stream};

    #[test]
    fn a_delete_is_decisive_until_an_answer_is_lost() {
        let now = now_millis();
        let row = stream(3, None, Vec::new());
        let mut plain = DeleteMachine::new(SUBJECT);
        assert_eq!(plain.start(now), Action::Write(SequenceWrite::Delete));
        assert_eq!(
            plain.observe(Observation::Written(SequenceCas::NotApplied(None)), now),
            Action::Answer(StreamOutcome::NotFound)
        );
        let mut lost = DeleteMachine::new(SUBJECT);
        lost.start(now);
        assert_eq!(
            lost.observe(Observation::Resolved(row.clone()), now),
            Action::Write(SequenceWrite::Delete)
        );
        // Refused now: the first delete landed late. It was ours.
        assert_eq!(
            lost.observe(Observation::Written(SequenceCas::NotApplied(None)), now),
            Action::Answer(StreamOutcome::Done)
        );
        let mut gone = DeleteMachine::new(SUBJECT);
        gone.start(now);
        assert_eq!(gone.resolution(&None), Resolution::Absent);
        assert_eq!(
            gone.observe(Observation::Resolved(None), now),
            Action::Answer(StreamOutcome::Done)
        );
    }
}
