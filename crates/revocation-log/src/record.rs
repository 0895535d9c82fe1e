//! How the log stores events and its live index: versioned records under ordered keys.

use writ_store::{AsyncStore, Batch, StoreError, Tree, decode, encode};
use writ_token::{RevocationEntry, RevocationKind};

use crate::{EVENTS, Event, HEAD_KEY, INDEX, LOG, LOW_KEY};

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EntryRecord {
    #[prost(int32, tag = "1")]
    pub(crate) kind: i32,
    #[prost(string, tag = "2")]
    pub(crate) value: String,
    #[prost(int64, tag = "3")]
    pub(crate) expires_at: i64,
    #[prost(int64, tag = "4")]
    pub(crate) not_before: i64,
    #[prost(string, tag = "5")]
    pub(crate) reason: String,
    #[prost(uint64, tag = "6")]
    pub(crate) sequence: u64,
    /// Empty for every issuer (and in records written before issuer scopes existed).
    #[prost(string, tag = "7")]
    pub(crate) issuer: String,
}

impl writ_store::Record for EntryRecord {
    const TREE: Tree = Tree::RevocationLog;
}

impl EntryRecord {
    pub(crate) fn new(e: &RevocationEntry, sequence: u64) -> Self {
        EntryRecord {
            kind: e.kind as i32,
            value: e.value.clone(),
            expires_at: e.expires_at,
            not_before: e.not_before,
            reason: e.reason.clone(),
            sequence,
            issuer: e.issuer.clone(),
        }
    }

    pub(crate) fn event(self) -> Result<Event, StoreError> {
        Ok(Event {
            sequence: self.sequence,
            entry: RevocationEntry {
                kind: RevocationKind::from_i32(self.kind).ok_or(StoreError::Corrupt)?,
                value: self.value,
                issuer: self.issuer,
                expires_at: self.expires_at,
                not_before: self.not_before,
                reason: self.reason,
            },
        })
    }
}

/// Consecutive events committed in one batch, stored under the sequence of the last
/// ([`events_key`]): a reader seeks to the first key at or after the sequence it wants.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EventsRecord {
    #[prost(message, repeated, tag = "1")]
    pub(crate) events: Vec<EntryRecord>,
}

impl writ_store::Record for EventsRecord {
    const TREE: Tree = Tree::RevocationLog;
}

/// The key of the stored batch whose last event is `last`.
pub(crate) fn events_key(last: u64) -> Vec<u8> {
    let mut k = EVENTS.to_vec();
    k.extend_from_slice(&last.to_be_bytes());
    k
}

/// A legacy event's key (one per event, as builds before batches wrote them; tests write them
/// to play an older log).
#[cfg(test)]
pub(crate) fn log_key(seq: u64) -> Vec<u8> {
    let mut k = LOG.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The live index's key of an entry: kind, then value for an entry of every issuer (the format
/// before issuer scopes, so existing data reads the same); kind with its high bit set, the
/// issuer, a NUL (never in an issuer) and the value for an entry scoped to one issuer.
pub(crate) fn index_key(kind: RevocationKind, issuer: &str, value: &str) -> Vec<u8> {
    let mut k = INDEX.to_vec();
    if issuer.is_empty() {
        k.push(kind as u8);
    } else {
        k.push(kind as u8 | 0x80);
        k.extend_from_slice(issuer.as_bytes());
        k.push(0);
    }
    k.extend_from_slice(value.as_bytes());
    k
}

pub(crate) fn seq_of(log_key: &[u8]) -> Result<u64, StoreError> {
    log_key
        .get(LOG.len()..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or(StoreError::Corrupt)
}

/// The union of two entries for the same target: the later expiry and the later cut-off.
pub(crate) fn merge(old: &RevocationEntry, new: &RevocationEntry) -> RevocationEntry {
    RevocationEntry {
        expires_at: old.expires_at.max(new.expires_at),
        not_before: old.not_before.max(new.not_before),
        ..new.clone()
    }
}

/// The log's head and live count, as stored under [`HEAD_KEY`]: two big-endian u64, then the
/// format of the events (absent: one key per event, [`LEGACY_FORMAT`]). The third word is what
/// fences an older build off a log whose events it could not read: it takes the head for
/// corrupt and refuses to open or append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) head: u64,
    pub(crate) live: u64,
    pub(crate) format: u64,
}

/// One key per event (`l/`).
pub(crate) const LEGACY_FORMAT: u64 = 1;
/// One key per committed batch (`b/`).
pub(crate) const FORMAT: u64 = 2;

impl Meta {
    pub(crate) fn new(head: u64, live: u64) -> Self {
        Meta {
            head,
            live,
            format: FORMAT,
        }
    }

    /// Always in the current format: whoever writes the head writes batches.
    pub(crate) fn encode(self) -> Vec<u8> {
        let mut v = self.head.to_be_bytes().to_vec();
        v.extend_from_slice(&self.live.to_be_bytes());
        v.extend_from_slice(&FORMAT.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Result<Self, StoreError> {
        let word = |i: usize| -> Result<u64, StoreError> {
            v.get(i * 8..(i + 1) * 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or(StoreError::Corrupt)
        };
        let format = match v.len() {
            16 => LEGACY_FORMAT,
            24 => word(2)?,
            _ => return Err(StoreError::Corrupt),
        };
        if format != LEGACY_FORMAT && format != FORMAT {
            // Written by a newer build.
            return Err(StoreError::Corrupt);
        }
        Ok(Meta {
            head: word(0)?,
            live: word(1)?,
            format,
        })
    }

    /// The stored meta and its bytes (what a compare-and-swap expects).
    pub(crate) async fn read(
        store: &dyn AsyncStore,
    ) -> Result<Option<(Meta, Vec<u8>)>, StoreError> {
        match store.get(Tree::RevocationLog, HEAD_KEY).await? {
            Some(v) => Ok(Some((Meta::decode(&v)?, v))),
            None => Ok(None),
        }
    }

    /// A log written before the head was stored: the head from the last event (or from the
    /// retained range, once pruning emptied it), the live count by counting the index. Stored
    /// once, by whichever process gets there first.
    pub(crate) async fn recover(store: &dyn AsyncStore) -> Result<Meta, StoreError> {
        let last = last_log_key(store).await?;
        let low = match store.get(Tree::RevocationLog, LOW_KEY).await? {
            Some(v) => {
                u64::from_be_bytes(v.as_slice().try_into().map_err(|_| StoreError::Corrupt)?)
            }
            None => 1,
        };
        // Fix (kept from before the head was stored): once pruning has removed every event the
        // log is empty, but `low` still records where it ended: the head is `low - 1`, not 0.
        let head = last.unwrap_or(0).max(low.saturating_sub(1));
        let mut live = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store
                .scan(Tree::RevocationLog, INDEX, after.as_deref(), 10_000)
                .await?;
            let Some((k, _)) = page.last() else { break };
            after = Some(k.clone());
            live += page.len() as u64;
        }
        // Stored in the legacy format: the events are still one key each until packed.
        let meta = Meta {
            head,
            live,
            format: LEGACY_FORMAT,
        };
        let mut bytes = head.to_be_bytes().to_vec();
        bytes.extend_from_slice(&live.to_be_bytes());
        let batch = Batch::new().expect(HEAD_KEY, None).put(HEAD_KEY, bytes);
        if store.commit(Tree::RevocationLog, batch).await? {
            store.durable().await?;
            return Ok(meta);
        }
        // Another process stored it first.
        Ok(Meta::read(store).await?.ok_or(StoreError::Corrupt)?.0)
    }
}

/// Packs a log written one key per event (an earlier build) into one key per batch of up to a
/// thousand, then stores the head in the current format, which fences older builds off: they
/// read it as corrupt and neither open nor append. The head is read before packing and
/// expected unchanged after it, so an older replica appending meanwhile sends it round again.
/// Replicas packing at once expect every key they move, so each event moves once.
pub(crate) async fn pack_events(store: &dyn AsyncStore) -> Result<(), StoreError> {
    const PAGE: usize = 1000;
    for _ in 0..64 {
        let Some((meta, bytes)) = Meta::read(store).await? else {
            // A new log: its first append writes the current format.
            return Ok(());
        };
        if meta.format == FORMAT {
            return Ok(());
        }
        let mut packed = 0u64;
        // Bounded by the events there are: each round moves a page, or another replica did.
        for _ in 0..=meta.head / PAGE as u64 * 2 + 2 {
            let page = store.scan(Tree::RevocationLog, LOG, None, PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            let last = seq_of(last)?;
            let mut batch = Batch::new();
            let mut events = Vec::with_capacity(page.len());
            for (k, v) in &page {
                events.push(decode::<EntryRecord>(v)?);
                batch = batch.expect(k.clone(), Some(v.clone())).remove(k.clone());
            }
            let batch = batch.put(events_key(last), encode(&EventsRecord { events }));
            if store.commit(Tree::RevocationLog, batch).await? {
                packed += page.len() as u64;
            }
        }
        let batch = Batch::new()
            .expect(HEAD_KEY, Some(bytes))
            .put(HEAD_KEY, meta.encode());
        if store.commit(Tree::RevocationLog, batch).await? {
            store.durable().await?;
            tracing::info!(
                packed,
                "packed the revocation log's events one key per batch"
            );
            return Ok(());
        }
    }
    Err(StoreError::Io(
        "the revocation log kept changing while it was packed; retry".to_owned(),
    ))
}

async fn last_log_key(store: &dyn AsyncStore) -> Result<Option<u64>, StoreError> {
    // The log is keyed by big-endian sequence: page to the end (a scan in reverse is not part of
    // the store trait; this runs once, for a log written before the head was stored).
    let mut after: Option<Vec<u8>> = None;
    let mut last = None;
    loop {
        let page = store
            .scan(Tree::RevocationLog, LOG, after.as_deref(), 10_000)
            .await?;
        let Some((k, _)) = page.last() else { break };
        last = Some(seq_of(k)?);
        after = Some(k.clone());
    }
    Ok(last)
}
