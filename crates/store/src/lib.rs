//! Writ's storage: a small key-value trait that a second backend (for multi-node deployments)
//! can implement, typed and versioned records on top of it, and the embedded sled backend.
//!
//! Writes become visible at once and durable after [`Store::durable`] resolves; a caller that
//! tells a client "done" awaits it first. Concurrent callers share one flush (group commit).

pub mod conformance;
mod error;
mod expiry;
mod record;
mod sled_store;

use std::future::Future;
use std::pin::Pin;

pub use error::StoreError;
pub use expiry::{Due, EXPIRY_BUCKET_SECONDS, ExpiryOrder};
pub use record::{Record, decode, encode};
pub use sled_store::{SledConfig, SledStore, parent_dir, sync_dir_logged};

/// The schema version this build writes. Opening a store written by a newer schema fails, so an
/// old binary never misreads new data.
pub const SCHEMA_VERSION: u32 = 1;

/// The trees (tables) Writ keeps. Names are part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Schema version, bootstrap state.
    Meta,
    Clients,
    Users,
    SigningKeys,
    /// Grants (refresh families, exchange lineages), by grant id.
    Grants,
    /// Refresh tokens, by hash.
    RefreshTokens,
    /// The authorization server's revocations: its local index (`r/`, and its expiry order
    /// `e/`) and the outbox of revocations not yet acknowledged by the revocation service
    /// (`o/`), so that recording and queueing one is a single atomic batch.
    Revocations,
    ExchangePolicies,
    /// The revocation service's log (`b/` + the big-endian sequence of a batch's last event) and
    /// live index (`i/` + kind + value, and its expiry order `e/`), so that an append is a
    /// single atomic batch.
    RevocationLog,
    /// The audit trail (`writ-audit`): the chained records, their indexes, checkpoints, and the
    /// intents other trees' batches leave for it ([`Batch::audit`]).
    Audit,
    /// People signing in (`writ-oauth`'s sign-in): browser sessions (`s/`), the marks of
    /// redeemed authorization codes (`c/`), remembered consents (`k/`) and pushed authorization requests (`p/`), in one tree so
    /// that a code's redemption and its session's bookkeeping are one batch.
    SignIn,
    /// Trusted workload identity issuers and the policies saying which of their subjects get
    /// tokens as which client (the JWT-bearer grant), one record per issuer.
    Workloads,
}

impl Tree {
    pub const ALL: [Tree; 12] = [
        Tree::Meta,
        Tree::Clients,
        Tree::Users,
        Tree::SigningKeys,
        Tree::Grants,
        Tree::RefreshTokens,
        Tree::Revocations,
        Tree::ExchangePolicies,
        Tree::RevocationLog,
        Tree::Audit,
        Tree::SignIn,
        Tree::Workloads,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta",
            Tree::Clients => "clients",
            Tree::Users => "users",
            Tree::SigningKeys => "signing_keys",
            Tree::Grants => "grants",
            Tree::RefreshTokens => "refresh_tokens",
            Tree::Revocations => "revocations",
            Tree::ExchangePolicies => "exchange_policies",
            Tree::RevocationLog => "revocation_log",
            Tree::Audit => "audit",
            Tree::SignIn => "sign_in",
            Tree::Workloads => "workloads",
        }
    }

    /// The tree's number in a networked backend's table (its position in [`Tree::ALL`]): part
    /// of the stored format, like the names, so trees are only ever added at the end.
    pub fn code(self) -> i16 {
        self as i16
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An atomic, conditional batch on one tree: applied only if every expectation holds.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// `(key, value)`: the key must currently hold exactly `value` (`None`: be absent).
    pub expect: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// `(key, value)`: set the key to `value` (`None`: remove it).
    pub write: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// `(key, value)`: put in [`Tree::Audit`], in the same atomic commit and only if the batch
    /// applies, so the record of a state change is durable exactly when the change is.
    pub audit: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn expect(mut self, key: impl Into<Vec<u8>>, value: Option<Vec<u8>>) -> Self {
        self.expect.push((key.into(), value));
        self
    }

    pub fn put(mut self, key: impl Into<Vec<u8>>, value: Vec<u8>) -> Self {
        self.write.push((key.into(), Some(value)));
        self
    }

    pub fn remove(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.write.push((key.into(), None));
        self
    }

    /// Puts `key` in [`Tree::Audit`] with the batch (see [`Batch::audit`]).
    pub fn audit(mut self, key: impl Into<Vec<u8>>, value: Vec<u8>) -> Self {
        self.audit.push((key.into(), value));
        self
    }
}

/// Key-value pairs, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A future that resolves when earlier writes are durable.
pub type Durable<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// A key-value store of named trees.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn insert(&self, tree: Tree, key: &[u8], value: Vec<u8>) -> Result<(), StoreError>;
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError>;
    /// Applies `batch` atomically. `Ok(false)`: an expectation failed and nothing was written.
    fn commit(&self, tree: Tree, batch: Batch) -> Result<bool, StoreError>;
    /// Up to `limit` entries whose key starts with `prefix`, in key order, after `start_after`.
    fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError>;
    /// Number of entries in a tree.
    fn len(&self, tree: Tree) -> Result<usize, StoreError>;
    /// Resolves once every write made before the call is on stable storage.
    fn durable(&self) -> Durable<'_>;
    /// What an asynchronous caller holds exclusive across [`Store::commit`], if the store needs
    /// it: sled's flush holds a process-wide lock shared for the whole of its IO, a commit takes
    /// that lock exclusive, and every reader queues behind a commit waiting for it. Flushers
    /// hold this gate shared instead, so a commit waits for flushes (and for other commits)
    /// asynchronously, off that lock, and readers are held back by neither. sled's own
    /// periodic flush (every 500 ms) and its segment cleaning still take the lock outside it.
    fn commit_gate(&self) -> Option<&tokio::sync::RwLock<()>> {
        None
    }
    /// Whether this process is the store's only writer (an embedded database under its file
    /// lock): a summary of its contents kept in memory, updated at each write, stays exact.
    fn exclusive(&self) -> bool {
        false
    }
    /// An embedded store's directory, where a component may keep a file of its own beside the
    /// database under the same lock (the audit log's segment files); `None` for a networked or
    /// temporary store.
    fn local_dir(&self) -> Option<&std::path::Path> {
        None
    }
}

/// A future of a store operation.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// [`Store`] as a networked backend needs it: every operation may wait (on PostgreSQL, a round
/// trip). The same semantics, checked by one suite ([`conformance`]) for every backend: sled
/// answers at once, PostgreSQL (`writ-store-postgres`) over the network. The engines move to it
/// from [`Store`] next.
pub trait AsyncStore: Send + Sync + std::fmt::Debug + 'static {
    fn get<'a>(&'a self, tree: Tree, key: &'a [u8]) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// The values of `keys`, in their order (`None` where absent): one round trip on a networked
    /// store, where a `get` per key would be one each.
    fn get_many<'a>(
        &'a self,
        tree: Tree,
        keys: &'a [Vec<u8>],
    ) -> StoreFuture<'a, Vec<Option<Vec<u8>>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.get(tree, key).await?);
            }
            Ok(out)
        })
    }
    fn insert<'a>(&'a self, tree: Tree, key: &'a [u8], value: Vec<u8>) -> StoreFuture<'a, ()>;
    fn remove<'a>(&'a self, tree: Tree, key: &'a [u8]) -> StoreFuture<'a, ()>;
    /// Applies `batch` atomically. `Ok(false)`: an expectation failed and nothing was written.
    /// Race-free across every process sharing the store: of concurrent batches expecting the
    /// same value, at most one applies.
    fn commit(&self, tree: Tree, batch: Batch) -> StoreFuture<'_, bool>;
    /// Up to `limit` entries whose key starts with `prefix`, in key (byte) order, after
    /// `start_after`.
    fn scan<'a>(
        &'a self,
        tree: Tree,
        prefix: &'a [u8],
        start_after: Option<&'a [u8]>,
        limit: usize,
    ) -> StoreFuture<'a, Entries>;
    /// Number of entries in a tree.
    fn len(&self, tree: Tree) -> StoreFuture<'_, usize>;
    /// Resolves once every write made before the call is on stable storage.
    fn durable(&self) -> Durable<'_>;
    /// Whether operations block the calling thread rather than wait asynchronously (an
    /// embedded store): a caller on a multi-threaded runtime may move them off its worker.
    fn blocking(&self) -> bool {
        false
    }
    /// Follows commits to `tree` made by *other processes* sharing the store: the value changes
    /// after each (at least once per commit; it carries no meaning of its own). `None` for a
    /// store only this process writes.
    fn changes(&self, _tree: Tree) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Whether this process is the store's only writer; see [`Store::exclusive`].
    fn exclusive(&self) -> bool {
        false
    }
    /// See [`Store::local_dir`].
    fn local_dir(&self) -> Option<&std::path::Path> {
        None
    }
    /// The store as its concrete type, for a component that layers a store of its own over
    /// another (the audit log's files over sled) and must reach it behind `dyn AsyncStore`.
    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        None
    }
}

/// A synchronous [`Store`] (sled) seen as an [`AsyncStore`]: its futures are ready, but for a
/// commit waiting for the store's [`Store::commit_gate`]. The one
/// bridge between the two traits, while engines move to `AsyncStore` one at a time.
#[derive(Debug, Clone)]
pub struct Ready(pub std::sync::Arc<dyn Store>);

impl AsyncStore for Ready {
    fn get<'a>(&'a self, tree: Tree, key: &'a [u8]) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(std::future::ready(self.0.get(tree, key)))
    }

    fn insert<'a>(&'a self, tree: Tree, key: &'a [u8], value: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.0.insert(tree, key, value)))
    }

    fn remove<'a>(&'a self, tree: Tree, key: &'a [u8]) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.0.remove(tree, key)))
    }

    fn commit(&self, tree: Tree, batch: Batch) -> StoreFuture<'_, bool> {
        match self.0.commit_gate() {
            Some(gate) => Box::pin(async move {
                let _turn = gate.write().await;
                self.0.commit(tree, batch)
            }),
            None => Box::pin(std::future::ready(self.0.commit(tree, batch))),
        }
    }

    fn scan<'a>(
        &'a self,
        tree: Tree,
        prefix: &'a [u8],
        start_after: Option<&'a [u8]>,
        limit: usize,
    ) -> StoreFuture<'a, Entries> {
        Box::pin(std::future::ready(self.0.scan(
            tree,
            prefix,
            start_after,
            limit,
        )))
    }

    fn len(&self, tree: Tree) -> StoreFuture<'_, usize> {
        Box::pin(std::future::ready(self.0.len(tree)))
    }

    fn durable(&self) -> Durable<'_> {
        self.0.durable()
    }

    fn blocking(&self) -> bool {
        true
    }

    fn exclusive(&self) -> bool {
        self.0.exclusive()
    }

    fn local_dir(&self) -> Option<&std::path::Path> {
        self.0.local_dir()
    }
}

/// Typed access to the records of one tree, for [`AsyncStore`]s.
pub trait AsyncStoreExt: AsyncStore {
    fn get_record<'a, R: Record + 'a>(
        &'a self,
        key: &'a [u8],
    ) -> impl Future<Output = Result<Option<R>, StoreError>> + Send + 'a {
        async move {
            self.get(R::TREE, key)
                .await?
                .map(|v| decode::<R>(&v))
                .transpose()
        }
    }

    fn put_record<'a, R: Record + Sync + 'a>(
        &'a self,
        key: &'a [u8],
        record: &'a R,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
        self.insert(R::TREE, key, encode(record))
    }

    /// Stores `record` only if `key` is free; `Ok(false)` if it was taken (nothing written).
    fn insert_new<'a, R: Record + Sync + 'a>(
        &'a self,
        key: &'a [u8],
        record: &'a R,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'a {
        self.commit(
            R::TREE,
            Batch::new().expect(key, None).put(key, encode(record)),
        )
    }

    fn scan_records<'a, R: Record + 'a>(
        &'a self,
        prefix: &'a [u8],
        start_after: Option<&'a [u8]>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(Vec<u8>, R)>, StoreError>> + Send + 'a {
        async move {
            self.scan(R::TREE, prefix, start_after, limit)
                .await?
                .into_iter()
                .map(|(k, v)| decode::<R>(&v).map(|r| (k, r)))
                .collect()
        }
    }
}

impl<S: AsyncStore + ?Sized> AsyncStoreExt for S {}

/// Typed access to the records of one tree.
pub trait StoreExt: Store {
    fn get_record<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StoreError> {
        self.get(R::TREE, key)?.map(|v| decode::<R>(&v)).transpose()
    }

    fn put_record<R: Record>(&self, key: &[u8], record: &R) -> Result<(), StoreError> {
        self.insert(R::TREE, key, encode(record))
    }

    /// Stores `record` only if `key` is free; `Ok(false)` if it was taken (nothing written).
    fn insert_new<R: Record>(&self, key: &[u8], record: &R) -> Result<bool, StoreError> {
        self.commit(
            R::TREE,
            Batch::new().expect(key, None).put(key, encode(record)),
        )
    }

    fn scan_records<R: Record>(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, R)>, StoreError> {
        self.scan(R::TREE, prefix, start_after, limit)?
            .into_iter()
            .map(|(k, v)| decode::<R>(&v).map(|r| (k, r)))
            .collect()
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
