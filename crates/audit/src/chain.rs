//! The chain's cryptography (ring): SHA-256 over each record's stored bytes, Ed25519 over each
//! checkpoint.

use ring::digest::{SHA256, digest};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::record::CheckpointRecord;

const CHECKPOINT_DOMAIN: &[u8] = b"writ-audit-checkpoint-v1\0";

/// A record's hash: SHA-256 of its stored bytes (which hold its predecessor's hash).
pub fn hash(stored: &[u8]) -> Vec<u8> {
    digest(&SHA256, stored).as_ref().to_vec()
}

/// What a checkpoint signs: the domain, the position, the hash and the time.
pub fn checkpoint_message(seq: u64, hash: &[u8], time_ms: i64) -> Vec<u8> {
    [
        CHECKPOINT_DOMAIN,
        &seq.to_be_bytes(),
        hash,
        &time_ms.to_be_bytes(),
    ]
    .concat()
}

pub fn sign(key: &Ed25519KeyPair, seq: u64, hash: &[u8], time_ms: i64) -> CheckpointRecord {
    let signature = key.sign(&checkpoint_message(seq, hash, time_ms));
    CheckpointRecord {
        seq,
        hash: hash.to_vec(),
        time_ms,
        public_key: key.public_key().as_ref().to_vec(),
        signature: signature.as_ref().to_vec(),
    }
}

/// Whether the checkpoint's signature holds under its own public key (whether that key is
/// trusted is the caller's question).
pub fn signature_holds(c: &CheckpointRecord) -> bool {
    UnparsedPublicKey::new(&ED25519, &c.public_key)
        .verify(&checkpoint_message(c.seq, &c.hash, c.time_ms), &c.signature)
        .is_ok()
}

/// A public key's short name: the first 8 bytes of its SHA-256, in hex.
pub fn fingerprint(public_key: &[u8]) -> String {
    hex::encode(&digest(&SHA256, public_key).as_ref()[..8])
}
