//! The words Writ speaks on every transport, each defined once.
//!
//! - [`ErrorCode`]: the OAuth error codes of the RFCs (6749, 6750, 7009, 8693, 8707), as
//!   `error` in HTTP responses and `google.rpc.ErrorInfo.reason` in gRPC statuses.
//! - [`Refusal`] and [`Refuse`]: a refusal described once (its class, its reason, a description
//!   without secrets, machine-readable metadata). Every domain error implements [`Refuse`];
//!   `writ_proto::refusal` turns a refusal into a `tonic::Status` and into an RFC 6749 JSON
//!   response, in one place.
//! - [`grant_type`], [`token_type`]: RFC identifiers.
//! - [`names`]: Writ's well-known audiences and scopes.
//!
//! No dependencies, no I/O: domain crates use it without linking a transport.

mod refusal;

pub use refusal::{ErrorCode, Kind, OAUTH_ERROR_DOMAIN, Refusal, Refuse};

/// Grant type identifiers (RFC 6749 section 4, RFC 8693 section 2.1).
pub mod grant_type {
    pub const AUTHORIZATION_CODE: &str = "authorization_code";
    pub const CLIENT_CREDENTIALS: &str = "client_credentials";
    pub const REFRESH_TOKEN: &str = "refresh_token";
    pub const PASSWORD: &str = "password";
    pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
    /// RFC 8628 section 3.4.
    pub const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
    /// RFC 7523 section 2.1: a JWT from a trusted issuer as the authorization grant.
    pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
}

/// Token type identifiers: RFC 8693 section 3, and Writ's own for Biscuits.
pub mod token_type {
    pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
    pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    pub const REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
    pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
    pub const BISCUIT: &str = "urn:writ:params:oauth:token-type:biscuit";

    /// The `token_type` of an access token response (RFC 6750): how the token is presented.
    pub const BEARER: &str = "Bearer";
    /// RFC 8693 section 2.2.1: the `token_type` of an issued token that is not an access token.
    pub const NOT_APPLICABLE: &str = "N_A";
    /// RFC 7662 `token_type` of an introspected refresh token.
    pub const REFRESH: &str = "refresh_token";
}

/// Writ's well-known audiences and scopes: what its own services expect in the tokens they are
/// presented.
pub mod names {
    /// The audience of tokens presented to the revocation service.
    pub const REVOCATION_AUDIENCE: &str = "writ-revocation";
    /// The scope a producer needs to append to the revocation log.
    pub const REVOCATION_PUBLISH_SCOPE: &str = "writ.revocation.publish";
    /// The scope a subscriber needs to watch the revocation feed.
    pub const REVOCATION_WATCH_SCOPE: &str = "writ.revocation.watch";
    /// The audience of tokens addressed to the STS itself (a client asking for a token it means
    /// to exchange).
    pub const STS_AUDIENCE: &str = "writ-sts";
    /// The client id of tokens the authorization server mints for itself (its revocation
    /// publisher).
    pub const SELF_CLIENT_ID: &str = "writ-authz";

    /// The audience of tokens presented to the admin API instead of the master admin
    /// credential: each carries only the `writ.admin.*` scopes its holder needs.
    pub const ADMIN_AUDIENCE: &str = "writ-admin";
    /// `AdminService.AuthenticateClient` (a standalone STS checking its callers).
    pub const ADMIN_AUTHENTICATE_CLIENT_SCOPE: &str = "writ.admin.authenticate_client";
    /// Reading clients, signing keys and exchange policies (never a secret).
    pub const ADMIN_READ_SCOPE: &str = "writ.admin.read";
    /// Creating, changing and deleting clients, users, keys and exchange policies.
    pub const ADMIN_WRITE_SCOPE: &str = "writ.admin.write";
    /// `AdminService.Revoke`.
    pub const ADMIN_REVOKE_SCOPE: &str = "writ.admin.revoke";

    /// Writ's own identities: never a registered client's id, never the subject or client of a
    /// revocation (so no producer, and no administrator by mistake, can cut Writ off from itself).
    pub const RESERVED_IDENTITIES: [&str; 4] = [
        SELF_CLIENT_ID,
        STS_AUDIENCE,
        REVOCATION_AUDIENCE,
        ADMIN_AUDIENCE,
    ];

    /// Whether `id` is one of [`RESERVED_IDENTITIES`] (compared exactly).
    pub fn is_reserved(id: &str) -> bool {
        RESERVED_IDENTITIES.contains(&id)
    }
}

/// The token form a bearer string has: a JWT has two dots, a base64url Biscuit none. Only a
/// hint for routing; the verifier checks the form it is given.
pub fn looks_like_jwt(token: &str) -> bool {
    token.contains('.')
}
