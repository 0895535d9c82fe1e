//! Client records as client authentication reads them: on every token request, so a replica
//! keeps each for a moment instead of asking its database every time.
//!
//! A change to a client is seen at once by the replica that made it (it invalidates its own
//! entry), by the others when their store reports the change (on PostgreSQL, a notification:
//! milliseconds), and in any case after [`TTL`]: a notification lost with a connection cannot
//! keep a disabled client or a replaced secret working longer than that.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::records::ClientRecord;

/// Longest a cached record is used.
pub(crate) const TTL: Duration = Duration::from_secs(2);
/// Most records kept: past it, the least useful are evicted (S3-FIFO), so a platform of many
/// clients keeps its busy ones cached.
const CAPACITY: usize = 10_000;

#[derive(Debug)]
pub(crate) struct ClientCache {
    entries: quick_cache::sync::Cache<String, Arc<(ClientRecord, Instant)>>,
    /// Bumped by every invalidation: a read that began before one is not cached after it.
    generation: AtomicU64,
    /// Orders a put's check of the generation against invalidations (reads take no lock).
    writes: parking_lot::Mutex<()>,
}

impl Default for ClientCache {
    fn default() -> Self {
        ClientCache {
            entries: quick_cache::sync::Cache::new(CAPACITY),
            generation: AtomicU64::new(0),
            writes: parking_lot::Mutex::new(()),
        }
    }
}

impl ClientCache {
    /// The record, if cached and fresh.
    pub(crate) fn get(&self, client_id: &str) -> Option<ClientRecord> {
        let entry = self.entries.get(client_id)?;
        (entry.1.elapsed() < TTL).then(|| entry.0.clone())
    }

    /// Where a read from the store begins: pass it to [`Self::put`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches a record read from the store, unless an invalidation came since `generation`.
    pub(crate) fn put(&self, generation: u64, record: &ClientRecord) {
        let _writes = self.writes.lock();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        self.entries.insert(
            record.client_id.clone(),
            Arc::new((record.clone(), Instant::now())),
        );
    }

    /// Forgets every record (a change by another replica: which one is not said).
    pub(crate) fn clear(&self) {
        let _writes = self.writes.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    /// Forgets one record (a change made here).
    pub(crate) fn invalidate(&self, client_id: &str) {
        let _writes = self.writes.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.remove(client_id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(id: &str) -> ClientRecord {
        ClientRecord {
            client_id: id.into(),
            ..ClientRecord::default()
        }
    }

    #[test]
    fn a_read_that_began_before_an_invalidation_is_not_cached() {
        let cache = ClientCache::default();
        let before = cache.generation();
        cache.invalidate("a");
        cache.put(before, &record("a"));
        assert!(cache.get("a").is_none());
        let now = cache.generation();
        cache.put(now, &record("a"));
        assert_eq!(cache.get("a").unwrap().client_id, "a");
        cache.clear();
        assert!(cache.get("a").is_none());
    }

    /// Full, it evicts some records, not all of them: the ones read again stay.
    #[test]
    fn a_full_cache_keeps_what_is_used() {
        let cache = ClientCache::default();
        let g = cache.generation();
        cache.put(g, &record("busy"));
        for i in 0..3 * CAPACITY {
            assert!(cache.get("busy").is_some(), "evicted after {i} others");
            cache.put(g, &record(&format!("c{i}")));
        }
        assert!(cache.entries.len() <= CAPACITY + CAPACITY / 10);
    }
}
