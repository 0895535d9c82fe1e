//! Hashing and comparing secrets.
//!
//! Client secrets, refresh tokens and the admin credential are 256-bit random strings, so a fast
//! keyed hash (HMAC-SHA256) is enough: no dictionary attack applies, and the key keeps a stolen
//! hash from being checked offline without it. Passwords are chosen by people: argon2id.
//! Every comparison is constant-time.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// HMAC-SHA256 under the server's secret-hash key.
#[derive(Clone)]
pub struct SecretHasher {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher")
    }
}

#[cfg(test)]
thread_local! {
    /// Keyed hashes computed on this thread (tests: the same work on every path).
    pub(crate) static HASHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl SecretHasher {
    pub fn new(key: &[u8]) -> Self {
        #[allow(clippy::expect_used)]
        let mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
        SecretHasher { mac }
    }

    pub fn hash(&self, secret: &[u8]) -> [u8; 32] {
        #[cfg(test)]
        HASHES.with(|h| h.set(h.get() + 1));
        let mut mac = self.mac.clone();
        mac.update(secret);
        mac.finalize().into_bytes().into()
    }

    /// Compares `secret` with a stored hash in constant time. A missing hash (unknown client)
    /// is compared against a dummy, so both paths do the same work.
    pub fn verify(&self, secret: &[u8], stored: Option<&[u8]>) -> bool {
        Self::matches(&self.hash(secret), stored)
    }

    /// Compares an already computed hash with a stored one, in constant time (a missing or
    /// malformed stored hash against a dummy).
    pub fn matches(computed: &[u8; 32], stored: Option<&[u8]>) -> bool {
        let dummy = [0u8; 32];
        let (stored, known) = match stored {
            Some(s) if s.len() == 32 => (s, true),
            _ => (&dummy[..], false),
        };
        bool::from(computed.ct_eq(stored)) & known
    }
}

/// argon2id with the crate's defaults (the OWASP recommendation: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, crate::Error> {
    let salt = SaltString::encode_b64(&writ_token::random_bytes::<16>())
        .map_err(|_| crate::Error::Internal("salt"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| crate::Error::Internal("password hashing"))
}

/// Checks a password against a PHC string. An unparsable hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_hash_verifies_only_the_same_secret_under_the_same_key() {
        let h = SecretHasher::new(b"key one");
        let stored = h.hash(b"secret");
        assert!(h.verify(b"secret", Some(&stored)));
        assert!(!h.verify(b"secret ", Some(&stored)));
        assert!(!h.verify(b"secret\0", Some(&stored)));
        assert!(!h.verify(b"", Some(&stored)));
        assert!(!SecretHasher::new(b"key two").verify(b"secret", Some(&stored)));
    }

    #[test]
    fn unknown_and_malformed_hashes_never_match() {
        let h = SecretHasher::new(b"k");
        assert!(!h.verify(b"", None));
        assert!(!h.verify(b"x", Some(&[0u8; 32])));
        assert!(!h.verify(b"x", Some(b"short")));
    }

    #[test]
    fn passwords_round_trip_through_argon2id() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horse ", &phc));
        assert!(!verify_password("x", "not a hash"));
    }
}
