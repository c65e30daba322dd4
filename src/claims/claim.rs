//! The claim lifecycle as a machine: write the step `decide` chose, and
//! decide again from whatever the row turns out to hold.
//!
//! One fresh token per claim request, reused across its retries: if an
//! earlier attempt of this request did land (even late, after a retry was
//! refused), a row holding this token is ours, and `decide` hands it back.

use chrono::{DateTime, Utc};

use super::decide::{Step, next_step};
use super::{Acquisition, ClaimOutcome, ClaimRequest, Claims};
use crate::domain::{CasOutcome, ClaimRecord, ClaimToken, ClaimWrite, Refusal, RowView};
use crate::lifecycle::{Action, Machine, Next, Observation, Resolution, Seen, Subject};

pub struct ClaimMachine<'a> {
    request: &'a ClaimRequest,
    token: ClaimToken,
    /// The clock-skew margin every lease decision must clear.
    skew: chrono::Duration,
    /// The record and acquisition the write in flight would give.
    pending: Option<(ClaimRecord, Acquisition)>,
}

impl<'a> ClaimMachine<'a> {
    pub fn new(request: &'a ClaimRequest, token: ClaimToken, skew: chrono::Duration) -> Self {
        Self {
            request,
            token,
            skew,
            pending: None,
        }
    }

    fn step(&mut self, view: &RowView, now: DateTime<Utc>) -> Action<ClaimWrite, ClaimOutcome> {
        let (write, record, how) = match next_step(view, self.request, self.token, now, self.skew) {
            Step::Answer(outcome) => return Action::Answer(outcome),
            Step::Insert { record, ttl_secs } => (
                ClaimWrite::Insert {
                    record: record.clone(),
                    ttl_secs,
                },
                record,
                Acquisition::New,
            ),
            Step::Replace {
                record,
                ttl_secs,
                expected,
                how,
            } => (
                ClaimWrite::Replace {
                    record: record.clone(),
                    ttl_secs,
                    expected,
                },
                record,
                how,
            ),
            Step::TakeOver {
                record,
                ttl_secs,
                expected,
                decided_at,
            } => (
                ClaimWrite::TakeOver {
                    record: record.clone(),
                    ttl_secs,
                    expected,
                    decided_at,
                },
                record,
                Acquisition::Takeover,
            ),
        };
        self.pending = Some((record, how));
        Action::Write(write)
    }
}

impl Machine for ClaimMachine<'_> {
    type Table = Claims;
    type Answer = ClaimOutcome;

    fn start(&mut self, now: DateTime<Utc>) -> Next<Self> {
        self.step(&RowView::Absent, now)
    }

    fn observe(&mut self, observation: Seen<Self>, now: DateTime<Utc>) -> Next<Self> {
        match observation {
            Observation::Written(CasOutcome::Applied) => {
                let (record, how) = take_pending(&mut self.pending);
                Action::Answer(ClaimOutcome::Acquired { record, how })
            }
            // A refused INSERT returns the whole existing row.
            Observation::Written(CasOutcome::NotApplied(Refusal::Exists(view))) => {
                self.step(&view, now)
            }
            // A refused UPDATE returns only the conditioned columns (on
            // Cassandra): read the row whole.
            Observation::Written(CasOutcome::NotApplied(Refusal::Held { .. })) => {
                Action::ReadSerial
            }
            Observation::Resolved(view) => {
                if let (RowView::Live(record), Some((_, how))) = (&view, &self.pending)
                    && record.token == self.token
                {
                    return Action::Answer(ClaimOutcome::Acquired {
                        record: record.clone(),
                        how: *how,
                    });
                }
                self.step(&view, now)
            }
            Observation::Read(view) | Observation::QuorumRead(Some(view)) => self.step(&view, now),
            Observation::QuorumRead(None) => Action::ReadSerial,
        }
    }

    fn resolution(&self, view: &RowView) -> Resolution {
        token_resolution(view, self.token)
    }

    fn undecided(&self) -> String {
        let what = Subject::new(self.request.key.as_str(), &self.request.namespace);
        format!(
            "the claim of {what} could not be decided in time; retry (with the same claimant, if \
             you set one)"
        )
    }
}

/// What the write in flight makes of the row once it applied: an applied
/// answer always follows a write, which set it.
pub fn take_pending<T>(pending: &mut Option<T>) -> T {
    pending
        .take()
        .expect("a write was in flight, so its record is pending")
}

/// Whether a row holds `ours`, someone else's token, or nothing.
pub fn token_resolution(view: &RowView, ours: ClaimToken) -> Resolution {
    match view.token() {
        Some(token) if token == ours => Resolution::Ours,
        Some(_) => Resolution::Theirs,
        None => Resolution::Absent,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;
    use crate::claims::fixtures::{in_progress, request};
    use crate::domain::{ClaimState, now_millis, secs};

    /// The request the machines claim for: they borrow it.
    static REQUEST: LazyLock<ClaimRequest> = LazyLock::new(request);

    /// A claim with `token` and no clock-skew margin, not started yet.
    fn machine(token: ClaimToken) -> ClaimMachine<'static> {
        ClaimMachine::new(&REQUEST, token, chrono::Duration::zero())
    }

    /// A claim with `token`, started: its first insert is in flight.
    fn started(token: ClaimToken, now: DateTime<Utc>) -> ClaimMachine<'static> {
        let mut machine = machine(token);
        machine.start(now);
        machine
    }

    fn written_record(action: &Action<ClaimWrite, ClaimOutcome>) -> ClaimRecord {
        match action {
            Action::Write(
                ClaimWrite::Insert { record, .. }
                | ClaimWrite::Replace { record, .. }
                | ClaimWrite::TakeOver { record, .. },
            ) => record.clone(),
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn an_applied_insert_is_acquired() {
        let token = ClaimToken::generate();
        let mut machine = machine(token);
        let now = now_millis();
        let first = machine.start(now);
        let record = written_record(&first);
        assert!(matches!(first, Action::Write(ClaimWrite::Insert { .. })));
        assert_eq!(
            machine.observe(Observation::Written(CasOutcome::Applied), now),
            Action::Answer(ClaimOutcome::Acquired {
                record,
                how: Acquisition::New
            })
        );
    }

    #[test]
    fn a_refused_insert_decides_from_the_row_it_returned() {
        let now = now_millis();
        let mut machine = started(ClaimToken::generate(), now);
        let holder = in_progress(ClaimToken::generate(), now);
        let refused = CasOutcome::NotApplied(Refusal::Exists(RowView::Live(holder.clone())));
        assert_eq!(
            machine.observe(Observation::Written(refused), now),
            Action::Answer(ClaimOutcome::Duplicate { record: holder })
        );
    }

    #[test]
    fn an_unknown_outcome_that_landed_is_ours_and_keeps_how_it_was_won() {
        let token = ClaimToken::generate();
        let now = now_millis();
        // A stale holder whose lease ran out: we take over.
        let stale = in_progress(ClaimToken::generate(), now - secs(20));
        let mut machine = started(token, now);
        let takeover = machine.observe(
            Observation::Written(CasOutcome::NotApplied(Refusal::Exists(RowView::Live(
                stale,
            )))),
            now,
        );
        let ours = written_record(&takeover);
        assert!(matches!(
            takeover,
            Action::Write(ClaimWrite::TakeOver { .. })
        ));
        // The answer is lost; the serial read finds our takeover.
        assert_eq!(
            machine.resolution(&RowView::Live(ours.clone())),
            Resolution::Ours
        );
        assert_eq!(
            machine.observe(Observation::Resolved(RowView::Live(ours.clone())), now),
            Action::Answer(ClaimOutcome::Acquired {
                record: ours,
                how: Acquisition::Takeover
            })
        );
    }

    #[test]
    fn an_unknown_outcome_that_did_not_land_is_tried_again_with_the_same_token() {
        let token = ClaimToken::generate();
        let now = now_millis();
        let mut machine = started(token, now);
        assert_eq!(machine.resolution(&RowView::Absent), Resolution::Absent);
        let again = machine.observe(Observation::Resolved(RowView::Absent), now);
        assert_eq!(written_record(&again).token, token);
    }

    #[test]
    fn a_refused_update_reads_the_row_before_deciding() {
        let now = now_millis();
        let mut machine = started(ClaimToken::generate(), now);
        let refused = CasOutcome::NotApplied(Refusal::Held {
            owner: Some(ClaimToken::generate()),
            state: Some(ClaimState::InProgress),
        });
        assert_eq!(
            machine.observe(Observation::Written(refused), now),
            Action::ReadSerial
        );
    }
}
