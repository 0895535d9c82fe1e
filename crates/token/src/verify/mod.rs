//! Verifying access tokens: the one code path every Writ service and the guard use.
//!
//! A JWT passes, in this order: a size bound; exactly three base64url segments; a header parsed
//! by `jsonwebtoken` with `typ` = `at+jwt`, no key-bearing or critical parameters (`jku`, `jwk`,
//! `x5u`, `x5c`, `crit`, ...), an allowed `alg`; a `kid` found among the trusted keys whose
//! algorithm equals `alg`; the signature, checked with the calls of `jsonwebtoken`'s rust_crypto
//! backend on a key decoded once ([`VerificationKey::verify_signature`]); then the claims, parsed
//! strictly (integers for times), against the trusted issuers, the expected audience and the
//! injected clock with a small leeway.
//!
//! A Biscuit passes when its root key id names a trusted root key, every block signature holds,
//! its attenuation blocks hold nothing but single-predicate checks, and a Datalog authorizer
//! (with run limits) fed with the time, and for a request its service, method and required
//! scopes, finds every check satisfied. [`authorize_biscuit`] is the part shared with any other
//! Biscuit: signatures, limits, checks and policies.

mod biscuit;
pub(crate) mod jwt;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits};

pub use biscuit::authorize_biscuit;

use crate::biscuit::MAX_BISCUIT_LEN;
use crate::claims::{AccessClaims, MAX_NUMERIC_DATE};
use crate::clock::SharedClock;
use crate::error::TokenError;
use crate::keys::{Algorithm, KeySet};
use crate::scope::Scopes;

/// The two forms of a Writ access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    Jwt,
    Biscuit,
}

impl TokenFormat {
    /// A JWT has two dots; base64url Biscuits have none.
    pub fn detect(token: &str) -> TokenFormat {
        if token.contains('.') {
            TokenFormat::Jwt
        } else {
            TokenFormat::Biscuit
        }
    }
}

/// A token that passed verification, and what it says.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub format: TokenFormat,
    /// For a Biscuit, rebuilt from its authority facts; `scope` is what the token can still use
    /// after attenuation (see [`TokenVerifier::verify_biscuit_for`] for the request variant).
    pub claims: AccessClaims,
    /// The JWT `kid`, or the Biscuit root key id in decimal.
    pub key_id: String,
    /// Biscuit block revocation ids (hex), authority block first. Empty for JWTs.
    pub revocation_ids: Vec<String>,
    /// Until when (NumericDate, exclusive) this verdict stands, revocation aside: `exp` for a
    /// JWT; for a Biscuit, no later than the first date one of its checks compares the time
    /// against. A cache keeps it no longer.
    pub holds_until: i64,
}

/// A JWS whose header and signature passed; its payload is not yet interpreted.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    pub header: jsonwebtoken::Header,
    pub payload: Vec<u8>,
    pub key_id: String,
}

/// The request a Biscuit is presented for.
#[derive(Debug, Clone, Default)]
pub struct BiscuitRequest {
    /// This service's name (its audience).
    pub service: Option<String>,
    /// The gRPC method path, `/package.Service/Method`.
    pub method: Option<String>,
    /// Scopes the method requires: each must be an authority `scope` no block narrowed away.
    pub required_scopes: Vec<String>,
    /// The service's own Datalog (checks and policies). Without policies, `allow if true` applies
    /// once every check passed.
    pub policies: Option<AuthorizerBuilder>,
}

/// Run limits for Biscuit authorization, so a hostile token cannot stall a verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BiscuitLimits {
    pub max_facts: u64,
    pub max_iterations: u64,
    pub max_time: Duration,
}

impl Default for BiscuitLimits {
    fn default() -> Self {
        BiscuitLimits {
            max_facts: 1000,
            max_iterations: 100,
            // Wall-clock, so it must leave room for a busy machine's scheduling; the fact and
            // iteration limits and the attenuation block rule bound the work itself.
            max_time: Duration::from_millis(25),
        }
    }
}

impl From<BiscuitLimits> for AuthorizerLimits {
    fn from(l: BiscuitLimits) -> Self {
        AuthorizerLimits {
            max_facts: l.max_facts,
            max_iterations: l.max_iterations,
            max_time: l.max_time,
        }
    }
}

/// What a verifier accepts.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// `iss` values accepted.
    pub issuers: Vec<String>,
    /// The audience this verifier stands for; `None` only for an issuer looking at its own
    /// tokens (introspection), which still requires a non-empty `aud`.
    pub audience: Option<String>,
    /// The algorithm allow-list.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: i64,
    /// Longest JWT accepted, in bytes.
    pub max_token_bytes: usize,
    /// Longest Biscuit accepted, in bytes (blocks make them grow).
    pub max_biscuit_bytes: usize,
    /// Longest lifetime (`exp - iat`) accepted, in seconds.
    pub max_lifetime: i64,
    /// Most blocks a Biscuit may carry.
    pub max_biscuit_blocks: usize,
    pub biscuit_limits: BiscuitLimits,
}

impl VerifierConfig {
    /// Secure defaults: both algorithms, 30 s leeway, 8 KiB JWTs, 16 KiB Biscuits, lifetimes up
    /// to a day.
    pub fn new(issuers: Vec<String>, audience: Option<String>) -> Self {
        VerifierConfig {
            issuers,
            audience,
            algorithms: Algorithm::ALL.to_vec(),
            leeway: 30,
            max_token_bytes: 8 * 1024,
            max_biscuit_bytes: MAX_BISCUIT_LEN,
            max_lifetime: 24 * 3600,
            max_biscuit_blocks: 16,
            biscuit_limits: BiscuitLimits::default(),
        }
    }
}

/// Verifies JWT and Biscuit access tokens against trusted keys. The key set can be replaced at
/// any time (rotation, refresh) without blocking verification for long.
#[derive(Debug)]
pub struct TokenVerifier {
    config: VerifierConfig,
    keys: RwLock<Arc<KeySet>>,
    clock: SharedClock,
}

impl TokenVerifier {
    pub fn new(config: VerifierConfig, keys: KeySet, clock: SharedClock) -> Self {
        TokenVerifier {
            config,
            keys: RwLock::new(Arc::new(keys)),
            clock,
        }
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Replaces the trusted keys.
    pub fn set_keys(&self, keys: KeySet) {
        let mut guard = self.keys.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(keys);
    }

    /// Replaces the trusted keys with a shared set (no copy).
    pub fn set_shared_keys(&self, keys: Arc<KeySet>) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    /// The trusted keys now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Verifies a token of either form, told apart by its shape.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        match TokenFormat::detect(token) {
            TokenFormat::Jwt => self.verify_jwt(token),
            TokenFormat::Biscuit => self.verify_biscuit(token),
        }
    }

    /// The claim checks shared by both forms.
    fn check_claims(&self, c: &AccessClaims) -> Result<(), TokenError> {
        let in_range = |t: i64| (0..=MAX_NUMERIC_DATE).contains(&t);
        if !in_range(c.exp) || !in_range(c.iat) || c.nbf.is_some_and(|n| !in_range(n)) {
            return Err(TokenError::BadClaims("time claims out of range"));
        }
        if c.sub.is_empty() || c.jti.is_empty() || c.client_id.is_empty() {
            return Err(TokenError::BadClaims("sub, jti and client_id are required"));
        }
        if !self.config.issuers.iter().any(|i| i == &c.iss) {
            return Err(TokenError::WrongIssuer);
        }
        if c.aud.is_empty() || c.aud.iter().any(String::is_empty) {
            return Err(TokenError::WrongAudience);
        }
        if let Some(expected) = &self.config.audience
            && !c.aud.iter().any(|a| a == expected)
        {
            return Err(TokenError::WrongAudience);
        }
        if c.exp <= c.iat {
            return Err(TokenError::BadClaims("exp must follow iat"));
        }
        if c.exp - c.iat > self.config.max_lifetime {
            return Err(TokenError::LifetimeTooLong);
        }
        let now = self.clock.now();
        let leeway = self.config.leeway;
        if now >= c.exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if c.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway))
            || c.iat > now.saturating_add(leeway)
        {
            return Err(TokenError::NotYetValid);
        }
        Scopes::parse(&c.scope).map_err(|_| TokenError::BadClaims("scope"))?;
        Ok(())
    }
}
