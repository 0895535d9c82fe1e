//! Pruning: expired entries leave the live index and the front of the log; the log keeps to its
//! retention bound.

use std::sync::atomic::Ordering;

use writ_store::{AsyncStore, Batch, Tree, decode, encode};

use crate::record::{EntryRecord, EventsRecord, Meta, events_key};
use crate::{EVENTS, EXPIRY, EXPIRY_INDEXED, HEAD_KEY, LOW_KEY, LogError, RevocationLog};

/// Rows read per step of pruning and of indexing.
const PAGE: usize = 1000;
/// Steps of one prune (each removes a page, or ends it): later ones wait for the next prune.
const MAX_STEPS: usize = 10_000;
/// Stored batches read per step of truncation.
const TRUNCATE_PAGE: usize = 16;

/// Lists every live index entry in expiry order, once, for a log written before the expiry
/// order existed (idempotent: replicas opening at once write the same chunks); then packs an
/// earlier build's one-key-per-entry listings into chunks.
pub(crate) async fn index_expiries(store: &dyn AsyncStore) -> Result<(), LogError> {
    if store
        .get(Tree::RevocationLog, EXPIRY_INDEXED)
        .await?
        .is_none()
    {
        index_all(store).await?;
    }
    let packed = EXPIRY.pack_legacy(store, Tree::RevocationLog).await?;
    if packed > 0 {
        tracing::info!(
            packed,
            "packed the revocation log's expiry order into chunks"
        );
    }
    Ok(())
}

async fn index_all(store: &dyn AsyncStore) -> Result<(), LogError> {
    // An unreadable record is left unlisted, as pruning always left it (its appends fail).
    let indexed = EXPIRY
        .list_all(store, Tree::RevocationLog, |v| {
            decode::<EntryRecord>(v).ok().map(|r| r.expires_at)
        })
        .await?;
    store
        .commit(
            Tree::RevocationLog,
            Batch::new().put(EXPIRY_INDEXED, Vec::new()),
        )
        .await?;
    store.durable().await?;
    if indexed > 0 {
        tracing::info!(
            indexed,
            "indexed the revocation log's live entries by expiry"
        );
    }
    Ok(())
}

impl RevocationLog {
    /// Forgets entries expired (with the margin) at `now`: from the live index, and from the
    /// front of the log; truncates the log to its retention bound. Returns (index entries, log
    /// events) removed.
    pub async fn prune(&self, now: i64) -> Result<(u64, u64), LogError> {
        let cutoff = now - self.config.prune_margin;
        let mut removed_index = 0;
        // In expiry order, from the oldest: only what has expired is read.
        for _ in 0..MAX_STEPS {
            let due = EXPIRY
                .due(&*self.store, Tree::RevocationLog, cutoff, PAGE)
                .await?;
            if due.is_empty() {
                break;
            }
            let keys: Vec<Vec<u8>> = due.iter().flat_map(|d| d.entries.clone()).collect();
            let records = self.store.get_many(Tree::RevocationLog, &keys).await?;
            // Only if still expired (an entry renewed meanwhile lives on, listed again later),
            // and with the live count: a compare-and-swap on the head's record, like an
            // append's. A conflict leaves the rest to the next prune.
            let Some((meta, bytes)) = Meta::read(&*self.store).await? else {
                break;
            };
            let mut batch = Batch::new();
            for d in &due {
                batch = batch.remove(d.key.clone());
            }
            let mut expired = 0u64;
            let mut seen = std::collections::HashSet::new();
            for (index, record) in keys.iter().zip(records) {
                if let Some(v) = record
                    && decode::<EntryRecord>(&v).is_ok_and(|r| r.expires_at < cutoff)
                    && seen.insert(index)
                {
                    batch = batch.expect(index.clone(), Some(v)).remove(index.clone());
                    expired += 1;
                }
            }
            let live = meta.live.saturating_sub(expired);
            let batch = batch
                .expect(HEAD_KEY, Some(bytes))
                .put(HEAD_KEY, Meta::new(meta.head, live).encode());
            if !self.store.commit(Tree::RevocationLog, batch).await? {
                break;
            }
            self.live.store(live, std::sync::atomic::Ordering::Release);
            removed_index += expired;
        }

        let head = self.head();
        let floor = head.saturating_sub(self.config.max_retained) + 1;
        let mut low = self.low();
        let mut removed_log = 0;
        // Only a contiguous prefix goes, so the log stays [low, head]: whole batches, and the
        // front of the batch where it stops (rewritten under the same key).
        'truncating: for _ in 0..MAX_STEPS {
            let rows = self
                .store
                .scan(
                    Tree::RevocationLog,
                    EVENTS,
                    Some(&events_key(low - 1)),
                    TRUNCATE_PAGE,
                )
                .await?;
            let mut batch = Batch::new();
            let mut new_low = low;
            let mut done = rows.len() < TRUNCATE_PAGE;
            for (k, v) in &rows {
                let mut events = decode::<EventsRecord>(v)?.events;
                let gone = events
                    .iter()
                    .take_while(|e| {
                        e.sequence < new_low
                            || (e.sequence <= head && (e.expires_at < cutoff || e.sequence < floor))
                    })
                    .count();
                if let Some(last) = events.get(..gone).and_then(|g| g.last()) {
                    new_low = new_low.max(last.sequence + 1);
                }
                if gone == events.len() {
                    batch = batch.remove(k.clone());
                    continue;
                }
                if gone > 0 {
                    events.drain(..gone);
                    batch = batch.put(k.clone(), encode(&EventsRecord { events }));
                }
                done = true;
                break;
            }
            if new_low > low {
                self.truncate(batch, new_low).await?;
                removed_log += new_low - low;
                low = new_low;
            }
            if done {
                break 'truncating;
            }
        }
        if removed_index + removed_log > 0 {
            self.store.durable().await?;
            tracing::info!(removed_index, removed_log, low, "pruned the revocation log");
        }
        Ok((removed_index, removed_log))
    }

    async fn truncate(&self, batch: Batch, new_low: u64) -> Result<(), LogError> {
        // Another replica may be truncating too: `low` only moves forward.
        let current = self.store.get(Tree::RevocationLog, LOW_KEY).await?;
        if current
            .as_deref()
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .is_some_and(|v| u64::from_be_bytes(v) >= new_low)
        {
            return Ok(());
        }
        let batch = batch
            .expect(LOW_KEY, current)
            .put(LOW_KEY, new_low.to_be_bytes().to_vec());
        if !self.store.commit(Tree::RevocationLog, batch).await? {
            return Ok(());
        }
        self.low.fetch_max(new_low, Ordering::AcqRel);
        let mut recent = self.recent.write();
        while recent.front().is_some_and(|e| e.sequence < new_low) {
            recent.pop_front();
        }
        Ok(())
    }
}
