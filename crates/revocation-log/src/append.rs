//! Appending: one batch per writer turn, a compare-and-swap on the stored head (so sequences
//! are gap-free and in commit order across every replica sharing the store), committed
//! (visible to readers) once durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;
use writ_store::{Batch, StoreError, Tree, decode, encode};

use writ_token::RevocationEntry;

use crate::record::{EntryRecord, EventsRecord, Meta, events_key, index_key, merge};
use crate::{EXPIRY, Event, HEAD_KEY, LogError, MAX_BATCH, RevocationLog};

/// Attempts at the head's compare-and-swap (other replicas appending) before an append fails.
const MAX_ATTEMPTS: usize = 64;

/// An append waiting to be written, and where its outcome goes.
pub(crate) struct Queued {
    /// Each entry with the expiry it is raised to when written (0: none).
    pub(crate) entries: Vec<(RevocationEntry, i64)>,
    pub(crate) reply: oneshot::Sender<Result<u64, LogError>>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl RevocationLog {
    /// Appends `entries` (validated against `now`; any invalid entry refuses the whole batch)
    /// and returns, once durable, the sequence of the last one. An entry already covered by a
    /// live one appends nothing: its existing sequence counts.
    pub async fn append(&self, entries: &[RevocationEntry], now: i64) -> Result<u64, LogError> {
        let raised: Vec<(RevocationEntry, i64)> = entries.iter().map(|e| (e.clone(), 0)).collect();
        self.append_raised(&raised, now).await
    }

    /// [`append`](Self::append), each entry paired with the expiry it is raised to when it is
    /// written (a producer's entry lives at least as long as the tokens it can match). Whether an
    /// entry is already covered is judged on the entry as asked, so a producer publishing the
    /// same entry again (a retry, a crash before it saw the answer) appends nothing, however
    /// much later: re-publication is idempotent.
    pub async fn append_raised(
        &self,
        entries: &[(RevocationEntry, i64)],
        now: i64,
    ) -> Result<u64, LogError> {
        if entries.is_empty() {
            return Err(LogError::InvalidRequest("no entries"));
        }
        if entries.len() > MAX_BATCH {
            return Err(LogError::InvalidRequest("too many entries in one request"));
        }
        for (e, floor) in entries {
            e.validate(now)?;
            raised(e, *floor).validate(now)?;
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
                        // A store whose writes block the thread (sled: a write can wait for
                        // a flush in progress, see above): on a multi-threaded runtime, let the
                        // worker's other tasks move on meanwhile.
                        if self.store.blocking()
                            && tokio::runtime::Handle::current().runtime_flavor()
                                == tokio::runtime::RuntimeFlavor::MultiThread
                        {
                            tokio::task::block_in_place(|| {
                                tokio::runtime::Handle::current().block_on(self.write(queued))
                            });
                        } else {
                            self.write(queued).await;
                        }
                    }
                    Err(oneshot::error::TryRecvError::Closed) => break Err(lost()),
                }
            }
        }?;
        // Everything written before the flush starts is durable once it returns, including
        // appends of callers that went away: commit all of it, not only this append.
        let written = self.written.load(Ordering::Acquire);
        self.store.durable().await?;
        self.catch_up(written.max(last), None).await?;
        Ok(last)
    }

    /// Queued appends from the front, up to [`MAX_BATCH`] entries in all (at least one append).
    pub(crate) fn take_queued(&self) -> Vec<Queued> {
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
    /// be written, every append in it fails and no sequence is used. The batch expects the
    /// stored head it was planned against: if another replica appended meanwhile, it is planned
    /// again after that append.
    pub(crate) async fn write(&self, queued: Vec<Queued>) {
        let result = self.try_write(&queued).await;
        match result {
            Ok(answers) => {
                for (q, answer) in queued.into_iter().zip(answers) {
                    // An appender that went away (its call was cancelled) is not waiting.
                    let _ = q.reply.send(answer);
                }
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, "writing revocations failed");
                for q in queued {
                    let _ = q
                        .reply
                        .send(Err(LogError::Store(StoreError::Io(message.clone()))));
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn try_write(&self, queued: &[Queued]) -> Result<Vec<Result<u64, LogError>>, LogError> {
        for _ in 0..MAX_ATTEMPTS {
            let (meta, expected) = match Meta::read(&*self.store).await? {
                Some((meta, bytes)) => (meta, Some(bytes)),
                None => (Meta::new(0, 0), None),
            };
            let (mut next, mut live) = (meta.head + 1, meta.live);
            // Every index entry the batch may merge with, in one read.
            let mut keys: Vec<Vec<u8>> = queued
                .iter()
                .flat_map(|q| &q.entries)
                .map(|(e, _)| index_key(e.kind, &e.issuer, &e.value))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            let values = self.store.get_many(Tree::RevocationLog, &keys).await?;
            let stored: HashMap<Vec<u8>, Option<Vec<u8>>> = keys.into_iter().zip(values).collect();
            let mut batch = Batch::new();
            let mut events = Vec::new();
            let mut records = Vec::new();
            let mut in_batch: HashMap<Vec<u8>, (u64, RevocationEntry)> = HashMap::new();
            let mut answers = Vec::with_capacity(queued.len());
            for q in queued {
                // Planned against the log plus the appends before it in this batch, exactly as
                // if it had been written alone after them; kept only if it plans without error.
                let mut plan = Plan {
                    next,
                    live,
                    last: 0,
                    writes: Vec::new(),
                };
                let result = plan_append(&q.entries, &stored, &in_batch, &mut plan);
                if result.is_ok() {
                    (next, live) = (plan.next, plan.live);
                    for (key, seq, merged) in plan.writes {
                        let record = EntryRecord::new(&merged, seq);
                        batch = batch.put(key.clone(), encode(&record));
                        records.push(record);
                        in_batch.insert(key, (seq, merged.clone()));
                        events.push(Arc::new(Event {
                            sequence: seq,
                            entry: merged,
                        }));
                    }
                }
                answers.push(result.map(|()| plan.last));
            }
            if events.is_empty() {
                return Ok(answers);
            }
            let head = next - 1;
            // The batch's events under one key (sequences `meta.head + 1 ..= head`).
            batch = batch.put(events_key(head), encode(&EventsRecord { events: records }));
            // Each entry's final version in this batch is listed in expiry order, if its
            // expiry changed (an earlier listing stays; pruning checks the entry itself).
            let listed: Vec<(&[u8], i64)> = in_batch
                .iter()
                .filter(|(key, (_, merged))| {
                    stored
                        .get(*key)
                        .cloned()
                        .flatten()
                        .and_then(|b| decode::<EntryRecord>(&b).ok())
                        .map(|r| r.expires_at)
                        != Some(merged.expires_at)
                })
                .map(|(key, (_, merged))| (key.as_slice(), merged.expires_at))
                .collect();
            for (k, v) in EXPIRY.chunks(listed, &head.to_be_bytes()) {
                batch = batch.put(k, v);
            }
            batch = batch
                .expect(HEAD_KEY, expected)
                .put(HEAD_KEY, Meta::new(head, live).encode());
            if self.store.commit(Tree::RevocationLog, batch).await? {
                self.written.fetch_max(head, Ordering::AcqRel);
                let mut pending = self.pending.lock();
                for ev in events {
                    pending.insert(ev.sequence, ev);
                }
                self.live.store(live, Ordering::Release);
                return Ok(answers);
            }
            // Another replica appended since the head was read: plan again after it.
        }
        Err(LogError::Store(StoreError::Io(
            "the revocation log's head is contended; retry".to_owned(),
        )))
    }

    /// Marks everything up to `upto` committed: this process's own events from memory, other
    /// replicas' read from the store, into the ring of recent events in order. Sequences are
    /// committed to the store in order (each batch expects the head before it), and a flush
    /// covers every write made before it was asked for, so once an appender's flush returns,
    /// every lower sequence is durable too.
    pub(crate) async fn catch_up(&self, upto: u64, live: Option<u64>) -> Result<(), LogError> {
        let _advancing = self.advance.lock().await;
        let head = self.head();
        if upto <= head {
            return Ok(());
        }
        let own = {
            let mut pending = self.pending.lock();
            let rest = pending.split_off(&(upto + 1));
            std::mem::replace(&mut *pending, rest)
        };
        let mut events = Vec::with_capacity((upto - head).min(4096) as usize);
        let mut next = head + 1;
        while next <= upto {
            if let Some(ev) = own.get(&next) {
                events.push(ev.clone());
                next += 1;
                continue;
            }
            // Another replica's: read from the store, up to this process's next own event.
            let until = own.range(next..).next().map_or(upto, |(s, _)| s - 1);
            let limit = (until - next + 1).min(4096) as usize;
            let stored = self.stored(next - 1, until, limit).await?;
            let progressed = !stored.is_empty();
            next += stored.len() as u64;
            events.extend(stored);
            if !progressed {
                // Pruned before this process read it (a reader there needs a snapshot): the
                // ring starts again after the gap.
                events.clear();
                next = until + 1;
                self.recent.write().clear();
            }
        }
        {
            let mut recent = self.recent.write();
            for ev in events {
                if recent.back().is_some_and(|b| b.sequence + 1 != ev.sequence) {
                    recent.clear();
                }
                recent.push_back(ev);
            }
            while recent.len() > self.config.ring {
                recent.pop_front();
            }
        }
        if let Some(live) = live {
            self.live.store(live, Ordering::Release);
        }
        self.committed.send_replace(upto);
        Ok(())
    }

    /// Makes everything written so far durable and committed. Appends do this themselves; this
    /// catches events whose appender saw its flush fail (they may be on disk, so they must not
    /// stay invisible).
    pub async fn sync(&self) -> Result<(), LogError> {
        let written = self.written.load(Ordering::Acquire);
        self.store.durable().await?;
        self.catch_up(written, None).await
    }
}

/// Sequences and merged entries for one append, after `in_batch` (what the batch being built
/// writes already). An entry already covered by a live one appends nothing. (The index
/// reads need no expectation of their own: every change to the index, by any replica, also
/// changes the stored head this batch expects.)
fn plan_append(
    entries: &[(RevocationEntry, i64)],
    stored: &HashMap<Vec<u8>, Option<Vec<u8>>>,
    in_batch: &HashMap<Vec<u8>, (u64, RevocationEntry)>,
    plan: &mut Plan,
) -> Result<(), LogError> {
    // This append's own writes, seen by its later entries.
    let mut own: HashMap<Vec<u8>, (u64, RevocationEntry)> = HashMap::new();
    for (e, floor) in entries {
        let key = index_key(e.kind, &e.issuer, &e.value);
        let existing = match own.get(&key).or_else(|| in_batch.get(&key)) {
            Some(v) => Some(v.clone()),
            None => match stored.get(&key).cloned().flatten() {
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
            Some((_, old)) => merge(old, &raised(e, *floor)),
            None => {
                plan.live += 1;
                raised(e, *floor)
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

/// `e` living at least until `floor`.
fn raised(e: &RevocationEntry, floor: i64) -> RevocationEntry {
    RevocationEntry {
        expires_at: e.expires_at.max(floor),
        ..e.clone()
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
