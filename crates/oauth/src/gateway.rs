//! The gateway check: what an API gateway (nginx's `auth_request`, Envoy's `ext_authz`) asks
//! before it lets a request in. The caller's token (a reference token, or a JWT or Biscuit of
//! this server) is verified, checked against every revocation, and against what the route
//! needs (an audience it must name, scopes it must carry); the answer is the token the
//! services inside verify: the JWT behind a reference (the phantom token pattern), the
//! presented token otherwise.
//!
//! Verdicts are cached by a keyed 128-bit SipHash of the presented token (the token itself is
//! not kept as a key; an attacker without the per-process key cannot aim a collision), each
//! for as long as its verification holds (`exp`), in a bounded S3-FIFO cache. A hit costs the
//! hash, the lookup and the revocation check, which runs on every call against the cached
//! facts: a revocation ends a cached token at once, and drops it.

use std::hash::Hasher;
use std::sync::Arc;

use siphasher::sip128::{Hasher128, SipHasher13};
use writ_token::{Scopes, VerifiedToken};

use crate::error::{Error, Result};
use crate::{AuthorizationServer, MAX_TOKEN_LEN};

/// What a route needs of the caller's token; empty parts need nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewayNeeds<'a> {
    /// An audience the token must name (the service behind the route).
    pub audience: &'a str,
    /// Space-delimited scopes the token must carry, every one.
    pub scope: &'a str,
}

/// A token let through.
#[derive(Debug)]
pub struct GatewayPass {
    pub token: VerifiedToken,
    /// What the services inside are given: the JWT behind a reference token, or the token
    /// as presented.
    pub forward: String,
}

/// The gateway's verdicts, bounded.
pub(crate) struct GatewayCache {
    entries: Option<quick_cache::sync::Cache<u128, Arc<GatewayPass>>>,
    keys: (u64, u64),
}

impl std::fmt::Debug for GatewayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayCache")
            .field("entries", &self.entries.as_ref().map(|c| c.len()))
            .finish_non_exhaustive()
    }
}

impl GatewayCache {
    /// Holds at most about `capacity` tokens (0: none).
    pub(crate) fn new(capacity: usize) -> Self {
        let k = writ_token::random_bytes::<16>();
        let (a, b) = k.split_at(8);
        GatewayCache {
            entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
            keys: (
                u64::from_le_bytes(a.try_into().unwrap_or_default()),
                u64::from_le_bytes(b.try_into().unwrap_or_default()),
            ),
        }
    }

    fn key(&self, token: &str) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        h.write(token.as_bytes());
        h.finish128().as_u128()
    }
}

impl AuthorizationServer {
    /// The gateway check for a bearer `token` on a route that `needs` something: the token to
    /// forward inside, or `invalid_token` (not a token of this server's, expired, revoked, or
    /// not for the route's audience), `insufficient_scope`, `invalid_request` (the route's
    /// own scope is malformed: the gateway's configuration), or `temporarily_unavailable`
    /// (revocations cannot be vouched for now). Changes nothing.
    pub async fn gateway_check(
        &self,
        token: &str,
        needs: GatewayNeeds<'_>,
    ) -> Result<Arc<GatewayPass>> {
        const INVALID: Error =
            Error::InvalidToken("the access token is invalid, expired or revoked");
        let required = Scopes::parse(needs.scope)
            .map_err(|_| Error::InvalidRequest("the route's required scope is malformed"))?;
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(INVALID);
        }
        let cache = &self.gateway_cache;
        let key = cache.key(token);
        let now = self.now();
        let cached = cache
            .entries
            .as_ref()
            .and_then(|c| c.get(&key))
            .filter(|p| p.token.holds_until > now);
        let pass = match cached {
            Some(pass) => pass,
            None => {
                let Some((verified, forward)) = self.verify_bearer(token).await? else {
                    return Err(INVALID);
                };
                let pass = Arc::new(GatewayPass {
                    forward: forward.into_owned(),
                    token: verified,
                });
                if let Some(c) = &cache.entries {
                    c.insert(key, pass.clone());
                }
                pass
            }
        };
        if !self.is_live(&pass.token).await? {
            if let Some(c) = &cache.entries {
                c.remove(&key);
            }
            return Err(INVALID);
        }
        let claims = &pass.token.claims;
        if !needs.audience.is_empty() && !claims.aud.iter().any(|a| a == needs.audience) {
            return Err(Error::InvalidToken(
                "the access token is not for this route's audience",
            ));
        }
        if !required.is_empty() {
            let held = Scopes::parse(&claims.scope).map_err(|_| INVALID)?;
            if !required.is_subset(&held) {
                return Err(Error::InsufficientScope(
                    "the access token lacks a scope this route needs",
                ));
            }
        }
        Ok(pass)
    }
}
