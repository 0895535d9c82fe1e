//! Brute-force protection: failed authentications counted per client id, per username and per
//! source address, in bounded memory.
//!
//! A key gets a number of free failures within a window; past them, every further attempt is
//! refused without checking the credential (no hash, no argon2 work) until a lockout ends that
//! doubles with each failure, up to a bound. A success clears a client's or user's count. The
//! same rules apply to names that do not exist, so the throttle tells nothing about who exists.
//! (Locking out a real user's name is the price; the lockout is short and bounded.)

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

use parking_lot::Mutex;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Subject<'a> {
    /// A client id, from one source when the transport knows it (an attacker's failures then
    /// do not lock the real client out from its own address).
    Client(&'a str, Option<IpAddr>),
    User(&'a str),
    Source(IpAddr),
}

/// The throttle's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures a client id or username may have within the window before lockouts begin.
    pub free_failures: u32,
    /// The same for a source address (higher: many callers may share one).
    pub free_failures_per_source: u32,
    /// A key whose last failure is older than this starts afresh, in seconds.
    pub window: i64,
    /// The longest lockout, in seconds (the first is one second, each further failure doubles
    /// it).
    pub max_lockout: i64,
    /// Keys remembered at most (old and unlocked ones are forgotten first).
    pub capacity: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            free_failures: 5,
            free_failures_per_source: 100,
            window: 15 * 60,
            max_lockout: 5 * 60,
            capacity: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: i64,
    locked_until: i64,
}

const SHARDS: usize = 16;

/// A budget of requests per source and minute, for endpoints where anyone holding only a
/// public client's id makes the server store something (pushed authorization requests, device
/// authorizations): each record lives minutes, so their number is bounded by the rate.
#[derive(Debug)]
pub(crate) struct Budget {
    per_minute: u32,
    /// Source -> (minute, requests in it). Forgotten wholesale past `capacity` sources (a
    /// flood from many sources then meets only the store's own limits for a minute).
    seen: Mutex<HashMap<std::net::IpAddr, (i64, u32)>>,
    capacity: usize,
}

impl Budget {
    pub(crate) fn new(per_minute: u32, capacity: usize) -> Self {
        Budget {
            per_minute,
            seen: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Counts a request from `source` at `now`; `Err(wait)` once its minute's budget is spent.
    pub(crate) fn spend(&self, source: Option<std::net::IpAddr>, now: i64) -> Result<(), i64> {
        let Some(source) = source else { return Ok(()) };
        let minute = now.div_euclid(60);
        let mut seen = self.seen.lock();
        if seen.len() >= self.capacity && !seen.contains_key(&source) {
            seen.clear();
        }
        let entry = seen.entry(source).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= self.per_minute {
            return Err((minute + 1) * 60 - now);
        }
        entry.1 += 1;
        Ok(())
    }
}

#[derive(Debug)]
pub(crate) struct Throttle {
    config: ThrottleConfig,
    shards: Vec<Mutex<HashMap<u64, Entry>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig) -> Self {
        Throttle {
            config,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn key(&self, s: &Subject<'_>) -> u64 {
        self.hasher.hash_one(s)
    }

    fn shard(&self, key: u64) -> &Mutex<HashMap<u64, Entry>> {
        &self.shards[(key as usize) % SHARDS]
    }

    /// Seconds until `subjects` may try again, if any of them is locked out at `now`.
    pub(crate) fn locked(&self, subjects: &[Subject<'_>], now: i64) -> Option<i64> {
        subjects
            .iter()
            .filter_map(|s| {
                let key = self.key(s);
                let shard = self.shard(key).lock();
                shard
                    .get(&key)
                    .filter(|e| e.locked_until > now)
                    .map(|e| e.locked_until - now)
            })
            .max()
    }

    /// Counts a failure for each of `subjects` at `now`.
    pub(crate) fn failed(&self, subjects: &[Subject<'_>], now: i64) {
        for s in subjects {
            let free = match s {
                Subject::Source(_) => self.config.free_failures_per_source,
                _ => self.config.free_failures,
            };
            let key = self.key(s);
            let mut shard = self.shard(key).lock();
            let per_shard = self.config.capacity.div_ceil(SHARDS);
            if shard.len() >= per_shard && !shard.contains_key(&key) {
                let window = self.config.window;
                shard.retain(|_, e| e.locked_until > now || e.last_failure + window > now);
                if shard.len() >= per_shard {
                    // Full of live entries: forget the one whose last failure is oldest.
                    if let Some(oldest) = shard
                        .iter()
                        .min_by_key(|(_, e)| e.last_failure)
                        .map(|(k, _)| *k)
                    {
                        shard.remove(&oldest);
                    }
                }
            }
            let entry = shard.entry(key).or_insert(Entry {
                failures: 0,
                last_failure: now,
                locked_until: 0,
            });
            if now - entry.last_failure > self.config.window {
                entry.failures = 0;
            }
            entry.failures = entry.failures.saturating_add(1);
            entry.last_failure = now;
            if entry.failures > free {
                let doublings = (entry.failures - free - 1).min(30);
                let lockout = (1i64 << doublings).min(self.config.max_lockout);
                entry.locked_until = now + lockout;
            }
        }
    }

    /// Clears the counts of `subjects` (a successful authentication).
    pub(crate) fn succeeded(&self, subjects: &[Subject<'_>]) {
        for s in subjects {
            let key = self.key(s);
            self.shard(key).lock().remove(&key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_failures_then_doubling_lockouts_up_to_the_bound_and_a_success_clears() {
        let t = Throttle::new(ThrottleConfig {
            max_lockout: 4,
            ..ThrottleConfig::default()
        });
        let alice = [Subject::User("alice")];
        for _ in 0..5 {
            assert_eq!(t.locked(&alice, 100), None);
            t.failed(&alice, 100);
        }
        assert_eq!(t.locked(&alice, 100), None, "five free failures");
        t.failed(&alice, 100);
        assert_eq!(t.locked(&alice, 100), Some(1));
        assert_eq!(t.locked(&alice, 101), None, "one second later");
        t.failed(&alice, 101);
        assert_eq!(t.locked(&alice, 101), Some(2));
        for _ in 0..10 {
            t.failed(&alice, 103);
        }
        assert_eq!(t.locked(&alice, 103), Some(4), "bounded");
        assert_eq!(t.locked(&[Subject::User("bob")], 103), None, "per key");
        assert_eq!(
            t.locked(&[Subject::Client("alice", None)], 103),
            None,
            "per kind of key"
        );
        t.succeeded(&alice);
        assert_eq!(t.locked(&alice, 103), None);
    }

    #[test]
    fn a_quiet_window_forgets_and_memory_stays_bounded() {
        let t = Throttle::new(ThrottleConfig {
            capacity: SHARDS * 4,
            ..ThrottleConfig::default()
        });
        let bob = [Subject::User("bob")];
        for _ in 0..5 {
            t.failed(&bob, 0);
        }
        t.failed(&bob, 15 * 60 + 1);
        assert_eq!(
            t.locked(&bob, 15 * 60 + 1),
            None,
            "the count started afresh"
        );
        for i in 0..10_000 {
            let ip = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
            t.failed(&[Subject::Source(ip)], 1000);
        }
        assert!(t.len() <= SHARDS * 4);
    }
}
