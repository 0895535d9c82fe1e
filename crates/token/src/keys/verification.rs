//! Trusted public keys that verify JWTs.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::signing::check_kid;
use super::{Algorithm, Jwk};
use crate::error::TokenError;

/// A trusted public key that verifies JWTs, with its key id and its one algorithm.
#[derive(Clone)]
pub struct VerificationKey {
    kid: String,
    alg: Algorithm,
    x: Vec<u8>,
    y: Vec<u8>,
    point: PublicPoint,
}

/// The public key, decoded and validated once, so that verifying a token does not decompress it
/// again.
#[derive(Clone)]
enum PublicPoint {
    Ed25519(ed25519_dalek::VerifyingKey),
    /// The uncompressed SEC1 point, validated by p256 and verified with ring (about six times
    /// faster than p256's pure-Rust ECDSA here).
    P256(Vec<u8>),
    /// Modulus and exponent, big-endian, verified with ring (which refuses keys under 2048
    /// bits or over 8192).
    Rsa(ring::signature::RsaPublicKeyComponents<Vec<u8>>),
}

/// Smallest and largest RSA modulus accepted, in bytes (2048 and 8192 bits).
const RSA_MIN_BYTES: usize = 256;
const RSA_MAX_BYTES: usize = 1024;

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// From raw public key coordinates: `x` alone for Ed25519, `x` and `y` for P-256, the
    /// modulus and exponent for RSA. The point is checked (on the curve, right size) before it
    /// is trusted.
    pub fn from_components(
        kid: String,
        alg: Algorithm,
        x: &[u8],
        y: &[u8],
    ) -> Result<Self, TokenError> {
        check_kid(&kid)?;
        let point = match alg {
            Algorithm::EdDSA => {
                let bytes: &[u8; 32] = x
                    .try_into()
                    .map_err(|_| TokenError::InvalidKey("an Ed25519 public key is 32 bytes"))?;
                if !y.is_empty() {
                    return Err(TokenError::InvalidKey("an Ed25519 key has no y"));
                }
                let point = ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .map_err(|_| TokenError::InvalidKey("not an Ed25519 point"))?;
                // A small-order key verifies forged signatures for any message (the signature
                // check is ed25519-dalek's `verify`, as in jsonwebtoken, not `verify_strict`), so
                // it is never trusted.
                if point.is_weak() {
                    return Err(TokenError::InvalidKey("a small-order Ed25519 key"));
                }
                PublicPoint::Ed25519(point)
            }
            Algorithm::RS256 | Algorithm::PS256 => return Self::from_rsa(kid, alg, x, y),
            Algorithm::ES256 => {
                if x.len() != 32 || y.len() != 32 {
                    return Err(TokenError::InvalidKey("P-256 coordinates are 32 bytes"));
                }
                let mut sec1 = Vec::with_capacity(65);
                sec1.push(0x04);
                sec1.extend_from_slice(x);
                sec1.extend_from_slice(y);
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .map_err(|_| TokenError::InvalidKey("not a P-256 point"))?;
                PublicPoint::P256(sec1)
            }
        };
        Ok(VerificationKey {
            kid,
            alg,
            x: x.to_vec(),
            y: y.to_vec(),
            point,
        })
    }

    /// An RSA public key (RS256 or PS256) from its modulus `n` and exponent `e`, big-endian:
    /// 2048 to 8192 bits, an odd exponent from 3 to 2^32.
    fn from_rsa(kid: String, alg: Algorithm, n: &[u8], e: &[u8]) -> Result<Self, TokenError> {
        let strip = |b: &[u8]| {
            let zeros = b.iter().take_while(|&&v| v == 0).count();
            b[zeros..].to_vec()
        };
        let (n, e) = (strip(n), strip(e));
        // In bits, as ring counts them: a 2047-bit modulus would register and never verify.
        let too_small = n.len() < RSA_MIN_BYTES || (n.len() == RSA_MIN_BYTES && n[0] < 0x80);
        if too_small || n.len() > RSA_MAX_BYTES || n[n.len() - 1] & 1 == 0 {
            return Err(TokenError::InvalidKey(
                "an RSA modulus is odd, of 2048 to 8192 bits",
            ));
        }
        let e_value = e.iter().try_fold(0u64, |acc, &b| {
            (acc <= u64::from(u32::MAX)).then(|| acc << 8 | u64::from(b))
        });
        if !e_value.is_some_and(|v| v >= 3 && v & 1 == 1 && v <= 1 << 32) {
            return Err(TokenError::InvalidKey(
                "an RSA exponent is odd, from 3 to 2^32",
            ));
        }
        Ok(VerificationKey {
            kid,
            alg,
            x: n.clone(),
            y: e.clone(),
            point: PublicPoint::Rsa(ring::signature::RsaPublicKeyComponents { n, e }),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Checks a JWS signature (base64url, as it appears in the token) over `message`.
    ///
    /// Ed25519 is ed25519-dalek's `verify`, as in `jsonwebtoken`'s rust_crypto backend, on a key
    /// decoded once in [`Self::from_components`] (a point decompression is about a tenth of a
    /// verify). ES256 is ring's ECDSA P-256 / SHA-256 with the fixed-size R||S signature. Both
    /// run against the Wycheproof vectors in the conformance tests.
    pub fn verify_signature(&self, message: &[u8], signature_b64: &str) -> bool {
        use ed25519_dalek::Verifier as _; // signature::Verifier, also p256's
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature_b64) else {
            return false;
        };
        match &self.point {
            PublicPoint::Ed25519(key) => ed25519_dalek::Signature::from_slice(&signature)
                .is_ok_and(|s| key.verify(message, &s).is_ok()),
            // ECDSA over SHA-256 with the fixed-size R||S encoding JWS uses (RFC 7518 3.4).
            PublicPoint::P256(sec1) => ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                sec1,
            )
            .verify(message, &signature)
            .is_ok(),
            PublicPoint::Rsa(key) => {
                let params = match self.alg {
                    Algorithm::PS256 => &ring::signature::RSA_PSS_2048_8192_SHA256,
                    _ => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                };
                key.verify(params, message, &signature).is_ok()
            }
        }
    }

    /// The RFC 7517 form, as published in the JWKS.
    pub fn to_jwk(&self) -> Jwk {
        match self.alg {
            Algorithm::EdDSA => Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: URL_SAFE_NO_PAD.encode(&self.x),
                y: None,
                kid: self.kid.clone(),
                alg: self.alg.name().into(),
                key_use: "sig".into(),
                ..Jwk::default()
            },
            Algorithm::ES256 => Jwk {
                kty: "EC".into(),
                crv: "P-256".into(),
                x: URL_SAFE_NO_PAD.encode(&self.x),
                y: Some(URL_SAFE_NO_PAD.encode(&self.y)),
                kid: self.kid.clone(),
                alg: self.alg.name().into(),
                key_use: "sig".into(),
                ..Jwk::default()
            },
            Algorithm::RS256 | Algorithm::PS256 => Jwk {
                kty: "RSA".into(),
                kid: self.kid.clone(),
                alg: self.alg.name().into(),
                key_use: "sig".into(),
                n: Some(URL_SAFE_NO_PAD.encode(&self.x)),
                e: Some(URL_SAFE_NO_PAD.encode(&self.y)),
                ..Jwk::default()
            },
        }
    }

    /// From a JWK Writ published. `kty`, `crv` and `alg` must agree with each other and with
    /// the allow-list of Writ's own tokens (EdDSA, ES256: never RSA, which only verifies
    /// workload tokens, read with `parse_jwk_set_for`); `use`, when present, must be "sig".
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, TokenError> {
        let alg = Algorithm::from_name(&jwk.alg)
            .filter(|a| Algorithm::ALL.contains(a))
            .ok_or(TokenError::InvalidKey("algorithm not allowed"))?;
        if !(jwk.key_use.is_empty() || jwk.key_use == "sig") {
            return Err(TokenError::InvalidKey("key is not for signatures"));
        }
        let decode = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| TokenError::InvalidKey("coordinates are not base64url"))
        };
        match (alg, jwk.kty.as_str(), jwk.crv.as_str()) {
            (Algorithm::EdDSA, "OKP", "Ed25519") if jwk.y.is_none() => {
                Self::from_components(jwk.kid.clone(), alg, &decode(&jwk.x)?, &[])
            }
            (Algorithm::ES256, "EC", "P-256") => {
                let y = jwk
                    .y
                    .as_deref()
                    .ok_or(TokenError::InvalidKey("P-256 key needs y"))?;
                Self::from_components(jwk.kid.clone(), alg, &decode(&jwk.x)?, &decode(y)?)
            }
            _ => Err(TokenError::InvalidKey("kty, crv and alg disagree")),
        }
    }
}
