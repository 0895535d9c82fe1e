//! What the exchange needs from outside, as traits: who the clients and their policies are
//! ([`Directory`]); which tokens are revoked (`writ_token::RevocationCheck`) and the keys of the
//! issuers it trusts (`writ_token::KeySource`) are the platform-wide traits. The STS wires them
//! to the authorization server (in-process or over gRPC), the revocation feed and published key
//! sets; tests wire them to fakes.

use std::future::Future;
use std::pin::Pin;

use crate::error::Result;

/// A boxed future, as the object-safe [`Directory`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which client may exchange which tokens for which audiences (the admin API's
/// `ExchangePolicy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangePolicy {
    pub policy_id: String,
    /// The client allowed to exchange under this policy.
    pub client_id: String,
    /// Audiences (and resource indicators) the exchanged tokens may name.
    pub audience: Vec<String>,
    /// Space-delimited scopes the exchanged tokens may carry at most; empty: no limit beyond the
    /// subject token's.
    pub scope: String,
    /// Upper bound on the exchanged tokens' lifetime, in seconds; 0: the server default.
    pub max_lifetime: i64,
    /// Exchanges without an actor token issue impersonation tokens (no new `act`) rather than
    /// record the calling client as the actor.
    pub allow_impersonation: bool,
    /// Longest `act` chain an exchanged token may carry; 0: the server default.
    pub max_chain_depth: u32,
}

/// A caller's credentials as its request presents them: a secret (RFC 6749 section 2.3.1) or
/// a client assertion (`private_key_jwt`, RFC 7523 section 2.2). Its `Debug` shows neither.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub client_assertion_type: &'a str,
    pub client_assertion: &'a str,
    /// What an assertion's `aud` may be here: the STS's issuer identifier and token endpoint.
    pub audiences: &'a [String],
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("assertion", &!self.client_assertion.is_empty())
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

/// The clients that may call the STS, and their exchange policies.
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// Authenticates a confidential client by its secret or its assertion. Any failure (unknown
    /// client, wrong secret, a replayed or foreign assertion, public or disabled client, no
    /// credentials) is [`crate::ExchangeError::InvalidClient`], reached along the same path
    /// (constant-time comparison).
    fn authenticate<'a>(&'a self, credentials: Credentials<'a>) -> BoxFuture<'a, Result<()>>;

    /// The exchange policies of `client_id` (any order; may be empty).
    fn policies<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<Vec<ExchangePolicy>>>;
}
