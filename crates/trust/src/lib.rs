//! Whom a Writ service trusts, and how it checks callers.
//!
//! A [`KeySource`] yields the keys of a trusted issuer: in-process ([`LocalKeys`], when the
//! issuer runs in the same process) or fetched over gRPC ([`RemoteKeys`]: at start, then in the
//! background, and again — at most every few seconds — when a token names a key not yet known).
//! Keys are never fetched from anything a token names. [`Authenticator`] verifies the bearer
//! token of a gRPC call against those keys and checks its scope.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::authz::{GetJwksRequest, GetJwksResponse, GetServerMetadataRequest};
use writ_token::{
    BiscuitPublicKey, Jwk, KeySet, SharedClock, TokenError, TokenVerifier, VerificationKey,
    VerifiedToken, VerifierConfig,
};

/// `google.rpc.ErrorInfo.domain` of authentication failures; reasons are RFC 6750 codes.
pub const ERROR_DOMAIN: &str = "oauth2.writ.dev";

/// The keys of one trusted issuer.
pub trait KeySource: Send + Sync + std::fmt::Debug {
    /// The keys now. The same `Arc` until they change, so callers can tell cheaply.
    fn keys(&self) -> Arc<KeySet>;
    /// A token named a key not in [`KeySource::keys`]: fetch again if allowed. Never blocks.
    fn request_refresh(&self) {}
}

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

/// Keys fetched from an issuer's `GetJwks` over gRPC.
#[derive(Debug)]
pub struct RemoteKeys {
    issuer: String,
    keys: Mutex<Arc<KeySet>>,
    client: AuthorizationServiceClient<Channel>,
    last_fetch: Mutex<Instant>,
    min_refresh: Duration,
}

impl RemoteKeys {
    /// Fetches the issuer name and keys now (failing if it cannot), then refreshes them every
    /// `every` in the background; an unknown key id fetches again at most every `min_refresh`.
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
        let keys = fetch(&mut client).await?;
        let remote = Arc::new(RemoteKeys {
            issuer,
            keys: Mutex::new(Arc::new(keys)),
            client,
            last_fetch: Mutex::new(Instant::now()),
            min_refresh,
        });
        let weak = Arc::downgrade(&remote);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(remote) = weak.upgrade() else { break };
                remote.refresh().await;
            }
        });
        Ok(remote)
    }

    /// The issuer's `iss`, from its metadata.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    async fn refresh(&self) {
        *self.last_fetch.lock() = Instant::now();
        let mut client = self.client.clone();
        match fetch(&mut client).await {
            Ok(keys) => *self.keys.lock() = Arc::new(keys),
            // Keep the keys we have: failing to refresh must not distrust everything.
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "could not refresh the issuer's keys")
            }
        }
    }
}

async fn fetch(client: &mut AuthorizationServiceClient<Channel>) -> Result<KeySet, Status> {
    let jwks = client.get_jwks(GetJwksRequest {}).await?.into_inner();
    key_set(&jwks)
        .map_err(|e| Status::unavailable(format!("the issuer published an unusable key: {e}")))
}

impl KeySource for Arc<RemoteKeys> {
    fn keys(&self) -> Arc<KeySet> {
        self.keys.lock().clone()
    }

    fn request_refresh(&self) {
        let mut last = self.last_fetch.lock();
        if last.elapsed() < self.min_refresh {
            return;
        }
        *last = Instant::now();
        let me = self.clone();
        tokio::spawn(async move { me.refresh().await });
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
