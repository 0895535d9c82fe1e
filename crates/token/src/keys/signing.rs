//! Signing keys and the two JWT algorithms Writ accepts.

use std::fmt;

use zeroize::Zeroizing;

use super::VerificationKey;
use crate::error::TokenError;
use crate::ids::random_bytes;

/// Longest key id accepted, in bytes.
pub const MAX_KID_LEN: usize = 128;

/// The JWT signature algorithms Writ knows. It signs, and accepts on its own tokens and on
/// client assertions, only [`Algorithm::ALL`]; the RSA ones verify workload identity tokens
/// (Kubernetes signs its service-account tokens RS256) and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// ECDSA P-256 with SHA-256, signatures in the fixed-size P1363 form (RFC 7518).
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 bits or more. Verification only.
    RS256,
    /// RSASSA-PSS with SHA-256, keys of 2048 bits or more. Verification only.
    PS256,
}

impl Algorithm {
    /// What Writ signs with and accepts on its own tokens and on client assertions.
    pub const ALL: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::ES256];

    /// What a trusted workload issuer's tokens may be signed with (RFC 7523 section 2.1).
    pub const WORKLOAD: [Algorithm; 4] = [
        Algorithm::EdDSA,
        Algorithm::ES256,
        Algorithm::RS256,
        Algorithm::PS256,
    ];

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
            Algorithm::RS256 => "RS256",
            Algorithm::PS256 => "PS256",
        }
    }

    /// Parses a JOSE name, exactly (no case folding: "eddsa" is not "EdDSA").
    pub fn from_name(name: &str) -> Option<Self> {
        Self::WORKLOAD.into_iter().find(|a| a.name() == name)
    }

    pub(crate) fn from_jose(alg: jsonwebtoken::Algorithm) -> Option<Self> {
        match alg {
            jsonwebtoken::Algorithm::EdDSA => Some(Algorithm::EdDSA),
            jsonwebtoken::Algorithm::ES256 => Some(Algorithm::ES256),
            jsonwebtoken::Algorithm::RS256 => Some(Algorithm::RS256),
            jsonwebtoken::Algorithm::PS256 => Some(Algorithm::PS256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

enum Secret {
    Ed25519(ed25519_dalek::SigningKey),
    Es256(p256::ecdsa::SigningKey),
}

/// A private key that signs JWTs, with its key id. The expanded key is kept, so signing does not
/// re-derive it on every token.
pub struct SigningKey {
    kid: String,
    secret: Secret,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate(alg: Algorithm, kid: impl Into<String>) -> Result<Self, TokenError> {
        let kid = kid.into();
        check_kid(&kid)?;
        // A random 32-byte string is a valid P-256 scalar except with probability ~2^-32.
        for _ in 0..16 {
            let bytes = Zeroizing::new(random_bytes::<32>());
            if let Ok(key) = Self::from_secret(alg, kid.clone(), &bytes[..]) {
                return Ok(key);
            }
        }
        Err(TokenError::InvalidKey("could not generate a key"))
    }

    /// Rebuilds a key from [`SigningKey::secret_bytes`].
    pub fn from_secret(alg: Algorithm, kid: String, secret: &[u8]) -> Result<Self, TokenError> {
        check_kid(&kid)?;
        let secret = match alg {
            Algorithm::EdDSA => {
                let bytes: &[u8; 32] = secret
                    .try_into()
                    .map_err(|_| TokenError::InvalidKey("an Ed25519 secret is 32 bytes"))?;
                Secret::Ed25519(ed25519_dalek::SigningKey::from_bytes(bytes))
            }
            Algorithm::ES256 => Secret::Es256(
                p256::ecdsa::SigningKey::from_slice(secret)
                    .map_err(|_| TokenError::InvalidKey("not a P-256 private scalar"))?,
            ),
            Algorithm::RS256 | Algorithm::PS256 => {
                return Err(TokenError::InvalidKey(
                    "Writ signs with EdDSA or ES256 only",
                ));
            }
        };
        Ok(SigningKey { kid, secret })
    }

    /// A key from a PKCS#8 PEM document (`-----BEGIN PRIVATE KEY-----`), as
    /// `openssl genpkey -algorithm ed25519` or `-algorithm EC -pkeyopt ec_paramgen_curve:P-256`
    /// writes it: an Ed25519 key signs EdDSA, a P-256 key ES256.
    pub fn from_pkcs8_pem(kid: impl Into<String>, pem: &str) -> Result<Self, TokenError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let kid = kid.into();
        check_kid(&kid)?;
        let secret = if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            Secret::Ed25519(k)
        } else if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            Secret::Es256(k)
        } else {
            return Err(TokenError::InvalidKey(
                "not a PKCS#8 PEM Ed25519 or P-256 private key",
            ));
        };
        Ok(SigningKey { kid, secret })
    }

    /// The key as a PKCS#8 PEM document, for a client to keep (see [`Self::from_pkcs8_pem`]).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, TokenError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let line_ending = p256::pkcs8::LineEnding::LF;
        match &self.secret {
            // PKCS#8 v1 (no public key inside): what OpenSSL and Python's `cryptography` read;
            // they refuse the v2 form ed25519-dalek writes by default.
            Secret::Ed25519(k) => ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: k.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_pem(line_ending),
            Secret::Es256(k) => k.to_pkcs8_pem(line_ending),
        }
        .map_err(|_| TokenError::Build("PKCS#8 encoding"))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Algorithm {
        match self.secret {
            Secret::Ed25519(_) => Algorithm::EdDSA,
            Secret::Es256(_) => Algorithm::ES256,
        }
    }

    /// The private key bytes, for storage.
    pub fn secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        match &self.secret {
            Secret::Ed25519(k) => Zeroizing::new(k.to_bytes().to_vec()),
            Secret::Es256(k) => Zeroizing::new(k.to_bytes().to_vec()),
        }
    }

    /// The public half.
    pub fn verification_key(&self) -> VerificationKey {
        let (x, y) = match &self.secret {
            Secret::Ed25519(k) => (k.verifying_key().to_bytes().to_vec(), Vec::new()),
            Secret::Es256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                (
                    point.x().map(|x| x.to_vec()).unwrap_or_default(),
                    point.y().map(|y| y.to_vec()).unwrap_or_default(),
                )
            }
        };
        #[allow(clippy::expect_used)]
        VerificationKey::from_components(self.kid.clone(), self.alg(), &x, &y)
            .expect("the public half of a valid private key is valid")
    }

    /// Signs `message`: 64 bytes, R||S for ES256 (the JWS form, not DER).
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.secret {
            Secret::Ed25519(k) => {
                use ed25519_dalek::Signer;
                k.sign(message).to_bytes().to_vec()
            }
            Secret::Es256(k) => {
                use p256::ecdsa::signature::Signer;
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_bytes().to_vec()
            }
        }
    }
}

pub(crate) fn check_kid(kid: &str) -> Result<(), TokenError> {
    // Key ids end up in headers, logs and URLs: keep them short and plain.
    if kid.is_empty()
        || kid.len() > MAX_KID_LEN
        || !kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(TokenError::InvalidKey(
            "key ids are 1-128 characters of [A-Za-z0-9-_.:]",
        ));
    }
    Ok(())
}
