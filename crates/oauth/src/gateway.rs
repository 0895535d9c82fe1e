//! The gateway check: what an API gateway (nginx's `auth_request`, Envoy's `ext_authz`) asks
//! before it lets a request in. The caller's token (a reference token, or a JWT of this
//! server) is verified, checked against every revocation, and against what the route needs
//! (the audience it must name, scopes it must carry); the answer is the JWT the services
//! inside verify: the one behind a reference (the phantom token pattern), or the one
//! presented. Biscuits are not taken: a holder may have narrowed one to other services, which
//! only a guard judging the request can tell.
//!
//! Every route names its audience: a check without one is the gateway's configuration at
//! fault, not a pass for any token (which would forward tokens meant for other services, Writ's
//! admin API among them, to the route's backend).
//!
//! Verdicts are cached by a keyed 128-bit SipHash of the presented token, with a second,
//! independently keyed one compared on every hit (the token itself is not kept; an attacker
//! without the per-process keys cannot aim a collision), each for as long as its verification
//! holds (`exp`), in an S3-FIFO cache bounded by the bytes it holds. A hit costs the hashes,
//! the lookup and the revocation check, which runs on every call against the cached facts: a
//! revocation ends a cached token at once, and drops it.

use std::hash::Hasher;
use std::sync::Arc;

use siphasher::sip128::{Hasher128, SipHasher13};
use writ_token::{Scopes, TokenFormat, VerifiedToken};

use crate::error::{Error, Result};
use crate::{AuthorizationServer, MAX_TOKEN_LEN};

/// What a route needs of the caller's token.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewayNeeds<'a> {
    /// The audience the token must name (the service behind the route): required.
    pub audience: &'a str,
    /// Space-delimited scopes the token must carry, every one (empty: none).
    pub scope: &'a str,
}

/// A token let through.
#[derive(Debug)]
pub struct GatewayPass {
    pub token: VerifiedToken,
    /// What the services inside are given: the JWT behind a reference token, or the JWT as
    /// presented.
    pub forward: String,
    /// The presented token's second digest, compared on every cache hit.
    check: u128,
}

/// What an entry weighs in the cache: its JWT twice over (the token's claims are about its
/// payload) and a fixed part.
#[derive(Debug, Clone, Copy)]
struct Weight;

impl quick_cache::Weighter<u128, Arc<GatewayPass>> for Weight {
    fn weight(&self, _key: &u128, pass: &Arc<GatewayPass>) -> u64 {
        512 + 2 * pass.forward.len() as u64
    }
}

/// The bytes the cache is allowed per entry it is sized for: a typical JWT's.
const TYPICAL_ENTRY: u64 = 2048;

/// The gateway's verdicts, bounded.
pub(crate) struct GatewayCache {
    entries: Option<quick_cache::sync::Cache<u128, Arc<GatewayPass>, Weight>>,
    keys: [(u64, u64); 2],
}

impl std::fmt::Debug for GatewayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayCache")
            .field("entries", &self.entries.as_ref().map(|c| c.len()))
            .finish_non_exhaustive()
    }
}

impl GatewayCache {
    /// Holds about `capacity` typical tokens (0: none): at most `capacity` x 2 KiB, whatever
    /// the tokens' sizes.
    pub(crate) fn new(capacity: usize) -> Self {
        let key = || {
            let k = writ_token::random_bytes::<16>();
            let (a, b) = k.split_at(8);
            (
                u64::from_le_bytes(a.try_into().unwrap_or_default()),
                u64::from_le_bytes(b.try_into().unwrap_or_default()),
            )
        };
        GatewayCache {
            entries: (capacity > 0).then(|| {
                quick_cache::sync::Cache::with_weighter(
                    capacity,
                    capacity as u64 * TYPICAL_ENTRY,
                    Weight,
                )
            }),
            keys: [key(), key()],
        }
    }

    fn digest(&self, i: usize, token: &str) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.keys[i].0, self.keys[i].1);
        h.write(token.as_bytes());
        h.finish128().as_u128()
    }
}

impl AuthorizationServer {
    /// The gateway check for a bearer `token` on a route that `needs` something: the JWT to
    /// forward inside, or `invalid_token` (not a reference token or JWT of this server's,
    /// expired, revoked, or not for the route's audience), `insufficient_scope`,
    /// `invalid_request` (the route names no audience, or a malformed scope: the gateway's
    /// configuration, which the transport answers as a server error), or
    /// `temporarily_unavailable` (revocations cannot be vouched for now). Changes nothing.
    pub async fn gateway_check(
        &self,
        token: &str,
        needs: GatewayNeeds<'_>,
    ) -> Result<Arc<GatewayPass>> {
        const INVALID: Error =
            Error::InvalidToken("the access token is invalid, expired or revoked");
        if needs.audience.is_empty() {
            return Err(Error::InvalidRequest("the route names no audience"));
        }
        let required = Scopes::parse(needs.scope)
            .map_err(|_| Error::InvalidRequest("the route's required scope is malformed"))?;
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(INVALID);
        }
        let cache = &self.gateway_cache;
        let (key, check) = (cache.digest(0, token), cache.digest(1, token));
        let now = self.now();
        let cached = cache
            .entries
            .as_ref()
            .and_then(|c| c.get(&key))
            .filter(|p| p.check == check && p.token.holds_until > now);
        let pass = match cached {
            Some(pass) => pass,
            None => {
                let Some((verified, forward)) = self.verify_bearer(token).await? else {
                    return Err(INVALID);
                };
                if verified.format != TokenFormat::Jwt {
                    return Err(Error::InvalidToken(
                        "the gateway takes reference tokens and JWTs, not Biscuits",
                    ));
                }
                // A token bound to a DPoP key or a TLS certificate is good only with a proof
                // of it, which the gateway does not check (yet): refused, never forwarded as a
                // bearer token.
                if verified.claims.cnf.is_some() {
                    return Err(Error::InvalidToken(
                        "the gateway does not take sender-constrained (DPoP- or certificate-bound) \
                         tokens",
                    ));
                }
                let pass = Arc::new(GatewayPass {
                    forward: forward.into_owned(),
                    token: verified,
                    check,
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
        if !claims.aud.iter().any(|a| a == needs.audience) {
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
