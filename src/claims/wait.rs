//! Waiting for a claim's holder: `wait_secs` on a claim.
//!
//! A caller that finds a key in progress can ask to be answered when the
//! holder is done instead of polling. The waiter does not decide anything
//! itself: whenever something may have changed, it runs the claim again,
//! and the claim's rules say what it gets (the result of a completion, the
//! key after a release, a takeover once the lease passed). Waiting only
//! chooses *when* to ask again:
//!
//! - at once when a completion or release through this instance wakes it
//!   (`Waiters::wake`): the completed-claims cache then answers without the
//!   database, or one LWT acquires the released key;
//! - every `poll` otherwise, for what happened through other instances or
//!   by the clock (a lease passing): one quorum read, and a claim only if
//!   the claim's rules, applied to what the read shows, would do anything
//!   but answer "in progress" (`next_step` — pure, shared with the claim).
//!
//! So another instance's completion is heard within one `poll` (plus the
//! read), and a plain read never decides an answer: it only gates the LWT.
//!
//! Waiters hold no store permit while they wait (the caller passes a way to
//! take one for each check), and their number per instance is bounded:
//! beyond `max`, a claim that asks to wait is refused at once, so memory
//! and the polling load stay bounded whatever clients ask for.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::decide::{Step, next_step};
use super::{ClaimOutcome, ClaimRequest};
use crate::domain::{ClaimKey, ClaimState, ClaimToken, Namespace, RowView};

/// The longest a claim may ask to wait, in seconds (`wait_secs`).
pub const MAX_WAIT_SECS: u64 = 30;

/// How often a waiter looks for what other instances did, by default: a
/// quarter second bounds how late another instance's completion is heard,
/// at four quorum reads a second per waiter (at most `DEFAULT_MAX_WAITERS`).
pub const DEFAULT_WAIT_POLL: Duration = Duration::from_millis(250);

/// How many claims may wait at once on one instance, by default.
pub const DEFAULT_MAX_WAITERS: usize = 256;

/// Every waiter is taken: the claim that asked to wait is refused (503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyWaiters;

type Key = (Namespace, ClaimKey);

/// The waiters of one key, and how to wake them all.
struct KeyWaiters {
    notify: Arc<Notify>,
    count: usize,
}

/// The claims waiting on this instance, by key.
pub struct Waiters {
    slots: Semaphore,
    by_key: Mutex<HashMap<Key, KeyWaiters>>,
    /// Set when the instance drains: waiters answer what they have.
    closed: AtomicBool,
    poll: Duration,
}

impl Waiters {
    pub fn new(max: usize, poll: Duration) -> Self {
        Self {
            slots: Semaphore::new(max),
            by_key: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            poll,
        }
    }

    /// Registers a waiter on `key`, or refuses when every slot is taken.
    pub fn register(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
    ) -> Result<Waiter<'_>, TooManyWaiters> {
        let slot = self.slots.try_acquire().map_err(|_| TooManyWaiters)?;
        let key = (namespace.clone(), key.clone());
        let mut by_key = self.by_key.lock().expect("waiters lock");
        let entry = by_key.entry(key.clone()).or_insert_with(|| KeyWaiters {
            notify: Arc::new(Notify::new()),
            count: 0,
        });
        entry.count += 1;
        let notify = entry.notify.clone();
        Ok(Waiter {
            waiters: self,
            key,
            notify,
            _slot: slot,
        })
    }

    /// Wakes every waiter on `key`: its claim was completed or released
    /// through this instance.
    pub fn wake(&self, namespace: &Namespace, key: &ClaimKey) {
        let by_key = self.by_key.lock().expect("waiters lock");
        // The map is keyed by owned names; a lookup needs the pair.
        if let Some(waiters) = by_key.get(&(namespace.clone(), key.clone())) {
            waiters.notify.notify_waiters();
        }
    }

    /// Wakes every waiter for good: the instance is draining, and a waiter
    /// answers with what it has rather than hold up the shutdown.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let by_key = self.by_key.lock().expect("waiters lock");
        for waiters in by_key.values() {
            waiters.notify.notify_waiters();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// How many claims wait now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.by_key
            .lock()
            .expect("waiters lock")
            .values()
            .map(|waiters| waiters.count)
            .sum()
    }
}

/// One waiting claim's registration; dropping it unregisters.
pub struct Waiter<'a> {
    waiters: &'a Waiters,
    key: Key,
    notify: Arc<Notify>,
    _slot: SemaphorePermit<'a>,
}

/// Why a waiter woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A completion or release through this instance: ask again at once.
    Notified,
    /// The poll interval passed: look first, ask only if something changed.
    Poll,
    /// The wait is over (its deadline, or the instance drains).
    Over,
}

impl Waiter<'_> {
    /// Sleeps until the next reason to look again, or the deadline.
    ///
    /// Call it before each look, not after: the notification future is
    /// created first, so a completion that lands while the previous look
    /// was running is not missed (`notify_waiters` reaches every future
    /// created before it, polled or not).
    pub async fn next_wake(&self, deadline: Instant) -> Wake {
        let notified = self.notify.notified();
        if self.waiters.is_closed() {
            return Wake::Over;
        }
        let now = Instant::now();
        if now >= deadline {
            return Wake::Over;
        }
        let poll_at = (now + self.waiters.poll).min(deadline);
        tokio::select! {
            () = notified => {
                if self.waiters.is_closed() { Wake::Over } else { Wake::Notified }
            }
            () = tokio::time::sleep_until(poll_at) => {
                if poll_at >= deadline { Wake::Over } else { Wake::Poll }
            }
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut by_key = self.waiters.by_key.lock().expect("waiters lock");
        if let Entry::Occupied(mut entry) = by_key.entry(self.key.clone()) {
            entry.get_mut().count -= 1;
            if entry.get().count == 0 {
                entry.remove();
            }
        }
    }
}

/// Whether a claim answered this is one a waiter keeps waiting on: the key
/// is held in progress by someone else.
pub fn is_held_by_another(outcome: &ClaimOutcome) -> bool {
    matches!(
        outcome,
        ClaimOutcome::Duplicate { record } if record.state == ClaimState::InProgress
    )
}

/// What a waiter does after a poll showed `view` at `now` (a plain read:
/// it may lag, so it only decides whether to ask the claim again, never
/// the answer). It asks again unless the claim's own rules would answer
/// "held by another" for this row, exactly as a claim would see it.
pub fn worth_asking(
    view: &RowView,
    request: &ClaimRequest,
    now: chrono::DateTime<chrono::Utc>,
    skew: chrono::Duration,
) -> bool {
    // The token is never written: `next_step` only needs one to say what it
    // would write.
    match next_step(view, request, ClaimToken::generate(), now, skew) {
        Step::Answer(outcome) => !is_held_by_another(&outcome),
        Step::Insert { .. } | Step::Replace { .. } | Step::TakeOver { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::fixtures::{in_progress, request};
    use crate::domain::{ClaimRecord, StoredResult};

    fn waiters(max: usize) -> Waiters {
        Waiters::new(max, Duration::from_millis(50))
    }

    fn names(key: &str) -> (Namespace, ClaimKey) {
        (
            Namespace::parse("orders").unwrap(),
            ClaimKey::parse(key).unwrap(),
        )
    }

    #[test]
    fn the_waiter_bound_refuses_beyond_it_and_frees_on_drop() {
        let waiters = waiters(2);
        let (namespace, key) = names("k");
        let first = waiters.register(&namespace, &key).unwrap();
        let _second = waiters.register(&namespace, &key).unwrap();
        assert_eq!(waiters.waiting(), 2);
        assert_eq!(
            waiters.register(&namespace, &key).err(),
            Some(TooManyWaiters)
        );
        drop(first);
        assert_eq!(waiters.waiting(), 1);
        assert!(waiters.register(&namespace, &key).is_ok());
    }

    #[test]
    fn a_key_without_waiters_leaves_nothing_behind() {
        let waiters = waiters(8);
        let (namespace, key) = names("k");
        let a = waiters.register(&namespace, &key).unwrap();
        let b = waiters.register(&namespace, &key).unwrap();
        drop(a);
        drop(b);
        assert!(waiters.by_key.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_reaches_the_waiters_of_that_key_only() {
        let waiters = waiters(8);
        let (namespace, key) = names("k");
        let (_, other_key) = names("other");
        let waiter = waiters.register(&namespace, &key).unwrap();
        let bystander = waiters.register(&namespace, &other_key).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let woken = waiter.next_wake(deadline);
        let not_woken = bystander.next_wake(deadline);
        tokio::pin!(woken, not_woken);
        // Polled once, so both are waiting when the wake comes.
        assert!(futures::poll!(&mut woken).is_pending());
        assert!(futures::poll!(&mut not_woken).is_pending());
        waiters.wake(&namespace, &key);
        assert_eq!(woken.await, Wake::Notified);
        assert_eq!(not_woken.await, Wake::Poll);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_and_a_drain_end_the_wait() {
        let waiters = waiters(8);
        let (namespace, key) = names("k");
        let waiter = waiters.register(&namespace, &key).unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(waiter.next_wake(soon).await, Wake::Over);
        let later = Instant::now() + Duration::from_secs(10);
        let wait = waiter.next_wake(later);
        tokio::pin!(wait);
        assert!(futures::poll!(&mut wait).is_pending());
        waiters.close();
        assert_eq!(wait.await, Wake::Over);
        assert_eq!(waiter.next_wake(later).await, Wake::Over);
    }

    #[test]
    fn a_poll_asks_again_only_when_the_claim_would_not_answer_in_progress() {
        let opened = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let after = |millis| opened + chrono::Duration::milliseconds(millis);
        let skew = chrono::Duration::seconds(1);
        let ask = request();
        // Opened at `opened`: its lease ends 10 s later, its window 60 s.
        let held = in_progress(ClaimToken::generate(), opened);
        let completed = ClaimRecord {
            state: ClaimState::Completed,
            completed_at: Some(after(5_000)),
            lease_expires_at: None,
            result: Some(StoredResult::from_stored("1".into())),
            ..held.clone()
        };
        let table = [
            (
                "held, lease live",
                RowView::Live(held.clone()),
                after(5_000),
                false,
            ),
            (
                "held, lease passed less than the skew ago",
                RowView::Live(held.clone()),
                after(10_500),
                false,
            ),
            (
                "held, lease passed",
                RowView::Live(held),
                after(12_000),
                true,
            ),
            ("completed", RowView::Live(completed), after(6_000), true),
            ("released or expired", RowView::Absent, after(6_000), true),
            (
                "a remnant",
                RowView::Remnant { token: None },
                after(6_000),
                true,
            ),
        ];
        for (case, view, now, expected) in table {
            assert_eq!(worth_asking(&view, &ask, now, skew), expected, "{case}");
        }
    }
}
