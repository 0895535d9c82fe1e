//! Client records as client authentication reads them: on every token request, so a replica
//! keeps each for a moment instead of asking its database every time.
//!
//! A change to a client is seen at once by the replica that made it (it invalidates its own
//! entry), by the others when their store reports the change (on PostgreSQL, a notification:
//! milliseconds), and in any case after [`TTL`]: a notification lost with a connection cannot
//! keep a disabled client or a replaced secret working longer than that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::records::ClientRecord;

/// Longest a cached record is used.
pub(crate) const TTL: Duration = Duration::from_secs(2);
/// Most records kept (past it, the cache starts over: a bound, not an eviction policy).
const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct ClientCache {
    entries: parking_lot::Mutex<HashMap<String, (ClientRecord, Instant)>>,
    /// Bumped by every invalidation: a read that began before one is not cached after it.
    generation: AtomicU64,
}

impl ClientCache {
    /// The record, if cached and fresh.
    pub(crate) fn get(&self, client_id: &str) -> Option<ClientRecord> {
        let entries = self.entries.lock();
        let (record, at) = entries.get(client_id)?;
        (at.elapsed() < TTL).then(|| record.clone())
    }

    /// Where a read from the store begins: pass it to [`Self::put`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches a record read from the store, unless an invalidation came since `generation`.
    pub(crate) fn put(&self, generation: u64, record: &ClientRecord) {
        let mut entries = self.entries.lock();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(record.client_id.clone(), (record.clone(), Instant::now()));
    }

    /// Forgets every record (a change by another replica: which one is not said).
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// Forgets one record (a change made here).
    pub(crate) fn invalidate(&self, client_id: &str) {
        let mut entries = self.entries.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(client_id);
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
}
