//! Offering a number to a stream, as a machine.
//!
//! The first attempt guesses the common case, in-order delivery: the stream
//! stands at seq − 1 (or does not exist, for seq 1). A wrong guess costs
//! nothing but a refused CAS, which returns the truth.
//!
//! Every attempt writes one writer token with the number, into the ring of
//! the last 64 acceptances: after an unknown outcome, the ring says whether
//! the number was accepted by this request (or, with an offerer, by any
//! offer of that offerer) — other consumers may have moved the stream past
//! it since, so `last` alone cannot say.
//!
//! | what the stream shows (`judge` against `last`) | answer                    |
//! |------------------------------------------------|---------------------------|
//! | seq = last + 1, or a jump with `allow_gaps`    | write; applied → accepted |
//! | seq ≤ last                                     | duplicate (an offerer's own earlier acceptance in the ring → accepted) |
//! | a jump without `allow_gaps`                    | gap, expected = last + 1  |
//! | after a lost answer: the ring has seq with our token | accepted            |
//! | after a lost answer: the ring forgot seq       | 503: cannot tell          |

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    AdvanceOutcome, CasStep, Streams, Verdict, cas_step, judge, skipped, stream_resolution,
};
use crate::domain::{AcceptedBy, SequenceWrite, StreamRow};
use crate::lifecycle::{Action, Machine, Next, Observation, Resolution, Seen, Subject};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Offering,
    /// `judge` said duplicate: reading the ring for the offerer's own
    /// earlier acceptance.
    CheckingRing(AdvanceOutcome),
}

pub struct AdvanceMachine<'a> {
    seq: u64,
    allow_gaps: bool,
    /// Whether an offerer was named (its token is shared by all its offers).
    offerer: bool,
    writer: Uuid,
    /// The watermark as last known (`None`: no stream).
    current: Option<u64>,
    /// Whether `current` was read rather than guessed.
    known: bool,
    /// The watermark the write in flight moves from.
    from: u64,
    /// Set once an attempt's outcome is unknown: from then on, that attempt
    /// may still apply (a coordinator retries a preempted CAS until
    /// cas_contention_timeout, even after the client gave up), so every
    /// later answer is checked for our writer.
    uncertain: bool,
    phase: Phase,
    /// What the 503 names.
    what: Subject<'a>,
}

impl<'a> AdvanceMachine<'a> {
    pub fn new(seq: u64, allow_gaps: bool, offerer: bool, writer: Uuid, what: Subject<'a>) -> Self {
        Self {
            seq,
            allow_gaps,
            offerer,
            writer,
            current: (seq > 1).then_some(seq - 1),
            known: false,
            from: 0,
            uncertain: false,
            phase: Phase::Offering,
            what,
        }
    }

    fn accepted(&self) -> AdvanceOutcome {
        AdvanceOutcome::Accepted {
            last: self.seq,
            skipped: skipped(self.seq, self.from),
        }
    }

    /// The next attempt, or the answer, from the watermark as known.
    fn attempt(&mut self) -> Action<SequenceWrite, AdvanceOutcome> {
        let last = self.current.unwrap_or(0);
        if self.known
            && let Verdict::Refuse(outcome) = judge(self.seq, self.allow_gaps, last)
        {
            if self.offerer && matches!(outcome, AdvanceOutcome::Duplicate { .. }) {
                // A refused UPDATE returns only `last`: read the ring.
                self.phase = Phase::CheckingRing(outcome);
                return Action::ReadSerial;
            }
            return Action::Answer(outcome);
        }
        self.from = last;
        Action::Write(SequenceWrite::moving(self.current, self.seq, self.writer))
    }

    /// Decides from the stream as seen after a refusal or a lost answer.
    fn after(&mut self, seen: Option<StreamRow>) -> Action<SequenceWrite, AdvanceOutcome> {
        if self.uncertain {
            match seen.as_ref().map(|row| row.accepted_by(self.seq)) {
                Some(AcceptedBy::Token(token)) if token == self.writer => {
                    return Action::Answer(self.accepted());
                }
                Some(AcceptedBy::Forgotten) => {
                    return Action::Undecided(format!(
                        "the answer to offering {} to stream {} was lost and the stream has \
                         moved on too far to tell whether it was accepted; retry",
                        self.seq, self.what
                    ));
                }
                _ => {}
            }
        }
        self.current = seen.map(|row| row.last);
        self.known = true;
        self.attempt()
    }
}

impl Machine for AdvanceMachine<'_> {
    type Table = Streams;
    type Answer = AdvanceOutcome;

    fn start(&mut self, _now: DateTime<Utc>) -> Next<Self> {
        self.attempt()
    }

    fn observe(&mut self, observation: Seen<Self>, _now: DateTime<Utc>) -> Next<Self> {
        if let Phase::CheckingRing(outcome) = self.phase {
            let ring = match observation {
                Observation::Read(seen) | Observation::Resolved(seen) => seen,
                Observation::QuorumRead(seen) => seen.flatten(),
                Observation::Written(_) => None,
            };
            let ours = ring.is_some_and(|row| {
                matches!(row.accepted_by(self.seq), AcceptedBy::Token(token) if token == self.writer)
            });
            return Action::Answer(if ours {
                AdvanceOutcome::Accepted {
                    last: self.seq,
                    skipped: None,
                }
            } else {
                outcome
            });
        }
        match cas_step(observation, &mut self.uncertain) {
            CasStep::Applied => Action::Answer(self.accepted()),
            CasStep::Seen(seen) => self.after(seen),
            CasStep::ReadRow => Action::ReadSerial,
        }
    }

    fn resolution(&self, seen: &Option<StreamRow>) -> Resolution {
        stream_resolution(seen, |row| {
            row.accepted_by(self.seq) == AcceptedBy::Token(self.writer)
        })
    }

    fn undecided(&self) -> String {
        format!(
            "the advance of stream {} kept losing races; retry",
            self.what
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SequenceCas, now_millis};
    use crate::sequences::fixtures::{SUBJECT, stream};

    /// A stream at `last` remembering `recent`.
    fn row(last: u64, recent: Vec<(u64, Uuid)>) -> Option<StreamRow> {
        stream(last, None, recent)
    }

    fn machine(seq: u64, offerer: bool, writer: Uuid) -> AdvanceMachine<'static> {
        AdvanceMachine::new(seq, false, offerer, writer, SUBJECT)
    }

    /// An offer of 8 by `writer`, started: its first attempt is in flight.
    fn offering_8(offerer: bool, writer: Uuid, now: DateTime<Utc>) -> AdvanceMachine<'static> {
        let mut machine = machine(8, offerer, writer);
        machine.start(now);
        machine
    }

    /// A refused write's answer, the stream at `last` (a refused UPDATE
    /// sends `last` alone).
    fn refused(last: u64) -> Seen<AdvanceMachine<'static>> {
        Observation::Written(SequenceCas::NotApplied(row(last, vec![])))
    }

    /// The attempt to move the stream from 7 to 8.
    fn advance_7_to_8(writer: Uuid) -> Next<AdvanceMachine<'static>> {
        Action::Write(SequenceWrite::Advance {
            expected: 7,
            last: 8,
            writer,
        })
    }

    const ACCEPTED_8: Next<AdvanceMachine<'static>> = Action::Answer(AdvanceOutcome::Accepted {
        last: 8,
        skipped: None,
    });

    #[test]
    fn the_first_attempt_guesses_in_order_delivery() {
        let writer = Uuid::new_v4();
        let now = now_millis();
        assert_eq!(
            machine(1, false, writer).start(now),
            Action::Write(SequenceWrite::Insert { last: 1, writer })
        );
        assert_eq!(machine(8, false, writer).start(now), advance_7_to_8(writer));
    }

    #[test]
    fn a_refusal_returns_the_truth_and_the_number_is_judged_against_it() {
        let writer = Uuid::new_v4();
        let now = now_millis();
        for (seen, answer) in [
            (
                row(8, vec![]),
                Action::Answer(AdvanceOutcome::Duplicate { last: 8 }),
            ),
            (
                row(3, vec![]),
                Action::Answer(AdvanceOutcome::Gap {
                    last: 3,
                    expected: 4,
                }),
            ),
            (
                row(5, vec![]),
                Action::Answer(AdvanceOutcome::Gap {
                    last: 5,
                    expected: 6,
                }),
            ),
            (row(7, vec![]), advance_7_to_8(writer)),
            // No stream: 8 is a gap, from 1.
            (
                None,
                Action::Answer(AdvanceOutcome::Gap {
                    last: 0,
                    expected: 1,
                }),
            ),
        ] {
            let mut machine = offering_8(false, writer, now);
            assert_eq!(
                machine.observe(Observation::Written(SequenceCas::NotApplied(seen)), now),
                answer
            );
        }
    }

    #[test]
    fn a_lost_answer_is_accepted_only_if_the_ring_holds_our_token() {
        let writer = Uuid::new_v4();
        let now = now_millis();
        let mut ours = offering_8(false, writer, now);
        let landed = row(9, vec![(8, writer), (9, Uuid::new_v4())]);
        assert_eq!(ours.resolution(&landed), Resolution::Ours);
        assert_eq!(ours.observe(Observation::Resolved(landed), now), ACCEPTED_8);
        // Another consumer's acceptance of 8: a duplicate for us.
        let mut theirs = offering_8(false, writer, now);
        let other = row(8, vec![(8, Uuid::new_v4())]);
        assert_eq!(theirs.resolution(&other), Resolution::Theirs);
        assert_eq!(
            theirs.observe(Observation::Resolved(other), now),
            Action::Answer(AdvanceOutcome::Duplicate { last: 8 })
        );
        // 72 = 8 + 64 took 8's slot: nobody can tell.
        let mut forgotten = offering_8(false, writer, now);
        assert!(matches!(
            forgotten.observe(
                Observation::Resolved(row(72, vec![(72, Uuid::new_v4())])),
                now
            ),
            Action::Undecided(_)
        ));
    }

    #[test]
    fn after_a_lost_answer_a_refusal_is_checked_against_the_ring() {
        let writer = Uuid::new_v4();
        let now = now_millis();
        let mut machine = offering_8(false, writer, now);
        // Not landed yet: try again from the watermark read.
        assert_eq!(
            machine.observe(Observation::Resolved(row(7, vec![])), now),
            advance_7_to_8(writer)
        );
        // Refused, because the first attempt landed meanwhile.
        assert_eq!(machine.observe(refused(8), now), Action::ReadSerial);
        assert_eq!(
            machine.observe(Observation::Read(row(8, vec![(8, writer)])), now),
            ACCEPTED_8
        );
    }

    #[test]
    fn an_offerer_hears_accepted_again_for_its_own_number() {
        let writer = Uuid::new_v4();
        let now = now_millis();
        for (ring, answer) in [
            // Its own earlier acceptance of 8 is in the ring.
            (row(9, vec![(8, writer)]), ACCEPTED_8),
            // Someone else's acceptance of 8.
            (
                row(8, vec![(8, Uuid::new_v4())]),
                Action::Answer(AdvanceOutcome::Duplicate { last: 8 }),
            ),
        ] {
            let mut machine = offering_8(true, writer, now);
            assert_eq!(machine.observe(refused(8), now), Action::ReadSerial);
            assert_eq!(machine.observe(Observation::Read(ring), now), answer);
        }
    }
}
