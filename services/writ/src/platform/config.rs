//! The platform's one typed configuration: what `writ up`, `writ serve`, the tests and the
//! benchmarks start (the command line is only one way to fill it in, `cli::ServeArgs`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use writ_client::ClientCredentials;
use writ_revocation_client::WatchConfig;
use writ_token::SharedClock;

/// Everything one process of the platform runs, and how.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// Where the stores, the development CA and the admin credential live.
    pub data_dir: PathBuf,
    pub tls: TlsMode,
    /// The CA to trust when connecting to the other services (default: the development CA).
    pub peer_ca: Option<PathBuf>,
    /// The time every service reads (the system's, or a test's manual clock).
    pub clock: SharedClock,
    /// The authorization server, if it runs in this process.
    pub authz: Option<AuthzSettings>,
    /// The revocation service, if it runs in this process.
    pub revocation: Option<RevocationSettings>,
    /// The STS, if it runs in this process.
    pub sts: Option<StsSettings>,
    /// The authorization server's gRPC URL, when it runs elsewhere.
    pub authz_url: Option<String>,
    /// Its admin API's URL, when it runs elsewhere (a standalone STS reads clients and
    /// policies there).
    pub authz_admin_url: Option<String>,
    /// The revocation service's gRPC URL, when it runs elsewhere.
    pub revocation_url: Option<String>,
    /// What the signing keys are sealed under in the stores.
    pub key_encryption: KeyEncryption,
    /// Where `/metrics`, `/livez` and `/readyz` are served (plain HTTP), if anywhere.
    pub ops: Option<std::net::SocketAddr>,
    /// Where the services keep their state.
    pub store: StoreChoice,
    /// The audit log: one per process, in the authorization server's store when it runs here
    /// (else the first service's), shared by every service of the process.
    pub audit: writ_audit::Settings,
}

/// Where the services keep their state.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// Embedded sled stores in the data directory, one per service: one process only. The
    /// config's cache is the whole process's, shared by the stores it opens.
    Sled(writ_store::SledConfig),
    /// One PostgreSQL database, shared by any number of replicas of each service; each service
    /// in its own schema, `<schema>_authz`, `<schema>_revocation`, `<schema>_sts` (the config's
    /// `schema` is the prefix, `writ` when unset).
    Postgres(writ_store_postgres::PgConfig),
}

/// Where the key-encryption key comes from: never the store it protects.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyEncryption {
    /// `<data-dir>/key-encryption.key`, generated (mode 0600) on the first start. Beside the
    /// stores, not in them: keep it off backups of the data directory, or use one of the
    /// others.
    DataDir,
    /// A file holding the key (base64url, 32 bytes), which must exist.
    File(PathBuf),
    /// The key itself (base64url, 32 bytes), from the environment.
    Value(String),
}

impl std::fmt::Debug for KeyEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyEncryption::DataDir => f.write_str("DataDir"),
            KeyEncryption::File(p) => f.debug_tuple("File").field(p).finish(),
            KeyEncryption::Value(_) => f.write_str("Value(..)"),
        }
    }
}

/// The key-encryption key's file name in the data directory.
pub const KEY_ENCRYPTION_KEY_FILE: &str = "key-encryption.key";

impl PlatformConfig {
    /// Nothing running yet, TLS on with the development CA, the system clock.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        PlatformConfig {
            data_dir: data_dir.into(),
            tls: TlsMode::Development { hosts: Vec::new() },
            peer_ca: None,
            clock: writ_token::system_clock(),
            authz: None,
            revocation: None,
            sts: None,
            authz_url: None,
            authz_admin_url: None,
            revocation_url: None,
            key_encryption: KeyEncryption::DataDir,
            ops: None,
            store: StoreChoice::Sled(writ_store::SledConfig {
                cache_bytes: super::SLED_CACHE_BYTES,
            }),
            audit: writ_audit::Settings::default(),
        }
    }

    /// Every service in this process, on ephemeral loopback ports (tests, benchmarks).
    pub fn all_on_loopback(data_dir: impl Into<PathBuf>) -> Self {
        PlatformConfig {
            authz: Some(AuthzSettings::default()),
            revocation: Some(RevocationSettings::default()),
            sts: Some(StsSettings::default()),
            ..PlatformConfig::new(data_dir)
        }
    }
}

/// How the servers speak TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// A development CA and server certificate, generated in the data directory on first start
    /// (for loopback, plus these host names).
    Development { hosts: Vec<String> },
    /// A certificate chain and its key from PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// No TLS: benchmarks and debugging only (logged as a warning).
    Off,
}

/// An ephemeral port on loopback.
pub const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// The authorization server.
#[derive(Debug, Clone)]
pub struct AuthzSettings {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The admin API's own listener (loopback by default: it is not for the network).
    pub admin: SocketAddr,
    /// The gateway check's listeners, gRPC (Envoy) and HTTP (nginx), or none. Loopback by
    /// default: they trade reference tokens for JWTs, for gateways only.
    pub gateway: Option<(SocketAddr, SocketAddr)>,
    /// The mTLS endpoint aliases' listener (RFC 8705 section 5), served when TLS is on.
    pub mtls: Option<SocketAddr>,
    /// The engine's settings. An empty `issuer` is the HTTP facade's URL once bound.
    pub engine: writ_oauth::Config,
    /// The CA certificates (PEM file) trusted when fetching clients' `jwks_uri`; `None`: the
    /// system's CA bundle.
    pub client_jwks_ca: Option<PathBuf>,
}

impl Default for AuthzSettings {
    fn default() -> Self {
        AuthzSettings {
            grpc: LOOPBACK,
            http: LOOPBACK,
            admin: LOOPBACK,
            gateway: Some((LOOPBACK, LOOPBACK)),
            mtls: Some(LOOPBACK),
            engine: writ_oauth::Config::new(""),
            client_jwks_ca: None,
        }
    }
}

/// The revocation service.
#[derive(Debug, Clone)]
pub struct RevocationSettings {
    pub grpc: SocketAddr,
    pub service: writ_revocation::Config,
    pub log: writ_revocation_log::LogConfig,
}

impl Default for RevocationSettings {
    fn default() -> Self {
        RevocationSettings {
            grpc: LOOPBACK,
            service: writ_revocation::Config::default(),
            log: writ_revocation_log::LogConfig::default(),
        }
    }
}

/// The STS.
#[derive(Debug, Clone)]
pub struct StsSettings {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The exchange's settings. An empty `issuer` is the HTTP facade's URL once bound.
    pub exchange: writ_exchange::Config,
    /// Past this staleness of its revocation feed, every exchange is refused.
    pub max_feed_staleness: Duration,
    /// External issuers whose JWT access tokens are accepted as subject tokens, by where their
    /// JWK Set is.
    pub external_issuers: Vec<ExternalIssuer>,
    /// Issuers with key sources of their own (a library user's, a test's), trusted as given.
    pub trusted_issuers: Vec<writ_token::TrustedIssuer>,
    /// How it reaches the authorization server.
    pub wiring: StsWiring,
    pub watch: WatchConfig,
    /// When it rotates its own signing keys (by age).
    pub key_rotation: writ_sts::KeyRotation,
}

impl Default for StsSettings {
    fn default() -> Self {
        StsSettings {
            grpc: LOOPBACK,
            http: LOOPBACK,
            exchange: writ_exchange::Config::new(""),
            max_feed_staleness: writ_revocation_client::DEFAULT_MAX_STALENESS,
            external_issuers: Vec::new(),
            trusted_issuers: Vec::new(),
            wiring: StsWiring::InProcess {
                consult_authz_index: true,
            },
            watch: WatchConfig::default(),
            key_rotation: writ_sts::KeyRotation::default(),
        }
    }
}

/// How the STS reaches the authorization server.
#[derive(Clone)]
pub enum StsWiring {
    /// The authorization server runs in this process (`writ up`): its engine answers for
    /// clients, policies and keys directly, and mints the STS's watch tokens when the STS
    /// follows a feed (the revocation service elsewhere, or on PostgreSQL).
    InProcess {
        /// Consult its revocation index besides the log or the feed (it knows a revocation the
        /// moment it is acknowledged, before the outbox delivers it).
        consult_authz_index: bool,
    },
    /// It runs elsewhere (`writ serve sts`): clients and policies through its AdminService, its
    /// keys from `GetJwks`, and the feed watched, each with tokens of the STS's own client
    /// (`writ.admin.authenticate_client writ.admin.read` for `writ-admin`,
    /// `writ.revocation.watch` for `writ-revocation`).
    Remote { client: ClientCredentials },
}

impl std::fmt::Debug for StsWiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StsWiring::InProcess {
                consult_authz_index,
            } => f
                .debug_struct("InProcess")
                .field("consult_authz_index", consult_authz_index)
                .finish(),
            StsWiring::Remote { client } => {
                f.debug_struct("Remote").field("client", client).finish()
            }
        }
    }
}

/// An external JWT issuer the STS trusts: its `iss`, and where its JWK Set is (a file, or an
/// `https://` URL with the only CA trusted for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIssuer {
    pub issuer: String,
    pub jwks: String,
    pub ca: Option<PathBuf>,
}
