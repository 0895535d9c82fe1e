//! An index's entries kept also in expiry order, beside them in the same tree (so one batch
//! writes both). Pruning scans from the oldest and stops at the first listing not yet expired,
//! so it reads only what has expired.
//!
//! Entries are listed in *chunks*: `chunks`, the end of the expiry bucket (order-preserving),
//! an id unique to the batch; the value lists the entry keys' suffixes after `entries`. A batch
//! writes one chunk per bucket it touches, not one key per entry: a thousand revocations
//! expiring together are one key. (sled keeps state for every page it has, cached or not, and a
//! leaf holds at most 16 keys: a million one-entry keys cost about 30 MiB of memory however
//! small the cache; issue 17.) An entry renewed to a later expiry is listed again in a later
//! chunk; its earlier listing stays and is harmless, since pruning removes an entry only if its
//! own record has expired.
//!
//! Stores written before chunks existed (or by an older replica during a rolling upgrade) have
//! one key per entry under `prefix`: the expiry, then the suffix, with an empty value. Pruning
//! reads those too, and [`ExpiryOrder::pack_legacy`] rewrites them into chunks.

use crate::{AsyncStore, Batch, Record, StoreError, Tree, decode, encode};

/// Width of an expiry bucket, in seconds: a chunk is pruned once its whole bucket has expired,
/// so an entry outlives its expiry (and the caller's margin) by up to this much.
pub const EXPIRY_BUCKET_SECONDS: i64 = 60;
/// Most entries listed in one chunk (a batch's bucket with more is split).
pub const MAX_CHUNK: usize = 1024;
/// Chunks read per step of pruning.
const CHUNK_PAGE: usize = 16;

/// Where an index's expiry listings live and which entries they name.
#[derive(Debug, Clone, Copy)]
pub struct ExpiryOrder {
    /// The one-key-per-entry listings of earlier builds.
    pub prefix: &'static [u8],
    /// The chunks' prefix.
    pub chunks: &'static [u8],
    /// The prefix of the entries they name.
    pub entries: &'static [u8],
}

/// One chunk's entry suffixes.
#[derive(Clone, PartialEq, prost::Message)]
struct ExpiryChunk {
    #[prost(bytes = "vec", repeated, tag = "1")]
    suffixes: Vec<Vec<u8>>,
}

impl Record for ExpiryChunk {
    // Stored in whichever tree holds the index; the tree is not part of the encoding.
    const TREE: Tree = Tree::Meta;
}

/// Listings that have expired: remove `key`, and each of `entries` whose record has expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub key: Vec<u8>,
    pub entries: Vec<Vec<u8>>,
}

fn order_bytes(t: i64) -> [u8; 8] {
    // The sign bit flipped: negative times sort before positive ones.
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn from_order_bytes(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
}

/// The end (exclusive) of the bucket holding `expires_at`.
fn bucket_end(expires_at: i64) -> i64 {
    expires_at
        .div_euclid(EXPIRY_BUCKET_SECONDS)
        .saturating_add(1)
        .saturating_mul(EXPIRY_BUCKET_SECONDS)
}

impl ExpiryOrder {
    /// A legacy listing of the entry under `entry_key`, expiring at `expires_at` (what builds
    /// before chunks wrote; tests write it to play an older store).
    pub fn key(&self, expires_at: i64, entry_key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.to_vec();
        k.extend_from_slice(&order_bytes(expires_at));
        k.extend_from_slice(entry_key.get(self.entries.len()..).unwrap_or_default());
        k
    }

    /// The expiry and the entry key a legacy listing names (`None` if it is not one).
    pub fn parse(&self, key: &[u8]) -> Option<(i64, Vec<u8>)> {
        let (at, suffix) = key.strip_prefix(self.prefix)?.split_at_checked(8)?;
        let mut entry = self.entries.to_vec();
        entry.extend_from_slice(suffix);
        Some((from_order_bytes(at)?, entry))
    }

    /// The chunks listing `entries` (entry key, expiry), to put in the batch that writes them.
    /// `id` is unique to the batch among every writer of the tree (a sequence the batch
    /// claims, or random bytes).
    pub fn chunks<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a [u8], i64)>,
        id: &[u8],
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut buckets: std::collections::BTreeMap<i64, Vec<Vec<u8>>> = Default::default();
        for (key, expires_at) in entries {
            let suffix = key.get(self.entries.len()..).unwrap_or_default();
            buckets
                .entry(bucket_end(expires_at))
                .or_default()
                .push(suffix.to_vec());
        }
        let mut out = Vec::new();
        for (end, suffixes) in buckets {
            for (part, suffixes) in suffixes.chunks(MAX_CHUNK).enumerate() {
                let mut k = self.chunks.to_vec();
                k.extend_from_slice(&order_bytes(end));
                k.extend_from_slice(id);
                k.extend_from_slice(&(part as u32).to_be_bytes());
                let chunk = ExpiryChunk {
                    suffixes: suffixes.to_vec(),
                };
                out.push((k, encode(&chunk)));
            }
        }
        out
    }

    /// Listings whose expiry is before `cutoff`, oldest first: legacy keys up to `max` of them,
    /// else whole chunks until about `max` entries (at least one chunk).
    pub async fn due(
        &self,
        store: &dyn AsyncStore,
        tree: Tree,
        cutoff: i64,
        max: usize,
    ) -> Result<Vec<Due>, StoreError> {
        let legacy = store.scan(tree, self.prefix, None, max).await?;
        let due: Vec<Due> = legacy
            .into_iter()
            .map_while(|(k, _)| {
                self.parse(&k)
                    .filter(|(at, _)| *at < cutoff)
                    .map(|(_, entry)| Due {
                        key: k,
                        entries: vec![entry],
                    })
            })
            .collect();
        if !due.is_empty() {
            return Ok(due);
        }
        let mut due = Vec::new();
        let mut listed = 0;
        let mut after: Option<Vec<u8>> = None;
        while listed < max {
            let page = store
                .scan(tree, self.chunks, after.as_deref(), CHUNK_PAGE)
                .await?;
            let full = page.len() == CHUNK_PAGE;
            for (k, v) in page {
                let end = k
                    .strip_prefix(self.chunks)
                    .and_then(|rest| rest.get(..8))
                    .and_then(from_order_bytes)
                    .ok_or(StoreError::Corrupt)?;
                // Every entry it lists expires before its bucket's end.
                if end > cutoff || listed >= max {
                    return Ok(due);
                }
                let chunk = decode::<ExpiryChunk>(&v)?;
                listed += chunk.suffixes.len().max(1);
                let entries = chunk
                    .suffixes
                    .into_iter()
                    .map(|s| [self.entries, &s].concat())
                    .collect();
                after = Some(k.clone());
                due.push(Due { key: k, entries });
            }
            if !full {
                break;
            }
        }
        Ok(due)
    }

    /// Lists every entry in expiry order, a page at a time, for a store written before the
    /// expiry order existed; `expiry` reads an entry's expiry from its value (an entry it cannot
    /// read is left unlisted, as pruning always left it). Chunks are named after their page's
    /// last key, so replicas doing it at once write the same. Returns the entries read.
    pub async fn list_all(
        &self,
        store: &dyn AsyncStore,
        tree: Tree,
        expiry: impl Fn(&[u8]) -> Option<i64>,
    ) -> Result<u64, StoreError> {
        const PAGE: usize = 1000;
        let mut after: Option<Vec<u8>> = None;
        let mut read = 0u64;
        loop {
            let page = store
                .scan(tree, self.entries, after.as_deref(), PAGE)
                .await?;
            let Some((last, _)) = page.last() else { break };
            let listed: Vec<(&[u8], i64)> = page
                .iter()
                .filter_map(|(k, v)| expiry(v).map(|at| (k.as_slice(), at)))
                .collect();
            let mut batch = Batch::new();
            for (k, v) in self.chunks(listed, last) {
                batch = batch.put(k, v);
            }
            store.commit(tree, batch).await?;
            read += page.len() as u64;
            after = Some(last.clone());
        }
        Ok(read)
    }

    /// Rewrites legacy listings into chunks (a store written before chunks existed), a page at
    /// a time; replicas doing it at once each move a listing at most once.
    pub async fn pack_legacy(&self, store: &dyn AsyncStore, tree: Tree) -> Result<u64, StoreError> {
        const PAGE: usize = 1000;
        let mut packed = 0u64;
        // Bounded: each round moves a page, or another replica moved one.
        for _ in 0..1_000_000 {
            let page = store.scan(tree, self.prefix, None, PAGE).await?;
            if page.is_empty() {
                break;
            }
            let parsed: Vec<(i64, Vec<u8>)> =
                page.iter().filter_map(|(k, _)| self.parse(k)).collect();
            // Named after the page's first listing: replicas packing the same page write the
            // same chunks.
            let id = page[0].0.get(self.prefix.len()..).unwrap_or_default();
            let mut batch = Batch::new();
            for (k, v) in self.chunks(parsed.iter().map(|(at, e)| (e.as_slice(), *at)), id) {
                batch = batch.put(k, v);
            }
            // Each listing moved once: a replica packing a different page under the same name
            // (a key listed between the two scans) cannot overwrite this one's chunk unseen.
            for (k, v) in &page {
                batch = batch.expect(k.clone(), Some(v.clone())).remove(k.clone());
            }
            if store.commit(tree, batch).await? {
                packed += page.len() as u64;
            }
            if page.len() < PAGE && moved_all(store, tree, self.prefix).await? {
                break;
            }
        }
        if packed > 0 {
            store.durable().await?;
        }
        Ok(packed)
    }
}

/// Whether no legacy listing is left.
async fn moved_all(store: &dyn AsyncStore, tree: Tree, prefix: &[u8]) -> Result<bool, StoreError> {
    Ok(store.scan(tree, prefix, None, 1).await?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: ExpiryOrder = ExpiryOrder {
        prefix: b"x/",
        chunks: b"e/",
        entries: b"i/",
    };

    #[test]
    fn legacy_keys_sort_by_expiry_and_name_their_entry() {
        let times = [-5i64, 0, 7, 1_800_000_000, i64::MAX];
        let keys: Vec<_> = times.iter().map(|t| ORDER.key(*t, b"i/abc")).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for (t, k) in times.iter().zip(&keys) {
            assert_eq!(ORDER.parse(k), Some((*t, b"i/abc".to_vec())));
        }
        assert_eq!(ORDER.parse(b"i/abc"), None);
        assert_eq!(ORDER.parse(b"x/123"), None);
    }

    #[test]
    fn chunks_group_by_bucket_split_when_large_and_sort_by_expiry() {
        let keys: Vec<Vec<u8>> = (0..MAX_CHUNK + 3)
            .map(|i| format!("i/k{i}").into_bytes())
            .collect();
        let mut entries: Vec<(&[u8], i64)> = keys.iter().map(|k| (k.as_slice(), 1000)).collect();
        entries.push((b"i/late", 1000 + EXPIRY_BUCKET_SECONDS));
        entries.push((b"i/early", -1));
        let chunks = ORDER.chunks(entries.iter().copied(), b"id");
        assert_eq!(chunks.len(), 4, "early, two for the large bucket, late");
        assert!(chunks.windows(2).all(|w| w[0].0 < w[1].0));
        let listed: usize = chunks
            .iter()
            .map(|(_, v)| decode::<ExpiryChunk>(v).unwrap().suffixes.len())
            .sum();
        assert_eq!(listed, entries.len());
        assert_eq!(
            decode::<ExpiryChunk>(&chunks[0].1).unwrap().suffixes,
            vec![b"early".to_vec()]
        );
    }

    #[test]
    fn buckets_end_after_every_expiry_they_hold() {
        for t in [-61, -60, -1, 0, 1, 59, 60, 1_800_000_000, i64::MAX - 1] {
            let end = bucket_end(t);
            assert!(end > t, "{t}");
            assert!(end - EXPIRY_BUCKET_SECONDS <= t, "{t}");
        }
    }
}
