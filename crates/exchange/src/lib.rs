//! Writ's token exchange (RFC 8693): the rules of the Security Token Service, with no transport.
//!
//! A service that received a caller's token trades it here for a narrower one for the next hop.
//! [`TokenExchange::exchange`] takes the RFC's parameters and either issues a token, signed with
//! the STS's own keys (its own issuer, its own JWKS), or refuses with an RFC error code.
//!
//! # The rules
//!
//! - **Client.** The caller authenticates (a confidential client of the authorization server;
//!   [`Directory::authenticate`]) and needs at least one exchange policy
//!   (`unauthorized_client`). A missing subject token is `invalid_request`: the caller's own
//!   identity is never used instead.
//! - **Subject and actor tokens** must be Writ JWT access tokens or Biscuits from a trusted issuer
//!   (the authorization server, this STS, or an external JWT issuer configured with its JWKS),
//!   verified by *that* issuer's verifier only, unexpired, not revoked ([`RevocationCheck`], which
//!   fails closed on a stale feed), and of the type their `*_token_type` names (`jwt`: a JWT,
//!   `biscuit`: a Biscuit, `access_token`: either; refresh and ID tokens are never exchanged).
//!   `actor_token` and `actor_token_type` come together or not at all. An actor token must have
//!   been issued to the caller. Refusals of a token are `invalid_request` (RFC 8693 section
//!   2.2.2), with the rule that refused it as [`ExchangeError::cause`].
//! - **Who may present the subject token.** A service exchanges tokens
//!   addressed to it (`aud` names the caller's client id), or tokens issued to it for the STS
//!   (`aud` names [`Config::audience`]); either may go to any audience its policy allows. A client
//!   may also re-exchange a token issued to it for other audiences, but then only to narrow
//!   them. Anyone else's token is refused. So a token for A is exchanged by A alone, within A's
//!   policy, and its holder can never turn it into one for A and B.
//! - **Audience.** Every requested `audience` and `resource` (at least one) must be allowed by one
//!   policy of the caller: the first, by `policy_id`, that allows all of them governs the
//!   exchange (`invalid_target` if none does).
//! - **Scope** is what was asked, or all that remains: never more than the subject token's, nor
//!   the policy's (`invalid_scope`), and never empty.
//! - **Lifetime** is the policy's maximum (or the default), never past the subject token's expiry
//!   (nor the actor token's).
//! - **Delegation or impersonation.** By default the issued token records the actor in `act`:
//!   the actor token's subject if one is given, else the calling client; the subject's own chain
//!   is nested beneath it (history only). If the governing policy allows impersonation and no
//!   actor token is given, the token carries no new `act` (the subject's chain is kept). A
//!   subject token's `may_act` must name the actor (and, if it names a client, the caller). The
//!   chain may not exceed the policy's maximum depth.
//! - **Lineage.** The issued token carries the subject's grant id (`gid`), so revoking the
//!   original grant revokes every token derived from it, through any number of hops and formats.
//!   An external token has no grant id: one is derived from its issuer and token id.
//! - **Formats.** JWT or Biscuit in, JWT or Biscuit out. A Biscuit asked for in exchange of a
//!   Biscuit, by impersonation, for audiences it already names, is attenuated: one block appended
//!   (scope, services, expiry), the original signature kept. Otherwise a new token is minted with
//!   the same facts, narrowed. An attenuated Biscuit is only ever attenuated further: its checks
//!   cannot be carried into a new token faithfully.
//!
//! Every decision is an audit event (`tracing` target `writ::audit`, event `token_exchanged`,
//! `decision` = `issued` or `refused`), without token contents.

mod engine;
mod error;
mod ports;
mod request;
mod rules;

pub use engine::{MAX_JWT_LEN, TokenExchange};
pub use error::{Cause, ExchangeError, Result, TokenRole};
pub use ports::{BoxFuture, Credentials, Directory, ExchangePolicy};
pub use request::{ExchangeRequest, ExchangeResponse, MAX_ID_LEN, MAX_TARGETS};
pub use rules::{Minted, Mode};
pub use writ_token::TrustedIssuer;

/// How the exchange behaves. Defaults are the secure ones.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `iss` of every token the STS issues (its HTTP facade's URL by default).
    pub issuer: String,
    /// The audience naming the STS itself.
    pub audience: String,
    /// Lifetime of exchanged tokens when the policy sets none, in seconds.
    pub default_lifetime: i64,
    /// Upper bound on any exchanged token's lifetime.
    pub max_lifetime: i64,
    /// Longest delegation chain when the policy sets none.
    pub default_max_chain_depth: u32,
    /// Clock skew tolerated when verifying subject and actor tokens, in seconds.
    pub leeway: i64,
}

impl Config {
    pub fn new(issuer: impl Into<String>) -> Self {
        Config {
            issuer: issuer.into(),
            audience: writ_vocabulary::names::STS_AUDIENCE.to_owned(),
            default_lifetime: 300,
            max_lifetime: 3600,
            default_max_chain_depth: 4,
            leeway: 30,
        }
    }
}

/// RFC 8414 metadata of the STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// Writ's extension: the Biscuit root keys (`writ_token::BiscuitKeySet`).
    pub biscuit_keys_uri: String,
    pub grant_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub token_types_supported: Vec<String>,
}

#[cfg(test)]
mod tests;
