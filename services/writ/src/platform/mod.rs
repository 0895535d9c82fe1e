//! Running the platform: one process with every service (`writ up`) or one service alone
//! (`writ serve <service>`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use writ_oauth::{AuthorizationServer, Config};
use writ_server::Shutdown;
use writ_store::SledStore;
use writ_tls::TlsMaterial;

use crate::cli::{ServeArgs, ServiceName};

pub mod in_process;

/// File in the data directory holding the admin credential (mode 0600).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// File in the data directory listing the bound endpoints, for scripts and tests.
pub const ENDPOINTS_FILE: &str = "endpoints.json";

/// A running platform: every service `writ up` runs, or the one `writ serve` runs.
#[derive(Debug)]
pub struct Platform {
    pub data_dir: PathBuf,
    pub tls: bool,
    pub issuer: Option<String>,
    pub authz: Option<writ_authz::Running>,
    pub engine: Option<Arc<AuthorizationServer>>,
    pub revocation: Option<writ_revocation::Running>,
    pub sts: Option<writ_sts::Running>,
    shutdown: Shutdown,
}

impl Platform {
    pub fn url(&self, addr: SocketAddr) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, addr)
    }

    /// Stops every service and waits for them.
    pub async fn stop(self) {
        self.shutdown.trigger();
        if let Some(a) = self.authz {
            a.wait().await;
        }
        if let Some(r) = self.revocation {
            r.wait().await;
        }
        if let Some(s) = self.sts {
            s.wait().await;
        }
    }
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

fn tls_material(args: &ServeArgs) -> anyhow::Result<Option<TlsMaterial>> {
    if args.insecure_plaintext {
        tracing::warn!(
            "TLS is off (--insecure-plaintext): tokens and secrets travel in clear text"
        );
        return Ok(None);
    }
    Ok(Some(match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => writ_tls::load_pem_files(cert, key)?,
        _ => writ_tls::ensure_dev_pki(&args.data_dir, &args.tls_hosts)?,
    }))
}

/// Starts `services` in this process: `up` runs them all, wired to each other over loopback.
pub async fn start(args: &ServeArgs, services: &[ServiceName]) -> anyhow::Result<Platform> {
    create_private_dir(&args.data_dir)?;
    let tls = tls_material(args)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let peer_ca = match &args.peer_ca {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => tls.as_ref().and_then(|t| t.ca_pem.clone()),
    };
    let clock = writ_token::system_clock();
    let (shutdown, signal) = Shutdown::new();
    let mut platform = Platform {
        data_dir: args.data_dir.clone(),
        tls: tls.is_some(),
        issuer: None,
        authz: None,
        engine: None,
        revocation: None,
        sts: None,
        shutdown,
    };
    let mut endpoints = serde_json::Map::new();

    // Bound first, so each service knows where the others are (ports may be ephemeral).
    let revocation_listener = if services.contains(&ServiceName::Revocation) {
        Some(writ_server::bind(SocketAddr::new(args.listen, args.revocation_port)).await?)
    } else {
        None
    };
    let revocation_url = match &revocation_listener {
        Some(l) => Some(format!(
            "{scheme}://{}:{}",
            url_host(args.listen),
            l.local_addr()?.port()
        )),
        None => args.revocation_url.clone(),
    };

    if services.contains(&ServiceName::Authz) {
        let grpc = writ_server::bind(SocketAddr::new(args.listen, args.authz_port)).await?;
        let http = writ_server::bind(SocketAddr::new(args.listen, args.authz_http_port)).await?;
        let http_addr = http.local_addr()?;
        let issuer = args.issuer.clone().unwrap_or_else(|| {
            format!("{scheme}://{}:{}", url_host(args.listen), http_addr.port())
        });
        let store = SledStore::open(&args.data_dir.join("store"))
            .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
        let mut config = Config::new(issuer.clone());
        config.default_access_token_lifetime = args.access_token_lifetime;
        let (engine, bootstrap) =
            AuthorizationServer::open(Arc::new(store), config, clock.clone()).await?;
        if let Some(credential) = bootstrap.admin_credential {
            writ_tls::write(&args.data_dir, ADMIN_TOKEN_FILE, &credential, true)?;
            tracing::info!(path = %args.data_dir.join(ADMIN_TOKEN_FILE).display(), "wrote the admin credential");
        }
        let engine = Arc::new(engine);
        let revocation = match &revocation_url {
            Some(url) => Some(writ_server::endpoint(url, peer_ca.as_deref())?.connect_lazy()),
            None => None,
        };
        let running = writ_authz::start(
            engine.clone(),
            grpc,
            http,
            tls.as_ref(),
            writ_authz::Options { revocation },
            signal.clone(),
        )
        .await?;
        endpoints.insert("authz_grpc".into(), platform.url(running.grpc_addr).into());
        endpoints.insert("authz_http".into(), platform.url(running.http_addr).into());
        endpoints.insert("issuer".into(), issuer.clone().into());
        platform.issuer = Some(issuer);
        platform.authz = Some(running);
        platform.engine = Some(engine);
    }

    if let Some(listener) = revocation_listener {
        // Callers present tokens from the authorization server: in this process, its keys
        // directly; otherwise fetched from it.
        let (issuer, keys): (String, Arc<dyn writ_trust::KeySource>) = match &platform.engine {
            Some(engine) => {
                let engine = engine.clone();
                (
                    engine.config().issuer.clone(),
                    Arc::new(writ_trust::LocalKeys(move || engine.trusted_keys())),
                )
            }
            None => {
                let url = args
                    .authz_url
                    .as_deref()
                    .context("`serve revocation` needs --authz-url: the authorization server whose tokens to trust")?;
                let channel = writ_server::endpoint(url, peer_ca.as_deref())?
                    .connect()
                    .await
                    .with_context(|| format!("connecting to the authorization server at {url}"))?;
                let remote = writ_trust::RemoteKeys::connect(
                    channel,
                    Duration::from_secs(300),
                    Duration::from_secs(5),
                )
                .await
                .with_context(|| format!("fetching the authorization server's keys from {url}"))?;
                (remote.issuer().to_owned(), Arc::new(remote))
            }
        };
        let issuers = vec![writ_token::TrustedIssuer::new(issuer, keys)];
        let store = SledStore::open(&args.data_dir.join("revocation")).with_context(|| {
            format!("opening the revocation log in {}", args.data_dir.display())
        })?;
        let log = Arc::new(writ_revocation_log::RevocationLog::open(
            Arc::new(store),
            Default::default(),
        )?);
        let running = writ_revocation::start(
            log,
            issuers,
            clock.clone(),
            writ_revocation::Config::default(),
            listener,
            tls.as_ref(),
            signal.clone(),
        )
        .await?;
        endpoints.insert(
            "revocation_grpc".into(),
            platform.url(running.grpc_addr).into(),
        );
        platform.revocation = Some(running);
    }

    if services.contains(&ServiceName::Sts) {
        let running = start_sts(
            args,
            &platform,
            revocation_url.as_deref(),
            peer_ca.as_deref(),
            tls.as_ref(),
            clock.clone(),
            signal.clone(),
        )
        .await?;
        endpoints.insert("sts_grpc".into(), platform.url(running.grpc_addr).into());
        endpoints.insert("sts_http".into(), platform.url(running.http_addr).into());
        endpoints.insert(
            "sts_issuer".into(),
            running.engine.config().issuer.clone().into(),
        );
        platform.sts = Some(running);
    }

    endpoints.insert("tls".into(), platform.tls.into());
    endpoints.insert("pid".into(), std::process::id().into());
    writ_tls::write(
        &args.data_dir,
        ENDPOINTS_FILE,
        &serde_json::Value::Object(endpoints).to_string(),
        false,
    )?;
    Ok(platform)
}

/// Starts the STS: wired to the authorization server in this process (`up`), or to one at
/// `--authz-url` (`serve sts`), and to the revocation service at `revocation_url`.
async fn start_sts(
    args: &ServeArgs,
    platform: &Platform,
    revocation_url: Option<&str>,
    peer_ca: Option<&str>,
    tls: Option<&TlsMaterial>,
    clock: writ_token::SharedClock,
    signal: writ_server::ShutdownSignal,
) -> anyhow::Result<writ_sts::Running> {
    use writ_exchange::TrustedIssuer;

    let scheme = if tls.is_some() { "https" } else { "http" };
    let grpc = writ_server::bind(SocketAddr::new(args.listen, args.sts_port)).await?;
    let http = writ_server::bind(SocketAddr::new(args.listen, args.sts_http_port)).await?;
    let issuer = args.sts_issuer.clone().unwrap_or_else(|| {
        let port = http
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(args.sts_http_port);
        format!("{scheme}://{}:{port}", url_host(args.listen))
    });
    let revocation_url = revocation_url.context(
        "`serve sts` needs --revocation-url: the revocation feed it refuses revoked tokens from",
    )?;
    let revocation = writ_server::endpoint(revocation_url, peer_ca)?.connect_lazy();

    // Who the callers are, whose tokens to trust, and how to follow the feed: the
    // authorization server in this process, or the one at --authz-url.
    let (directory, authority, watch_tokens, local_index): (
        Arc<dyn writ_exchange::Directory>,
        TrustedIssuer,
        Arc<dyn writ_client::BearerSource>,
        _,
    ) = match &platform.engine {
        Some(engine) => {
            let keys_of = engine.clone();
            (
                Arc::new(in_process::LocalDirectory(engine.clone())),
                TrustedIssuer::new(
                    engine.config().issuer.clone(),
                    Arc::new(writ_trust::LocalKeys(move || keys_of.trusted_keys())),
                ),
                Arc::new(in_process::EngineTokens(engine.clone())),
                Some(engine.clone() as Arc<dyn writ_token::RevocationCheck>),
            )
        }
        None => {
            let url = args.authz_url.as_deref().context(
                "`serve sts` needs --authz-url: the authorization server whose clients, policies and tokens apply",
            )?;
            let channel = writ_server::endpoint(url, peer_ca)?
                .connect()
                .await
                .with_context(|| format!("connecting to the authorization server at {url}"))?;
            let remote = writ_trust::RemoteKeys::connect(
                channel.clone(),
                Duration::from_secs(300),
                Duration::from_secs(5),
            )
            .await
            .with_context(|| format!("fetching the authorization server's keys from {url}"))?;
            let admin = match &args.admin.admin_token {
                Some(t) => t.trim().to_owned(),
                None => std::fs::read_to_string(args.data_dir.join(ADMIN_TOKEN_FILE))
                    .map(|s| s.trim().to_owned())
                    .context("`serve sts` needs the authorization server's admin credential: --admin-token, or <data-dir>/admin.token")?,
            };
            let (Some(watch_id), Some(watch_secret)) =
                (&args.watch_client_id, &args.watch_client_secret)
            else {
                anyhow::bail!(
                    "`serve sts` needs --watch-client-id and --watch-client-secret: a client allowed writ.revocation.watch for the audience writ-revocation"
                );
            };
            (
                Arc::new(writ_sts::directory::RemoteDirectory::new(
                    channel.clone(),
                    &admin,
                    Duration::from_secs(5),
                )?),
                TrustedIssuer::new(remote.issuer().to_owned(), remote),
                Arc::new(writ_client::TokenSource::new(
                    channel,
                    writ_client::ClientCredentials::new(watch_id, watch_secret).for_audience(
                        writ_vocabulary::names::REVOCATION_AUDIENCE,
                        writ_vocabulary::names::REVOCATION_WATCH_SCOPE,
                    ),
                )),
                None,
            )
        }
    };
    let mut issuers = vec![authority];
    let mut cas = Vec::new();
    for spec in &args.trust_issuer_cas {
        let (iss, path) = spec
            .split_once('=')
            .context("--trust-issuer-ca takes ISSUER=CA_FILE")?;
        if !args
            .trust_issuers
            .iter()
            .any(|t| t.split_once('=').is_some_and(|(i, _)| i == iss))
        {
            anyhow::bail!("--trust-issuer-ca names {iss}, which no --trust-issuer configures");
        }
        cas.push((iss, Path::new(path)));
    }
    for spec in &args.trust_issuers {
        let (iss, jwks) = spec
            .split_once('=')
            .context("--trust-issuer takes ISSUER=JWKS_FILE or ISSUER=https://JWKS_URL")?;
        let ca = cas.iter().find(|(i, _)| *i == iss).map(|(_, p)| *p);
        // Fails closed: a non-https URL, a missing CA or a failed first fetch refuse to start.
        issuers.push(
            writ_sts::keys::external_issuer(
                iss,
                jwks,
                ca,
                writ_sts::keys::EXTERNAL_REFRESH_EVERY,
                writ_sts::keys::EXTERNAL_MIN_REFRESH,
            )
            .await?,
        );
    }
    let store = SledStore::open(&args.data_dir.join("sts"))
        .with_context(|| format!("opening the STS store in {}", args.data_dir.display()))?;
    let running = writ_sts::start(
        writ_sts::Options {
            store: Arc::new(store),
            config: writ_exchange::Config::new(issuer),
            clock,
            directory,
            issuers,
            revocation,
            watch_tokens,
            watch: Default::default(),
            max_staleness: Duration::from_secs(args.sts_max_feed_staleness),
            local_index,
        },
        grpc,
        http,
        tls,
        signal,
    )
    .await?;
    Ok(running)
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
    let dir = p.data_dir.display();
    let tls = if p.tls { "on" } else { "OFF" };
    println!("Writ is up (data in {dir}, TLS {tls}).\n");
    if let Some(a) = &p.authz {
        println!("  authorization server   gRPC {}", p.url(a.grpc_addr));
        println!(
            "                         HTTP {}  (issuer {})",
            p.url(a.http_addr),
            p.issuer.as_deref().unwrap_or("")
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
    if p.tls {
        println!("  CA certificate         {dir}/ca.pem (the CLI trusts it via --data-dir)");
    }
    if p.authz.is_some() {
        println!(
            "\nGet a first token, from another terminal:
  writ admin client create --id demo --scope demo.read --audience demo
  writ token --client-id demo --client-secret <the client_secret printed above>\n"
        );
    }
}
