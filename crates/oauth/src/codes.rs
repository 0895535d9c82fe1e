//! Authorization codes, sealed rather than stored.
//!
//! A code carries its own record, sealed ([`crate::sealed`]) under a key derived from the
//! key-encryption key for codes alone: whoever copies the store cannot forge a code.
//!
//! Issuing a code changes no state (its audit record is the only write). What must be
//! remembered is remembered at redemption, in the batch that issues the tokens: a mark that it
//! was spent, under `c/` + the keyed hash of its grant id (so a second redemption is a replay,
//! which revokes what the first issued), and the grant in its session's listing (so signing
//! out revokes it). A session ended, or a consent revoked, between the code and its redemption
//! is found then, and the code is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::records::AuthCodeRecord;
use crate::sealed::Sealer;

/// Longest code accepted at the token endpoint, and issued: a request whose code would be
/// longer (its redirect URI, scope, audiences and nonce near their own bounds at once) is
/// refused with `invalid_request`. Typical codes are 500 to 700 characters.
pub const MAX_CODE_LEN: usize = 4096;

/// Binds a sealed code to its purpose and format.
const AAD: &[u8] = b"writ/authorization-code/v1";

/// Seals and opens codes.
#[derive(Debug)]
pub(crate) struct CodeSealer(Sealer);

impl CodeSealer {
    /// The purpose codes' key is derived from the key-encryption key for.
    pub(crate) const PURPOSE: &'static [u8] = b"writ authorization codes v1";

    /// The sealer under `secret` (the key-encryption key's key for [`Self::PURPOSE`]).
    pub(crate) fn new(secret: &[u8]) -> Self {
        CodeSealer(Sealer::new(secret, AAD))
    }

    /// The code for `record`; `None` if it would be longer than [`MAX_CODE_LEN`].
    pub(crate) fn seal(&self, record: &AuthCodeRecord) -> Option<String> {
        let code = URL_SAFE_NO_PAD.encode(self.0.seal(&writ_store::encode(record))?);
        (code.len() <= MAX_CODE_LEN).then_some(code)
    }

    /// The record `code` carries, if a sealer under the same key sealed it unchanged.
    pub(crate) fn open(&self, code: &str) -> Option<AuthCodeRecord> {
        if code.len() > MAX_CODE_LEN {
            return None;
        }
        let plain = self.0.open(URL_SAFE_NO_PAD.decode(code).ok()?)?;
        writ_store::decode(&plain).ok()
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
        // Two codes for the same record differ (fresh salts, so fresh keys).
        assert_ne!(sealer.seal(&record()).unwrap(), code);
        assert_eq!(CodeSealer::new(b"another key").open(&code), None);
    }

    #[test]
    fn a_changed_truncated_or_malformed_code_does_not_open() {
        let sealer = CodeSealer::new(b"one key");
        let code = sealer.seal(&record()).unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(&code).unwrap();
        for i in [0, crate::sealed::SALT_LEN, bytes.len() - 1] {
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
        // Past the bound, even a well-formed one is not decoded.
        let long = URL_SAFE_NO_PAD.encode(vec![0u8; MAX_CODE_LEN]);
        assert!(long.len() > MAX_CODE_LEN && URL_SAFE_NO_PAD.decode(&long).is_ok());
        assert_eq!(sealer.open(&long), None);
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
