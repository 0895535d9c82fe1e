//! Pruning: expired entries leave the live index and the front of the log; the log keeps to its
//! retention bound.

use std::sync::atomic::Ordering;

use writ_store::{Batch, Tree, decode};

use crate::record::{EntryRecord, Meta, log_key, seq_of};
use crate::{HEAD_KEY, INDEX, LOG, LOW_KEY, LogError, RevocationLog};

impl RevocationLog {
    /// Forgets entries expired (with the margin) at `now`: from the live index, and from the
    /// front of the log; truncates the log to its retention bound. Returns (index entries, log
    /// events) removed.
    pub async fn prune(&self, now: i64) -> Result<(u64, u64), LogError> {
        let cutoff = now - self.config.prune_margin;
        let mut removed_index = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan(Tree::RevocationLog, INDEX, after.as_deref(), 1000)
                .await?;
            let Some((k, _)) = page.last() else { break };
            after = Some(k.clone());
            let expired: Vec<_> = page
                .into_iter()
                .filter(|(_, v)| decode::<EntryRecord>(v).is_ok_and(|r| r.expires_at < cutoff))
                .collect();
            if expired.is_empty() {
                continue;
            }
            // Only if unchanged (an entry renewed meanwhile stays), and with the live count: a
            // compare-and-swap on the head's record, like an append's. A conflict leaves the
            // page to the next prune.
            let Some((meta, bytes)) = Meta::read(&*self.store).await? else {
                continue;
            };
            let mut batch = Batch::new();
            for (k, v) in &expired {
                batch = batch.expect(k.clone(), Some(v.clone())).remove(k.clone());
            }
            let live = meta.live.saturating_sub(expired.len() as u64);
            let batch = batch.expect(HEAD_KEY, Some(bytes)).put(
                HEAD_KEY,
                Meta {
                    head: meta.head,
                    live,
                }
                .encode(),
            );
            if self.store.commit(Tree::RevocationLog, batch).await? {
                self.live.store(live, std::sync::atomic::Ordering::Release);
                removed_index += expired.len() as u64;
            }
        }

        let head = self.head();
        let floor = head.saturating_sub(self.config.max_retained) + 1;
        let mut low = self.low();
        let mut removed_log = 0;
        loop {
            let rows = self
                .store
                .scan(Tree::RevocationLog, LOG, Some(&log_key(low - 1)), 1000)
                .await?;
            let mut batch = Batch::new();
            let mut new_low = low;
            let mut done = rows.len() < 1000;
            for (k, v) in &rows {
                let seq = seq_of(k)?;
                let expired = decode::<EntryRecord>(v)?.expires_at < cutoff;
                // Only a contiguous prefix goes, so the log stays [low, head].
                if seq > head || !(expired || seq < floor) {
                    done = true;
                    break;
                }
                batch = batch.remove(k.clone());
                new_low = seq + 1;
            }
            if new_low > low {
                self.truncate(batch, new_low).await?;
                removed_log += new_low - low;
                low = new_low;
            }
            if done {
                break;
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
