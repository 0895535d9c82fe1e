//! The command line: `writ up` and `writ serve` ([`serve`]), and the client commands, one
//! module each with its arguments and what it does. Every flag also reads from the environment
//! where that helps scripting.

mod admin;
mod audit;
mod exchange;
mod revocation;
mod serve;
mod support;
mod token;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use admin::{AdminCommand, admin};
pub use audit::{AuditCommand, audit};
pub use exchange::{ExchangeArgs, exchange};
pub use revocation::{RevokeArgs, WatchArgs, revoke, watch};
pub use serve::ServeArgs;
pub use support::CliError;
pub use token::{
    AttenuateArgs, InspectArgs, LoginArgs, TokenArgs, attenuate, inspect, login, token,
};

#[derive(Debug, Parser)]
#[command(
    name = "writ",
    version,
    about = "Writ: OAuth 2.0 the gRPC way. Run the platform, get and inspect tokens, administer it.",
    after_help = "Exit codes: 0 success; 1 the request was refused or the token is invalid; \
                  2 usage error; 3 the server could not be reached; 4 authentication failed."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (RUST_LOG syntax), e.g. "info" or "writ::audit=info,warn".
    #[arg(long, global = true, env = "WRIT_LOG", default_value = "info")]
    pub log: String,
    /// Log as JSON lines (for log shipping) instead of text.
    #[arg(long, global = true, env = "WRIT_LOG_JSON")]
    pub log_json: bool,
    /// `up` and `serve`: send traces to this OpenTelemetry collector (OTLP over gRPC, e.g.
    /// `http://127.0.0.1:4317`). Without it, trace context still flows between the services
    /// and every log line of a request carries its trace id.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every service in one process on loopback, TLS on, data in --data-dir.
    Up(ServeArgs),
    /// Create what replicas of the platform share, in --dir: a development CA and a server
    /// certificate for loopback (plus --tls-host names), and a key-encryption key (mode 0600).
    /// Prints their paths as JSON, for `serve`'s --tls-cert, --tls-key, --peer-ca and
    /// --key-encryption-key-file. Existing files are kept.
    ClusterInit(ClusterInitArgs),
    /// Run one service as its own process.
    Serve {
        #[arg(value_enum)]
        service: ServiceName,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Get a token from the authorization server (client_credentials, refresh_token, password).
    Token(TokenArgs),
    /// Sign a person in from the command line (the device authorization grant, RFC 8628):
    /// prints a link and a code to confirm in any browser, waits for the answer, then prints
    /// the tokens as JSON.
    Login(LoginArgs),
    /// Decode a JWT or Biscuit and verify it against the server's published keys.
    Inspect(InspectArgs),
    /// Narrow a Biscuit offline: fewer scopes, methods or services, or an earlier expiry.
    Attenuate(AttenuateArgs),
    /// Revoke tokens by id, grant, subject, client, Biscuit block or signing key (needs the
    /// admin credential). Resource services learn it through the revocation feed.
    Revoke(RevokeArgs),
    /// Print the revocation feed as JSON lines.
    Watch(WatchArgs),
    /// Trade a token at the STS for a narrower one for the next hop (RFC 8693 token exchange).
    Exchange(ExchangeArgs),
    /// Administer clients, users, signing keys and exchange policies (needs the admin
    /// credential).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
        #[command(flatten)]
        conn: AdminConn,
    },
    /// The audit trail: list it through the admin API, export it or verify its chain and
    /// signatures from the store.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ClusterInitArgs {
    /// Where to create (or find) the shared files.
    #[arg(long)]
    pub dir: PathBuf,
    /// Extra host names for the server certificate (the load balancer's, say).
    #[arg(long = "tls-host", value_delimiter = ',')]
    pub tls_hosts: Vec<String>,
}

/// `writ cluster-init`.
pub fn cluster_init(args: ClusterInitArgs) -> Result<(), CliError> {
    let fail =
        |e: &dyn std::fmt::Display| CliError::Invalid(format!("{}: {e}", args.dir.display()));
    writ_tls::ensure_dev_pki(&args.dir, &args.tls_hosts).map_err(|e| fail(&e))?;
    let kek = args.dir.join(crate::platform::KEY_ENCRYPTION_KEY_FILE);
    writ_keyring::KeyEncryptionKey::load_or_create(&kek, true).map_err(|e| fail(&e))?;
    let path = |name: &str| args.dir.join(name).display().to_string();
    println!(
        "{}",
        serde_json::json!({
            "peer_ca": path(writ_tls::CA_CERT_FILE),
            "tls_cert": path(writ_tls::SERVER_CERT_FILE),
            "tls_key": path(writ_tls::SERVER_KEY_FILE),
            "key_encryption_key_file": kek.display().to_string(),
        })
    );
    Ok(())
}

impl ServiceName {
    /// As on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ServiceName::Authz => "authz",
            ServiceName::Revocation => "revocation",
            ServiceName::Sts => "sts",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ServiceName {
    /// The authorization server (AuthorizationService, AdminService, HTTP facade).
    Authz,
    /// The revocation service (RevocationService: the durable log and its watch streams).
    Revocation,
    /// The Security Token Service (RFC 8693 token exchange, gRPC and HTTP facade).
    Sts,
}

/// Where the CLI finds the server.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// The authorization server's gRPC URL.
    #[arg(long, env = "WRIT_SERVER", default_value = "https://127.0.0.1:7400")]
    pub server: String,
    #[command(flatten)]
    pub files: LocalFiles,
}

/// Where the CLI finds the CA to trust (and the admin credential): given, or left by a local
/// `writ up` in its data directory.
#[derive(Debug, Clone, Args)]
pub struct LocalFiles {
    /// CA certificate to trust (default: <data-dir>/ca.pem, written by `writ up`).
    #[arg(long, env = "WRIT_CA")]
    pub ca: Option<PathBuf>,
    /// Data directory of a local `writ up`, for its CA and admin credential.
    #[arg(long, env = "WRIT_DATA_DIR", default_value = "writ-data")]
    pub data_dir: PathBuf,
}

/// The admin credential, as `admin`, `revoke` and `serve sts` take it.
#[derive(Debug, Clone, Args)]
pub struct AdminToken {
    /// The admin credential (default: read from <data-dir>/admin.token).
    #[arg(
        long,
        env = "WRIT_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub admin_token: Option<String>,
}

/// `--private-key FILE --kid KID`: a client authenticating with `private_key_jwt` (RFC 7523)
/// instead of a secret.
#[derive(Debug, Clone, Args)]
pub struct PrivateKey {
    /// Sign the client's assertion with this PKCS#8 PEM private key instead of sending a
    /// secret (private_key_jwt).
    #[arg(long, requires = "kid")]
    pub private_key: Option<PathBuf>,
    /// The registered key id of --private-key.
    #[arg(long, requires = "private_key")]
    pub kid: Option<String>,
}

impl PrivateKey {
    /// `(client_assertion_type, client_assertion)`: a fresh assertion of `client_id` for the
    /// server's issuer identifier (`issuer`, awaited only when a key is given: the server's
    /// metadata), or two empty strings without a key. A secret as well is refused: one method
    /// per request.
    pub async fn assertion(
        &self,
        client_id: &str,
        secret: &ClientSecret,
        issuer: impl std::future::Future<Output = Result<String, tonic::Status>>,
    ) -> support::Result<(String, String)> {
        let (Some(path), Some(kid)) = (&self.private_key, &self.kid) else {
            return Ok((String::new(), String::new()));
        };
        let invalid = support::CliError::Invalid;
        if !secret.client_secret.is_empty() {
            return Err(invalid(
                "--private-key and a client secret are two authentication methods: use one".into(),
            ));
        }
        let pem = zeroize::Zeroizing::new(support::read_text(path)?);
        let key = writ_token::SigningKey::from_pkcs8_pem(kid.clone(), &pem)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        let audience = issuer.await?;
        let now = writ_token::system_clock().now();
        let claims = writ_token::AssertionClaims {
            iss: client_id.to_owned(),
            sub: client_id.to_owned(),
            aud: audience,
            iat: now,
            exp: now + 60,
            jti: writ_token::random_id(),
        };
        let assertion = writ_token::encode_client_assertion(&key, &claims)
            .map_err(|e| invalid(e.to_string()))?;
        Ok((writ_token::CLIENT_ASSERTION_TYPE.to_owned(), assertion))
    }
}

/// The secret of a client authenticating with `--client-id`.
#[derive(Debug, Clone, Args)]
pub struct ClientSecret {
    // Generated secrets and refresh tokens are base64url: one in 64 starts with '-', which clap
    // would otherwise take for a flag (a usage error on the documented walkthrough).
    #[arg(
        long,
        env = "WRIT_CLIENT_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true,
        default_value = ""
    )]
    pub client_secret: String,
}

#[derive(Debug, Clone, Args)]
pub struct AdminConn {
    #[command(flatten)]
    pub conn: Conn,
    /// The admin API's gRPC URL (its own port).
    #[arg(
        long,
        env = "WRIT_ADMIN_SERVER",
        default_value = "https://127.0.0.1:7402"
    )]
    pub admin_server: String,
    #[command(flatten)]
    pub admin: AdminToken,
}
