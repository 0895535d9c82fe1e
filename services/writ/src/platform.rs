//! Running the platform: one process with every service (`writ up`) or one service alone
//! (`writ serve <service>`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use writ_oauth::{AuthorizationServer, Config};
use writ_server::Shutdown;
use writ_store::SledStore;
use writ_tls::TlsMaterial;

use crate::cli::ServeArgs;

/// File in the data directory holding the admin credential (mode 0600).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// File in the data directory listing the bound endpoints, for scripts and tests.
pub const ENDPOINTS_FILE: &str = "endpoints.json";

/// A running platform.
#[derive(Debug)]
pub struct Platform {
    pub data_dir: PathBuf,
    pub tls: bool,
    pub issuer: String,
    pub authz: writ_authz::Running,
    pub engine: Arc<AuthorizationServer>,
    shutdown: Shutdown,
}

impl Platform {
    pub fn grpc_url(&self, addr: SocketAddr) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, addr)
    }

    /// Stops every service and waits for them.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.authz.wait().await;
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

/// Starts the authorization server (and, as they land, the other services) in this process.
pub async fn start(args: &ServeArgs) -> anyhow::Result<Platform> {
    create_private_dir(&args.data_dir)?;
    let tls = tls_material(args)?;
    let grpc = writ_server::bind(SocketAddr::new(args.listen, args.authz_port)).await?;
    let http = writ_server::bind(SocketAddr::new(args.listen, args.authz_http_port)).await?;
    let http_addr = http.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let issuer = args
        .issuer
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}:{}", url_host(args.listen), http_addr.port()));

    let store = SledStore::open(&args.data_dir.join("store"))
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    let mut config = Config::new(issuer.clone());
    config.default_access_token_lifetime = args.access_token_lifetime;
    let (engine, bootstrap) =
        AuthorizationServer::open(Arc::new(store), config, writ_token::system_clock()).await?;
    if let Some(credential) = bootstrap.admin_credential {
        writ_tls::write(&args.data_dir, ADMIN_TOKEN_FILE, &credential, true)?;
        tracing::info!(path = %args.data_dir.join(ADMIN_TOKEN_FILE).display(), "wrote the admin credential");
    }
    let engine = Arc::new(engine);

    let (shutdown, signal) = Shutdown::new();
    let authz = writ_authz::start(engine.clone(), grpc, http, tls.as_ref(), signal).await?;
    let platform = Platform {
        data_dir: args.data_dir.clone(),
        tls: tls.is_some(),
        issuer,
        authz,
        engine,
        shutdown,
    };
    let endpoints = serde_json::json!({
        "authz_grpc": platform.grpc_url(platform.authz.grpc_addr),
        "authz_http": platform.grpc_url(platform.authz.http_addr),
        "issuer": platform.issuer,
        "tls": platform.tls,
        "pid": std::process::id(),
    });
    writ_tls::write(
        &args.data_dir,
        ENDPOINTS_FILE,
        &endpoints.to_string(),
        false,
    )?;
    Ok(platform)
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
    let ca = if p.tls {
        format!("\n  CA certificate         {dir}/ca.pem (the CLI trusts it via --data-dir)")
    } else {
        String::new()
    };
    println!(
        "Writ is up (data in {dir}, TLS {tls}).

  authorization server   gRPC {grpc}
                         HTTP {http}  (issuer {issuer})
  admin credential       {dir}/{ADMIN_TOKEN_FILE}{ca}

Get a first token, from another terminal:
  writ admin client create --id demo --scope demo.read --audience demo
  writ token --client-id demo --client-secret <the client_secret printed above>
",
        tls = if p.tls { "on" } else { "OFF" },
        grpc = p.grpc_url(p.authz.grpc_addr),
        http = p.grpc_url(p.authz.http_addr),
        issuer = p.issuer,
    );
}
