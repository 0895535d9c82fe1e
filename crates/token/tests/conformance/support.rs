//! What the conformance tests share: the vendored test vectors, fixed keys, a verifier on a
//! manual clock, and JWTs made by hand.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use writ_token::{
    AccessClaims, Algorithm, BiscuitRootKey, KeySet, ManualClock, SigningKey, TokenVerifier,
    VerifierConfig, encode_access_token, mint_biscuit,
};

pub const ISSUER: &str = "https://as.example";
pub const AUDIENCE: &str = "inventory";
pub const NOW: i64 = 1_800_000_000;
/// `VerifierConfig::new`'s leeway; `fixture_uses_the_default_leeway` keeps the two in step.
pub const LEEWAY: i64 = 30;
pub const ED_KID: &str = "k-ed";
pub const ES_KID: &str = "k-es";
pub const ROOT_ID: u32 = 1;
/// Fixed secrets: failures reproduce.
const ED_SECRET: [u8; 32] = [7; 32];
const ES_SECRET: [u8; 32] = [0x11; 32];
const ROOT_SECRET: [u8; 32] = [0x42; 32];

/// A vendored test vector file (`crates/token/tests/vectors/`, with its upstream license). Fails,
/// naming the path it looked at, when the file is not there: a missing vector must never pass
/// silently.
pub fn vector_path(relative: &str) -> PathBuf {
    // The directory cargo runs the test from, read at run time: a binary built in another
    // checkout (a shared target directory) still reads this checkout's files.
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let path = package.join("tests/vectors").join(relative);
    assert!(
        path.exists(),
        "a vendored test vector is missing: {} does not exist",
        path.display()
    );
    path
}

pub fn read_vector(relative: &str) -> Vec<u8> {
    let path = vector_path(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn read_vector_json(relative: &str) -> Value {
    serde_json::from_slice(&read_vector(relative))
        .unwrap_or_else(|e| panic!("{relative} is not JSON: {e}"))
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

/// The Ed25519 key behind `ED_KID`, for signing hand-made tokens.
pub fn ed_dalek() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&ED_SECRET)
}

/// The P-256 key behind `ES_KID`, for signing hand-made tokens.
pub fn es_p256() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&ES_SECRET).unwrap()
}

pub fn sign_ed(message: &[u8]) -> Vec<u8> {
    use ed25519_dalek::Signer;
    ed_dalek().sign(message).to_bytes().to_vec()
}

pub fn sign_es(message: &[u8]) -> Vec<u8> {
    use p256::ecdsa::signature::Signer;
    let sig: p256::ecdsa::Signature = es_p256().sign(message);
    sig.to_bytes().to_vec()
}

/// `b64(header).b64(payload).b64(sign(signing input))`, from raw bytes.
pub fn compact_raw(header: &[u8], payload: &[u8], sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(signature))
}

/// A compact JWS of two JSON values.
pub fn compact(header: &Value, payload: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    compact_raw(&json_bytes(header), &json_bytes(payload), sign)
}

pub fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// The header Writ itself writes for `ED_KID`.
pub fn ed_header() -> Value {
    json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ED_KID})
}

/// An access token's claims, valid at `NOW` for five minutes.
pub fn claims() -> AccessClaims {
    AccessClaims {
        iss: ISSUER.into(),
        sub: "alice".into(),
        aud: vec![AUDIENCE.into()],
        iat: NOW,
        nbf: Some(NOW),
        exp: NOW + 300,
        jti: "token-1".into(),
        client_id: "orders".into(),
        scope: "inventory.read inventory.write".into(),
        gid: Some("grant-1".into()),
        act: None,
        may_act: None,
        cnf: None,
    }
}

pub fn claims_json() -> Value {
    serde_json::to_value(claims()).unwrap()
}

/// A hand-made EdDSA token: Writ's header with `header_patch` applied (a `null` removes the
/// field), the standard claims with `claims_patch` applied, signed by the trusted Ed25519 key.
pub fn ed_token(header_patch: Value, claims_patch: Value) -> String {
    compact(
        &patched(ed_header(), header_patch),
        &patched(claims_json(), claims_patch),
        sign_ed,
    )
}

/// `base` with every field of `patch` set, or removed where `patch` says `null`.
pub fn patched(mut base: Value, patch: Value) -> Value {
    let (Some(object), Value::Object(patch)) = (base.as_object_mut(), patch) else {
        panic!("patches apply to objects");
    };
    for (k, v) in patch {
        if v.is_null() {
            object.remove(&k);
        } else {
            object.insert(k, v);
        }
    }
    base
}

/// A verifier for `AUDIENCE` on a manual clock at `NOW`, trusting one key of each kind.
#[derive(Debug)]
pub struct Fixture {
    pub clock: ManualClock,
    pub ed: SigningKey,
    pub es: SigningKey,
    pub root: BiscuitRootKey,
    pub verifier: TokenVerifier,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    pub fn with_config(adjust: impl FnOnce(&mut VerifierConfig)) -> Self {
        let clock = ManualClock::new(NOW);
        let ed = SigningKey::from_secret(Algorithm::EdDSA, ED_KID.into(), &ED_SECRET).unwrap();
        let es = SigningKey::from_secret(Algorithm::ES256, ES_KID.into(), &ES_SECRET).unwrap();
        let root = BiscuitRootKey::from_secret(ROOT_ID, &ROOT_SECRET).unwrap();
        let mut keys = KeySet::new();
        keys.insert_jwt(ed.verification_key());
        keys.insert_jwt(es.verification_key());
        keys.insert_biscuit(root.public());
        let mut config = VerifierConfig::new(vec![ISSUER.into()], Some(AUDIENCE.into()));
        // Biscuit run time is wall-clock: on a loaded CI machine a debug build can be
        // pre-empted for longer than the default 5 ms and fail a valid token with RunLimit.
        // Tests about the time limit set it themselves.
        config.biscuit_limits.max_time = Duration::from_secs(1);
        adjust(&mut config);
        let verifier = TokenVerifier::new(config, keys, Arc::new(clock.clone()));
        Fixture {
            clock,
            ed,
            es,
            root,
            verifier,
        }
    }

    pub fn ed_jwt(&self) -> String {
        encode_access_token(&self.ed, &claims()).unwrap()
    }

    pub fn es_jwt(&self) -> String {
        encode_access_token(&self.es, &claims()).unwrap()
    }

    pub fn biscuit(&self) -> String {
        mint_biscuit(&self.root, &claims()).unwrap()
    }

    /// The trusted Biscuit root key, as `biscuit_auth` names it.
    pub fn root_public(&self) -> writ_token::biscuit_auth::PublicKey {
        writ_token::biscuit_auth::PublicKey::from_bytes_hex(
            &self.root.public().to_hex(),
            writ_token::biscuit_auth::Algorithm::Ed25519,
        )
        .unwrap()
    }
}

/// Fails unless the hand-made baseline token verifies: the rejections a test asserts next are
/// then about the one thing it changed, not about a broken helper.
pub fn assert_baseline_verifies(f: &Fixture) {
    let verified = f.verifier.verify(&ed_token(json!({}), json!({})));
    assert_eq!(verified.map(|v| v.claims), Ok(claims()));
}
