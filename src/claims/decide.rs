//! What a claim does next, given what the claim's row holds. Pure: no I/O,
//! `now` passed in, so every branch is unit-tested.
//!
//! Longer than most files here because its second half is the rules' table
//! of unit tests, which belongs next to the rules.

use chrono::{DateTime, Utc};

use crate::domain::{ClaimRecord, ClaimState, ClaimToken, RowView, began_window};

use super::{Acquisition, ClaimOutcome, ClaimRequest};

/// The next step of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The slot is empty: `INSERT … IF NOT EXISTS`.
    Insert { record: ClaimRecord, ttl_secs: u64 },
    /// The slot holds a row past its window (or missing cells): start a
    /// new window over it, on condition that it still holds `expected`.
    Replace {
        record: ClaimRecord,
        ttl_secs: u64,
        expected: Option<ClaimToken>,
        how: Acquisition,
    },
    /// The slot holds an in-progress claim whose lease had passed at
    /// `decided_at`: take it over, on condition that, inside the Paxos
    /// round, it is still `expected`'s, still in progress, and its lease
    /// still ended by `decided_at`. Its owner may have completed or
    /// extended it since we looked; the owner token alone would not see it.
    TakeOver {
        record: ClaimRecord,
        ttl_secs: u64,
        expected: ClaimToken,
        decided_at: DateTime<Utc>,
    },
    /// Nothing to write: the answer is known.
    Answer(ClaimOutcome),
}

/// How long a one-shot marker (`complete: true`) stays its claimant's to
/// claim again: as long as the default lease. A claim and complete in one
/// has no lease to re-enter, yet its answer can be lost like any other; its
/// claimant's retry within this hears 201 again, as it would have without
/// the fault. Later, a claim with that claimant is a new delivery: duplicate.
pub const MARKER_REENTRY: chrono::Duration = chrono::Duration::seconds(30);

/// Whether `record` is a one-shot marker (claimed and completed at once, in
/// a window of its own) made less than `MARKER_REENTRY` ago.
fn is_fresh_marker(record: &ClaimRecord, now: DateTime<Utc>) -> bool {
    began_window(record)
        && record.completed_at == Some(record.claimed_at)
        && now < record.claimed_at + MARKER_REENTRY
}

/// Decides the next step for `request`, whose fresh token is `token`.
///
/// `skew` is the most this instance's clock may run ahead of the others'
/// (`--max-clock-skew-ms`): a lease counts as passed only once it passed
/// `skew` ago, so an instance whose clock runs ahead by less never takes
/// over a claim whose holder still believes its lease live. (A window's
/// end gets the same margin where the row is read: see `ClaimIo`.)
pub fn next_step(
    view: &RowView,
    request: &ClaimRequest,
    token: ClaimToken,
    now: DateTime<Utc>,
    skew: chrono::Duration,
) -> Step {
    // What this claim writes if the slot is free; a takeover moves it into
    // the window it takes over.
    let claim = ClaimRecord::new_window(
        token,
        now,
        request.retention,
        request.complete,
        request.fingerprint.as_ref().map(|f| f.as_str().to_owned()),
        request.claimant.as_ref().map(|c| c.as_str().to_owned()),
    );
    let ttl_secs = request.retention.ttl_secs;
    let record = match view {
        RowView::Absent => {
            return Step::Insert {
                record: claim,
                ttl_secs,
            };
        }
        RowView::Remnant { token: held } => {
            // Expired, but TTL has not removed every cell yet: a new window.
            return Step::Replace {
                record: claim,
                ttl_secs,
                expected: *held,
                how: Acquisition::New,
            };
        }
        RowView::Live(record) => record,
    };

    if record.token == token {
        // Our own write, seen again after an unknown outcome (perhaps one
        // that landed late, after a retry was refused). The row says which
        // write it was: a new window begins with its first token, and a
        // takeover keeps the window it took over.
        let how = if began_window(record) {
            Acquisition::New
        } else {
            Acquisition::Takeover
        };
        return Step::Answer(ClaimOutcome::Acquired {
            record: record.clone(),
            how,
        });
    }
    let fingerprints_differ = match (&request.fingerprint, &record.fingerprint) {
        (Some(asked), Some(stored)) => asked.as_str() != stored,
        _ => false,
    };
    if fingerprints_differ {
        return Step::Answer(ClaimOutcome::FingerprintMismatch {
            record: record.clone(),
        });
    }
    let same_claimant = match (&request.claimant, &record.claimant) {
        (Some(asked), Some(stored)) => asked.as_str() == stored,
        _ => false,
    };
    if record.state == ClaimState::Completed {
        if request.complete && same_claimant && is_fresh_marker(record, now) {
            // The claimant's own one-shot marker, asked for again: its first
            // answer was lost. Without the fault it heard 201, so it does now.
            return Step::Answer(ClaimOutcome::Acquired {
                record: record.clone(),
                how: Acquisition::Reentrant,
            });
        }
        return Step::Answer(ClaimOutcome::Duplicate {
            record: record.clone(),
        });
    }
    let decided_at = now - skew;
    if record.lease_expired(decided_at) {
        let taken_over = record.taken_over(claim);
        // Live means expires_at > now, so at least a millisecond remains
        // and this rounds up to one second or more.
        let ttl_secs = taken_over.remaining_ttl_secs(now).unwrap_or(1);
        return Step::TakeOver {
            record: taken_over,
            ttl_secs,
            expected: record.token,
            decided_at,
        };
    }
    if same_claimant {
        return Step::Answer(ClaimOutcome::Acquired {
            record: record.clone(),
            how: Acquisition::Reentrant,
        });
    }
    Step::Answer(ClaimOutcome::Duplicate {
        record: record.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::fixtures::{RETENTION, in_progress, request};
    use crate::domain::{Claimant, Fingerprint, StoredResult, now_millis, secs};

    /// `next_step` with no clock-skew margin.
    fn decide_now(
        view: &RowView,
        request: &ClaimRequest,
        token: ClaimToken,
        now: DateTime<Utc>,
    ) -> Step {
        next_step(view, request, token, now, chrono::Duration::zero())
    }

    #[test]
    fn a_takeover_waits_out_the_clock_skew_margin() {
        let now = now_millis();
        let margin = chrono::Duration::milliseconds(500);
        // The lease ended 300 ms ago by our clock: inside the margin, the
        // holder's clock may say it has 200 ms left.
        let mut holder = live(now);
        holder.lease_expires_at = Some(now - chrono::Duration::milliseconds(300));
        let view = RowView::Live(holder.clone());
        let token = ClaimToken::generate();
        assert_eq!(
            next_step(&view, &request(), token, now, margin),
            Step::Answer(ClaimOutcome::Duplicate {
                record: holder.clone()
            })
        );
        // 600 ms ago clears it; the takeover's own condition is checked at
        // the margin's edge, inside the Paxos round.
        holder.lease_expires_at = Some(now - chrono::Duration::milliseconds(600));
        let Step::TakeOver { decided_at, .. } =
            next_step(&RowView::Live(holder), &request(), token, now, margin)
        else {
            panic!("past the margin, a takeover")
        };
        assert_eq!(decided_at, now - margin);
    }

    /// A live in-progress claim of someone else's, with a fingerprint and a
    /// claimant.
    fn live(now: DateTime<Utc>) -> ClaimRecord {
        ClaimRecord {
            fingerprint: Some("fp-a".into()),
            claimant: Some("worker-1".into()),
            ..in_progress(ClaimToken::generate(), now)
        }
    }

    /// What `asked` does at `now`, under a fresh token of its own, when
    /// `record` holds the key.
    fn decide_against(record: &ClaimRecord, asked: &ClaimRequest, now: DateTime<Utc>) -> Step {
        decide_now(
            &RowView::Live(record.clone()),
            asked,
            ClaimToken::generate(),
            now,
        )
    }

    #[test]
    fn absent_inserts_a_fresh_window() {
        let now = now_millis();
        let token = ClaimToken::generate();
        let Step::Insert { record, ttl_secs } =
            decide_now(&RowView::Absent, &request(), token, now)
        else {
            panic!("expected insert")
        };
        assert_eq!(record.token, token);
        assert_eq!(ttl_secs, 60);
        assert_eq!(record.expires_at, now + secs(60));
        assert_eq!(record.lease_expires_at, Some(now + secs(10)));
        assert_eq!(record.state, ClaimState::InProgress);
    }

    #[test]
    fn complete_at_once_has_no_lease() {
        let now = now_millis();
        let mut asked = request();
        asked.complete = true;
        asked.retention.lease_secs = None;
        let Step::Insert { record, .. } =
            decide_now(&RowView::Absent, &asked, ClaimToken::generate(), now)
        else {
            panic!("expected insert")
        };
        assert_eq!(record.state, ClaimState::Completed);
        assert_eq!(record.lease_expires_at, None);
        assert_eq!(record.completed_at, Some(now));
    }

    #[test]
    fn remnant_is_replaced_on_its_token_even_a_null_one() {
        let now = now_millis();
        for held in [None, Some(ClaimToken::generate())] {
            let step = decide_now(
                &RowView::Remnant { token: held },
                &request(),
                ClaimToken::generate(),
                now,
            );
            let Step::Replace {
                expected,
                how,
                ttl_secs,
                ..
            } = step
            else {
                panic!("expected replace")
            };
            assert_eq!(expected, held);
            assert_eq!(how, Acquisition::New);
            assert_eq!(ttl_secs, 60);
        }
    }

    #[test]
    fn a_live_in_progress_claim_is_a_duplicate() {
        let now = now_millis();
        let record = live(now);
        let step = decide_against(&record, &request(), now + secs(1));
        assert_eq!(step, Step::Answer(ClaimOutcome::Duplicate { record }));
    }

    #[test]
    fn a_completed_claim_is_a_duplicate_even_after_its_lease() {
        let now = now_millis();
        let mut record = live(now);
        record.state = ClaimState::Completed;
        record.completed_at = Some(now);
        record.result = Some(StoredResult::from_stored("1".into()));
        let step = decide_against(&record, &request(), now + secs(30));
        assert_eq!(step, Step::Answer(ClaimOutcome::Duplicate { record }));
    }

    #[test]
    fn an_expired_lease_is_taken_over_inside_the_same_window() {
        let now = now_millis();
        let record = live(now);
        let token = ClaimToken::generate();
        let later = now + secs(10);
        let Step::TakeOver {
            record: taken,
            ttl_secs,
            expected,
            decided_at,
        } = decide_now(&RowView::Live(record.clone()), &request(), token, later)
        else {
            panic!("expected takeover")
        };
        assert_eq!(decided_at, later);
        assert_eq!(expected, record.token);
        assert_eq!(taken.token, token);
        assert_eq!(taken.expires_at, record.expires_at);
        assert_eq!(ttl_secs, 50);
        assert_eq!(taken.lease_expires_at, Some(later + secs(10)));
    }

    #[test]
    fn a_different_fingerprint_is_refused_whatever_the_state() {
        let now = now_millis();
        let mut asked = request();
        asked.fingerprint = Some(Fingerprint::parse("fp-b").unwrap());
        let record = live(now);
        assert_eq!(
            decide_against(&record, &asked, now),
            Step::Answer(ClaimOutcome::FingerprintMismatch {
                record: record.clone()
            })
        );
        // Even a lease that has passed is not taken over for another payload.
        assert!(matches!(
            decide_against(&record, &asked, now + secs(20)),
            Step::Answer(ClaimOutcome::FingerprintMismatch { .. })
        ));
    }

    #[test]
    fn the_same_fingerprint_or_none_is_accepted() {
        let now = now_millis();
        let record = live(now);
        for fingerprint in [Some("fp-a"), None] {
            let mut asked = request();
            asked.fingerprint = fingerprint.map(|f| Fingerprint::parse(f).unwrap());
            assert!(matches!(
                decide_against(&record, &asked, now),
                Step::Answer(ClaimOutcome::Duplicate { .. })
            ));
        }
    }

    #[test]
    fn the_same_claimant_gets_its_token_back() {
        let now = now_millis();
        let record = live(now);
        let mut asked = request();
        asked.claimant = Some(Claimant::parse(None, "worker-1").unwrap());
        assert_eq!(
            decide_against(&record, &asked, now),
            Step::Answer(ClaimOutcome::Acquired {
                record: record.clone(),
                how: Acquisition::Reentrant
            })
        );
        asked.claimant = Some(Claimant::parse(None, "worker-2").unwrap());
        assert!(matches!(
            decide_against(&record, &asked, now),
            Step::Answer(ClaimOutcome::Duplicate { .. })
        ));
    }

    #[test]
    fn a_markers_claimant_gets_it_back_within_the_reentry_time_only() {
        let now = now_millis();
        let marker = ClaimRecord {
            claimant: Some("worker-1".into()),
            ..ClaimRecord::new_window(ClaimToken::generate(), now, RETENTION, true, None, None)
        };
        let mut asked = request();
        asked.complete = true;
        asked.claimant = Some(Claimant::parse(None, "worker-1").unwrap());
        let reentrant = Step::Answer(ClaimOutcome::Acquired {
            record: marker.clone(),
            how: Acquisition::Reentrant,
        });
        let duplicate = Step::Answer(ClaimOutcome::Duplicate {
            record: marker.clone(),
        });
        assert_eq!(decide_against(&marker, &asked, now + secs(5)), reentrant);
        // Past the re-entry time: a new delivery of the same message.
        assert_eq!(
            decide_against(&marker, &asked, now + MARKER_REENTRY),
            duplicate
        );
        // Another claimant, no claimant, or a claim that is not a marker.
        let mut other = asked.clone();
        other.claimant = Some(Claimant::parse(None, "worker-2").unwrap());
        assert_eq!(decide_against(&marker, &other, now), duplicate);
        let mut anonymous = asked.clone();
        anonymous.claimant = None;
        assert_eq!(decide_against(&marker, &anonymous, now), duplicate);
        let mut not_a_marker = asked.clone();
        not_a_marker.complete = false;
        assert_eq!(decide_against(&marker, &not_a_marker, now), duplicate);
        // A claim completed later is not a marker: its claimant's work is done.
        let completed_later = ClaimRecord {
            state: ClaimState::Completed,
            completed_at: Some(now + secs(1)),
            lease_expires_at: None,
            claimant: Some("worker-1".into()),
            ..in_progress(marker.token, now)
        };
        assert_eq!(
            decide_against(&completed_later, &asked, now + secs(2)),
            Step::Answer(ClaimOutcome::Duplicate {
                record: completed_later
            })
        );
    }

    #[test]
    fn our_own_token_means_we_won() {
        let now = now_millis();
        let record = live(now);
        assert!(matches!(
            decide_now(
                &RowView::Live(record.clone()),
                &request(),
                record.token,
                now
            ),
            Step::Answer(ClaimOutcome::Acquired { .. })
        ));
    }

    #[test]
    fn our_own_row_says_whether_we_took_it_over() {
        let now = now_millis();
        let ours = ClaimToken::generate();
        let fresh = ClaimRecord::new_window(ours, now, request().retention, false, None, None);
        let taken = live(now - secs(20)).taken_over(fresh.clone());
        for (record, how) in [(fresh, Acquisition::New), (taken, Acquisition::Takeover)] {
            let step = decide_now(&RowView::Live(record.clone()), &request(), ours, now);
            assert_eq!(
                step,
                Step::Answer(ClaimOutcome::Acquired { record, how }),
                "a takeover whose answer was lost still says takeover"
            );
        }
    }
}
