//! Signing keys, the public keys that verify them, and their JWK form.
//!
//! Only two JWT algorithms exist in Writ: EdDSA (Ed25519, the default) and ES256 (P-256). A
//! verification key carries its algorithm; a token's `alg` header must match it exactly, so the
//! algorithm is chosen by the trusted key, never by the token.

mod biscuit;
mod jwk;
mod set;
mod signing;
mod verification;

pub use biscuit::{BiscuitKeySet, BiscuitPublicKey, BiscuitRootKey, PublishedBiscuitKey};
pub use jwk::{Jwk, JwkSet, jwt_key_set, parse_jwk_set, parse_jwk_set_for, workload_key_set};
pub use set::{BoxFuture, FixedKeys, IssuerKeys, KeySet, KeySource};
pub use signing::{Algorithm, MAX_KID_LEN, SigningKey};
pub use verification::VerificationKey;

#[cfg(test)]
mod tests;
