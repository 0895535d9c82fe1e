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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};
use writ_store::{Batch, Store, StoreError, Tree, decode, encode};
use writ_token::{RevocationEntry, RevocationError, RevocationKind, TokenFacts};
use writ_vocabulary::{Kind, Refusal, Refuse};

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

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid entry: {0}")]
    Invalid(#[from] RevocationError),
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("the cursor is older than the log retains")]
    Truncated,
    #[error("the cursor is ahead of the log")]
    CursorAhead,
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
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

/// `google.rpc.ErrorInfo.domain` of the revocation service's refusals.
pub const ERROR_DOMAIN: &str = "revocation.writ.dev";

impl Refuse for LogError {
    fn refusal(&self) -> Refusal {
        let (kind, reason, description) = match self {
            LogError::Invalid(e) => (Kind::InvalidArgument, "invalid_entry", e.to_string()),
            LogError::InvalidRequest(m) => (Kind::InvalidArgument, "invalid_request", (*m).into()),
            LogError::CursorAhead => (
                Kind::OutOfRange,
                "cursor_ahead",
                "the cursor is ahead of the log".into(),
            ),
            LogError::Truncated => (
                Kind::OutOfRange,
                "cursor_truncated",
                "the cursor is older than the log".into(),
            ),
            LogError::Store(_) => {
                return Refusal::new(
                    Kind::Unavailable,
                    ERROR_DOMAIN,
                    "storage",
                    "the revocation log is unavailable",
                )
                .logged();
            }
        };
        Refusal::new(kind, ERROR_DOMAIN, reason, description)
    }
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

#[derive(Clone, PartialEq, prost::Message)]
struct EntryRecord {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(string, tag = "2")]
    value: String,
    #[prost(int64, tag = "3")]
    expires_at: i64,
    #[prost(int64, tag = "4")]
    not_before: i64,
    #[prost(string, tag = "5")]
    reason: String,
    #[prost(uint64, tag = "6")]
    sequence: u64,
}

impl writ_store::Record for EntryRecord {
    const TREE: Tree = Tree::RevocationLog;
}

impl EntryRecord {
    fn new(e: &RevocationEntry, sequence: u64) -> Self {
        EntryRecord {
            kind: e.kind as i32,
            value: e.value.clone(),
            expires_at: e.expires_at,
            not_before: e.not_before,
            reason: e.reason.clone(),
            sequence,
        }
    }

    fn event(self) -> Result<Event, StoreError> {
        Ok(Event {
            sequence: self.sequence,
            entry: RevocationEntry {
                kind: RevocationKind::from_i32(self.kind).ok_or(StoreError::Corrupt)?,
                value: self.value,
                expires_at: self.expires_at,
                not_before: self.not_before,
                reason: self.reason,
            },
        })
    }
}

fn log_key(seq: u64) -> Vec<u8> {
    let mut k = LOG.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn index_key(kind: RevocationKind, value: &str) -> Vec<u8> {
    let mut k = INDEX.to_vec();
    k.push(kind as u8);
    k.extend_from_slice(value.as_bytes());
    k
}

fn seq_of(log_key: &[u8]) -> Result<u64, StoreError> {
    log_key
        .get(LOG.len()..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or(StoreError::Corrupt)
}

/// The union of two entries for the same target: the later expiry and the later cut-off.
fn merge(old: &RevocationEntry, new: &RevocationEntry) -> RevocationEntry {
    RevocationEntry {
        expires_at: old.expires_at.max(new.expires_at),
        not_before: old.not_before.max(new.not_before),
        ..new.clone()
    }
}

/// An append waiting to be written, and where its outcome goes.
struct Queued {
    entries: Vec<RevocationEntry>,
    reply: oneshot::Sender<Result<u64, LogError>>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
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

    /// Appends `entries` (validated against `now`; any invalid entry refuses the whole batch)
    /// and returns, once durable, the sequence of the last one. An entry already covered by a
    /// live one appends nothing: its existing sequence counts.
    pub async fn append(&self, entries: &[RevocationEntry], now: i64) -> Result<u64, LogError> {
        if entries.is_empty() {
            return Err(LogError::InvalidRequest("no entries"));
        }
        if entries.len() > MAX_BATCH {
            return Err(LogError::InvalidRequest("too many entries in one request"));
        }
        for e in entries {
            e.validate(now)?;
        }
        // Group write. Each store batch is a sled transaction, and sled (0.34) makes every
        // transaction wait for the flush in progress, process-wide (a flush holds sled's
        // concurrency-control lock for reading until its fsync returns; a transaction needs it
        // for writing). One transaction per append therefore allowed about one append per flush
        // however many callers waited (~2 entries per fsync with 64 concurrent Revoke calls).
        // So: queue the append, then take the writer lock in turn; the holder writes everything
        // queued so far, in one batch, and answers each append. An append already written by an
        // earlier holder finds its answer waiting and only passes the lock on. Every append is
        // still written, with its sequences, before it awaits the flush, so "answered only once
        // durable" and gap-free sequences hold as before.
        let (reply, answer) = oneshot::channel();
        self.queue.lock().push(Queued {
            entries: entries.to_vec(),
            reply,
        });
        let mut answer = answer;
        let last = {
            let _writer = self.writer.lock().await;
            loop {
                match answer.try_recv() {
                    Ok(result) => break result,
                    // Still queued (the queue is only taken from under the writer lock): write
                    // from its front, at most MAX_BATCH entries per batch as before, until ours
                    // is written.
                    Err(oneshot::error::TryRecvError::Empty) => {
                        let queued = self.take_queued();
                        if queued.is_empty() {
                            break Err(lost());
                        }
                        // The write can wait for a flush in progress (see above): on a
                        // multi-threaded runtime, let the worker's other tasks move on.
                        if tokio::runtime::Handle::current().runtime_flavor()
                            == tokio::runtime::RuntimeFlavor::MultiThread
                        {
                            tokio::task::block_in_place(|| self.write(queued));
                        } else {
                            self.write(queued);
                        }
                    }
                    Err(oneshot::error::TryRecvError::Closed) => break Err(lost()),
                }
            }
        }?;
        // Everything written before the flush starts is durable once it returns, including
        // appends of callers that went away: commit all of it, not only this append.
        let written = self.append.lock().0 - 1;
        self.store.durable().await?;
        self.commit(written.max(last));
        Ok(last)
    }

    /// Queued appends from the front, up to [`MAX_BATCH`] entries in all (at least one append).
    fn take_queued(&self) -> Vec<Queued> {
        let mut queue = self.queue.lock();
        let mut entries = 0;
        let n = queue
            .iter()
            .take_while(|q| {
                entries += q.entries.len();
                entries <= MAX_BATCH
            })
            .count()
            .max(1)
            .min(queue.len());
        queue.drain(..n).collect()
    }

    /// Writes queued appends in one store batch and answers each with the sequence of its last
    /// entry. An append whose entries cannot be read or merged fails alone; if the batch cannot
    /// be written, every append in it fails and no sequence is used.
    fn write(&self, queued: Vec<Queued>) {
        let mut state = self.append.lock();
        let (mut next, mut live) = *state;
        let mut batch = Batch::new();
        let mut events = Vec::new();
        let mut in_batch: HashMap<Vec<u8>, (u64, RevocationEntry)> = HashMap::new();
        let mut answers = Vec::with_capacity(queued.len());
        for q in queued {
            // Planned against the log plus the appends before it in this batch, exactly as if it
            // had been written alone after them; kept only if it plans without error.
            let mut plan = Plan {
                next,
                live,
                last: 0,
                writes: Vec::new(),
            };
            let result = self.plan(&q.entries, &in_batch, &mut plan);
            if result.is_ok() {
                (next, live) = (plan.next, plan.live);
                for (key, seq, merged) in plan.writes {
                    let record = encode(&EntryRecord::new(&merged, seq));
                    batch = batch
                        .put(log_key(seq), record.clone())
                        .put(key.clone(), record);
                    in_batch.insert(key, (seq, merged.clone()));
                    events.push(Arc::new(Event {
                        sequence: seq,
                        entry: merged,
                    }));
                }
            }
            answers.push((q.reply, result.map(|()| plan.last)));
        }
        if !events.is_empty() {
            // The sequence only advances once the batch is written: no gaps on failure.
            if let Err(e) = self.store.commit(Tree::RevocationLog, batch) {
                drop(state);
                let message = e.to_string();
                tracing::error!(error = %message, "writing revocations failed");
                for (reply, _) in answers {
                    let _ = reply.send(Err(LogError::Store(StoreError::Io(message.clone()))));
                }
                return;
            }
            *state = (next, live);
            let mut pending = self.pending.lock();
            for ev in events {
                pending.insert(ev.sequence, ev);
            }
        }
        drop(state);
        for (reply, result) in answers {
            // An appender that went away (its call was cancelled) is not waiting: nothing to do.
            let _ = reply.send(result);
        }
    }

    /// Sequences and merged entries for one append, after `in_batch` (what the batch being built
    /// writes already). An entry already covered by a live one appends nothing.
    fn plan(
        &self,
        entries: &[RevocationEntry],
        in_batch: &HashMap<Vec<u8>, (u64, RevocationEntry)>,
        plan: &mut Plan,
    ) -> Result<(), LogError> {
        // This append's own writes, seen by its later entries.
        let mut own: HashMap<Vec<u8>, (u64, RevocationEntry)> = HashMap::new();
        for e in entries {
            let key = index_key(e.kind, &e.value);
            let existing = match own.get(&key).or_else(|| in_batch.get(&key)) {
                Some(v) => Some(v.clone()),
                None => match self.store.get(Tree::RevocationLog, &key)? {
                    Some(bytes) => {
                        let ev = decode::<EntryRecord>(&bytes)?.event()?;
                        Some((ev.sequence, ev.entry))
                    }
                    None => None,
                },
            };
            let merged = match &existing {
                Some((seq, old)) if old.covers(e) => {
                    plan.last = plan.last.max(*seq);
                    continue;
                }
                Some((_, old)) => merge(old, e),
                None => {
                    plan.live += 1;
                    e.clone()
                }
            };
            let seq = plan.next;
            plan.next += 1;
            own.insert(key.clone(), (seq, merged.clone()));
            plan.writes.push((key, seq, merged));
            plan.last = seq;
        }
        Ok(())
    }

    /// Marks everything up to `upto` committed. Sequences are written in order under the append
    /// lock, and a flush covers every write made before it was asked for, so once an appender's
    /// flush returns, every lower sequence is durable too.
    fn commit(&self, upto: u64) {
        let mut pending = self.pending.lock();
        if upto <= *self.committed.borrow() {
            return;
        }
        let rest = pending.split_off(&(upto + 1));
        let ready = std::mem::replace(&mut *pending, rest);
        {
            let mut recent = self.recent.write();
            for ev in ready.into_values() {
                recent.push_back(ev);
            }
            while recent.len() > self.config.ring {
                recent.pop_front();
            }
        }
        self.committed.send_replace(upto);
    }

    /// Makes everything written so far durable and committed. Appends do this themselves; this
    /// catches events whose appender saw its flush fail (they may be on disk, so they must not
    /// stay invisible).
    pub async fn sync(&self) -> Result<(), LogError> {
        let written = self.append.lock().0 - 1;
        self.store.durable().await?;
        self.commit(written);
        Ok(())
    }

    /// Which entry of the live index, if any, revokes a token (the service checks its own
    /// callers with this: a revoked producer or subscriber token is refused here too).
    pub fn revokes(&self, t: &TokenFacts<'_>) -> Result<Option<RevocationKind>, LogError> {
        for (kind, value) in t.targets() {
            if let Some(bytes) = self
                .store
                .get(Tree::RevocationLog, &index_key(kind, value))?
            {
                let record = decode::<EntryRecord>(&bytes)?;
                if t.cut_off_by(kind, record.not_before) {
                    return Ok(Some(kind));
                }
            }
        }
        Ok(None)
    }

    /// Up to `limit` committed events after `after`, in order.
    pub fn read(&self, after: u64, limit: usize) -> Result<Vec<Arc<Event>>, LogError> {
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
        let rows = self
            .store
            .scan(Tree::RevocationLog, LOG, Some(&log_key(after)), limit)?;
        let mut out = Vec::with_capacity(rows.len());
        for (expected, (k, v)) in (after + 1..).zip(rows) {
            let seq = seq_of(&k)?;
            if seq > head {
                break;
            }
            if seq != expected {
                // Truncated underneath us: the reader needs a snapshot.
                return Err(LogError::Truncated);
            }
            out.push(Arc::new(decode::<EntryRecord>(&v)?.event()?));
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
            .scan(Tree::RevocationLog, INDEX, after_key, limit)?;
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
        if events.iter().any(|e| e.sequence > self.head()) {
            self.sync().await?;
        }
        Ok((events, next))
    }

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

/// An append that left the queue unanswered (cannot happen: every append taken is answered).
fn lost() -> LogError {
    LogError::Store(StoreError::Io("the append was not written".to_owned()))
}

/// One append's share of a batch: the next free sequence and live count after it, the sequence
/// it answers with, and its (index key, sequence, merged entry) writes in order.
struct Plan {
    next: u64,
    live: u64,
    last: u64,
    writes: Vec<(Vec<u8>, u64, RevocationEntry)>,
}

fn last_log_key(store: &dyn Store) -> Result<Option<u64>, StoreError> {
    // The log is keyed by big-endian sequence: page to the end (a scan in reverse is not part of
    // the store trait; pages make this O(n / page) at start only).
    let mut after: Option<Vec<u8>> = None;
    let mut last = None;
    loop {
        let page = store.scan(Tree::RevocationLog, LOG, after.as_deref(), 10_000)?;
        let Some((k, _)) = page.last() else { break };
        last = Some(seq_of(k)?);
        after = Some(k.clone());
    }
    Ok(last)
}

#[cfg(test)]
mod tests;
