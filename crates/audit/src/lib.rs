//! Writ's audit trail: every security decision as a record in the service's own store,
//! hash-chained (each record holds its predecessor's SHA-256), signed at checkpoints with a
//! dedicated Ed25519 key, indexed by grant id, client and subject, pruned only up to a
//! checkpoint so the chain stays verifiable.
//!
//! Two ways in, both durable before the caller answers its client:
//! - a decision that changes state puts an *intent* in the state change's own batch
//!   ([`Auditor::intent`], `writ_store::Batch::audit`): it is durable exactly when the change is;
//! - any other decision is handed to the appender ([`Auditor::record`]), which group-commits
//!   whatever is queued and answers once it is on stable storage.
//!
//! One appender per store chains intents and queued events in order (the head is a
//! compare-and-swap, so replicas sharing a store extend one chain). Readers: [`query`],
//! [`verify`], [`export`].

mod appender;
mod budget;
mod chain;
pub mod export;
pub mod files;
pub mod query;
pub mod record;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use writ_store::{AsyncStore, Batch, StoreError};

pub use appender::proven_key;
pub use chain::fingerprint;

/// A chained record's hash (what its successor holds), from the record as read.
pub fn record_hash(record: &AuditRecord) -> Vec<u8> {
    chain::hash(&writ_store::encode(record))
}
pub use record::AuditRecord;

/// The longest an untrusted string (a client id, a username, a reason) is kept.
pub const MAX_FIELD: usize = 512;
/// At most this many details per record.
pub const MAX_DETAILS: usize = 24;
/// How many queued events may wait for the appender before callers wait to queue.
const QUEUE: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log is unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("the audit log is closed")]
    Closed,
    #[error("the audit log's signing key: {0}")]
    Key(&'static str),
}

/// How a decision went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused on the caller's account (bad credentials, a denied request).
    Refused,
    /// Could not be carried out (overload, an unavailable dependency).
    Failed,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// A decision to audit. Untrusted strings are kept as they are (bounded): the stored record
/// holds each in a field of its own and every rendering escapes it, so none can forge a record
/// or a log line.
#[derive(Debug, Clone)]
pub struct Event(AuditRecord);

impl Event {
    /// `kind` is from Writ's own closed set of event names. The actor is the one the current
    /// task acts for ([`acting_as`]), if any.
    pub fn new(kind: &'static str, outcome: Outcome) -> Self {
        Event(AuditRecord {
            kind: kind.to_owned(),
            outcome: outcome.name().to_owned(),
            time_ms: now_ms(),
            actor: ACTOR.try_with(|a| a.clone()).unwrap_or_default(),
            ..AuditRecord::default()
        })
    }

    pub fn actor(mut self, v: &str) -> Self {
        self.0.actor = bounded(v);
        self
    }

    pub fn client(mut self, v: &str) -> Self {
        self.0.client_id = bounded(v);
        self
    }

    pub fn subject(mut self, v: &str) -> Self {
        self.0.subject = bounded(v);
        self
    }

    pub fn gid(mut self, v: &str) -> Self {
        self.0.gid = bounded(v);
        self
    }

    pub fn audience<S: AsRef<str>>(mut self, v: impl IntoIterator<Item = S>) -> Self {
        self.0.audience = v
            .into_iter()
            .take(MAX_DETAILS)
            .map(|a| bounded(a.as_ref()))
            .collect();
        self
    }

    pub fn reason(mut self, v: &str) -> Self {
        self.0.reason = bounded(v);
        self
    }

    /// A detail by name (Writ's own names); an empty value is left out.
    pub fn detail(mut self, name: &'static str, value: impl std::fmt::Display) -> Self {
        if self.0.details.len() < MAX_DETAILS {
            let value = value.to_string();
            if !value.is_empty() {
                self.0.details.insert(name.to_owned(), bounded(&value));
            }
        }
        self
    }

    pub fn record(&self) -> &AuditRecord {
        &self.0
    }
}

tokio::task_local! {
    static ACTOR: String;
}

/// Runs `f` on behalf of `actor` (an administrator, say): every event created meanwhile names
/// it, so an engine call records who asked without each call passing it along.
pub async fn acting_as<F: std::future::Future>(actor: &str, f: F) -> F::Output {
    ACTOR.scope(bounded(actor), f).await
}

/// The first [`MAX_FIELD`] bytes of `v`, cut at a character boundary.
fn bounded(v: &str) -> String {
    if v.len() <= MAX_FIELD {
        return v.to_owned();
    }
    let mut end = MAX_FIELD;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v[..end].to_owned()
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The log line of a decision (target `writ::audit`): every untrusted string in its escaped
/// (`Debug`) form, so a line break in a client id cannot start a forged line.
fn log(r: &AuditRecord) {
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "writ::audit",
                $level,
                event = %r.kind,
                outcome = %r.outcome,
                service = %r.service,
                actor = ?r.actor,
                client_id = ?r.client_id,
                sub = ?r.subject,
                gid = ?r.gid,
                aud = ?r.audience,
                reason = ?r.reason,
                details = ?r.details,
            )
        };
    }
    if r.outcome == "success" {
        line!(tracing::Level::INFO)
    } else {
        line!(tracing::Level::WARN)
    }
}

/// The audit log's bounds and checkpoints.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Off: decisions are only logged (a deliberate choice, e.g. to measure what the log costs).
    pub enabled: bool,
    /// Records older than this are pruned (up to a checkpoint).
    pub retention: Duration,
    /// At most this many records are kept (older ones pruned, up to a checkpoint).
    pub max_events: u64,
    /// Refusals of each (service, kind) recorded one by one per second, at most; past it they
    /// are counted, and each count is one `refusals_unrecorded` record about a second later
    /// (0: no bound). A flood of refusals then cannot push older records out of the size bound
    /// faster than this.
    pub max_refusals_per_second: u32,
    /// A checkpoint is signed at least this often while records arrive...
    pub checkpoint_interval: Duration,
    /// ...and after at most this many records.
    pub checkpoint_every: u64,
    /// How often pruning runs.
    pub prune_interval: Duration,
    /// On an embedded store, the log's file is synced at most this often: the decisions of a
    /// burst share one sync (each is still answered only once its record is durable). Each
    /// sync costs a disk flush; on a virtual machine, an exit to the host too.
    pub sync_interval: Duration,
}

/// Measured (BENCHMARKS.md): 2 ms beat 1 ms and 0 (a sync per burst as it comes) for 64
/// `client_credentials` callers before the syncs got cheaper (issue 16, "Segment files"); since,
/// a shorter pace costs those callers no more (exchange a few points), and a sign-in, which
/// waits for its record between two browser requests, waits half a millisecond less on
/// average. 1 ms gained the code flow as much as 0.5 ms with 16 browsers and cost less with 64,
/// with at most half the syncs (issue 12, "Session 45").
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_micros(DEFAULT_SYNC_INTERVAL_US);
/// [`DEFAULT_SYNC_INTERVAL`] in microseconds, as flags take it.
pub const DEFAULT_SYNC_INTERVAL_US: u64 = 1_000;
/// The longest pace a flag may ask for: 100 ms, already a long wait for every caller.
pub const MAX_SYNC_INTERVAL_US: u64 = 100_000;
const _: () = assert!(DEFAULT_SYNC_INTERVAL_US <= MAX_SYNC_INTERVAL_US);

pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
pub const DEFAULT_MAX_EVENTS: u64 = 50_000_000;
/// A day of refusals at this rate is 86 million records: a flood at the bound for 14 hours
/// fills the default size bound.
pub const DEFAULT_MAX_REFUSALS_PER_SECOND: u32 = 1_000;
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            retention: DEFAULT_RETENTION,
            max_events: DEFAULT_MAX_EVENTS,
            max_refusals_per_second: DEFAULT_MAX_REFUSALS_PER_SECOND,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            checkpoint_every: 10_000,
            prune_interval: Duration::from_secs(600),
            sync_interval: DEFAULT_SYNC_INTERVAL,
        }
    }
}

/// The audit log's view of `store`: on an embedded store, its records in segment files beside
/// the database ([`files`]), one view per directory in the process; else the store itself.
/// Readers ([`query`], [`verify`], [`export`]) take this view.
pub async fn open_store(store: Arc<dyn AsyncStore>) -> Result<Arc<dyn AsyncStore>, AuditError> {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::Weak;
    static OPEN: tokio::sync::Mutex<Option<HashMap<PathBuf, Weak<files::FileBacked>>>> =
        tokio::sync::Mutex::const_new(None);
    if files::of(&*store).is_some() {
        return Ok(store);
    }
    let Some(dir) = store.local_dir().map(files::dir_of) else {
        return Ok(store);
    };
    let mut open = OPEN.lock().await;
    let open = open.get_or_insert_with(HashMap::new);
    open.retain(|_, w| w.strong_count() > 0);
    if let Some(view) = open.get(&dir).and_then(Weak::upgrade) {
        return Ok(view);
    }
    let view = Arc::new(files::FileBacked::open(store, &dir).await?);
    open.insert(dir, Arc::downgrade(&view));
    Ok(view)
}

/// The handle services audit through. Clones share one appender; [`Auditor::for_service`]
/// names the service that decides.
#[derive(Debug, Clone)]
pub struct Auditor {
    inner: Option<Arc<appender::Shared>>,
    service: &'static str,
}

/// A record written with a state change: [`Intent::attach`] it to the change's batch, and call
/// [`Auditor::written`] once the batch committed.
#[derive(Debug)]
pub struct Intent {
    key: Vec<u8>,
    record: AuditRecord,
}

impl Intent {
    pub fn attach(&self, batch: Batch) -> Batch {
        if self.key.is_empty() {
            return batch;
        }
        batch.audit(self.key.clone(), writ_store::encode(&self.record))
    }
}

impl Auditor {
    /// Decisions are logged, not stored.
    pub fn disabled(service: &'static str) -> Self {
        Auditor {
            inner: None,
            service,
        }
    }

    /// Opens the audit log in `store` (creating its signing key on first use, sealed under
    /// `kek`) and starts its appender. `settings.enabled == false` gives [`Auditor::disabled`].
    pub async fn open(
        store: Arc<dyn AsyncStore>,
        kek: &writ_keyring::KeyEncryptionKey,
        settings: Settings,
        service: &'static str,
    ) -> Result<Self, AuditError> {
        if !settings.enabled {
            return Ok(Self::disabled(service));
        }
        let store = open_store(store).await?;
        if let Some(files) = files::of(&*store) {
            files.log.set_sync_interval(settings.sync_interval);
        }
        let shared = appender::start(store, kek, settings).await?;
        Ok(Auditor {
            inner: Some(shared),
            service,
        })
    }

    /// The same log, decisions attributed to `service`.
    pub fn for_service(&self, service: &'static str) -> Self {
        Auditor {
            inner: self.inner.clone(),
            service,
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The store the log lives in (for queries), if it is on.
    pub fn store(&self) -> Option<Arc<dyn AsyncStore>> {
        self.inner.as_ref().map(|s| s.store.clone())
    }

    /// Records a decision that changes no state here; resolves once the record is durable.
    pub async fn record(&self, event: Event) -> Result<(), AuditError> {
        self.record_all(vec![event]).await
    }

    /// Records what loading a keyring did (`signing_key_created` for each key a first start
    /// made, `signing_keys_sealed` when clear keys were sealed), by `system`. The keyring's
    /// batches are its own: the records follow them, durable when this resolves.
    pub async fn record_keyring_load(
        &self,
        events: writ_keyring::LoadEvents,
    ) -> Result<(), AuditError> {
        let mut out: Vec<Event> = events
            .created
            .iter()
            .map(|key| {
                Event::new("signing_key_created", Outcome::Success)
                    .actor("system")
                    .reason("first start")
                    .detail("kid", &key.kid)
                    .detail("purpose", key.purpose.name())
                    .detail("alg", &key.alg)
            })
            .collect();
        if events.sealed > 0 {
            out.push(
                Event::new("signing_keys_sealed", Outcome::Success)
                    .actor("system")
                    .detail("count", events.sealed),
            );
        }
        if out.is_empty() {
            return Ok(());
        }
        self.record_all(out).await
    }

    /// Records several decisions at once (one wait, however many): durable when it resolves.
    pub async fn record_all(&self, events: Vec<Event>) -> Result<(), AuditError> {
        if let Some(shared) = &self.inner
            && let Some(files) = &shared.files
        {
            // Segment files: chained here, under the log's lock, and answered once synced
            // (a burst of callers shares one sync); no hand-off to the appender.
            if shared.closed() {
                return Err(AuditError::Closed);
            }
            let mut records: Vec<AuditRecord> = events
                .into_iter()
                .filter_map(|event| self.admitted(shared, event))
                .collect();
            if records.is_empty() {
                return Ok(());
            }
            let ticket = files.chain(&mut records, &[])?;
            // A checkpoint is due after every `checkpoint_every` records: the appender signs it.
            let every = shared.checkpoint_every.max(1);
            if records.iter().any(|r| r.seq % every == 0) {
                shared.wake.notify_one();
            }
            // Freed here, not by whichever worker resumes the wait.
            drop(records);
            return Ok(files.synced(ticket).await?);
        }
        let mut waits = Vec::with_capacity(events.len());
        for event in events {
            let Some(shared) = &self.inner else {
                let mut record = event.0;
                record.service = self.service.to_owned();
                log(&record);
                continue;
            };
            if shared.closed() {
                return Err(AuditError::Closed);
            }
            let Some(record) = self.admitted(shared, event) else {
                continue;
            };
            let (done, wait) = oneshot::channel();
            shared
                .queue
                .send(appender::Queued { record, done })
                .await
                .map_err(|_| AuditError::Closed)?;
            waits.push(wait);
        }
        for wait in waits {
            wait.await.map_err(|_| AuditError::Closed)??;
        }
        Ok(())
    }

    /// `event` as this service's record, logged, if the refusal budget lets it be recorded on
    /// its own (else it is counted, and neither stored nor logged one by one).
    fn admitted(&self, shared: &appender::Shared, event: Event) -> Option<AuditRecord> {
        let mut record = event.0;
        record.service = self.service.to_owned();
        if !shared.refusals.admit(&record) {
            tracing::debug!(
                target: "writ::audit",
                event = %record.kind,
                client_id = ?record.client_id,
                reason = ?record.reason,
                "a refusal past the budget: counted, not recorded on its own"
            );
            return None;
        }
        log(&record);
        Some(record)
    }

    /// A record to write with a state change (see [`Intent`]).
    pub fn intent(&self, event: Event) -> Intent {
        let mut record = event.0;
        record.service = self.service.to_owned();
        let key = match &self.inner {
            Some(_) => record::intent_key(record.time_ms),
            None => Vec::new(),
        };
        Intent { key, record }
    }

    /// The batch holding `intent` committed: logs the decision and lets the appender chain it.
    pub fn written(&self, intent: Intent) {
        log(&intent.record);
        if let Some(shared) = &self.inner {
            shared
                .intents
                .store(true, std::sync::atomic::Ordering::Release);
            shared.wake.notify_one();
        }
    }

    /// Chains what is queued, stops the appender and waits for it (the store is released when
    /// every handle is gone). Later records fail with [`AuditError::Closed`].
    pub async fn close(&self) {
        if let Some(shared) = &self.inner {
            shared.close().await;
        }
    }
}
