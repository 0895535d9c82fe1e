//! JSON Web Keys (RFC 7517): the form Writ publishes its keys in, and reads other issuers' in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{Algorithm, KeySet, VerificationKey};
use crate::error::TokenError;

/// A public JSON Web Key (RFC 7517) as Writ publishes it (OKP and EC), or reads a workload
/// issuer's (RSA too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub crv: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use", default)]
    pub key_use: String,
    /// RSA modulus and exponent (RFC 7518 section 6.3.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

/// A JWK Set document (`{"keys": [...]}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// An external issuer's JWK Set as trusted JWT keys: [`parse_jwk_set`], refusing a set with no
/// usable key (an issuer whose keys cannot verify anything is a configuration error).
pub fn jwt_key_set(json: &str) -> Result<KeySet, TokenError> {
    key_set(
        parse_jwk_set(json)?,
        "no EdDSA or ES256 signature key with a kid",
    )
}

/// A workload identity issuer's JWK Set (a Kubernetes cluster's, a SPIFFE trust bundle's) as
/// trusted keys: [`parse_jwk_set_for`] [`Algorithm::WORKLOAD`], RSA included.
pub fn workload_key_set(json: &str) -> Result<KeySet, TokenError> {
    key_set(
        parse_jwk_set_for(json, &Algorithm::WORKLOAD)?,
        "no EdDSA, ES256, RS256 or PS256 signature key with a kid",
    )
}

fn key_set(keys: Vec<VerificationKey>, none: &'static str) -> Result<KeySet, TokenError> {
    if keys.is_empty() {
        return Err(TokenError::InvalidKey(none));
    }
    let mut set = KeySet::new();
    for k in keys {
        set.insert_jwt(k);
    }
    Ok(set)
}

/// [`parse_jwk_set_for`] the algorithms Writ accepts on its own tokens and on client assertions
/// ([`Algorithm::ALL`]).
pub fn parse_jwk_set(json: &str) -> Result<Vec<VerificationKey>, TokenError> {
    parse_jwk_set_for(json, &Algorithm::ALL)
}

/// Parses a JWK Set from another issuer with the `jsonwebtoken` crate's JWK parser, keeping only
/// keys Writ can trust: one of `algorithms`, a key id, `use` absent, "sig" or "jwt-svid" (a
/// SPIFFE trust bundle's), and `key_ops` absent or including "verify". Keys of other kinds are
/// skipped, not errors, as other verifiers do. An RSA key without `alg` is RS256.
pub fn parse_jwk_set_for(
    json: &str,
    algorithms: &[Algorithm],
) -> Result<Vec<VerificationKey>, TokenError> {
    use jsonwebtoken::jwk::{
        AlgorithmParameters, EllipticCurve, KeyAlgorithm, KeyOperations, PublicKeyUse,
    };
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(json).map_err(|_| TokenError::InvalidKey("not a JWK Set document"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let usable = match &jwk.common.public_key_use {
            None | Some(PublicKeyUse::Signature) => true,
            Some(PublicKeyUse::Other(u)) => u == "jwt-svid",
            Some(_) => false,
        };
        if !usable {
            continue;
        }
        // `key_ops` (RFC 7517 section 4.3) restricts a key as `use` does: a key published for,
        // say, encryption only must not verify tokens (Wycheproof JWS tcId 356).
        if jwk
            .common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
        {
            continue;
        }
        let key = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::OctetKeyPair(p), None | Some(KeyAlgorithm::EdDSA))
                if p.curve == EllipticCurve::Ed25519 =>
            {
                URL_SAFE_NO_PAD.decode(&p.x).ok().and_then(|x| {
                    VerificationKey::from_components(kid, Algorithm::EdDSA, &x, &[]).ok()
                })
            }
            (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
                if p.curve == EllipticCurve::P256 =>
            {
                match (URL_SAFE_NO_PAD.decode(&p.x), URL_SAFE_NO_PAD.decode(&p.y)) {
                    (Ok(x), Ok(y)) => {
                        VerificationKey::from_components(kid, Algorithm::ES256, &x, &y).ok()
                    }
                    _ => None,
                }
            }
            (
                AlgorithmParameters::RSA(p),
                alg @ (None | Some(KeyAlgorithm::RS256 | KeyAlgorithm::PS256)),
            ) => {
                let alg = match alg {
                    Some(KeyAlgorithm::PS256) => Algorithm::PS256,
                    _ => Algorithm::RS256,
                };
                match (URL_SAFE_NO_PAD.decode(&p.n), URL_SAFE_NO_PAD.decode(&p.e)) {
                    (Ok(n), Ok(e)) => VerificationKey::from_components(kid, alg, &n, &e).ok(),
                    _ => None,
                }
            }
            _ => None,
        };
        keys.extend(key.filter(|k| algorithms.contains(&k.alg())));
    }
    Ok(keys)
}
