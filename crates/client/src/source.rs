//! A [`TokenSource`] keeps a client-credentials token fresh for outgoing calls, attached by
//! [`AttachTokenLayer`] (waits for a token when it must) or [`AttachToken`] (a tonic
//! interceptor: uses the token the background refresher keeps ready).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::HeaderValue;
use parking_lot::RwLock;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::Channel;
use writ_proto::authz::TokenRequest;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;

use crate::bearer::BearerSource;
use crate::dpop::DpopKey;

/// A client's credentials and what it asks for.
#[derive(Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    /// Empty for a client that signs assertions instead ([`Self::private_key_jwt`]).
    pub client_secret: String,
    /// `private_key_jwt` (RFC 7523 section 2.2): a fresh assertion per token request.
    pub private_key: Option<PrivateKeyJwt>,
    /// The JWT-bearer grant (RFC 7523 section 2.1) instead of `client_credentials`: the file
    /// holding the workload's platform token (a Kubernetes projected service-account token, a
    /// SPIFFE JWT-SVID), read again for every token request, since the platform rotates it.
    pub workload_token_file: Option<std::path::PathBuf>,
    /// Space-delimited scopes (empty: the client's default).
    pub scope: String,
    /// Audiences the tokens are for.
    pub audience: Vec<String>,
}

impl ClientCredentials {
    /// A client's id and secret, asking for its default scopes and audience.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        ClientCredentials {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            private_key: None,
            workload_token_file: None,
            scope: String::new(),
            audience: Vec::new(),
        }
    }

    /// A workload that holds no secret at all: it presents the platform token in
    /// `token_file` (RFC 7523 section 2.1), which a trusted workload issuer's policy maps to
    /// `client_id`.
    pub fn workload(
        client_id: impl Into<String>,
        token_file: impl Into<std::path::PathBuf>,
    ) -> Self {
        ClientCredentials {
            workload_token_file: Some(token_file.into()),
            ..ClientCredentials::new(client_id, "")
        }
    }

    /// A client that holds no secret: it proves itself with a JWT signed by `key`, whose
    /// public half is registered with the authorization server (`private_key_jwt`).
    pub fn private_key_jwt(client_id: impl Into<String>, key: PrivateKeyJwt) -> Self {
        ClientCredentials {
            private_key: Some(key),
            ..ClientCredentials::new(client_id, "")
        }
    }

    /// `(client_secret, client_assertion_type, client_assertion)` for one request.
    pub(crate) fn presented(&self) -> Result<(String, String, String), Status> {
        match &self.private_key {
            Some(k) => Ok((
                String::new(),
                writ_token::CLIENT_ASSERTION_TYPE.to_owned(),
                k.assertion(&self.client_id)?,
            )),
            None => Ok((self.client_secret.clone(), String::new(), String::new())),
        }
    }

    /// The same client, asking for `scope` (space-delimited) for `audience`.
    pub fn for_audience(mut self, audience: &str, scope: &str) -> Self {
        self.audience = vec![audience.to_owned()];
        self.scope = scope.to_owned();
        self
    }
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("private_key_jwt", &self.private_key.is_some())
            .field("workload_token_file", &self.workload_token_file)
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The platform token in `file`, trimmed; at most the size the server accepts.
async fn read_workload_token(file: &std::path::Path) -> Result<String, Status> {
    let unreadable =
        |e: String| Status::failed_precondition(format!("workload token {}: {e}", file.display()));
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|e| unreadable(e.to_string()))?;
    if bytes.len() > writ_token::MAX_ASSERTION_LEN + 64 {
        return Err(unreadable("larger than 8 KiB".into()));
    }
    let text = String::from_utf8(bytes).map_err(|_| unreadable("not UTF-8".into()))?;
    Ok(text.trim().to_owned())
}

/// A client's private key for `private_key_jwt`, and the audience its assertions name: the
/// issuer identifier of the server they are sent to.
#[derive(Clone)]
pub struct PrivateKeyJwt {
    key: Arc<writ_token::SigningKey>,
    audience: String,
}

/// How long an assertion is good for: a minute (the server refuses more than an hour).
const ASSERTION_LIFETIME: i64 = 60;

impl PrivateKeyJwt {
    /// `key` signs (its `kid` goes in each assertion's header); `issuer` is the server's
    /// issuer identifier, the assertions' `aud`.
    pub fn new(key: writ_token::SigningKey, issuer: impl Into<String>) -> Self {
        PrivateKeyJwt {
            key: Arc::new(key),
            audience: issuer.into(),
        }
    }

    /// A PKCS#8 PEM private key (Ed25519 or P-256) with its registered `kid`.
    pub fn from_pem(kid: &str, pem: &str, issuer: impl Into<String>) -> Result<Self, Status> {
        let key = writ_token::SigningKey::from_pkcs8_pem(kid, pem)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Self::new(key, issuer))
    }

    /// A new assertion: `iss` = `sub` = the client, a random `jti`, a minute of life.
    pub(crate) fn assertion(&self, client_id: &str) -> Result<String, Status> {
        let now = writ_token::system_clock().now();
        let claims = writ_token::AssertionClaims {
            iss: client_id.to_owned(),
            sub: client_id.to_owned(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + ASSERTION_LIFETIME,
            jti: writ_token::random_id(),
        };
        writ_token::encode_client_assertion(&self.key, &claims)
            .map_err(|e| Status::internal(format!("signing a client assertion: {e}")))
    }
}

impl std::fmt::Debug for PrivateKeyJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKeyJwt")
            .field("kid", &self.key.kid())
            .field("audience", &self.audience)
            .finish()
    }
}

/// A token and when to stop using it as it is.
#[derive(Clone)]
pub(crate) struct Held {
    pub(crate) token: Arc<str>,
    pub(crate) header: HeaderValue,
    /// Fetch a new one from here on (well before expiry).
    pub(crate) refresh_at: Instant,
    /// Never use it from here on.
    pub(crate) expires_at: Instant,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held(..)")
    }
}

impl Held {
    /// A token presented as `scheme` (`Bearer`, or `DPoP` for a token bound to a key).
    pub(crate) fn new(token: String, expires_in: i64, scheme: &str) -> Result<Held, Status> {
        let lifetime = Duration::from_secs(expires_in.max(0) as u64);
        let now = Instant::now();
        // Renew with a fifth of the lifetime left (at least 5 s, at most 60 s), so clock skew
        // and a slow issuer never leave a caller holding an expired token.
        let margin = (lifetime / 5).clamp(Duration::from_secs(5), Duration::from_secs(60));
        let mut header = HeaderValue::try_from(format!("{scheme} {token}"))
            .map_err(|_| Status::internal("the issued token is not a header value"))?;
        // A credential: never indexed by HPACK, hidden from Debug.
        header.set_sensitive(true);
        Ok(Held {
            token: Arc::from(token),
            header,
            refresh_at: now + lifetime.saturating_sub(margin),
            expires_at: now + lifetime.saturating_sub(Duration::from_secs(1)),
        })
    }

    pub(crate) fn fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }

    pub(crate) fn usable(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

/// A source whose tokens are bound to a DPoP key.
#[derive(Debug)]
struct Bound {
    key: DpopKey,
    /// The authorization server's `Token` method's URL: what its proofs name.
    token_url: String,
    /// The authorization server's latest `dpop-nonce`, if it asked for one.
    nonce: RwLock<Option<String>>,
}

#[derive(Debug)]
struct SourceInner {
    client: AuthorizationServiceClient<Channel>,
    credentials: ClientCredentials,
    dpop: Option<Bound>,
    held: RwLock<Option<Held>>,
    /// One fetch at a time: concurrent callers wait for it and share its token.
    fetching: tokio::sync::Mutex<()>,
}

/// Client-credentials tokens for outgoing calls: cached, renewed before expiry, one fetch at a
/// time however many callers ask. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TokenSource(Arc<SourceInner>);

impl TokenSource {
    /// `channel` reaches the authorization server.
    pub fn new(channel: Channel, credentials: ClientCredentials) -> TokenSource {
        TokenSource(Arc::new(SourceInner {
            client: AuthorizationServiceClient::new(channel),
            credentials,
            dpop: None,
            held: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }))
    }

    /// Tokens bound to `key` (DPoP, RFC 9449, in Writ's gRPC profile): every token request
    /// carries a proof by it, and [`Self::layer`] sends each call with `authorization: DPoP
    /// <token>` and a fresh proof over the call's URL and the token. `authorization_server` is
    /// the origin `channel` reaches (`https://host:port`, as the channel dials it: the proof
    /// names it). A thief of such a token gets nothing without the key.
    pub fn with_dpop(
        channel: Channel,
        authorization_server: &str,
        credentials: ClientCredentials,
        key: DpopKey,
    ) -> Result<TokenSource, Status> {
        let token_url = format!(
            "{}/{}/Token",
            crate::dpop::origin(authorization_server)?,
            writ_proto::authz::authorization_service_server::SERVICE_NAME
        );
        Ok(TokenSource(Arc::new(SourceInner {
            client: AuthorizationServiceClient::new(channel),
            credentials,
            dpop: Some(Bound {
                key,
                token_url,
                nonce: RwLock::new(None),
            }),
            held: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })))
    }

    /// The DPoP key this source's tokens are bound to, if any.
    pub fn dpop_key(&self) -> Option<&DpopKey> {
        self.0.dpop.as_ref().map(|b| &b.key)
    }

    /// A token good for a call now. Waits only when none is fresh.
    pub async fn token(&self) -> Result<Arc<str>, Status> {
        Ok(self.held().await?.token)
    }

    async fn held(&self) -> Result<Held, Status> {
        if let Some(h) = self.current(true) {
            return Ok(h);
        }
        let _one = self.0.fetching.lock().await;
        // Fetched while we waited?
        if let Some(h) = self.current(true) {
            return Ok(h);
        }
        match self.fetch().await {
            Ok(h) => Ok(h),
            // The issuer is down but the token we hold is still valid: keep using it.
            Err(e) => self.current(false).ok_or(e),
        }
    }

    /// The token held, if fresh (or, with `fresh` false, merely unexpired).
    fn current(&self, fresh: bool) -> Option<Held> {
        let now = Instant::now();
        self.0
            .held
            .read()
            .as_ref()
            .filter(|h| if fresh { h.fresh(now) } else { h.usable(now) })
            .cloned()
    }

    async fn fetch(&self) -> Result<Held, Status> {
        let c = &self.0.credentials;
        let (client_secret, client_assertion_type, client_assertion) = c.presented()?;
        let (grant_type, assertion) = match &c.workload_token_file {
            Some(file) => (
                writ_vocabulary::grant_type::JWT_BEARER,
                read_workload_token(file).await?,
            ),
            None => (
                writ_vocabulary::grant_type::CLIENT_CREDENTIALS,
                String::new(),
            ),
        };
        let message = TokenRequest {
            grant_type: grant_type.into(),
            assertion,
            client_id: c.client_id.clone(),
            client_secret,
            client_assertion_type,
            client_assertion,
            scope: c.scope.clone(),
            audience: c.audience.clone(),
            ..Default::default()
        };
        let response = match &self.0.dpop {
            None => self.0.client.clone().token(message).await?.into_inner(),
            Some(bound) => self.fetch_bound(bound, message).await?,
        };
        let scheme = match self.0.dpop {
            None => "Bearer",
            // A server that ignored the proof issued a bearer token: never present it as bound.
            Some(_) if !response.token_type.eq_ignore_ascii_case("DPoP") => {
                return Err(Status::failed_precondition(
                    "the authorization server did not bind the token to the DPoP key",
                ));
            }
            Some(_) => "DPoP",
        };
        let held = Held::new(response.access_token, response.expires_in, scheme)?;
        *self.0.held.write() = Some(held.clone());
        tracing::debug!(client_id = %c.client_id, expires_in = response.expires_in, "fetched a token for outgoing calls");
        Ok(held)
    }

    /// A token request with a proof; if the server asks for its nonce (`use_dpop_nonce`, the
    /// nonce in `dpop-nonce`), once more with it.
    async fn fetch_bound(
        &self,
        bound: &Bound,
        message: TokenRequest,
    ) -> Result<writ_proto::authz::TokenResponse, Status> {
        let mut retried = false;
        loop {
            let nonce = bound.nonce.read().clone();
            let mut request = tonic::Request::new(message.clone());
            let proof = bound.key.proof(&bound.token_url, None, nonce.as_deref())?;
            request.metadata_mut().insert(
                "dpop",
                tonic::metadata::MetadataValue::try_from(proof.as_bytes())
                    .map_err(|_| Status::internal("the DPoP proof is not a header value"))?,
            );
            match self.0.client.clone().token(request).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(status) => {
                    use tonic_types::StatusExt as _;
                    let asks_nonce = status
                        .get_details_error_info()
                        .is_some_and(|i| i.reason == "use_dpop_nonce");
                    let fresh = asks_nonce
                        .then(|| status.metadata().get("dpop-nonce"))
                        .flatten()
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    match fresh {
                        Some(n) if !retried && nonce.as_deref() != Some(n.as_str()) => {
                            *bound.nonce.write() = Some(n);
                            retried = true;
                        }
                        _ => return Err(status),
                    }
                }
            }
        }
    }

    /// Keeps a fresh token ready in the background (what [`AttachToken`] relies on): fetches
    /// now, then again whenever the token is due, retrying after `retry` on failure.
    pub fn spawn_refresher(&self, retry: Duration) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let wait = match me.held().await {
                    Ok(h) => h.refresh_at.saturating_duration_since(Instant::now()),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not fetch a token for outgoing calls");
                        retry
                    }
                };
                tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
            }
        })
    }

    /// A tower layer for a client channel: every request gets `authorization: Bearer <token>`
    /// (or, from a DPoP-bound source, `DPoP <token>` and a proof over the request's URL: the
    /// request must carry its origin, as [`Self::layer_for`] sees to).
    pub fn layer(&self) -> AttachTokenLayer {
        AttachTokenLayer {
            source: self.clone(),
            origin: None,
        }
    }

    /// [`Self::layer`] for a channel to `origin` (`https://host:port`, as the channel dials
    /// it): what a DPoP proof names with each method's path (a tonic channel adds the origin
    /// only after the layers around it). Put any retry layer inside this one: a proof is good
    /// for one call, so a retry must get a new one.
    pub fn layer_for(&self, origin: &str) -> Result<AttachTokenLayer, Status> {
        Ok(AttachTokenLayer {
            source: self.clone(),
            origin: Some(Arc::from(crate::dpop::origin(origin)?)),
        })
    }

    /// A tonic interceptor attaching the token held (see [`TokenSource::spawn_refresher`]). Not
    /// for a DPoP-bound source (an interceptor does not see the call's URL): use the layer.
    pub fn interceptor(&self) -> AttachToken {
        AttachToken(self.clone())
    }
}

impl BearerSource for TokenSource {
    /// A DPoP-bound source has no bearer token to give: a bound token presented as one is
    /// refused everywhere.
    fn bearer(&self) -> Pin<Box<dyn Future<Output = Result<Arc<str>, Status>> + Send + '_>> {
        Box::pin(async move {
            if self.0.dpop.is_some() {
                return Err(Status::failed_precondition(
                    "this token source's tokens are bound to a DPoP key, not bearer tokens",
                ));
            }
            self.token().await
        })
    }

    /// A refused token (its key or its client revoked meanwhile) is dropped: the next call
    /// fetches a new one instead of presenting it again until it is due for renewal.
    fn refused(&self) {
        *self.0.held.write() = None;
    }
}

/// Tonic interceptor: see [`TokenSource::interceptor`]. Fails with UNAUTHENTICATED, without a
/// network call, when no unexpired token is held.
#[derive(Debug, Clone)]
pub struct AttachToken(TokenSource);

impl tonic::service::Interceptor for AttachToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if self.0.0.dpop.is_some() {
            return Err(Status::failed_precondition(
                "a DPoP-bound token source needs the layer (TokenSource::layer_for), not the interceptor",
            ));
        }
        let held = self
            .0
            .current(false)
            .ok_or_else(|| Status::unauthenticated("no token for outgoing calls yet"))?;
        let mut value = tonic::metadata::MetadataValue::try_from(held.header.as_bytes())
            .map_err(|_| Status::internal("the token is not a header value"))?;
        value.set_sensitive(true);
        request.metadata_mut().insert("authorization", value);
        writ_telemetry::inject_metadata(request.metadata_mut());
        Ok(request)
    }
}

/// Tower layer: see [`TokenSource::layer`].
#[derive(Debug, Clone)]
pub struct AttachTokenLayer {
    source: TokenSource,
    /// The origin the channel dials, for DPoP proofs.
    origin: Option<Arc<str>>,
}

impl<S> tower::Layer<S> for AttachTokenLayer {
    type Service = AttachTokenService<S>;
    fn layer(&self, inner: S) -> AttachTokenService<S> {
        AttachTokenService {
            source: self.source.clone(),
            origin: self.origin.clone(),
            inner,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttachTokenService<S> {
    source: TokenSource,
    origin: Option<Arc<str>>,
    inner: S,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<http::Request<B>> for AttachTokenService<S>
where
    S: tower::Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The caller's trace continues in the call (read now: the future runs elsewhere).
        writ_telemetry::inject_headers(request.headers_mut());
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let source = self.source.clone();
        // The URL a proof names: the layer's origin and the request's path, or the request's
        // own URL if it carries an origin.
        let htu = match &self.origin {
            Some(origin) => Some(format!("{origin}{}", request.uri().path())),
            None => writ_token::grpc_htu(request.uri()),
        };
        Box::pin(async move {
            // A Status error reaches the caller as that status (tonic downcasts it).
            let held = source.held().await.map_err(|s| Box::new(s) as BoxError)?;
            if let Some(bound) = &source.0.dpop {
                let htu = htu.ok_or_else(|| {
                    Box::new(Status::failed_precondition(
                        "a DPoP proof names the call's URL: build this layer with TokenSource::layer_for(origin)",
                    )) as BoxError
                })?;
                let proof = bound
                    .key
                    .proof(&htu, Some(&held.token), None)
                    .map_err(|s| Box::new(s) as BoxError)?;
                request.headers_mut().insert("dpop", proof);
            }
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, held.header);
            inner.call(request).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_held_token_is_a_sensitive_header_renewed_before_it_expires() {
        let held = Held::new("t0k3n".into(), 300, "Bearer").unwrap();
        assert!(held.header.is_sensitive());
        assert_eq!(held.header.to_str().unwrap(), "Bearer t0k3n");
        let now = Instant::now();
        assert!(held.fresh(now) && held.usable(now));
        // Renewed with a fifth of 300 s left, and never used in its last second.
        assert!(!held.fresh(now + Duration::from_secs(241)));
        assert!(held.usable(now + Duration::from_secs(298)));
        assert!(!held.usable(now + Duration::from_secs(300)));
        assert!(!format!("{held:?}").contains("t0k3n"));
    }
}
