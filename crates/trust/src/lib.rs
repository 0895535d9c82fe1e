//! Whom a Writ service trusts, and how it checks callers.
//!
//! A [`KeySource`] yields the keys of a trusted issuer: in-process ([`LocalKeys`], when the
//! issuer runs in the same process) or fetched ([`RemoteKeys`]: over gRPC from a Writ issuer, or
//! over HTTPS from an external issuer's JWKS URL ([`HttpsJwks`]); at start, then in the
//! background, and again — at most every few seconds — when a token names a key not yet known).
//! Keys are never fetched from anything a token names. [`Authenticator`] verifies the bearer
//! token of a gRPC call against those keys and checks its scope.

mod jwks_url;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::authz::{GetJwksRequest, GetJwksResponse, GetServerMetadataRequest};
use writ_proto::sts::GetJwksRequest as StsJwksRequest;
use writ_proto::sts::security_token_service_client::SecurityTokenServiceClient;
use writ_token::{
    BiscuitPublicKey, BiscuitRequest, Jwk, KeySet, SharedClock, TokenError, TokenFormat,
    TokenVerifier, VerificationKey, VerifiedToken, VerifierConfig,
};

/// `google.rpc.ErrorInfo.domain` of authentication failures; reasons are RFC 6750 codes.
pub const ERROR_DOMAIN: &str = "oauth2.writ.dev";

pub use jwks_url::{FETCH_TIMEOUT, HttpsJwks, JwksUrlError, MAX_JWKS_BYTES};

pub use writ_token::{BoxFuture, KeySource};

/// Keys of an issuer running in this process.
pub struct LocalKeys<F>(pub F);

impl<F> std::fmt::Debug for LocalKeys<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKeys")
    }
}

impl<F: Fn() -> Arc<KeySet> + Send + Sync> KeySource for LocalKeys<F> {
    fn keys(&self) -> Arc<KeySet> {
        (self.0)()
    }
}

/// The keys an authorization server (or STS) publishes through `GetJwks`, as a key set.
pub fn key_set(jwks: &GetJwksResponse) -> Result<KeySet, TokenError> {
    let mut keys = KeySet::new();
    for k in &jwks.keys {
        keys.insert_jwt(VerificationKey::from_jwk(&Jwk {
            kty: k.kty.clone(),
            crv: k.crv.clone(),
            x: k.x.clone(),
            y: (!k.y.is_empty()).then(|| k.y.clone()),
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            key_use: k.r#use.clone(),
        })?);
    }
    for k in &jwks.biscuit_root_keys {
        keys.insert_biscuit(BiscuitPublicKey::from_hex(k.root_key_id, &k.public_key)?);
    }
    Ok(keys)
}

/// Where an issuer publishes its keys: the authorization server's or the STS's `GetJwks`, or an
/// external issuer's JWKS URL.
#[derive(Debug, Clone)]
enum JwksEndpoint {
    Authz(AuthorizationServiceClient<Channel>),
    Sts(SecurityTokenServiceClient<Channel>),
    Https(HttpsJwks),
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Grpc(#[from] Status),
    #[error(transparent)]
    Https(#[from] JwksUrlError),
}

impl From<FetchError> for Status {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Grpc(s) => s,
            FetchError::Https(e) => Status::unavailable(e.to_string()),
        }
    }
}

impl JwksEndpoint {
    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let jwks = match self.clone() {
            JwksEndpoint::Https(source) => return Ok(source.fetch().await?),
            JwksEndpoint::Authz(mut c) => c.get_jwks(GetJwksRequest {}).await?.into_inner(),
            JwksEndpoint::Sts(mut c) => {
                let r = c.get_jwks(StsJwksRequest {}).await?.into_inner();
                GetJwksResponse {
                    keys: r.keys,
                    biscuit_root_keys: r.biscuit_root_keys,
                }
            }
        };
        key_set(&jwks).map_err(|e| {
            Status::unavailable(format!("the issuer published an unusable key: {e}")).into()
        })
    }
}

/// Keys fetched from an issuer's `GetJwks` over gRPC, or from an external issuer's JWKS URL.
#[derive(Debug)]
pub struct RemoteKeys {
    issuer: String,
    keys: Mutex<Arc<KeySet>>,
    endpoint: JwksEndpoint,
    last_fetch: Mutex<Instant>,
    min_refresh: Duration,
    /// Held while fetching: one fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
    /// Itself, for the background fetches `request_refresh` starts.
    me: std::sync::Weak<RemoteKeys>,
}

impl RemoteKeys {
    /// The authorization server at `channel`: fetches its issuer name and keys now (failing if
    /// it cannot), then refreshes the keys every `every` in the background; an unknown key id
    /// fetches again at most every `min_refresh`.
    pub async fn connect(
        channel: Channel,
        every: Duration,
        min_refresh: Duration,
    ) -> Result<Arc<Self>, Status> {
        let mut client = AuthorizationServiceClient::new(channel);
        let issuer = client
            .get_server_metadata(GetServerMetadataRequest {})
            .await?
            .into_inner()
            .issuer;
        Self::start(issuer, JwksEndpoint::Authz(client), every, min_refresh).await
    }

    /// The STS at `channel`, whose tokens carry `iss = issuer` (configured: the STS's gRPC
    /// contract has no metadata call). Otherwise as [`RemoteKeys::connect`].
    pub async fn connect_sts(
        channel: Channel,
        issuer: String,
        every: Duration,
        min_refresh: Duration,
    ) -> Result<Arc<Self>, Status> {
        let client = SecurityTokenServiceClient::new(channel);
        Self::start(issuer, JwksEndpoint::Sts(client), every, min_refresh).await
    }

    /// An external issuer (`iss = issuer`, configured) publishing its JWK Set at `source`'s URL:
    /// fetched now (failing if it cannot be, or is not a usable JWK Set), then as
    /// [`RemoteKeys::connect`]. Only JWT keys: an external issuer's Biscuits are not trusted.
    pub async fn fetch_jwks_url(
        issuer: String,
        source: HttpsJwks,
        every: Duration,
        min_refresh: Duration,
    ) -> Result<Arc<Self>, JwksUrlError> {
        let keys = source.fetch().await?;
        Ok(Self::spawn(
            issuer,
            JwksEndpoint::Https(source),
            keys,
            every,
            min_refresh,
        ))
    }

    async fn start(
        issuer: String,
        endpoint: JwksEndpoint,
        every: Duration,
        min_refresh: Duration,
    ) -> Result<Arc<Self>, Status> {
        let keys = endpoint.fetch().await?;
        Ok(Self::spawn(issuer, endpoint, keys, every, min_refresh))
    }

    /// Starts the background refresh of keys just fetched from `endpoint`.
    fn spawn(
        issuer: String,
        endpoint: JwksEndpoint,
        keys: KeySet,
        every: Duration,
        min_refresh: Duration,
    ) -> Arc<Self> {
        let remote = Arc::new_cyclic(|me| RemoteKeys {
            me: me.clone(),
            issuer,
            keys: Mutex::new(Arc::new(keys)),
            endpoint,
            last_fetch: Mutex::new(Instant::now()),
            min_refresh,
            fetching: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(1),
        });
        let weak = Arc::downgrade(&remote);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(remote) = weak.upgrade() else { break };
                let _one = remote.fetching.lock().await;
                remote.refresh().await;
            }
        });
        remote
    }

    /// The issuer's `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How many times the keys were fetched, the first included (a metric, and how tests see
    /// that unknown key ids do not cause a fetch per request).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fetches now (the caller holds `fetching`).
    async fn refresh(&self) {
        *self.last_fetch.lock() = Instant::now();
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.endpoint.fetch().await {
            Ok(keys) => *self.keys.lock() = Arc::new(keys),
            // Keep the keys we have: failing to refresh must not distrust everything.
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "could not refresh the issuer's keys")
            }
        }
    }
}

impl KeySource for RemoteKeys {
    fn keys(&self) -> Arc<KeySet> {
        self.keys.lock().clone()
    }

    fn request_refresh(&self) {
        let mut last = self.last_fetch.lock();
        if last.elapsed() < self.min_refresh {
            return;
        }
        *last = Instant::now();
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            let _one = me.fetching.lock().await;
            me.refresh().await
        });
    }

    fn refresh_now<'a>(&'a self, seen: &'a Arc<KeySet>) -> BoxFuture<'a, Arc<KeySet>> {
        Box::pin(async move {
            let _one = self.fetching.lock().await;
            let current = self.keys();
            if !Arc::ptr_eq(&current, seen) {
                return current;
            }
            let since = self.last_fetch.lock().elapsed();
            if since < self.min_refresh {
                tokio::time::sleep(self.min_refresh - since).await;
            }
            self.refresh().await;
            self.keys()
        })
    }
}

/// Verifies bearer tokens from one issuer for one audience.
#[derive(Debug)]
pub struct Authenticator {
    verifier: TokenVerifier,
    source: Arc<dyn KeySource>,
}

impl Authenticator {
    pub fn new(
        issuer: String,
        audience: String,
        source: Arc<dyn KeySource>,
        clock: SharedClock,
    ) -> Self {
        let verifier = TokenVerifier::new(
            VerifierConfig::new(vec![issuer], Some(audience)),
            KeySet::new(),
            clock,
        );
        verifier.set_shared_keys(source.keys());
        Authenticator { verifier, source }
    }

    /// Verifies a token against the issuer's current keys.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let keys = self.source.keys();
        if !Arc::ptr_eq(&keys, &self.verifier.keys()) {
            self.verifier.set_shared_keys(keys);
        }
        let result = self.verifier.verify(token);
        if matches!(result, Err(TokenError::UnknownKey)) {
            self.source.request_refresh();
        }
        result
    }

    /// Authenticates a call (`authorization: Bearer <token>`) and requires one of `scopes`.
    pub fn authorize(
        &self,
        metadata: &MetadataMap,
        scopes: &[&str],
    ) -> Result<VerifiedToken, Status> {
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| invalid_token("a bearer token is required"))?;
        let verified = self.verify(token.trim()).map_err(|e| {
            tracing::warn!(target: "writ::audit", event = "caller_rejected", reason = e.reason());
            invalid_token("the bearer token is not valid here")
        })?;
        let granted = verified
            .claims
            .scope
            .split(' ')
            .any(|s| scopes.contains(&s));
        if !granted {
            tracing::warn!(target: "writ::audit", event = "caller_denied", client_id = %verified.claims.client_id, needed = ?scopes);
            return Err(Status::with_error_details(
                Code::PermissionDenied,
                "the token lacks the scope this call needs",
                ErrorDetails::with_error_info(
                    "insufficient_scope",
                    ERROR_DOMAIN,
                    std::collections::HashMap::new(),
                ),
            ));
        }
        Ok(verified)
    }
}

/// UNAUTHENTICATED with the RFC 6750 `invalid_token` reason: how every refused bearer token is
/// answered, whatever the cause (the cause goes to the audit log, not to the caller).
pub fn invalid_token(message: &str) -> Status {
    Status::with_error_details(
        Code::Unauthenticated,
        message,
        ErrorDetails::with_error_info(
            "invalid_token",
            ERROR_DOMAIN,
            std::collections::HashMap::new(),
        ),
    )
}

/// One issuer a service trusts: its `iss` and where its keys come from.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    pub issuer: String,
    pub keys: Arc<dyn KeySource>,
}

/// Verifies tokens from several issuers (the authorization server and the STS) for one
/// audience. Each issuer has its own verifier over its own keys, so a key is only ever trusted
/// for the issuer that published it: a token claiming one issuer but signed with another's key
/// is refused.
#[derive(Debug)]
pub struct Issuers {
    verifiers: Vec<(TokenVerifier, Arc<dyn KeySource>)>,
}

impl Issuers {
    /// `config` is applied to every issuer's verifier (its `issuers` replaced by that issuer).
    pub fn new(trusted: Vec<TrustedIssuer>, config: VerifierConfig, clock: SharedClock) -> Self {
        let verifiers = trusted
            .into_iter()
            .map(|t| {
                let mut c = config.clone();
                c.issuers = vec![t.issuer];
                let v = TokenVerifier::new(c, KeySet::new(), clock.clone());
                v.set_shared_keys(t.keys.keys());
                (v, t.keys)
            })
            .collect();
        Issuers { verifiers }
    }

    /// Verifies a JWT, or a Biscuit without a request (`request` `None`) or for one.
    /// [`TokenError::UnknownKey`] when no issuer knows the key (see [`Issuers::verify_refreshing`]).
    pub fn verify(
        &self,
        token: &str,
        request: Option<&BiscuitRequest>,
    ) -> Result<VerifiedToken, TokenError> {
        let biscuit = TokenFormat::detect(token) == TokenFormat::Biscuit;
        for (verifier, source) in &self.verifiers {
            let keys = source.keys();
            if !Arc::ptr_eq(&keys, &verifier.keys()) {
                verifier.set_shared_keys(keys);
            }
            let result = match (biscuit, request) {
                (true, Some(r)) => verifier.verify_biscuit_for(token, r),
                (true, None) => verifier.verify_biscuit(token),
                (false, _) => verifier.verify_jwt(token),
            };
            // Not this issuer's key: ask the next one. Anything else is the answer.
            if !matches!(result, Err(TokenError::UnknownKey)) {
                return result;
            }
        }
        Err(TokenError::UnknownKey)
    }

    /// [`Issuers::verify`]; a key no issuer knows makes every issuer fetch its keys again (one
    /// fetch at a time, rate-limited, see [`KeySource::refresh_now`]) and the token is verified
    /// once more. A rotated-in key thus costs one fetch, not a refused request.
    pub async fn verify_refreshing(
        &self,
        token: &str,
        request: Option<&BiscuitRequest>,
    ) -> Result<VerifiedToken, TokenError> {
        match self.verify(token, request) {
            Err(TokenError::UnknownKey) => {
                for (verifier, source) in &self.verifiers {
                    let seen = verifier.keys();
                    let keys = source.refresh_now(&seen).await;
                    verifier.set_shared_keys(keys);
                }
                self.verify(token, request)
            }
            other => other,
        }
    }

    /// The issuers, in the order tried.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.verifiers
            .iter()
            .flat_map(|(v, _)| v.config().issuers.first().map(String::as_str))
    }
}

impl Issuers {
    /// Asks every issuer to fetch its keys in the background (rate-limited), without waiting.
    pub fn request_refresh(&self) {
        for (_, source) in &self.verifiers {
            source.request_refresh();
        }
    }
}
