//! Authorization codes, sealed rather than stored.
//!
//! A code carries its own record, encrypted and authenticated (ChaCha20-Poly1305 under a key
//! derived with HKDF from the server's secret-hash key, which every replica shares), so issuing
//! one writes nothing: the authorization endpoint of a signed-in browser only reads. What must
//! be remembered is remembered at redemption, in the batch that issues the tokens: a marker
//! under `c/` + the keyed hash of the code (so a second redemption is a replay, which revokes
//! what the first issued), and the grant in its session's listing (so signing out revokes it).
//! A session that ended between the code and its redemption is found gone then, and the code
//! is refused.
//!
//! Nonces are random (96 bits): far below the 2^32 messages per key at which random nonces
//! stop being safe, at any rate a server issues codes for the lifetime of a key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::records::AuthCodeRecord;

/// Longest code accepted at the token endpoint, and issued: a request whose code would be
/// longer (its scope, audiences and nonce near their own bounds at once) is refused.
pub const MAX_CODE_LEN: usize = 4096;

/// Binds a sealed code to its purpose and format.
const AAD: &[u8] = b"writ/authorization-code/v1";

/// Seals and opens codes.
pub(crate) struct CodeSealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for CodeSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeSealer")
    }
}

impl CodeSealer {
    /// The sealer keyed from `secret` (the server's secret-hash key).
    pub(crate) fn new(secret: &[u8]) -> Self {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"writ authorization codes");
        let prk = salt.extract(secret);
        // A 32-byte output is within HKDF-SHA256's bound (255 blocks): `expand` cannot fail.
        #[allow(clippy::expect_used)]
        let okm = prk
            .expand(&[b"chacha20-poly1305 v1"], &CHACHA20_POLY1305)
            .expect("HKDF-SHA256 expands to 32 bytes");
        let key = UnboundKey::from(okm);
        CodeSealer {
            key: LessSafeKey::new(key),
        }
    }

    /// The code for `record`; `None` if it would be longer than [`MAX_CODE_LEN`].
    pub(crate) fn seal(&self, record: &AuthCodeRecord) -> Option<String> {
        let nonce = writ_token::random_bytes::<NONCE_LEN>();
        let mut sealed = writ_store::encode(record);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut sealed,
            )
            .ok()?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        let code = URL_SAFE_NO_PAD.encode(bytes);
        (code.len() <= MAX_CODE_LEN).then_some(code)
    }

    /// The record `code` carries, if this server sealed it unchanged.
    pub(crate) fn open(&self, code: &str) -> Option<AuthCodeRecord> {
        if code.len() > MAX_CODE_LEN {
            return None;
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(code).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let sealed = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
        let mut sealed = sealed;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut sealed)
            .ok()?;
        writ_store::decode(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuthCodeRecord {
        AuthCodeRecord {
            client_id: "web".into(),
            redirect_uri: "https://rp.example/cb".into(),
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            scope: "openid orders.read".into(),
            nonce: "n-0S6_WzA2Mj".into(),
            subject: "0b5a".into(),
            sid: "s1".into(),
            gid: "g1".into(),
            expires_at: 60,
            ..Default::default()
        }
    }

    #[test]
    fn a_sealed_code_opens_to_its_record_and_only_under_its_key() {
        let sealer = CodeSealer::new(b"one key");
        let code = sealer.seal(&record()).unwrap();
        assert_eq!(sealer.open(&code), Some(record()));
        // Two codes for the same record differ (fresh nonces).
        assert_ne!(sealer.seal(&record()).unwrap(), code);
        assert_eq!(CodeSealer::new(b"another key").open(&code), None);
    }

    #[test]
    fn a_changed_truncated_or_malformed_code_does_not_open() {
        let sealer = CodeSealer::new(b"one key");
        let code = sealer.seal(&record()).unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(&code).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            assert_eq!(
                sealer.open(&URL_SAFE_NO_PAD.encode(&bytes)),
                None,
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        assert_eq!(sealer.open(&code[..code.len() - 4]), None);
        assert_eq!(sealer.open(&code[..8]), None);
        assert_eq!(sealer.open(""), None);
        assert_eq!(sealer.open("not base64!"), None);
        assert_eq!(sealer.open(&"A".repeat(MAX_CODE_LEN + 1)), None);
    }

    #[test]
    fn a_record_too_large_for_a_code_is_not_sealed() {
        let sealer = CodeSealer::new(b"one key");
        let big = AuthCodeRecord {
            scope: "s".repeat(MAX_CODE_LEN),
            ..record()
        };
        assert_eq!(sealer.seal(&big), None);
    }
}
