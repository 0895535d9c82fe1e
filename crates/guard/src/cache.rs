//! Verified tokens, so a repeated token costs a hash and a lookup instead of a signature check
//! (or, for a Biscuit, its Datalog).
//!
//! Keyed by a 128-bit SipHash of the token under a per-process random key: an attacker who
//! does not know the key cannot make a token collide with a cached one, and the token itself is
//! not kept. An entry never outlives its verdict (`holds_until`: the token's `exp`, or for a
//! Biscuit the first date its checks compare the time against); revocation is checked on every call
//! against the cached facts, so it never outlives a revocation either. Bounded: past its capacity
//! the least useful entries go (S3-FIFO), at a constant cost per insert.

use std::hash::Hasher;
use std::sync::Arc;

use siphasher::sip128::{Hasher128, SipHasher13};
use writ_token::VerifiedToken;

use crate::policy::Rule;
use crate::principal::Principal;
use writ_client::BearerToken;

/// What a verified token leaves behind.
#[derive(Debug)]
pub struct Verified {
    pub token: VerifiedToken,
    pub principal: Arc<Principal>,
    pub bearer: BearerToken,
}

#[derive(Debug)]
pub struct TokenCache {
    /// `None` when disabled. Evicts by S3-FIFO: a flood of one-off tokens cannot push out the
    /// busy ones, and an insert costs the same however full the cache is.
    entries: Option<quick_cache::sync::Cache<u128, Arc<Verified>>>,
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
            entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
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

    /// The key of a Biscuit's verdict for one request: the method and the rule it was judged
    /// against, then the token. (A JWT key hashes the token alone; a Biscuit key starts with a
    /// byte no UTF-8 token holds, so the two never meet.)
    pub fn request_key(&self, method: Option<&str>, rule: &Rule, token: &str) -> u128 {
        const SEP: &[u8] = &[0xff];
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        h.write(SEP);
        h.write(method.unwrap_or("").as_bytes());
        h.write(SEP);
        let (kind, scopes): (&[u8], &[String]) = match rule {
            Rule::Public => (b"public", &[]),
            Rule::Deny => (b"deny", &[]),
            Rule::Scopes(all) => (b"all", all),
            Rule::AnyScope(any) => (b"any", any),
        };
        h.write(kind);
        for s in scopes {
            h.write(SEP);
            h.write(s.as_bytes());
        }
        h.write(SEP);
        h.write(token.as_bytes());
        h.finish128().as_u128()
    }

    /// The entry for `key`, if its token has not expired at `now`.
    pub fn get(&self, key: u128, now: i64) -> Option<Arc<Verified>> {
        let entries = self.entries.as_ref()?;
        let hit = entries.get(&key)?;
        if hit.token.holds_until > now {
            return Some(hit);
        }
        entries.remove(&key);
        None
    }

    pub fn insert(&self, key: u128, verified: Arc<Verified>, now: i64) {
        if let Some(entries) = &self.entries
            && verified.token.holds_until > now
        {
            entries.insert(key, verified);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use writ_token::{AccessClaims, TokenFormat};

    fn verified(exp: i64) -> Arc<Verified> {
        let token = VerifiedToken {
            format: TokenFormat::Jwt,
            claims: AccessClaims {
                iss: "i".into(),
                sub: "s".into(),
                aud: vec!["a".into()],
                exp,
                iat: 0,
                nbf: None,
                jti: "j".into(),
                client_id: "c".into(),
                scope: String::new(),
                gid: None,
                act: None,
                may_act: None,
                cnf: None,
            },
            key_id: "k".into(),
            revocation_ids: Vec::new(),
            holds_until: exp,
        };
        Arc::new(Verified {
            principal: Arc::new(Principal::from_verified(&token)),
            token,
            bearer: BearerToken(Arc::from("t")),
        })
    }

    #[test]
    fn an_entry_never_outlives_its_token() {
        let cache = TokenCache::new(100);
        let k = cache.key("token");
        cache.insert(k, verified(100), 50);
        assert!(cache.get(k, 99).is_some());
        assert!(cache.get(k, 100).is_none(), "gone at exp");
        assert!(cache.is_empty(), "and removed");
        cache.insert(k, verified(100), 100);
        assert!(cache.is_empty(), "an expired token is not cached");
    }

    #[test]
    fn keys_are_keyed_per_cache_and_distinct_per_token() {
        let a = TokenCache::new(10);
        let b = TokenCache::new(10);
        assert_ne!(a.key("t"), a.key("u"));
        assert_ne!(a.key("t"), b.key("t"), "another process, another key");
    }

    #[test]
    fn a_full_cache_stays_bounded_and_keeps_what_is_used() {
        let cache = TokenCache::new(100);
        let busy = cache.key("busy");
        cache.insert(busy, verified(1000), 5);
        for i in 0..10_000 {
            let k = cache.key(&format!("t{i}"));
            cache.insert(k, verified(1000), 5);
            // The busy token is presented again and again; the one-off tokens never.
            assert!(
                cache.get(busy, 5).is_some(),
                "evicted after {i} one-off tokens"
            );
        }
        assert!(cache.len() <= 110, "{} entries", cache.len());
        let fresh = cache.key("fresh");
        cache.insert(fresh, verified(1000), 20);
        assert!(cache.get(fresh, 20).is_some());
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let cache = TokenCache::new(0);
        let k = cache.key("t");
        cache.insert(k, verified(100), 0);
        assert!(cache.get(k, 0).is_none());
    }
}
