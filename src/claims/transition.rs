//! Complete and extend: token-guarded updates of an in-progress claim.
//!
//! It starts from a quorum read: cheap, and enough to learn the row's
//! expiry (the updated cells' TTL must end with the row). The update is
//! conditional on the token, so a stale read can only make it refuse, never
//! apply wrongly. Every negative answer comes from a serial read.
//!
//! | the row (as read)            | complete                  | extend               |
//! |------------------------------|---------------------------|----------------------|
//! | ours, in progress            | write; applied → done     | write; applied → done|
//! | ours, completed              | done (what it stored)     | already_completed    |
//! | not ours, after a serial read| live → not_owner, else not_found | the same      |
//! | not ours, quorum read only   | read serially first       | the same             |
//! | unknown outcome, row = ours updated | done               | done                 |

use chrono::{DateTime, Utc};

use super::claim::{take_pending, token_resolution};
use super::{Claims, TransitionOutcome};
use crate::domain::{
    CasOutcome, ClaimRecord, ClaimState, ClaimToken, ClaimWrite, LeaseRequest, RowView,
    StoredResult, secs,
};
use crate::lifecycle::{Action, Machine, Next, Observation, Resolution, Seen, Subject};

/// Which update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Complete(Option<StoredResult>),
    Extend(LeaseRequest),
}

pub struct TransitionMachine<'a> {
    token: ClaimToken,
    transition: Transition,
    /// Whether the view decided from came from a serial read.
    authoritative: bool,
    /// The record as it will be if the write in flight applies.
    pending: Option<ClaimRecord>,
    /// What the 503 names.
    what: Subject<'a>,
}

impl<'a> TransitionMachine<'a> {
    pub fn new(token: ClaimToken, transition: Transition, what: Subject<'a>) -> Self {
        Self {
            token,
            transition,
            authoritative: false,
            pending: None,
            what,
        }
    }

    /// The write that applies the transition to `record`, and the record as
    /// it will then be.
    fn write_for(&self, record: &ClaimRecord, now: DateTime<Utc>) -> (ClaimWrite, ClaimRecord) {
        // The updated cells must die with the rest of the row.
        let ttl_secs = record.remaining_ttl_secs(now).unwrap_or(1);
        match &self.transition {
            Transition::Complete(result) => (
                ClaimWrite::Complete {
                    token: record.token,
                    completed_at: now,
                    result: result.clone(),
                    ttl_secs,
                },
                ClaimRecord {
                    state: ClaimState::Completed,
                    completed_at: Some(now),
                    lease_expires_at: None,
                    result: result.clone(),
                    ..record.clone()
                },
            ),
            Transition::Extend(lease) => {
                let lease_expires_at = (now + secs(lease.0)).min(record.expires_at);
                (
                    ClaimWrite::Extend {
                        token: record.token,
                        lease_expires_at,
                        ttl_secs,
                    },
                    ClaimRecord {
                        lease_expires_at: Some(lease_expires_at),
                        ..record.clone()
                    },
                )
            }
        }
    }

    fn decide(
        &mut self,
        view: &RowView,
        now: DateTime<Utc>,
    ) -> Action<ClaimWrite, TransitionOutcome> {
        match view {
            RowView::Live(record) if record.token == self.token => {
                if record.state == ClaimState::Completed {
                    // Completing twice with the same token is a success
                    // that returns what the first completion stored.
                    return Action::Answer(match self.transition {
                        Transition::Complete(_) => TransitionOutcome::Done(record.clone()),
                        Transition::Extend(_) => {
                            TransitionOutcome::AlreadyCompleted(record.clone())
                        }
                    });
                }
                let (write, updated) = self.write_for(record, now);
                self.pending = Some(updated);
                Action::Write(write)
            }
            _ if !self.authoritative => Action::ReadSerial,
            RowView::Live(_) => Action::Answer(TransitionOutcome::NotOwner),
            RowView::Absent | RowView::Remnant { .. } => {
                Action::Answer(TransitionOutcome::NotFound)
            }
        }
    }
}

impl Machine for TransitionMachine<'_> {
    type Table = Claims;
    type Answer = TransitionOutcome;

    fn start(&mut self, _now: DateTime<Utc>) -> Next<Self> {
        Action::ReadQuorum
    }

    fn observe(&mut self, observation: Seen<Self>, now: DateTime<Utc>) -> Next<Self> {
        match observation {
            Observation::QuorumRead(view) => self.decide(&view.unwrap_or(RowView::Absent), now),
            Observation::Written(CasOutcome::Applied) => {
                Action::Answer(TransitionOutcome::Done(take_pending(&mut self.pending)))
            }
            Observation::Written(CasOutcome::NotApplied(_)) => {
                self.authoritative = false;
                Action::ReadSerial
            }
            Observation::Resolved(view) => {
                self.authoritative = true;
                if let (RowView::Live(current), Some(updated)) = (&view, &self.pending)
                    && current == updated
                {
                    return Action::Answer(TransitionOutcome::Done(updated.clone()));
                }
                self.decide(&view, now)
            }
            Observation::Read(view) => {
                self.authoritative = true;
                self.decide(&view, now)
            }
        }
    }

    fn resolution(&self, view: &RowView) -> Resolution {
        token_resolution(view, self.token)
    }

    fn undecided(&self) -> String {
        format!("the update of {} could not be decided; retry", self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::fixtures::{SUBJECT, after_quorum_read, in_progress};
    use crate::domain::now_millis;

    fn complete(token: ClaimToken) -> TransitionMachine<'static> {
        TransitionMachine::new(token, Transition::Complete(None), SUBJECT)
    }

    /// A completion of `token`'s claim that read it in progress and has its
    /// write in flight.
    fn completing(token: ClaimToken, now: DateTime<Utc>) -> TransitionMachine<'static> {
        let mut machine = complete(token);
        after_quorum_read(&mut machine, RowView::Live(in_progress(token, now)), now);
        machine
    }

    #[test]
    fn our_in_progress_claim_is_completed_by_a_conditional_write() {
        let now = now_millis();
        let token = ClaimToken::generate();
        let mut machine = complete(token);
        let action = after_quorum_read(&mut machine, RowView::Live(in_progress(token, now)), now);
        assert!(
            matches!(action, Action::Write(ClaimWrite::Complete { token: t, .. }) if t == token)
        );
        let Action::Answer(TransitionOutcome::Done(record)) =
            machine.observe(Observation::Written(CasOutcome::Applied), now)
        else {
            panic!("applied means done")
        };
        assert_eq!(record.state, ClaimState::Completed);
    }

    #[test]
    fn only_a_serial_read_may_say_not_owner_or_not_found() {
        let now = now_millis();
        let token = ClaimToken::generate();
        let someone = in_progress(ClaimToken::generate(), now);
        for (view, answer) in [
            (RowView::Live(someone), TransitionOutcome::NotOwner),
            (RowView::Absent, TransitionOutcome::NotFound),
            (
                RowView::Remnant { token: Some(token) },
                TransitionOutcome::NotFound,
            ),
        ] {
            let mut machine = complete(token);
            machine.start(now);
            assert_eq!(
                machine.observe(Observation::QuorumRead(Some(view.clone())), now),
                Action::ReadSerial,
                "a quorum read of {view:?} decides nothing"
            );
            assert_eq!(
                machine.observe(Observation::Read(view), now),
                Action::Answer(answer)
            );
        }
    }

    #[test]
    fn completing_a_completed_claim_again_returns_what_it_stored() {
        let now = now_millis();
        let token = ClaimToken::generate();
        let done = ClaimRecord {
            state: ClaimState::Completed,
            completed_at: Some(now),
            lease_expires_at: None,
            ..in_progress(token, now)
        };
        let mut machine = complete(token);
        machine.start(now);
        assert_eq!(
            machine.observe(
                Observation::QuorumRead(Some(RowView::Live(done.clone()))),
                now
            ),
            Action::Answer(TransitionOutcome::Done(done.clone()))
        );
        let mut extend =
            TransitionMachine::new(token, Transition::Extend(LeaseRequest(5)), SUBJECT);
        extend.start(now);
        assert_eq!(
            extend.observe(Observation::Read(RowView::Live(done.clone())), now),
            Action::Answer(TransitionOutcome::AlreadyCompleted(done))
        );
    }

    #[test]
    fn a_lost_answer_whose_update_landed_is_done() {
        let now = now_millis();
        let token = ClaimToken::generate();
        let mut machine = completing(token, now);
        let landed = machine.pending.clone().unwrap();
        assert_eq!(
            machine.resolution(&RowView::Live(landed.clone())),
            Resolution::Ours
        );
        assert_eq!(
            machine.observe(Observation::Resolved(RowView::Live(landed.clone())), now),
            Action::Answer(TransitionOutcome::Done(landed))
        );
    }

    #[test]
    fn a_lost_answer_fenced_by_a_takeover_is_not_owner() {
        let now = now_millis();
        let token = ClaimToken::generate();
        let mut machine = completing(token, now);
        let taker = in_progress(ClaimToken::generate(), now);
        assert_eq!(
            machine.observe(Observation::Resolved(RowView::Live(taker)), now),
            Action::Answer(TransitionOutcome::NotOwner)
        );
    }
}
