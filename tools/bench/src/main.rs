//! `writ-bench`: load against the real authorization server and revocation service on
//! loopback.
//!
//! The server runs in this process on its own Tokio runtime (2 worker threads); the load
//! generator runs on another. Both share the machine's cores, as a load generator on the same
//! box does. Connections are reused (HTTP/2 multiplexing over a few channels).
//!
//! ```text
//! cargo run --release -p writ-bench -- all
//! ```

// The allocator the `writ` binary runs with (services/writ/src/main.rs).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: writ_allocator::Allocator = writ_allocator::Allocator;

mod audit;
mod codeflow;
mod crash;
mod dpop;
mod exchange;
mod flood;
mod footprint;
mod gateway;
mod guard;
mod postgres;
mod revocation;
mod scale;
mod signin;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use writ::platform::{KeyEncryption, Platform, PlatformConfig, StoreChoice, TlsMode};
use writ_oauth::{AuthorizationServer, Client};
use writ_proto::authz::TokenRequest;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_store::SledStore;

#[derive(Parser, Clone)]
#[command(about = "Load generator for Writ (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Seconds of measurement per scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Concurrent requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// gRPC connections the requests share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Write audit events (JSON lines, as `writ up --log-json` does) to this file while
    /// measuring; without it no log subscriber is installed.
    #[arg(long)]
    audit_log: Option<std::path::PathBuf>,
    /// `audit`: records written to measure the log's size (0: not measured).
    #[arg(long, default_value_t = 1_000_000)]
    audit_size_records: u64,
    /// `audit`: rounds of off/on throughput runs before sizing (0: sizing only).
    #[arg(long, default_value_t = 2)]
    audit_rounds: usize,
    /// Pace of the audit log's syncs in the servers started (microseconds; the default is
    /// `writ up`'s).
    #[arg(long)]
    audit_sync_interval_us: Option<u64>,
    #[command(flatten)]
    revocation: revocation::Args,
    #[command(flatten)]
    scale: scale::Args,
    #[command(flatten)]
    crash: crash::Args,
    #[command(flatten)]
    footprint: footprint::Args,
    #[command(flatten)]
    signin: signin::Args,
    #[command(flatten)]
    codeflow: codeflow::Args,
    /// The PostgreSQL database of the `postgres` scenarios (a fresh schema per server, dropped
    /// after).
    #[arg(
        long,
        env = "WRIT_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
}

#[derive(Subcommand, Clone)]
enum Command {
    /// client_credentials tokens, plaintext then TLS, side by side.
    ClientCredentials,
    /// client_credentials over TLS authenticated by a secret and by `private_key_jwt` (a
    /// fresh Ed25519 assertion signed per request by the load generator, its `jti` spent
    /// durably by the server), and the jwt-bearer grant with a reused RS256 workload token (no
    /// client authentication), alternating, two rounds, one server.
    ClientAuth,
    /// Durable refresh-token rotation (each refresh is flushed before it is answered).
    Refresh,
    /// The revocation service: client-side set memory, durable Revoke throughput, and
    /// propagation from a Revoke's reply to the event applied by 1 and by many subscribers.
    Revocation,
    /// Durable Revoke throughput alone (part of `revocation`).
    Revoke,
    /// Revocation propagation to subscribers alone (part of `revocation`).
    Propagation,
    /// Memory of the client-side revocation set alone (part of `revocation`).
    SetMemory,
    /// A trivial unary RPC with no guard, the guard (repeated and fresh tokens) and a
    /// per-request introspection call, side by side.
    Guard,
    /// RFC 8693 token exchange at the STS: JWT to JWT, then JWT to Biscuit.
    Exchange,
    /// client_credentials at the HTTP token endpoint, DPoP-bound (a proof per request) beside
    /// bearer, alternating, two rounds, one TLS server.
    Dpop,
    /// The gateway check: CPU per check in the engine (a cached and a fresh reference token),
    /// then `GET /check` over HTTPS as nginx asks it, cached and fresh.
    Gateway,
    /// A flood of bad passwords from one source, and another client's latency meanwhile, without
    /// and with the brute-force protection.
    PasswordFlood,
    /// The stores side by side: client_credentials, refresh (over two replicas on PostgreSQL),
    /// durable Revoke and propagation to many subscribers, each on sled then on PostgreSQL.
    Postgres,
    /// Refresh rotation alone, on sled then on PostgreSQL over two replicas (part of
    /// `postgres`).
    PostgresRefresh,
    /// Per-request cost against the platform's size: an empty and a full platform side by
    /// side (client_credentials, refresh, introspection, exchange), then a new subscriber, the
    /// admin listing and a restart on the full one.
    Scale,
    /// Restart after kill -9 with a million revocations in the log and many more in the
    /// outbox: time to serve, time to drain, and the feed's head growth per crash.
    Crash,
    /// Resident memory of `writ up`: empty, with a million live revocations at rest, while ten
    /// new subscribers catch up at once, and after a restart.
    Memory,
    /// The durable audit log's cost: client_credentials and token exchange with it off and
    /// on, alternating (two rounds), then its size per million records.
    Audit,
    /// Sign-out to refusal: from a browser's logout response to a guard refusing the
    /// session's access token.
    Signout,
    /// The authorization code flow over HTTPS with a signed-in session (authorize, code,
    /// token), Writ against node oidc-provider (installed with npm), alternating passes.
    Codeflow,
    /// Everything above but `postgres`, `scale`, `signout` and `codeflow`, one after the other
    /// in one run.
    All,
}

/// One scenario's outcome.
struct Outcome {
    name: String,
    ok: u64,
    errors: u64,
    seconds: f64,
    p50: Duration,
    p99: Duration,
    /// Items each successful call carries (the rate column counts items, not calls).
    per_call: u64,
    /// How much the scenario's probe advanced over the measured window (e.g. store flushes).
    probed: u64,
}

impl Outcome {
    /// Items per second over the measured window.
    fn rate(&self) -> f64 {
        (self.ok * self.per_call) as f64 / self.seconds
    }

    fn row(&self) -> String {
        format!(
            "| {} | {:.0} | {:.2} | {:.2} | {} |",
            self.name,
            self.rate(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.errors
        )
    }
}

/// Which of the platform's services a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Services {
    /// The authorization server alone (its revocations are queued, not fanned out).
    Authz,
    /// The authorization server and the revocation service.
    AuthzAndRevocation,
    /// Everything `writ up` runs.
    All,
}

/// The platform on its own runtime, in a fresh data directory, started from the same typed
/// configuration `writ up` uses (`writ::platform`), on ephemeral loopback ports.
struct Server {
    // First, so it is dropped first: its tasks let go of the stores.
    runtime: tokio::runtime::Runtime,
    platform: Option<Platform>,
    engine: Arc<AuthorizationServer>,
    /// The authorization server's gRPC URL.
    url: String,
    ca_pem: Option<String>,
    /// The authorization server's store, on sled (for its flush count).
    store: Option<Arc<SledStore>>,
    _dir: tempfile::TempDir,
}

/// Where a benchmarked platform keeps its state.
#[derive(Debug, Clone)]
enum Backend {
    Sled,
    /// PostgreSQL: every service in `<prefix>_<service>`; servers with the same prefix are
    /// replicas sharing one store (and one key-encryption key, one issuer).
    Postgres {
        url: String,
        prefix: String,
        key_encryption_key: String,
    },
}

impl Backend {
    /// A fresh set of schemas on `url`.
    fn postgres(url: &str) -> anyhow::Result<Backend> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let (_, key) = writ_keyring::KeyEncryptionKey::generate()?;
        Ok(Backend::Postgres {
            url: url.to_owned(),
            prefix: format!("writ_bench_{:x}", nanos as u64),
            key_encryption_key: key.as_str().to_owned(),
        })
    }

    fn configure(&self, config: &mut PlatformConfig) {
        let Backend::Postgres {
            url,
            prefix,
            key_encryption_key,
        } = self
        else {
            return;
        };
        config.store = StoreChoice::Postgres(writ_store_postgres::PgConfig {
            schema: Some(prefix.clone()),
            max_connections: 32,
            ..writ_store_postgres::PgConfig::new(url.clone())
        });
        config.key_encryption = KeyEncryption::Value(key_encryption_key.clone());
        if let Some(a) = &mut config.authz {
            a.engine.issuer = "http://writ-bench.test".into();
        }
        if let Some(s) = &mut config.sts {
            s.exchange.issuer = "http://writ-bench-sts.test".into();
        }
    }

    /// Drops the schemas (best effort).
    async fn drop_schemas(&self) {
        let Backend::Postgres { url, prefix, .. } = self else {
            return;
        };
        for service in ["authz", "revocation", "sts"] {
            let mut c = writ_store_postgres::PgConfig::new(url.clone());
            c.schema = Some(format!("{prefix}_{service}"));
            writ_store_postgres::testing::drop_schema(&c).await;
        }
    }
}

impl Server {
    fn start(tls: bool) -> anyhow::Result<Server> {
        Server::start_services(tls, Services::Authz)
    }

    fn start_services(tls: bool, services: Services) -> anyhow::Result<Server> {
        Server::start_with(tls, services, |_| {})
    }

    fn start_with(
        tls: bool,
        services: Services,
        configure: impl FnOnce(&mut PlatformConfig),
    ) -> anyhow::Result<Server> {
        Server::start_on(&Backend::Sled, tls, services, configure)
    }

    fn start_on(
        backend: &Backend,
        tls: bool,
        services: Services,
        configure: impl FnOnce(&mut PlatformConfig),
    ) -> anyhow::Result<Server> {
        let runtime = server_runtime()?;
        let dir = tempfile::tempdir()?;
        let mut config = PlatformConfig::all_on_loopback(dir.path());
        if !tls {
            config.tls = TlsMode::Off;
        }
        if services != Services::All {
            config.sts = None;
        }
        if services == Services::Authz {
            config.revocation = None;
        }
        backend.configure(&mut config);
        config.audit.enabled = audit::enabled();
        if let Some(us) = audit::sync_interval_us() {
            config.audit.sync_interval = std::time::Duration::from_micros(us);
        }
        configure(&mut config);
        let platform = runtime.block_on(Platform::start(config))?;
        let authz = platform
            .authz
            .as_ref()
            .context("the authorization server runs")?;
        Ok(Server {
            engine: authz.engine.clone(),
            url: platform.url(authz.grpc_addr),
            store: authz.store.sled.clone(),
            ca_pem: platform.peer_ca.clone(),
            platform: Some(platform),
            runtime,
            _dir: dir,
        })
    }

    fn platform(&self) -> anyhow::Result<&Platform> {
        self.platform.as_ref().context("the platform is running")
    }

    fn client(&self, spec: Client) -> anyhow::Result<(String, String)> {
        let engine = self.engine.clone();
        let (c, secret) = self.runtime.block_on(engine.create_client(spec))?;
        Ok((c.client_id, secret.unwrap_or_default()))
    }

    /// A confidential client_credentials client for one audience (JWTs only, the default).
    fn cc_client(&self, id: &str, scope: &str, audience: &str) -> anyhow::Result<(String, String)> {
        self.client(Client {
            client_id: id.into(),
            grant_types: vec!["client_credentials".into()],
            scope: scope.into(),
            audience: vec![audience.into()],
            ..Client::default()
        })
    }
}

impl Server {
    /// What [`rotate_refresh_tokens`] needs: the `gateway` client (password and refresh grants)
    /// and the user `alice`. Returns the client's id and secret.
    fn refresh_client(&self) -> anyhow::Result<(String, String)> {
        let client = self.client(Client {
            client_id: "gateway".into(),
            grant_types: vec!["password".into(), "refresh_token".into()],
            scope: "orders.read".into(),
            audience: vec!["orders".into()],
            ..Client::default()
        })?;
        let engine = self.engine.clone();
        self.runtime
            .block_on(engine.create_user("alice", PASSWORD, "orders.read"))?;
        Ok(client)
    }

    /// Flushes of its sled store so far (0 on PostgreSQL, which commits each write itself).
    fn flush_count(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let store = self.store.clone();
        move || store.as_ref().map_or(0, |s| s.flush_count())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(p) = self.platform.take() {
            self.runtime.block_on(p.stop());
        }
    }
}

/// One connection to `url` (plaintext).
async fn connect_one(url: &str) -> anyhow::Result<Channel> {
    Ok(channels(url, None, 1).await?.remove(0))
}

async fn channels(server_url: &str, ca: Option<&str>, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut e = Endpoint::from_shared(server_url.to_owned())?.tcp_nodelay(true);
        if let Some(ca) = ca {
            e = e.tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))?;
        }
        out.push(e.connect().await?);
    }
    Ok(out)
}

/// Runs `concurrency` loops of `call` for warm-up then `duration`, recording latencies.
async fn drive<F, Fut>(cli: &Cli, name: &str, call: F) -> Outcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    drive_probed(cli, name, || 0, call).await
}

/// [`drive`], also reading `probe` (a counter such as the store's flush count) when the measured
/// window opens and when it closes, so per-call ratios exclude the warm-up.
async fn drive_probed<F, Fut>(cli: &Cli, name: &str, probe: impl Fn() -> u64, call: F) -> Outcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..cli.concurrency {
        let (call, measuring, stop, errors) = (
            call.clone(),
            measuring.clone(),
            stop.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let ok = call(worker).await;
                let elapsed = start.elapsed();
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        latencies.push(elapsed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(cli.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let probe_start = probe();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(cli.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let probed = probe().saturating_sub(probe_start);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort_unstable();
    Outcome {
        name: name.to_owned(),
        ok: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        seconds,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        per_call: 1,
        probed,
    }
}

/// The runtime a server under test runs on: 2 workers, as on the 2-core machines.
/// With the allocator's housekeeping `writ` runs with (services/writ/src/lib.rs).
fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).thread_name("server").enable_all();
    #[cfg(not(feature = "system-allocator"))]
    {
        writ_allocator::start_purger()?;
        builder.on_thread_park(writ_allocator::on_thread_park);
    }
    builder.build()
}

/// A client_credentials token request.
fn cc_request(id: &str, secret: &str, scope: &str) -> TokenRequest {
    TokenRequest {
        grant_type: "client_credentials".into(),
        client_id: id.into(),
        client_secret: secret.into(),
        scope: scope.into(),
        ..TokenRequest::default()
    }
}

/// The `p` quantile of sorted durations (zero when empty).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn client_credentials(
    cli: &Cli,
    load: &tokio::runtime::Runtime,
    tls: bool,
) -> anyhow::Result<Outcome> {
    client_credentials_on(cli, load, &Backend::Sled, tls, "")
}

fn client_credentials_on(
    cli: &Cli,
    load: &tokio::runtime::Runtime,
    backend: &Backend,
    tls: bool,
    suffix: &str,
) -> anyhow::Result<Outcome> {
    let server = Server::start_on(backend, tls, Services::Authz, |_| {})?;
    let (id, secret) = server.cc_client("bench", "inventory.read inventory.write", "inventory")?;
    let outcome = load.block_on(async {
        let chans =
            Arc::new(channels(&server.url, server.ca_pem.as_deref(), cli.connections).await?);
        let request = cc_request(&id, &secret, "inventory.read");
        let name = format!(
            "client_credentials over gRPC, {}{suffix}",
            if tls { "TLS" } else { "plaintext" }
        );
        anyhow::Ok(
            drive(cli, &name, move |worker| {
                let mut client =
                    AuthorizationServiceClient::new(chans[worker % chans.len()].clone());
                let request = request.clone();
                async move { client.token(request).await.is_ok() }
            })
            .await,
        )
    })?;
    Ok(outcome)
}

/// client_credentials by secret and by `private_key_jwt`, alternating on one TLS server.
fn client_auth(cli: &Cli, load: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Outcome>> {
    let server = Server::start_on(&Backend::Sled, true, Services::Authz, |_| {})?;
    let scope = "inventory.read inventory.write";
    let (id, secret) = server.cc_client("bench", scope, "inventory")?;
    let key = Arc::new(writ_token::SigningKey::generate(
        writ_token::Algorithm::EdDSA,
        "bench-1",
    )?);
    server.client(Client {
        client_id: "bench-keyed".into(),
        grant_types: vec!["client_credentials".into()],
        scope: scope.into(),
        audience: vec!["inventory".into()],
        token_endpoint_auth_method: "private_key_jwt".into(),
        jwks: serde_json::json!({ "keys": [key.verification_key().to_jwk()] }).to_string(),
        ..Client::default()
    })?;
    let issuer = Arc::new(server.engine.metadata().issuer);
    // A workload with no secret: a Kubernetes-style RS256 service-account token (the vendored
    // test cluster key), reused as a pod reuses its projected token.
    server.client(Client {
        client_id: "bench-workload".into(),
        client_type: writ_oauth::ClientType::Public,
        grant_types: vec![writ_vocabulary::grant_type::JWT_BEARER.into()],
        scope: scope.into(),
        audience: vec!["inventory".into()],
        ..Client::default()
    })?;
    let cluster = "https://kubernetes.default.svc.cluster.local";
    server.runtime.block_on(
        server
            .engine
            .create_workload_issuer(writ_oauth::WorkloadIssuer {
                issuer: cluster.into(),
                jwks: include_str!("../../../crates/token/testdata/rsa-2048.jwks.json").into(),
                audience: "writ".into(),
                policies: vec![writ_oauth::WorkloadPolicy {
                    subject: "system:serviceaccount:prod:*".into(),
                    client_id: "bench-workload".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
    )?;
    let sa_token = {
        let now = writ_token::system_clock().now();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("k8s-1".into());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(
            include_str!("../../../crates/token/testdata/rsa-2048.pem").as_bytes(),
        )?;
        jsonwebtoken::encode(
            &header,
            &serde_json::json!({
                "iss": cluster, "sub": "system:serviceaccount:prod:orders", "aud": ["writ"],
                "iat": now, "exp": now + 3600,
            }),
            &key,
        )?
    };
    let mut outcomes = Vec::new();
    for round in 1..=2 {
        let chans = Arc::new(load.block_on(channels(
            &server.url,
            server.ca_pem.as_deref(),
            cli.connections,
        ))?);
        let request = cc_request(&id, &secret, "inventory.read");
        let by_secret = {
            let chans = chans.clone();
            load.block_on(drive(
                cli,
                &format!("client_credentials by secret, TLS (round {round})"),
                move |worker| {
                    let mut client =
                        AuthorizationServiceClient::new(chans[worker % chans.len()].clone());
                    let request = request.clone();
                    async move { client.token(request).await.is_ok() }
                },
            ))
        };
        outcomes.push(by_secret);
        let (key, issuer) = (key.clone(), issuer.clone());
        let by_key = load.block_on(drive(
            cli,
            &format!("client_credentials by private_key_jwt, TLS (round {round})"),
            move |worker| {
                let mut client =
                    AuthorizationServiceClient::new(chans[worker % chans.len()].clone());
                let now = writ_token::system_clock().now();
                let assertion = writ_token::encode_client_assertion(
                    &key,
                    &writ_token::AssertionClaims {
                        iss: "bench-keyed".into(),
                        sub: "bench-keyed".into(),
                        aud: issuer.to_string(),
                        iat: now,
                        exp: now + 60,
                        jti: writ_token::random_id(),
                    },
                );
                async move {
                    let Ok(assertion) = assertion else {
                        return false;
                    };
                    let request = TokenRequest {
                        grant_type: "client_credentials".into(),
                        client_id: "bench-keyed".into(),
                        client_assertion_type: writ_token::CLIENT_ASSERTION_TYPE.into(),
                        client_assertion: assertion,
                        scope: "inventory.read".into(),
                        ..Default::default()
                    };
                    client.token(request).await.is_ok()
                }
            },
        ));
        outcomes.push(by_key);
        let request = TokenRequest {
            grant_type: writ_vocabulary::grant_type::JWT_BEARER.into(),
            client_id: "bench-workload".into(),
            assertion: sa_token.clone(),
            scope: "inventory.read".into(),
            ..Default::default()
        };
        let chans = Arc::new(load.block_on(channels(
            &server.url,
            server.ca_pem.as_deref(),
            cli.connections,
        ))?);
        let by_workload = load.block_on(drive(
            cli,
            &format!("jwt-bearer, an RS256 service-account token, TLS (round {round})"),
            move |worker| {
                let mut client =
                    AuthorizationServiceClient::new(chans[worker % chans.len()].clone());
                let request = request.clone();
                async move { client.token(request).await.is_ok() }
            },
        ));
        outcomes.push(by_workload);
    }
    Ok(outcomes)
}

fn refresh(cli: &Cli, load: &tokio::runtime::Runtime) -> anyhow::Result<(Outcome, u64)> {
    refresh_on(cli, load, &Backend::Sled, 1, "")
}

/// Refresh rotation against `replicas` authorization servers sharing `backend` (more than one
/// only on PostgreSQL), the callers spread over them.
fn refresh_on(
    cli: &Cli,
    load: &tokio::runtime::Runtime,
    backend: &Backend,
    replicas: usize,
    suffix: &str,
) -> anyhow::Result<(Outcome, u64)> {
    let server = Server::start_on(backend, false, Services::Authz, |_| {})?;
    let mut others = Vec::new();
    for _ in 1..replicas {
        others.push(Server::start_on(backend, false, Services::Authz, |_| {})?);
    }
    let (id, secret) = server.refresh_client()?;
    let flushes = server.flush_count();
    let urls: Vec<String> = std::iter::once(server.url.clone())
        .chain(others.iter().map(|o| o.url.clone()))
        .collect();
    let outcome = load.block_on(async {
        let mut chans = Vec::new();
        for url in &urls {
            chans.extend(channels(url, None, cli.connections.div_ceil(urls.len())).await?);
        }
        let chans = Arc::new(chans);
        rotate_refresh_tokens(
            cli,
            &format!("refresh_token rotation over gRPC, durable{suffix}"),
            chans,
            (id, secret),
            flushes,
        )
        .await
    })?;
    let flushes = outcome.probed;
    Ok((outcome, flushes))
}

/// The refresh load: one family per caller (a password grant for `alice`, whose password is
/// [`PASSWORD`]), each loop rotating its family's token over `chans`.
async fn rotate_refresh_tokens(
    cli: &Cli,
    name: &str,
    chans: Arc<Vec<Channel>>,
    (id, secret): (String, String),
    probe: impl Fn() -> u64,
) -> anyhow::Result<Outcome> {
    let mut tokens = Vec::new();
    let mut client = AuthorizationServiceClient::new(chans[0].clone());
    for _ in 0..cli.concurrency {
        let r = client
            .token(TokenRequest {
                grant_type: "password".into(),
                client_id: id.clone(),
                client_secret: secret.clone(),
                username: "alice".into(),
                password: PASSWORD.into(),
                ..TokenRequest::default()
            })
            .await
            .context("password grant")?
            .into_inner();
        tokens.push(tokio::sync::Mutex::new(r.refresh_token));
    }
    let tokens = Arc::new(tokens);
    Ok(drive_probed(cli, name, probe, move |worker| {
        let mut client = AuthorizationServiceClient::new(chans[worker % chans.len()].clone());
        let (tokens, id, secret) = (tokens.clone(), id.clone(), secret.clone());
        async move {
            let mut slot = tokens[worker].lock().await;
            let r = client
                .token(TokenRequest {
                    grant_type: "refresh_token".into(),
                    client_id: id,
                    client_secret: secret,
                    refresh_token: slot.clone(),
                    ..TokenRequest::default()
                })
                .await;
            match r {
                Ok(r) => {
                    *slot = r.into_inner().refresh_token;
                    true
                }
                Err(_) => false,
            }
        }
    })
    .await)
}

/// The password of the refresh scenarios' user.
const PASSWORD: &str = "correct horse battery";

fn main() -> anyhow::Result<()> {
    #[cfg(not(feature = "system-allocator"))]
    writ_allocator::configure();
    // Re-executed as `writ` by the crash scenario (a process it can kill).
    if std::env::var_os(crash::AS_WRIT).is_some() {
        if writ::run() == std::process::ExitCode::SUCCESS {
            return Ok(());
        }
        std::process::exit(1);
    }
    let cli = Cli::parse();
    audit::set_sync_interval_us(cli.audit_sync_interval_us);
    if let Some(path) = &cli.audit_log {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::sync::Mutex::new(file))
            .init();
    }
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "writ-bench: {cores} cores, {} s per scenario after {} s warm-up, {} in flight over {} connections, audit log {}\n",
        cli.duration,
        cli.warmup,
        cli.concurrency,
        cli.connections,
        cli.audit_log
            .as_ref()
            .map_or("off".to_owned(), |p| format!("to {}", p.display()))
    );
    let run_cc = matches!(cli.command, Command::ClientCredentials | Command::All);
    let run_refresh = matches!(cli.command, Command::Refresh | Command::All);
    let run_revocation = matches!(cli.command, Command::Revocation | Command::All);
    let run_revoke = run_revocation || matches!(cli.command, Command::Revoke);
    let run_propagation = run_revocation || matches!(cli.command, Command::Propagation);
    let run_memory = run_revocation || matches!(cli.command, Command::SetMemory);
    if run_propagation {
        let r = &cli.revocation;
        println!(
            "propagation: {} revocations {} ms apart (after 20 unmeasured), to 1 subscriber, then to {} subscribers over {} connections\n",
            r.revocations, r.gap_ms, r.subscribers, r.watch_connections
        );
    }
    // First, while the process is still small: the RSS delta is then the set's own.
    let memory = if run_memory {
        revocation::memory(&cli.revocation)?
    } else {
        Vec::new()
    };
    let run_exchange = matches!(cli.command, Command::Exchange | Command::All);
    let run_flood = matches!(cli.command, Command::PasswordFlood | Command::All);
    if run_cc
        || matches!(cli.command, Command::ClientAuth)
        || run_refresh
        || run_revoke
        || run_exchange
        || run_flood
        || matches!(
            cli.command,
            Command::Guard | Command::Gateway | Command::Dpop
        )
    {
        println!("| scenario | per second | p50 ms | p99 ms | errors |");
        println!("|---|---:|---:|---:|---:|");
    }
    let mut notes = Vec::new();
    if run_cc {
        println!("{}", client_credentials(&cli, &load, false)?.row());
        println!("{}", client_credentials(&cli, &load, true)?.row());
    }
    if matches!(cli.command, Command::ClientAuth) {
        for outcome in client_auth(&cli, &load)? {
            println!("{}", outcome.row());
        }
    }
    if run_refresh {
        let (outcome, flushes) = refresh(&cli, &load)?;
        println!("{}", outcome.row());
        notes.push(format!(
            "refresh: {} rotations in {} flushes ({:.1} per fsync, group commit)",
            outcome.ok,
            flushes,
            outcome.ok as f64 / flushes.max(1) as f64
        ));
    }
    if run_exchange {
        for outcome in exchange::run(&cli, &load)? {
            println!("{}", outcome.row());
        }
    }
    if run_flood {
        let (outcomes, flood_notes) = flood::run(&cli, &load)?;
        for outcome in outcomes {
            println!("{}", outcome.row());
        }
        notes.extend(flood_notes);
    }
    if matches!(cli.command, Command::Guard | Command::All) {
        for outcome in guard::run(&cli, &load)? {
            println!("{}", outcome.row());
        }
    }
    if matches!(cli.command, Command::Dpop) {
        for outcome in dpop::run(&cli, &load)? {
            println!("{}", outcome.row());
        }
    }
    if matches!(cli.command, Command::Gateway | Command::All) {
        let (outcomes, gateway_notes) = gateway::run(&cli, &load)?;
        for outcome in outcomes {
            println!("{}", outcome.row());
        }
        notes.extend(gateway_notes);
    }
    if matches!(cli.command, Command::Crash) {
        notes.extend(crash::run(&cli.crash, &load)?);
    }
    if matches!(cli.command, Command::Memory) {
        notes.extend(footprint::run(&cli.footprint, &load)?);
    }
    if matches!(cli.command, Command::Signout) {
        notes.extend(signin::signout(&cli.signin, &load)?);
    }
    if matches!(cli.command, Command::Codeflow) {
        notes.extend(codeflow::run(
            &cli.codeflow,
            Duration::from_secs(cli.duration),
            Duration::from_secs(cli.warmup),
            &load,
        )?);
    }
    if matches!(cli.command, Command::Audit) {
        println!("| scenario | per second | p50 ms | p99 ms | errors |");
        println!("|---|---:|---:|---:|---:|");
        let (outcomes, audit_notes) = audit::run(&cli, &load)?;
        for outcome in outcomes {
            println!("{}", outcome.row());
        }
        notes.extend(audit_notes);
    }
    if matches!(cli.command, Command::Scale) {
        let a = &cli.scale;
        println!(
            "scale: {} clients, {} users, {} exchange policies, {} live revocations, {} retired keys of each kind; {} rounds; sled cache {} MiB per platform, shared by its stores\n",
            a.scale_clients,
            a.scale_users,
            a.scale_policies,
            a.scale_revocations,
            a.scale_keys,
            a.scale_rounds,
            a.scale_cache_mib
                .unwrap_or(writ::platform::SLED_CACHE_BYTES / (1024 * 1024))
        );
        let (outcomes, scale_notes) = scale::run(&cli, &load)?;
        println!("| scenario | per second | p50 ms | p99 ms | errors |");
        println!("|---|---:|---:|---:|---:|");
        for outcome in outcomes {
            println!("{}", outcome.row());
        }
        notes.extend(scale_notes);
    }
    let mut propagation = Vec::new();
    if matches!(cli.command, Command::Postgres | Command::PostgresRefresh) {
        let only_refresh = matches!(cli.command, Command::PostgresRefresh);
        let (outcomes, p) = postgres::run(&cli, &load, only_refresh)?;
        println!("| scenario | per second | p50 ms | p99 ms | errors |");
        println!("|---|---:|---:|---:|---:|");
        for outcome in outcomes {
            println!("{}", outcome.row());
        }
        propagation = p;
    }
    if run_revoke {
        for outcome in revocation::throughput(&cli, &load)? {
            println!("{}", outcome.row());
            notes.push(format!(
                "revoke: {} calls, {} entries in {} flushes ({:.1} calls and {:.1} entries per fsync, group commit)",
                outcome.ok,
                outcome.ok * outcome.per_call,
                outcome.probed,
                outcome.ok as f64 / outcome.probed.max(1) as f64,
                (outcome.ok * outcome.per_call) as f64 / outcome.probed.max(1) as f64,
            ));
        }
    }
    if run_propagation {
        propagation = revocation::propagation(&cli.revocation, &load)?;
    }
    for note in &notes {
        println!("\n{note}");
    }
    if !propagation.is_empty() {
        println!("\n{}", revocation::Propagation::header());
        for p in &propagation {
            println!("{}", p.row());
        }
        for p in &propagation {
            println!("\n{}", p.note());
        }
    }
    if !memory.is_empty() {
        println!("\n{}", revocation::Memory::header());
        for m in &memory {
            println!("{}", m.row());
        }
    }
    Ok(())
}
