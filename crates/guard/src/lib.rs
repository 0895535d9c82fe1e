//! The Writ guard, installed by every service Writ protects.
//!
//! **Server side.** [`Guard`] verifies the caller's token locally: no network call per request.
//! It trusts the authorization server and the STS (each token only under the keys its own
//! issuer publishes, fetched at start and refreshed in the background; a key not yet known
//! triggers one rate-limited fetch that the request waits for), checks `typ`, `iss`, this
//! service's `aud`, `exp`/`nbf` and the algorithm allow-list, then the method's rule
//! ([`MethodPolicy`]): required scopes for a JWT; for a Biscuit, an authorizer fed with the
//! service, the method, the time and the required scopes, plus the service's Datalog, under run
//! limits. Every call is checked against the revocation feed (token id, grant id, subject and
//! client cut-offs, every Biscuit block's revocation id, key id); a feed staler than the bound
//! fails closed with UNAVAILABLE. Verified JWTs are cached (see [`cache`]).
//!
//! The token travels as `authorization: Bearer <token>`, a JWT or a Biscuit (base64url); the
//! guard tells them apart. A JWT bound to a DPoP key travels as `authorization: DPoP <token>`
//! with a proof in `dpop` metadata (`docs/dpop-grpc.md`; the layer checks it, the interceptor
//! refuses bound tokens); one bound to a TLS client certificate (RFC 8705) as a bearer token,
//! over a connection that presented that certificate. Missing, malformed, expired, untrusted or revoked tokens get
//! UNAUTHENTICATED; a valid token without the rights PERMISSION_DENIED; the reason is in
//! `google.rpc.ErrorInfo` (domain [`ERROR_DOMAIN`]), never the token's contents. Handlers read
//! the caller with [`Principal::of`].
//!
//! [`Guard::builder`] puts it together in a few lines: the authorization server and the STS it
//! trusts, the revocation feed it follows, the policy it enforces; it returns the guard and the
//! [`GuardUpkeep`] that keeps it current.
//!
//! **Client side.** Calling other services is `writ-client`'s business (re-exported here for a
//! service that does both): `TokenSource` keeps a client-credentials token fresh for outgoing
//! calls; `Exchanger` trades the caller's token at the STS for one naming the next service.

mod builder;
pub mod cache;
mod error;
mod policy;
mod principal;
mod server;

pub use builder::{BuildError, GuardBuilder, GuardUpkeep, KEY_MIN_REFRESH, KEY_REFRESH_EVERY};
pub use cache::Verified;
pub use error::{ERROR_DOMAIN, GuardError};
pub use policy::{MethodPolicy, Rule};
pub use principal::Principal;
pub use server::{
    DPOP_PROOFS_REMEMBERED, GUARD_DPOP_MAX_AGE, Guard, GuardConfig, GuardInterceptor, GuardLayer,
    GuardService, Presented, Proof, Revocations, client_certificates,
};
pub use writ_client::{self, BearerToken, ClientCredentials, Exchanger, TokenSource};
pub use writ_token::TrustedIssuer;
