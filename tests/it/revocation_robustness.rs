//! The revocation feed under fire: thousands of revocations from concurrent producers while
//! subscribers are disconnected at random and the service is restarted, `kill -9` included. At
//! the end every subscriber holds exactly the committed set: nothing acknowledged is missing,
//! nothing arrived out of order or twice (SECURITY.md 25, 28, 31).
//!
//! The service is the real binary (`writ up`) on fixed ports, so clients reconnect to the same
//! address and tokens stay valid across restarts. Batch sizes, delays, disconnects and the
//! restart plan come from a seeded PRNG (fixed by default; `WRIT_ROBUSTNESS_SEED=<n>` picks
//! another, and the seed is printed). Thread timing still varies from run to run.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::transport::Channel;
use tonic::{Code, Status};
use writ_client::BearerSource;
use writ_proto::admin as pb_admin;
use writ_proto::admin::admin_service_client::AdminServiceClient;
use writ_proto::authz::TokenRequest;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::revocation::revocation_service_client::RevocationServiceClient;
use writ_proto::revocation::watch_response::Event;
use writ_proto::revocation::{self as pb, GetStatusRequest, RevokeRequest, WatchRequest};
use writ_revocation_client::{RevocationSet, WatchConfig, Watcher};
use writ_tests::{bearer, revokes_exactly, wait_bounded};
use writ_token::RevocationKind;

const WRIT: &str = env!("CARGO_BIN_EXE_writ-under-test");

const PRODUCERS: usize = 4;
const PER_PRODUCER: usize = 1000;
const WATCHERS: usize = 6;
const RAW_SUBSCRIBERS: usize = 3;
/// Everything, start to finish.
const BOUND: Duration = Duration::from_secs(55);
/// The service becoming ready, stopping on SIGTERM, and subscribers catching up at the end.
const READY: Duration = Duration::from_secs(15);

/// xorshift64*: small, seeded, good enough to pick delays and batch sizes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    authz: u16,
    http: u16,
    revocation: u16,
    admin: u16,
}

impl Ports {
    /// Four free ports below the ephemeral range, so no outgoing connection takes one while the
    /// service is down between restarts. Not from the test's seed: two runs at once must not
    /// pick the same ones.
    fn pick() -> Ports {
        let mut rng = Rng::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                ^ u64::from(std::process::id()) << 32,
        );
        let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(32768);
        let hi = ephemeral_start.saturating_sub(1);
        let lo = hi.saturating_sub(12_000).max(10_000);
        let (lo, hi) = if lo + 100 < hi {
            (lo, hi)
        } else {
            (20_000, 30_000)
        };
        let mut free = Vec::new();
        while free.len() < 4 {
            let port = rng.range(u64::from(lo), u64::from(hi)) as u16;
            if !free.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                free.push(port);
            }
        }
        Ports {
            authz: free[0],
            http: free[1],
            revocation: free[2],
            admin: free[3],
        }
    }
}

/// `writ up` as a child process on fixed ports; restartable on the same data directory.
struct Service {
    dir: PathBuf,
    ports: Ports,
    logs: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl Service {
    fn new(dir: &Path, ports: Ports) -> Service {
        Service {
            dir: dir.to_path_buf(),
            ports,
            logs: tempfile::tempdir().unwrap(),
            child: None,
            starts: 0,
        }
    }

    fn authz_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.authz)
    }

    /// The authorization server's issuer (its HTTP facade's URL).
    fn issuer(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.http)
    }

    fn admin_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.admin)
    }

    fn revocation_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.revocation)
    }

    /// Starts and waits (bounded) for this process's endpoints.json. A port briefly taken by
    /// someone else makes the process exit: it is started again.
    fn start(&mut self) {
        assert!(self.child.is_none());
        let deadline = Instant::now() + READY;
        loop {
            self.starts += 1;
            let log = |name: &str| {
                File::create(self.logs.path().join(format!("{}.{name}", self.starts))).unwrap()
            };
            let mut cmd = Command::new(WRIT);
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("WRIT_") {
                    cmd.env_remove(key);
                }
            }
            let mut child = cmd
                .args(["up", "--data-dir"])
                .arg(&self.dir)
                .args(["--authz-port", &self.ports.authz.to_string()])
                .args(["--authz-http-port", &self.ports.http.to_string()])
                .args(["--revocation-port", &self.ports.revocation.to_string()])
                .args(["--admin-port", &self.ports.admin.to_string()])
                .args(["--gateway-port", "0", "--gateway-http-port", "0"])
                .args(["--authz-mtls-port", "0"])
                // The producers below revoke the authorization server's tokens.
                .args(["--revocation-producer", "producer="])
                // The model compares expiries exactly: keep the producers' own.
                .args(["--revocation-min-entry-lifetime", "0"])
                // The STS is not under test here: any free ports.
                .args(["--sts-port", "0", "--sts-http-port", "0"])
                .args(["--ops-listen", "127.0.0.1:0"])
                .env("WRIT_LOG", "warn")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log("stdout"))
                .stderr(log("stderr"))
                .spawn()
                .unwrap();
            let pid = u64::from(child.id());
            let path = self.dir.join(writ::platform::ENDPOINTS_FILE);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(
                        Instant::now() < deadline,
                        "writ up keeps exiting ({status})\n{}",
                        self.logs()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
                let ours = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                    .is_some_and(|e| e["pid"].as_u64() == Some(pid));
                if ours {
                    self.child = Some(child);
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "writ up not ready within {READY:?}\n{}",
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// SIGKILL, and wait until the process is gone (its store locks released).
    fn kill_9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM: the service must stop by itself, promptly, subscribers connected or not.
    /// Returns how long it took.
    fn terminate(&mut self) -> Duration {
        let asked = Instant::now();
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let exit = wait_bounded(&mut child, READY);
        if exit.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "writ up did not stop within {READY:?} of SIGTERM\n{}",
                self.logs()
            );
        }
        asked.elapsed()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for n in 1..=self.starts {
            for name in ["stdout", "stderr"] {
                let text = std::fs::read_to_string(self.logs.path().join(format!("{n}.{name}")))
                    .unwrap_or_default();
                if !text.is_empty() {
                    out.push_str(&format!("--- writ up #{n} {name} ---\n{text}\n"));
                }
            }
        }
        out
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `writ up` started on `data` (waited for on a blocking thread): the service, the CA it made
/// and the admin credential it wrote.
async fn start_up(data: &Path) -> (Service, String, String) {
    let mut service = Service::new(data, Ports::pick());
    let service = tokio::task::spawn_blocking(move || {
        service.start();
        service
    })
    .await
    .unwrap();
    let ca = std::fs::read_to_string(data.join(writ_tls::CA_CERT_FILE)).unwrap();
    let admin = std::fs::read_to_string(data.join(writ::platform::ADMIN_TOKEN_FILE)).unwrap();
    (service, ca, admin.trim().to_owned())
}

type Admin = AdminServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, writ_client::StaticBearer>,
>;

/// Registers a confidential client `id` allowed `scope` at the revocation service: its tokens.
async fn registered(admin: &mut Admin, authz: Channel, id: &str, scope: &'static str) -> Tokens {
    let created = admin
        .create_client(pb_admin::CreateClientRequest {
            client: Some(pb_admin::Client {
                client_id: id.into(),
                client_type: pb_admin::ClientType::Confidential as i32,
                grant_types: vec!["client_credentials".into()],
                scope: scope.into(),
                audience: vec![writ_vocabulary::names::REVOCATION_AUDIENCE.into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    Tokens {
        authz,
        id: id.into(),
        secret: created.client_secret,
        scope,
    }
}

/// Fetches a client_credentials token from the authorization server on every call, as a real
/// subscriber's provider would (and fails while the service is down).
#[derive(Clone)]
struct Tokens {
    authz: Channel,
    id: String,
    secret: String,
    scope: &'static str,
}

impl Tokens {
    async fn fetch(&self) -> Result<String, Status> {
        AuthorizationServiceClient::new(self.authz.clone())
            .token(TokenRequest {
                grant_type: "client_credentials".into(),
                client_id: self.id.clone(),
                client_secret: self.secret.clone(),
                scope: self.scope.into(),
                audience: vec![writ_vocabulary::names::REVOCATION_AUDIENCE.into()],
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().access_token)
    }
}

impl BearerSource for Tokens {
    fn bearer(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Arc<str>, Status>> + Send + '_>>
    {
        Box::pin(async move { self.fetch().await.map(Arc::from) })
    }
}

type Key = (i32, String);

/// What an entry leaves in a set: the union of everything revoked for its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Merged {
    expires_at: i64,
    not_before: i64,
}

fn merge_into(model: &mut HashMap<Key, Merged>, e: &pb::RevocationEntry) {
    let m = model.entry((e.kind, e.value.clone())).or_insert(Merged {
        expires_at: e.expires_at,
        not_before: e.not_before,
    });
    m.expires_at = m.expires_at.max(e.expires_at);
    m.not_before = m.not_before.max(e.not_before);
}

/// The revocations producer `p` will make: every kind, some later cut-offs for subjects and
/// clients it already revoked (appended, merged), some exact repeats (idempotent).
fn workload(p: usize, rng: &mut Rng, now: i64) -> Vec<pb::RevocationEntry> {
    let mut out: Vec<pb::RevocationEntry> = Vec::with_capacity(PER_PRODUCER);
    while out.len() < PER_PRODUCER {
        let j = out.len();
        if j > 10 && rng.chance(6) {
            let earlier = out[rng.range(0, j as u64 - 1) as usize].clone();
            let kind = RevocationKind::from_i32(earlier.kind).unwrap();
            let mut again = earlier;
            if kind.uses_not_before() && rng.chance(50) {
                again.not_before += rng.range(1, 100) as i64;
            }
            out.push(again);
            continue;
        }
        let kind = RevocationKind::ALL[rng.range(0, 5) as usize];
        let value = match kind {
            RevocationKind::BiscuitRevocationId => format!("{p:04x}{j:08x}"),
            _ => format!("p{p}-{j}-{}", kind.name()),
        };
        out.push(pb::RevocationEntry {
            kind: kind as i32,
            value,
            expires_at: now + 3600 + rng.range(0, 600) as i64,
            reason: format!("robustness {p}/{j}"),
            not_before: if kind.uses_not_before() {
                now - rng.range(0, 1000) as i64
            } else {
                0
            },
            issuer: String::new(),
        });
    }
    out
}

/// One acknowledged Revoke: its entries and the sequence the service answered.
struct Ack {
    entries: Vec<pb::RevocationEntry>,
    sequence: u64,
}

#[derive(Default)]
struct ProducerStats {
    calls: u64,
    failures: u64,
}

async fn produce(
    p: usize,
    mut rng: Rng,
    entries: Vec<pb::RevocationEntry>,
    channel: Channel,
    tokens: Tokens,
    acks: Arc<Mutex<Vec<Ack>>>,
    deadline: Instant,
) -> ProducerStats {
    let mut stats = ProducerStats::default();
    let mut token: Option<String> = None;
    let mut i = 0;
    while i < entries.len() {
        let n = (rng.range(1, 25) as usize).min(entries.len() - i);
        let batch = entries[i..i + n].to_vec();
        // At least once: a call that failed may or may not have committed, so it is retried
        // as it was (the service is idempotent).
        loop {
            assert!(
                Instant::now() < deadline,
                "producer {p} did not finish in time"
            );
            let presented = match &token {
                Some(t) => t.clone(),
                None => match tokens.fetch().await {
                    Ok(t) => {
                        token = Some(t.clone());
                        t
                    }
                    Err(_) => {
                        tokio::time::sleep(rng.millis(20, 80)).await;
                        continue;
                    }
                },
            };
            stats.calls += 1;
            let mut client =
                RevocationServiceClient::with_interceptor(channel.clone(), bearer(&presented));
            match client
                .revoke(RevokeRequest {
                    entries: batch.clone(),
                })
                .await
            {
                Ok(r) => {
                    acks.lock().unwrap().push(Ack {
                        entries: batch,
                        sequence: r.into_inner().sequence,
                    });
                    break;
                }
                Err(s) => {
                    stats.failures += 1;
                    assert!(
                        matches!(
                            s.code(),
                            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
                        ),
                        "producer {p}: only the outage may fail a call: {s:?}"
                    );
                    tokio::time::sleep(rng.millis(20, 100)).await;
                }
            }
        }
        i += n;
        tokio::time::sleep(rng.millis(20, 150)).await;
    }
    stats
}

/// What a raw subscriber saw.
#[derive(Default)]
struct RawOutcome {
    model: HashMap<Key, Merged>,
    /// Every sequence applied as a delta, in the order seen.
    sequences: Vec<u64>,
    snapshots: u32,
    streams: u32,
}

/// A subscriber on the raw stream that checks every message against the protocol: strictly
/// consecutive sequences across reconnects (a snapshot resets to its sequence), checkpoints
/// equal to the last delivered event. It drops its stream at random and resumes by cursor.
async fn raw_subscriber(
    n: usize,
    mut rng: Rng,
    channel: Channel,
    tokens: Tokens,
    cursor: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> RawOutcome {
    let mut out = RawOutcome::default();
    while !stop.load(Ordering::Acquire) {
        let Ok(token) = tokens.fetch().await else {
            tokio::time::sleep(rng.millis(20, 100)).await;
            continue;
        };
        let mut client = RevocationServiceClient::with_interceptor(channel.clone(), bearer(&token));
        let from = cursor.load(Ordering::Acquire);
        let mut stream = match client
            .watch(WatchRequest {
                from_sequence: from,
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) => {
                assert_ne!(
                    s.code(),
                    Code::OutOfRange,
                    "subscriber {n}: the service lost events it had delivered (cursor {from}): {s:?}"
                );
                tokio::time::sleep(rng.millis(20, 100)).await;
                continue;
            }
        };
        out.streams += 1;
        // This stream lives for at most this many messages and this long.
        let budget = rng.range(1, 400);
        let until = tokio::time::Instant::now() + rng.millis(50, 1500);
        let mut snapshot: Option<(u64, HashMap<Key, Merged>)> = None;
        for _ in 0..budget {
            let message = match tokio::time::timeout_at(until, stream.message()).await {
                Err(_) => break,
                Ok(Err(_)) | Ok(Ok(None)) => break,
                Ok(Ok(Some(m))) => m,
            };
            let at = cursor.load(Ordering::Acquire);
            match message.event.expect("an event") {
                Event::Revocation(ev) => {
                    let e = ev.entry.expect("an entry");
                    match &mut snapshot {
                        Some((as_of, model)) => {
                            assert!(
                                ev.sequence <= *as_of,
                                "subscriber {n}: {e:?} at {}",
                                ev.sequence
                            );
                            merge_into(model, &e);
                        }
                        None => {
                            assert_eq!(
                                ev.sequence,
                                at + 1,
                                "subscriber {n}: every event once, in order (cursor {at})"
                            );
                            merge_into(&mut out.model, &e);
                            out.sequences.push(ev.sequence);
                            cursor.store(ev.sequence, Ordering::Release);
                        }
                    }
                }
                Event::SnapshotBegin(b) => {
                    assert!(snapshot.is_none(), "subscriber {n}: nested snapshot");
                    assert!(b.sequence >= at, "subscriber {n}: a snapshot from the past");
                    snapshot = Some((b.sequence, HashMap::new()));
                }
                Event::SnapshotEnd(e) => {
                    let (as_of, model) = snapshot.take().expect("a snapshot began");
                    assert_eq!(e.sequence, as_of);
                    out.model = model;
                    out.snapshots += 1;
                    cursor.store(as_of, Ordering::Release);
                }
                Event::Checkpoint(c) => {
                    assert!(
                        snapshot.is_none(),
                        "subscriber {n}: checkpoint in a snapshot"
                    );
                    assert_eq!(
                        c.sequence, at,
                        "subscriber {n}: a checkpoint names the last delivered event"
                    );
                }
            }
        }
        // Dropped here: a disconnect. A snapshot cut short is simply not applied.
    }
    out
}

/// Reads the whole log from 0 up to `head`, checking order: the committed set.
async fn committed(channel: Channel, token: &str, head: u64) -> HashMap<Key, Merged> {
    let mut client = RevocationServiceClient::with_interceptor(channel, bearer(token));
    let mut stream = client
        .watch(WatchRequest { from_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut model = HashMap::new();
    let mut at = 0;
    while at < head {
        let m = tokio::time::timeout(READY, stream.message())
            .await
            .expect("the log reads within the bound")
            .unwrap()
            .expect("the stream stays open");
        match m.event.unwrap() {
            Event::Revocation(ev) => {
                assert_eq!(ev.sequence, at + 1, "the log is gap-free");
                at = ev.sequence;
                merge_into(&mut model, &ev.entry.unwrap());
            }
            Event::Checkpoint(_) => {}
            other => panic!("no snapshot expected: nothing was pruned ({other:?})"),
        }
    }
    model
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_ends_with_exactly_the_committed_set_through_restarts_and_kill_9() {
    writ_tests::init_logs();
    let started = Instant::now();
    let deadline = started + BOUND;
    let seed = std::env::var("WRIT_ROBUSTNESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026_0001);
    println!("robustness seed: {seed} (WRIT_ROBUSTNESS_SEED={seed} replays the choices)");
    let mut rng = Rng::new(seed);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("writ-data");
    let (service, ca, admin_token) = start_up(&data).await;
    let lazy = move |url: &str| {
        writ_server::endpoint(url, Some(&ca))
            .unwrap()
            .connect_lazy()
    };
    let authz = lazy(&service.authz_url());
    let issuer = service.issuer();
    let admin_url = service.admin_url();
    let revocation_url = service.revocation_url();
    let service = Arc::new(Mutex::new(service));

    let mut admin = AdminServiceClient::with_interceptor(lazy(&admin_url), bearer(&admin_token));
    let publish = registered(
        &mut admin,
        authz.clone(),
        "producer",
        writ_vocabulary::names::REVOCATION_PUBLISH_SCOPE,
    )
    .await;
    let watch = registered(
        &mut admin,
        authz.clone(),
        "subscriber",
        writ_vocabulary::names::REVOCATION_WATCH_SCOPE,
    )
    .await;

    // Subscribers first, so they live through everything.
    let watch_config = WatchConfig {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(500),
        ..WatchConfig::default()
    };
    let spawn_watcher = {
        let watch = watch.clone();
        let url = revocation_url.clone();
        let lazy = lazy.clone();
        move |set: Arc<RevocationSet>| {
            Watcher::spawn(lazy(&url), Arc::new(watch.clone()), set, watch_config)
        }
    };
    let sets: Vec<Arc<RevocationSet>> = (0..WATCHERS)
        .map(|_| Arc::new(RevocationSet::new()))
        .collect();
    let watchers: Arc<Mutex<Vec<Option<Watcher>>>> = Arc::new(Mutex::new(
        sets.iter()
            .map(|s| Some(spawn_watcher(s.clone())))
            .collect(),
    ));
    let stop_raw = Arc::new(AtomicBool::new(false));
    let raw_cursors: Vec<Arc<AtomicU64>> = (0..RAW_SUBSCRIBERS)
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let raw: Vec<_> = raw_cursors
        .iter()
        .enumerate()
        .map(|(n, cursor)| {
            tokio::spawn(raw_subscriber(
                n,
                rng.fork(),
                lazy(&revocation_url),
                watch.clone(),
                cursor.clone(),
                stop_raw.clone(),
            ))
        })
        .collect();

    // Producers.
    let now = writ_token::system_clock().now();
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let work = workload(p, &mut rng, now);
            tokio::spawn(produce(
                p,
                rng.fork(),
                work,
                lazy(&revocation_url),
                publish.clone(),
                acks.clone(),
                deadline,
            ))
        })
        .collect();

    // Chaos: watchers dropped and started again on the same set; the service restarted, by
    // SIGTERM or by SIGKILL, while the producers run.
    let chaos = Arc::new(AtomicBool::new(true));
    let churn = {
        let chaos = chaos.clone();
        let watchers = watchers.clone();
        let sets = sets.clone();
        let spawn_watcher = spawn_watcher.clone();
        let mut rng = rng.fork();
        tokio::spawn(async move {
            let mut churned = 0u32;
            while chaos.load(Ordering::Acquire) {
                tokio::time::sleep(rng.millis(100, 600)).await;
                let i = rng.range(0, WATCHERS as u64 - 1) as usize;
                let mut w = watchers.lock().unwrap();
                if let Some(old) = w[i].take() {
                    old.stop();
                }
                w[i] = Some(spawn_watcher(sets[i].clone()));
                churned += 1;
            }
            churned
        })
    };
    let restarts = {
        let service = service.clone();
        let mut rng = rng.fork();
        tokio::spawn(async move {
            let mut done: Vec<(&'static str, Duration)> = Vec::new();
            // At least two of each, in a seeded order.
            let mut plan = vec!["kill -9", "kill -9", "SIGTERM", "SIGTERM", "kill -9"];
            for i in (1..plan.len()).rev() {
                plan.swap(i, rng.range(0, i as u64) as usize);
            }
            for how in plan {
                tokio::time::sleep(rng.millis(800, 1600)).await;
                let down = rng.millis(0, 300);
                let service = service.clone();
                let stopping = tokio::task::spawn_blocking(move || {
                    let mut s = service.lock().unwrap();
                    let stopping = match how {
                        "kill -9" => {
                            s.kill_9();
                            Duration::ZERO
                        }
                        _ => s.terminate(),
                    };
                    std::thread::sleep(down);
                    s.start();
                    stopping
                })
                .await
                .unwrap();
                done.push((how, stopping));
            }
            done
        })
    };

    let mut stats = ProducerStats::default();
    for p in producers {
        let s = p.await.unwrap();
        stats.calls += s.calls;
        stats.failures += s.failures;
    }
    let produced_in = started.elapsed();
    let restarted = restarts.await.unwrap();
    chaos.store(false, Ordering::Release);
    let churned = churn.await.unwrap();
    assert_eq!(restarted.len(), 5);
    for (how, took) in &restarted {
        // Open Watch streams must not hold a graceful stop up (it takes milliseconds).
        assert!(*took < Duration::from_secs(3), "{how} took {took:?}");
    }
    assert!(
        stats.failures > 0,
        "the restarts happened under load (the producers finished after {produced_in:?})"
    );

    // The end state.
    let token = publish.fetch().await.unwrap();
    let status = RevocationServiceClient::with_interceptor(lazy(&revocation_url), bearer(&token))
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let head = status.head_sequence;
    let caught_up = tokio::time::Instant::now() + READY;
    loop {
        let behind: Vec<String> = sets
            .iter()
            .map(|s| s.cursor())
            .chain(raw_cursors.iter().map(|c| c.load(Ordering::Acquire)))
            .enumerate()
            .filter(|(_, c)| *c != head)
            .map(|(i, c)| format!("#{i} at {c}"))
            .collect();
        if behind.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < caught_up,
            "subscribers not at the head ({head}) within {READY:?}: {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_raw.store(true, Ordering::Release);
    let mut raw_outcomes = Vec::new();
    for r in raw {
        raw_outcomes.push(tokio::time::timeout(READY, r).await.unwrap().unwrap());
    }

    let token = watch.fetch().await.unwrap();
    let committed = committed(lazy(&revocation_url), &token, head).await;
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    let acknowledged: usize = acks.iter().map(|a| a.entries.len()).sum();
    println!(
        "seed {seed}: {acknowledged} revocations in {} acknowledged calls ({} calls, {} failed), \
         head {head}, {} live; restarts {restarted:?}; {churned} watcher restarts; raw streams \
         {:?}; producers done after {produced_in:?}, all checked after {:?}",
        acks.len(),
        stats.calls,
        stats.failures,
        committed.len(),
        raw_outcomes.iter().map(|o| o.streams).collect::<Vec<_>>(),
        started.elapsed(),
    );
    assert!(acknowledged >= PRODUCERS * PER_PRODUCER);
    assert_eq!(status.live_entries, committed.len() as u64);

    // Every acknowledged entry is committed (covered by what the log holds for its target),
    // and the log holds nothing nobody asked for.
    let mut asked: HashMap<Key, Merged> = HashMap::new();
    for ack in &acks {
        assert!(
            ack.sequence <= head,
            "acknowledged at {} > head {head}",
            ack.sequence
        );
        for e in &ack.entries {
            let got = committed
                .get(&(e.kind, e.value.clone()))
                .unwrap_or_else(|| panic!("acknowledged, then lost: {e:?}"));
            assert!(got.expires_at >= e.expires_at && got.not_before >= e.not_before);
            merge_into(&mut asked, e);
        }
    }
    assert_eq!(
        committed, asked,
        "the committed set is exactly what was acknowledged"
    );

    // Every subscriber holds exactly the committed set.
    for (i, set) in sets.iter().enumerate() {
        assert_eq!(set.len(), committed.len(), "watcher {i}");
        assert_eq!(set.cursor(), head, "watcher {i}");
        assert_eq!(
            set.applied(),
            head,
            "watcher {i}: every event applied once (no snapshot was needed)"
        );
        for ((kind, value), m) in &committed {
            assert!(
                revokes_exactly(
                    set,
                    RevocationKind::from_i32(*kind).unwrap(),
                    value,
                    m.not_before,
                    &issuer,
                ),
                "watcher {i}: {kind} {value} {m:?}"
            );
        }
    }
    for (n, o) in raw_outcomes.iter().enumerate() {
        assert_eq!(o.model, committed, "raw subscriber {n}");
        if o.snapshots == 0 {
            assert_eq!(
                o.sequences,
                (1..=head).collect::<Vec<_>>(),
                "raw subscriber {n}: every sequence once, in order"
            );
        }
    }
    drop(watchers);
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
}

/// Issue 15: an administrator's revocations go through the authorization server's outbox and
/// its publisher into the log. `kill -9` under that load, four times: the outbox is published
/// again after each restart, and the log must take each revocation once. One stream from
/// before the load sees every value exactly once, gap-free, and the log's head ends at the
/// number of distinct revocations (no growth per crash beyond what was newly revoked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_revocations_reach_the_feed_exactly_once_through_kill_9_under_load() {
    const REVOKERS: usize = 6;
    const CRASHES: usize = 4;
    writ_tests::init_logs();
    let started = Instant::now();
    let mut rng = Rng::new(0x5eed_2026_0015);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("writ-data");
    let (service, ca, admin_token) = start_up(&data).await;
    let lazy = move |url: &str| {
        writ_server::endpoint(url, Some(&ca))
            .unwrap()
            .connect_lazy()
    };
    let revocation_url = service.revocation_url();
    let mut admin =
        AdminServiceClient::with_interceptor(lazy(&service.admin_url()), bearer(&admin_token));
    let watch = registered(
        &mut admin,
        lazy(&service.authz_url()),
        "subscriber",
        writ_vocabulary::names::REVOCATION_WATCH_SCOPE,
    )
    .await;
    let service = Arc::new(Mutex::new(service));

    // One stream's view, from before the load: where each value was delivered.
    let delivered: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let cursor = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let subscriber = {
        let (delivered, cursor, stop) = (delivered.clone(), cursor.clone(), stop.clone());
        let channel = lazy(&revocation_url);
        let watch = watch.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let Ok(token) = watch.fetch().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let mut client =
                    RevocationServiceClient::with_interceptor(channel.clone(), bearer(&token));
                let from = cursor.load(Ordering::Acquire);
                let Ok(stream) = client
                    .watch(WatchRequest {
                        from_sequence: from,
                    })
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let mut stream = stream.into_inner();
                loop {
                    let message = tokio::select! {
                        m = stream.message() => m,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {
                            if stop.load(Ordering::Acquire) { return; }
                            continue;
                        }
                    };
                    let Ok(Some(message)) = message else { break };
                    match message.event.expect("an event") {
                        Event::Revocation(ev) => {
                            let at = cursor.load(Ordering::Acquire);
                            assert_eq!(ev.sequence, at + 1, "gap-free, in order");
                            let value = ev.entry.expect("an entry").value;
                            if let Some(first) =
                                delivered.lock().unwrap().insert(value.clone(), ev.sequence)
                            {
                                panic!(
                                    "{value} delivered twice in one stream: at {first} and {}",
                                    ev.sequence
                                );
                            }
                            cursor.store(ev.sequence, Ordering::Release);
                        }
                        Event::Checkpoint(_) => {}
                        other => panic!("no snapshot expected: nothing was pruned ({other:?})"),
                    }
                }
            }
        })
    };

    // Revokers: distinct token ids, one call at a time; a failed call is not retried (it may
    // or may not have been recorded), so every value is asked for once.
    let load = Arc::new(AtomicBool::new(true));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let attempted = Arc::new(AtomicU64::new(0));
    let revokers: Vec<_> = (0..REVOKERS)
        .map(|r| {
            let (admin, load, acked, attempted) = (
                admin.clone(),
                load.clone(),
                acked.clone(),
                attempted.clone(),
            );
            tokio::spawn(async move {
                let mut admin = admin;
                let mut n = 0u64;
                while load.load(Ordering::Acquire) {
                    n += 1;
                    let value = format!("crash-{r}-{n}");
                    attempted.fetch_add(1, Ordering::Relaxed);
                    let request = pb_admin::RevokeRequest {
                        entries: vec![pb::RevocationEntry {
                            kind: RevocationKind::TokenId as i32,
                            value: value.clone(),
                            expires_at: writ_token::system_clock().now() + 3600,
                            ..Default::default()
                        }],
                    };
                    match tokio::time::timeout(Duration::from_secs(5), admin.revoke(request)).await
                    {
                        Ok(Ok(_)) => acked.lock().unwrap().push(value),
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect();

    // The crashes, each after the load has run a while, then a last stretch of load.
    let mut heads = Vec::new();
    for _ in 0..CRASHES {
        tokio::time::sleep(rng.millis(700, 1500)).await;
        let service = service.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = service.lock().unwrap();
            s.kill_9();
            s.start();
        })
        .await
        .unwrap();
        heads.push(acked.lock().unwrap().len());
    }
    tokio::time::sleep(rng.millis(700, 1500)).await;
    load.store(false, Ordering::Release);
    for r in revokers {
        tokio::time::timeout(READY, r).await.unwrap().unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let attempted = attempted.load(Ordering::Relaxed);

    // The outbox drains and the stream reaches the head; the head then stays put.
    let status = async || {
        let token = watch.fetch().await.unwrap();
        RevocationServiceClient::with_interceptor(lazy(&revocation_url), bearer(&token))
            .get_status(GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    };
    let settled = Instant::now() + READY;
    let mut last = status().await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if subscriber.is_finished() {
            // It failed an assertion: show that one.
            subscriber.await.unwrap();
            panic!("the subscriber stopped early");
        }
        let now = status().await;
        let drained = now.head_sequence == last.head_sequence
            && now.head_sequence >= acked.len() as u64
            && cursor.load(Ordering::Acquire) == now.head_sequence;
        last = now;
        if drained {
            break;
        }
        assert!(
            Instant::now() < settled,
            "the feed did not settle within {READY:?}: head {}, stream at {}, {} acknowledged",
            last.head_sequence,
            cursor.load(Ordering::Acquire),
            acked.len()
        );
    }
    stop.store(true, Ordering::Release);
    tokio::time::timeout(READY, subscriber)
        .await
        .unwrap()
        .unwrap();

    let delivered = std::mem::take(&mut *delivered.lock().unwrap());
    println!(
        "{} acknowledged of {attempted} asked ({:?} acknowledged at each crash); head {}, {} live, \
         {} delivered; {:?} in all",
        acked.len(),
        heads,
        last.head_sequence,
        last.live_entries,
        delivered.len(),
        started.elapsed()
    );
    assert!(
        heads.windows(2).all(|w| w[0] < w[1]),
        "the load ran between the crashes: {heads:?}"
    );
    for value in &acked {
        assert!(
            delivered.contains_key(value),
            "{value} was acknowledged but never delivered"
        );
    }
    // Each value once in the log: the head is the number of distinct revocations, which is
    // at least everything acknowledged and at most everything asked.
    assert_eq!(last.head_sequence, delivered.len() as u64);
    assert_eq!(last.live_entries, delivered.len() as u64);
    assert!(delivered.len() as u64 <= attempted);
}
