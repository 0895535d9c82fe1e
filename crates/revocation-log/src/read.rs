//! Reading: the live index (is a token revoked?), events after a cursor, snapshot pages.

use std::sync::Arc;

use writ_store::{Tree, decode};
use writ_token::{RevocationKind, TokenFacts};

use crate::record::{EntryRecord, EventsRecord, events_key, index_key};
use crate::{EVENTS, Event, INDEX, LogError, RevocationLog};

/// Stored batches read per step.
const BATCHES_PER_READ: usize = 4;

impl RevocationLog {
    /// Which entry of the live index, if any, revokes a token (the service checks its own
    /// callers with this: a revoked producer or subscriber token is refused here too).
    pub async fn revokes(&self, t: &TokenFacts<'_>) -> Result<Option<RevocationKind>, LogError> {
        for (kind, value) in t.targets() {
            // Entries for every issuer, then those scoped to the token's own.
            for issuer in t.issuer_scopes() {
                if let Some(bytes) = self
                    .store
                    .get(Tree::RevocationLog, &index_key(kind, issuer, value))
                    .await?
                {
                    let record = decode::<EntryRecord>(&bytes)?;
                    if t.cut_off_by(kind, record.not_before) {
                        return Ok(Some(kind));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Up to `limit` committed events after `after`, in order.
    pub async fn read(&self, after: u64, limit: usize) -> Result<Vec<Arc<Event>>, LogError> {
        let head = self.head();
        if after > head {
            return Err(LogError::CursorAhead);
        }
        if after + 1 < self.low() {
            return Err(LogError::Truncated);
        }
        if after == head {
            return Ok(Vec::new());
        }
        {
            let recent = self.recent.read();
            if let Some(front) = recent.front()
                && front.sequence <= after + 1
            {
                let start = (after + 1 - front.sequence) as usize;
                return Ok(recent
                    .iter()
                    .skip(start)
                    .take_while(|e| e.sequence <= head)
                    .take(limit)
                    .cloned()
                    .collect());
            }
        }
        let events = self.stored(after, head, limit).await?;
        if events.is_empty() {
            // Truncated underneath us: the reader needs a snapshot.
            return Err(LogError::Truncated);
        }
        Ok(events)
    }

    /// Stored events from `after + 1` on, in order and without a gap, up to `upto` and at most
    /// `limit`; empty if `after + 1` is no longer stored (truncated).
    pub(crate) async fn stored(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Event>>, LogError> {
        let mut out = Vec::new();
        let mut next = after + 1;
        // The first batch whose last event is at or after `next`.
        let mut cursor = events_key(after);
        // Every batch read holds at least one event wanted, or ends the read.
        for _ in 0..limit.max(1) {
            if next > upto || out.len() >= limit {
                break;
            }
            let rows = self
                .store
                .scan(Tree::RevocationLog, EVENTS, Some(&cursor), BATCHES_PER_READ)
                .await?;
            let Some((last, _)) = rows.last() else { break };
            cursor = last.clone();
            for (_, v) in &rows {
                for record in decode::<EventsRecord>(v)?.events {
                    if record.sequence < next {
                        continue;
                    }
                    if record.sequence != next || next > upto || out.len() >= limit {
                        // A gap (truncated) or enough.
                        return Ok(out);
                    }
                    out.push(Arc::new(record.event()?));
                    next += 1;
                }
            }
            if rows.len() < BATCHES_PER_READ {
                break;
            }
        }
        Ok(out)
    }

    /// One page of the live index, in key order after `after_key`: every entry in its newest
    /// committed version. Returns the page and the key to continue from (`None` at the end).
    ///
    /// An entry may be newer than the head the caller's snapshot began at; an entry written
    /// but not yet committed is made durable first (never send what could still be lost).
    #[allow(clippy::type_complexity)]
    pub async fn snapshot_page(
        &self,
        after_key: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<Event>, Option<Vec<u8>>), LogError> {
        let rows = self
            .store
            .scan(Tree::RevocationLog, INDEX, after_key, limit)
            .await?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|(k, _)| k.clone()))
            .flatten();
        let mut events = Vec::with_capacity(rows.len());
        for (_, v) in rows {
            // Every entry, also one updated after the snapshot began: skipping it would leave
            // the subscriber without that target from the snapshot's end until its delta
            // arrives (a window in which a revoked token passes, unbounded if the stream breaks
            // there).
            events.push(decode::<EntryRecord>(&v)?.event()?);
        }
        if let Some(newest) = events.iter().map(|e| e.sequence).max()
            && newest > self.head()
        {
            // Written here and not yet flushed, or committed by another replica: either way,
            // this process's head must reach it first.
            self.sync().await?;
            if newest > self.head() {
                self.refresh().await?;
            }
        }
        Ok((events, next))
    }
}
