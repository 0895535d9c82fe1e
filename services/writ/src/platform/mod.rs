//! Running the platform from its one typed configuration ([`PlatformConfig`]): every service in
//! one process (`writ up`), one service alone (`writ serve <service>`), the tests' servers and
//! the benchmarks'. Each service is a library with its own `spec`/`start`; this module only
//! wires them to each other: in-process adapters when they share the process
//! ([`in_process`]), gRPC clients when they do not.

mod config;
pub mod in_process;
mod store;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use writ_oauth::AuthorizationServer;
use writ_revocation_log::RevocationLog;
use writ_server::{Shutdown, ShutdownSignal};
use writ_tls::TlsMaterial;
use writ_token::{SharedClock, TrustedIssuer};
use writ_vocabulary::names::{
    ADMIN_AUDIENCE, ADMIN_AUTHENTICATE_CLIENT_SCOPE, ADMIN_READ_SCOPE, REVOCATION_AUDIENCE,
    REVOCATION_WATCH_SCOPE,
};

pub use config::{
    AuthzSettings, ExternalIssuer, KEY_ENCRYPTION_KEY_FILE, KeyEncryption, LOOPBACK,
    PlatformConfig, RevocationSettings, StoreChoice, StsSettings, StsWiring, TlsMode,
};
pub use store::{DEFAULT_SCHEMA_PREFIX, ServiceStore};

/// File in the data directory holding the admin credential (mode 0600).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// File in the data directory listing the bound endpoints, for scripts and tests.
pub const ENDPOINTS_FILE: &str = "endpoints.json";

/// How often a Writ issuer's keys are fetched when it runs in another process, and the least
/// time between fetches when a token names a key not yet known.
const REMOTE_KEYS: (Duration, Duration) = (Duration::from_secs(300), Duration::from_secs(5));
/// How long the STS caches the exchange policies it reads through the admin API.
const REMOTE_POLICY_TTL: Duration = Duration::from_secs(5);

/// The authorization server, running.
#[derive(Debug)]
pub struct RunningAuthz {
    pub engine: Arc<AuthorizationServer>,
    pub store: ServiceStore,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The admin API's address (its own listener).
    pub admin_addr: SocketAddr,
    /// The gateway check's addresses (gRPC for Envoy, HTTP for nginx), when it is served.
    pub gateway_addrs: Option<(SocketAddr, SocketAddr)>,
    /// The mTLS endpoint aliases' address, when they are served (TLS on).
    pub mtls_addr: Option<SocketAddr>,
    pub issuer: String,
    served: writ_authz::Served,
    /// The feed introspection follows, when the revocation service runs elsewhere.
    watcher: Option<writ_revocation_client::Watcher>,
}

/// The revocation service, running.
#[derive(Debug)]
pub struct RunningRevocation {
    pub log: Arc<RevocationLog>,
    pub store: ServiceStore,
    pub grpc_addr: SocketAddr,
    served: writ_server::Running,
}

/// What the STS is wired to, for its directory of clients, its watch tokens and the
/// revocation index it consults besides the feed.
struct StsPeers {
    directory: Arc<dyn writ_exchange::Directory>,
    watch_tokens: Arc<dyn writ_client::BearerSource>,
    local_index: Option<Arc<dyn writ_token::AsyncRevocationCheck>>,
}

/// A running platform: the services this process runs.
#[derive(Debug)]
pub struct Platform {
    pub config: PlatformConfig,
    pub tls: Option<TlsMaterial>,
    /// The CA this process trusts for its peers.
    pub peer_ca: Option<String>,
    pub authz: Option<RunningAuthz>,
    pub revocation: Option<RunningRevocation>,
    pub sts: Option<writ_sts::Running>,
    key_encryption_key: Arc<writ_keyring::KeyEncryptionKey>,
    /// What `/readyz` checks: each service adds its own as it starts.
    pub readiness: writ_server::ops::Readiness,
    /// Where `/metrics`, `/livez` and `/readyz` are served, if anywhere.
    pub ops_addr: Option<SocketAddr>,
    shutdown: Shutdown,
    signal: ShutdownSignal,
    /// Stores opened ahead, all at once, for the services `start` runs (by directory name).
    opened: std::sync::Mutex<std::collections::HashMap<&'static str, ServiceStore>>,
    /// The audit log this process opened itself, when no authorization server runs here.
    audit: Option<writ_audit::Auditor>,
}

/// The sled page caches of one process together, by default: 8 MiB by sled's own accounting
/// (resident memory runs to two or three times it). On a full platform (a million live
/// revocations, 100,000 clients) every request figure stayed within 7 % of an empty one at 8
/// MiB, and each MiB of budget cost 2 to 3 MiB resident (BENCHMARKS.md, issue 17). A platform
/// with many active clients and users may want more.
pub const SLED_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// `dir_name`'s share of a process's sled cache budget `total`, among the stores `runs` says
/// it opens: weighed by what each keeps hot (the authorization server's clients, grants and
/// revocation index 4; the revocation log's recent pages 3; the STS's keys and policies 1).
/// At least 1 MiB (`--store-cache-mib` starts at 8, so three stores stay within it).
fn cache_share(total: u64, dir_name: &str, runs: &[(&str, bool)]) -> u64 {
    let weight = |dir: &str| match dir {
        d if d == AUTHZ_STORE.0 => 4,
        d if d == REVOCATION_STORE.0 => 3,
        _ => 1,
    };
    let all: u64 = runs
        .iter()
        .filter(|(dir, on)| *on || *dir == dir_name)
        .map(|(dir, _)| weight(dir))
        .sum();
    let share = u128::from(total) * u128::from(weight(dir_name)) / u128::from(all.max(1));
    u64::try_from(share).unwrap_or(total).max(1024 * 1024)
}

/// Each service's store: directory (or schema suffix), service name, and what it is called.
pub(crate) const AUTHZ_STORE: (&str, &str, &str) =
    ("store", "authz", "the authorization server's store");
pub(crate) const REVOCATION_STORE: (&str, &str, &str) =
    ("revocation", "revocation", "the revocation log");
pub(crate) const STS_STORE: (&str, &str, &str) = ("sts", "sts", "the STS store");

impl Platform {
    /// Starts what `config` names: the revocation service's port first (every other service
    /// needs its address), then the authorization server, the revocation service, the STS.
    pub async fn start(config: PlatformConfig) -> anyhow::Result<Platform> {
        create_private_dir(&config.data_dir)?;
        if let StoreChoice::Postgres(_) = &config.store {
            // Replicas share the stores, so they must share what seals the keys in them and the
            // issuer their tokens name: neither may be one replica's own.
            anyhow::ensure!(
                config.key_encryption != KeyEncryption::DataDir,
                "with a PostgreSQL store, every replica needs the same key-encryption key: give --key-encryption-key-file or WRIT_KEY_ENCRYPTION_KEY"
            );
            anyhow::ensure!(
                config
                    .authz
                    .as_ref()
                    .is_none_or(|a| !a.engine.issuer.is_empty()),
                "with a PostgreSQL store, authorization server replicas share one issuer: give --issuer (the URL clients reach them at)"
            );
            anyhow::ensure!(
                config
                    .sts
                    .as_ref()
                    .is_none_or(|s| !s.exchange.issuer.is_empty()),
                "with a PostgreSQL store, STS replicas share one issuer: give --sts-issuer (the URL clients reach them at)"
            );
        }
        let tls = tls_material(&config)?;
        let peer_ca = match &config.peer_ca {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            None => tls.as_ref().and_then(|t| t.ca_pem.clone()),
        };
        let key_encryption_key = Arc::new(
            match &config.key_encryption {
                KeyEncryption::DataDir => writ_keyring::KeyEncryptionKey::load_or_create(
                    &config.data_dir.join(KEY_ENCRYPTION_KEY_FILE),
                    true,
                ),
                KeyEncryption::File(path) => {
                    writ_keyring::KeyEncryptionKey::load_or_create(path, false)
                }
                KeyEncryption::Value(text) => writ_keyring::KeyEncryptionKey::from_base64(text),
            }
            .context("the key-encryption key")?,
        );
        let (shutdown, signal) = Shutdown::new();
        let mut platform = Platform {
            config: config.clone(),
            tls,
            peer_ca,
            authz: None,
            revocation: None,
            sts: None,
            key_encryption_key,
            readiness: writ_server::ops::Readiness::default(),
            ops_addr: None,
            shutdown,
            signal,
            opened: Default::default(),
            audit: None,
        };
        // Opening a large sled store reads its segments (a second or more with a million
        // revocations): the configured services' stores open at once, not one after another.
        {
            let open = |(dir, service, what): (&'static str, &'static str, &'static str),
                        wanted: bool| {
                let platform = &platform;
                async move {
                    if !wanted {
                        return anyhow::Ok(None);
                    }
                    Ok(Some((dir, platform.open_store(dir, service, what).await?)))
                }
            };
            let (a, r, s) = tokio::join!(
                open(AUTHZ_STORE, config.authz.is_some()),
                open(REVOCATION_STORE, config.revocation.is_some()),
                open(STS_STORE, config.sts.is_some()),
            );
            let mut opened = platform.opened.lock().unwrap_or_else(|e| e.into_inner());
            for (dir, store) in [a?, r?, s?].into_iter().flatten() {
                opened.insert(dir, store);
            }
        }
        let revocation_listener = match &config.revocation {
            Some(r) => Some(writ_server::bind(r.grpc).await?),
            None => None,
        };
        if let Some(l) = &revocation_listener {
            let url = platform.url(writ_server::local_addr(l)?);
            platform.config.revocation_url = Some(url);
        }
        if let Some(settings) = &config.authz {
            platform.start_authz(settings).await?;
        }
        if let (Some(settings), Some(listener)) = (&config.revocation, revocation_listener) {
            platform.start_revocation(settings, listener).await?;
        }
        if let Some(settings) = &config.sts {
            platform.start_sts(settings.clone()).await?;
        }
        if let Some(addr) = config.ops {
            let listener = writ_server::bind(addr).await?;
            platform.ops_addr = Some(writ_server::local_addr(&listener)?);
            tokio::spawn(writ_server::ops::serve_ops(
                listener,
                platform.readiness.clone(),
                platform.signal.clone(),
            ));
        }
        Ok(platform)
    }

    /// A service's store, as configured: sled in `<data-dir>/<dir_name>`, or its schema on
    /// PostgreSQL.
    async fn open_store(
        &self,
        dir_name: &str,
        service: &str,
        what: &str,
    ) -> anyhow::Result<ServiceStore> {
        let ahead = self
            .opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(dir_name);
        if let Some(store) = ahead {
            return Ok(store);
        }
        ServiceStore::open(
            &self.store_choice(dir_name),
            &self.config.data_dir,
            dir_name,
            service,
            what,
        )
        .await
    }

    /// The store `dir_name` opens with: on sled, its share of the process's cache budget.
    fn store_choice(&self, dir_name: &str) -> StoreChoice {
        let StoreChoice::Sled(total) = &self.config.store else {
            return self.config.store.clone();
        };
        let runs = [
            (AUTHZ_STORE.0, self.config.authz.is_some()),
            (REVOCATION_STORE.0, self.config.revocation.is_some()),
            (STS_STORE.0, self.config.sts.is_some()),
        ];
        StoreChoice::Sled(writ_store::SledConfig {
            cache_bytes: cache_share(total.cache_bytes, dir_name, &runs),
        })
    }

    /// `https://addr`, or `http://addr` without TLS.
    pub fn url(&self, addr: SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }

    /// Resolves when the platform stops: for servers a caller runs beside it (a benchmark's).
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.signal.clone()
    }

    /// The clock every service of this platform reads.
    pub fn clock(&self) -> &SharedClock {
        &self.config.clock
    }

    /// A client endpoint for a peer at `url`, trusting the peer CA.
    pub fn endpoint(&self, url: &str) -> anyhow::Result<tonic::transport::Endpoint> {
        Ok(writ_server::endpoint(url, self.peer_ca.as_deref())?)
    }

    /// The revocation service's replicas (`revocation_url`, comma-separated): one lazily
    /// connecting channel each, for watchers that fail over between them.
    fn revocation_channels(&self) -> anyhow::Result<Option<Vec<tonic::transport::Channel>>> {
        let Some(urls) = &self.config.revocation_url else {
            return Ok(None);
        };
        let channels = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| Ok(self.endpoint(u)?.connect_lazy()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!channels.is_empty(), "--revocation-url names no URL");
        Ok(Some(channels))
    }

    /// One channel balanced over the revocation service's replicas (unary calls: a publisher's
    /// `Revoke` goes to one that answers).
    fn revocation_balanced(&self) -> anyhow::Result<Option<tonic::transport::Channel>> {
        let Some(urls) = &self.config.revocation_url else {
            return Ok(None);
        };
        let endpoints = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| self.endpoint(u))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(match endpoints.len() {
            0 => anyhow::bail!("--revocation-url names no URL"),
            1 => endpoints.into_iter().next().map(|e| e.connect_lazy()),
            _ => Some(tonic::transport::Channel::balance_list(
                endpoints.into_iter(),
            )),
        })
    }

    async fn start_authz(&mut self, settings: &AuthzSettings) -> anyhow::Result<()> {
        let grpc = writ_server::bind(settings.grpc).await?;
        let http = writ_server::bind(settings.http).await?;
        let (grpc_addr, http_addr) = (
            writ_server::local_addr(&grpc)?,
            writ_server::local_addr(&http)?,
        );
        let admin = writ_server::bind(settings.admin).await?;
        let admin_addr = writ_server::local_addr(&admin)?;
        let gateway = match settings.gateway {
            Some((grpc, http)) => Some(writ_authz::GatewayListeners {
                grpc: writ_server::bind(grpc).await?,
                http: writ_server::bind(http).await?,
            }),
            None => None,
        };
        let gateway_addrs = match &gateway {
            Some(l) => Some((
                writ_server::local_addr(&l.grpc)?,
                writ_server::local_addr(&l.http)?,
            )),
            None => None,
        };
        let mtls = match (settings.mtls, &self.tls) {
            (Some(addr), Some(_)) => Some(writ_server::bind(addr).await?),
            _ => None,
        };
        let mtls_addr = mtls.as_ref().map(writ_server::local_addr).transpose()?;
        let mut engine_config = settings.engine.clone();
        engine_config.audit = self.config.audit.clone();
        if engine_config.issuer.is_empty() {
            engine_config.issuer = self.url(http_addr);
        }
        if let Some(addr) = mtls_addr
            && engine_config.mtls_endpoint.is_empty()
        {
            engine_config.mtls_endpoint = self.url(addr);
        }
        let issuer = engine_config.issuer.clone();
        let dir = &self.config.data_dir;
        let store = self
            .open_store(AUTHZ_STORE.0, AUTHZ_STORE.1, AUTHZ_STORE.2)
            .await?;
        let (engine, bootstrap) = AuthorizationServer::open(
            store.store.clone(),
            engine_config,
            self.clock().clone(),
            self.key_encryption_key.clone(),
        )
        .await?;
        if let Some(credential) = bootstrap.admin_credential {
            writ_tls::write(dir, ADMIN_TOKEN_FILE, &credential, true)?;
            tracing::info!(path = %dir.join(ADMIN_TOKEN_FILE).display(), "wrote the admin credential");
        }
        let engine = Arc::new(engine);
        let fetcher = match &settings.client_jwks_ca {
            Some(path) => writ_authz::HttpsClientKeys::new(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("reading --client-jwks-ca {}", path.display()))?,
            )
            .map_err(|e| anyhow::anyhow!("--client-jwks-ca {}: {e}", path.display()))?,
            None => writ_authz::HttpsClientKeys::system(),
        };
        engine.fetch_client_keys_with(Arc::new(fetcher));
        let revocation = self.revocation_balanced()?;
        // Introspection sees every producer's revocations: the log itself when it runs in this
        // process (wired once it starts), else the feed, watched with the server's own tokens.
        let watcher = match (self.revocation_channels()?, &self.config.revocation) {
            (Some(channels), None) => {
                let set = Arc::new(writ_revocation_client::RevocationSet::new());
                let watcher = writ_revocation_client::Watcher::spawn_failover(
                    channels,
                    Arc::new(in_process::EngineTokens(engine.clone())),
                    set.clone(),
                    writ_revocation_client::WatchConfig::default(),
                );
                engine.follow_feed(Arc::new(writ_revocation_client::RevocationFeed::new(
                    set,
                    writ_revocation_client::DEFAULT_MAX_STALENESS,
                )));
                Some(watcher)
            }
            _ => None,
        };
        let served = writ_authz::start(
            engine.clone(),
            grpc,
            http,
            admin,
            writ_authz::ExtraListeners { gateway, mtls },
            self.tls.as_ref(),
            writ_authz::Options { revocation },
            self.signal.clone(),
        )
        .await?;
        self.readiness
            .add("authorization server store", store.readiness());
        store.sample_pool("authz");
        if let Some(w) = &watcher {
            let set = Arc::downgrade(w.set());
            let bound = writ_revocation_client::DEFAULT_MAX_STALENESS;
            writ_metrics::sampler(move |m| {
                if let Some(set) = set.upgrade() {
                    m.set_feed_staleness("authz", set.staleness());
                }
            });
            let set = Arc::downgrade(w.set());
            self.readiness
                .add("authorization server revocation feed", move || {
                    let set = set.upgrade();
                    async move { feed_fresh(set.as_deref(), bound) }
                });
        }
        self.authz = Some(RunningAuthz {
            engine,
            store,
            grpc_addr,
            http_addr,
            admin_addr,
            gateway_addrs,
            mtls_addr,
            issuer,
            served,
            watcher,
        });
        Ok(())
    }

    async fn start_revocation(
        &mut self,
        settings: &RevocationSettings,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<()> {
        // Callers present tokens from the authorization server: in this process, its keys
        // directly; otherwise fetched from it.
        let issuer = self
            .authorization_server_issuer("`serve revocation`")
            .await?;
        let store = self
            .open_store(REVOCATION_STORE.0, REVOCATION_STORE.1, REVOCATION_STORE.2)
            .await?;
        let log = RevocationLog::open(store.store.clone(), settings.log).await?;
        let service = writ_revocation::Config {
            audit: self.auditor(&store.store, "revocation").await?,
            ..settings.service.clone()
        };
        let served = writ_revocation::start(
            log.clone(),
            vec![issuer],
            self.clock().clone(),
            service,
            listener,
            self.tls.as_ref(),
            self.signal.clone(),
        )
        .await?;
        if let Some(authz) = &self.authz {
            authz.engine.follow_log(log.clone()).await?;
        }
        {
            let weak = Arc::downgrade(&log);
            writ_metrics::sampler(move |m| {
                if let Some(log) = weak.upgrade() {
                    m.set_state("revocation_log_head", log.head() as i64);
                    m.set_state("revocation_log_live_entries", log.live_count() as i64);
                }
            });
            self.readiness
                .add("revocation log store", store.readiness());
            store.sample_pool("revocation");
        }
        self.revocation = Some(RunningRevocation {
            log,
            store,
            grpc_addr: served.grpc_addr,
            served,
        });
        Ok(())
    }

    /// The process's audit log, for `service`: the authorization server's when it runs here,
    /// else one opened in `store` (the first service's) and shared with the others.
    async fn auditor(
        &mut self,
        store: &Arc<dyn writ_store::AsyncStore>,
        service: &'static str,
    ) -> anyhow::Result<writ_audit::Auditor> {
        if let Some(a) = &self.authz {
            return Ok(a.engine.auditor().for_service(service));
        }
        if let Some(own) = &self.audit {
            return Ok(own.for_service(service));
        }
        let own = writ_audit::Auditor::open(
            store.clone(),
            &self.key_encryption_key,
            self.config.audit.clone(),
            service,
        )
        .await?;
        self.audit = Some(own.clone());
        Ok(own)
    }

    /// The authorization server as a trusted issuer: its keys in this process (minus any
    /// revoked by id), or fetched from `authz_url`.
    async fn authorization_server_issuer(&self, who: &str) -> anyhow::Result<TrustedIssuer> {
        if let Some(a) = &self.authz {
            let engine = a.engine.clone();
            return Ok(TrustedIssuer::new(
                a.issuer.clone(),
                Arc::new(writ_trust::LocalKeys(move || engine.trusted_keys())),
            ));
        }
        let url = self.config.authz_url.as_deref().with_context(|| {
            format!("{who} needs --authz-url: the authorization server whose tokens to trust")
        })?;
        let channel = self
            .endpoint(url)?
            .connect()
            .await
            .with_context(|| format!("connecting to the authorization server at {url}"))?;
        let (every, min_refresh) = REMOTE_KEYS;
        let remote = writ_trust::RemoteKeys::connect(channel, every, min_refresh)
            .await
            .with_context(|| format!("fetching the authorization server's keys from {url}"))?;
        Ok(TrustedIssuer::new(remote.issuer().to_owned(), remote))
    }

    /// Starts the STS: wired to the authorization server in this process, or to the one at
    /// `authz_url`, and to the revocation service at `revocation_url`. Also for adding the STS
    /// to a platform already running (the tests do).
    pub async fn start_sts(&mut self, settings: StsSettings) -> anyhow::Result<&writ_sts::Running> {
        let grpc = writ_server::bind(settings.grpc).await?;
        let http = writ_server::bind(settings.http).await?;
        let mut exchange = settings.exchange.clone();
        if exchange.issuer.is_empty() {
            exchange.issuer = self.url(writ_server::local_addr(&http)?);
        }
        let authority = self.authorization_server_issuer("`serve sts`").await?;
        let wired = self.sts_wiring(&settings.wiring)?;
        // Beside the revocation log on the embedded store (`writ up`), the STS reads it directly:
        // a lookup in the process's own sled tree, and no second copy of every live revocation. On
        // PostgreSQL a lookup is a round trip per target, so it follows the feed into a set of
        // its own, as it does run apart.
        anyhow::ensure!(
            self.config.revocation.is_none() || self.revocation.is_some(),
            "the revocation service must start before the STS in one process"
        );
        let revocations = match (&settings.wiring, &self.revocation) {
            (StsWiring::InProcess { .. }, Some(r)) if r.store.sled.is_some() => {
                writ_sts::Revocations::InProcess(r.log.clone())
            }
            _ => writ_sts::Revocations::Feed {
                channels: self.revocation_channels()?.context(
                    "`serve sts` needs --revocation-url: the revocation feed it refuses revoked tokens from",
                )?,
                tokens: wired.watch_tokens.clone(),
                watch: settings.watch,
                max_staleness: settings.max_feed_staleness,
            },
        };
        let mut issuers = vec![authority];
        for external in &settings.external_issuers {
            // Fails closed: a non-https URL, a missing CA or a failed first fetch refuse to start.
            issuers.push(
                writ_sts::keys::external_issuer(
                    &external.issuer,
                    &external.jwks,
                    external.ca.as_deref(),
                    writ_sts::keys::EXTERNAL_REFRESH_EVERY,
                    writ_sts::keys::EXTERNAL_MIN_REFRESH,
                )
                .await?,
            );
        }
        issuers.extend(settings.trusted_issuers.iter().cloned());
        let store = self
            .open_store(STS_STORE.0, STS_STORE.1, STS_STORE.2)
            .await?;
        self.readiness.add("STS store", store.readiness());
        store.sample_pool("sts");
        let audit = self.auditor(&store.store, "sts").await?;
        let running = writ_sts::start(
            writ_sts::Options {
                audit,
                key_encryption_key: self.key_encryption_key.clone(),
                store: store.store.clone(),
                config: exchange,
                clock: self.clock().clone(),
                directory: wired.directory,
                issuers,
                revocations,
                local_index: wired.local_index,
                key_rotation: settings.key_rotation,
            },
            grpc,
            http,
            self.tls.as_ref(),
            self.signal.clone(),
        )
        .await?;
        if let Some(set) = &running.revocations {
            let weak = Arc::downgrade(set);
            writ_metrics::sampler(move |m| {
                if let Some(set) = weak.upgrade() {
                    m.set_feed_staleness("sts", set.staleness());
                }
            });
            let set = Arc::downgrade(set);
            let bound = settings.max_feed_staleness;
            self.readiness.add("STS revocation feed", move || {
                let set = set.upgrade();
                async move { feed_fresh(set.as_deref(), bound) }
            });
        }
        self.config.sts = Some(settings);
        Ok(self.sts.insert(running))
    }

    /// How the STS reaches the authorization server: its engine in this process, or its
    /// AdminService and token endpoint over gRPC.
    fn sts_wiring(&self, wiring: &StsWiring) -> anyhow::Result<StsPeers> {
        match (wiring, &self.authz) {
            (
                StsWiring::InProcess {
                    consult_authz_index,
                },
                Some(a),
            ) => Ok(StsPeers {
                directory: Arc::new(in_process::LocalDirectory(a.engine.clone())),
                watch_tokens: Arc::new(in_process::EngineTokens(a.engine.clone())),
                local_index: consult_authz_index
                    .then(|| a.engine.clone() as Arc<dyn writ_token::AsyncRevocationCheck>),
            }),
            (StsWiring::InProcess { .. }, None) => anyhow::bail!(
                "the STS is wired in-process, but the authorization server does not run in this process"
            ),
            (StsWiring::Remote { client }, _) => {
                // A peer of the authorization server: as configured, else in this process.
                let peer = |configured: &Option<String>,
                            here: fn(&RunningAuthz) -> SocketAddr,
                            missing: &'static str| {
                    let url = configured
                        .clone()
                        .or_else(|| self.authz.as_ref().map(|a| self.url(here(a))))
                        .context(missing)?;
                    anyhow::Ok(self.endpoint(&url)?.connect_lazy())
                };
                let channel = peer(
                    &self.config.authz_url,
                    |a| a.grpc_addr,
                    "`serve sts` needs --authz-url: the authorization server whose clients, policies and tokens apply",
                )?;
                let admin_channel = peer(
                    &self.config.authz_admin_url,
                    |a| a.admin_addr,
                    "`serve sts` needs --authz-admin-url: the authorization server's admin API, for its clients and policies",
                )?;
                let admin_tokens = writ_client::TokenSource::new(
                    channel.clone(),
                    client.clone().for_audience(
                        ADMIN_AUDIENCE,
                        &format!("{ADMIN_AUTHENTICATE_CLIENT_SCOPE} {ADMIN_READ_SCOPE}"),
                    ),
                );
                Ok(StsPeers {
                    directory: Arc::new(writ_sts::directory::RemoteDirectory::new(
                        admin_channel,
                        admin_tokens,
                        REMOTE_POLICY_TTL,
                    )),
                    watch_tokens: Arc::new(writ_client::TokenSource::new(
                        channel,
                        client
                            .clone()
                            .for_audience(REVOCATION_AUDIENCE, REVOCATION_WATCH_SCOPE),
                    )),
                    local_index: None,
                })
            }
        }
    }

    /// The endpoints, as `endpoints.json` lists them for scripts and the demo.
    pub fn endpoints(&self) -> serde_json::Value {
        let mut e = serde_json::Map::new();
        if let Some(a) = &self.authz {
            e.insert("authz_grpc".into(), self.url(a.grpc_addr).into());
            e.insert("authz_http".into(), self.url(a.http_addr).into());
            e.insert("authz_admin".into(), self.url(a.admin_addr).into());
            if let Some((grpc, http)) = a.gateway_addrs {
                e.insert("gateway_grpc".into(), self.url(grpc).into());
                e.insert("gateway_http".into(), self.url(http).into());
            }
            if let Some(mtls) = a.mtls_addr {
                e.insert("authz_mtls".into(), self.url(mtls).into());
            }
            e.insert("issuer".into(), a.issuer.clone().into());
        }
        if let Some(r) = &self.revocation {
            e.insert("revocation_grpc".into(), self.url(r.grpc_addr).into());
        }
        if let Some(s) = &self.sts {
            e.insert("sts_grpc".into(), self.url(s.grpc_addr).into());
            e.insert("sts_http".into(), self.url(s.http_addr).into());
            e.insert("sts_issuer".into(), s.engine.config().issuer.clone().into());
        }
        if let Some(addr) = self.ops_addr {
            e.insert("ops".into(), format!("http://{addr}").into());
        }
        e.insert("tls".into(), self.tls.is_some().into());
        e.insert("pid".into(), std::process::id().into());
        serde_json::Value::Object(e)
    }

    /// Writes `endpoints.json` into the data directory: the readiness signal scripts (and the
    /// demo) wait for, so it comes last, once everything is up and announced.
    pub fn write_endpoints(&self) -> anyhow::Result<()> {
        writ_tls::write(
            &self.config.data_dir,
            ENDPOINTS_FILE,
            &self.endpoints().to_string(),
            false,
        )?;
        Ok(())
    }

    /// Stops every service and waits for them; the stores are released when this returns
    /// (a restart in the same process reopens them).
    pub async fn stop(self) {
        self.shutdown.trigger();
        let Platform {
            authz,
            revocation,
            sts,
            audit,
            ..
        } = self;
        if let Some(s) = sts {
            s.wait().await;
        }
        if let Some(r) = revocation {
            r.served.wait().await;
        }
        if let Some(a) = authz {
            a.served.public.wait().await;
            a.served.admin.wait().await;
            if let Some(g) = a.served.gateway {
                g.wait().await;
            }
            if let Some(m) = a.served.mtls {
                let _ = m.await;
            }
            if let Some(w) = a.watcher {
                w.stop();
            }
            // Last: what the services recorded on their way out is chained and signed.
            a.engine.auditor().close().await;
        }
        if let Some(audit) = audit {
            audit.close().await;
        }
    }
}

/// Creates `dir` (owner only), its new names durable in their parents.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    // Every level `create_dir_all` makes, deepest first: each name is synced into its parent.
    let mut created = Vec::new();
    let mut at = dir;
    while !at.is_dir() {
        created.push(at.to_path_buf());
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => break,
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
        // A new directory's name is durable before anything durable is written under it.
        for level in &created {
            writ_store::sync_dir_logged(writ_store::parent_dir(level));
        }
    }
    Ok(())
}

fn tls_material(config: &PlatformConfig) -> anyhow::Result<Option<TlsMaterial>> {
    Ok(match &config.tls {
        TlsMode::Off => {
            tracing::warn!(
                "TLS is off (--insecure-plaintext): tokens and secrets travel in clear text"
            );
            None
        }
        TlsMode::Files { cert, key } => Some(writ_tls::load_pem_files(cert, key)?),
        TlsMode::Development { hosts } => Some(writ_tls::ensure_dev_pki(&config.data_dir, hosts)?),
    })
}

/// Waits for Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: call it before announcing readiness (endpoints.json, the banner), or a
/// SIGTERM sent as soon as endpoints.json appears still has its default action and kills the
/// process instead of stopping it gracefully.
pub fn until_signalled() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn recv(s: Option<Signal>) {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            tokio::select! {
                _ = recv(term) => {},
                _ = recv(interrupt) => {},
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub fn print_banner(p: &Platform) {
    let dir = p.config.data_dir.display();
    let tls = if p.tls.is_some() { "on" } else { "OFF" };
    println!("Writ is up (data in {dir}, TLS {tls}).\n");
    if let Some(a) = &p.authz {
        println!("  authorization server   gRPC {}", p.url(a.grpc_addr));
        println!(
            "                         HTTP {}  (issuer {})",
            p.url(a.http_addr),
            a.issuer
        );
        println!("  admin credential       {dir}/{ADMIN_TOKEN_FILE}");
    }
    if let Some(r) = &p.revocation {
        println!("  revocation service     gRPC {}", p.url(r.grpc_addr));
    }
    if let Some(s) = &p.sts {
        println!("  security token service gRPC {}", p.url(s.grpc_addr));
        println!(
            "                         HTTP {}  (issuer {})",
            p.url(s.http_addr),
            s.engine.config().issuer
        );
    }
    if p.tls.is_some() {
        println!("  CA certificate         {dir}/ca.pem (the CLI trusts it via --data-dir)");
    }
    if p.authz.is_some() {
        println!(
            "\nGet a first token, from another terminal:
  writ admin client create --id demo --scope demo.read --audience demo
  export WRIT_CLIENT_SECRET=...   # the client_secret it printed
  writ token --client-id demo\n"
        );
    }
}

/// Readiness: a revocation feed has synced and is within its staleness bound (a service that
/// would fail closed is not ready to take traffic).
fn feed_fresh(
    set: Option<&writ_revocation_client::RevocationSet>,
    bound: std::time::Duration,
) -> Result<(), String> {
    match set.and_then(|s| s.staleness()) {
        None => Err("the revocation feed has not synced".into()),
        Some(s) if s > bound => Err(format!("the revocation feed is {}s stale", s.as_secs())),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_budget_is_shared_by_the_stores_a_process_opens() {
        const MIB: u64 = 1024 * 1024;
        let all = [
            (AUTHZ_STORE.0, true),
            (REVOCATION_STORE.0, true),
            (STS_STORE.0, true),
        ];
        let shares: Vec<u64> = all
            .iter()
            .map(|(dir, _)| cache_share(64 * MIB, dir, &all))
            .collect();
        assert_eq!(shares, [32 * MIB, 24 * MIB, 8 * MIB]);
        // One service alone has the whole budget.
        let alone = [
            (AUTHZ_STORE.0, false),
            (REVOCATION_STORE.0, true),
            (STS_STORE.0, false),
        ];
        assert_eq!(cache_share(64 * MIB, REVOCATION_STORE.0, &alone), 64 * MIB);
        // Never below a page cache sled can work with.
        assert_eq!(cache_share(MIB, STS_STORE.0, &all), MIB);
    }
}
