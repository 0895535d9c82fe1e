//! Verified tokens, so a repeated token costs a hash and a lookup instead of a signature check.
//!
//! Keyed by a 128-bit SipHash of the token under a per-process random key: an attacker who
//! does not know the key cannot make a token collide with a cached one, and the token itself is
//! not kept. An entry never outlives its token's `exp`; revocation is checked on every call
//! against the cached facts, so it never outlives a revocation either. Sharded, bounded: a full
//! shard drops its expired entries, then an arbitrary one.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Arc;

use parking_lot::Mutex;
use siphasher::sip128::{Hasher128, SipHasher13};
use writ_token::VerifiedToken;

use crate::principal::{BearerToken, Principal};

/// What a verified token leaves behind.
#[derive(Debug)]
pub struct Verified {
    pub token: VerifiedToken,
    pub principal: Arc<Principal>,
    pub bearer: BearerToken,
}

const SHARDS: usize = 16;

#[derive(Debug)]
pub struct TokenCache {
    shards: Vec<Mutex<HashMap<u128, Arc<Verified>>>>,
    per_shard: usize,
    keys: (u64, u64),
}

impl TokenCache {
    /// Holds at most about `capacity` tokens (0 disables the cache).
    pub fn new(capacity: usize) -> Self {
        let mut k = [0u8; 16];
        // Without randomness the process cannot keep secrets safe either: fail loudly.
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut k).expect("the OS random source works");
        let (a, b) = k.split_at(8);
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            keys: (
                u64::from_le_bytes(a.try_into().unwrap_or_default()),
                u64::from_le_bytes(b.try_into().unwrap_or_default()),
            ),
        }
    }

    pub fn key(&self, token: &str) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        h.write(token.as_bytes());
        h.finish128().as_u128()
    }

    fn shard(&self, key: u128) -> &Mutex<HashMap<u128, Arc<Verified>>> {
        &self.shards[(key as usize) % SHARDS]
    }

    /// The entry for `key`, if its token has not expired at `now`.
    pub fn get(&self, key: u128, now: i64) -> Option<Arc<Verified>> {
        if self.per_shard == 0 {
            return None;
        }
        let mut shard = self.shard(key).lock();
        let hit = shard.get(&key)?;
        if hit.token.claims.exp > now {
            return Some(hit.clone());
        }
        shard.remove(&key);
        None
    }

    pub fn insert(&self, key: u128, verified: Arc<Verified>, now: i64) {
        if self.per_shard == 0 || verified.token.claims.exp <= now {
            return;
        }
        let mut shard = self.shard(key).lock();
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, v| v.token.claims.exp > now);
            if shard.len() >= self.per_shard
                && let Some(evict) = shard.keys().next().copied()
            {
                shard.remove(&evict);
            }
        }
        shard.insert(key, verified);
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
