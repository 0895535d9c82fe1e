//! The embedded backend: sled 0.34, with a group-commit flusher.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::{Batch, Durable, Entries, SCHEMA_VERSION, Store, StoreError, Tree};

type Waiter = oneshot::Sender<Result<(), String>>;

/// A sled database with one sled tree per [`Tree`].
pub struct SledStore {
    db: sled::Db,
    /// Where its files are (`None`: temporary).
    dir: Option<std::path::PathBuf>,
    trees: Vec<sled::Tree>,
    flusher: Option<Flusher>,
    flushes: Arc<AtomicU64>,
}

struct Flusher {
    requests: mpsc::Sender<Waiter>,
    /// Set when the store is dropped: the flusher stops waiting for the commit gate.
    closing: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // The flusher holds a handle on the database: stop it, so the files are released when
        // the store is dropped (a restart in the same process reopens them). It may be queued
        // at the commit gate behind a commit whose task only this (now blocked) thread would
        // poll: told it is closing, it leaves the queue and flushes without the gate.
        if let Some(Flusher {
            requests,
            closing,
            thread,
        }) = self.flusher.take()
        {
            closing.store(true, Ordering::Release);
            drop(requests);
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

const SCHEMA_KEY: &[u8] = b"schema_version";

/// How long [`SledStore::open`] waits for the database's file lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How an embedded store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledConfig {
    /// The most memory sled's page cache may take, in bytes (sled's own accounting: resident
    /// memory runs somewhat above it). Per store: one process may hold several.
    pub cache_bytes: u64,
}

impl SledConfig {
    /// 256 MiB.
    pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;
}

impl Default for SledConfig {
    fn default() -> Self {
        SledConfig {
            cache_bytes: Self::DEFAULT_CACHE_BYTES,
        }
    }
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, with the default [`SledConfig`].
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, &SledConfig::default())
    }

    /// Opens (or creates) the database in `dir`.
    ///
    /// The database's file lock is a `flock`: sled's background threads, and a process forked
    /// from this one until it execs, may hold it a moment after the last handle is dropped. A
    /// store reopened in the same process (a restart) waits for it, at most [`LOCK_WAIT`];
    /// another process holding it makes this fail after that.
    pub fn open_with(dir: &Path, config: &SledConfig) -> Result<Self, StoreError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled::Config::new()
                .path(dir)
                .cache_capacity(config.cache_bytes)
                .open()
            {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        };
        // sled creates its files and directories without syncing their names: a database
        // created just before a power cut could otherwise vanish, durable flushes and all (its
        // own directory's name too, in its parent).
        for d in [dir, &dir.join("blobs"), parent_dir(dir)] {
            if d.is_dir() {
                sync_dir_logged(d);
            }
        }
        Self::from_db(db, Some(dir.to_path_buf()))
    }

    /// A database that lives in a temporary directory and vanishes on drop (tests, benchmarks).
    pub fn temporary() -> Result<Self, StoreError> {
        Self::from_db(sled::Config::new().temporary(true).open()?, None)
    }

    fn from_db(db: sled::Db, dir: Option<std::path::PathBuf>) -> Result<Self, StoreError> {
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()?;
        let meta = &trees[Tree::Meta.index()];
        match meta.get(SCHEMA_KEY)? {
            None => {
                meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt)?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::SchemaTooNew {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
        }

        let (tx, rx) = mpsc::channel::<Waiter>();
        let flushes = Arc::new(AtomicU64::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let (flush_db, counter, stop) = (db.clone(), flushes.clone(), closing.clone());
        let thread = std::thread::Builder::new()
            .name("writ-store-flush".into())
            .spawn(move || group_commit(flush_db, rx, counter, &stop))
            .map_err(|e| StoreError::Io(e.to_string()))?;

        Ok(SledStore {
            db,
            dir,
            trees,
            flusher: Some(Flusher {
                requests: tx,
                closing,
                thread,
            }),
            flushes,
        })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree.index()]
    }

    /// How many flushes have run: with group commit, fewer than durable writes under load.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// The size of the database on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

/// The directory holding `path`: `.` for a bare relative name, `/` for the root.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => Path::new("/"),
    }
}

/// Syncs `dir`, so the names in it are durable. Best effort: a file system that cannot sync a
/// directory offers nothing better, so a failure is logged, not returned.
pub fn sync_dir_logged(dir: &Path) {
    if let Err(e) = std::fs::File::open(dir).and_then(|f| f.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not sync a directory");
    }
}

/// Between sled commits and flushes (see [`Store::commit_gate`]): one per process, like the lock
/// in sled it keeps them off. Flushes (of any store) hold it shared, commits exclusive.
static COMMIT_GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The commit gate, shared, for a flusher thread (outside any runtime); `None` once `closing`
/// is set (the store is being dropped), the queue left.
fn gate_unless(closing: &AtomicBool) -> Option<tokio::sync::RwLockReadGuard<'static, ()>> {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut read = std::pin::pin!(COMMIT_GATE.read());
    loop {
        if let Poll::Ready(guard) = read.as_mut().poll(&mut cx) {
            return Some(guard);
        }
        if closing.load(Ordering::Acquire) {
            return None;
        }
        // Woken when the gate is granted, or by the store's drop; the timeout only bounds a
        // missed wake-up.
        std::thread::park_timeout(std::time::Duration::from_millis(10));
    }
}

/// Serves flush requests: every request queued while a flush runs is answered by the next one.
/// A request is only enqueued after its writes were applied, so the flush that starts after it is
/// received covers them.
fn group_commit(
    db: sled::Db,
    requests: mpsc::Receiver<Waiter>,
    flushes: Arc<AtomicU64>,
    closing: &AtomicBool,
) {
    while let Ok(first) = requests.recv() {
        let mut waiters = vec![first];
        let result = {
            let _closed = gate_unless(closing);
            // Every request received by now had its writes applied: this flush covers them.
            waiters.extend(requests.try_iter());
            db.flush().map(|_| ()).map_err(|e| e.to_string())
        };
        flushes.fetch_add(1, Ordering::Relaxed);
        // A flush seals IO buffers here; and once writes stop, this is the last thread to
        // touch sled: a few rounds move the global queue's epochs on and free what it holds.
        for _ in 0..4 {
            release_deferred();
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "storage flush failed");
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// sled frees what it replaces (old versions of pages, and every sealed 512 KiB IO buffer)
/// through crossbeam's epoch-based reclamation: a thread's deferred frees wait in a bag of its
/// own until 64 have gathered, and run only while threads keep pinning. A thread that wrote a
/// burst and then went quiet kept its bag, sealed IO buffers included, alive indefinitely: 52
/// MiB of them at rest after a million revocations (issue 17). Flushing after each write hands
/// the bag to the global queue and frees what no reader can still see.
fn release_deferred() {
    crossbeam_epoch::pin().flush();
}

/// Times `f` as storage operation `op` (`writ_store_operation_seconds`).
fn timed<T>(op: &'static str, f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let r = f();
    writ_metrics::global().store_operation(op, started.elapsed());
    r
}

impl Store for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        timed("get", || Ok(self.tree(tree).get(key)?.map(|v| v.to_vec())))
    }

    fn insert(&self, tree: Tree, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.tree(tree).insert(key, value)?;
        release_deferred();
        Ok(())
    }

    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.tree(tree).remove(key)?;
        release_deferred();
        Ok(())
    }

    fn commit(&self, tree: Tree, batch: Batch) -> Result<bool, StoreError> {
        let committed = timed("commit", || self.commit_now(tree, batch));
        release_deferred();
        committed
    }

    fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        timed("scan", || self.scan_now(tree, prefix, start_after, limit))
    }

    fn len(&self, tree: Tree) -> Result<usize, StoreError> {
        Ok(self.tree(tree).len())
    }

    /// sled holds an exclusive lock on its directory for as long as it is open.
    fn exclusive(&self) -> bool {
        true
    }

    fn local_dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn commit_gate(&self) -> Option<&tokio::sync::RwLock<()>> {
        Some(&COMMIT_GATE)
    }

    fn durable(&self) -> Durable<'_> {
        let (tx, rx) = oneshot::channel();
        let sent = match &self.flusher {
            Some(f) => f.requests.send(tx).map_err(|_| ()),
            None => Err(()),
        };
        let started = std::time::Instant::now();
        Box::pin(async move {
            sent.map_err(|_| StoreError::FlusherStopped)?;
            let r = rx
                .await
                .map_err(|_| StoreError::FlusherStopped)?
                .map_err(StoreError::Io);
            writ_metrics::global().store_operation("durable", started.elapsed());
            r
        })
    }
}

impl SledStore {
    fn commit_now(&self, tree: Tree, mut batch: Batch) -> Result<bool, StoreError> {
        use sled::Transactional;
        use sled::transaction::{
            ConflictableTransactionError, TransactionError, TransactionalTree,
        };
        if tree == Tree::Audit {
            let audit = std::mem::take(&mut batch.audit);
            batch
                .write
                .extend(audit.into_iter().map(|(k, v)| (k, Some(v))));
        }
        let apply = |tx: &TransactionalTree| {
            for (key, expected) in &batch.expect {
                let current = tx.get(key)?;
                if current.as_deref() != expected.as_deref() {
                    return Err(ConflictableTransactionError::Abort(()));
                }
            }
            for (key, value) in &batch.write {
                match value {
                    Some(v) => {
                        tx.insert(key.as_slice(), v.as_slice())?;
                    }
                    None => {
                        tx.remove(key.as_slice())?;
                    }
                }
            }
            Ok(())
        };
        if batch.expect.is_empty() && batch.audit.is_empty() {
            // Nothing to compare: an atomic batch, without a transaction's bookkeeping.
            let mut writes = sled::Batch::default();
            for (key, value) in &batch.write {
                match value {
                    Some(v) => writes.insert(key.as_slice(), v.as_slice()),
                    None => writes.remove(key.as_slice()),
                }
            }
            self.tree(tree).apply_batch(writes)?;
            return Ok(true);
        }
        let result = if batch.audit.is_empty() {
            self.tree(tree).transaction(apply)
        } else {
            // The state change and its audit intents: one transaction over both trees.
            (self.tree(tree), self.tree(Tree::Audit)).transaction(|(tx, audit)| {
                apply(tx)?;
                for (key, value) in &batch.audit {
                    audit.insert(key.as_slice(), value.as_slice())?;
                }
                Ok(())
            })
        };
        match result {
            Ok(()) => Ok(true),
            Err(TransactionError::Abort(())) => Ok(false),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    fn scan_now(
        &self,
        tree: Tree,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let tree = self.tree(tree);
        let lower = match start_after {
            Some(k) if k >= prefix => Bound::Excluded(k.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut out = Vec::new();
        for item in tree.range::<Vec<u8>, _>((lower, Bound::Unbounded)) {
            let (k, v) = item?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sled_passes_the_conformance_suite() {
        let store = std::sync::Arc::new(SledStore::temporary().unwrap());
        crate::conformance::check(std::sync::Arc::new(crate::Ready(store))).await;
    }

    /// The flusher of a store being dropped may be queued at the commit gate behind a commit
    /// granted the gate whose task only the dropping thread would poll (a current-thread
    /// runtime): the drop must not wait for it.
    #[tokio::test(flavor = "current_thread")]
    async fn dropping_a_store_does_not_wait_for_a_commit_only_its_thread_would_run() {
        let store = SledStore::temporary().unwrap();
        let held = COMMIT_GATE.write().await;
        let commit = tokio::spawn(async {
            let _turn = COMMIT_GATE.write().await;
        });
        tokio::task::yield_now().await;
        store.insert(Tree::Clients, b"k", b"v".to_vec()).unwrap();
        let durable = store.durable();
        // The flusher queues behind the commit.
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(held);
        drop(durable);
        let (done, dropped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(store);
            let _ = done.send(());
        });
        // This thread stays blocked meanwhile, so the commit granted the gate never runs.
        assert!(
            dropped
                .recv_timeout(std::time::Duration::from_secs(5))
                .is_ok(),
            "the drop waited for the gate"
        );
        commit.await.unwrap();
    }

    #[tokio::test]
    async fn writes_survive_reopen_after_durable() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.insert(Tree::Clients, b"a", b"1".to_vec()).unwrap();
            s.durable().await.unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            s.get(Tree::Clients, b"a").unwrap().as_deref(),
            Some(&b"1"[..])
        );
    }

    /// Commits, plain writes and flushes from many tasks at once neither stall (the whole run
    /// is bounded) nor lose an acknowledged write across a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_commits_and_flushes_keep_every_acknowledged_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let ready = crate::Ready(store.clone());
        let tasks: Vec<_> = (0..8u32)
            .map(|t| {
                let (store, ready) = (store.clone(), ready.clone());
                tokio::spawn(async move {
                    for i in 0..150u32 {
                        let key = format!("{t}/{i}");
                        let batch = Batch::new()
                            .expect(key.clone(), None)
                            .put(key.clone(), vec![b'c'; 200])
                            .put(format!("{key}/index"), vec![b'i'; 40]);
                        assert!(
                            crate::AsyncStore::commit(&ready, Tree::Grants, batch)
                                .await
                                .unwrap()
                        );
                        store
                            .insert(Tree::Clients, key.as_bytes(), vec![b'p'; 100])
                            .unwrap();
                        store.durable().await.unwrap();
                    }
                })
            })
            .collect();
        tokio::time::timeout(std::time::Duration::from_secs(60), async {
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await
        .expect("commits and flushes stalled");
        assert!(store.flush_count() > 0);
        drop(ready);
        drop(Arc::into_inner(store).expect("the only handle"));
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.len(Tree::Grants).unwrap(), 8 * 150 * 2);
        assert_eq!(s.len(Tree::Clients).unwrap(), 8 * 150);
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.insert(
                Tree::Meta,
                SCHEMA_KEY,
                (SCHEMA_VERSION + 1).to_be_bytes().to_vec(),
            )
            .unwrap();
            s.durable().await.unwrap();
        }
        assert!(matches!(
            SledStore::open(dir.path()),
            Err(StoreError::SchemaTooNew { .. })
        ));
    }

    #[test]
    fn commit_applies_only_when_expectations_hold() {
        let s = SledStore::temporary().unwrap();
        let ok = s
            .commit(
                Tree::Grants,
                Batch::new().expect("k", None).put("k", b"v1".to_vec()),
            )
            .unwrap();
        assert!(ok);
        let again = s
            .commit(
                Tree::Grants,
                Batch::new()
                    .expect("k", None)
                    .put("k", b"v2".to_vec())
                    .put("other", b"x".to_vec()),
            )
            .unwrap();
        assert!(!again);
        assert_eq!(
            s.get(Tree::Grants, b"k").unwrap().as_deref(),
            Some(&b"v1"[..])
        );
        assert_eq!(s.get(Tree::Grants, b"other").unwrap(), None);
    }

    #[test]
    fn scan_pages_through_a_prefix() {
        let s = SledStore::temporary().unwrap();
        for k in ["a1", "a2", "a3", "b1"] {
            s.insert(Tree::Users, k.as_bytes(), vec![]).unwrap();
        }
        let first = s.scan(Tree::Users, b"a", None, 2).unwrap();
        assert_eq!(first.len(), 2);
        let rest = s.scan(Tree::Users, b"a", Some(&first[1].0), 10).unwrap();
        let keys: Vec<_> = rest.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![b"a3".to_vec()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_concurrently_acknowledged_write_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
            let mut tasks = Vec::new();
            for i in 0..64u32 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    s.insert(Tree::Grants, &i.to_be_bytes(), vec![1]).unwrap();
                    s.durable().await.unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            assert!(s.flush_count() >= 1);
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.len(Tree::Grants).unwrap(), 64);
    }
}
