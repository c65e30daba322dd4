//! An in-memory cache of completed claims.
//!
//! It cannot go stale, which is why it is allowed at all. Inside its window
//! a completed claim is terminal: release and extend refuse it, takeover
//! applies only to in-progress claims, a second completion changes nothing,
//! and nothing deletes it before `expires_at`. So "completed, with this
//! result, until expires_at" stays true from the moment any linearizable
//! read or LWT has shown it, and a redelivery of finished work can be
//! answered from memory, with no database round trip at all. Entries are
//! used only before their `expires_at`; after it the claim path decides.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::domain::{ClaimKey, ClaimRecord, ClaimState, Namespace};

type Key = (Namespace, ClaimKey);

/// Weighs an entry by the bytes it holds, so the bound is on memory.
#[derive(Clone)]
struct ByBytes;

impl Weighter<Key, Arc<ClaimRecord>> for ByBytes {
    fn weight(&self, key: &Key, record: &Arc<ClaimRecord>) -> u64 {
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
    cache: Option<Cache<Key, Arc<ClaimRecord>, ByBytes>>,
}

impl CompletedCache {
    /// A cache holding up to `capacity_bytes`; 0 turns it off.
    pub fn new(capacity_bytes: u64) -> Self {
        if capacity_bytes == 0 {
            return Self { cache: None };
        }
        // The item estimate only sizes the shards; the weight is the bound.
        let estimated_items = (capacity_bytes / 400).max(16) as usize;
        Self {
            cache: Some(Cache::with_weighter(
                estimated_items,
                capacity_bytes,
                ByBytes,
            )),
        }
    }

    /// The completed claim of `key`, if cached and still inside its window.
    pub fn get(
        &self,
        namespace: &Namespace,
        key: &ClaimKey,
        now: DateTime<Utc>,
    ) -> Option<ClaimRecord> {
        let cache = self.cache.as_ref()?;
        let cache_key = (namespace.clone(), key.clone());
        let record = cache.get(&cache_key)?;
        if record.is_expired(now) {
            cache.remove(&cache_key);
            return None;
        }
        Some(ClaimRecord::clone(&record))
    }

    /// Remembers `record` if it is completed; anything else may still change.
    pub fn remember(&self, namespace: &Namespace, key: &ClaimKey, record: &ClaimRecord) {
        let Some(cache) = &self.cache else { return };
        if record.state != ClaimState::Completed {
            return;
        }
        cache.insert((namespace.clone(), key.clone()), Arc::new(record.clone()));
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

    fn names() -> (Namespace, ClaimKey) {
        (
            Namespace::parse("ns").unwrap(),
            ClaimKey::parse("k").unwrap(),
        )
    }

    #[test]
    fn only_completed_claims_are_remembered() {
        let cache = CompletedCache::new(1 << 20);
        let (namespace, key) = names();
        cache.remember(&namespace, &key, &record(false, 60));
        assert!(cache.get(&namespace, &key, now_millis()).is_none());
        let done = record(true, 60);
        cache.remember(&namespace, &key, &done);
        assert_eq!(cache.get(&namespace, &key, now_millis()), Some(done));
    }

    #[test]
    fn entries_end_with_their_window() {
        let cache = CompletedCache::new(1 << 20);
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
    fn a_zero_capacity_cache_is_off() {
        let cache = CompletedCache::new(0);
        let (namespace, key) = names();
        cache.remember(&namespace, &key, &record(true, 60));
        assert!(cache.get(&namespace, &key, now_millis()).is_none());
    }

    #[test]
    fn the_bound_is_in_bytes() {
        let cache = CompletedCache::new(64 * 1024);
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
