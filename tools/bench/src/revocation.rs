//! The revocation service under load: the real `writ_revocation::start` over a durable
//! revocation log on a fresh on-disk sled store, with callers authenticated by JWTs the
//! in-process authorization server mints for itself (`service_token`).
//!
//! - Throughput: `Revoke` with `--concurrency` callers in flight, each call answered only once
//!   its entries are fsynced (one entry per call, then a batched variant).
//! - Propagation: revocations issued one at a time, `--gap-ms` apart; for each, the time from the
//!   `Revoke` reply reaching the caller to the event being applied (`RevocationSet::apply`) by the
//!   one subscriber, or by the last (and the first) of `--subscribers`. Subscribers are raw Watch
//!   streams, each with its own `RevocationSet`, doing what the `Watcher` does per message
//!   (decode, apply); they share `--watch-connections` HTTP/2 connections. The publisher has its
//!   own connection, as a producer in another process would.
//! - Memory: a `RevocationSet` holding `--set-entries` entries, filled through the initial
//!   snapshot a new subscriber receives and through individual events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};
use writ_oauth::AuthorizationServer;
use writ_proto::revocation::revocation_service_client::RevocationServiceClient;
use writ_proto::revocation::{
    RevocationEntry, RevocationEvent, RevocationKind, RevokeRequest, SnapshotBegin, SnapshotEnd,
    WatchRequest, WatchResponse, watch_response,
};
use writ_revocation_client::RevocationSet;
use writ_revocation_log::RevocationLog;
use writ_store::SledStore;

use crate::{Backend, Cli, Outcome, Server, Services, channels, drive_probed};

/// Options of the `revocation` scenarios.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Entries per call in the batched Revoke variant (0 skips it).
    #[arg(long, default_value_t = 16)]
    pub revoke_batch: usize,
    /// Watch subscribers in the fan-out propagation scenario.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// HTTP/2 connections the fan-out subscribers share.
    #[arg(long, default_value_t = 20)]
    pub watch_connections: usize,
    /// Revocations measured per propagation scenario (after 20 unmeasured ones).
    #[arg(long, default_value_t = 300)]
    pub revocations: usize,
    /// Pause between two measured revocations, in milliseconds.
    #[arg(long, default_value_t = 15)]
    pub gap_ms: u64,
    /// Entries in the client-side set whose memory is measured.
    #[arg(long, default_value_t = 1_000_000)]
    pub set_entries: usize,
}

/// The revocation service on its own runtime, trusting the authorization server beside it (as
/// under `writ up`, through `writ::platform`).
struct RevocationServer {
    /// Kept running while the scenario runs.
    _server: Server,
    engine: Arc<AuthorizationServer>,
    /// The revocation log's store on sled (for its flush count).
    store: Option<Arc<SledStore>>,
    log: Arc<RevocationLog>,
    url: String,
}

impl RevocationServer {
    fn start(backend: &Backend) -> anyhow::Result<RevocationServer> {
        let server = Server::start_on(backend, false, Services::AuthzAndRevocation, |c| {
            // Every subscriber here presents the same caller's token: lift the per-caller cap.
            if let Some(r) = &mut c.revocation {
                r.service.subscriber.max_subscribers_per_caller = 10_000;
            }
        })?;
        let platform = server.platform()?;
        let revocation = platform
            .revocation
            .as_ref()
            .context("the revocation service runs")?;
        Ok(RevocationServer {
            engine: server.engine.clone(),
            store: revocation.store.sled.clone(),
            log: revocation.log.clone(),
            url: platform.url(revocation.grpc_addr),
            _server: server,
        })
    }

    /// `authorization` metadata for a token the authorization server mints for itself.
    fn bearer(&self, scope: &str) -> anyhow::Result<MetadataValue<tonic::metadata::Ascii>> {
        let (jwt, _) = self
            .engine
            .service_token(writ_vocabulary::names::REVOCATION_AUDIENCE, scope)?;
        Ok(writ_client::bearer_value(&jwt)?)
    }
}

fn authed<T>(message: T, bearer: &MetadataValue<tonic::metadata::Ascii>) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert("authorization", bearer.clone());
    r
}

/// A 22-character token id (the length of the server's `jti`s), distinct for every `n` and
/// spread like random ones (splitmix64 is a bijection).
pub(crate) fn token_id(n: u64) -> String {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    format!("{z:016x}{:06x}", n & 0xff_ffff)
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A token-id revocation, expiring in an hour (an access token's lifetime at most).
fn entry(n: u64, now: i64) -> RevocationEntry {
    RevocationEntry {
        kind: RevocationKind::TokenId as i32,
        value: token_id(n),
        expires_at: now + 3600,
        reason: String::new(),
        not_before: 0,
        issuer: String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput

/// Durable `Revoke` throughput: one entry per call, then `--revoke-batch` entries per call.
/// `probed` is the number of fsyncs of the revocation log in the measured window.
pub fn throughput(cli: &Cli, load: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Outcome>> {
    let mut out = vec![log_append(cli, load)?, revoke(cli, load, 1)?];
    if cli.revocation.revoke_batch > 1 {
        out.push(revoke(cli, load, cli.revocation.revoke_batch)?);
    }
    Ok(out)
}

/// Reads the whole log back: every sequence from 1 to the head, once, in order, and at least
/// `acknowledged` of them (calls cut off at the end of the window may have added more).
async fn verify_log(log: &RevocationLog, acknowledged: u64) -> anyhow::Result<()> {
    let head = log.head();
    let mut cursor = 0;
    while cursor < head {
        let events = log.read(cursor, 4096).await?;
        anyhow::ensure!(
            !events.is_empty(),
            "the log stops at {cursor} before its head {head}"
        );
        for e in events {
            anyhow::ensure!(
                e.sequence == cursor + 1,
                "sequence {} follows {cursor}",
                e.sequence
            );
            cursor = e.sequence;
        }
    }
    anyhow::ensure!(
        head >= acknowledged,
        "{acknowledged} entries acknowledged, head {head}"
    );
    Ok(())
}

/// The storage ceiling: `RevocationLog::append` called in-process (no gRPC, no authentication),
/// one entry per call, durable.
fn log_append(cli: &Cli, load: &tokio::runtime::Runtime) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SledStore::open(&dir.path().join("revocation"))?);
    let log = load.block_on(RevocationLog::open(
        Arc::new(writ_store::Ready(store.clone())),
        Default::default(),
    ))?;
    let next = Arc::new(AtomicU64::new(0));
    let appender = log.clone();
    let outcome = load.block_on(drive_probed(
        cli,
        "RevocationLog::append in-process (no gRPC, no auth), 1 entry per call, durable",
        move || store.flush_count(),
        move |_| {
            let log = appender.clone();
            let now = unix_now();
            let n = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let e = writ_proto::convert::revocation_entry(entry(n, now), now);
                match e {
                    Ok(e) => log.append(&[e], now).await.is_ok(),
                    Err(_) => false,
                }
            }
        },
    ));
    load.block_on(verify_log(&log, outcome.ok))?;
    Ok(outcome)
}

fn revoke(cli: &Cli, load: &tokio::runtime::Runtime, per_call: usize) -> anyhow::Result<Outcome> {
    revoke_on(cli, load, &Backend::Sled, per_call, "")
}

pub(crate) fn revoke_on(
    cli: &Cli,
    load: &tokio::runtime::Runtime,
    backend: &Backend,
    per_call: usize,
    suffix: &str,
) -> anyhow::Result<Outcome> {
    let server = RevocationServer::start(backend)?;
    let bearer = server.bearer(writ_vocabulary::names::REVOCATION_PUBLISH_SCOPE)?;
    let store = server.store.clone();
    let mut outcome = load.block_on(async {
        let chans = Arc::new(channels(&server.url, None, cli.connections).await?);
        let next = Arc::new(AtomicU64::new(0));
        let name = if per_call == 1 {
            format!("Revoke over gRPC, 1 entry per call, durable{suffix}")
        } else {
            format!("Revoke over gRPC, {per_call} entries per call, durable (entries/s){suffix}")
        };
        anyhow::Ok(
            drive_probed(
                cli,
                &name,
                move || store.as_ref().map_or(0, |s| s.flush_count()),
                move |worker| {
                    let mut client =
                        RevocationServiceClient::new(chans[worker % chans.len()].clone());
                    let now = unix_now();
                    let first = next.fetch_add(per_call as u64, Ordering::Relaxed);
                    let entries = (first..first + per_call as u64)
                        .map(|n| entry(n, now))
                        .collect();
                    let request = authed(RevokeRequest { entries }, &bearer);
                    async move { client.revoke(request).await.is_ok() }
                },
            )
            .await,
        )
    })?;
    outcome.per_call = per_call as u64;
    load.block_on(verify_log(&server.log, outcome.ok * outcome.per_call))?;
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------------
// Propagation

/// One propagation scenario's figures, in milliseconds relative to when the `Revoke` reply reached
/// the caller: negative when the subscriber applied the event before that (the service releases
/// the reply and the event at the same commit, so they race).
pub struct Propagation {
    name: String,
    subscribers: usize,
    connections: usize,
    /// Revoke reply → applied by the last subscriber, per revocation.
    last_from_reply: Vec<f64>,
    /// Revoke reply → applied by the first subscriber.
    first_from_reply: Vec<f64>,
    /// Revoke call → applied by the last subscriber (includes the fsync).
    last_from_call: Vec<f64>,
    /// The Revoke round trip alone.
    revoke_rtt: Vec<f64>,
}

/// Signed milliseconds from `from` to `to`.
fn ms_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -((from - to).as_secs_f64() * 1e3)
    }
}

/// p50, p99 and max of signed milliseconds.
fn quantiles(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    let at = |p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (at(0.50), at(0.99), v.last().copied().unwrap_or_default())
}

impl Propagation {
    pub fn header() -> String {
        "| propagation: Revoke reply reaches the caller → event applied | revocations | p50 ms | p99 ms | max ms | Revoke call → applied, p50 / p99 ms | Revoke round trip p50 ms |\n|---|---:|---:|---:|---:|---:|---:|".to_owned()
    }

    pub fn row(&self) -> String {
        let (p50, p99, max) = quantiles(&self.last_from_reply);
        let (call50, call99, _) = quantiles(&self.last_from_call);
        let (rtt50, _, _) = quantiles(&self.revoke_rtt);
        let mut row = format!(
            "| {} | {} | {p50:.2} | {p99:.2} | {max:.2} | {call50:.2} / {call99:.2} | {rtt50:.2} |",
            self.name,
            self.last_from_reply.len(),
        );
        if self.subscribers > 1 {
            let (p50, p99, max) = quantiles(&self.first_from_reply);
            row.push_str(&format!(
                "\n| first of the {} subscribers | {} | {p50:.2} | {p99:.2} | {max:.2} | | |",
                self.subscribers,
                self.first_from_reply.len(),
            ));
        }
        row
    }

    pub fn note(&self) -> String {
        let before = self.last_from_reply.iter().filter(|d| **d < 0.0).count();
        format!(
            "propagation, {} subscriber(s) over {} connection(s): in {before} of {} revocations the {} had applied the event before the Revoke reply reached the caller (negative figures)",
            self.subscribers,
            self.connections,
            self.last_from_reply.len(),
            if self.subscribers > 1 {
                "last subscriber"
            } else {
                "subscriber"
            },
        )
    }
}

/// Propagation to one subscriber, then to `--subscribers`.
pub fn propagation(
    args: &Args,
    load: &tokio::runtime::Runtime,
) -> anyhow::Result<Vec<Propagation>> {
    let mut out = vec![propagate(args, load, 1, 1)?];
    if args.subscribers > 1 {
        out.push(propagate(
            args,
            load,
            args.subscribers,
            args.watch_connections.max(1),
        )?);
    }
    Ok(out)
}

/// When the first and the last subscriber applied a sequence.
enum Mark {
    First(u64, Instant),
    Last(u64, Instant),
}

/// Counts, per sequence, the subscribers that applied it; the first and the last report.
struct Tracker {
    subscribers: u32,
    applied: Vec<AtomicU32>,
    marks: tokio::sync::mpsc::UnboundedSender<Mark>,
}

impl Tracker {
    fn applied(&self, sequence: u64) {
        let Some(count) = self.applied.get(sequence as usize) else {
            return;
        };
        // Read the clock after counting: the subscriber that completes the count is the last to
        // apply, and every other one applied before it counted.
        let n = count.fetch_add(1, Ordering::AcqRel) + 1;
        if n == 1 {
            let _ = self.marks.send(Mark::First(sequence, Instant::now()));
        }
        if n == self.subscribers {
            let _ = self.marks.send(Mark::Last(sequence, Instant::now()));
        }
    }
}

/// One subscriber: a Watch stream from the start of the log, each message applied to its own set
/// as the `Watcher` applies it.
async fn subscribe(
    channel: Channel,
    bearer: MetadataValue<tonic::metadata::Ascii>,
    tracker: Arc<Tracker>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<(), Status> {
    let set = RevocationSet::new();
    let mut client = RevocationServiceClient::new(channel);
    let mut stream = client
        .watch(authed(WatchRequest { from_sequence: 0 }, &bearer))
        .await?
        .into_inner();
    let _ = ready.send(()).await;
    drop(ready);
    while let Some(message) = stream.message().await? {
        set.apply(&message)
            .map_err(|e| Status::internal(format!("out of order: {}", e.0)))?;
        if let Some(watch_response::Event::Revocation(ev)) = &message.event {
            tracker.applied(ev.sequence);
        }
    }
    Ok(())
}

const WARMUP_REVOCATIONS: usize = 20;

fn propagate(
    args: &Args,
    load: &tokio::runtime::Runtime,
    subscribers: usize,
    connections: usize,
) -> anyhow::Result<Propagation> {
    propagate_on(args, load, &Backend::Sled, subscribers, connections, "")
}

pub(crate) fn propagate_on(
    args: &Args,
    load: &tokio::runtime::Runtime,
    backend: &Backend,
    subscribers: usize,
    connections: usize,
    suffix: &str,
) -> anyhow::Result<Propagation> {
    let server = RevocationServer::start(backend)?;
    let publish = server.bearer(writ_vocabulary::names::REVOCATION_PUBLISH_SCOPE)?;
    let watch = server.bearer(writ_vocabulary::names::REVOCATION_WATCH_SCOPE)?;
    let total = WARMUP_REVOCATIONS + args.revocations;
    let gap = Duration::from_millis(args.gap_ms);
    load.block_on(async {
        let (marks_tx, mut marks) = tokio::sync::mpsc::unbounded_channel();
        let tracker = Arc::new(Tracker {
            subscribers: subscribers as u32,
            applied: (0..=total as u64 + 1).map(|_| AtomicU32::new(0)).collect(),
            marks: marks_tx,
        });
        let watch_chans = channels(&server.url, None, connections).await?;
        let (ready_tx, mut ready) = tokio::sync::mpsc::channel(subscribers);
        let mut tasks = Vec::with_capacity(subscribers);
        for i in 0..subscribers {
            let (chan, bearer, tracker, ready) = (
                watch_chans[i % connections].clone(),
                watch.clone(),
                tracker.clone(),
                ready_tx.clone(),
            );
            tasks.push(tokio::spawn(async move {
                if let Err(e) = subscribe(chan, bearer, tracker, ready).await {
                    eprintln!("subscriber {i} stopped: {e}");
                }
            }));
        }
        drop(ready_tx);
        for _ in 0..subscribers {
            tokio::time::timeout(Duration::from_secs(30), ready.recv())
                .await
                .context("subscribers did not all start within 30 s")?
                .context("a subscriber failed to start")?;
        }

        let publisher = channels(&server.url, None, 1).await?.remove(0);
        let mut client = RevocationServiceClient::new(publisher);
        let mut p = Propagation {
            name: if subscribers == 1 {
                format!("1 subscriber{suffix}")
            } else {
                format!("last of {subscribers} subscribers ({connections} connections){suffix}")
            },
            subscribers,
            connections,
            last_from_reply: Vec::new(),
            first_from_reply: Vec::new(),
            last_from_call: Vec::new(),
            revoke_rtt: Vec::new(),
        };
        let now = unix_now();
        for i in 0..total {
            let called = Instant::now();
            let sequence = client
                .revoke(authed(
                    RevokeRequest {
                        entries: vec![entry(i as u64, now)],
                    },
                    &publish,
                ))
                .await
                .context("Revoke")?
                .into_inner()
                .sequence;
            let replied = Instant::now();
            let (mut first, mut last) = (None, None);
            while first.is_none() || last.is_none() {
                let mark = tokio::time::timeout(Duration::from_secs(10), marks.recv())
                    .await
                    .with_context(|| {
                        format!("sequence {sequence} not applied everywhere within 10 s")
                    })?
                    .context("every subscriber stopped")?;
                match mark {
                    Mark::First(s, at) if s == sequence => first = Some(at),
                    Mark::Last(s, at) if s == sequence => last = Some(at),
                    _ => anyhow::bail!("a mark for sequence other than {sequence}"),
                }
            }
            let (first, last) = (first.unwrap_or(replied), last.unwrap_or(replied));
            if i >= WARMUP_REVOCATIONS {
                p.last_from_reply.push(ms_between(replied, last));
                p.first_from_reply.push(ms_between(replied, first));
                p.last_from_call.push(ms_between(called, last));
                p.revoke_rtt.push(ms_between(called, replied));
            }
            tokio::time::sleep(gap).await;
        }
        for t in tasks {
            t.abort();
        }
        anyhow::Ok(p)
    })
}

// ---------------------------------------------------------------------------------------------
// Memory

/// The client-side set at `--set-entries` entries.
pub struct Memory {
    name: String,
    entries: usize,
    table_bytes: usize,
    rss_delta: i64,
    /// The high-water mark's rise above the resident size before (`None` when it did not rise
    /// past an earlier peak).
    peak_delta: Option<i64>,
    seconds: f64,
}

const MIB: f64 = 1024.0 * 1024.0;

impl Memory {
    pub fn header() -> String {
        "| client-side RevocationSet | entries | table_bytes MiB | RSS delta MiB | peak RSS delta MiB | bytes per entry (RSS) | applies/s |\n|---|---:|---:|---:|---:|---:|---:|".to_owned()
    }

    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {:.1} | {:.1} | {} | {:.1} | {:.0} |",
            self.name,
            self.entries,
            self.table_bytes as f64 / MIB,
            self.rss_delta as f64 / MIB,
            self.peak_delta
                .map_or("n/a".to_owned(), |p| format!("{:.1}", p as f64 / MIB)),
            self.rss_delta as f64 / self.entries.max(1) as f64,
            self.entries as f64 / self.seconds,
        )
    }
}

/// `VmRSS` and `VmHWM` of this process, in bytes, from /proc/self/status.
pub(crate) fn rss() -> anyhow::Result<(i64, i64)> {
    let fields = proc_status("self", &["VmRSS:", "VmHWM:"])?;
    Ok((fields[0], fields[1]))
}

/// The memory fields `names` (`VmRSS:`, say) of process `pid` (or `self`), in bytes.
pub(crate) fn proc_status(pid: &str, names: &[&str]) -> anyhow::Result<Vec<i64>> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    names
        .iter()
        .map(|name| {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in {path}"))?;
            let kb: i64 = line
                .trim_start_matches(name)
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()?;
            Ok(kb * 1024)
        })
        .collect()
}

/// The highest of `read()` (a resident size), sampled every 10 ms while `work` runs, and
/// `work`'s outcome.
pub(crate) fn peak_while<T>(
    read: impl Fn() -> anyhow::Result<i64> + Send + 'static,
    work: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(i64, T)> {
    use std::sync::atomic::{AtomicBool, AtomicI64};
    let peak = Arc::new(AtomicI64::new(read()?));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(now) = read() {
                    peak.fetch_max(now, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let outcome = work();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    Ok((peak.load(Ordering::Relaxed), outcome?))
}

/// Applies a new subscriber's Watch messages to `set` until it holds `live` revocations and
/// knows it is current, or `deadline`; how many messages that took.
pub(crate) async fn catch_up(
    stream: &mut tonic::Streaming<WatchResponse>,
    set: &RevocationSet,
    live: usize,
    deadline: tokio::time::Instant,
) -> anyhow::Result<u64> {
    let mut messages = 0u64;
    while set.staleness().is_none() || set.len() < live {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .context("a new subscriber did not catch up in time")??
            .context("the Watch stream ended")?;
        set.apply(&message)
            .map_err(|e| anyhow::anyhow!("out of order: {e:?}"))?;
        messages += 1;
    }
    Ok(messages)
}

fn event(sequence: u64, n: u64, now: i64) -> WatchResponse {
    WatchResponse {
        event: Some(watch_response::Event::Revocation(RevocationEvent {
            sequence,
            entry: Some(entry(n, now)),
        })),
    }
}

/// Fills a set as a new subscriber does (one snapshot, which announces its size), then one as a
/// subscriber following the log does (one event at a time, the table growing as it goes).
/// Each set is dropped before the next is measured.
pub fn memory(args: &Args) -> anyhow::Result<Vec<Memory>> {
    let n = args.set_entries as u64;
    let now = unix_now();
    let mut out = Vec::new();
    for snapshot in [true, false] {
        let (rss_before, hwm_before) = rss()?;
        let started = Instant::now();
        let set = RevocationSet::new();
        let apply = |m: &WatchResponse| {
            set.apply(m)
                .map_err(|e| anyhow::anyhow!("out of order: {}", e.0))
        };
        if snapshot {
            apply(&WatchResponse {
                event: Some(watch_response::Event::SnapshotBegin(SnapshotBegin {
                    sequence: n,
                    entry_count: n,
                })),
            })?;
            for i in 1..=n {
                apply(&event(i, i, now))?;
            }
            apply(&WatchResponse {
                event: Some(watch_response::Event::SnapshotEnd(SnapshotEnd {
                    sequence: n,
                })),
            })?;
        } else {
            for i in 1..=n {
                apply(&event(i, i, now))?;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let (rss_after, hwm_after) = rss()?;
        anyhow::ensure!(
            set.len() == n as usize,
            "the set holds {} entries",
            set.len()
        );
        out.push(Memory {
            name: if snapshot {
                "filled by a snapshot".to_owned()
            } else {
                "filled event by event".to_owned()
            },
            entries: set.len(),
            table_bytes: set.table_bytes(),
            rss_delta: rss_after - rss_before,
            peak_delta: (hwm_after > hwm_before).then_some(hwm_after - rss_before),
            seconds,
        });
        drop(set);
    }
    Ok(out)
}
