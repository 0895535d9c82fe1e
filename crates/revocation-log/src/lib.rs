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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use writ_store::{AsyncStore, StoreError, Tree};
use writ_token::{RevocationEntry, RevocationKind, TokenFacts};

mod append;
mod error;
mod prune;
mod read;
mod record;

pub use error::{ERROR_DOMAIN, LogError};

use append::Queued;
use record::Meta;

/// Events, one key each, as builds before batches wrote them (packed when opened).
const LOG: &[u8] = b"l/";
/// Events, one key per committed batch, under the batch's last sequence.
const EVENTS: &[u8] = b"b/";
const INDEX: &[u8] = b"i/";
/// The live index by expiry: pruning reads only what has expired.
const EXPIRY: writ_store::ExpiryOrder = writ_store::ExpiryOrder {
    prefix: b"x/",
    chunks: b"e/",
    entries: INDEX,
};
/// Present once every index entry has its expiry key (stores written before it are indexed
/// when opened).
const EXPIRY_INDEXED: &[u8] = b"m/expiry-indexed";
const LOW_KEY: &[u8] = b"m/low";
/// The head and the live count ([`Meta`]): every append, by any replica, is a compare-and-swap
/// on it, so sequences are gap-free and in commit order however many processes append.
const HEAD_KEY: &[u8] = b"m/head";

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
    /// Recent committed events kept in memory for readers (a live subscriber is rarely more
    /// than a few batches behind; one further back reads the store).
    pub ring: usize,
    /// Most events the log retains; older ones are truncated even if live (a snapshot covers
    /// them).
    pub max_retained: u64,
    /// Seconds past `expires_at` before an entry is forgotten (clock skew between services).
    pub prune_margin: i64,
    /// How often the log looks for appends by other replicas sharing its store even without a
    /// notification from the store (a notification lost with a connection).
    pub poll: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            ring: 8_192,
            max_retained: 1_000_000,
            prune_margin: 60,
            poll: Duration::from_secs(1),
        }
    }
}

/// The revocation log over a store, shared by any number of replicas.
#[derive(Debug)]
pub struct RevocationLog {
    store: Arc<dyn AsyncStore>,
    config: LogConfig,
    /// Appends not yet written. Whoever holds `writer` writes all of them in one batch.
    queue: Mutex<Vec<Queued>>,
    /// Taken in arrival order by appenders; its holder writes the queue (see [`Self::append`]).
    writer: tokio::sync::Mutex<()>,
    /// The highest sequence this process wrote (durable once the store's flush returns).
    written: AtomicU64,
    /// The live count as of the last head this process saw.
    live: AtomicU64,
    /// Written by this process, not yet committed here.
    pending: Mutex<BTreeMap<u64, Arc<Event>>>,
    /// Serializes advancing the committed head (and filling the ring in order).
    advance: tokio::sync::Mutex<()>,
    committed: watch::Sender<u64>,
    recent: RwLock<VecDeque<Arc<Event>>>,
    low: AtomicU64,
}

impl RevocationLog {
    /// Opens the log, recovering the head, the retained range and the live count, and follows
    /// appends other replicas make to the same store (woken by the store where it can tell).
    pub async fn open(
        store: Arc<dyn AsyncStore>,
        config: LogConfig,
    ) -> Result<Arc<Self>, LogError> {
        let meta = match Meta::read(&*store).await? {
            Some((meta, _)) => meta,
            None => Meta::recover(&*store).await?,
        };
        // After the head is recovered (from legacy keys, for a log older still).
        record::pack_events(&*store).await?;
        let low = read_low(&*store).await?;
        prune::index_expiries(&*store).await?;
        let (committed, _) = watch::channel(meta.head);
        tracing::info!(
            head = meta.head,
            low,
            live = meta.live,
            "revocation log opened"
        );
        let log = Arc::new(RevocationLog {
            store,
            config,
            queue: Mutex::new(Vec::new()),
            writer: tokio::sync::Mutex::new(()),
            written: AtomicU64::new(meta.head),
            live: AtomicU64::new(meta.live),
            pending: Mutex::new(BTreeMap::new()),
            advance: tokio::sync::Mutex::new(()),
            committed,
            recent: RwLock::new(VecDeque::new()),
            low: AtomicU64::new(low.min(meta.head + 1).max(1)),
        });
        if let Some(changes) = log.store.changes(Tree::RevocationLog) {
            tokio::spawn(follow(Arc::downgrade(&log), changes));
        }
        Ok(log)
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

    /// Live (unexpired, unpruned) entries, as of the head this process last saw.
    pub fn live_count(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    /// Catches up with what other replicas committed to the store: the head, the live count and
    /// the retained range. (A subscriber failing over to this replica may hold a cursor from a
    /// faster one.)
    pub async fn refresh(&self) -> Result<u64, LogError> {
        // The stored head may count this process's own writes not yet flushed (an embedded
        // store): flushed first, so nothing becomes visible before it is durable.
        self.store.durable().await?;
        let low = read_low(&*self.store).await?;
        self.low.fetch_max(low, Ordering::AcqRel);
        if let Some((meta, _)) = Meta::read(&*self.store).await? {
            self.catch_up(meta.head, Some(meta.live)).await?;
        }
        Ok(self.head())
    }
}

async fn read_low(store: &dyn AsyncStore) -> Result<u64, StoreError> {
    Ok(match store.get(Tree::RevocationLog, LOW_KEY).await? {
        Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| StoreError::Corrupt)?),
        None => 1,
    })
}

/// Follows other replicas' appends: on each change the store reports, and every `poll`
/// (a notification can be lost with its connection), catches up with the store's head.
async fn follow(log: Weak<RevocationLog>, mut changes: watch::Receiver<u64>) {
    loop {
        let poll = match log.upgrade() {
            Some(log) => {
                if let Err(e) = log.refresh().await {
                    tracing::warn!(error = %e, "following the shared revocation log failed; retrying");
                }
                log.config.poll
            }
            None => return,
        };
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// The log vouches for its own entries at once (the revocation service checks its callers
/// against it, without waiting for a feed of its own entries); a store that fails cannot vouch.
impl writ_token::AsyncRevocationCheck for RevocationLog {
    fn revoked_async<'a>(
        &'a self,
        token: &'a TokenFacts<'a>,
    ) -> writ_token::BoxFuture<'a, Result<Option<RevocationKind>, writ_token::Unvouched>> {
        Box::pin(async move {
            self.revokes(token).await.map_err(|e| {
                tracing::error!(error = %e, "the revocation log could not be read");
                writ_token::Unvouched("the revocation log is unavailable")
            })
        })
    }
}

#[cfg(test)]
mod tests;
