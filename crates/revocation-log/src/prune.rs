//! Pruning: expired entries leave the live index and the front of the log; the log keeps to its
//! retention bound.

use std::sync::atomic::Ordering;

use writ_store::{Batch, Tree, decode};

use crate::record::{EntryRecord, log_key, seq_of};
use crate::{INDEX, LOG, LOW_KEY, LogError, RevocationLog};

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
                .scan(Tree::RevocationLog, INDEX, after.as_deref(), 1000)?;
            let Some((k, _)) = page.last() else { break };
            after = Some(k.clone());
            let expired: Vec<_> = page
                .into_iter()
                .filter(|(_, v)| decode::<EntryRecord>(v).is_ok_and(|r| r.expires_at < cutoff))
                .collect();
            if expired.is_empty() {
                continue;
            }
            // Under the append lock, and only if unchanged: an entry renewed meanwhile stays.
            let mut state = self.append.lock();
            let mut batch = Batch::new();
            for (k, v) in &expired {
                batch = batch.expect(k.clone(), Some(v.clone())).remove(k.clone());
            }
            if self.store.commit(Tree::RevocationLog, batch)? {
                state.1 -= expired.len() as u64;
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
                .scan(Tree::RevocationLog, LOG, Some(&log_key(low - 1)), 1000)?;
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
                self.truncate(batch, new_low)?;
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

    fn truncate(&self, batch: Batch, new_low: u64) -> Result<(), LogError> {
        self.store.commit(
            Tree::RevocationLog,
            batch.put(LOW_KEY, new_low.to_be_bytes().to_vec()),
        )?;
        self.low.store(new_low, Ordering::Release);
        let mut recent = self.recent.write();
        while recent.front().is_some_and(|e| e.sequence < new_low) {
            recent.pop_front();
        }
        Ok(())
    }
}
