//! The Writ Security Token Service: `writ.sts.v1.SecurityTokenService` over gRPC and the RFC 8693
//! HTTP facade, both thin transports over the `writ-exchange` engine, with health checking and
//! reflection.
//!
//! The STS is an issuer of its own: its keys live in its own store (Biscuit root key ids from
//! 1,000,000, so a guard trusting it and the authorization server tells their Biscuits apart),
//! its tokens carry its own `iss`, and its JWKS is served by `GetJwks` and
//! `/.well-known/jwks.json`. It learns its callers and their exchange policies from the
//! authorization server ([`directory`]), and refuses revoked tokens: from the revocation feed,
//! failing closed when the feed is staler than its bound, or under `writ up` from the revocation
//! log in its process ([`revocation`]).

pub mod directory;
mod error;
pub mod grpc;
pub mod http;
pub mod keys;
pub mod revocation;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Channel;
use writ_client::BearerSource;
use writ_exchange::{Config, Directory, TokenExchange};
use writ_keyring::{Keyring, KeyringConfig};
use writ_proto::sts::security_token_service_server::SecurityTokenServiceServer;
use writ_revocation_client::{RevocationFeed, RevocationSet, WatchConfig, Watcher};
use writ_server::{MAX_GRPC_MESSAGE, ServiceSpec, ShutdownSignal};
use writ_store::AsyncStore;
use writ_tls::TlsMaterial;
use writ_token::{AsyncRevocationCheck, SharedClock, TrustedIssuer};

pub use error::StsError;
pub use grpc::StsGrpc;

/// Default bound on the revocation feed's staleness: past it, exchanges are refused.
pub use writ_revocation_client::DEFAULT_MAX_STALENESS;

/// How often the STS looks for signing keys another replica rotated.
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// What the STS is wired to.
pub struct Options {
    /// Where its signing keys live (its own store; generated on a first start).
    pub store: Arc<dyn AsyncStore>,
    /// What its signing keys are sealed under in that store.
    pub key_encryption_key: Arc<writ_keyring::KeyEncryptionKey>,
    pub config: Config,
    pub clock: SharedClock,
    /// Who the callers are and what they may exchange.
    pub directory: Arc<dyn Directory>,
    /// The issuers whose tokens are accepted, besides the STS itself.
    pub issuers: Vec<TrustedIssuer>,
    /// Where it learns of revocations.
    pub revocations: Revocations,
    /// Another revocation index to consult besides the feed (under `writ up`, the authorization
    /// server's own, which knows a revocation the moment it is acknowledged).
    pub local_index: Option<Arc<dyn AsyncRevocationCheck>>,
    /// When the STS rotates its own signing keys.
    pub key_rotation: KeyRotation,
    /// Where its decisions are recorded (under `writ up`, the authorization server's log).
    pub audit: writ_audit::Auditor,
}

/// Where the STS learns of revocations.
pub enum Revocations {
    /// The revocation service's feed, followed into the STS's own set (the STS deployed on its
    /// own).
    Feed {
        /// The revocation service's replicas: the feed fails over between them.
        channels: Vec<Channel>,
        /// What the STS watches the feed with.
        tokens: Arc<dyn BearerSource>,
        watch: WatchConfig,
        /// Past this staleness of the feed, every exchange is refused.
        max_staleness: Duration,
    },
    /// The revocation log in this process (`writ up`), consulted directly: it is the feed's
    /// source, so there is nothing to go stale and no second copy of every live revocation in
    /// memory, or to replay after a restart.
    InProcess(Arc<dyn AsyncRevocationCheck>),
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Revocations::Feed { max_staleness, .. } => f
                .debug_struct("Feed")
                .field("max_staleness", max_staleness)
                .finish_non_exhaustive(),
            Revocations::InProcess(log) => f.debug_tuple("InProcess").field(log).finish(),
        }
    }
}

/// The STS rotates its signing keys by age: no administrator rotates them, and no key should
/// sign for ever. A retired key stays published until every token it signed has expired.
#[derive(Debug, Clone, Copy)]
pub struct KeyRotation {
    /// A key older than this is replaced (default 30 days).
    pub max_age: Duration,
    /// How often the age is looked at (default hourly).
    pub check_every: Duration,
}

impl Default for KeyRotation {
    fn default() -> Self {
        KeyRotation {
            max_age: Duration::from_secs(30 * 24 * 3600),
            check_every: Duration::from_secs(3600),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("config", &self.config)
            .field("directory", &self.directory)
            .field("issuers", &self.issuers)
            .field("revocations", &self.revocations)
            .finish_non_exhaustive()
    }
}

/// What the STS's transports serve: the exchange engine and the STS's own keys.
#[derive(Debug)]
pub struct Sts {
    pub engine: Arc<TokenExchange>,
    pub keys: Arc<Keyring>,
    clock: SharedClock,
}

impl Sts {
    /// An exchange, counted by outcome (`writ_exchanges_total`): the one path both transports
    /// take.
    pub async fn exchange(
        &self,
        request: writ_exchange::ExchangeRequest,
    ) -> Result<writ_exchange::ExchangeResponse, writ_exchange::ExchangeError> {
        let result = self.engine.exchange(request).await;
        writ_metrics::global().exchange(match &result {
            Ok(_) => "issued",
            Err(e) => e.oauth_code(),
        });
        result
    }
}

impl Sts {
    /// JWT keys and Biscuit root keys to publish now (with each retired root key's end of life).
    pub fn published_keys(&self) -> writ_proto::convert::PublishedKeys {
        let now = self.clock.now();
        let state = self.keys.state();
        writ_proto::convert::PublishedKeys::new(
            &state.published_jwt_keys(now),
            &state.published_biscuit_keys(now),
        )
    }
}

/// A running STS.
#[derive(Debug)]
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub engine: Arc<TokenExchange>,
    /// Its own signing keys.
    pub keys: Arc<Keyring>,
    /// The revocation set the STS keeps from the feed (`None` when it consults the log in its
    /// own process).
    pub revocations: Option<Arc<RevocationSet>>,
    /// What the STS checks tokens against: the feed or the log, then any local index.
    pub check: Arc<dyn AsyncRevocationCheck>,
    served: writ_server::Running,
    watcher: Option<Watcher>,
}

impl Running {
    /// Waits until every task has stopped (after shutdown), then stops the feed.
    pub async fn wait(self) {
        self.served.wait().await;
        if let Some(w) = self.watcher {
            w.stop();
        }
    }
}

/// Opens the exchange engine on its store (its keys), starts following the revocation feed, and
/// serves gRPC and HTTP on the given listeners, with TLS when `tls` is given, until `shutdown`.
pub async fn start(
    options: Options,
    grpc: TcpListener,
    http: TcpListener,
    tls: Option<&TlsMaterial>,
    shutdown: ShutdownSignal,
) -> Result<Running, StsError> {
    let (primary, revocations, watcher): (Arc<dyn AsyncRevocationCheck>, _, _) =
        match options.revocations {
            Revocations::Feed {
                channels,
                tokens,
                watch,
                max_staleness,
            } => {
                let set = Arc::new(RevocationSet::new());
                let watcher = Watcher::spawn_failover(channels, tokens, set.clone(), watch);
                (
                    Arc::new(RevocationFeed::new(set.clone(), max_staleness)),
                    Some(set),
                    Some(watcher),
                )
            }
            Revocations::InProcess(log) => (log, None, None),
        };
    let check: Arc<dyn AsyncRevocationCheck> =
        Arc::new(revocation::FeedCheck::new(primary, options.local_index));
    let keys = Arc::new(
        Keyring::load(
            options.store,
            options.clock.now(),
            KeyringConfig::STS,
            options.key_encryption_key,
        )
        .await
        .map_err(StsError::Keys)?,
    );
    if let Err(e) = options
        .audit
        .record_keyring_load(keys.take_load_events())
        .await
    {
        tracing::error!(error = %e, "the STS's first signing keys could not be recorded in the audit log");
    }
    // Every token the STS signs lives at most `max_lifetime`, verified with `leeway`.
    let retire_for = options.config.max_lifetime + options.config.leeway;
    let engine = Arc::new(TokenExchange::new(
        options.config,
        options.clock.clone(),
        keys.clone(),
        options.directory,
        check.clone(),
        options.issuers,
        options.audit.clone(),
    )?);
    let sts = Arc::new(Sts {
        engine: engine.clone(),
        keys: keys.clone(),
        clock: options.clock.clone(),
    });
    let rotation = options.key_rotation;
    let (rotating, clock, audit) = (keys.clone(), options.clock, options.audit);
    let (refreshing, refresh_clock) = (keys.clone(), clock.clone());
    let spec = ServiceSpec::new("security token service")
        .grpc(
            SecurityTokenServiceServer::new(StsGrpc::new(sts.clone()))
                .max_decoding_message_size(MAX_GRPC_MESSAGE),
        )
        .http(http::router(sts))
        .every("signing key rotation", rotation.check_every, move || {
            let (keys, now, audit) = (rotating.clone(), clock.now(), audit.clone());
            let max_age = i64::try_from(rotation.max_age.as_secs()).unwrap_or(i64::MAX);
            async move {
                match keys.rotate_when_older(max_age, now, retire_for).await {
                    Ok(rotated) => {
                        for key in rotated {
                            let event = writ_audit::Event::new(
                                "signing_key_rotated",
                                writ_audit::Outcome::Success,
                            )
                            .actor("system")
                            .reason("age")
                            .detail("kid", &key.kid)
                            .detail("purpose", key.purpose.name())
                            .detail("alg", &key.alg);
                            if let Err(e) = audit.record(event).await {
                                tracing::error!(error = %e, "a key rotation could not be recorded in the audit log");
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "the STS could not rotate its signing keys"),
                }
            }
        })
        // A rotation by another replica sharing the store reaches this one's JWKS within this.
        .every("shared signing keys", KEY_REFRESH_INTERVAL, move || {
            let (keys, now) = (refreshing.clone(), refresh_clock.now());
            async move {
                if let Err(e) = keys.refresh_if_changed(now).await {
                    tracing::warn!(error = %e, "reading the shared signing keys failed");
                }
            }
        });
    let http_addr = writ_server::local_addr(&http)?;
    let served = writ_server::serve(spec, grpc, Some(http), tls, shutdown).await?;
    tracing::info!(issuer = %engine.config().issuer, "the security token service issues as");
    Ok(Running {
        grpc_addr: served.grpc_addr,
        http_addr,
        engine,
        keys,
        revocations,
        check,
        served,
        watcher,
    })
}
