//! How a key is stored: a versioned protobuf record (see `writ_store::Record`).

use writ_store::{Record, Tree};

pub const PURPOSE_JWT: i32 = 1;
pub const PURPOSE_BISCUIT: i32 = 2;
pub const KEY_ACTIVE: i32 = 1;
pub const KEY_RETIRED: i32 = 2;

#[derive(Clone, PartialEq, prost::Message)]
pub struct SigningKeyRecord {
    /// The JWT kid, or the Biscuit root key id in decimal.
    #[prost(string, tag = "1")]
    pub kid: String,
    #[prost(int32, tag = "2")]
    pub purpose: i32,
    #[prost(string, tag = "3")]
    pub alg: String,
    /// The private key in clear: only in records written before keys were sealed, which the
    /// keyring seals (and clears) when it loads them.
    #[prost(bytes = "vec", tag = "4")]
    pub secret: Vec<u8>,
    #[prost(int32, tag = "5")]
    pub status: i32,
    #[prost(int64, tag = "6")]
    pub created_at: i64,
    #[prost(int64, tag = "7")]
    pub retired_at: i64,
    /// When a retired key can no longer verify a live token.
    #[prost(int64, tag = "8")]
    pub expires_at: i64,
    /// The private key, sealed under the key-encryption key (see `sealing`).
    #[prost(bytes = "vec", tag = "9")]
    pub sealed: Vec<u8>,
}

impl Record for SigningKeyRecord {
    const TREE: Tree = Tree::SigningKeys;
}
