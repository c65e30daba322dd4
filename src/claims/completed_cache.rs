//! An in-memory cache of completed claims.
//!
//! It cannot go stale through any caller's call, which is why it is allowed
//! at all. Inside its window a completed claim is terminal: release and
//! extend refuse it, takeover applies only to in-progress claims, a second
//! completion changes nothing, and no caller can delete it before
//! `expires_at`. So "completed, with this result, until expires_at" stays
//! true from the moment any linearizable read or LWT has shown it, and a
//! redelivery of finished work can be answered from memory, with no
//! database round trip at all. Entries are used only before their
//! `expires_at`; after it the claim path decides.
//!
//! The one exception is an operator's `forget` (the admin API), which
//! deletes a completed claim on purpose. The instance that ran it drops its
//! entry at once; every other instance trusts an entry for at most
//! `max_age` after it learned it, so a forget is heard everywhere within
//! that bound (the admin answer says so).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::domain::{ClaimKey, ClaimRecord, ClaimState, Namespace};

type Key = (Namespace, ClaimKey);

/// A completed claim and when this instance learned it.
struct Entry {
    record: ClaimRecord,
    learned: tokio::time::Instant,
}

/// Weighs an entry by the bytes it holds, so the bound is on memory.
#[derive(Clone)]
struct ByBytes;

impl Weighter<Key, Arc<Entry>> for ByBytes {
    fn weight(&self, key: &Key, entry: &Arc<Entry>) -> u64 {
        let record = &entry.record;
        // Fixed fields and allocation overhead, then the variable parts.
        let fixed = 160;
        let variable = key.0.as_str().len()
            + key.1.as_str().len()
            + record.fingerprint.as_ref().map_or(0, String::len)
            + record.claimant.as_ref().map_or(0, String::len)
            + record
                .result
                .as_ref()
                .map_or(0, |result| result.as_str().len());
        (fixed + variable) as u64
    }
}

pub struct CompletedCache {
    cache: Option<Cache<Key, Arc<Entry>, ByBytes>>,
    max_age: Duration,
}

impl CompletedCache {
    /// A cache holding up to `capacity_bytes`, each entry trusted for
    /// `max_age` after it was learned; 0 bytes turns it off.
    pub fn new(capacity_bytes: u64, max_age: Duration) -> Self {
        if capacity_bytes == 0 {
            return Self {
                cache: None,
                max_age,
            };
        }
        // The item estimate only sizes the shards; the weight is the bound.
        let estimated_items = (capacity_bytes / 400).max(16) as usize;
        Self {
            cache: Some(Cache::with_weighter(
                estimated_items,
                capacity_bytes,
                ByBytes,
            )),
            max_age,
        }
    }

    /// The completed claim of `key`, if cached, still inside its window and
    /// learned less than `max_age` ago.
    pub fn get(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        now: DateTime<Utc>,
    ) -> Option<ClaimRecord> {
        let cache = self.cache.as_ref()?;
        let cache_key = (namespace.clone(), key.clone());
        let entry = cache.get(&cache_key)?;
        if entry.record.is_expired(now) || entry.learned.elapsed() >= self.max_age {
            cache.remove(&cache_key);
            return None;
        }
        Some(entry.record.clone())
    }

    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Drops `key`'s entry: an operator forgot the claim.
    pub fn forget(&self, namespace: &Namespace, key: &ClaimKey) {
        if let Some(cache) = &self.cache {
            cache.remove(&(namespace.clone(), key.clone()));
        }
    }

    /// Remembers `record` if it is completed; anything else may still change.
    pub fn remember(&self, namespace: &Namespace, key: &ClaimKey, record: &ClaimRecord) {
        let Some(cache) = &self.cache else { return };
        if record.state != ClaimState::Completed {
            return;
        }
        let entry = Entry {
            record: record.clone(),
            learned: tokio::time::Instant::now(),
        };
        cache.insert((namespace.clone(), key.clone()), Arc::new(entry));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClaimToken, Retention, now_millis, secs};

    fn record(complete: bool, ttl_secs: u64) -> ClaimRecord {
        ClaimRecord::new_window(
            ClaimToken::generate(),
            now_millis(),
            Retention {
                ttl_secs,
                lease_secs: (!complete).then_some(ttl_secs),
            },
            complete,
            None,
            None,
        )
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn names() -> (Namespace, ClaimKey) {
        (
            Namespace::parse("ns").unwrap(),
            ClaimKey::parse("k").unwrap(),
        )
    }

    #[test]
    fn only_completed_claims_are_remembered() {
        let cache = CompletedCache::new(1 << 20, HOUR);
        let (namespace, key) = names();
        cache.remember(&namespace, &key, &record(false, 60));
        assert!(cache.get(&namespace, &key, now_millis()).is_none());
        let done = record(true, 60);
        cache.remember(&namespace, &key, &done);
        assert_eq!(cache.get(&namespace, &key, now_millis()), Some(done));
    }

    #[test]
    fn entries_end_with_their_window() {
        let cache = CompletedCache::new(1 << 20, HOUR);
        let (namespace, key) = names();
        cache.remember(&namespace, &key, &record(true, 10));
        assert!(
            cache
                .get(&namespace, &key, now_millis() + secs(11))
                .is_none()
        );
        assert!(
            cache.get(&namespace, &key, now_millis()).is_none(),
            "and are dropped"
        );
    }

    #[test]
    fn entries_are_trusted_for_max_age_only() {
        let (namespace, key) = names();
        let done = record(true, 60);
        let fresh = CompletedCache::new(1 << 20, HOUR);
        fresh.remember(&namespace, &key, &done);
        assert_eq!(
            fresh.get(&namespace, &key, now_millis()),
            Some(done.clone())
        );
        // An entry as old as max_age is not trusted: another instance may
        // have forgotten the claim since.
        let aged = CompletedCache::new(1 << 20, Duration::ZERO);
        aged.remember(&namespace, &key, &done);
        assert!(aged.get(&namespace, &key, now_millis()).is_none());
    }

    #[test]
    fn a_forgotten_claim_is_dropped() {
        let cache = CompletedCache::new(1 << 20, HOUR);
        let (namespace, key) = names();
        cache.remember(&namespace, &key, &record(true, 60));
        cache.forget(&namespace, &key);
        assert!(cache.get(&namespace, &key, now_millis()).is_none());
    }

    #[test]
    fn a_zero_capacity_cache_is_off() {
        let cache = CompletedCache::new(0, HOUR);
        let (namespace, key) = names();
        cache.remember(&namespace, &key, &record(true, 60));
        assert!(cache.get(&namespace, &key, now_millis()).is_none());
    }

    #[test]
    fn the_bound_is_in_bytes() {
        let cache = CompletedCache::new(64 * 1024, HOUR);
        let namespace = Namespace::parse("ns").unwrap();
        for i in 0..10_000 {
            let key = ClaimKey::parse(&format!("key-{i}")).unwrap();
            cache.remember(&namespace, &key, &record(true, 60));
        }
        let kept = (0..10_000)
            .filter(|i| {
                let key = ClaimKey::parse(&format!("key-{i}")).unwrap();
                cache.get(&namespace, &key, now_millis()).is_some()
            })
            .count();
        assert!(kept > 0 && kept < 1000, "{kept} entries kept in 64 KiB");
    }
}
