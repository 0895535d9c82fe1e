//! Test support: start the real Writ services on loopback ports, and talk to them over gRPC and
//! HTTP exactly as clients do.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

pub mod browser;
pub mod debian;
pub mod http_client;
pub mod nginx;
pub mod private_postgres;
pub mod sts;
pub mod webdriver;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use writ::platform::{AuthzSettings, Platform, PlatformConfig, RevocationSettings, TlsMode};
use writ_client::StaticBearer;
use writ_oauth::{AuthorizationServer, Config};
use writ_proto::admin::admin_service_client::AdminServiceClient;
use writ_proto::admin::{self as pb_admin};
use writ_proto::authz;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::revocation::revocation_service_client::RevocationServiceClient;
use writ_revocation_client::{RevocationSet, TokenFacts, WatchConfig, Watcher};
use writ_store::{SledStore, Store, Tree};
use writ_token::{ManualClock, RevocationKind};

/// How a test server differs from the default (TLS on, system clock, a fresh data directory).
pub struct Options {
    pub tls: bool,
    /// Controls time for the engine; `None` uses the system clock.
    pub clock: Option<ManualClock>,
    /// Reuse a data directory (restart); `None` creates a fresh one.
    pub data_dir: Option<tempfile::TempDir>,
    pub config: Box<dyn Fn(&mut Config) + Send>,
    pub revocation: writ_revocation::Config,
    /// Sizes and bounds of the revocation log (e.g. a small retention, to force snapshots).
    pub log: writ_revocation_log::LogConfig,
    /// The CA trusted for clients' `jwks_uri` (`--client-jwks-ca`).
    pub client_jwks_ca: Option<std::path::PathBuf>,
    /// The audit log's settings (`--audit-*`).
    pub audit: writ_audit::Settings,
}

/// The revocation producer tests publish as ([`TestServer::publish_token`]), registered for
/// the authorization server's own tokens (an empty namespace): its entries revoke tokens whose
/// `iss` is the test server's issuer.
pub const TEST_PRODUCER: &str = "writ-test-producer";

/// The revocation service's default configuration, with [`TEST_PRODUCER`] registered.
pub fn revocation_config() -> writ_revocation::Config {
    let mut config = writ_revocation::Config::default();
    config.producers.insert(TEST_PRODUCER.into(), String::new());
    config
}

impl Options {
    /// No refresh rotation grace period: a replay of a used refresh token is reuse however soon
    /// it comes (for tests of reuse detection that replay at once).
    pub fn without_refresh_grace() -> Options {
        Options {
            config: Box::new(|c| c.refresh_rotation_grace = 0),
            ..Options::default()
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: true,
            clock: None,
            data_dir: None,
            config: Box::new(|_| {}),
            revocation: revocation_config(),
            log: writ_revocation_log::LogConfig::default(),
            client_jwks_ca: None,
            audit: writ_audit::Settings::default(),
        }
    }
}

/// The platform in this process, on ephemeral loopback ports: the authorization server and
/// the revocation service, wired as `writ up` wires them (through `writ::platform`, from one
/// typed configuration); the STS is added with [`TestServer::start_sts`].
pub struct TestServer {
    pub engine: Arc<AuthorizationServer>,
    pub store: Arc<SledStore>,
    /// The revocation service, wired to the authorization server as `writ up` wires it.
    pub revocation_url: String,
    pub revocation_log: Arc<writ_revocation_log::RevocationLog>,
    pub grpc_url: String,
    pub http_url: String,
    /// The admin API (its own listener).
    pub admin_url: String,
    /// The gateway check: gRPC (Envoy's ext_authz) and HTTP (nginx's auth_request).
    pub gateway_grpc_url: String,
    pub gateway_http_url: String,
    /// The mTLS endpoint aliases (RFC 8705 section 5), with TLS on.
    pub mtls_url: Option<String>,
    pub issuer: String,
    pub ca_pem: Option<String>,
    pub admin_credential: String,
    pub clock: Option<ManualClock>,
    data_dir: tempfile::TempDir,
    pub(crate) platform: Platform,
    /// [`TEST_PRODUCER`]'s credentials, once registered.
    producer: tokio::sync::OnceCell<(String, String)>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> TestServer {
        let data_dir = opts
            .data_dir
            .unwrap_or_else(|| tempfile::tempdir().unwrap());
        let mut config = PlatformConfig::new(data_dir.path());
        config.audit = opts.audit;
        if !opts.tls {
            config.tls = TlsMode::Off;
        }
        if let Some(c) = &opts.clock {
            config.clock = Arc::new(c.clone());
        }
        let mut authz = AuthzSettings {
            client_jwks_ca: opts.client_jwks_ca,
            ..AuthzSettings::default()
        };
        (opts.config)(&mut authz.engine);
        config.authz = Some(authz);
        config.revocation = Some(RevocationSettings {
            service: opts.revocation,
            log: opts.log,
            ..RevocationSettings::default()
        });
        Self::start_platform(config, data_dir, opts.clock).await
    }

    async fn start_platform(
        config: PlatformConfig,
        data_dir: tempfile::TempDir,
        clock: Option<ManualClock>,
    ) -> TestServer {
        let platform = Platform::start(config).await.unwrap();
        let authz = platform.authz.as_ref().unwrap();
        let revocation = platform.revocation.as_ref().unwrap();
        // Written by the platform on the first start only, as `writ up` does.
        let admin_credential =
            std::fs::read_to_string(data_dir.path().join(writ::platform::ADMIN_TOKEN_FILE))
                .unwrap();
        TestServer {
            engine: authz.engine.clone(),
            store: authz.store.sled.clone().expect("the tests run on sled"),
            revocation_url: platform.url(revocation.grpc_addr),
            revocation_log: revocation.log.clone(),
            grpc_url: platform.url(authz.grpc_addr),
            http_url: platform.url(authz.http_addr),
            admin_url: platform.url(authz.admin_addr),
            gateway_grpc_url: platform.url(authz.gateway_addrs.unwrap().0),
            gateway_http_url: platform.url(authz.gateway_addrs.unwrap().1),
            mtls_url: authz.mtls_addr.map(|a| platform.url(a)),
            issuer: authz.issuer.clone(),
            ca_pem: platform.peer_ca.clone(),
            admin_credential,
            clock,
            data_dir,
            platform,
            producer: tokio::sync::OnceCell::new(),
        }
    }

    /// Stops the server and returns its data directory, for a restart.
    pub async fn stop(self) -> tempfile::TempDir {
        let TestServer {
            data_dir,
            engine,
            store,
            revocation_log,
            platform,
            ..
        } = self;
        tokio::time::timeout(Duration::from_secs(10), platform.stop())
            .await
            .expect("the servers stop within 10 s");
        drop(engine);
        // The stores must be released before they can be reopened.
        release(store).await;
        release(revocation_log).await;
        data_dir
    }

    /// Stops and starts again on the same data directory (new ports), with the same
    /// configuration and clock.
    pub async fn restart(self) -> TestServer {
        let clock = self.clock.clone();
        let mut config = self.platform.config.clone();
        config.sts = None;
        let producer = self.producer.get().cloned();
        let dir = self.stop().await;
        let server = TestServer::start_platform(config, dir, clock).await;
        if let Some(creds) = producer {
            let _ = server.producer.set(creds);
        }
        server
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub async fn channel(&self) -> Channel {
        connect(&self.grpc_url, self.ca_pem.as_deref()).await
    }

    pub async fn authz(&self) -> AuthorizationServiceClient<Channel> {
        AuthorizationServiceClient::new(self.channel().await)
    }

    /// The URL of the gRPC `Token` method, as a DPoP proof names it (`docs/dpop-grpc.md`).
    pub fn grpc_token_url(&self) -> String {
        format!("{}/writ.authz.v1.AuthorizationService/Token", self.grpc_url)
    }

    /// A gRPC token request with these `dpop` metadata values.
    pub async fn token_with_proofs(
        &self,
        request: authz::TokenRequest,
        proofs: &[&str],
    ) -> Result<authz::TokenResponse, Status> {
        let mut request = tonic::Request::new(request);
        for p in proofs {
            request.metadata_mut().append("dpop", p.parse().unwrap());
        }
        self.authz()
            .await
            .token(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn admin(&self) -> AdminServiceClient<InterceptedService<Channel, StaticBearer>> {
        AdminServiceClient::with_interceptor(
            self.admin_channel().await,
            bearer(&self.admin_credential),
        )
    }

    /// A channel to the admin API's own port.
    pub async fn admin_channel(&self) -> Channel {
        connect(&self.admin_url, self.ca_pem.as_deref()).await
    }

    /// Registers a client through the admin API; returns its id and secret.
    pub async fn create_client(&self, spec: pb_admin::Client) -> (String, String) {
        let r = self
            .admin()
            .await
            .create_client(pb_admin::CreateClientRequest { client: Some(spec) })
            .await
            .unwrap()
            .into_inner();
        (r.client.unwrap().client_id, r.client_secret)
    }

    /// A confidential client_credentials client whose tokens are Biscuits.
    pub async fn biscuit_client(
        &self,
        id: &str,
        scope: &str,
        audience: &[&str],
    ) -> (String, String) {
        self.create_client(pb_admin::Client {
            token_formats: vec![writ_proto::common::TokenFormat::Biscuit as i32],
            default_token_format: writ_proto::common::TokenFormat::Biscuit as i32,
            ..service_spec(id, scope, audience)
        })
        .await
    }

    /// One revocation through the admin API (every issuer), expiring at `expires_at`.
    pub async fn revoke_as_admin(&self, kind: RevocationKind, value: &str, expires_at: i64) {
        self.admin()
            .await
            .revoke(pb_admin::RevokeRequest {
                entries: vec![revocation_entry(kind, value, expires_at)],
            })
            .await
            .unwrap();
    }

    /// A confidential client_credentials client with the given scope and audiences.
    pub async fn service_client(
        &self,
        id: &str,
        scope: &str,
        audience: &[&str],
    ) -> (String, String) {
        self.create_client(service_spec(id, scope, audience)).await
    }

    /// A token request over gRPC.
    pub async fn token(&self, req: authz::TokenRequest) -> Result<authz::TokenResponse, Status> {
        self.authz().await.token(req).await.map(|r| r.into_inner())
    }

    /// A token request that must succeed.
    pub async fn issue(&self, req: authz::TokenRequest) -> authz::TokenResponse {
        self.token(req).await.unwrap()
    }

    /// A token request that must be refused with this gRPC code and OAuth error code.
    pub async fn assert_token_refused(
        &self,
        req: authz::TokenRequest,
        code: Code,
        oauth: &str,
    ) -> Status {
        assert_refused(self.token(req).await, code, oauth)
    }

    /// Runs `call` and asserts it wrote nothing (compared by [`TestServer::state`]) but the
    /// record of its refusal: the audit log gained no record of a change.
    pub async fn assert_unchanged<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let before = self.state();
        let seen = self.settled_audit_records().await.len();
        let out = call.await;
        assert_eq!(self.state(), before, "the call changed nothing");
        let records = self.settled_audit_records().await;
        let changes: Vec<_> = records[seen..]
            .iter()
            .filter(|r| r.outcome == "success" && !CHANGES_NOTHING.contains(&r.kind.as_str()))
            .collect();
        assert!(
            changes.is_empty(),
            "the call recorded a change: {changes:?}"
        );
        out
    }

    /// Every record of the audit log, in order (as chained so far).
    pub fn audit_records(&self) -> Vec<writ_audit::AuditRecord> {
        // Read from the segment files beside the store (while the server appends to them).
        let dir = writ_audit::files::dir_of(self.store.local_dir().unwrap());
        writ_audit::files::read_log(&dir)
            .unwrap()
            .into_iter()
            .map(|(_, v)| writ_store::decode(&v).unwrap())
            .collect()
    }

    /// Every record of the audit log once the intents written so far are chained (they are
    /// durable at once, chained just after).
    pub async fn settled_audit_records(&self) -> Vec<writ_audit::AuditRecord> {
        eventually(
            Duration::from_secs(10),
            "the audit intents are chained",
            || {
                self.store
                    .scan(Tree::Audit, writ_audit::record::INTENT_PREFIX, None, 1)
                    .unwrap()
                    .is_empty()
            },
        )
        .await;
        self.audit_records()
    }

    /// The audit records chained so far whose event is `kind`.
    pub fn audit_records_of(&self, kind: &str) -> Vec<writ_audit::AuditRecord> {
        self.audit_records()
            .into_iter()
            .filter(|r| r.kind == kind)
            .collect()
    }

    /// A token request that must be refused (as [`TestServer::assert_token_refused`]) and
    /// change nothing.
    pub async fn assert_token_refused_unchanged(
        &self,
        req: authz::TokenRequest,
        code: Code,
        oauth: &str,
    ) -> Status {
        self.assert_unchanged(self.assert_token_refused(req, code, oauth))
            .await
    }

    /// A client_credentials access token.
    pub async fn cc_token(&self, id: &str, secret: &str) -> String {
        self.authz()
            .await
            .token(cc(id, secret))
            .await
            .unwrap()
            .into_inner()
            .access_token
    }

    /// The authorization server's metadata document over HTTP
    /// (`/.well-known/oauth-authorization-server`, RFC 8414).
    pub async fn http_metadata(&self) -> serde_json::Value {
        self.http()
            .get("/.well-known/oauth-authorization-server")
            .await
            .json()
    }

    /// The authorization server's metadata (RFC 8414) over gRPC.
    pub async fn metadata(&self) -> authz::GetServerMetadataResponse {
        self.authz()
            .await
            .get_server_metadata(authz::GetServerMetadataRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// RFC 7662 introspection as the client `id` (its secret `secret`).
    /// The authorization server's JWKS over gRPC.
    pub async fn jwks(&self) -> authz::GetJwksResponse {
        self.authz()
            .await
            .get_jwks(authz::GetJwksRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// A resource owner (the password grant, signing in); returns its subject.
    pub async fn create_user(&self, username: &str, password: &str, scope: &str) -> String {
        self.admin()
            .await
            .create_user(pb_admin::CreateUserRequest {
                username: username.into(),
                password: password.into(),
                scope: scope.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
            .subject
    }

    /// Rotates the signing key of `purpose` to a new `alg` key; returns it.
    pub async fn rotate_key(
        &self,
        purpose: pb_admin::KeyPurpose,
        alg: &str,
    ) -> pb_admin::SigningKey {
        self.admin()
            .await
            .rotate_signing_key(pb_admin::RotateSigningKeyRequest {
                purpose: purpose as i32,
                alg: alg.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .key
            .unwrap()
    }

    /// RFC 7009 revocation of `token` by its client; must succeed.
    pub async fn revoke_token(&self, token: &str, id: &str, secret: &str) {
        self.authz()
            .await
            .revoke(authz::RevokeRequest {
                token: token.into(),
                client_id: id.into(),
                client_secret: secret.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    /// Asserts that introspection reports every one of `tokens` inactive.
    pub async fn assert_inactive(&self, tokens: &[&str], id: &str, secret: &str) {
        for t in tokens {
            assert!(
                !self.introspect(t, id, secret).await.active,
                "{t} is inactive"
            );
        }
    }

    pub async fn introspect(
        &self,
        token: &str,
        id: &str,
        secret: &str,
    ) -> authz::IntrospectResponse {
        self.authz()
            .await
            .introspect(authz::IntrospectRequest {
                token: token.into(),
                client_id: id.into(),
                client_secret: secret.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Disables (or enables) a client through the admin API.
    pub async fn set_disabled(&self, client_id: &str, disabled: bool) {
        self.admin()
            .await
            .update_client(pb_admin::UpdateClientRequest {
                client: Some(pb_admin::Client {
                    client_id: client_id.into(),
                    disabled,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["disabled".into()],
                }),
            })
            .await
            .unwrap();
    }

    /// Every record in every tree of the authorization server: compare before and after to
    /// prove nothing was written. The revocation outbox (`o/`) is left out: the publisher drains
    /// it in the background, whatever the request under test did.
    pub fn state(&self) -> BTreeMap<(&'static str, Vec<u8>), Vec<u8>> {
        let mut all = BTreeMap::new();
        // The audit log records decisions, refusals included: see `assert_unchanged`.
        for tree in Tree::ALL.into_iter().filter(|t| *t != Tree::Audit) {
            for (k, v) in self.store.scan(tree, b"", None, usize::MAX).unwrap() {
                if tree == Tree::Revocations && k.starts_with(b"o/") {
                    continue;
                }
                all.insert((tree.name(), k), v);
            }
        }
        all
    }

    pub fn http(&self) -> http_client::HttpClient {
        http_client::HttpClient::new(&self.http_url, self.ca_pem.as_deref())
    }

    /// A channel to the revocation service.
    pub async fn revocation_channel(&self) -> Channel {
        connect(&self.revocation_url, self.ca_pem.as_deref()).await
    }

    /// A RevocationService client presenting `token` as its bearer token on every call.
    pub async fn revocation(&self, token: &str) -> RevocationClient {
        RevocationServiceClient::with_interceptor(self.revocation_channel().await, bearer(token))
    }

    /// Registers a new client allowed `scope` at the revocation service and returns a
    /// client_credentials token for it (audience `writ-revocation`).
    pub async fn revocation_token(&self, scope: &str) -> String {
        static CLIENTS: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "revocation-client-{}",
            CLIENTS.fetch_add(1, Ordering::Relaxed)
        );
        let (id, secret) = self
            .service_client(&id, scope, &[writ_vocabulary::names::REVOCATION_AUDIENCE])
            .await;
        self.revocation_token_of(&id, &secret).await
    }

    /// A client_credentials token of an existing client for the revocation service (audience
    /// `writ-revocation`, every scope the client has).
    pub async fn revocation_token_of(&self, id: &str, secret: &str) -> String {
        let mut req = cc(id, secret);
        req.audience = vec![writ_vocabulary::names::REVOCATION_AUDIENCE.into()];
        self.issue(req).await.access_token
    }

    /// A token that may watch the feed and read its status.
    pub async fn watch_token(&self) -> String {
        self.revocation_token(writ_vocabulary::names::REVOCATION_WATCH_SCOPE)
            .await
    }

    /// A token of [`TEST_PRODUCER`], which may publish revocations of this server's tokens.
    pub async fn publish_token(&self) -> String {
        let (id, secret) = self
            .producer
            .get_or_init(|| async {
                self.service_client(
                    TEST_PRODUCER,
                    writ_vocabulary::names::REVOCATION_PUBLISH_SCOPE,
                    &[writ_vocabulary::names::REVOCATION_AUDIENCE],
                )
                .await
            })
            .await;
        let mut req = cc(id, secret);
        req.scope = writ_vocabulary::names::REVOCATION_PUBLISH_SCOPE.into();
        req.audience = vec![writ_vocabulary::names::REVOCATION_AUDIENCE.into()];
        self.issue(req).await.access_token
    }

    /// A background watcher keeping `set` current from this server's feed.
    pub async fn watcher(&self, set: Arc<RevocationSet>) -> Watcher {
        let token = self.watch_token().await;
        let channel = writ_server::endpoint(&self.revocation_url, self.ca_pem.as_deref())
            .unwrap()
            .connect_lazy();
        Watcher::spawn(
            channel,
            Arc::new(bearer(&token)),
            set,
            WatchConfig {
                backoff_min: Duration::from_millis(20),
                backoff_max: Duration::from_millis(200),
                ..WatchConfig::default()
            },
        )
    }
}

/// A RevocationService client that presents a bearer token.
pub type RevocationClient = RevocationServiceClient<InterceptedService<Channel, StaticBearer>>;

/// `authorization: Bearer <token>` on every call (and the token as a watcher's bearer source).
pub fn bearer(token: &str) -> StaticBearer {
    StaticBearer::new(token).unwrap()
}

/// The `jti` a JWT claims (read unverified: for tests naming a token they were just given).
pub fn jti_of(jwt: &str) -> String {
    writ_token::decode_unverified(jwt).unwrap().claims.unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A confidential client_credentials client's registration.
pub fn service_spec(id: &str, scope: &str, audience: &[&str]) -> pb_admin::Client {
    pb_admin::Client {
        client_id: id.into(),
        client_type: pb_admin::ClientType::Confidential as i32,
        grant_types: vec!["client_credentials".into()],
        scope: scope.into(),
        audience: audience.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

/// A revocation entry for every issuer (reason "test", cut-off now).
pub fn revocation_entry(
    kind: RevocationKind,
    value: &str,
    expires_at: i64,
) -> writ_proto::revocation::RevocationEntry {
    writ_proto::revocation::RevocationEntry {
        kind: kind as i32,
        value: value.into(),
        expires_at,
        reason: "test".into(),
        not_before: 0,
        issuer: String::new(),
    }
}

/// Whether `set` revokes exactly what an entry of `kind` for `value` does to tokens of `iss`: the
/// token, grant, key or Biscuit block it names, and for subject and client entries, tokens
/// issued at or before `not_before` but not a second later.
pub fn revokes_exactly(
    set: &RevocationSet,
    kind: RevocationKind,
    value: &str,
    not_before: i64,
    iss: &str,
) -> bool {
    let ids = [value.to_owned()];
    let facts = |iat: i64| {
        let mut f = TokenFacts {
            iss,
            jti: "",
            gid: None,
            sub: "",
            client_id: "",
            iat,
            key_id: "",
            biscuit_revocation_ids: &[],
        };
        match kind {
            RevocationKind::TokenId => f.jti = value,
            RevocationKind::GrantId => f.gid = Some(value),
            RevocationKind::Subject => f.sub = value,
            RevocationKind::Client => f.client_id = value,
            RevocationKind::KeyId => f.key_id = value,
            RevocationKind::BiscuitRevocationId => f.biscuit_revocation_ids = &ids,
        }
        f
    };
    if kind.uses_not_before() {
        set.check(&facts(not_before)) == Some(kind) && set.check(&facts(not_before + 1)).is_none()
    } else {
        set.check(&facts(0)) == Some(kind)
    }
}

/// Polls `done` every 10 ms until it holds; fails the test with `what` after `timeout`.
pub async fn eventually(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The revocation service's error reason (`google.rpc.ErrorInfo.reason`, domain
/// `revocation.writ.dev`); empty if the status carries none.
pub fn revocation_reason(status: &Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .map(|i| {
            assert_eq!(i.domain, writ_revocation::ERROR_DOMAIN, "{status:?}");
            i.reason
        })
        .unwrap_or_default()
}

/// Asserts a revocation service call failed with this gRPC code and reason.
#[track_caller]
pub fn assert_revocation_refused<T: std::fmt::Debug>(
    r: Result<T, Status>,
    code: Code,
    why: &str,
) -> Status {
    let status = r.expect_err("the call should have been refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(revocation_reason(&status), why, "{status:?}");
    status
}

/// Waits (at most 5 s) until `arc` is the last handle, then drops it: tasks that held it (a
/// stream ending, a publisher) let go shortly after shutdown.
async fn release<T>(mut arc: Arc<T>) {
    for _ in 0..250 {
        match Arc::try_unwrap(arc) {
            Ok(v) => {
                drop(v);
                return;
            }
            Err(a) => {
                arc = a;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    panic!("a store is still in use 5 s after shutdown");
}

pub async fn connect(url: &str, ca_pem: Option<&str>) -> Channel {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    if let Some(ca) = ca_pem {
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
            .unwrap();
    }
    endpoint.connect().await.unwrap()
}

/// A client_credentials token request.
pub fn cc(client_id: &str, secret: &str) -> authz::TokenRequest {
    authz::TokenRequest {
        grant_type: "client_credentials".into(),
        client_id: client_id.into(),
        client_secret: secret.into(),
        ..Default::default()
    }
}

/// The `kid` in a JWT's header (unverified).
pub fn kid_of(jwt: &str) -> String {
    writ_token::decode_unverified(jwt).unwrap().header.unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A `refresh_token` grant request.
pub fn refresh_request(client_id: &str, secret: &str, refresh_token: &str) -> authz::TokenRequest {
    authz::TokenRequest {
        grant_type: "refresh_token".into(),
        client_id: client_id.into(),
        client_secret: secret.into(),
        refresh_token: refresh_token.into(),
        ..Default::default()
    }
}

/// The OAuth error code of a status (`google.rpc.ErrorInfo.reason`).
pub fn reason(status: &Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .map(|i| {
            assert_eq!(i.domain, "oauth2.writ.dev");
            i.reason
        })
        .unwrap_or_default()
}

/// Asserts a call failed with this gRPC code and OAuth error code.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, oauth: &str) -> Status {
    let status = r.expect_err("the call should have been refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), oauth, "{status:?}");
    status
}

/// Asserts a call was refused by a guard (a protected service's, or the revocation service's
/// own) with this gRPC code and `ErrorInfo.reason`; returns the status.
#[track_caller]
pub fn assert_guard_refused<T: std::fmt::Debug>(
    r: Result<T, Status>,
    code: Code,
    reason: &str,
) -> Status {
    use tonic_types::StatusExt;
    let status = r.expect_err("the call should have been refused");
    assert_eq!(status.code(), code, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo details");
    assert_eq!(info.domain, writ_guard::ERROR_DOMAIN, "{status:?}");
    assert_eq!(info.reason, reason, "{status:?}");
    status
}

/// A free loopback port, for a process started later (a revocation replica's port must be
/// known before the authorization servers that publish to it start). Chosen below the kernel's
/// ephemeral range (32768–60999 on Linux): a port from that range, bound and released, can be
/// taken by any outbound connection (to PostgreSQL, between replicas) before its process binds
/// it. A process-wide counter keeps this test binary's choices distinct; the bind check skips
/// ports something else holds.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Spread runs of different test processes apart; 20000..32000 is outside the ephemeral range.
    let start = 20_000 + (std::process::id() % 400) as u16 * 30;
    for _ in 0..12_000 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 12_000;
        let port = 20_000 + (start - 20_000 + offset) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000..32000");
}

/// The workspace root (for the interop scripts), from the directory cargo runs the tests in,
/// read at run time: a binary built in another checkout (a shared target directory) still reads
/// this checkout's files.
pub fn workspace_root() -> PathBuf {
    let tests = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    tests.parent().unwrap().to_path_buf()
}

/// Installs a test log subscriber once (RUST_LOG controls it; quiet by default).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
}

/// A plain-HTTP GET (an operations endpoint: `/readyz`, `/metrics`), bounded to 5 s: the status
/// and the body.
pub fn http_get(url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").split('/').next().unwrap();
    let path = &url[url.find(addr).unwrap() + addr.len()..];
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A child process that ran to completion, and everything it printed.
pub struct Finished {
    pub command: String,
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The exit code (`None` if a signal ended the process).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts the process exited 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.status.success(), "{self}");
        self
    }

    /// Standard output parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("standard output is not JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Waits for a child to exit, polling, for at most `timeout`. `None`: still running.
pub fn wait_bounded(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` to completion, writing `stdin` (if any) to it and capturing both outputs. A process
/// still running after `timeout` is killed and the test fails with what it printed so far.
/// Blocking: from an async test whose server runs in-process, call it via `spawn_blocking`.
pub fn run_bounded(
    cmd: &mut std::process::Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> Finished {
    use std::io::{Read, Write};
    use std::process::Stdio;

    let command = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
    // Drain both pipes on their own threads, so a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
        rx
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // A child that exits without reading its input is not an error here.
        let _ = pipe.write_all(input.as_bytes());
    }
    let status = wait_bounded(&mut child, timeout);
    let timed_out = status.is_none();
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        child.wait().unwrap()
    });
    // A grandchild may still hold a pipe open: never wait for the readers without bound.
    let collect = |rx: std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| "<output not closed>".to_owned())
    };
    let finished = Finished {
        command,
        status,
        stdout: collect(out),
        stderr: collect(err),
    };
    assert!(!timed_out, "killed after {timeout:?}: {finished}");
    finished
}

/// Successful decisions that change nothing here (an answer, not a write), and the revocation
/// service recording what the publisher relays of earlier revocations in the background.
const CHANGES_NOTHING: &[&str] = &[
    "token_introspected",
    "revocation_ignored",
    "admin_read",
    "watch_started",
    "revocation_recorded",
];
