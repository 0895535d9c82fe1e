//! Revocations queued in the outbox and not yet delivered to the revocation log, by target,
//! kept in memory when this process is the store's only writer (so the copy is exact). Once the
//! log runs in this process (`AuthorizationServer::follow_log`), entries that the log keeps as
//! long as the local index would are not written to the local index at all: from the moment
//! one is acknowledged until the log holds it, this answers for it; then the log does. A million
//! token-id revocations are then stored once, not twice (issue 17).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use parking_lot::RwLock;

/// Kept compact, since a backlog (the log away, or slower than a burst of revocations) grows it
/// by one entry per queued revocation: each outbox entry by its 16-byte id, each target by a
/// keyed 64-bit hash, about 50 bytes per entry where the keys themselves would take 200. A
/// hash collision can only make an unrevoked token look revoked (one chance in 2^64 per pair):
/// it fails closed.
#[derive(Debug, Default)]
pub(crate) struct Undelivered {
    inner: RwLock<Inner>,
    hasher: RandomState,
}

#[derive(Debug, Default)]
struct Inner {
    /// Outbox entry id to the hash of its target.
    by_outbox: HashMap<u128, u64>,
    /// Target hashes, with how many outbox entries name each.
    targets: HashMap<u64, u32>,
}

impl Undelivered {
    pub(crate) fn add(&self, outbox_id: u128, target: &[u8]) {
        let hash = self.hasher.hash_one(target);
        let mut inner = self.inner.write();
        if inner.by_outbox.insert(outbox_id, hash).is_none() {
            *inner.targets.entry(hash).or_default() += 1;
        }
    }

    /// Forgets outbox entries (delivered, pruned, or never written); unknown ids are ignored.
    pub(crate) fn remove(&self, outbox_ids: impl IntoIterator<Item = u128>) {
        let mut inner = self.inner.write();
        for id in outbox_ids {
            let Some(hash) = inner.by_outbox.remove(&id) else {
                continue;
            };
            if let Some(n) = inner.targets.get_mut(&hash) {
                *n -= 1;
                if *n == 0 {
                    inner.targets.remove(&hash);
                }
            }
        }
        if inner.by_outbox.is_empty() {
            // Give back what a backlog grew.
            inner.by_outbox.shrink_to_fit();
            inner.targets.shrink_to_fit();
        }
    }

    pub(crate) fn holds(&self, target: &[u8]) -> bool {
        let hash = self.hasher.hash_one(target);
        let inner = self.inner.read();
        !inner.targets.is_empty() && inner.targets.contains_key(&hash)
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.read().by_outbox.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_held_while_any_outbox_entry_names_it() {
        let u = Undelivered::default();
        u.add(1, b"t");
        u.add(2, b"t");
        u.add(2, b"t");
        u.add(3, b"u");
        assert!(u.holds(b"t") && u.holds(b"u") && !u.holds(b"v"));
        u.remove([1, 99]);
        assert!(u.holds(b"t"), "2 still names it");
        u.remove([2]);
        assert!(!u.holds(b"t"));
        assert_eq!(u.len(), 1);
        u.remove([3]);
        assert!(!u.holds(b"u"));
        assert_eq!(u.len(), 0);
    }
}
