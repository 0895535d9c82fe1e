//! `writ up` and `writ serve`: the flags, and the platform configuration they describe.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use super::ServiceName;
use crate::platform::{
    AuthzSettings, ExternalIssuer, KeyEncryption, PlatformConfig, RevocationSettings, StoreChoice,
    StsSettings, StsWiring, TlsMode,
};

/// `--store-cache-mib`'s default: [`crate::platform::SLED_CACHE_BYTES`].
const SLED_CACHE_MIB: u64 = crate::platform::SLED_CACHE_BYTES / (1024 * 1024);

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
    /// Admin API gRPC port (0 picks a free one): a listener of its own, on --admin-listen.
    #[arg(long, env = "WRIT_ADMIN_PORT", default_value_t = 7402)]
    pub admin_port: u16,
    /// Address the admin API listens on: loopback unless you mean to reach it from elsewhere.
    #[arg(long, env = "WRIT_ADMIN_LISTEN", default_value = "127.0.0.1")]
    pub admin_listen: IpAddr,
    /// Authorization server mTLS endpoint aliases' port (RFC 8705: the HTTP endpoints that take
    /// TLS client certificates; 0 picks a free one), served when TLS is on.
    #[arg(long, env = "WRIT_AUTHZ_MTLS_PORT", default_value_t = 7405)]
    pub authz_mtls_port: u16,
    /// Serve no mTLS endpoint aliases (RFC 8705 over HTTP; over gRPC, certificates are taken
    /// all the same).
    #[arg(long, env = "WRIT_NO_AUTHZ_MTLS")]
    pub no_authz_mtls: bool,
    /// The mTLS aliases' URL in the metadata (default: the listener's), when clients reach
    /// them by another name (a load balancer's).
    #[arg(long, env = "WRIT_AUTHZ_MTLS_URL")]
    pub authz_mtls_url: Option<String>,
    /// Gateway check gRPC port (Envoy's ext_authz; 0 picks a free one), on --gateway-listen.
    #[arg(long, env = "WRIT_GATEWAY_PORT", default_value_t = 7403)]
    pub gateway_port: u16,
    /// Gateway check HTTP port (nginx's auth_request: /check; 0 picks a free one).
    #[arg(long, env = "WRIT_GATEWAY_HTTP_PORT", default_value_t = 7404)]
    pub gateway_http_port: u16,
    /// Address the gateway check listens on, or "off". Loopback unless your gateways run
    /// elsewhere: it trades reference tokens for the JWTs behind them, so only gateways may
    /// reach it.
    #[arg(long, env = "WRIT_GATEWAY_LISTEN", default_value = "127.0.0.1")]
    pub gateway_listen: String,
    /// Tokens the gateway check remembers its verdicts for: typical ones (the cache holds at
    /// most this many times 2 KiB, whatever the tokens' sizes; 0: none).
    #[arg(long, env = "WRIT_GATEWAY_CACHE_ENTRIES", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub gateway_cache_entries: u64,
    /// Every DPoP proof at the token endpoint must carry a nonce this server issued (RFC 9449
    /// section 8; `use_dpop_nonce` hands one out): proofs made in advance, or by a client whose
    /// clock is far off, are refused.
    #[arg(long, env = "WRIT_DPOP_REQUIRE_NONCE")]
    pub dpop_require_nonce: bool,
    /// Operations endpoint (plain HTTP: `/metrics`, `/livez`, `/readyz`), or "off". Loopback by
    /// default: it takes no input and carries no secret, but says a lot about the platform.
    #[arg(long, env = "WRIT_OPS_LISTEN", default_value = "127.0.0.1:7490")]
    pub ops_listen: String,
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
    /// follow (`up` uses its own). Replicas of one log, comma-separated: watchers fail over
    /// between them and resume from their cursor; a publisher's calls go to one that answers.
    #[arg(long, env = "WRIT_REVOCATION_URL")]
    pub revocation_url: Option<String>,
    /// `serve revocation` and `serve sts`: the authorization server whose tokens callers present
    /// (and, for the STS, whose clients and exchange policies apply).
    #[arg(long, env = "WRIT_AUTHZ_URL")]
    pub authz_url: Option<String>,
    /// `serve sts`: the authorization server's admin API (its own port).
    #[arg(long, env = "WRIT_AUTHZ_ADMIN_URL")]
    pub authz_admin_url: Option<String>,
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
    /// The CA certificates (a PEM file) to trust when fetching the JWK Sets of clients
    /// registered with a jwks_uri (private_key_jwt); default: the system's CA bundle.
    #[arg(long, env = "WRIT_CLIENT_JWKS_CA")]
    pub client_jwks_ca: Option<PathBuf>,
    /// The CAs (a PEM file) whose certificates `tls_client_auth` clients present (RFC 8705):
    /// each a trust anchor (list the CA that issues client certificates, an intermediate
    /// itself); without it, no client may register for tls_client_auth.
    #[arg(long, env = "WRIT_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// `serve revocation` and `up`: a client allowed to publish revocations besides the
    /// authorization server, as CLIENT_ID=ISSUER: it may revoke tokens of that issuer only
    /// (CLIENT_ID= for the authorization server's own tokens; repeatable).
    #[arg(
        long = "revocation-producer",
        env = "WRIT_REVOCATION_PRODUCERS",
        value_delimiter = ','
    )]
    pub revocation_producers: Vec<String>,
    /// `serve revocation` and `up`: the least a producer's entry lives past its cut-off, in
    /// seconds: the longest token its issuer issues, plus leeway (shorter expiries are raised).
    #[arg(
        long,
        env = "WRIT_REVOCATION_MIN_ENTRY_LIFETIME",
        default_value_t = 3630
    )]
    pub revocation_min_entry_lifetime: u64,
    /// The STS refuses every exchange while its revocation feed is staler than this, in seconds
    /// (when it follows one: beside the revocation log on sled, as under `writ up`, it reads the
    /// log and has no feed to go stale).
    #[arg(long, env = "WRIT_STS_MAX_FEED_STALENESS", default_value_t = 30)]
    pub sts_max_feed_staleness: u64,
    /// `serve sts`: the STS's own client at the authorization server. It needs
    /// `writ.revocation.watch` for the audience `writ-revocation` (to follow the feed), and
    /// `writ.admin.authenticate_client writ.admin.read` for `writ-admin` (to check its callers
    /// and read their exchange policies); never the master admin credential.
    #[arg(long, env = "WRIT_STS_CLIENT_ID", allow_hyphen_values = true)]
    pub sts_client_id: Option<String>,
    /// The secret of `--sts-client-id` (prefer the environment to the command line).
    #[arg(
        long,
        env = "WRIT_STS_CLIENT_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub sts_client_secret: Option<String>,
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
    /// A file holding the key signing keys are sealed under in the stores (base64url, 32
    /// bytes). Default: `<data-dir>/key-encryption.key`, created on the first start.
    #[arg(
        long,
        env = "WRIT_KEY_ENCRYPTION_KEY_FILE",
        conflicts_with = "key_encryption_key"
    )]
    pub key_encryption_key_file: Option<PathBuf>,
    /// The key-encryption key itself (base64url, 32 bytes), from the environment only.
    #[arg(
        long,
        env = "WRIT_KEY_ENCRYPTION_KEY",
        hide = true,
        hide_env_values = true
    )]
    pub key_encryption_key: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Access token lifetime when a client sets none, in seconds.
    #[arg(long, env = "WRIT_ACCESS_TOKEN_LIFETIME", default_value_t = 300)]
    pub access_token_lifetime: i64,
    /// Seconds after a refresh token's rotation in which its client presenting it again (the
    /// reply was lost) gets a new successor instead of having the family revoked; 0 disables.
    #[arg(long, env = "WRIT_REFRESH_ROTATION_GRACE",
          default_value_t = writ_oauth::DEFAULT_REFRESH_ROTATION_GRACE,
          value_parser = clap::value_parser!(i64).range(0..=writ_oauth::MAX_REFRESH_ROTATION_GRACE))]
    pub refresh_rotation_grace: i64,
    /// The durable audit log (every security decision, hash-chained and signed): `on`, or
    /// `off` (decisions are then only logged).
    #[arg(long, env = "WRIT_AUDIT", default_value = "on", value_parser = ["on", "off"])]
    pub audit: String,
    /// Audit records older than this many days are pruned (up to a signed checkpoint).
    #[arg(long, env = "WRIT_AUDIT_RETENTION_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub audit_retention_days: u64,
    /// At most this many audit records are kept (the oldest pruned, up to a checkpoint).
    #[arg(long, env = "WRIT_AUDIT_MAX_EVENTS", default_value_t = writ_audit::DEFAULT_MAX_EVENTS,
          value_parser = clap::value_parser!(u64).range(1_000..))]
    pub audit_max_events: u64,
    /// Refusals of each kind recorded one by one per second, at most; past it they are counted,
    /// each count one `refusals_unrecorded` record about a second later (0: no bound). Keeps a
    /// flood of refusals from pushing older records out of --audit-max-events.
    #[arg(long, env = "WRIT_AUDIT_MAX_REFUSALS_PER_SECOND",
          default_value_t = writ_audit::DEFAULT_MAX_REFUSALS_PER_SECOND)]
    pub audit_max_refusals_per_second: u32,
    /// A signed checkpoint of the audit log at least this often (seconds) while records arrive.
    #[arg(long, env = "WRIT_AUDIT_CHECKPOINT_INTERVAL", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub audit_checkpoint_interval: u64,
    /// On sled, the audit log's file is synced at most this often (microseconds): a burst of
    /// decisions shares one sync, each answered once its record is durable. 0: sync at once.
    #[arg(long, env = "WRIT_AUDIT_SYNC_INTERVAL_US", default_value_t = writ_audit::DEFAULT_SYNC_INTERVAL_US,
          value_parser = clap::value_parser!(u64).range(0..=writ_audit::MAX_SYNC_INTERVAL_US))]
    pub audit_sync_interval_us: u64,
}

impl ServeArgs {
    /// The platform configuration these flags describe, running `services` in this process.
    pub fn platform(&self, services: &[ServiceName]) -> anyhow::Result<PlatformConfig> {
        use anyhow::Context;
        let at = |port: u16| SocketAddr::new(self.listen, port);
        let runs = |s: ServiceName| services.contains(&s);
        let mut engine = writ_oauth::Config::new(self.issuer.clone().unwrap_or_default());
        engine.default_access_token_lifetime = self.access_token_lifetime;
        engine.refresh_rotation_grace = self.refresh_rotation_grace;
        engine.gateway_cache_entries = usize::try_from(self.gateway_cache_entries)?;
        engine.dpop_nonce_required = self.dpop_require_nonce;
        if let Some(path) = &self.tls_client_ca {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading --tls-client-ca {}", path.display()))?;
            engine.tls_client_cas = writ_tls::certificates_der(&pem)
                .map_err(|e| anyhow::anyhow!("--tls-client-ca {}: {e}", path.display()))?;
            anyhow::ensure!(
                !engine.tls_client_cas.is_empty(),
                "--tls-client-ca {} holds no certificate",
                path.display()
            );
            writ_oauth::validate_client_cas(&engine.tls_client_cas)
                .map_err(|e| anyhow::anyhow!("--tls-client-ca {}: {e}", path.display()))?;
        }
        if let Some(url) = &self.authz_mtls_url {
            engine.mtls_endpoint = url.trim_end_matches('/').to_owned();
        }
        let gateway: Option<IpAddr> = match self.gateway_listen.as_str() {
            "off" => None,
            ip => Some(
                ip.parse()
                    .context("--gateway-listen takes an IP address or \"off\"")?,
            ),
        };
        let mut producers = std::collections::BTreeMap::new();
        for spec in &self.revocation_producers {
            let (client, issuer) = spec
                .split_once('=')
                .filter(|(c, _)| !c.is_empty())
                .context("--revocation-producer takes CLIENT_ID=ISSUER")?;
            producers.insert(client.to_owned(), issuer.to_owned());
        }
        let sts = if runs(ServiceName::Sts) {
            let wiring = if runs(ServiceName::Authz) {
                StsWiring::InProcess {
                    consult_authz_index: true,
                }
            } else {
                let (Some(id), Some(secret)) = (&self.sts_client_id, &self.sts_client_secret)
                else {
                    anyhow::bail!(
                        "`serve sts` needs --sts-client-id and WRIT_STS_CLIENT_SECRET: its client at the authorization server, allowed writ.revocation.watch for writ-revocation and writ.admin.authenticate_client writ.admin.read for writ-admin"
                    );
                };
                StsWiring::Remote {
                    client: writ_client::ClientCredentials::new(id, secret),
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
            ops: match self.ops_listen.as_str() {
                "off" => None,
                addr => Some(
                    addr.parse()
                        .context("--ops-listen takes ADDRESS:PORT, or off")?,
                ),
            },
            authz: runs(ServiceName::Authz).then(|| AuthzSettings {
                grpc: at(self.authz_port),
                http: at(self.authz_http_port),
                mtls: (!self.no_authz_mtls).then(|| at(self.authz_mtls_port)),
                admin: SocketAddr::new(self.admin_listen, self.admin_port),
                gateway: gateway.map(|ip| {
                    (
                        SocketAddr::new(ip, self.gateway_port),
                        SocketAddr::new(ip, self.gateway_http_port),
                    )
                }),
                engine,
                client_jwks_ca: self.client_jwks_ca.clone(),
            }),
            revocation: runs(ServiceName::Revocation).then(|| RevocationSettings {
                grpc: at(self.revocation_port),
                service: writ_revocation::Config {
                    producers,
                    min_entry_lifetime: std::time::Duration::from_secs(
                        self.revocation_min_entry_lifetime,
                    ),
                    ..writ_revocation::Config::default()
                },
                ..RevocationSettings::default()
            }),
            sts,
            authz_url: self.authz_url.clone(),
            authz_admin_url: self.authz_admin_url.clone(),
            revocation_url: self.revocation_url.clone(),
            store: self.store.choice()?,
            key_encryption: match (&self.key_encryption_key_file, &self.key_encryption_key) {
                (Some(path), _) => KeyEncryption::File(path.clone()),
                (None, Some(value)) => KeyEncryption::Value(value.clone()),
                (None, None) => KeyEncryption::DataDir,
            },
            audit: writ_audit::Settings {
                enabled: self.audit == "on",
                retention: std::time::Duration::from_secs(self.audit_retention_days * 24 * 3600),
                max_events: self.audit_max_events,
                max_refusals_per_second: self.audit_max_refusals_per_second,
                checkpoint_interval: std::time::Duration::from_secs(self.audit_checkpoint_interval),
                sync_interval: std::time::Duration::from_micros(self.audit_sync_interval_us),
                ..writ_audit::Settings::default()
            },
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

/// Where the services' state is: `--store` and its companions (`serve`, `up`, `audit`).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Where the services keep their state: `sled` (embedded, in --data-dir; one process), or a
    /// PostgreSQL URL (`postgres://USER@HOST:PORT/DATABASE`) that replicas share, each service
    /// in a schema of its own. A password belongs in the environment (WRIT_STORE), never on the
    /// command line.
    #[arg(
        long,
        env = "WRIT_STORE",
        default_value = "sled",
        hide_env_values = true
    )]
    pub store: String,
    /// sled: the most memory the process's stores may use for their page caches together, in
    /// MiB; shared by the stores it opens (`writ up`: authorization server 4/8, revocation log
    /// 3/8, STS 1/8; a single store has all of it).
    #[arg(long = "store-cache-mib", env = "WRIT_STORE_CACHE_MIB", default_value_t = SLED_CACHE_MIB,
          value_parser = clap::value_parser!(u64).range(8..=65536))]
    pub cache_mib: u64,
    /// PostgreSQL: the CA certificate (PEM file) to trust for TLS. Without it the connection is
    /// in clear text, which only a loopback database is allowed.
    #[arg(long = "store-ca", env = "WRIT_STORE_CA")]
    pub ca: Option<PathBuf>,
    /// PostgreSQL: the prefix of the services' schemas (`PREFIX_authz`, `PREFIX_revocation`,
    /// `PREFIX_sts`).
    #[arg(
        long = "store-schema",
        env = "WRIT_STORE_SCHEMA",
        default_value = "writ"
    )]
    pub schema: String,
    /// PostgreSQL: the most connections each service keeps open.
    #[arg(
        long = "store-max-connections",
        env = "WRIT_STORE_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub max_connections: usize,
}

impl StoreArgs {
    /// The store these flags name.
    pub fn choice(&self) -> anyhow::Result<StoreChoice> {
        use anyhow::Context;
        if self.store == "sled" {
            return Ok(StoreChoice::Sled(writ_store::SledConfig {
                cache_bytes: self.cache_mib * 1024 * 1024,
            }));
        }
        anyhow::ensure!(
            self.store.starts_with("postgres://") || self.store.starts_with("postgresql://"),
            "--store takes `sled` or a postgres:// URL"
        );
        let facts = writ_store_postgres::inspect_url(&self.store).context("--store")?;
        let from_environment = std::env::var("WRIT_STORE").is_ok_and(|v| v == self.store);
        anyhow::ensure!(
            !facts.has_password || from_environment,
            "a password in --store shows in the process list: set WRIT_STORE instead"
        );
        let ca_pem = match &self.ca {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading --store-ca {}", path.display()))?,
            ),
            None => None,
        };
        // Clear text (grants, hashed secrets, sealed keys) only over loopback.
        anyhow::ensure!(
            ca_pem.is_some() || facts.loopback_only,
            "a database beyond loopback needs TLS: give --store-ca (the CA that signed its certificate)"
        );
        Ok(StoreChoice::Postgres(writ_store_postgres::PgConfig {
            ca_pem,
            schema: Some(self.schema.clone()),
            max_connections: self.max_connections,
            ..writ_store_postgres::PgConfig::new(self.store.clone())
        }))
    }
}
