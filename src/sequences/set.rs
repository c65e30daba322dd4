//! Setting a stream's watermark by hand, as a machine: a compare-and-set
//! from whatever the stream holds, until one applies.
//!
//! | what happened                                | next                       |
//! |----------------------------------------------|----------------------------|
//! | applied                                      | done                       |
//! | refused                                      | again, from the `last` seen |
//! | lost answer, the row carries our writer      | done                       |
//! | lost answer, it does not                     | again, from the `last` seen |
//! | after a lost answer, refused                 | read the row (the writer)  |

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{CasStep, Streams, cas_step, stream_resolution};
use crate::domain::{SequenceWrite, StreamRow};
use crate::lifecycle::{Action, Machine, Next, Resolution, Seen, Subject};

pub struct SetMachine<'a> {
    target: u64,
    writer: Uuid,
    current: Option<u64>,
    /// An earlier attempt's outcome was unknown: it may still land, and a
    /// refused UPDATE does not return the writer.
    uncertain: bool,
    /// What the 503 names.
    what: Subject<'a>,
}

impl<'a> SetMachine<'a> {
    pub fn new(target: u64, writer: Uuid, what: Subject<'a>) -> Self {
        Self {
            target,
            writer,
            current: None,
            uncertain: false,
            what,
        }
    }

    fn attempt(&self) -> Action<SequenceWrite, ()> {
        Action::Write(SequenceWrite::moving(
            self.current,
            self.target,
            self.writer,
        ))
    }

    fn after(&mut self, seen: Option<StreamRow>) -> Action<SequenceWrite, ()> {
        if self.uncertain
            && seen
                .as_ref()
                .is_some_and(|row| row.writer == Some(self.writer))
        {
            return Action::Answer(());
        }
        self.current = seen.map(|row| row.last);
        self.attempt()
    }
}

impl Machine for SetMachine<'_> {
    type Table = Streams;
    type Answer = ();

    fn start(&mut self, _now: DateTime<Utc>) -> Next<Self> {
        self.attempt()
    }

    fn observe(&mut self, observation: Seen<Self>, _now: DateTime<Utc>) -> Next<Self> {
        match cas_step(observation, &mut self.uncertain) {
            CasStep::Applied => Action::Answer(()),
            CasStep::Seen(seen) => self.after(seen),
            CasStep::ReadRow => Action::ReadSerial,
        }
    }

    fn resolution(&self, seen: &Option<StreamRow>) -> Resolution {
        stream_resolution(seen, |row| row.writer == Some(self.writer))
    }

    fn undecided(&self) -> String {
        format!("setting stream {} kept losing races; retry", self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SequenceCas, now_millis};
    use crate::lifecycle::Observation;
    use crate::sequences::fixtures::{SUBJECT, stream};

    /// A stream at `last`, last written by `writer`.
    fn row(last: u64, writer: Option<Uuid>) -> Option<StreamRow> {
        stream(last, writer, Vec::new())
    }

    #[test]
    fn a_set_moves_from_whatever_the_stream_holds() {
        let writer = Uuid::new_v4();
        let now = now_millis();
        let mut machine = SetMachine::new(5, writer, SUBJECT);
        assert_eq!(
            machine.start(now),
            Action::Write(SequenceWrite::Insert { last: 5, writer })
        );
        assert_eq!(
            machine.observe(
                Observation::Written(SequenceCas::NotApplied(row(9, None))),
                now
            ),
            Action::Write(SequenceWrite::Advance {
                expected: 9,
                last: 5,
                writer
            })
        );
        assert_eq!(
            machine.observe(Observation::Written(SequenceCas::Applied), now),
            Action::Answer(())
        );
    }

    #[test]
    fn a_lost_answer_is_done_only_if_the_row_carries_our_writer() {
        let writer = Uuid::new_v4();
        let now = now_millis();
        let mut landed = SetMachine::new(5, writer, SUBJECT);
        landed.start(now);
        assert_eq!(landed.resolution(&row(5, Some(writer))), Resolution::Ours);
        assert_eq!(
            landed.observe(Observation::Resolved(row(5, Some(writer))), now),
            Action::Answer(())
        );
        let mut lost = SetMachine::new(5, writer, SUBJECT);
        lost.start(now);
        assert_eq!(
            lost.observe(Observation::Resolved(row(2, Some(Uuid::new_v4()))), now),
            Action::Write(SequenceWrite::Advance {
                expected: 2,
                last: 5,
                writer
            })
        );
        // Refused now: our first attempt may have landed; read the writer.
        assert_eq!(
            lost.observe(
                Observation::Written(SequenceCas::NotApplied(row(5, None))),
                now
            ),
            Action::ReadSerial
        );
        assert_eq!(
            lost.observe(Observation::Read(row(5, Some(writer))), now),
            Action::Answer(())
        );
    }
}
