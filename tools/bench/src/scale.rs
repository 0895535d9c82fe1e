//! Per-request cost against the size of the platform: two `writ up` platforms (every service, one
//! process each, sled) run side by side; one stays empty, the other is filled first with
//! `--scale-clients` clients, `--scale-users` users, `--scale-policies` exchange policies for
//! other clients, `--scale-revocations` live revocations (through `AdminService`'s engine, so they
//! reach the revocation log through the outbox, as an administrator's would) and
//! `--scale-keys` retired signing keys of each kind. Each figure is then measured on the empty
//! platform and on the full one, alternately, `--scale-rounds` times.
//!
//! Then, on the full platform: a new subscriber joining the feed from nothing (time until it is
//! synced, and the process's resident memory meanwhile), listing every client through the admin
//! API page by page, and a restart on the same data directory (time until it serves again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use writ::platform::Platform;
use writ_exchange::ExchangePolicy;
use writ_keyring::KeyPurpose;
use writ_oauth::Synthetic;
use writ_proto::admin::ListClientsRequest;
use writ_proto::admin::admin_service_client::AdminServiceClient;
use writ_proto::authz::IntrospectRequest;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::revocation::WatchRequest;
use writ_proto::revocation::revocation_service_client::RevocationServiceClient;
use writ_proto::sts::ExchangeRequest;
use writ_proto::sts::security_token_service_client::SecurityTokenServiceClient;
use writ_revocation_client::RevocationSet;
use writ_token::{RevocationEntry, RevocationKind};
use writ_vocabulary::grant_type::TOKEN_EXCHANGE;
use writ_vocabulary::token_type;

use crate::revocation::{catch_up, peak_while, rss, token_id, unix_now};
use crate::{
    Cli, Outcome, Server, Services, cc_request, channels, connect_one, drive, rotate_refresh_tokens,
};

/// Options of the `scale` scenario.
#[derive(clap::Args, Clone)]
pub struct Args {
    #[arg(long, default_value_t = 100_000)]
    pub scale_clients: usize,
    #[arg(long, default_value_t = 100_000)]
    pub scale_users: usize,
    #[arg(long, default_value_t = 10_000)]
    pub scale_policies: usize,
    #[arg(long, default_value_t = 1_000_000)]
    pub scale_revocations: usize,
    /// Rotations of each signing key (JWT and Biscuit) before measuring: as many retired keys.
    #[arg(long, default_value_t = 20)]
    pub scale_keys: usize,
    /// Times each figure is measured on each platform, alternately.
    #[arg(long, default_value_t = 2)]
    pub scale_rounds: usize,
    /// Each platform's sled page caches together, in MiB (the platform's default when unset).
    #[arg(long)]
    pub scale_cache_mib: Option<u64>,
    /// Keeps the full platform's data directory here after the run (to time or profile a
    /// restart on it again, with `writ up --data-dir`).
    #[arg(long)]
    pub scale_keep_dir: Option<std::path::PathBuf>,
}

/// Every wait here gives up after this long.
const PATIENCE: Duration = Duration::from_secs(900);

const FRONTEND_SCOPE: &str = "inventory.read inventory.write";

/// The clients and tokens every figure uses, the same on both platforms.
struct Fixture {
    bench: (String, String),
    gateway: (String, String),
    frontend: (String, String),
    orders: (String, String),
    sts_url: String,
}

impl Fixture {
    fn create(server: &Server) -> anyhow::Result<Fixture> {
        let bench = server.cc_client("bench", "inventory.read inventory.write", "inventory")?;
        let gateway = server.refresh_client()?;
        let frontend = server.cc_client("frontend", FRONTEND_SCOPE, "orders")?;
        let orders = server.cc_client("orders", "", writ_vocabulary::names::STS_AUDIENCE)?;
        let platform = server.platform()?;
        let sts = platform.sts.as_ref().context("the STS runs")?;
        let sts_url = platform.url(sts.grpc_addr);
        let engine = server.engine.clone();
        let orders_id = orders.0.clone();
        server.runtime.block_on(async {
            engine
                .create_exchange_policy(ExchangePolicy {
                    policy_id: "orders-to-inventory".into(),
                    client_id: orders_id,
                    audience: vec!["inventory".into()],
                    ..ExchangePolicy::default()
                })
                .await?;
            anyhow::Ok(())
        })?;
        Ok(Fixture {
            bench,
            gateway,
            frontend,
            orders,
            sts_url,
        })
    }
}

/// Waits until the STS's revocation feed is synced (exchanges are refused before).
fn sts_synced(server: &Server) -> anyhow::Result<()> {
    let sts = server.platform()?.sts.as_ref().context("the STS runs")?;
    // Beside the log, the STS reads it directly: nothing to wait for.
    let Some(revocations) = sts.revocations.clone() else {
        return Ok(());
    };
    server.runtime.block_on(async {
        let deadline = Instant::now() + PATIENCE;
        while revocations
            .staleness()
            .is_none_or(|s| s > Duration::from_secs(5))
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the STS's revocation feed did not sync"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
}

/// Fills `server` as the scenario's options say, reporting what each part took.
fn fill(server: &Server, args: &Args, notes: &mut Vec<String>) -> anyhow::Result<()> {
    let engine = server.engine.clone();
    let started = Instant::now();
    server.runtime.block_on(engine.fill_synthetic(&Synthetic {
        prefix: "scale".into(),
        clients: args.scale_clients,
        users: args.scale_users,
        policies: args.scale_policies,
    }))?;
    notes.push(format!(
        "fill: {} clients, {} users, {} exchange policies written in {:.1} s",
        args.scale_clients,
        args.scale_users,
        args.scale_policies,
        started.elapsed().as_secs_f64()
    ));

    let started = Instant::now();
    let platform = server.platform()?;
    let log = platform
        .revocation
        .as_ref()
        .context("the revocation service runs")?
        .log
        .clone();
    let live_before = log.live_count();
    // AdminService.Revoke's most entries per call.
    let batch = 1000;
    server.runtime.block_on(async {
        let now = unix_now();
        let mut n = 0u64;
        while (n as usize) < args.scale_revocations {
            let entries: Vec<RevocationEntry> = (n..)
                .take(batch.min(args.scale_revocations - n as usize))
                .map(|i| RevocationEntry {
                    kind: RevocationKind::TokenId,
                    value: token_id(i),
                    issuer: String::new(),
                    // Live for the whole run.
                    expires_at: now + 6 * 3600,
                    not_before: 0,
                    reason: String::new(),
                })
                .collect();
            n += entries.len() as u64;
            engine.admin_revoke(entries).await?;
        }
        let recorded = started.elapsed();
        // The publisher drains the outbox into the log in the background.
        let deadline = Instant::now() + PATIENCE;
        while log.live_count() < live_before + args.scale_revocations as u64 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the revocation log holds {} of {} revocations",
                log.live_count(),
                args.scale_revocations
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        notes.push(format!(
            "fill: {} revocations recorded by the authorization server in {:.1} s, all in the revocation log after {:.1} s (head {})",
            args.scale_revocations,
            recorded.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            log.head()
        ));
        for _ in 0..args.scale_keys {
            engine.rotate_signing_key(KeyPurpose::Jwt, None).await?;
            engine.rotate_signing_key(KeyPurpose::Biscuit, None).await?;
        }
        anyhow::Ok(())
    })?;
    notes.push(format!(
        "fill: {} JWT and {} Biscuit keys retired ({} keys stored)",
        args.scale_keys,
        args.scale_keys,
        engine.list_signing_keys().len()
    ));
    Ok(())
}

/// One figure on one platform.
fn measure(
    cli: &Cli,
    load: &tokio::runtime::Runtime,
    server: &Server,
    fixture: &Fixture,
    figure: Figure,
    label: &str,
) -> anyhow::Result<Outcome> {
    let name = format!("{}, {label}", figure.name());
    eprintln!("scale: measuring {name}");
    load.block_on(async {
        let chans = Arc::new(channels(&server.url, None, cli.connections).await?);
        match figure {
            Figure::ClientCredentials => {
                let (id, secret) = &fixture.bench;
                let request = cc_request(id, secret, "inventory.read");
                Ok(drive(cli, &name, move |worker| {
                    let mut client =
                        AuthorizationServiceClient::new(chans[worker % chans.len()].clone());
                    let request = request.clone();
                    async move { client.token(request).await.is_ok() }
                })
                .await)
            }
            Figure::Refresh => {
                rotate_refresh_tokens(cli, &name, chans, fixture.gateway.clone(), || 0).await
            }
            Figure::Introspection => {
                let (id, secret) = fixture.bench.clone();
                let mut client = AuthorizationServiceClient::new(chans[0].clone());
                let mut requests = Vec::new();
                for _ in 0..cli.concurrency {
                    let token = client
                        .token(cc_request(&id, &secret, "inventory.read"))
                        .await?
                        .into_inner()
                        .access_token;
                    requests.push(IntrospectRequest {
                        token,
                        token_type_hint: String::new(),
                        client_id: id.clone(),
                        client_secret: secret.clone(),
                        ..Default::default()
                    });
                }
                let requests = Arc::new(requests);
                Ok(drive(cli, &name, move |worker| {
                    let mut client =
                        AuthorizationServiceClient::new(chans[worker % chans.len()].clone());
                    let request = requests[worker].clone();
                    async move {
                        client
                            .introspect(request)
                            .await
                            .is_ok_and(|r| r.into_inner().active)
                    }
                })
                .await)
            }
            Figure::Exchange => {
                let mut authz = AuthorizationServiceClient::new(connect_one(&server.url).await?);
                let (frontend, frontend_secret) = &fixture.frontend;
                let (orders, orders_secret) = &fixture.orders;
                let mut requests = Vec::new();
                for _ in 0..cli.concurrency {
                    let subject = authz
                        .token(cc_request(frontend, frontend_secret, FRONTEND_SCOPE))
                        .await?
                        .into_inner()
                        .access_token;
                    requests.push(ExchangeRequest {
                        grant_type: TOKEN_EXCHANGE.into(),
                        client_id: orders.clone(),
                        client_secret: orders_secret.clone(),
                        audience: vec!["inventory".into()],
                        scope: "inventory.read".into(),
                        requested_token_type: token_type::JWT.into(),
                        subject_token: subject,
                        subject_token_type: token_type::ACCESS_TOKEN.into(),
                        ..ExchangeRequest::default()
                    });
                }
                let requests = Arc::new(requests);
                let sts = Arc::new(channels(&fixture.sts_url, None, cli.connections).await?);
                Ok(drive(cli, &name, move |worker| {
                    let mut client =
                        SecurityTokenServiceClient::new(sts[worker % sts.len()].clone());
                    let request = requests[worker].clone();
                    async move {
                        client
                            .exchange(request)
                            .await
                            .is_ok_and(|r| !r.into_inner().access_token.is_empty())
                    }
                })
                .await)
            }
        }
    })
}

#[derive(Debug, Clone, Copy)]
enum Figure {
    ClientCredentials,
    Refresh,
    Introspection,
    Exchange,
}

impl Figure {
    fn name(self) -> &'static str {
        match self {
            Figure::ClientCredentials => "client_credentials over gRPC",
            Figure::Refresh => "refresh_token rotation over gRPC, durable",
            Figure::Introspection => "introspection of an access token over gRPC",
            Figure::Exchange => "token exchange over gRPC, JWT → JWT",
        }
    }
}

/// A new subscriber joins the full platform's feed from nothing: the time until it has applied
/// every live revocation and knows it is current, and the process's resident memory meanwhile.
fn new_subscriber(
    load: &tokio::runtime::Runtime,
    server: &Server,
    live: usize,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let platform = server.platform()?;
    let revocation = platform
        .revocation
        .as_ref()
        .context("the revocation service runs")?;
    let url = platform.url(revocation.grpc_addr);
    let (jwt, _) = server.engine.service_token(
        writ_vocabulary::names::REVOCATION_AUDIENCE,
        writ_vocabulary::names::REVOCATION_WATCH_SCOPE,
    )?;
    let bearer = writ_client::bearer_value(&jwt)?;
    let (rss_before, _) = rss()?;
    let set = RevocationSet::new();
    let (peak, (elapsed, messages)) = peak_while(
        || Ok(rss()?.0),
        || {
            load.block_on(async {
                let mut client = RevocationServiceClient::new(connect_one(&url).await?);
                let started = Instant::now();
                let mut request = tonic::Request::new(WatchRequest { from_sequence: 0 });
                request.metadata_mut().insert("authorization", bearer);
                let mut stream = client.watch(request).await?.into_inner();
                let deadline = tokio::time::Instant::now() + PATIENCE;
                let messages = catch_up(&mut stream, &set, live, deadline).await?;
                anyhow::Ok((started.elapsed(), messages))
            })
        },
    )?;
    notes.push(format!(
        "new subscriber from nothing: synced with {} live revocations in {:.2} s ({messages} messages); process resident memory {:.0} MiB before, peak {:.0} MiB while it synced (+{:.0} MiB, its own set included: {:.0} MiB of table)",
        set.len(),
        elapsed.as_secs_f64(),
        rss_before as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        (peak - rss_before) as f64 / 1048576.0,
        set.table_bytes() as f64 / 1048576.0,
    ));
    Ok(())
}

/// Every client through the admin API, page by page, as `writ admin client list` reads them.
fn list_clients(
    load: &tokio::runtime::Runtime,
    server: &Server,
    data_dir: &std::path::Path,
    expected: usize,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let platform = server.platform()?;
    let authz = platform
        .authz
        .as_ref()
        .context("the authorization server")?;
    let url = platform.url(authz.admin_addr);
    let credential = std::fs::read_to_string(data_dir.join(writ::platform::ADMIN_TOKEN_FILE))
        .context("the admin credential")?;
    let bearer = writ_client::StaticBearer::new(credential.trim())?;
    let (rss_before, _) = rss()?;
    let (count, pages, elapsed) = load.block_on(async {
        let mut admin = AdminServiceClient::with_interceptor(connect_one(&url).await?, bearer);
        let started = Instant::now();
        let (mut count, mut pages, mut token) = (0usize, 0usize, String::new());
        loop {
            anyhow::ensure!(pages <= expected, "the listing does not end");
            let page = admin
                .list_clients(ListClientsRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                })
                .await?
                .into_inner();
            count += page.clients.len();
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        anyhow::Ok((count, pages, started.elapsed()))
    })?;
    let (rss_after, _) = rss()?;
    anyhow::ensure!(
        count >= expected,
        "listed {count} clients of at least {expected}"
    );
    notes.push(format!(
        "admin ListClients: {count} clients in {pages} pages of 1,000 in {:.2} s; resident memory {:+.0} MiB",
        elapsed.as_secs_f64(),
        (rss_after - rss_before) as f64 / 1048576.0
    ));
    Ok(())
}

/// Stops the full platform and starts it again on the same data directory (`full` is consumed:
/// everything holding its stores must let go first): the time until it answers a token request,
/// and until its STS's revocation feed is synced again.
fn restart(
    load: &tokio::runtime::Runtime,
    mut full: Server,
    fixture: &Fixture,
    keep: Option<&std::path::Path>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let config = full.platform()?.config.clone();
    // The data directory outlives the server: a fresh empty one takes its place.
    let dir = std::mem::replace(&mut full._dir, tempfile::tempdir()?);
    drop(full);
    let runtime = crate::server_runtime()?;
    let (id, secret) = &fixture.bench;
    let request = cc_request(id, secret, "inventory.read");
    let started = Instant::now();
    let platform = runtime.block_on(Platform::start(config))?;
    let started_in = started.elapsed();
    let outcome = (|| {
        let authz = platform
            .authz
            .as_ref()
            .context("the authorization server")?;
        let url = platform.url(authz.grpc_addr);
        load.block_on(async {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let ok = match connect_one(&url).await {
                    Ok(c) => AuthorizationServiceClient::new(c)
                        .token(request.clone())
                        .await
                        .is_ok(),
                    Err(_) => false,
                };
                if ok {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "the restarted platform never served"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            anyhow::Ok(())
        })?;
        let serving = started.elapsed();
        let sts = platform.sts.as_ref().context("the STS runs")?;
        // Following a feed, the STS serves once it has synced; beside the log, at once.
        if let Some(set) = &sts.revocations {
            load.block_on(async {
                let deadline = Instant::now() + PATIENCE;
                while set.staleness().is_none() {
                    anyhow::ensure!(Instant::now() < deadline, "the STS's feed never synced");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                anyhow::Ok(())
            })?;
        }
        notes.push(format!(
            "restart on the full data directory: started in {:.2} s, first token at {:.2} s, STS ready at {:.2} s",
            started_in.as_secs_f64(),
            serving.as_secs_f64(),
            started.elapsed().as_secs_f64()
        ));
        anyhow::Ok(())
    })();
    runtime.block_on(platform.stop());
    drop(runtime);
    if let Some(path) = keep {
        std::fs::rename(dir.keep(), path)?;
    }
    outcome
}

pub fn run(
    cli: &Cli,
    load: &tokio::runtime::Runtime,
) -> anyhow::Result<(Vec<Outcome>, Vec<String>)> {
    let args = &cli.scale;
    let mut notes = Vec::new();
    let start = || {
        Server::start_on(&crate::Backend::Sled, false, Services::All, |config| {
            if let Some(mib) = args.scale_cache_mib {
                config.store = writ::platform::StoreChoice::Sled(writ_store::SledConfig {
                    cache_bytes: mib * 1024 * 1024,
                });
            }
        })
    };
    let empty = start()?;
    let full = start()?;
    eprintln!("scale: filling");
    let empty_fixture = Fixture::create(&empty)?;
    let full_fixture = Fixture::create(&full)?;
    fill(&full, args, &mut notes)?;
    sts_synced(&empty)?;
    sts_synced(&full)?;
    let (rss_full, _) = rss()?;
    notes.push(format!(
        "process resident memory with both platforms up, one full: {:.0} MiB",
        rss_full as f64 / 1048576.0
    ));

    let mut outcomes = Vec::new();
    for figure in [
        Figure::ClientCredentials,
        Figure::Refresh,
        Figure::Introspection,
        Figure::Exchange,
    ] {
        for round in 0..args.scale_rounds {
            let (first, second) = if round % 2 == 0 {
                (
                    (&empty, &empty_fixture, "empty"),
                    (&full, &full_fixture, "full"),
                )
            } else {
                (
                    (&full, &full_fixture, "full"),
                    (&empty, &empty_fixture, "empty"),
                )
            };
            for (server, fixture, label) in [first, second] {
                outcomes.push(measure(cli, load, server, fixture, figure, label)?);
            }
        }
    }
    drop(empty);

    eprintln!("scale: a new subscriber, the admin listing, a restart");
    new_subscriber(load, &full, args.scale_revocations, &mut notes)?;
    let data_dir = full._dir.path().to_owned();
    list_clients(load, &full, &data_dir, args.scale_clients, &mut notes)?;
    restart(
        load,
        full,
        &full_fixture,
        args.scale_keep_dir.as_deref(),
        &mut notes,
    )?;
    Ok((outcomes, notes))
}
