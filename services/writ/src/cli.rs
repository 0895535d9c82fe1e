//! The command line: every flag also reads from the environment where that helps scripting.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::platform::{
    ADMIN_TOKEN_FILE, AuthzSettings, ExternalIssuer, PlatformConfig, RevocationSettings,
    StsSettings, StsWiring, TlsMode,
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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every service in one process on loopback, TLS on, data in --data-dir.
    Up(ServeArgs),
    /// Run one service as its own process.
    Serve {
        #[arg(value_enum)]
        service: ServiceName,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Get a token from the authorization server (client_credentials, refresh_token, password).
    Token(TokenArgs),
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

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where the store, the development CA and the admin credential live.
    #[arg(long, env = "WRIT_DATA_DIR", default_value = "writ-data")]
    pub data_dir: PathBuf,
    /// Address to listen on. Only loopback by default.
    #[arg(long, env = "WRIT_LISTEN", default_value = "127.0.0.1")]
    pub listen: IpAddr,
    /// Authorization server gRPC port (0 picks a free one).
    #[arg(long, env = "WRIT_AUTHZ_PORT", default_value_t = 7400)]
    pub authz_port: u16,
    /// Authorization server HTTP facade port (0 picks a free one).
    #[arg(long, env = "WRIT_AUTHZ_HTTP_PORT", default_value_t = 7401)]
    pub authz_http_port: u16,
    /// Revocation service gRPC port (0 picks a free one).
    #[arg(long, env = "WRIT_REVOCATION_PORT", default_value_t = 7420)]
    pub revocation_port: u16,
    /// STS gRPC port (0 picks a free one).
    #[arg(long, env = "WRIT_STS_PORT", default_value_t = 7410)]
    pub sts_port: u16,
    /// STS HTTP facade port (0 picks a free one).
    #[arg(long, env = "WRIT_STS_HTTP_PORT", default_value_t = 7411)]
    pub sts_http_port: u16,
    /// `serve authz` and `serve sts`: the revocation service to publish revocations to, or to
    /// follow (`up` uses its own).
    #[arg(long, env = "WRIT_REVOCATION_URL")]
    pub revocation_url: Option<String>,
    /// `serve revocation` and `serve sts`: the authorization server whose tokens callers present
    /// (and, for the STS, whose clients and exchange policies apply).
    #[arg(long, env = "WRIT_AUTHZ_URL")]
    pub authz_url: Option<String>,
    /// The STS's issuer URL in its tokens and metadata (default: its HTTP facade's URL).
    #[arg(long, env = "WRIT_STS_ISSUER")]
    pub sts_issuer: Option<String>,
    /// An external issuer whose JWT access tokens the STS accepts as subject tokens, as
    /// ISSUER=JWKS_FILE or ISSUER=https://JWKS_URL (its `iss`, and a file holding its JWK Set or
    /// the https URL serving it, fetched at start and refreshed; repeatable).
    #[arg(
        long = "trust-issuer",
        env = "WRIT_TRUST_ISSUERS",
        value_delimiter = ','
    )]
    pub trust_issuers: Vec<String>,
    /// The CA certificate (PEM file) to trust for an external issuer's JWKS URL, as
    /// ISSUER=CA_FILE; required for every --trust-issuer given a URL (repeatable).
    #[arg(
        long = "trust-issuer-ca",
        env = "WRIT_TRUST_ISSUER_CAS",
        value_delimiter = ','
    )]
    pub trust_issuer_cas: Vec<String>,
    /// The STS refuses every exchange while its revocation feed is staler than this, in seconds.
    #[arg(long, env = "WRIT_STS_MAX_FEED_STALENESS", default_value_t = 30)]
    pub sts_max_feed_staleness: u64,
    // `serve sts`: the authorization server's admin credential, to authenticate clients and
    // read exchange policies.
    #[command(flatten)]
    pub admin: AdminToken,
    /// `serve sts`: a client allowed `writ.revocation.watch` for the audience `writ-revocation`,
    /// to follow the revocation feed with.
    #[arg(long, env = "WRIT_STS_WATCH_CLIENT_ID")]
    pub watch_client_id: Option<String>,
    #[arg(
        long,
        env = "WRIT_STS_WATCH_CLIENT_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub watch_client_secret: Option<String>,
    /// CA certificate for connecting to the other services (default: <data-dir>/ca.pem).
    #[arg(long, env = "WRIT_PEER_CA")]
    pub peer_ca: Option<PathBuf>,
    /// The issuer URL in tokens and metadata (default: the HTTP facade's URL).
    #[arg(long, env = "WRIT_ISSUER")]
    pub issuer: Option<String>,
    /// Extra host names for the development server certificate.
    #[arg(long = "tls-host", env = "WRIT_TLS_HOSTS", value_delimiter = ',')]
    pub tls_hosts: Vec<String>,
    /// Serve this certificate chain (PEM) instead of the development one.
    #[arg(long, env = "WRIT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "WRIT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve without TLS. For benchmarks and debugging only.
    #[arg(long, env = "WRIT_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
    /// Access token lifetime when a client sets none, in seconds.
    #[arg(long, env = "WRIT_ACCESS_TOKEN_LIFETIME", default_value_t = 300)]
    pub access_token_lifetime: i64,
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
    #[command(flatten)]
    pub admin: AdminToken,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Grant {
    #[value(name = "client_credentials")]
    ClientCredentials,
    #[value(name = "refresh_token")]
    RefreshToken,
    #[value(name = "password")]
    Password,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Jwt,
    Biscuit,
    #[value(name = "jwt+biscuit")]
    JwtAndBiscuit,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[arg(long, value_enum, default_value = "client_credentials")]
    pub grant: Grant,
    #[arg(long, env = "WRIT_CLIENT_ID")]
    pub client_id: String,
    #[command(flatten)]
    pub secret: ClientSecret,
    /// Space-delimited scopes (default: all the client may get).
    #[arg(long, default_value = "")]
    pub scope: String,
    #[arg(long)]
    pub audience: Vec<String>,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// For --grant refresh_token.
    #[arg(
        long,
        env = "WRIT_REFRESH_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub refresh_token: Option<String>,
    /// For --grant password.
    #[arg(long)]
    pub username: Option<String>,
    /// For --grant password: read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// The STS's gRPC URL: tokens it issued are verified against its published keys (skipped,
    /// with a note, when it is not reachable).
    #[arg(long, env = "WRIT_STS", default_value = "https://127.0.0.1:7410")]
    pub sts: String,
    /// The token (or "-" to read it from standard input).
    pub token: String,
    /// Also require this audience.
    #[arg(long)]
    pub audience: Option<String>,
    /// Only decode; do not contact the server or verify.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct AttenuateArgs {
    /// The Biscuit (or "-" to read it from standard input).
    pub token: String,
    /// Scopes the narrowed token keeps (repeatable).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// gRPC methods it may still call, as /package.Service/Method (repeatable).
    #[arg(long = "method")]
    pub methods: Vec<String>,
    /// Services (audiences) it may still be presented to (repeatable).
    #[arg(long = "service")]
    pub services: Vec<String>,
    /// Expire this many seconds from now (never later than the token already expires).
    #[arg(long)]
    pub ttl: Option<i64>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub conn: AdminConn,
    /// What the value names.
    #[arg(long, value_parser = ["token_id", "grant_id", "subject", "client", "biscuit_revocation_id", "key_id"])]
    pub kind: String,
    /// The token id, grant id, subject, client id, Biscuit revocation id or key id.
    #[arg(long, allow_hyphen_values = true)]
    pub value: String,
    /// Why, for the audit log.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Seconds until everything this revokes has expired (default: a day, the longest a token
    /// can live).
    #[arg(long, default_value_t = 86_400)]
    pub expires_in: i64,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The revocation service's gRPC URL.
    #[arg(
        long,
        env = "WRIT_REVOCATION_SERVER",
        default_value = "https://127.0.0.1:7420"
    )]
    pub revocation_server: String,
    /// The authorization server to get a watch token from, and where to find the CA.
    #[command(flatten)]
    pub conn: Conn,
    /// A client allowed the scope writ.revocation.watch for the audience writ-revocation.
    #[arg(long, env = "WRIT_CLIENT_ID")]
    pub client_id: Option<String>,
    #[command(flatten)]
    pub secret: ClientSecret,
    /// A bearer token to present instead of getting one with the client's credentials.
    #[arg(
        long,
        env = "WRIT_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub token: Option<String>,
    /// Resume after this sequence (0: from the beginning).
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Exit once caught up (at the first checkpoint) instead of following the feed.
    #[arg(long)]
    pub until_caught_up: bool,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Clients: create, get, list, delete, rotate-secret.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Users (resource owners) for the password grant.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Signing keys: list, rotate.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Token exchange policies: which client may exchange tokens for which audiences.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Allow a client to exchange tokens for some audiences.
    Create(PolicyCreate),
    Get {
        policy_id: String,
    },
    List,
    Delete {
        policy_id: String,
    },
}

#[derive(Debug, Args)]
pub struct PolicyCreate {
    /// The policy_id (default: generated).
    #[arg(long)]
    pub id: Option<String>,
    /// The client allowed to exchange under this policy.
    #[arg(long)]
    pub client_id: String,
    /// Audiences the exchanged tokens may name (repeatable; at least one).
    #[arg(long = "audience", required = true)]
    pub audiences: Vec<String>,
    /// Scopes the exchanged tokens may carry at most (repeatable, or space-delimited; default: no
    /// limit beyond the subject token's).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Longest lifetime of exchanged tokens, in seconds (default: the STS's, 300).
    #[arg(long)]
    pub max_lifetime: Option<i64>,
    /// Exchanges without an actor token impersonate the subject (no `act`) instead of recording
    /// the client as the actor.
    #[arg(long)]
    pub allow_impersonation: bool,
    /// Longest delegation chain (`act` nesting) an exchanged token may carry (default: 4).
    #[arg(long)]
    pub max_chain_depth: Option<i32>,
}

/// The RFC 8693 token types, by short name.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TokenTypeArg {
    /// urn:ietf:params:oauth:token-type:jwt
    Jwt,
    /// urn:ietf:params:oauth:token-type:access_token
    #[value(name = "access_token")]
    AccessToken,
    /// urn:writ:params:oauth:token-type:biscuit
    Biscuit,
}

#[derive(Debug, Args)]
pub struct ExchangeArgs {
    /// The STS's gRPC URL.
    #[arg(long, env = "WRIT_STS", default_value = "https://127.0.0.1:7410")]
    pub sts: String,
    #[command(flatten)]
    pub files: LocalFiles,
    /// The calling client (the service exchanging a token it received).
    #[arg(long, env = "WRIT_CLIENT_ID")]
    pub client_id: String,
    #[command(flatten)]
    pub secret: ClientSecret,
    /// The token to exchange (or "-" to read it from standard input).
    #[arg(long, allow_hyphen_values = true)]
    pub subject_token: String,
    /// Its type (default: jwt or biscuit, by its shape).
    #[arg(long, value_enum)]
    pub subject_token_type: Option<TokenTypeArg>,
    /// Audiences of the new token (repeatable).
    #[arg(long = "audience")]
    pub audiences: Vec<String>,
    /// Resource indicators (RFC 8707) of the new token (repeatable).
    #[arg(long = "resource")]
    pub resources: Vec<String>,
    /// Space-delimited scopes (default: all the subject token has that the policy allows).
    #[arg(long, default_value = "")]
    pub scope: String,
    /// The new token's type.
    #[arg(long, value_enum, default_value = "jwt")]
    pub requested_token_type: TokenTypeArg,
    /// A token naming the actor to record in `act` (issued to the calling client).
    #[arg(long, allow_hyphen_values = true)]
    pub actor_token: Option<String>,
    /// Its type (default: by its shape).
    #[arg(long, value_enum)]
    pub actor_token_type: Option<TokenTypeArg>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client. Prints it with its secret, shown this once.
    Create(ClientCreate),
    Get {
        client_id: String,
    },
    List,
    Delete {
        client_id: String,
    },
    /// Replace a confidential client's secret.
    RotateSecret {
        client_id: String,
    },
    /// Enable or disable a client.
    SetDisabled {
        client_id: String,
        #[arg(action = clap::ArgAction::Set)]
        disabled: bool,
    },
}

#[derive(Debug, Args)]
pub struct ClientCreate {
    /// The client_id (default: generated).
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long, default_value = "")]
    pub name: String,
    /// A public client (no secret; never client_credentials).
    #[arg(long)]
    pub public: bool,
    /// Grant types (repeatable; default: client_credentials).
    #[arg(long = "grant", value_enum)]
    pub grants: Vec<Grant>,
    /// Scopes the client may get (repeatable, or space-delimited).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Audiences the client may ask for (repeatable; the first is the default).
    #[arg(long = "audience")]
    pub audiences: Vec<String>,
    /// Token formats allowed (repeatable; default: jwt).
    #[arg(long = "format", value_enum)]
    pub formats: Vec<Format>,
    #[arg(long)]
    pub access_token_lifetime: Option<i64>,
    #[arg(long)]
    pub refresh_token_lifetime: Option<i64>,
    /// May introspect tokens of other clients (a resource server).
    #[arg(long)]
    pub may_introspect: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input unless --password is given.
    Create {
        username: String,
        #[arg(long, hide = true, env = "WRIT_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long, default_value = "")]
        scope: String,
    },
    Delete {
        username: String,
    },
    /// Set a user's password, read from standard input.
    SetPassword {
        username: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    List,
    /// Make a new signing key active; the old one stays published until its tokens expire.
    Rotate {
        #[arg(long, value_enum, default_value = "jwt")]
        purpose: KeyPurposeArg,
        /// EdDSA or ES256 (JWT keys only).
        #[arg(long)]
        alg: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyPurposeArg {
    Jwt,
    Biscuit,
}

impl ServeArgs {
    /// The platform configuration these flags describe, running `services` in this process.
    pub fn platform(&self, services: &[ServiceName]) -> anyhow::Result<PlatformConfig> {
        use anyhow::Context;
        let at = |port: u16| SocketAddr::new(self.listen, port);
        let runs = |s: ServiceName| services.contains(&s);
        let mut engine = writ_oauth::Config::new(self.issuer.clone().unwrap_or_default());
        engine.default_access_token_lifetime = self.access_token_lifetime;
        let sts = if runs(ServiceName::Sts) {
            let wiring = if runs(ServiceName::Authz) {
                StsWiring::InProcess {
                    consult_authz_index: true,
                }
            } else {
                let admin_token = match &self.admin.admin_token {
                    Some(t) => t.trim().to_owned(),
                    None => std::fs::read_to_string(self.data_dir.join(ADMIN_TOKEN_FILE))
                        .map(|s| s.trim().to_owned())
                        .context("`serve sts` needs the authorization server's admin credential: --admin-token, or <data-dir>/admin.token")?,
                };
                let (Some(id), Some(secret)) = (&self.watch_client_id, &self.watch_client_secret)
                else {
                    anyhow::bail!(
                        "`serve sts` needs --watch-client-id and --watch-client-secret: a client allowed writ.revocation.watch for the audience writ-revocation"
                    );
                };
                StsWiring::Remote {
                    admin_token,
                    watch_client: writ_client::ClientCredentials::new(id, secret),
                }
            };
            Some(StsSettings {
                grpc: at(self.sts_port),
                http: at(self.sts_http_port),
                exchange: writ_exchange::Config::new(self.sts_issuer.clone().unwrap_or_default()),
                max_feed_staleness: std::time::Duration::from_secs(self.sts_max_feed_staleness),
                external_issuers: self.external_issuers()?,
                wiring,
                ..StsSettings::default()
            })
        } else {
            None
        };
        Ok(PlatformConfig {
            tls: if self.insecure_plaintext {
                TlsMode::Off
            } else {
                match (&self.tls_cert, &self.tls_key) {
                    (Some(cert), Some(key)) => TlsMode::Files {
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                    _ => TlsMode::Development {
                        hosts: self.tls_hosts.clone(),
                    },
                }
            },
            peer_ca: self.peer_ca.clone(),
            authz: runs(ServiceName::Authz).then(|| AuthzSettings {
                grpc: at(self.authz_port),
                http: at(self.authz_http_port),
                engine,
            }),
            revocation: runs(ServiceName::Revocation).then(|| RevocationSettings {
                grpc: at(self.revocation_port),
                ..RevocationSettings::default()
            }),
            sts,
            authz_url: self.authz_url.clone(),
            revocation_url: self.revocation_url.clone(),
            ..PlatformConfig::new(&self.data_dir)
        })
    }

    /// `--trust-issuer ISSUER=JWKS` with its `--trust-issuer-ca ISSUER=CA_FILE`.
    fn external_issuers(&self) -> anyhow::Result<Vec<ExternalIssuer>> {
        use anyhow::Context;
        let mut cas = Vec::new();
        for spec in &self.trust_issuer_cas {
            let (iss, path) = spec
                .split_once('=')
                .context("--trust-issuer-ca takes ISSUER=CA_FILE")?;
            if !self
                .trust_issuers
                .iter()
                .any(|t| t.split_once('=').is_some_and(|(i, _)| i == iss))
            {
                anyhow::bail!("--trust-issuer-ca names {iss}, which no --trust-issuer configures");
            }
            cas.push((iss, PathBuf::from(path)));
        }
        self.trust_issuers
            .iter()
            .map(|spec| {
                let (iss, jwks) = spec
                    .split_once('=')
                    .context("--trust-issuer takes ISSUER=JWKS_FILE or ISSUER=https://JWKS_URL")?;
                Ok(ExternalIssuer {
                    issuer: iss.to_owned(),
                    jwks: jwks.to_owned(),
                    ca: cas.iter().find(|(i, _)| *i == iss).map(|(_, p)| p.clone()),
                })
            })
            .collect()
    }
}
