//! The server side: [`Guard`] decides; [`GuardLayer`] (tower, sees the method) and
//! [`GuardInterceptor`] (tonic, one rule for every method) apply it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use writ_revocation_client::{RevocationSet, TokenFacts};
use writ_token::biscuit_auth::builder::AuthorizerBuilder;
use writ_token::{BiscuitRequest, SharedClock, TokenError, TokenFormat, VerifierConfig};
use writ_trust::{Issuers, TrustedIssuer};

use crate::cache::{TokenCache, Verified};
use crate::error::GuardError;
use crate::policy::{MethodPolicy, Rule};
use crate::principal::{BearerToken, Principal};

/// How the guard learns of revocations.
#[derive(Debug, Clone)]
pub enum Revocations {
    /// A set kept current by a [`writ_revocation_client::Watcher`]. If the feed has not been
    /// heard from within `max_staleness` (or never synced), calls fail with UNAVAILABLE, unless
    /// `fail_open` is set, which lets them through unchecked against revocations (an explicit,
    /// logged choice).
    Feed {
        set: Arc<RevocationSet>,
        max_staleness: Duration,
        fail_open: bool,
    },
    /// No revocation checks at all. Only for tests and tools; say so where you use it.
    Unchecked,
}

/// Everything a guard needs.
#[derive(Debug)]
pub struct GuardConfig {
    /// This service's name: tokens must carry it in `aud`; Biscuits see it as `service`.
    pub audience: String,
    /// Whose tokens are accepted (the authorization server and the STS).
    pub issuers: Vec<TrustedIssuer>,
    pub policy: MethodPolicy,
    pub revocations: Revocations,
    /// Verified JWTs kept (0: none).
    pub cache_capacity: usize,
    /// The service's own Datalog checks and policies for Biscuits.
    pub biscuit_policies: Option<AuthorizerBuilder>,
    /// Algorithm allow-list, leeway, size and lifetime limits, Biscuit run limits (its
    /// `issuers` and `audience` are set from the fields above).
    pub verifier: VerifierConfig,
    pub clock: SharedClock,
}

impl GuardConfig {
    /// Secure defaults: every method denied until `policy` opens it, revocations from `set`
    /// with a 30 s staleness bound (fail closed), 100,000 cached tokens.
    pub fn new(
        audience: impl Into<String>,
        issuers: Vec<TrustedIssuer>,
        policy: MethodPolicy,
        set: Arc<RevocationSet>,
    ) -> Self {
        let audience = audience.into();
        GuardConfig {
            verifier: VerifierConfig::new(Vec::new(), Some(audience.clone())),
            audience,
            issuers,
            policy,
            revocations: Revocations::Feed {
                set,
                max_staleness: Duration::from_secs(30),
                fail_open: false,
            },
            cache_capacity: 100_000,
            biscuit_policies: None,
            clock: writ_token::system_clock(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    audience: String,
    issuers: Issuers,
    policy: MethodPolicy,
    revocations: Revocations,
    cache: TokenCache,
    biscuit_policies: Option<AuthorizerBuilder>,
    clock: SharedClock,
}

/// The guard: cheap to clone, shared by every connection.
#[derive(Debug, Clone)]
pub struct Guard(Arc<Inner>);

impl Guard {
    pub fn new(config: GuardConfig) -> Guard {
        let mut verifier = config.verifier;
        verifier.audience = Some(config.audience.clone());
        Guard(Arc::new(Inner {
            issuers: Issuers::new(config.issuers, verifier, config.clock.clone()),
            audience: config.audience,
            policy: config.policy,
            revocations: config.revocations,
            cache: TokenCache::new(config.cache_capacity),
            biscuit_policies: config.biscuit_policies,
            clock: config.clock,
        }))
    }

    /// A tower layer for `tonic::transport::Server::builder().layer(..)`.
    pub fn layer(&self) -> GuardLayer {
        GuardLayer(self.clone())
    }

    /// A tonic interceptor applying one rule to every method of the service it wraps. It cannot
    /// wait: a token signed by a key not yet fetched is refused (and a fetch started), where the
    /// layer would fetch and retry. Prefer the layer.
    pub fn interceptor(&self, rule: Rule) -> GuardInterceptor {
        GuardInterceptor {
            guard: self.clone(),
            rule,
        }
    }

    /// Tokens in the verified-token cache.
    pub fn cached(&self) -> usize {
        self.0.cache.len()
    }

    /// Decides a call to `method` (`/package.Service/Method`) with this `authorization` header.
    /// `Ok(None)` for a public method.
    pub async fn check(
        &self,
        method: &str,
        authorization: Option<&[u8]>,
    ) -> Result<Option<Arc<Verified>>, GuardError> {
        let rule = self.0.policy.rule(method);
        let outcome = self.decide(rule, Some(method), authorization, true).await;
        self.audit(Some(method), &outcome);
        outcome
    }

    /// The audit event for a decision: refusals at WARN, grants at DEBUG (one per call).
    fn audit(&self, method: Option<&str>, outcome: &Result<Option<Arc<Verified>>, GuardError>) {
        let method = method.unwrap_or("*");
        match outcome {
            Ok(Some(v)) => tracing::debug!(
                target: "writ::audit",
                event = "call_allowed",
                service = %self.0.audience,
                method,
                sub = %v.principal.subject,
                client_id = %v.principal.client_id,
                jti = %v.principal.token_id,
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                target: "writ::audit",
                event = "call_refused",
                service = %self.0.audience,
                method,
                reason = e.reason(),
                cause = e.cause(),
            ),
        }
    }

    async fn decide(
        &self,
        rule: &Rule,
        method: Option<&str>,
        authorization: Option<&[u8]>,
        may_wait: bool,
    ) -> Result<Option<Arc<Verified>>, GuardError> {
        let required = match rule {
            Rule::Public => return Ok(None),
            Rule::Deny => {
                // Authenticate first all the same: an anonymous caller learns nothing about
                // which methods exist.
                bearer(authorization)?;
                return Err(GuardError::MethodNotAllowed);
            }
            Rule::Scopes(s) => s,
        };
        let token = bearer(authorization)?;
        self.feed_fresh()?;
        let now = self.0.clock.now();
        let verified = match TokenFormat::detect(token) {
            TokenFormat::Jwt => {
                let key = self.0.cache.key(token);
                match self.0.cache.get(key, now) {
                    Some(v) => v,
                    None => {
                        let v = self.verify(token, None, may_wait).await?;
                        self.0.cache.insert(key, v.clone(), now);
                        v
                    }
                }
            }
            // Not cached: what a Biscuit grants depends on the request it is presented for,
            // and every holder may attenuate it into a new token.
            TokenFormat::Biscuit => {
                let request = BiscuitRequest {
                    service: Some(self.0.audience.clone()),
                    method: method.map(str::to_owned),
                    required_scopes: required.clone(),
                    policies: self.0.biscuit_policies.clone(),
                };
                self.verify(token, Some(&request), may_wait).await?
            }
        };
        self.not_revoked(&verified)?;
        if verified.token.format == TokenFormat::Jwt
            && !required.iter().all(|s| verified.principal.has_scope(s))
        {
            return Err(GuardError::InsufficientScope(required.clone()));
        }
        Ok(Some(verified))
    }

    async fn verify(
        &self,
        token: &str,
        request: Option<&BiscuitRequest>,
        may_wait: bool,
    ) -> Result<Arc<Verified>, GuardError> {
        let result = if may_wait {
            self.0.issuers.verify_refreshing(token, request).await
        } else {
            let r = self.0.issuers.verify(token, request);
            if matches!(r, Err(TokenError::UnknownKey)) {
                self.0.issuers.request_refresh();
            }
            r
        };
        let token_v = result.map_err(|e| match e {
            // The token is genuine but does not grant this request.
            TokenError::Denied | TokenError::RunLimit if request.is_some() => GuardError::Denied(e),
            e => GuardError::InvalidToken(e),
        })?;
        Ok(Arc::new(Verified {
            principal: Arc::new(Principal::from_verified(&token_v)),
            token: token_v,
            bearer: BearerToken(Arc::from(token)),
        }))
    }

    fn feed_fresh(&self) -> Result<(), GuardError> {
        if let Revocations::Feed {
            set,
            max_staleness,
            fail_open,
        } = &self.0.revocations
            && set.staleness().is_none_or(|s| s > *max_staleness)
        {
            if *fail_open {
                tracing::warn!(target: "writ::audit", event = "revocation_feed_stale_fail_open", service = %self.0.audience);
                return Ok(());
            }
            return Err(GuardError::RevocationFeedStale);
        }
        Ok(())
    }

    fn not_revoked(&self, v: &Verified) -> Result<(), GuardError> {
        if let Revocations::Feed { set, .. } = &self.0.revocations
            && let Some(kind) = set.check(&TokenFacts::of(&v.token))
        {
            return Err(GuardError::Revoked(kind));
        }
        Ok(())
    }
}

/// The token of an `authorization: Bearer <token>` header.
fn bearer(authorization: Option<&[u8]>) -> Result<&str, GuardError> {
    let value = authorization.ok_or(GuardError::MissingToken)?;
    let value = std::str::from_utf8(value).map_err(|_| GuardError::MalformedHeader)?;
    let (scheme, token) = value.split_once(' ').ok_or(GuardError::MalformedHeader)?;
    // The scheme is case-insensitive (RFC 7235).
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(GuardError::MalformedHeader);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(GuardError::MissingToken);
    }
    Ok(token)
}

/// Tower layer: see [`Guard::layer`].
#[derive(Debug, Clone)]
pub struct GuardLayer(Guard);

impl<S> tower::Layer<S> for GuardLayer {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService {
            guard: self.0.clone(),
            inner,
        }
    }
}

/// The guarded service: refused calls never reach `inner`.
#[derive(Debug, Clone)]
pub struct GuardService<S> {
    guard: Guard,
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for GuardService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was made ready is the one that serves (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            let decision = guard
                .check(
                    request.uri().path(),
                    request
                        .headers()
                        .get(http::header::AUTHORIZATION)
                        .map(|v| v.as_bytes()),
                )
                .await;
            match decision {
                Ok(Some(v)) => {
                    request.extensions_mut().insert(v.principal.clone());
                    request.extensions_mut().insert(v.bearer.clone());
                    inner.call(request).await
                }
                Ok(None) => inner.call(request).await,
                Err(e) => Ok(e.to_status().into_http()),
            }
        })
    }
}

/// Tonic interceptor: see [`Guard::interceptor`].
#[derive(Debug, Clone)]
pub struct GuardInterceptor {
    guard: Guard,
    rule: Rule,
}

impl tonic::service::Interceptor for GuardInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let decision = {
            let authorization = request
                .metadata()
                .get("authorization")
                .map(|v| v.as_bytes());
            // With `may_wait` false the decision never awaits, so one poll completes it.
            let decision = self.guard.decide(&self.rule, None, authorization, false);
            let mut decision = std::pin::pin!(decision);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match decision.as_mut().poll(&mut cx) {
                Poll::Ready(d) => {
                    self.guard.audit(None, &d);
                    d
                }
                Poll::Pending => return Err(tonic::Status::internal("the guard could not decide")),
            }
        };
        if let Some(v) = decision? {
            request.extensions_mut().insert(v.principal.clone());
            request.extensions_mut().insert(v.bearer.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_nothing_else_passes() {
        assert_eq!(bearer(Some(b"Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some(b"bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some(b"BEARER  abc ")), Ok("abc"));
        assert_eq!(bearer(None), Err(GuardError::MissingToken));
        assert_eq!(bearer(Some(b"Bearer ")), Err(GuardError::MissingToken));
        assert_eq!(bearer(Some(b"Bearer")), Err(GuardError::MalformedHeader));
        assert_eq!(bearer(Some(b"Basic abc")), Err(GuardError::MalformedHeader));
        assert_eq!(
            bearer(Some(b"Bearer \xff")),
            Err(GuardError::MalformedHeader)
        );
    }

    #[test]
    fn refusals_map_to_their_grpc_codes() {
        use tonic::Code;
        let cases = [
            (GuardError::MissingToken, Code::Unauthenticated),
            (
                GuardError::InvalidToken(TokenError::Expired),
                Code::Unauthenticated,
            ),
            (
                GuardError::Revoked(writ_token::RevocationKind::GrantId),
                Code::Unauthenticated,
            ),
            (
                GuardError::InsufficientScope(vec!["x".into()]),
                Code::PermissionDenied,
            ),
            (
                GuardError::Denied(TokenError::Denied),
                Code::PermissionDenied,
            ),
            (GuardError::MethodNotAllowed, Code::PermissionDenied),
            (GuardError::RevocationFeedStale, Code::Unavailable),
        ];
        for (e, code) in cases {
            assert_eq!(e.to_status().code(), code, "{e:?}");
        }
    }
}
