//! Where a Writ service gets the keys of the issuers it trusts: the [`KeySource`]s behind
//! `writ_token::TrustedIssuers`.
//!
//! In-process ([`LocalKeys`], when the issuer runs in the same process) or fetched
//! ([`RemoteKeys`]: over gRPC from a Writ issuer, or over HTTPS from an external issuer's JWKS
//! URL ([`HttpsJwks`]); at start, then in the background, and again — at most every few
//! seconds — when a token names a key not yet known). Keys are never fetched from anything a
//! token names.

mod jwks_url;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::Status;
use tonic::transport::Channel;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::authz::{GetJwksRequest, GetServerMetadataRequest};
use writ_proto::convert::PublishedKeys;
use writ_proto::sts::security_token_service_client::SecurityTokenServiceClient;
use writ_token::KeySet;

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
        let published: PublishedKeys = match self.clone() {
            JwksEndpoint::Https(source) => return Ok(source.fetch().await?),
            JwksEndpoint::Authz(mut c) => c.get_jwks(GetJwksRequest {}).await?.into_inner().into(),
            JwksEndpoint::Sts(mut c) => c
                .get_jwks(writ_proto::sts::GetJwksRequest {})
                .await?
                .into_inner()
                .into(),
        };
        published.key_set().map_err(|e| {
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

    /// The STS at `channel`: as [`RemoteKeys::connect`].
    pub async fn connect_sts(
        channel: Channel,
        every: Duration,
        min_refresh: Duration,
    ) -> Result<Arc<Self>, Status> {
        let mut client = SecurityTokenServiceClient::new(channel);
        let issuer = client
            .get_server_metadata(writ_proto::sts::GetServerMetadataRequest {})
            .await?
            .into_inner()
            .issuer;
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
