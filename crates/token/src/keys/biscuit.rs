//! Biscuit root keys, named by a number (`root_key_id`).

use std::fmt;

use zeroize::Zeroizing;

use crate::error::TokenError;
use crate::ids::random_bytes;

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
