//! The appender: one task per store that chains intents and queued records, group-committed,
//! signs checkpoints and prunes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use writ_store::{AsyncStore, AsyncStoreExt, Batch, Tree, decode, encode};

use crate::budget::RefusalBudget;
use crate::chain;
use crate::record::{
    AuditRecord, CHECKPOINT_PREFIX, CheckpointRecord, GENESIS, HEAD_KEY, HeadRecord, INTENT_PREFIX,
    KEY_KEY, KeyRecord, Pages, RECORD_PREFIX, checkpoint_key, index_keys, record_key, seq_of,
};
use crate::{AuditError, QUEUE, Settings, now_ms};

/// At most this many records per commit.
pub(crate) const MAX_BATCH: usize = 512;
/// The key of a copy of the last checkpoint (found without scanning them all).
pub(crate) const LAST_CHECKPOINT_KEY: &[u8] = b"l";
/// How often intents left by other replicas (or a crash) are looked for.
const TICK: Duration = Duration::from_secs(1);
/// How often refusals counted past the budget are recorded: a little under a tick, so the tick
/// that wakes the appender finds them due.
const SUMMARY_EVERY: Duration = Duration::from_millis(900);
/// Compare-and-swap losses on the head (replicas appending at once) before giving up a round.
const MAX_CONFLICTS: usize = 64;
/// The storage key the signing key is sealed against.
const SEAL_CONTEXT: &[u8] = b"audit/checkpoint-key";

pub(crate) struct Queued {
    pub record: AuditRecord,
    pub done: oneshot::Sender<Result<(), AuditError>>,
}

pub(crate) struct Shared {
    pub queue: mpsc::Sender<Queued>,
    pub wake: Arc<Notify>,
    /// Set when an intent was written (or may have been, by another replica or before a
    /// crash): the appender looks in the store for intents only then.
    pub intents: Arc<AtomicBool>,
    pub store: Arc<dyn AsyncStore>,
    /// The log's segment files, when it has them: callers chain their records directly.
    pub files: Option<Arc<crate::files::Segments>>,
    /// [`Settings::checkpoint_every`].
    pub checkpoint_every: u64,
    /// [`Settings::max_refusals_per_second`]: refusals past it are counted, and the appender
    /// records the counts.
    pub refusals: Arc<RefusalBudget>,
    closing: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditAppender").finish_non_exhaustive()
    }
}

impl Shared {
    pub fn closed(&self) -> bool {
        *self.closing.borrow()
    }

    pub async fn close(&self) {
        let _ = self.closing.send(true);
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

pub(crate) async fn start(
    store: Arc<dyn AsyncStore>,
    kek: &writ_keyring::KeyEncryptionKey,
    settings: Settings,
) -> Result<Arc<Shared>, AuditError> {
    let key = load_or_create_key(&*store, kek).await?;
    let last_checkpoint = store
        .get_record::<CheckpointRecord>(LAST_CHECKPOINT_KEY)
        .await?
        .map(|c| (c.seq, c.time_ms))
        .unwrap_or((0, now_ms()));
    let (queue, rx) = mpsc::channel(QUEUE);
    let (closing, closing_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let intents = Arc::new(AtomicBool::new(true));
    let checkpoint_every = settings.checkpoint_every;
    let refusals = Arc::new(RefusalBudget::new(settings.max_refusals_per_second));
    let appender = Appender {
        refusals: refusals.clone(),
        last_summary: std::time::Instant::now(),
        written_anyway: false,
        store: store.clone(),
        key,
        settings,
        head: None,
        last_checkpoint,
        last_prune: std::time::Instant::now(),
        flushing: tokio::task::JoinSet::new(),
        intents: intents.clone(),
        last_look: std::time::Instant::now(),
        chained: std::collections::HashSet::new(),
    };
    let task = tokio::spawn(appender.run(rx, wake.clone(), closing_rx));
    let files = crate::files::of(&*store).map(|f| f.log.clone());
    Ok(Arc::new(Shared {
        queue,
        wake,
        intents,
        files,
        checkpoint_every,
        refusals,
        store,
        closing,
        task: tokio::sync::Mutex::new(Some(task)),
    }))
}

async fn load_or_create_key(
    store: &dyn AsyncStore,
    kek: &writ_keyring::KeyEncryptionKey,
) -> Result<Ed25519KeyPair, AuditError> {
    for _ in 0..2 {
        if let Some(rec) = store.get_record::<KeyRecord>(KEY_KEY).await? {
            let pkcs8 = kek
                .open(SEAL_CONTEXT, &rec.sealed)
                .map_err(|_| AuditError::Key("the key-encryption key does not open it"))?;
            return Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| AuditError::Key("unreadable"));
        }
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| AuditError::Key("the OS random source failed"))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| AuditError::Key("generated an unreadable key"))?;
        let rec = KeyRecord {
            sealed: kek
                .seal(SEAL_CONTEXT, pkcs8.as_ref())
                .map_err(|_| AuditError::Key("cannot seal it"))?,
            public_key: pair.public_key().as_ref().to_vec(),
            created_ms: now_ms(),
        };
        // Replicas starting at once: one key wins, every replica uses it.
        if store.insert_new(KEY_KEY, &rec).await? {
            store.durable().await?;
            tracing::info!(target: "writ::audit", event = "audit_key_created", key = %chain::fingerprint(&rec.public_key));
            return Ok(pair);
        }
    }
    Err(AuditError::Key("it vanished while being read"))
}

/// The public half of the log's checkpoint key, proven by opening its sealed private half with
/// `kek`: a key record replaced in the store (to re-sign a rewritten log) does not open, or
/// opens to another key. `None`: the log has no key yet.
pub async fn proven_key(
    store: &dyn AsyncStore,
    kek: &writ_keyring::KeyEncryptionKey,
) -> Result<Option<Vec<u8>>, AuditError> {
    let Some(rec) = store.get_record::<KeyRecord>(KEY_KEY).await? else {
        return Ok(None);
    };
    let pkcs8 = kek
        .open(SEAL_CONTEXT, &rec.sealed)
        .map_err(|_| AuditError::Key("the key-encryption key does not open it (replaced?)"))?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| AuditError::Key("unreadable"))?;
    if pair.public_key().as_ref() != rec.public_key.as_slice() {
        return Err(AuditError::Key(
            "its stored public half is not the sealed key's (replaced)",
        ));
    }
    Ok(Some(rec.public_key))
}

struct Appender {
    refusals: Arc<RefusalBudget>,
    /// Set when `append` failed after it wrote its records (see `chain`).
    written_anyway: bool,
    /// When the refusals counted past the budget were last recorded.
    last_summary: std::time::Instant,
    store: Arc<dyn AsyncStore>,
    key: Ed25519KeyPair,
    settings: Settings,
    /// The head as last read or written, with its stored bytes (what a commit expects).
    head: Option<(HeadRecord, Option<Vec<u8>>)>,
    /// The last checkpoint's sequence and time.
    last_checkpoint: (u64, i64),
    last_prune: std::time::Instant,
    /// Batches written, waiting for their flush to answer their callers.
    flushing: tokio::task::JoinSet<()>,
    /// See [`Shared::intents`].
    intents: Arc<AtomicBool>,
    /// When the store was last looked in for intents.
    last_look: std::time::Instant,
    /// Intents chained (durably) whose removal from the store has not succeeded yet.
    chained: std::collections::HashSet<Vec<u8>>,
}

impl Appender {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Queued>,
        wake: Arc<Notify>,
        mut closing: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut queued = Vec::new();
            let mut stop = false;
            tokio::select! {
                biased;
                // First: a stream of records must not keep a close waiting.
                changed = closing.changed() => stop = changed.is_err() || *closing.borrow(),
                q = rx.recv() => match q {
                    Some(q) => queued.push(q),
                    None => stop = true,
                },
                _ = wake.notified() => {}
                // Intents another replica (or a crash) left are looked for on the clock.
                _ = tick.tick() => self.intents.store(true, Ordering::Release),
            }
            while queued.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(q) => queued.push(q),
                    Err(_) => break,
                }
            }
            if stop || self.last_summary.elapsed() >= SUMMARY_EVERY {
                self.record_summaries(queued).await;
            } else {
                self.chain(queued).await;
            }
            if stop {
                // What is still queued is chained before the appender goes, and the tail is
                // covered by a checkpoint.
                rx.close();
                self.intents.store(true, Ordering::Release);
                loop {
                    let mut rest = Vec::new();
                    while let Ok(q) = rx.try_recv() {
                        rest.push(q);
                    }
                    if rest.is_empty() {
                        break;
                    }
                    self.chain(rest).await;
                }
                // Refusals counted by callers that raced the close. (One that passed the closed
                // check and counts after this is lost: a window of microseconds at shutdown.)
                self.record_summaries(Vec::new()).await;
                // And the intents written up to now, whoever was told of them.
                self.intents.store(true, Ordering::Release);
                self.chain(Vec::new()).await;
                // Records callers chained are signed only once durable.
                if let Some(files) = crate::files::of(&*self.store)
                    && let Err(e) = files.log.sync().await
                {
                    tracing::error!(error = %e, "the audit log's last sync failed");
                }
                if let Err(e) = self.checkpoint(true).await {
                    tracing::error!(error = %e, "the audit log's last checkpoint failed");
                }
                // Every caller answered, and nothing left holding the store.
                while self.flushing.join_next().await.is_some() {}
                if let Err(e) = self.store.durable().await {
                    tracing::error!(error = %e, "the audit log's last flush failed");
                }
                return;
            }
            if let Err(e) = self.checkpoint(false).await {
                tracing::error!(error = %e, "an audit checkpoint failed");
            }
            if self.last_prune.elapsed() >= self.settings.prune_interval {
                self.last_prune = std::time::Instant::now();
                match crate::verify::prune(&*self.store, &self.settings, now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(records = n, "pruned the audit log"),
                    Err(e) => tracing::error!(error = %e, "pruning the audit log failed"),
                }
            }
        }
    }

    /// Chains `queued` with the refusals counted past the budget since the last summary.
    /// Nobody waits for the counts' records; a count the log did not take is kept for the next.
    async fn record_summaries(&mut self, mut queued: Vec<Queued>) {
        self.last_summary = std::time::Instant::now();
        let summaries = self.refusals.take();
        let logged = summaries.clone();
        for record in summaries {
            let (done, _) = oneshot::channel();
            queued.push(Queued { record, done });
        }
        let unwritten: Vec<AuditRecord> = self
            .chain(queued)
            .await
            .into_iter()
            .filter(|r| r.kind == crate::budget::SUMMARY_KIND)
            .collect();
        if unwritten.is_empty() {
            logged.iter().for_each(crate::log);
        } else {
            self.refusals.restore(unwritten);
        }
    }

    /// Chains the intents waiting in the store and `queued`, then answers `queued` once durable.
    /// Returns the queued records it did not write (each answered with the error).
    async fn chain(&mut self, mut queued: Vec<Queued>) -> Vec<AuditRecord> {
        let mut conflicts = 0;
        loop {
            let room = MAX_BATCH.saturating_sub(queued.len()).max(1);
            // Looked for when one was written, and on the clock (a steady queue starves the
            // select's tick): not a store scan per commit.
            let look =
                self.intents.swap(false, Ordering::AcqRel) || self.last_look.elapsed() >= TICK;
            let intents = if look {
                self.last_look = std::time::Instant::now();
                match self
                    .store
                    .scan(Tree::Audit, INTENT_PREFIX, None, room)
                    .await
                {
                    Ok(i) => i,
                    Err(e) => {
                        self.intents.store(true, Ordering::Release);
                        return fail(queued, e.into());
                    }
                }
            } else {
                Vec::new()
            };
            if intents.len() >= room {
                // More wait: the next round looks again.
                self.intents.store(true, Ordering::Release);
            }
            // Chained already, their removal failed: removed again, never chained twice (the
            // scan above may still have seen them).
            let already = self.chained.clone();
            if !self.chained.is_empty()
                && let Err(e) = self.forget_chained().await
            {
                return fail(queued, e);
            }
            let intents: Vec<_> = intents
                .into_iter()
                .filter(|(k, _)| !already.contains(k))
                .collect();
            if intents.is_empty() && queued.is_empty() {
                return Vec::new();
            }
            let full = intents.len() >= room;
            match self.append(&intents, &mut queued).await {
                Ok(true) => {
                    // Answered once durable, while the appender goes on chaining: the next
                    // batch is written during this one's flush, and flushes are shared.
                    let waiting: Vec<_> = queued.drain(..).map(|q| q.done).collect();
                    let store = self.store.clone();
                    // In segment files, a commit is durable with its file: no flush of the
                    // database beside it (asked for now, so it covers this commit only).
                    let synced = crate::files::of(&*self.store).map(|f| f.log.sync());
                    self.flushing.spawn(async move {
                        let durable = match synced {
                            Some(synced) => synced.await,
                            None => store.durable().await,
                        };
                        if let Err(e) = &durable {
                            tracing::error!(error = %e, "the audit log could not be made durable");
                        }
                        for done in waiting {
                            let _ = done.send(durable.as_ref().map(|_| ()).map_err(|e| {
                                AuditError::Store(writ_store::StoreError::Unavailable(
                                    e.to_string(),
                                ))
                            }));
                        }
                    });
                    // Those done: their tasks (each holding the store) are not kept.
                    while self.flushing.try_join_next().is_some() {}
                    if !full {
                        return Vec::new();
                    }
                }
                Ok(false) => {
                    // Another replica moved the head (and may have chained these intents):
                    // the retry looks again.
                    self.head = None;
                    self.intents.store(true, Ordering::Release);
                    conflicts += 1;
                    if conflicts >= MAX_CONFLICTS {
                        return fail(
                            queued,
                            AuditError::Store(writ_store::StoreError::Unavailable(
                                "the audit log's head kept moving".into(),
                            )),
                        );
                    }
                }
                Err(e) => {
                    self.head = None;
                    tracing::error!(error = %e, "appending to the audit log failed");
                    let written = std::mem::take(&mut self.written_anyway);
                    let unwritten = fail(queued, e);
                    return if written { Vec::new() } else { unwritten };
                }
            }
        }
    }

    /// Removes the intents already chained from the store, durably (intents come with state
    /// changes, which are rare: a flush of the store each is cheap).
    async fn forget_chained(&mut self) -> Result<(), AuditError> {
        let mut batch = Batch::new();
        for key in &self.chained {
            batch = batch.remove(key.clone());
        }
        self.store.commit(Tree::Audit, batch).await?;
        self.store.durable().await?;
        self.chained.clear();
        Ok(())
    }

    async fn head(&mut self) -> Result<(HeadRecord, Option<Vec<u8>>), AuditError> {
        // Segment files are chained by callers too: their head is the log's, never a copy.
        if let Some(files) = crate::files::of(&*self.store) {
            // What is durable: a checkpoint never signs a record a crash could still take.
            let head = files.log.durable_head().unwrap_or(HeadRecord {
                seq: 0,
                hash: GENESIS.to_vec(),
            });
            return Ok((head, None));
        }
        if let Some(h) = &self.head {
            return Ok(h.clone());
        }
        let bytes = self.store.get(Tree::Audit, HEAD_KEY).await?;
        let head = match &bytes {
            Some(b) => decode::<HeadRecord>(b)?,
            None => HeadRecord {
                seq: 0,
                hash: GENESIS.to_vec(),
            },
        };
        self.head = Some((head.clone(), bytes.clone()));
        Ok((head, bytes))
    }

    /// One commit: each intent (in key order), then each queued record, chained after the head.
    /// `Ok(false)`: the head moved meanwhile; nothing was written.
    async fn append(
        &mut self,
        intents: &[(Vec<u8>, Vec<u8>)],
        queued: &mut [Queued],
    ) -> Result<bool, AuditError> {
        let (head, head_bytes) = self.head().await?;
        // A store only this process writes has one appender: nothing can move the head under it.
        let mut batch = if self.store.exclusive() {
            Batch::new()
        } else {
            Batch::new().expect(HEAD_KEY, head_bytes)
        };
        let mut seq = head.seq;
        let mut prev = head.hash;
        let mut from_intents: Vec<AuditRecord> = intents
            .iter()
            .map(|(key, value)| {
                decode::<AuditRecord>(value).unwrap_or_else(|_| {
                    // Not what Writ wrote: kept visible in the chain rather than dropped.
                    AuditRecord {
                        kind: "audit_intent_unreadable".into(),
                        outcome: "failed".into(),
                        time_ms: now_ms(),
                        details: [("key".to_owned(), hex::encode(key))].into(),
                        ..AuditRecord::default()
                    }
                })
            })
            .collect();
        if let Some(files) = crate::files::of(&*self.store) {
            let keys: Vec<Vec<u8>> = intents.iter().map(|(k, _)| k.clone()).collect();
            let mut records = from_intents;
            records.extend(queued.iter().map(|q| q.record.clone()));
            let ticket = files.log.chain(&mut records, &keys)?;
            if !keys.is_empty() {
                // The intents leave the store only once their records are durable.
                let settled = match files.log.synced(ticket).await {
                    Ok(()) => {
                        self.chained.extend(keys);
                        self.forget_chained().await
                    }
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = settled {
                    // Written: a failure from here on must not have them written again.
                    self.written_anyway = true;
                    return Err(e);
                }
            }
            return Ok(true);
        }
        // Queued records are chained in place (no copy; a retry after a lost race rewrites
        // their position and predecessor).
        let records = from_intents
            .iter_mut()
            .chain(queued.iter_mut().map(|q| &mut q.record));
        for record in records {
            seq += 1;
            record.seq = seq;
            record.prev = prev;
            let bytes = encode(&*record);
            prev = chain::hash(&bytes);
            for key in index_keys(record) {
                batch = batch.put(key, Vec::new());
            }
            batch = batch.put(record_key(seq), bytes);
        }
        for (key, _) in intents {
            batch = batch.remove(key.clone());
        }
        let new_head = HeadRecord { seq, hash: prev };
        let new_bytes = encode(&new_head);
        batch = batch.put(HEAD_KEY, new_bytes.clone());
        if self.store.commit(Tree::Audit, batch).await? {
            self.head = Some((new_head, Some(new_bytes)));
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Signs the head if a checkpoint is due (`force`: whenever records are not yet covered).
    async fn checkpoint(&mut self, force: bool) -> Result<(), AuditError> {
        let (head, _) = self.head().await?;
        let (last_seq, last_ms) = self.last_checkpoint;
        if head.seq <= last_seq {
            return Ok(());
        }
        let now = now_ms();
        let interval = i64::try_from(self.settings.checkpoint_interval.as_millis()).unwrap_or(0);
        if !(force
            || now.saturating_sub(last_ms) >= interval
            || head.seq - last_seq >= self.settings.checkpoint_every)
        {
            return Ok(());
        }
        let checkpoint = chain::sign(&self.key, head.seq, &head.hash, now);
        let bytes = encode(&checkpoint);
        let batch = Batch::new()
            .put(checkpoint_key(head.seq), bytes.clone())
            .put(LAST_CHECKPOINT_KEY, bytes);
        self.store.commit(Tree::Audit, batch).await?;
        self.last_checkpoint = (head.seq, now);
        Ok(())
    }
}

fn fail(queued: Vec<Queued>, e: AuditError) -> Vec<AuditRecord> {
    let text = e.to_string();
    queued
        .into_iter()
        .map(|q| {
            let _ = q
                .done
                .send(Err(AuditError::Store(writ_store::StoreError::Unavailable(
                    text.clone(),
                ))));
            q.record
        })
        .collect()
}

/// The first record's sequence, if any.
pub(crate) async fn first_seq(store: &dyn AsyncStore) -> Result<Option<u64>, AuditError> {
    Ok(store
        .scan(Tree::Audit, RECORD_PREFIX, None, 1)
        .await?
        .first()
        .and_then(|(k, _)| seq_of(k)))
}

/// Every checkpoint at or below `upto`, in order.
pub(crate) async fn checkpoints_upto(
    store: &dyn AsyncStore,
    upto: u64,
) -> Result<Vec<CheckpointRecord>, AuditError> {
    let mut out = Vec::new();
    let mut pages = Pages::new(store, CHECKPOINT_PREFIX, 1024);
    loop {
        let page = pages.next().await?;
        if page.is_empty() {
            return Ok(out);
        }
        for (key, value) in &page {
            if seq_of(key).is_some_and(|s| s > upto) {
                return Ok(out);
            }
            out.push(decode::<CheckpointRecord>(value)?);
        }
    }
}
