//! Values sealed rather than stored: authorization codes ([`crate::codes`]) and reference
//! tokens ([`crate::reference`]).
//!
//! Each sealed value is encrypted and authenticated with ChaCha20-Poly1305 under a key of its
//! own: derived (HKDF-SHA256) from a random 16-byte salt it carries and a secret derived from
//! the key-encryption key for its purpose (which every replica holds and the store never does:
//! whoever copies the store can neither forge nor open one). One key per value, so the AEAD's
//! nonce is fixed and never repeats under a key, however many values a secret seals. The
//! associated data binds a value to its purpose and format.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Prk};

/// The random salt each value's key is derived with.
pub(crate) const SALT_LEN: usize = 16;

/// Seals and opens the values of one purpose.
pub(crate) struct Sealer {
    prk: Prk,
    aad: &'static [u8],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// The sealer under `secret` (the key-encryption key's key for this purpose): already the
    /// output of an HKDF, so it is used as the pseudorandom key directly, without a second
    /// extraction. `aad` names the purpose and format.
    pub(crate) fn new(secret: &[u8], aad: &'static [u8]) -> Self {
        Sealer {
            prk: Prk::new_less_safe(HKDF_SHA256, secret),
            aad,
        }
    }

    /// The key of the value salted with `salt`.
    fn key(&self, salt: &[u8]) -> Option<LessSafeKey> {
        let info = [salt];
        let okm = self.prk.expand(&info, &CHACHA20_POLY1305).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }

    /// The salt, then `plain` encrypted, then the tag.
    pub(crate) fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let salt = writ_token::random_bytes::<SALT_LEN>();
        let mut bytes = Vec::with_capacity(SALT_LEN + plain.len() + CHACHA20_POLY1305.tag_len());
        bytes.extend_from_slice(&salt);
        bytes.extend_from_slice(plain);
        let (salt, body) = bytes.split_at_mut(SALT_LEN);
        let tag = self
            .key(salt)?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0; NONCE_LEN]),
                Aad::from(self.aad),
                body,
            )
            .ok()?;
        bytes.extend_from_slice(tag.as_ref());
        Some(bytes)
    }

    /// What [`Self::seal`] sealed, if a sealer under the same secret and purpose sealed it and
    /// not one byte changed since.
    pub(crate) fn open(&self, mut bytes: Vec<u8>) -> Option<Vec<u8>> {
        if bytes.len() < SALT_LEN {
            return None;
        }
        let (salt, body) = bytes.split_at_mut(SALT_LEN);
        let plain_len = self
            .key(salt)?
            .open_in_place(
                Nonce::assume_unique_for_key([0; NONCE_LEN]),
                Aad::from(self.aad),
                body,
            )
            .ok()?
            .len();
        bytes.truncate(SALT_LEN + plain_len);
        bytes.drain(..SALT_LEN);
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_under_its_secret_and_purpose() {
        let sealer = Sealer::new(b"one key", b"purpose/v1");
        let sealed = sealer.seal(b"the value").unwrap();
        assert_eq!(
            sealer.open(sealed.clone()).as_deref(),
            Some(&b"the value"[..])
        );
        // Fresh salts, so fresh keys: the same value seals differently each time.
        assert_ne!(sealer.seal(b"the value").unwrap(), sealed);
        assert_eq!(
            Sealer::new(b"another key", b"purpose/v1").open(sealed.clone()),
            None
        );
        assert_eq!(
            Sealer::new(b"one key", b"purpose/v2").open(sealed.clone()),
            None
        );
        for i in [0, SALT_LEN, sealed.len() - 1] {
            let mut changed = sealed.clone();
            changed[i] ^= 1;
            assert_eq!(sealer.open(changed), None, "byte {i}");
        }
        assert_eq!(sealer.open(sealed[..sealed.len() - 1].to_vec()), None);
        assert_eq!(sealer.open(sealed[..SALT_LEN].to_vec()), None);
        assert_eq!(sealer.open(Vec::new()), None);
    }
}
