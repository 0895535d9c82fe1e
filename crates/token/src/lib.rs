//! Writ's access tokens: RFC 9068 JWTs and Biscuit capability tokens. No I/O, no global clock.
//!
//! A walkthrough: mint a JWT and a Biscuit with the same claims, verify both, and narrow the
//! Biscuit offline.
//!
//! ```
//! use writ_token::*;
//!
//! let clock = ManualClock::new(1_800_000_000);
//! let jwt_key = SigningKey::generate(Algorithm::EdDSA, "k1").unwrap();
//! let root = BiscuitRootKey::generate(1);
//!
//! let claims = AccessClaims {
//!     iss: "https://as.example".into(),
//!     sub: "alice".into(),
//!     aud: vec!["inventory".into()],
//!     iat: clock.now(),
//!     nbf: Some(clock.now()),
//!     exp: clock.now() + 300,
//!     jti: random_id(),
//!     client_id: "orders".into(),
//!     scope: "inventory.read inventory.write".into(),
//!     gid: Some(random_id()),
//!     act: None,
//!     may_act: None,
//!     cnf: None,
//! };
//! let jwt = encode_access_token(&jwt_key, &claims).unwrap();
//! let biscuit = mint_biscuit(&root, &claims).unwrap();
//!
//! let mut keys = KeySet::new();
//! keys.insert_jwt(jwt_key.verification_key());
//! keys.insert_biscuit(root.public());
//! let verifier = TokenVerifier::new(
//!     VerifierConfig::new(vec!["https://as.example".into()], Some("inventory".into())),
//!     keys,
//!     std::sync::Arc::new(clock.clone()),
//! );
//! assert_eq!(verifier.verify(&jwt).unwrap().claims, claims);
//! assert_eq!(verifier.verify(&biscuit).unwrap().claims.scope, "inventory.read inventory.write");
//!
//! // Any holder narrows a Biscuit without a key; the verifier sees the narrower rights.
//! let narrowed = attenuate(&biscuit, &Attenuation {
//!     scopes: Some(vec!["inventory.read".into()]),
//!     ..Attenuation::default()
//! }).unwrap();
//! assert_eq!(verifier.verify(&narrowed).unwrap().claims.scope, "inventory.read");
//!
//! // Time is injected: five minutes and a leeway later, both are expired.
//! clock.advance(300 + 30);
//! assert_eq!(verifier.verify(&jwt).unwrap_err(), TokenError::Expired);
//! assert!(verifier.verify(&biscuit).is_err());
//! ```

mod assertion;
mod biscuit;
mod claims;
mod clock;
mod dpop;
mod error;
mod holder;
mod ids;
mod inspect;
mod issuers;
mod jwt;
mod keys;
mod offload;
mod revocation;
mod scope;
mod verify;

pub use assertion::{
    AssertionClaims, AssertionRules, CLIENT_ASSERTION_TYP, CLIENT_ASSERTION_TYPE,
    MAX_ASSERTION_LEN, MAX_JTI_LEN, MAX_WORKLOAD_AUDIENCES, VerifiedAssertion, VerifiedWorkload,
    WorkloadRules, assertion_issuer, assertion_subject, encode_client_assertion, verify_assertion,
    verify_workload_token,
};
pub use biscuit::{Attenuation, MAX_BISCUIT_LEN, attenuate, mint_biscuit};
pub use claims::{AccessClaims, Actor, Confirmation, MAX_NUMERIC_DATE, certificate_thumbprint};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, UnixTime, system_clock};
pub use dpop::{
    DPOP_ALGORITHMS, DPOP_MAX_AGE, DPOP_TYP, DpopError, GRPC_HTM, MAX_PROOF_LEN, ProofClaimsOut,
    ProofRules, Replay, SeenProofs, VerifiedProof, access_token_hash, grpc_htu, jwk_thumbprint,
    key_thumbprint, sign_proof, verify_proof,
};
pub use error::TokenError;
pub use holder::{
    BiscuitShape, MAX_ELEMENTS_PER_QUERY, MAX_OPS_PER_QUERY, MAX_QUERIES_PER_BLOCK, PolicyShape,
    first_date_from, inspect_biscuit, inspect_policies,
};
pub use ids::{random_bytes, random_id, random_secret};
pub use inspect::{UnverifiedView, decode_unverified};
pub use issuers::{TrustedIssuer, TrustedIssuers};
pub use jwt::{
    ACCESS_TOKEN_TYP, BACKCHANNEL_LOGOUT_EVENT, ID_TOKEN_TYP, IdTokenClaims, LOGOUT_TOKEN_TYP,
    LogoutTokenClaims, encode_access_token, encode_id_token, encode_logout_token, token_hash,
};
pub use keys::{
    Algorithm, BiscuitKeySet, BiscuitPublicKey, BiscuitRootKey, BoxFuture, FixedKeys, IssuerKeys,
    Jwk, JwkSet, KeySet, KeySource, MAX_KID_LEN, PublishedBiscuitKey, SigningKey, VerificationKey,
    jwt_key_set, parse_jwk_set, parse_jwk_set_for, workload_key_set,
};
pub use offload::{MAX_WAITING, datalog_threads, run_blocking, run_off_runtime};
pub use revocation::{
    AsyncRevocationCheck, MAX_REVOCATION_REASON_LEN, MAX_REVOCATION_VALUE_LEN, RevocationCheck,
    RevocationEntry, RevocationError, RevocationKind, TokenFacts, Unvouched,
};
pub use scope::{MAX_SCOPE_LEN, ScopeError, Scopes};
pub use verify::{
    BiscuitLimits, BiscuitRequest, TokenFormat, TokenVerifier, VerifiedJws, VerifiedToken,
    VerifierConfig, authorize_biscuit,
};

/// Re-exported so services can write Biscuit policies without a direct dependency.
pub use biscuit_auth;
