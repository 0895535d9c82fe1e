//! Which keys the local revocation index may hold, kept in memory so that checking a token
//! against the index costs a store read only when an entry could apply to it.
//!
//! Almost every check finds nothing: the token's id, subject, client, key and grant are not
//! revoked. Each of those lookups lands on a random page of an index that grows with every
//! revocation (a million entries fill hundreds of megabytes), so on an embedded store a full
//! index made every introspection and refresh pay for cache misses. The filter answers "absent"
//! from memory instead: 32-bit keyed fingerprints, each with the number of keys it stands for
//! (a collision only costs a read). Almost every fingerprint stands for one key, so those are a
//! set of bare fingerprints (about 10 bytes per entry with the table's slack, against 18 for a
//! count beside each) and only the few counted more than once carry a count.
//!
//! Exact only while this process is the store's only writer ([`writ_store::AsyncStore::exclusive`]);
//! on a shared store (replicas on PostgreSQL) there is no filter. It never forgets a key it
//! counted unless the key was removed: counts may run high (a leak of a few entries, never a
//! missed revocation), never low. Until it has counted what the store held when it was made
//! ([`RevocationFilter::complete`]), it answers "may hold" for everything.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

#[derive(Debug, Default)]
pub(crate) struct RevocationFilter {
    /// Keyed per process: nobody outside can aim keys at one fingerprint.
    hasher: std::hash::RandomState,
    inner: parking_lot::Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every key present when loading began has been counted.
    complete: bool,
    /// Fingerprints counted once.
    ones: HashSet<u32>,
    /// Fingerprints counted more than once (collisions, a key counted by a write and by the
    /// load), with their counts, at least 2.
    more: HashMap<u32, u32>,
}

impl Inner {
    fn holds(&self, fingerprint: u32) -> bool {
        // "Absent" is the common answer: the map, nearly always empty, is probed only if it
        // holds anything.
        self.ones.contains(&fingerprint)
            || (!self.more.is_empty() && self.more.contains_key(&fingerprint))
    }

    fn increment(&mut self, fingerprint: u32) {
        if let Some(n) = self.more.get_mut(&fingerprint) {
            *n += 1;
        } else if self.ones.remove(&fingerprint) {
            self.more.insert(fingerprint, 2);
        } else {
            self.ones.insert(fingerprint);
        }
    }

    fn decrement(&mut self, fingerprint: u32) {
        match self.more.get_mut(&fingerprint) {
            Some(n) if *n > 2 => *n -= 1,
            Some(n) => {
                debug_assert_eq!(*n, 2, "the map holds counts of 2 or more");
                self.more.remove(&fingerprint);
                self.ones.insert(fingerprint);
            }
            None => {
                self.ones.remove(&fingerprint);
            }
        }
    }
}

impl RevocationFilter {
    fn fingerprint(&self, key: &[u8]) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    /// Whether the index may hold `key`: `false` is certain.
    pub fn may_hold(&self, key: &[u8]) -> bool {
        let fingerprint = self.fingerprint(key);
        let inner = self.inner.lock();
        !inner.complete || inner.holds(fingerprint)
    }

    /// Counts keys about to be written (before the write, so no check can miss them), or read
    /// while loading.
    pub fn add<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let fingerprints: Vec<u32> = keys.into_iter().map(|k| self.fingerprint(k)).collect();
        let mut inner = self.inner.lock();
        for f in fingerprints {
            inner.increment(f);
        }
    }

    /// Takes back counts [`Self::add`] made for a write that did not happen.
    pub fn take_back<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let fingerprints: Vec<u32> = keys.into_iter().map(|k| self.fingerprint(k)).collect();
        let mut inner = self.inner.lock();
        for f in fingerprints {
            inner.decrement(f);
        }
    }

    /// Keys removed from the index. Before loading completes a removed key may not have been
    /// counted yet, so nothing is taken back then (its count, if any, stays: a harmless leak).
    pub fn removed<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let fingerprints: Vec<u32> = keys.into_iter().map(|k| self.fingerprint(k)).collect();
        let mut inner = self.inner.lock();
        if !inner.complete {
            return;
        }
        for f in fingerprints {
            inner.decrement(f);
        }
        // Pruning a mass revocation away gives its memory back.
        let (len, capacity) = (inner.ones.len(), inner.ones.capacity());
        if capacity > 4096 && len < capacity / 4 {
            inner.ones.shrink_to(len * 2);
        }
    }

    /// Every key the store held when loading began has been [`Self::add`]ed.
    pub fn complete(&self) {
        self.inner.lock().complete = true;
    }

    #[cfg(test)]
    pub fn is_complete(&self) -> bool {
        self.inner.lock().complete
    }

    /// Distinct fingerprints counted.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.ones.len() + inner.more.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_is_certain_only_once_complete_and_removal_waits_for_it() {
        let f = RevocationFilter::default();
        assert!(f.may_hold(b"r/a"), "incomplete: everything may be held");
        f.add([&b"r/a"[..]]);
        // Removed before loading completed: not taken back (it may be counted again by the load).
        f.removed([&b"r/a"[..]]);
        f.complete();
        assert!(f.may_hold(b"r/a"));
        assert!(!f.may_hold(b"r/b"));
        f.add([&b"r/b"[..], &b"r/b"[..]]);
        f.removed([&b"r/b"[..]]);
        assert!(f.may_hold(b"r/b"), "counted twice, removed once");
        f.take_back([&b"r/b"[..]]);
        assert!(!f.may_hold(b"r/b"));
        assert_eq!(f.len(), 1);
    }

    /// A fingerprint counted three times is held until the third removal, whichever way its
    /// counts go down; the set and the counted map never both hold it.
    #[test]
    fn counts_move_between_the_set_and_the_map() {
        let f = RevocationFilter::default();
        f.complete();
        let k = &b"r/k"[..];
        for held in [1, 2, 3] {
            f.add([k]);
            let inner = f.inner.lock();
            let fp = f.fingerprint(k);
            assert_eq!(inner.ones.contains(&fp), held == 1);
            assert_eq!(inner.more.get(&fp).copied(), (held > 1).then_some(held));
        }
        f.removed([k]);
        assert!(f.may_hold(k));
        f.take_back([k]);
        assert!(f.may_hold(k));
        assert!(f.inner.lock().more.is_empty(), "counted once again");
        f.removed([k]);
        assert!(!f.may_hold(k));
        assert_eq!(f.len(), 0);
        // Removing what is not counted changes nothing.
        f.removed([k]);
        f.add([k]);
        assert!(f.may_hold(k));
    }

    /// A million fingerprints take about half the memory a count beside each did.
    #[test]
    fn a_million_keys_fit_in_a_set_of_bare_fingerprints() {
        let f = RevocationFilter::default();
        f.complete();
        let keys: Vec<[u8; 8]> = (0..1_000_000u64).map(u64::to_be_bytes).collect();
        f.add(keys.iter().map(|k| &k[..]));
        let inner = f.inner.lock();
        // 32-bit fingerprints of a million keys collide about a hundred times.
        assert!(inner.more.len() < 1_000, "{}", inner.more.len());
        let counted =
            inner.ones.len() as u64 + inner.more.values().map(|&n| u64::from(n)).sum::<u64>();
        assert_eq!(counted, 1_000_000);
        // A table's slots: a power of two holding its capacity at 7/8 load, each one element
        // and one control byte.
        fn table_bytes(capacity: usize, element: usize) -> usize {
            (capacity * 8 / 7).next_power_of_two() * (element + 1)
        }
        let bytes = table_bytes(inner.ones.capacity(), std::mem::size_of::<u32>())
            + table_bytes(inner.more.capacity(), std::mem::size_of::<(u32, u32)>());
        // One map of counts would take 2^21 slots of 9 bytes: 18 MiB.
        assert!(bytes < 11 << 20, "{bytes}");
    }

    #[test]
    fn memory_is_given_back_after_mass_removal() {
        let f = RevocationFilter::default();
        f.complete();
        let keys: Vec<Vec<u8>> = (0..100_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        f.add(keys.iter().map(Vec::as_slice));
        let full = f.inner.lock().ones.capacity();
        f.removed(keys[..99_000].iter().map(Vec::as_slice));
        assert!(f.inner.lock().ones.capacity() < full / 4);
        for k in &keys[99_000..] {
            assert!(f.may_hold(k));
        }
    }
}
