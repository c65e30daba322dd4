//! An operator's actions on a stuck claim: force-release and forget.
//!
//! Both are compare-and-sets like every other transition. The machine first
//! reads the row linearizably (what the operator acts on), then deletes it
//! `IF owner = <the token it saw>`: force-release also `AND state =
//! 'in_progress'` (it is the holder's own release, done on its behalf),
//! forget whatever the state. The delete fences the holder: its token owns
//! nothing afterwards, so its complete, extend or release is refused. If the
//! row changed between the read and the delete (the holder completed, a
//! takeover), the delete is refused and the operator hears "changed": they
//! decided on a state that is gone, and must look again.
//!
//! | what the read or the delete shows                | answer               |
//! |--------------------------------------------------|----------------------|
//! | read: no live claim                              | not_found            |
//! | read: completed, and the action is force-release | completed            |
//! | read: a live claim (either action)               | delete it            |
//! | delete applied                                   | done, with the claim |
//! | delete refused                                   | changed              |
//! | after a lost answer: gone                        | done                 |
//! | after a lost answer: the same owner, deletable   | delete again         |
//! | after a lost answer: a new window                | done                 |
//! | after a lost answer: anything else               | changed              |
//!
//! "Gone" after a lost answer is "done" whoever removed it (our delete, the
//! window's end): what the operator asked for, a free key, holds. A new
//! window means the key was free in between, which only our delete or the
//! window's end can have made it.

use chrono::{DateTime, Utc};

use super::claim::token_resolution;
use super::{ClaimService, Claims};
use crate::domain::{
    CasOutcome, ClaimKey, ClaimRecord, ClaimState, ClaimWrite, Namespace, RowView,
};
use crate::lifecycle::{
    self, Action, DecideError, Machine, Next, Observation, Resolution, Seen, Subject,
};

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// End an in-progress claim, fencing its holder: the key is free at once.
    ForceRelease,
    /// Delete the claim whatever its state, so the key can be claimed again.
    Forget,
}

impl AdminAction {
    /// The action's name in metrics, logs and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::ForceRelease => "force_release",
            AdminAction::Forget => "forget",
        }
    }

    fn applies_to(self, record: &ClaimRecord) -> bool {
        match self {
            AdminAction::ForceRelease => record.state == ClaimState::InProgress,
            AdminAction::Forget => true,
        }
    }

    fn write(self, record: &ClaimRecord) -> ClaimWrite {
        let token = record.token;
        match self {
            AdminAction::ForceRelease => ClaimWrite::Release { token },
            AdminAction::Forget => ClaimWrite::Forget { token },
        }
    }
}

/// The answer to an operator's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOutcome {
    /// Done: the claim as it was before; the key is now free.
    Done { before: ClaimRecord },
    /// No live claim for this key.
    NotFound,
    /// Force-release of a completed claim: nothing to release (forget it).
    Completed(ClaimRecord),
    /// The claim changed between the read and the delete: nothing was done.
    Changed,
}

impl AdminOutcome {
    /// The outcome's label in metrics and the audit log.
    pub fn as_str(&self) -> &'static str {
        match self {
            AdminOutcome::Done { .. } => "done",
            AdminOutcome::NotFound => "not_found",
            AdminOutcome::Completed(_) => "completed",
            AdminOutcome::Changed => "changed",
        }
    }
}

pub struct AdminMachine<'a> {
    action: AdminAction,
    /// The claim the first read found: what the delete is conditioned on.
    before: Option<ClaimRecord>,
    /// Set once a delete's outcome was unknown: it may still land late, so
    /// a later refusal is only a view of the row (see `release`).
    uncertain: bool,
    what: Subject<'a>,
}

impl<'a> AdminMachine<'a> {
    pub fn new(action: AdminAction, what: Subject<'a>) -> Self {
        Self {
            action,
            before: None,
            uncertain: false,
            what,
        }
    }

    /// The first read's answer: what to delete, or why not.
    fn decide(&mut self, view: RowView) -> Next<Self> {
        let RowView::Live(record) = view else {
            return Action::Answer(AdminOutcome::NotFound);
        };
        if !self.action.applies_to(&record) {
            return Action::Answer(AdminOutcome::Completed(record));
        }
        let write = self.action.write(&record);
        self.before = Some(record);
        Action::Write(write)
    }

    /// The answer from the row as a serial read saw it after an unknown
    /// delete (or a refusal that followed one).
    fn judge(&mut self, before: ClaimRecord, view: RowView) -> Next<Self> {
        match view {
            RowView::Absent | RowView::Remnant { token: None } => {
                Action::Answer(AdminOutcome::Done { before })
            }
            // Still the holder we read first: the write did not apply, so
            // it goes again (against the row as it is now).
            RowView::Live(now) if now.token == before.token && self.action.applies_to(&now) => {
                let write = self.action.write(&now);
                self.before = Some(before);
                Action::Write(write)
            }
            RowView::Remnant { token: Some(held) } if held == before.token => {
                let write = self.action.write(&before);
                self.before = Some(before);
                Action::Write(write)
            }
            RowView::Live(now) if now.window != before.window => {
                Action::Answer(AdminOutcome::Done { before })
            }
            RowView::Live(_) | RowView::Remnant { .. } => Action::Answer(AdminOutcome::Changed),
        }
    }
}

impl Machine for AdminMachine<'_> {
    type Table = Claims;
    type Answer = AdminOutcome;

    fn start(&mut self, _now: DateTime<Utc>) -> Next<Self> {
        Action::ReadSerial
    }

    fn observe(&mut self, observation: Seen<Self>, _now: DateTime<Utc>) -> Next<Self> {
        let Some(before) = self.before.take() else {
            // Nothing decided yet: this is the first read.
            return match observation {
                Observation::Read(view) | Observation::QuorumRead(Some(view)) => self.decide(view),
                _ => Action::ReadSerial,
            };
        };
        match observation {
            Observation::Written(CasOutcome::Applied) => {
                Action::Answer(AdminOutcome::Done { before })
            }
            Observation::Written(CasOutcome::NotApplied(_)) if self.uncertain => {
                self.before = Some(before);
                Action::ReadSerial
            }
            // Refused inside the Paxos round that saw the row: decisive.
            Observation::Written(CasOutcome::NotApplied(_)) => {
                Action::Answer(AdminOutcome::Changed)
            }
            Observation::Resolved(view) => {
                self.uncertain = true;
                self.judge(before, view)
            }
            Observation::Read(view) | Observation::QuorumRead(Some(view)) => {
                self.judge(before, view)
            }
            Observation::QuorumRead(None) => {
                self.before = Some(before);
                Action::ReadSerial
            }
        }
    }

    fn resolution(&self, view: &RowView) -> Resolution {
        match &self.before {
            Some(before) => token_resolution(view, before.token),
            None => Resolution::Absent,
        }
    }

    fn undecided(&self) -> String {
        format!(
            "the {} of {} could not be decided; inspect the claim and retry",
            self.action.as_str(),
            self.what
        )
    }
}

impl ClaimService {
    /// Runs an operator's `action` on the claim of `key`. When it is done the
    /// key is free: this instance forgets its cached copy and wakes its
    /// waiters at once; other instances' caches trust an entry for at most
    /// `--completed-cache-max-age-secs` (see `completed_cache`).
    pub async fn administer(
        &self,
        action: AdminAction,
        namespace: &Namespace,
        key: &ClaimKey,
    ) -> Result<AdminOutcome, DecideError> {
        let machine = AdminMachine::new(action, Subject::new(key.as_str(), namespace));
        let io = self.io(namespace, key, chrono::Duration::zero());
        let outcome = lifecycle::run(machine, &io, self.budget, &self.metrics).await;
        if let Ok(AdminOutcome::Done { .. }) = &outcome {
            self.completed.forget(namespace, key);
            self.waiters.wake(namespace, key);
        }
        let label = match &outcome {
            Ok(answer) => answer.as_str(),
            Err(DecideError::Undecided { .. }) => "unavailable",
            Err(_) => "error",
        };
        self.metrics.record_admin_action(action.as_str(), label);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::fixtures::{SUBJECT, in_progress};
    use crate::domain::{ClaimToken, Refusal, now_millis};

    fn completed(token: ClaimToken) -> ClaimRecord {
        ClaimRecord {
            state: ClaimState::Completed,
            lease_expires_at: None,
            completed_at: Some(now_millis()),
            ..in_progress(token, now_millis())
        }
    }

    /// A machine for `action` told that its first read found `view`.
    fn after_read(
        action: AdminAction,
        view: RowView,
    ) -> (AdminMachine<'static>, Next<AdminMachine<'static>>) {
        let now = now_millis();
        let mut machine = AdminMachine::new(action, SUBJECT);
        assert_eq!(machine.start(now), Action::ReadSerial);
        let next = machine.observe(Observation::Read(view), now);
        (machine, next)
    }

    #[test]
    fn the_first_read_decides_what_to_delete() {
        let token = ClaimToken::generate();
        let running = in_progress(token, now_millis());
        let done = completed(token);
        let cases = [
            (
                AdminAction::ForceRelease,
                RowView::Absent,
                Action::Answer(AdminOutcome::NotFound),
            ),
            (
                AdminAction::Forget,
                RowView::Absent,
                Action::Answer(AdminOutcome::NotFound),
            ),
            (
                AdminAction::Forget,
                RowView::Remnant { token: Some(token) },
                Action::Answer(AdminOutcome::NotFound),
            ),
            (
                AdminAction::ForceRelease,
                RowView::Live(running.clone()),
                Action::Write(ClaimWrite::Release { token }),
            ),
            (
                AdminAction::ForceRelease,
                RowView::Live(done.clone()),
                Action::Answer(AdminOutcome::Completed(done.clone())),
            ),
            (
                AdminAction::Forget,
                RowView::Live(running.clone()),
                Action::Write(ClaimWrite::Forget { token }),
            ),
            (
                AdminAction::Forget,
                RowView::Live(done),
                Action::Write(ClaimWrite::Forget { token }),
            ),
        ];
        for (action, view, next) in cases {
            assert_eq!(
                after_read(action, view.clone()).1,
                next,
                "{action:?} on {view:?}"
            );
        }
    }

    #[test]
    fn the_delete_answers_decisively() {
        let now = now_millis();
        let token = ClaimToken::generate();
        let running = in_progress(token, now);
        for action in [AdminAction::ForceRelease, AdminAction::Forget] {
            let (mut machine, _) = after_read(action, RowView::Live(running.clone()));
            assert_eq!(
                machine.observe(Observation::Written(CasOutcome::Applied), now),
                Action::Answer(AdminOutcome::Done {
                    before: running.clone()
                })
            );
            // Refused: the holder completed, or a takeover, in between.
            let (mut machine, _) = after_read(action, RowView::Live(running.clone()));
            let refused = CasOutcome::NotApplied(Refusal::Held {
                owner: Some(ClaimToken::generate()),
                state: Some(ClaimState::InProgress),
            });
            assert_eq!(
                machine.observe(Observation::Written(refused), now),
                Action::Answer(AdminOutcome::Changed)
            );
        }
    }

    #[test]
    fn a_lost_answer_gives_the_answer_the_fault_hid() {
        let now = now_millis();
        let token = ClaimToken::generate();
        let running = in_progress(token, now);
        let new_window = in_progress(ClaimToken::generate(), now);
        let taken_over = ClaimRecord {
            window: running.window,
            ..in_progress(ClaimToken::generate(), now)
        };
        let done = ClaimRecord {
            window: running.window,
            ..completed(token)
        };
        let release = Action::Write(ClaimWrite::Release { token });
        let forget = Action::Write(ClaimWrite::Forget { token });
        let done_before = Action::Answer(AdminOutcome::Done {
            before: running.clone(),
        });
        let changed = Action::Answer(AdminOutcome::Changed);
        let cases = [
            (
                AdminAction::ForceRelease,
                RowView::Absent,
                done_before.clone(),
            ),
            (
                AdminAction::Forget,
                RowView::Remnant { token: None },
                done_before.clone(),
            ),
            (
                AdminAction::ForceRelease,
                RowView::Live(running.clone()),
                release,
            ),
            (
                AdminAction::Forget,
                RowView::Live(running.clone()),
                forget.clone(),
            ),
            (
                AdminAction::Forget,
                RowView::Remnant { token: Some(token) },
                forget,
            ),
            (
                AdminAction::ForceRelease,
                RowView::Live(new_window.clone()),
                done_before.clone(),
            ),
            (AdminAction::Forget, RowView::Live(new_window), done_before),
            (
                AdminAction::ForceRelease,
                RowView::Live(taken_over.clone()),
                changed.clone(),
            ),
            (
                AdminAction::Forget,
                RowView::Live(taken_over),
                changed.clone(),
            ),
            // The holder completed before a force-release landed.
            (
                AdminAction::ForceRelease,
                RowView::Live(done.clone()),
                changed,
            ),
            // Forget deletes a completed claim too: again.
            (
                AdminAction::Forget,
                RowView::Live(done),
                Action::Write(ClaimWrite::Forget { token }),
            ),
        ];
        for (action, after, next) in cases {
            let (mut machine, first) = after_read(action, RowView::Live(running.clone()));
            assert!(matches!(first, Action::Write(_)));
            assert_eq!(
                machine.observe(Observation::Resolved(after.clone()), now),
                next,
                "{action:?}, after {after:?}"
            );
        }
    }

    #[test]
    fn after_a_lost_answer_a_refusal_is_only_a_view() {
        let now = now_millis();
        let token = ClaimToken::generate();
        let running = in_progress(token, now);
        let (mut machine, _) = after_read(AdminAction::Forget, RowView::Live(running.clone()));
        // Lost answer, row still there: delete again…
        machine.observe(Observation::Resolved(RowView::Live(running.clone())), now);
        // …refused with no owner: the first delete landed late.
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
            Action::Answer(AdminOutcome::Done { before: running })
        );
    }
}
