//! Release: delete an in-progress claim so the key can be claimed again at
//! once, only if the token still owns it.
//!
//! It first reads the window the token holds. If the delete's answer is
//! lost and someone else holds the key by the time we look, the window
//! tells whether they took it over from us (same window: our delete did not
//! apply) or claimed it after it was free (a new window: our delete freed
//! it). A token that held nothing to begin with cannot have deleted
//! anything, whatever the row shows afterwards.
//!
//! | what the delete or the serial read shows       | answer            |
//! |------------------------------------------------|-------------------|
//! | applied                                        | released          |
//! | refused: no owner                              | not_found         |
//! | refused: another owner                         | not_owner         |
//! | refused: ours, completed                       | already_completed |
//! | after a lost answer: gone, and we held it      | released          |
//! | after a lost answer: gone, and we held nothing | not_found         |
//! | after a lost answer: ours, in progress         | delete again      |
//! | after a lost answer: ours, completed           | already_completed |
//! | after a lost answer: another owner, new window | released          |
//! | after a lost answer: another owner, our window | not_owner         |

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::claim::token_resolution;
use super::{Claims, TransitionOutcome};
use crate::domain::{CasOutcome, ClaimState, ClaimToken, ClaimWrite, Refusal, RowView};
use crate::lifecycle::{Action, Machine, Next, Observation, Resolution, Seen, Subject};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Learning which window the token holds.
    Before,
    /// Deleting, or reading after a delete.
    Deleting,
    /// The delete was refused on a completed claim of ours: reading it.
    ReadingCompleted,
}

pub struct ReleaseMachine<'a> {
    token: ClaimToken,
    phase: Phase,
    /// The window the token held before the delete, if any.
    our_window: Option<Uuid>,
    /// Set once a delete's outcome is unknown: that delete may still apply
    /// later (a coordinator retries a preempted CAS until
    /// cas_contention_timeout, even after the client gave up), so a later
    /// refusal is read as a view of the row, not taken at its word: "no
    /// claim" may be our own delete, landed late.
    uncertain: bool,
    /// What the 503 names.
    what: Subject<'a>,
}

impl<'a> ReleaseMachine<'a> {
    pub fn new(token: ClaimToken, what: Subject<'a>) -> Self {
        Self {
            token,
            phase: Phase::Before,
            our_window: None,
            uncertain: false,
            what,
        }
    }

    fn delete(&mut self) -> Action<ClaimWrite, TransitionOutcome> {
        self.phase = Phase::Deleting;
        Action::Write(ClaimWrite::Release { token: self.token })
    }

    fn learn_window(&mut self, view: &RowView) -> Action<ClaimWrite, TransitionOutcome> {
        self.our_window = match view {
            RowView::Live(record) if record.token == self.token => Some(record.window),
            _ => None,
        };
        self.delete()
    }

    /// The answer from the row as a serial read saw it after an unknown
    /// delete.
    fn judge(&mut self, view: RowView) -> Action<ClaimWrite, TransitionOutcome> {
        let answer = match view {
            // Gone: if we held it, our delete applied (or the window ended
            // meanwhile); either way the key is free, which is what release
            // means. If we held nothing, our delete could not apply: the
            // answer is what it would have been without the fault.
            RowView::Absent | RowView::Remnant { token: None } => {
                if self.our_window.is_some() {
                    TransitionOutcome::Released
                } else {
                    TransitionOutcome::NotFound
                }
            }
            RowView::Live(record) if record.token == self.token => {
                if record.state == ClaimState::Completed {
                    TransitionOutcome::AlreadyCompleted(record)
                } else {
                    // Still ours and in progress: the delete did not land.
                    return self.delete();
                }
            }
            RowView::Remnant { token: Some(held) } if held == self.token => return self.delete(),
            // Someone else holds a new window: the key was free after ours,
            // which only our delete (or the end of our window) can have
            // done, so the lost answer was a success and the key was
            // claimed again at once.
            RowView::Live(record)
                if self
                    .our_window
                    .is_some_and(|window| window != record.window) =>
            {
                TransitionOutcome::Released
            }
            // Someone holds our window: they took it over from our token
            // (its lease had passed) before the delete could apply.
            RowView::Live(_) | RowView::Remnant { .. } => TransitionOutcome::NotOwner,
        };
        Action::Answer(answer)
    }
}

impl Machine for ReleaseMachine<'_> {
    type Table = Claims;
    type Answer = TransitionOutcome;

    fn start(&mut self, _now: DateTime<Utc>) -> Next<Self> {
        Action::ReadQuorum
    }

    fn observe(&mut self, observation: Seen<Self>, _now: DateTime<Utc>) -> Next<Self> {
        match (self.phase, observation) {
            (Phase::Before, Observation::QuorumRead(Some(view)) | Observation::Read(view)) => {
                self.learn_window(&view)
            }
            (Phase::Before, Observation::QuorumRead(None)) => Action::ReadSerial,
            (_, Observation::Written(CasOutcome::Applied)) => {
                Action::Answer(TransitionOutcome::Released)
            }
            (_, Observation::Written(CasOutcome::NotApplied(_))) if self.uncertain => {
                Action::ReadSerial
            }
            // The refused DELETE reports the owner and state it saw, read
            // inside the same Paxos round: decisive.
            (_, Observation::Written(CasOutcome::NotApplied(refusal))) => {
                let (owner, state) = match refusal {
                    Refusal::Held { owner, state } => (owner, state),
                    Refusal::Exists(view) => (view.token(), None),
                };
                match (owner, state) {
                    (None, _) => Action::Answer(TransitionOutcome::NotFound),
                    (Some(held), _) if held != self.token => {
                        Action::Answer(TransitionOutcome::NotOwner)
                    }
                    (Some(_), Some(ClaimState::Completed)) => {
                        self.phase = Phase::ReadingCompleted;
                        Action::ReadSerial
                    }
                    // Our token without a state: a remnant past its expiry.
                    (Some(_), _) => Action::Answer(TransitionOutcome::NotFound),
                }
            }
            (Phase::ReadingCompleted, Observation::Read(view)) => Action::Answer(match view {
                RowView::Live(record) => TransitionOutcome::AlreadyCompleted(record),
                _ => TransitionOutcome::NotFound,
            }),
            (_, Observation::Resolved(view)) => {
                self.uncertain = true;
                self.judge(view)
            }
            (_, Observation::Read(view) | Observation::QuorumRead(Some(view))) => self.judge(view),
            (_, Observation::QuorumRead(None)) => Action::ReadSerial,
        }
    }

    fn resolution(&self, view: &RowView) -> Resolution {
        token_resolution(view, self.token)
    }

    fn undecided(&self) -> String {
        format!("the release of {} could not be decided; retry", self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::fixtures::{SUBJECT, after_quorum_read, in_progress};
    use crate::domain::{ClaimRecord, now_millis};

    fn record(token: ClaimToken) -> ClaimRecord {
        in_progress(token, now_millis())
    }

    /// A release of `token`'s in-progress claim, its delete in flight.
    fn deleting(token: ClaimToken, now: DateTime<Utc>) -> ReleaseMachine<'static> {
        let mut machine = ReleaseMachine::new(token, SUBJECT);
        after_quorum_read(&mut machine, RowView::Live(record(token)), now);
        machine
    }

    /// A release of `token` that first sees `before`, then loses the
    /// delete's answer and resolves it to `after`.
    fn lost_answer(
        token: ClaimToken,
        before: RowView,
        after: RowView,
    ) -> Action<ClaimWrite, TransitionOutcome> {
        let now = now_millis();
        let mut machine = ReleaseMachine::new(token, SUBJECT);
        assert_eq!(
            after_quorum_read(&mut machine, before, now),
            Action::Write(ClaimWrite::Release { token })
        );
        machine.observe(Observation::Resolved(after), now)
    }

    #[test]
    fn refusals_are_decisive() {
        let now = now_millis();
        let token = ClaimToken::generate();
        for (owner, state, answer) in [
            (None, None, Action::Answer(TransitionOutcome::NotFound)),
            (
                Some(ClaimToken::generate()),
                Some(ClaimState::InProgress),
                Action::Answer(TransitionOutcome::NotOwner),
            ),
            (
                Some(token),
                None,
                Action::Answer(TransitionOutcome::NotFound),
            ),
            (Some(token), Some(ClaimState::Completed), Action::ReadSerial),
        ] {
            let mut machine = deleting(token, now);
            let refused = CasOutcome::NotApplied(Refusal::Held { owner, state });
            assert_eq!(machine.observe(Observation::Written(refused), now), answer);
        }
    }

    #[test]
    fn a_lost_answer_gives_the_answer_the_fault_hid() {
        let token = ClaimToken::generate();
        let ours = record(token);
        let theirs_new_window = record(ClaimToken::generate());
        let theirs_our_window = ClaimRecord {
            window: ours.window,
            ..record(ClaimToken::generate())
        };
        let completed = ClaimRecord {
            state: ClaimState::Completed,
            ..ours.clone()
        };
        let cases = [
            // We held it and it is gone: our delete freed it.
            (
                RowView::Live(ours.clone()),
                RowView::Absent,
                TransitionOutcome::Released,
            ),
            // We held nothing (already released, or fenced and released by
            // the taker): the delete could not apply; without the fault it
            // was refused with no owner.
            (
                RowView::Absent,
                RowView::Absent,
                TransitionOutcome::NotFound,
            ),
            (
                RowView::Absent,
                RowView::Remnant { token: None },
                TransitionOutcome::NotFound,
            ),
            // Fenced by a takeover that still holds it.
            (
                RowView::Live(theirs_our_window.clone()),
                RowView::Live(theirs_our_window.clone()),
                TransitionOutcome::NotOwner,
            ),
            // We held it; someone took it over before the delete landed.
            (
                RowView::Live(ours.clone()),
                RowView::Live(theirs_our_window),
                TransitionOutcome::NotOwner,
            ),
            // We held it; it was free and claimed anew: our delete freed it.
            (
                RowView::Live(ours.clone()),
                RowView::Live(theirs_new_window.clone()),
                TransitionOutcome::Released,
            ),
            // We never held it and someone else holds a window of its own.
            (
                RowView::Absent,
                RowView::Live(theirs_new_window),
                TransitionOutcome::NotOwner,
            ),
            (
                RowView::Live(ours.clone()),
                RowView::Live(completed.clone()),
                TransitionOutcome::AlreadyCompleted(completed),
            ),
        ];
        for (before, after, answer) in cases {
            assert_eq!(
                lost_answer(token, before.clone(), after.clone()),
                Action::Answer(answer),
                "before {before:?}, after {after:?}"
            );
        }
        // Still ours and in progress: the delete did not land; again.
        assert_eq!(
            lost_answer(token, RowView::Live(ours.clone()), RowView::Live(ours)),
            Action::Write(ClaimWrite::Release { token })
        );
    }

    #[test]
    fn after_a_lost_answer_a_refusal_is_only_a_view() {
        let now = now_millis();
        let token = ClaimToken::generate();
        let mut machine = deleting(token, now);
        // Lost answer, row still ours: delete again…
        machine.observe(Observation::Resolved(RowView::Live(record(token))), now);
        // …which is refused with no owner: our first delete landed late.
        let refused = CasOutcome::NotApplied(Refusal::Held {
            owner: None,
            state: None,
        });
        assert_eq!(
            machine.observe(Observation::Written(refused), now),
            Action::ReadSerial
        );
        assert_eq!(
            machine.observe(Observation::Read(RowView::Absent), now),
            Action::Answer(TransitionOutcome::Released)
        );
    }
}
