//! Writ's OAuth 2.0 engine: clients, users, signing keys, grants, introspection (RFC 7662) and
//! revocation (RFC 7009). It knows nothing of gRPC or HTTP: both transports call the same
//! [`AuthorizationServer`], so there is one copy of the grant logic.
//!
//! Every write a caller is told succeeded has been made durable first (`Store::durable`).
//! Every security decision emits a `tracing` event with target `writ::audit`.

mod admin;
mod admin_access;
mod client_auth;
#[cfg(test)]
mod client_auth_tests;
mod client_cache;
mod clients;
mod codes;
pub mod device;
mod dpop;
#[cfg(test)]
mod engine_tests;
mod error;
mod gateway;
mod grants;
mod introspection;
mod policies;
mod records;
mod reference;
mod revocation_filter;
mod revocations;
mod sealed;
mod secrets;
mod sessions;
pub mod signin;
mod synthetic;
mod throttle;
mod types;
mod undelivered;
mod users;
mod workloads;

use std::sync::Arc;

use writ_audit::{Event, Outcome};
use writ_store::{AsyncStore, AsyncStoreExt, Batch, Record, encode};
use writ_token::{
    Algorithm, KeySet, SharedClock, TrustedIssuer, TrustedIssuers, UnixTime, VerifierConfig,
    random_bytes, random_secret,
};

pub use admin_access::{AdminCaller, AdminPermission};
pub use client_auth::{
    ClientKeyFetcher, MAX_ASSERTION_LIFETIME, MAX_CLIENT_JWKS_LEN, MAX_CLIENT_KEYS,
    MAX_JWKS_URI_LEN, named_client, validate_client_cas,
};
pub use device::{DeviceAuthorization, DevicePage};
pub use dpop::DpopRequest;
pub use error::{Error, Result};
pub use gateway::{GatewayNeeds, GatewayPass};
pub use reference::{REFERENCE_PREFIX, is_reference};
pub use revocations::Revocation;
pub use secrets::{SecretHasher, hash_password, verify_password};
pub use sessions::{MAX_LISTED_SESSIONS, SessionInfo, SessionsEnded};
pub use signin::{
    AuthorizationRequest, Authorize, Consent, Interaction, LogoutNotice, NewSession, UserInfo,
};
#[doc(hidden)]
pub use synthetic::Synthetic;
pub use throttle::ThrottleConfig;
pub use types::*;
pub use workloads::{
    DEFAULT_WORKLOAD_TOKEN_LIFETIME, MAX_WORKLOAD_POLICIES, MAX_WORKLOAD_TOKEN_LIFETIME,
    WorkloadIssuer, WorkloadPolicy,
};
pub use writ_keyring::KeyState;
pub use writ_token::DPOP_MAX_AGE;
use writ_vocabulary::{grant_type, token_type};

use records::ServerSecretsRecord;
use writ_keyring::{Keyring, KeyringConfig};

/// Longest identifier (client id, username, audience) accepted.
pub const MAX_ID_LEN: usize = 128;
/// Longest secret, password or refresh token accepted.
pub const MAX_SECRET_LEN: usize = 1024;
/// Longest access token accepted by introspection and revocation.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Most audiences (and resources) in one request.
pub const MAX_AUDIENCES: usize = 16;
/// A client's retry after a lost reply comes within seconds; longer widens what a thief holding
/// a just-rotated token could do before the next honest use exposes it.
pub const DEFAULT_REFRESH_ROTATION_GRACE: i64 = 10;
/// The longest grace period accepted.
pub const MAX_REFRESH_ROTATION_GRACE: i64 = 300;

/// How the engine behaves. Defaults are the secure ones.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `iss` of every token, and the base of the HTTP endpoints in the metadata.
    pub issuer: String,
    /// Algorithm of generated JWT keys.
    pub jwt_algorithm: Algorithm,
    /// Access token lifetime when the client sets none, in seconds.
    pub default_access_token_lifetime: i64,
    /// Upper bound on any client's access token lifetime.
    pub max_access_token_lifetime: i64,
    /// Refresh token lifetime when the client sets none (sliding: each rotation renews it).
    pub default_refresh_token_lifetime: i64,
    /// Absolute lifetime of a refresh family, whatever the rotations.
    pub max_grant_lifetime: i64,
    /// Seconds after a rotation in which the same client presenting the rotated refresh token
    /// again gets a fresh successor (the unused one is invalidated) instead of losing the family:
    /// a reply lost in transit must not sign an honest client out. 0 disables it.
    pub refresh_rotation_grace: i64,
    /// Clock skew tolerated by verification.
    pub leeway: i64,
    /// Brute-force protection of client and user authentication.
    pub throttle: ThrottleConfig,
    /// Password checks (argon2id, ~19 MiB and tens of milliseconds each) running at once, and
    /// waiting; past both, a password grant is refused as `temporarily_unavailable`.
    pub max_concurrent_password_checks: usize,
    pub max_waiting_password_checks: usize,
    /// The audit log in this server's store: bounds, checkpoints, or off.
    pub audit: writ_audit::Settings,
    /// How long a browser's sign-in session lasts, in seconds, whatever its activity.
    pub session_lifetime: i64,
    /// Pushed authorization requests and device authorizations one source may make per minute
    /// (each is stored for minutes, and a public client's id is all it takes).
    pub pending_requests_per_minute: u32,
    /// Fewest time between two fetches of one client's `jwks_uri` (an assertion naming a key
    /// the client does not publish must not make Writ fetch on every request).
    pub client_jwks_min_refetch: std::time::Duration,
    /// Tokens the gateway check keeps verdicts for: typical ones (a verified token and the JWT
    /// it forwards, about 2 KiB; the cache is bounded by bytes, this many times 2 KiB); 0
    /// keeps none.
    pub gateway_cache_entries: usize,
    /// Every DPoP proof must carry a nonce this server issued (RFC 9449 section 8): proofs made
    /// in advance, or with a client's clock far off, are refused.
    pub dpop_nonce_required: bool,
    /// The CAs (DER) whose certificates `tls_client_auth` clients present (RFC 8705 section
    /// 2.1): each one a trust anchor, an issuing intermediate listed itself; empty: none.
    pub tls_client_cas: Vec<Vec<u8>>,
    /// Where the HTTP endpoints that take TLS client certificates are served (RFC 8705 section
    /// 5, `mtls_endpoint_aliases`: `https://host:port`); empty: nowhere.
    pub mtls_endpoint: String,
}

impl Config {
    pub fn new(issuer: impl Into<String>) -> Self {
        Config {
            issuer: issuer.into(),
            jwt_algorithm: Algorithm::EdDSA,
            default_access_token_lifetime: 300,
            max_access_token_lifetime: 3600,
            default_refresh_token_lifetime: 14 * 24 * 3600,
            max_grant_lifetime: 90 * 24 * 3600,
            refresh_rotation_grace: DEFAULT_REFRESH_ROTATION_GRACE,
            leeway: 30,
            throttle: ThrottleConfig::default(),
            // One core but one: a flood of passwords always leaves a core to everything else.
            max_concurrent_password_checks: std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1).max(1)),
            max_waiting_password_checks: 64,
            audit: writ_audit::Settings::default(),
            session_lifetime: 12 * 3600,
            pending_requests_per_minute: 60,
            client_jwks_min_refetch: std::time::Duration::from_secs(10),
            gateway_cache_entries: 10_000,
            dpop_nonce_required: false,
            mtls_endpoint: String::new(),
            tls_client_cas: Vec::new(),
        }
    }
}

/// What `open` created on a first start.
#[derive(Debug, Default)]
pub struct Bootstrap {
    /// The admin credential, shown this once: it is stored only as a keyed hash.
    pub admin_credential: Option<String>,
}

const SERVER_SECRETS_KEY: &[u8] = b"server_secrets";
/// In `Tree::Meta` once token revocations were left to a revocation log (see `follow_log`).
const LEFT_TO_LOG: &[u8] = b"revocations_left_to_log";

/// The authorization server engine.
#[derive(Debug)]
pub struct AuthorizationServer {
    store: Arc<dyn AsyncStore>,
    config: Config,
    clock: SharedClock,
    hasher: SecretHasher,
    /// Seals and opens authorization codes (see [`codes`]).
    codes: codes::CodeSealer,
    /// Seals JWTs into reference tokens and opens them (see [`reference`]).
    references: reference::ReferenceSealer,
    /// The gateway check's verdicts (see [`gateway`]).
    gateway_cache: gateway::GatewayCache,
    /// DPoP proofs seen, and nonces (see [`dpop`]).
    dpop: dpop::DpopState,
    /// Whether a pruning pass has given every live session an index entry (sessions opened
    /// before the index existed had none): once per process.
    sessions_indexed: std::sync::atomic::AtomicBool,
    keys: Arc<Keyring>,
    /// This server's own tokens, under its own keys (introspection, revocation).
    verifier: TrustedIssuers,
    /// An argon2id hash of a random password: unknown users are checked against it, so they
    /// cost the same time as known ones.
    dummy_password_hash: String,
    /// Client records as client authentication last read them.
    client_cache: Arc<client_cache::ClientCache>,
    /// Key ids revoked in the store, as last reloaded (see [`Self::trusted_keys`]).
    revoked_key_ids: parking_lot::RwLock<Arc<std::collections::HashSet<String>>>,
    outbox_ready: tokio::sync::Notify,
    /// Woken when the publisher has delivered (see [`Self::record_revocations`]'s backpressure).
    outbox_drained: tokio::sync::Notify,
    /// A recording waited the longest for the backlog since the last delivery: the next ones
    /// do not wait.
    backlog_stalled: std::sync::atomic::AtomicBool,
    /// Bumped whenever a key id is revoked: invalidates `trusted`.
    key_revocations: std::sync::atomic::AtomicU64,
    trusted: parking_lot::Mutex<Option<TrustedKeys>>,
    throttle: throttle::Throttle,
    /// Pushed requests and device authorizations per source and minute.
    pending_budget: throttle::Budget,
    /// The revocation feed (every producer's entries), consulted by introspection besides this
    /// server's own index, once the platform wires it.
    feed: std::sync::OnceLock<Arc<dyn writ_token::AsyncRevocationCheck>>,
    /// Fetches the keys of clients registered with a `jwks_uri`, once the transport wires one.
    client_key_fetcher: std::sync::OnceLock<Arc<dyn client_auth::ClientKeyFetcher>>,
    /// What it fetched.
    url_keys: client_auth::UrlKeys,
    /// Keys fetched from workload issuers' `jwks_uri`s, by issuer.
    workload_keys: client_auth::UrlKeys,
    /// What the local revocation index may hold, when this process is its only writer.
    revocation_filter: Option<Arc<revocation_filter::RevocationFilter>>,
    /// Outbox entries not yet delivered, by target, when this process is the store's only
    /// writer.
    undelivered: Option<undelivered::Undelivered>,
    /// Set once the revocation log runs in this process ([`Self::follow_log`]): entries it keeps
    /// as long as the local index would are left to it.
    leave_to_log: std::sync::atomic::AtomicBool,
    /// The store says entries were left to a log ([`LEFT_TO_LOG`]): without a feed, this
    /// server's index cannot vouch for a token.
    needs_feed: std::sync::atomic::AtomicBool,
    /// Permits for concurrent password checks, and how many wait for one.
    password_checks: Arc<tokio::sync::Semaphore>,
    password_waiting: std::sync::atomic::AtomicUsize,
    /// The audit log, in `store`.
    audit: writ_audit::Auditor,
}

/// [`AuthorizationServer::trusted_keys`], with the public key set and the `key_revocations`
/// generation it was computed from.
type TrustedKeys = (Arc<KeySet>, u64, Arc<KeySet>);

impl AuthorizationServer {
    /// Opens the engine on `store`, creating the server secrets, the admin credential and the
    /// first signing keys on a first start.
    pub async fn open(
        store: Arc<dyn AsyncStore>,
        config: Config,
        clock: SharedClock,
        key_encryption_key: Arc<writ_keyring::KeyEncryptionKey>,
    ) -> Result<(Self, Bootstrap)> {
        let now = clock.now();
        let mut bootstrap = Bootstrap::default();
        let audit = writ_audit::Auditor::open(
            store.clone(),
            &key_encryption_key,
            config.audit.clone(),
            "authz",
        )
        .await?;
        let secrets = match store
            .get_record::<ServerSecretsRecord>(SERVER_SECRETS_KEY)
            .await?
        {
            Some(s) => s,
            None => {
                let key = random_bytes::<32>().to_vec();
                let credential = format!("writ-admin-{}", random_secret());
                let rec = ServerSecretsRecord {
                    admin_credential_hash: SecretHasher::new(&key)
                        .hash(credential.as_bytes())
                        .to_vec(),
                    secret_hash_key: key,
                    created_at: now,
                };
                // Replicas bootstrapping one store at once: exactly one wins, and shows the
                // credential; the others use what it stored.
                let intent = audit.intent(
                    Event::new("admin_credential_created", Outcome::Success).actor("system"),
                );
                let batch = Batch::new()
                    .expect(SERVER_SECRETS_KEY, None)
                    .put(SERVER_SECRETS_KEY, encode(&rec));
                if store
                    .commit(ServerSecretsRecord::TREE, intent.attach(batch))
                    .await?
                {
                    audit.written(intent);
                    store.durable().await?;
                    bootstrap.admin_credential = Some(credential);
                    rec
                } else {
                    store
                        .get_record::<ServerSecretsRecord>(SERVER_SECRETS_KEY)
                        .await?
                        .ok_or(Error::Internal("the server secrets vanished"))?
                }
            }
        };
        let codes =
            codes::CodeSealer::new(&key_encryption_key.derive(codes::CodeSealer::PURPOSE)[..]);
        let references = reference::ReferenceSealer::new(
            &key_encryption_key.derive(reference::ReferenceSealer::PURPOSE)[..],
        );
        let dpop = dpop::DpopState::new(&key_encryption_key.derive(dpop::DpopState::PURPOSE)[..]);
        let keys = Arc::new(
            Keyring::load(
                store.clone(),
                now,
                KeyringConfig {
                    jwt_algorithm: config.jwt_algorithm,
                    ..KeyringConfig::AUTHORIZATION_SERVER
                },
                key_encryption_key,
            )
            .await?,
        );
        let verifier = TrustedIssuers::new(
            vec![TrustedIssuer::new(config.issuer.clone(), keys.clone())],
            VerifierConfig {
                leeway: config.leeway,
                max_token_bytes: MAX_TOKEN_LEN,
                max_lifetime: config.max_access_token_lifetime,
                ..VerifierConfig::new(Vec::new(), None)
            },
            clock.clone(),
        );
        let dummy_password_hash = tokio::task::spawn_blocking(|| hash_password(&random_secret()))
            .await
            .map_err(|_| Error::Internal("password hashing task"))??;
        let server = AuthorizationServer {
            revoked_key_ids: Default::default(),
            client_cache: Default::default(),
            outbox_ready: tokio::sync::Notify::new(),
            outbox_drained: tokio::sync::Notify::new(),
            backlog_stalled: std::sync::atomic::AtomicBool::new(false),
            key_revocations: std::sync::atomic::AtomicU64::new(0),
            trusted: parking_lot::Mutex::new(None),
            throttle: throttle::Throttle::new(config.throttle),
            pending_budget: throttle::Budget::new(config.pending_requests_per_minute, 100_000),
            feed: std::sync::OnceLock::new(),
            client_key_fetcher: std::sync::OnceLock::new(),
            url_keys: client_auth::UrlKeys::new(writ_token::jwt_key_set),
            workload_keys: client_auth::UrlKeys::new(writ_token::workload_key_set),
            revocation_filter: store.exclusive().then(Default::default),
            undelivered: store.exclusive().then(Default::default),
            leave_to_log: std::sync::atomic::AtomicBool::new(false),
            needs_feed: std::sync::atomic::AtomicBool::new(false),
            password_checks: Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrent_password_checks.max(1),
            )),
            password_waiting: std::sync::atomic::AtomicUsize::new(0),
            audit,
            hasher: SecretHasher::new(&secrets.secret_hash_key),
            codes,
            references,
            gateway_cache: gateway::GatewayCache::new(config.gateway_cache_entries),
            dpop,
            sessions_indexed: std::sync::atomic::AtomicBool::new(false),
            store,
            config,
            clock,
            keys,
            verifier,
            dummy_password_hash,
        };
        server
            .audit
            .record_keyring_load(server.keys.take_load_events())
            .await?;
        server.reload_revoked_key_ids().await?;
        server.index_exchange_policies().await?;
        server.index_revocation_expiries().await?;
        server.load_revocation_filter();
        server.load_undelivered().await?;
        if server
            .store
            .get(writ_store::Tree::Meta, LEFT_TO_LOG)
            .await?
            .is_some()
        {
            server
                .needs_feed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        // Another replica changed a client: forget what this one cached.
        if let Some(mut changes) = server.store.changes(writ_store::Tree::Clients) {
            let cache = Arc::downgrade(&server.client_cache);
            tokio::spawn(async move {
                while changes.changed().await.is_ok() {
                    match cache.upgrade() {
                        Some(cache) => cache.clear(),
                        None => return,
                    }
                }
            });
        }
        Ok((server, bootstrap))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Makes introspection consult `feed` (the revocation log in this process, or a watched
    /// feed) besides this server's own index: it then sees every producer's revocations. Set
    /// once; a feed that cannot vouch makes introspection fail closed (`temporarily_unavailable`).
    pub fn follow_feed(&self, feed: Arc<dyn writ_token::AsyncRevocationCheck>) {
        let _ = self.feed.set(feed);
    }

    /// [`follow_feed`](Self::follow_feed) with the revocation log running in this process, the
    /// outbox's destination. On a store only this process writes, token-id and Biscuit
    /// revocations are then recorded in the outbox alone, not also in the local index: the
    /// outbox's undelivered entries are known in memory, and the log, consulted by every check
    /// that consults this server's index (introspection; the STS in this process), holds each
    /// once delivered, at least as long. (On a shared store the index keeps everything.)
    ///
    /// Once it has, the store remembers it: entries delivered since live only in the log, so
    /// after a restart introspection fails closed (`temporarily_unavailable`) until a feed or
    /// the log is followed again.
    pub async fn follow_log(&self, log: Arc<dyn writ_token::AsyncRevocationCheck>) -> Result<()> {
        if self.feed.set(log).is_err() || self.undelivered.is_none() {
            return Ok(());
        }
        if !self.needs_feed.load(std::sync::atomic::Ordering::Acquire) {
            self.store
                .insert(writ_store::Tree::Meta, LEFT_TO_LOG, vec![1])
                .await?;
            self.store.durable().await?;
            self.needs_feed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        self.leave_to_log
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Whether this server's index alone cannot vouch for a token: it has left entries to a
    /// revocation log, and no feed or log is followed yet.
    pub(crate) fn index_incomplete(&self) -> bool {
        self.needs_feed.load(std::sync::atomic::Ordering::Acquire) && self.feed.get().is_none()
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The signing keys in use.
    pub fn key_state(&self) -> Arc<KeyState> {
        self.keys.state()
    }

    /// The public keys that verify this server's tokens now. The same `Arc` until they change.
    pub fn public_keys(&self) -> Arc<KeySet> {
        self.keys.state().public.clone()
    }

    /// The public keys another service in this process (the revocation service under `writ up`)
    /// trusts for this server's tokens: [`AuthorizationServer::public_keys`] minus any key revoked
    /// by id, as the JWKS publishes them. The same `Arc` until they change.
    ///
    /// (Fix: services in the same process used `public_keys`, which keeps a revoked key until it
    /// would have expired anyway, so a token signed by a revoked key was still accepted there.)
    ///
    /// Synchronous (a key source is asked on every verification): the revoked key ids come from
    /// memory, reloaded from the store at open, after this server revokes a key id, and on every
    /// [`Self::prune_expired`] (so a key another replica revoked is dropped within that period).
    pub fn trusted_keys(&self) -> Arc<KeySet> {
        use std::sync::atomic::Ordering;
        let public = self.public_keys();
        let generation = self.key_revocations.load(Ordering::Acquire);
        if let Some((source, g, trusted)) = &*self.trusted.lock()
            && Arc::ptr_eq(source, &public)
            && *g == generation
        {
            return trusted.clone();
        }
        let revoked = self.revoked_key_ids.read().clone();
        let mut trusted = KeySet::new();
        for k in public.jwt_keys() {
            if !revoked.contains(k.kid()) {
                trusted.insert_jwt(k.clone());
            }
        }
        for k in public.biscuit_keys() {
            if !revoked.contains(&k.id().to_string()) {
                trusted.insert_biscuit(*k);
            }
        }
        let trusted = Arc::new(trusted);
        *self.trusted.lock() = Some((public, generation, trusted.clone()));
        trusted
    }

    /// Reloads the key ids revoked in the store (see [`Self::trusted_keys`]). A store that
    /// cannot answer leaves the previous set (and is reported): it only ever grows by a reload.
    pub(crate) async fn reload_revoked_key_ids(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let ids = self.revoked_key_ids_in_store().await?;
        *self.revoked_key_ids.write() = Arc::new(ids);
        self.key_revocations.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The JWT keys and Biscuit root keys to publish now: live keys, minus any revoked by id.
    #[allow(clippy::type_complexity)]
    pub async fn published_keys(
        &self,
    ) -> Result<(
        Vec<writ_token::VerificationKey>,
        Vec<(writ_token::BiscuitPublicKey, i64)>,
    )> {
        let now = self.now();
        let state = self.keys.state();
        let jwt = state.published_jwt_keys(now);
        let biscuit = state.published_biscuit_keys(now);
        // Read from the store, not the in-memory set: the JWKS is exact on every replica. Only
        // the published keys' ids are looked up: a few reads, however many revocations there are.
        // A root key revoked by id is withdrawn like a JWT key (its id, in decimal, is the
        // `key_id` its Biscuits are revoked by).
        let ids: Vec<String> = jwt
            .iter()
            .map(|k| k.kid().to_string())
            .chain(biscuit.iter().map(|(k, _)| k.id().to_string()))
            .collect();
        let revoked = self.key_ids_revoked(&ids).await?;
        let jwt = jwt
            .into_iter()
            .filter(|k| !revoked.contains(k.kid()))
            .collect();
        let biscuit = biscuit
            .into_iter()
            .filter(|(k, _)| !revoked.contains(&k.id().to_string()))
            .collect();
        Ok((jwt, biscuit))
    }

    /// The audit log this server records in (the platform shares it with the services of the
    /// same process).
    pub fn auditor(&self) -> &writ_audit::Auditor {
        &self.audit
    }

    /// Records a refusal; a refusal stays a refusal if the audit log cannot take it (said in
    /// the server log).
    pub(crate) async fn audit_refusal(&self, event: Event) {
        if let Err(e) = self.audit.record(event).await {
            tracing::error!(error = %e, "a refusal could not be recorded in the audit log");
        }
    }

    /// The verifier of this server's own tokens (any audience).
    pub fn verifier(&self) -> &TrustedIssuers {
        &self.verifier
    }

    /// Replaces the admin credential with a new random one, durably, and returns it (shown
    /// once); the previous one stops working at once.
    pub async fn rotate_admin_credential(&self) -> Result<String> {
        let credential = format!("writ-admin-{}", random_secret());
        let hash = self.hasher.hash(credential.as_bytes()).to_vec();
        self.update_record::<ServerSecretsRecord>(
            SERVER_SECRETS_KEY,
            |current| {
                let mut secrets =
                    current.ok_or(Error::Internal("the server secrets are missing"))?;
                secrets.admin_credential_hash = hash.clone();
                Ok(Some(secrets))
            },
            |_, _| Event::new("admin_credential_rotated", Outcome::Success),
        )
        .await?;
        Ok(credential)
    }

    /// Checks the admin credential, in constant time, against the stored hash (so a rotation on
    /// one replica holds on every replica at once).
    pub async fn authenticate_admin(&self, credential: &str) -> Result<()> {
        let stored = self
            .store
            .get_record::<ServerSecretsRecord>(SERVER_SECRETS_KEY)
            .await?
            .ok_or(Error::Internal("the server secrets are missing"))?;
        if credential.len() <= MAX_SECRET_LEN
            && self
                .hasher
                .verify(credential.as_bytes(), Some(&stored.admin_credential_hash))
        {
            Ok(())
        } else {
            self.audit_refusal(Event::new("admin_authentication_failed", Outcome::Refused))
                .await;
            Err(Error::AdminUnauthenticated)
        }
    }

    /// RFC 8414 metadata. HTTP endpoints hang off the issuer URL.
    pub fn metadata(&self) -> ServerMetadata {
        // `none` last: every endpoint but introspection takes a public client's id alone.
        const AUTH_METHODS: &[&str] = &[
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none",
        ];
        let base = self.config.issuer.trim_end_matches('/');
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mtls = self.config.mtls_endpoint.trim_end_matches('/');
        // RFC 8705: certificates are taken at the mTLS aliases (and over gRPC) only.
        let with_tls = |methods: &[&str]| {
            let mut methods = strings(methods);
            if !mtls.is_empty() {
                let at = methods.len().min(3);
                methods.insert(at, "self_signed_tls_client_auth".to_owned());
                if !self.config.tls_client_cas.is_empty() {
                    methods.insert(at, "tls_client_auth".to_owned());
                }
            }
            methods
        };
        ServerMetadata {
            issuer: self.config.issuer.clone(),
            token_endpoint: self.metadata_token_endpoint(),
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            biscuit_keys_uri: format!("{base}/.well-known/biscuit-keys.json"),
            introspection_endpoint: format!("{base}/oauth2/introspect"),
            revocation_endpoint: format!("{base}/oauth2/revoke"),
            grant_types_supported: strings(&[
                grant_type::AUTHORIZATION_CODE,
                grant_type::DEVICE_CODE,
                grant_type::CLIENT_CREDENTIALS,
                grant_type::REFRESH_TOKEN,
                grant_type::PASSWORD,
                grant_type::JWT_BEARER,
            ]),
            token_endpoint_auth_methods_supported: with_tls(AUTH_METHODS),
            introspection_endpoint_auth_methods_supported: with_tls(&AUTH_METHODS[..3]),
            revocation_endpoint_auth_methods_supported: with_tls(AUTH_METHODS),
            mtls_endpoint: mtls.to_owned(),
            token_endpoint_auth_signing_alg_values_supported: strings(&["EdDSA", "ES256"]),
            scopes_supported: strings(signin::OIDC_SCOPES),
            response_types_supported: strings(&["code"]),
            access_token_signing_alg_values_supported: strings(&["EdDSA", "ES256"]),
            token_types_supported: strings(&[token_type::JWT, token_type::BISCUIT]),
            authorization_endpoint: format!("{base}/oauth2/authorize"),
            userinfo_endpoint: format!("{base}/oauth2/userinfo"),
            end_session_endpoint: format!("{base}/oauth2/logout"),
            code_challenge_methods_supported: strings(&["S256"]),
            id_token_signing_alg_values_supported: vec![
                self.keys.state().jwt.alg().name().to_owned(),
            ],
        }
    }

    /// Removes records whose purpose has passed: used or expired refresh tokens, revoked access
    /// tokens that have expired anyway, ended grants. Returns how many were removed.
    pub async fn prune_expired(&self) -> Result<usize> {
        let now = self.now();
        let margin = self.config.leeway;
        let mut removed = 0;
        removed += self
            .prune::<records::RefreshTokenRecord>(b"", |r| r.expires_at + margin < now)
            .await?;
        removed += self
            .prune::<records::GrantRecord>(b"", |g| g.expires_at + margin < now)
            .await?;
        // Sign-in: sessions past their end, and the marks of redeemed codes past theirs (a
        // code's lifetime after the code's own end, so a replay still revokes what it issued).
        removed += self.prune_sessions(now, margin).await?;
        removed += self
            .prune::<records::SessionIndexRecord>(b"v/", |i| i.expires_at + margin < now)
            .await?;
        removed += self.prune_session_grants(now, margin).await?;
        removed += self
            .prune::<records::AuthCodeRecord>(b"c/", |c| c.expires_at + margin < now)
            .await?;
        removed += self
            .prune::<records::PushedRequestRecord>(b"p/", |p| p.expires_at + margin < now)
            .await?;
        // Spent client assertions' `jti`s, once the assertions could no longer be presented.
        removed += self
            .prune::<records::SpentAssertionRecord>(b"j/", |j| j.expires_at + margin < now)
            .await?;
        removed += self.prune_devices(now, margin).await?;
        removed += self.prune_revocations(now, margin).await?;
        if removed > 0 {
            self.store.durable().await?;
        }
        self.keys.refresh(now).await?;
        self.reload_revoked_key_ids().await?;
        Ok(removed)
    }

    /// Picks up what other replicas sharing the store changed that this one keeps in memory:
    /// signing keys (a rotation) and revoked key ids. Cheap when nothing changed.
    pub async fn refresh_shared_state(&self) -> Result<()> {
        if self.keys.refresh_if_changed(self.now()).await? {
            tracing::info!("signing keys changed in the store; reloaded");
        }
        self.reload_revoked_key_ids().await
    }

    /// Commits `batch` to `tree` with the audit record `intent` in it: `true` once both are
    /// durable and the record is on its way into the chain; `false` (nothing written) when an
    /// expectation failed.
    pub(crate) async fn commit_audited(
        &self,
        tree: writ_store::Tree,
        intent: writ_audit::Intent,
        batch: Batch,
    ) -> Result<bool> {
        if !self.store.commit(tree, intent.attach(batch)).await? {
            return Ok(false);
        }
        self.audit.written(intent);
        self.store.durable().await?;
        Ok(true)
    }

    /// Read-modify-write of one record, with a compare-and-swap retried on contention, durable
    /// on success. `change` sees the current record (`None` if absent) and returns the new one,
    /// or `None` to write nothing.
    /// Changes a record by compare-and-swap, with the audit record `describe` makes of the
    /// change (before, after) in the same batch.
    pub(crate) async fn update_record<R: writ_store::Record + Clone>(
        &self,
        key: &[u8],
        mut change: impl FnMut(Option<R>) -> Result<Option<R>>,
        describe: impl Fn(Option<&R>, &R) -> Event,
    ) -> Result<Option<R>> {
        for _ in 0..8 {
            let old = self.store.get(R::TREE, key).await?;
            let current = old.as_deref().map(writ_store::decode::<R>).transpose()?;
            let Some(new) = change(current.clone())? else {
                return Ok(None);
            };
            let intent = self.audit.intent(describe(current.as_ref(), &new));
            let batch = Batch::new().expect(key, old).put(key, encode(&new));
            if self.store.commit(R::TREE, intent.attach(batch)).await? {
                self.audit.written(intent);
                self.store.durable().await?;
                return Ok(Some(new));
            }
        }
        Err(Error::Conflict("the record changed concurrently; retry"))
    }

    /// Removes the records of `R` under `prefix` that `expired` says have.
    async fn prune<R: writ_store::Record>(
        &self,
        prefix: &[u8],
        expired: impl Fn(&R) -> bool,
    ) -> Result<usize> {
        let mut removed = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan_records::<R>(prefix, after.as_deref(), 1000)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, rec) in &page {
                if expired(rec) {
                    self.store.remove(R::TREE, key).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// The audit record of a refusal of `kind`: the RFC error code as its reason, the description
/// (never a secret) as a detail; the caller adds who and what.
pub(crate) fn refusal_event(kind: &'static str, e: &Error) -> Event {
    Event::new(kind, Outcome::Refused)
        .reason(e.oauth_code())
        .detail("description", e.description())
}

/// Checks an identifier: 1..=MAX_ID_LEN printable ASCII without spaces.
pub(crate) fn valid_id(s: &str) -> bool {
    printable_within(s, MAX_ID_LEN)
}

/// 1 to `max` bytes of printable ASCII without spaces: what may go into tokens, keys, logs and
/// audit records as an identifier.
pub(crate) fn printable_within(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}
