//! The durable revocation log.
//!
//! Every append gets gap-free, increasing sequence numbers and is written, with the live index,
//! in one atomic batch; it becomes *committed*, and visible to readers, once durable. Concurrent
//! appenders share writes (appends queued while another is being written go in one batch) and
//! flushes (the store's group commit). Readers follow the committed head through
//! a `watch` channel and read events after a cursor, from a ring of recent events or from the
//! store. The log keeps a contiguous suffix `[low, head]`: expired events at the front, and events
//! beyond the retention bound, are truncated, and a cursor before `low` needs a snapshot of the
//! live index instead.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use writ_store::{Store, StoreError, Tree};
use writ_token::{RevocationEntry, RevocationKind, TokenFacts};

mod append;
mod error;
mod prune;
mod read;
mod record;

pub use error::{ERROR_DOMAIN, LogError};

use append::Queued;
use record::last_log_key;

const LOG: &[u8] = b"l/";
const INDEX: &[u8] = b"i/";
const LOW_KEY: &[u8] = b"m/low";

/// Most entries in one append.
pub const MAX_BATCH: usize = 1000;

/// A committed revocation and its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub sequence: u64,
    pub entry: RevocationEntry,
}

/// Sizes and bounds.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// Recent committed events kept in memory for readers.
    pub ring: usize,
    /// Most events the log retains; older ones are truncated even if live (a snapshot covers
    /// them).
    pub max_retained: u64,
    /// Seconds past `expires_at` before an entry is forgotten (clock skew between services).
    pub prune_margin: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            ring: 65_536,
            max_retained: 1_000_000,
            prune_margin: 60,
        }
    }
}

/// The revocation log over a store.
#[derive(Debug)]
pub struct RevocationLog {
    store: Arc<dyn Store>,
    config: LogConfig,
    /// Appends not yet written. Whoever holds `writer` writes all of them in one batch.
    queue: Mutex<Vec<Queued>>,
    /// Taken in arrival order by appenders; its holder writes the queue (see [`Self::append`]).
    writer: tokio::sync::Mutex<()>,
    /// Serializes sequence assignment; holds the next sequence and the live count.
    append: Mutex<(u64, u64)>,
    /// Written, not yet known durable.
    pending: Mutex<BTreeMap<u64, Arc<Event>>>,
    committed: watch::Sender<u64>,
    recent: RwLock<VecDeque<Arc<Event>>>,
    low: AtomicU64,
}

impl RevocationLog {
    /// Opens the log, recovering the head, the retained range and the live count.
    pub fn open(store: Arc<dyn Store>, config: LogConfig) -> Result<Self, LogError> {
        let last = last_log_key(&*store)?;
        let low = match store.get(Tree::RevocationLog, LOW_KEY)? {
            Some(v) => {
                u64::from_be_bytes(v.as_slice().try_into().map_err(|_| StoreError::Corrupt)?)
            }
            None => 1,
        };
        // Fix: once pruning has removed every event the log is empty, but `low` still records
        // where it ended: the head is `low - 1`, not 0. Restarting from 0 reused sequences, and
        // every subscriber (its cursor past them) skipped the new events as duplicates.
        let head = last.unwrap_or(0).max(low.saturating_sub(1));
        let mut live = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan(Tree::RevocationLog, INDEX, after.as_deref(), 10_000)?;
            let Some((k, _)) = page.last() else { break };
            after = Some(k.clone());
            live += page.len() as u64;
        }
        let (committed, _) = watch::channel(head);
        tracing::info!(head, low, live, "revocation log opened");
        Ok(RevocationLog {
            store,
            config,
            queue: Mutex::new(Vec::new()),
            writer: tokio::sync::Mutex::new(()),
            append: Mutex::new((head + 1, live)),
            pending: Mutex::new(BTreeMap::new()),
            committed,
            recent: RwLock::new(VecDeque::new()),
            low: AtomicU64::new(low.min(head + 1).max(1)),
        })
    }

    /// The committed head: every event up to it is durable and readable.
    pub fn head(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Follows the committed head.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// The oldest retained sequence: a reader whose cursor is below `low - 1` needs a snapshot.
    pub fn low(&self) -> u64 {
        self.low.load(Ordering::Acquire)
    }

    /// Live (unexpired, unpruned) entries.
    pub fn live_count(&self) -> u64 {
        self.append.lock().1
    }
}

/// The log vouches for its own entries at once (the revocation service checks its callers
/// against it, without waiting for a feed of its own entries); a store that fails cannot vouch.
impl writ_token::RevocationCheck for RevocationLog {
    fn revoked(
        &self,
        token: &TokenFacts<'_>,
    ) -> Result<Option<RevocationKind>, writ_token::Unvouched> {
        self.revokes(token).map_err(|e| {
            tracing::error!(error = %e, "the revocation log could not be read");
            writ_token::Unvouched("the revocation log is unavailable")
        })
    }
}

#[cfg(test)]
mod tests;
