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

/// The clients that may call the STS, and their exchange policies.
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// Authenticates a confidential client by id and secret. Any failure (unknown client, wrong
    /// secret, public or disabled client, no credentials) is [`crate::ExchangeError::InvalidClient`],
    /// reached along the same path (constant-time comparison).
    fn authenticate<'a>(&'a self, client_id: &'a str, secret: &'a str)
    -> BoxFuture<'a, Result<()>>;

    /// The exchange policies of `client_id` (any order; may be empty).
    fn policies<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<Vec<ExchangePolicy>>>;
}
