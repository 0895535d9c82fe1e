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

/// A published Biscuit root key, as the HTTP facades serve it (`/.well-known/biscuit-keys.json`):
/// the same fields as `writ.common.v1.BiscuitRootKey` over gRPC.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishedBiscuitKey {
    pub root_key_id: u32,
    /// Always `"ed25519"`.
    pub algorithm: String,
    /// The public key, hex encoded (the Biscuit convention).
    pub public_key: String,
    /// NumericDate after which no live token can be signed by this key; 0 if it is active.
    pub expires_at: i64,
}

/// The Biscuit key set document: `{"keys": [PublishedBiscuitKey...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BiscuitKeySet {
    pub keys: Vec<PublishedBiscuitKey>,
}

impl BiscuitKeySet {
    /// The document for `keys` (each with its end of life, 0 if active).
    pub fn new(keys: &[(BiscuitPublicKey, i64)]) -> Self {
        BiscuitKeySet {
            keys: keys
                .iter()
                .map(|(k, expires_at)| PublishedBiscuitKey {
                    root_key_id: k.id(),
                    algorithm: "ed25519".to_owned(),
                    public_key: k.to_hex(),
                    expires_at: *expires_at,
                })
                .collect(),
        }
    }

    /// The keys it publishes. One unusable key (another algorithm, not a key) distrusts the
    /// whole document.
    pub fn public_keys(&self) -> Result<Vec<BiscuitPublicKey>, TokenError> {
        self.keys
            .iter()
            .map(|k| {
                if k.algorithm != "ed25519" {
                    return Err(TokenError::InvalidKey("a Biscuit root key is ed25519"));
                }
                BiscuitPublicKey::from_hex(k.root_key_id, &k.public_key)
            })
            .collect()
    }
}
