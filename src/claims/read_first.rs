//! When to read before claiming.
//!
//! A quorum read that finds a completed claim answers a redelivery without
//! a Paxos round (see `ClaimService::completed_duplicate`), but for a new
//! key it is wasted work on top of the LWT. So it pays only where most
//! claims are redeliveries of finished work. In `auto` mode each namespace's
//! recent share of completed duplicates is tracked, and the read is made
//! while that share is above the threshold.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::Namespace;

/// The configured policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadFirstPolicy {
    Never,
    Always,
    /// Read first while a namespace's share of completed duplicates, an
    /// exponentially weighted average over its recent claims, is at least
    /// this fraction.
    Auto {
        threshold: f64,
    },
}

impl Default for ReadFirstPolicy {
    fn default() -> Self {
        ReadFirstPolicy::Auto { threshold: 0.25 }
    }
}

/// Weight of the newest claim in the average: about the last 50 claims count.
const SMOOTHING: f64 = 0.02;

/// Namespaces tracked at most; others are not read first. Bounds memory when
/// every namespace name is allowed.
const MAX_TRACKED: usize = 10_000;

pub(super) struct ReadFirst {
    policy: ReadFirstPolicy,
    duplicate_share: Mutex<HashMap<Namespace, f64>>,
}

impl ReadFirst {
    pub(super) fn new(policy: ReadFirstPolicy) -> Self {
        Self {
            policy,
            duplicate_share: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn applies_to(&self, namespace: &Namespace) -> bool {
        match self.policy {
            ReadFirstPolicy::Never => false,
            ReadFirstPolicy::Always => true,
            ReadFirstPolicy::Auto { threshold } => self
                .duplicate_share
                .lock()
                .expect("read-first lock")
                .get(namespace)
                .is_some_and(|share| *share >= threshold),
        }
    }

    pub(super) fn observe(&self, namespace: &Namespace, completed_duplicate: bool) {
        if !matches!(self.policy, ReadFirstPolicy::Auto { .. }) {
            return;
        }
        let sample = if completed_duplicate { 1.0 } else { 0.0 };
        let mut shares = self.duplicate_share.lock().expect("read-first lock");
        if let Some(share) = shares.get_mut(namespace) {
            *share += SMOOTHING * (sample - *share);
        } else if shares.len() < MAX_TRACKED {
            shares.insert(namespace.clone(), sample);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace() -> Namespace {
        Namespace::parse("ns").unwrap()
    }

    #[test]
    fn auto_turns_on_for_duplicate_heavy_namespaces_and_off_again() {
        let read_first = ReadFirst::new(ReadFirstPolicy::default());
        assert!(!read_first.applies_to(&namespace()), "unknown: no read");
        for _ in 0..200 {
            read_first.observe(&namespace(), true);
        }
        assert!(read_first.applies_to(&namespace()));
        for _ in 0..200 {
            read_first.observe(&namespace(), false);
        }
        assert!(!read_first.applies_to(&namespace()));
    }

    #[test]
    fn ninety_percent_redeliveries_stay_above_the_threshold() {
        let read_first = ReadFirst::new(ReadFirstPolicy::default());
        for i in 0..1000 {
            read_first.observe(&namespace(), i % 10 != 0);
        }
        assert!(read_first.applies_to(&namespace()));
    }

    #[test]
    fn fixed_policies_ignore_what_they_see() {
        let never = ReadFirst::new(ReadFirstPolicy::Never);
        let always = ReadFirst::new(ReadFirstPolicy::Always);
        for _ in 0..100 {
            never.observe(&namespace(), true);
            always.observe(&namespace(), false);
        }
        assert!(!never.applies_to(&namespace()));
        assert!(always.applies_to(&namespace()));
    }
}
