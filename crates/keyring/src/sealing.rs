//! Signing keys at rest: sealed (AES-256-GCM, ring) under a key-encryption key that is not in
//! the store. Whoever copies the store (a backup, a stolen disk image of the database) gets
//! ciphertext; the key-encryption key comes from a file or the environment.
//!
//! A sealed secret is `1 || nonce (12) || ciphertext || tag (16)`, with the record's storage key
//! as associated data, so a sealed secret moved to another record does not open.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::error::{KeyringError, Result};

const VERSION: u8 = 1;
const KEY_LEN: usize = 32;
const DOMAIN: &[u8] = b"writ-signing-key\0";
/// HKDF's salt for the keys derived from the key-encryption key.
const DERIVATIONS: &[u8] = b"writ key-encryption-key derivations v1";

/// The key signing keys are sealed under, and other keys that must not be in the store are
/// derived from ([`KeyEncryptionKey::derive`]).
pub struct KeyEncryptionKey {
    key: LessSafeKey,
    derivations: ring::hkdf::Prk,
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(..)")
    }
}

impl KeyEncryptionKey {
    /// From its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != KEY_LEN {
            return Err(KeyringError::InvalidRequest(
                "a key-encryption key is 32 bytes",
            ));
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| KeyringError::Internal("key-encryption key"))?;
        let derivations =
            ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, DERIVATIONS).extract(bytes);
        Ok(KeyEncryptionKey {
            key: LessSafeKey::new(key),
            derivations,
        })
    }

    /// A 32-byte key for `purpose`, derived from this one (HKDF-SHA256): the same on every
    /// replica that holds this key, never in the store, and unrelated to the key for any other
    /// purpose.
    pub fn derive(&self, purpose: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
        struct Len;
        impl ring::hkdf::KeyType for Len {
            fn len(&self) -> usize {
                KEY_LEN
            }
        }
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        // 32 bytes are far within HKDF-SHA256's bound (255 blocks): neither step can fail.
        #[allow(clippy::expect_used)]
        self.derivations
            .expand(&[purpose], Len)
            .and_then(|okm| okm.fill(out.as_mut()))
            .expect("HKDF-SHA256 expands to 32 bytes");
        out
    }

    /// From its base64url form (as in `WRIT_KEY_ENCRYPTION_KEY` or a key file), surrounding
    /// whitespace ignored.
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(text.trim().trim_end_matches('='))
                .map_err(|_| {
                    KeyringError::InvalidRequest("a key-encryption key is 32 bytes of base64url")
                })?,
        );
        Self::from_bytes(&bytes)
    }

    /// A new random key, and its base64url form (to write where it will be kept).
    pub fn generate() -> Result<(Self, Zeroizing<String>)> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut())
            .map_err(|_| KeyringError::Internal("the OS random source failed"))?;
        let text = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()));
        Ok((Self::from_bytes(bytes.as_ref())?, text))
    }

    /// Reads the key from `path`; if there is no such file and `create` is set, generates one
    /// and writes it there first (readable by its owner only).
    pub fn load_or_create(path: &Path, create: bool) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&Zeroizing::new(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let (key, text) = Self::generate()?;
                write_private(path, text.as_bytes())
                    .map_err(|_| KeyringError::Internal("cannot write the key-encryption key"))?;
                tracing::info!(target: "writ::audit", event = "key_encryption_key_created", path = %path.display());
                Ok(key)
            }
            Err(_) => Err(KeyringError::InvalidRequest(
                "cannot read the key-encryption key file",
            )),
        }
    }

    pub fn seal(&self, record_key: &[u8], secret: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|_| KeyringError::Internal("the OS random source failed"))?;
        let mut sealed = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(record_key)),
                &mut sealed,
            )
            .map_err(|_| KeyringError::Internal("sealing a signing key"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, record_key: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        const WRONG: KeyringError =
            KeyringError::Sealed("the key-encryption key does not open the stored signing keys");
        let (&version, rest) = sealed.split_first().ok_or(WRONG)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(WRONG);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| WRONG)?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(record_key)), &mut buf)
            .map_err(|_| WRONG)?
            .len();
        buf.truncate(plain);
        Ok(buf)
    }
}

fn aad(record_key: &[u8]) -> Vec<u8> {
    [DOMAIN, record_key].concat()
}

/// Writes `bytes` to a new file at `path`, mode 0600 on Unix; never over an existing file.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_depend_on_the_key_and_the_purpose_only() {
        let bytes = [7u8; KEY_LEN];
        let kek = KeyEncryptionKey::from_bytes(&bytes).unwrap();
        let again = KeyEncryptionKey::from_bytes(&bytes).unwrap();
        assert_eq!(
            *kek.derive(b"codes"),
            *again.derive(b"codes"),
            "every replica agrees"
        );
        assert_ne!(*kek.derive(b"codes"), *kek.derive(b"other"));
        let other = KeyEncryptionKey::from_bytes(&[8u8; KEY_LEN]).unwrap();
        assert_ne!(*kek.derive(b"codes"), *other.derive(b"codes"));
        assert_ne!(*kek.derive(b"codes"), bytes, "not the key itself");
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_for_its_record() {
        let (kek, text) = KeyEncryptionKey::generate().unwrap();
        let sealed = kek.seal(b"jwt/k1", b"secret bytes").unwrap();
        assert!(!sealed.windows(12).any(|w| w == b"secret bytes"));
        assert_eq!(
            kek.open(b"jwt/k1", &sealed).unwrap().as_slice(),
            b"secret bytes"
        );
        assert!(kek.open(b"jwt/k2", &sealed).is_err(), "another record");
        let again = KeyEncryptionKey::from_base64(&text).unwrap();
        assert_eq!(
            again.open(b"jwt/k1", &sealed).unwrap().as_slice(),
            b"secret bytes"
        );
        let (other, _) = KeyEncryptionKey::generate().unwrap();
        assert!(other.open(b"jwt/k1", &sealed).is_err(), "another key");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(kek.open(b"jwt/k1", &tampered).is_err());
        assert!(KeyEncryptionKey::from_base64("short").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_created_key_file_is_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        assert!(KeyEncryptionKey::load_or_create(&path, false).is_err());
        let created = KeyEncryptionKey::load_or_create(&path, true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = created.seal(b"k", b"s").unwrap();
        let read = KeyEncryptionKey::load_or_create(&path, true).unwrap();
        assert_eq!(read.open(b"k", &sealed).unwrap().as_slice(), b"s");
    }
}
