//! What the audit tree holds, and under which keys.
//!
//! ```text
//! h                          the head: the last record's sequence and hash
//! k                          the checkpoint signing key (sealed) and its public half
//! r/ seq(8, big-endian)      a chained record (AuditRecord, the versioned encoding)
//! c/ seq(8)                  a signed checkpoint of the record at seq
//! p/ time(8) random(8)       an intent: a record not chained yet (written with a state change)
//! i/ kind(1) len(2) value seq(8)  an index entry (grant id, client, subject), empty value
//! ```

use std::collections::BTreeMap;

use writ_store::{AsyncStore, Entries, Record, StoreError, Tree};

/// One audited decision, as stored. The stored bytes (the version byte, then this message) are
/// what the chain hashes; a record's `prev` is its predecessor's hash.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuditRecord {
    /// Position in the log, from 1; 0 in an intent.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// When the decision was made: Unix time in milliseconds.
    #[prost(int64, tag = "2")]
    pub time_ms: i64,
    /// What happened (`token_issued`, `client_updated`, ...): Writ's own closed set.
    #[prost(string, tag = "3")]
    pub kind: String,
    /// `success`, `refused` or `failed`.
    #[prost(string, tag = "4")]
    pub outcome: String,
    /// Who asked: a client id, `admin` (the admin credential), `admin:<client>`, `system`.
    #[prost(string, tag = "5")]
    pub actor: String,
    #[prost(string, tag = "6")]
    pub client_id: String,
    #[prost(string, tag = "7")]
    pub subject: String,
    /// The grant id a lineage of tokens shares.
    #[prost(string, tag = "8")]
    pub gid: String,
    #[prost(string, repeated, tag = "9")]
    pub audience: Vec<String>,
    /// Why (a refusal's RFC error code, a revocation's reason).
    #[prost(string, tag = "10")]
    pub reason: String,
    /// Everything else, by name (sorted, so the encoding is one).
    #[prost(btree_map = "string, string", tag = "11")]
    pub details: BTreeMap<String, String>,
    /// The previous record's hash (32 zero bytes before the first).
    #[prost(bytes = "vec", tag = "12")]
    pub prev: Vec<u8>,
    /// Which service decided (`authz`, `sts`, `revocation`).
    #[prost(string, tag = "13")]
    pub service: String,
}

impl Record for AuditRecord {
    const TREE: Tree = Tree::Audit;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HeadRecord {
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub hash: Vec<u8>,
}

impl Record for HeadRecord {
    const TREE: Tree = Tree::Audit;
}

/// A signature over a record's position and hash: whoever can rewrite the store cannot
/// rewrite what a checkpoint covers without the signing key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckpointRecord {
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub hash: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub time_ms: i64,
    /// Ed25519 public key (32 bytes).
    #[prost(bytes = "vec", tag = "4")]
    pub public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub signature: Vec<u8>,
}

impl Record for CheckpointRecord {
    const TREE: Tree = Tree::Audit;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyRecord {
    /// The PKCS#8 document, sealed under the key-encryption key.
    #[prost(bytes = "vec", tag = "1")]
    pub sealed: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub created_ms: i64,
}

impl Record for KeyRecord {
    const TREE: Tree = Tree::Audit;
}

pub const HEAD_KEY: &[u8] = b"h";
pub const KEY_KEY: &[u8] = b"k";
pub const RECORD_PREFIX: &[u8] = b"r/";
pub const CHECKPOINT_PREFIX: &[u8] = b"c/";
pub const INTENT_PREFIX: &[u8] = b"p/";
pub const INDEX_PREFIX: &[u8] = b"i/";
pub const GENESIS: [u8; 32] = [0; 32];

/// The indexed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexed {
    Gid,
    Client,
    Subject,
}

impl Indexed {
    fn tag(self) -> u8 {
        match self {
            Indexed::Gid => b'g',
            Indexed::Client => b'c',
            Indexed::Subject => b's',
        }
    }

    pub fn of(self, r: &AuditRecord) -> &str {
        match self {
            Indexed::Gid => &r.gid,
            Indexed::Client => &r.client_id,
            Indexed::Subject => &r.subject,
        }
    }

    pub const ALL: [Indexed; 3] = [Indexed::Gid, Indexed::Client, Indexed::Subject];
}

pub fn record_key(seq: u64) -> Vec<u8> {
    [RECORD_PREFIX, &seq.to_be_bytes()].concat()
}

pub fn checkpoint_key(seq: u64) -> Vec<u8> {
    [CHECKPOINT_PREFIX, &seq.to_be_bytes()].concat()
}

/// The sequence number a `r/` or `c/` key ends with.
pub fn seq_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// The prefix of every index entry for `value` of `field` (length-prefixed, so no value is a
/// prefix of another's entries).
pub fn index_prefix(field: Indexed, value: &str) -> Vec<u8> {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(INDEX_PREFIX.len() + 3 + value.len() + 8);
    key.extend_from_slice(INDEX_PREFIX);
    key.push(field.tag());
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(&value.as_bytes()[..usize::from(len)]);
    key
}

pub fn index_key(field: Indexed, value: &str, seq: u64) -> Vec<u8> {
    let mut key = index_prefix(field, value);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The index entries of a chained record (empty fields are not indexed).
pub fn index_keys(r: &AuditRecord) -> impl Iterator<Item = Vec<u8>> + '_ {
    Indexed::ALL
        .into_iter()
        .filter(|f| !f.of(r).is_empty())
        .map(|f| index_key(f, f.of(r), r.seq))
}

/// An intent's key: time first, so intents chain roughly in the order they were made.
pub fn intent_key(time_ms: i64) -> Vec<u8> {
    let mut random = [0u8; 8];
    // Uniqueness only (not a secret): on a failed random source, the time and a counter.
    if getrandom::fill(&mut random).is_err() {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        random = COUNTER
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_be_bytes();
    }
    [INTENT_PREFIX, &time_ms.to_be_bytes(), &random].concat()
}

/// A prefix of the audit tree read page by page, in key order (the readers' one loop).
pub(crate) struct Pages<'a> {
    store: &'a dyn AsyncStore,
    prefix: &'static [u8],
    size: usize,
    after: Option<Vec<u8>>,
}

impl<'a> Pages<'a> {
    pub(crate) fn new(store: &'a dyn AsyncStore, prefix: &'static [u8], size: usize) -> Self {
        Pages {
            store,
            prefix,
            size,
            after: None,
        }
    }

    /// The next page; empty at the end.
    pub(crate) async fn next(&mut self) -> Result<Entries, StoreError> {
        let page = self
            .store
            .scan(Tree::Audit, self.prefix, self.after.as_deref(), self.size)
            .await?;
        if let Some((last, _)) = page.last() {
            self.after = Some(last.clone());
        }
        Ok(page)
    }
}
