//! Signing keys, the public keys that verify them, and their JWK form.
//!
//! Only two JWT algorithms exist in Writ: EdDSA (Ed25519, the default) and ES256 (P-256). A
//! verification key carries its algorithm; a token's `alg` header must match it exactly, so the
//! algorithm is chosen by the trusted key, never by the token.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::TokenError;
use crate::ids::random_bytes;

/// Longest key id accepted, in bytes.
pub const MAX_KID_LEN: usize = 128;

/// The JWT signature algorithms Writ accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// ECDSA P-256 with SHA-256, signatures in the fixed-size P1363 form (RFC 7518).
    ES256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::ES256];

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
        }
    }

    /// Parses a JOSE name, exactly (no case folding: "eddsa" is not "EdDSA").
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Algorithm::EdDSA),
            "ES256" => Some(Algorithm::ES256),
            _ => None,
        }
    }

    pub(crate) fn from_jose(alg: jsonwebtoken::Algorithm) -> Option<Self> {
        match alg {
            jsonwebtoken::Algorithm::EdDSA => Some(Algorithm::EdDSA),
            jsonwebtoken::Algorithm::ES256 => Some(Algorithm::ES256),
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
        };
        Ok(SigningKey { kid, secret })
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

fn check_kid(kid: &str) -> Result<(), TokenError> {
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
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// From raw public key coordinates: `x` alone for Ed25519, `x` and `y` for P-256. The point
    /// is checked (on the curve, right size) before it is trusted.
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
            },
            Algorithm::ES256 => Jwk {
                kty: "EC".into(),
                crv: "P-256".into(),
                x: URL_SAFE_NO_PAD.encode(&self.x),
                y: Some(URL_SAFE_NO_PAD.encode(&self.y)),
                kid: self.kid.clone(),
                alg: self.alg.name().into(),
                key_use: "sig".into(),
            },
        }
    }

    /// From a JWK Writ published. `kty`, `crv` and `alg` must agree with each other and with
    /// the allow-list; `use`, when present, must be "sig".
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, TokenError> {
        let alg = Algorithm::from_name(&jwk.alg)
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

/// A public JSON Web Key (RFC 7517) as Writ publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use", default)]
    pub key_use: String,
}

/// A JWK Set document (`{"keys": [...]}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// An external issuer's JWK Set as trusted JWT keys: [`parse_jwk_set`], refusing a set with no
/// usable key (an issuer whose keys cannot verify anything is a configuration error).
pub fn jwt_key_set(json: &str) -> Result<KeySet, TokenError> {
    let keys = parse_jwk_set(json)?;
    if keys.is_empty() {
        return Err(TokenError::InvalidKey(
            "no EdDSA or ES256 signature key with a kid",
        ));
    }
    let mut set = KeySet::new();
    for k in keys {
        set.insert_jwt(k);
    }
    Ok(set)
}

/// Parses a JWK Set from another issuer with the `jsonwebtoken` crate's JWK parser, keeping only
/// keys Writ can trust: an allowed algorithm, a key id, `use` absent or "sig", and `key_ops`
/// absent or including "verify". Keys of other kinds are skipped, not errors, as other verifiers
/// do.
pub fn parse_jwk_set(json: &str) -> Result<Vec<VerificationKey>, TokenError> {
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
        if !matches!(
            jwk.common.public_key_use,
            None | Some(PublicKeyUse::Signature)
        ) {
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
            _ => None,
        };
        keys.extend(key);
    }
    Ok(keys)
}

/// A Biscuit root key pair. Biscuits name their root key by a number (`root_key_id`).
pub struct BiscuitRootKey {
    id: u32,
    keypair: biscuit_auth::KeyPair,
}

impl fmt::Debug for BiscuitRootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BiscuitRootKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl BiscuitRootKey {
    pub fn generate(id: u32) -> Self {
        let secret = Zeroizing::new(random_bytes::<32>());
        #[allow(clippy::expect_used)]
        Self::from_secret(id, &secret[..]).expect("any 32 bytes are an Ed25519 secret")
    }

    pub fn from_secret(id: u32, secret: &[u8]) -> Result<Self, TokenError> {
        let private =
            biscuit_auth::PrivateKey::from_bytes(secret, biscuit_auth::Algorithm::Ed25519)
                .map_err(|_| TokenError::InvalidKey("an Ed25519 secret is 32 bytes"))?;
        Ok(BiscuitRootKey {
            id,
            keypair: biscuit_auth::KeyPair::from(&private),
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        self.keypair.private().to_bytes()
    }

    pub fn public(&self) -> BiscuitPublicKey {
        BiscuitPublicKey {
            id: self.id,
            key: self.keypair.public(),
        }
    }

    pub(crate) fn keypair(&self) -> &biscuit_auth::KeyPair {
        &self.keypair
    }
}

/// A trusted Biscuit root public key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BiscuitPublicKey {
    id: u32,
    key: biscuit_auth::PublicKey,
}

impl BiscuitPublicKey {
    /// From the hex form Biscuit tools use. Only Ed25519 root keys are accepted.
    pub fn from_hex(id: u32, hex_key: &str) -> Result<Self, TokenError> {
        let key =
            biscuit_auth::PublicKey::from_bytes_hex(hex_key, biscuit_auth::Algorithm::Ed25519)
                .map_err(|_| TokenError::InvalidKey("not an Ed25519 public key in hex"))?;
        Ok(BiscuitPublicKey { id, key })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn to_hex(&self) -> String {
        self.key.to_bytes_hex()
    }

    pub(crate) fn key(&self) -> biscuit_auth::PublicKey {
        self.key
    }
}

/// The keys a verifier trusts: JWT keys by `kid`, Biscuit root keys by id. Nothing else is ever
/// consulted, in particular no key named by a token.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    jwt: HashMap<String, VerificationKey>,
    biscuit: HashMap<u32, BiscuitPublicKey>,
}

impl KeySet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert_jwt(&mut self, key: VerificationKey) {
        self.jwt.insert(key.kid.clone(), key);
    }

    pub fn insert_biscuit(&mut self, key: BiscuitPublicKey) {
        self.biscuit.insert(key.id, key);
    }

    /// Adds every key of `other`.
    pub fn extend(&mut self, other: &KeySet) {
        for k in other.jwt.values() {
            self.insert_jwt(k.clone());
        }
        for k in other.biscuit.values() {
            self.insert_biscuit(*k);
        }
    }

    pub fn jwt_key(&self, kid: &str) -> Option<&VerificationKey> {
        self.jwt.get(kid)
    }

    pub fn biscuit_key(&self, id: u32) -> Option<&BiscuitPublicKey> {
        self.biscuit.get(&id)
    }

    pub fn jwt_keys(&self) -> impl Iterator<Item = &VerificationKey> {
        self.jwt.values()
    }

    pub fn biscuit_keys(&self) -> impl Iterator<Item = &BiscuitPublicKey> {
        self.biscuit.values()
    }

    pub fn is_empty(&self) -> bool {
        self.jwt.is_empty() && self.biscuit.is_empty()
    }
}

/// A boxed future, as the object-safe [`KeySource`] returns.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The keys of one trusted issuer, wherever they come from (in-process, fetched, a file). The
/// one abstraction every verifier uses (the guard, the revocation service, the STS); fetching
/// lives with the implementations (`writ-trust`, the STS), not here.
pub trait KeySource: Send + Sync + std::fmt::Debug {
    /// The keys now. The same `Arc` until they change, so callers can tell cheaply.
    fn keys(&self) -> Arc<KeySet>;
    /// A token named a key not in [`KeySource::keys`]: fetch again if allowed. Never blocks.
    fn request_refresh(&self) {}
    /// A token named a key not in `seen` (what the caller verified against): fetch again and
    /// return the keys after. One fetch at a time, and at most one per rate-limit window: a
    /// caller arriving inside the window waits for it rather than being refused, so a key
    /// rotation costs the first request a fetch, not a failure. Keys already newer than `seen`
    /// are returned at once. By default: [`KeySource::request_refresh`], then the keys now.
    fn refresh_now<'a>(&'a self, seen: &'a Arc<KeySet>) -> BoxFuture<'a, Arc<KeySet>> {
        let _ = seen;
        self.request_refresh();
        Box::pin(async move { self.keys() })
    }
}

/// A shared key source is one too (`Arc<RemoteKeys>`, `Arc<dyn KeySource>`).
impl<T: KeySource + ?Sized> KeySource for Arc<T> {
    fn keys(&self) -> Arc<KeySet> {
        (**self).keys()
    }
    fn request_refresh(&self) {
        (**self).request_refresh()
    }
    fn refresh_now<'a>(&'a self, seen: &'a Arc<KeySet>) -> BoxFuture<'a, Arc<KeySet>> {
        (**self).refresh_now(seen)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signing_keys_round_trip_through_their_secret_bytes() {
        for alg in Algorithm::ALL {
            let key = SigningKey::generate(alg, "k1").unwrap();
            let again = SigningKey::from_secret(alg, "k1".into(), &key.secret_bytes()).unwrap();
            assert_eq!(
                key.verification_key().to_jwk(),
                again.verification_key().to_jwk()
            );
        }
    }

    #[test]
    fn jwk_round_trips_for_both_algorithms() {
        for alg in Algorithm::ALL {
            let public = SigningKey::generate(alg, "k1").unwrap().verification_key();
            let jwk = public.to_jwk();
            let back = VerificationKey::from_jwk(&jwk).unwrap();
            assert_eq!(back.to_jwk(), jwk);
        }
    }

    #[test]
    fn jwk_with_disagreeing_kty_and_alg_is_refused() {
        let mut jwk = SigningKey::generate(Algorithm::EdDSA, "k1")
            .unwrap()
            .verification_key()
            .to_jwk();
        jwk.alg = "ES256".into();
        assert!(VerificationKey::from_jwk(&jwk).is_err());
        jwk.alg = "HS256".into();
        assert!(VerificationKey::from_jwk(&jwk).is_err());
    }

    #[test]
    fn short_ed25519_keys_are_refused_without_panicking() {
        assert!(
            VerificationKey::from_components("k".into(), Algorithm::EdDSA, &[1; 31], &[]).is_err()
        );
        assert!(
            VerificationKey::from_components("k".into(), Algorithm::ES256, &[1; 32], &[1; 32])
                .is_err()
        );
    }

    #[test]
    fn hostile_key_ids_are_refused() {
        for kid in ["", "../../etc/passwd", "a\"b", &"k".repeat(200), "a b"] {
            assert!(
                SigningKey::generate(Algorithm::EdDSA, kid).is_err(),
                "{kid}"
            );
        }
    }

    #[test]
    fn parse_jwk_set_keeps_only_allowed_signature_keys() {
        let ed = SigningKey::generate(Algorithm::EdDSA, "ed")
            .unwrap()
            .verification_key()
            .to_jwk();
        let ec = SigningKey::generate(Algorithm::ES256, "ec")
            .unwrap()
            .verification_key()
            .to_jwk();
        let json = serde_json::json!({"keys": [
            ed, ec,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": ed.x, "use": "enc", "kid": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": ed.x}
        ]});
        let keys = parse_jwk_set(&json.to_string()).unwrap();
        let mut kids: Vec<_> = keys.iter().map(|k| k.kid().to_owned()).collect();
        kids.sort();
        assert_eq!(kids, ["ec", "ed"]);
    }
}
