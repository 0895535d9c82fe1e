//! The server side: [`Guard`] decides; [`GuardLayer`] (tower, sees the method; `layer.rs`) and
//! [`GuardInterceptor`] (tonic, one rule for every method; `interceptor.rs`) apply it.

use std::sync::Arc;

use writ_revocation_client::{DEFAULT_MAX_STALENESS, RevocationFeed, RevocationSet, TokenFacts};
use writ_token::biscuit_auth::builder::AuthorizerBuilder;
use writ_token::{
    BiscuitRequest, GRPC_HTM, ProofRules, Replay, RevocationCheck, SeenProofs, SharedClock,
    TokenError, TokenFormat, TrustedIssuer, TrustedIssuers, VerifierConfig,
};

use crate::cache::{TokenCache, Verified};
use crate::error::GuardError;
use crate::policy::{MethodPolicy, Rule};
use crate::principal::Principal;
use writ_client::BearerToken;

mod interceptor;
mod layer;

pub use interceptor::GuardInterceptor;
pub use layer::{GuardLayer, GuardService};

/// How the guard learns of revocations.
#[derive(Debug, Clone)]
pub enum Revocations {
    /// Every call is checked against `check` (a [`RevocationFeed`]: the revocation feed, kept
    /// current by a [`writ_revocation_client::Watcher`]; or any other source, such as the
    /// revocation log itself). When the check cannot vouch for its answer (a feed staler than
    /// its bound, or never synced), calls fail with UNAVAILABLE, unless `fail_open` is set,
    /// which lets them through unchecked (an explicit, logged choice).
    Checked {
        check: Arc<dyn RevocationCheck>,
        fail_open: bool,
    },
    /// Every call is checked against `check`, which may wait (the revocation service checks its
    /// own callers against its log, in a store that may be over the network). Always fails
    /// closed. Only the layer ([`GuardLayer`], [`Guard::check`]) can wait for it: under the
    /// synchronous interceptor every call is refused (UNAVAILABLE).
    Awaited {
        check: Arc<dyn writ_token::AsyncRevocationCheck>,
    },
    /// No revocation checks at all. Only for tests and tools; say so where you use it.
    Unchecked,
}

impl Revocations {
    /// The feed behind `set`, trusted while it has been heard from within 30 s: fail closed.
    pub fn feed(set: Arc<RevocationSet>) -> Self {
        Revocations::Checked {
            check: Arc::new(RevocationFeed::new(set, DEFAULT_MAX_STALENESS)),
            fail_open: false,
        }
    }
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
    /// DPoP proofs remembered per generation (two generations, a proof's lifetime each: see
    /// [`SeenProofs`]); with a generation full, calls with proofs get UNAVAILABLE. The ceiling
    /// on DPoP calls is this many per [`GUARD_DPOP_MAX_AGE`] and twice the leeway.
    pub dpop_proofs_remembered: usize,
}

/// Proofs a guard remembers per generation by default: a million (up to some 36 MiB per
/// generation, 72 MiB in all; the sets grow only as proofs come, so a service without DPoP
/// callers spends nothing): about 8,300 DPoP calls a second sustained.
pub const DPOP_PROOFS_REMEMBERED: usize = 1_000_000;

/// How old a proof may be at a guard, in seconds (besides the leeway): a client makes each one
/// for the call it sends at once, so a minute is plenty, and halves the memory of proofs a
/// call rate needs against the token endpoint's two minutes.
pub const GUARD_DPOP_MAX_AGE: i64 = 60;

/// What a call presents, as read off its headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// The `authorization` header: `Bearer <token>`, or `DPoP <token>` with a proof.
    pub authorization: Option<&'a [u8]>,
    /// The `dpop` header (Writ's gRPC profile of RFC 9449, `docs/dpop-grpc.md`).
    pub proof: Proof<'a>,
    /// The URL the call was made to ([`writ_token::grpc_htu`]): what its proof must name.
    /// `None` where it is not known (the interceptor): a DPoP-bound token is then refused.
    pub htu: Option<&'a str>,
    /// The TLS client certificate (DER) the connection presented, if any: what a token bound
    /// to a certificate (RFC 8705, `cnf.x5t#S256`) needs.
    pub client_cert: Option<&'a [u8]>,
}

/// The TLS client certificates (the leaf first) of the connection a request came on, as
/// tonic's TLS (or any server handing tonic `tokio_rustls` streams of TCP connections) records
/// them: shared, not copied, on every call.
pub fn client_certificates(
    extensions: &http::Extensions,
) -> Option<Arc<Vec<tonic::transport::CertificateDer<'static>>>> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()
}

/// The leaf of [`client_certificates`], as bytes.
fn leaf<'a>(
    certs: &'a Option<Arc<Vec<tonic::transport::CertificateDer<'static>>>>,
) -> Option<&'a [u8]> {
    certs.as_deref()?.first().map(|c| c.as_ref())
}

impl<'a> Presented<'a> {
    /// What a call's `headers` present, made to `htu` (if known) over a connection that
    /// presented `client_cert` (if any).
    pub fn of(
        headers: &'a http::HeaderMap,
        htu: Option<&'a str>,
        client_cert: Option<&'a [u8]>,
    ) -> Presented<'a> {
        Presented {
            authorization: headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            proof: Proof::of(headers),
            htu,
            client_cert,
        }
    }
}

/// A call's `dpop` headers.
#[derive(Debug, Clone, Copy, Default)]
pub enum Proof<'a> {
    #[default]
    None,
    One(&'a [u8]),
    /// More than one: refused (RFC 9449 section 4.3).
    Many,
}

impl<'a> Proof<'a> {
    /// The `dpop` values of `headers`.
    pub fn of(headers: &'a http::HeaderMap) -> Proof<'a> {
        let mut values = headers.get_all("dpop").iter();
        match (values.next(), values.next()) {
            (None, _) => Proof::None,
            (Some(v), None) => Proof::One(v.as_bytes()),
            (Some(_), Some(_)) => Proof::Many,
        }
    }
}

/// How a token was presented (RFC 6750, RFC 9449 section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

/// The token of a call and what goes with it, as far as sender constraint is concerned.
#[derive(Debug, Clone, Copy)]
struct Sender<'a> {
    scheme: Scheme,
    token: &'a str,
    proof: Proof<'a>,
    htu: Option<&'a str>,
    client_cert: Option<&'a [u8]>,
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
        GuardConfig {
            revocations: Revocations::feed(set),
            ..GuardConfig::without_revocations(audience, issuers, policy)
        }
    }

    /// The same defaults with [`Revocations::Unchecked`]: set `revocations` before use (it is
    /// what a service with a revocation source of its own starts from).
    pub fn without_revocations(
        audience: impl Into<String>,
        issuers: Vec<TrustedIssuer>,
        policy: MethodPolicy,
    ) -> Self {
        let audience = audience.into();
        GuardConfig {
            verifier: VerifierConfig::new(Vec::new(), Some(audience.clone())),
            audience,
            issuers,
            policy,
            revocations: Revocations::Unchecked,
            cache_capacity: 100_000,
            biscuit_policies: None,
            clock: writ_token::system_clock(),
            dpop_proofs_remembered: DPOP_PROOFS_REMEMBERED,
        }
    }
}

#[derive(Debug)]
struct Inner {
    audience: String,
    issuers: TrustedIssuers,
    policy: MethodPolicy,
    revocations: Revocations,
    cache: TokenCache,
    biscuit_policies: Option<AuthorizerBuilder>,
    /// Dates the service's own Datalog compares against (a cached Biscuit verdict ends at the
    /// first one), or `None` if its verdicts cannot be cached at all (it calls foreign
    /// functions, whose answers may change at any time).
    policy_dates: Option<Vec<u64>>,
    leeway: i64,
    clock: SharedClock,
    /// DPoP proofs spent here.
    proofs: SeenProofs,
}

/// The guard: cheap to clone, shared by every connection.
#[derive(Debug, Clone)]
pub struct Guard(Arc<Inner>);

impl Guard {
    pub fn new(config: GuardConfig) -> Guard {
        let mut verifier = config.verifier;
        verifier.audience = Some(config.audience.clone());
        let policy_dates = match &config.biscuit_policies {
            None => Some(Vec::new()),
            Some(policies) => {
                let shape = writ_token::inspect_policies(policies);
                (!shape.calls_foreign_functions).then_some(shape.dates)
            }
        };
        Guard(Arc::new(Inner {
            policy_dates,
            leeway: verifier.leeway,
            issuers: TrustedIssuers::new(config.issuers, verifier, config.clock.clone()),
            audience: config.audience,
            policy: config.policy,
            revocations: config.revocations,
            cache: TokenCache::new(config.cache_capacity),
            biscuit_policies: config.biscuit_policies,
            clock: config.clock,
            proofs: SeenProofs::new(config.dpop_proofs_remembered),
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

    /// Decides a call to `method` (`/package.Service/Method`) with this `authorization` header
    /// alone (a DPoP-bound token is refused: see [`Self::check_call`]). `Ok(None)` for a public
    /// method.
    pub async fn check(
        &self,
        method: &str,
        authorization: Option<&[u8]>,
    ) -> Result<Option<Arc<Verified>>, GuardError> {
        self.check_call(
            method,
            &Presented {
                authorization,
                ..Presented::default()
            },
        )
        .await
    }

    /// Decides a call to `method` (`/package.Service/Method`) presenting `presented`: a bearer
    /// token, or a DPoP-bound one with its proof over the call's URL. `Ok(None)` for a public
    /// method.
    pub async fn check_call(
        &self,
        method: &str,
        presented: &Presented<'_>,
    ) -> Result<Option<Arc<Verified>>, GuardError> {
        let started = sampled_start();
        let rule = self.0.policy.rule(method);
        let outcome = self.decide(rule, Some(method), presented).await;
        self.audit(Some(method), presented.authorization, started, &outcome);
        outcome
    }

    /// The audit event for a decision: refusals at WARN, grants at DEBUG (one per call); and
    /// its metrics (outcome, and the time taken by the token's form).
    pub(crate) fn audit(
        &self,
        method: Option<&str>,
        authorization: Option<&[u8]>,
        started: Option<std::time::Instant>,
        outcome: &Result<Option<Arc<Verified>>, GuardError>,
    ) {
        let format = match authorization {
            None => "none",
            Some(h) if h.contains(&b'.') => "jwt",
            Some(_) => "biscuit",
        };
        let label = match outcome {
            Ok(_) => "allowed",
            Err(e) => e.reason(),
        };
        writ_metrics::global().guard_decided(label, format, started.map(|s| s.elapsed()));
        let method = method.unwrap_or("*");
        match outcome {
            Ok(Some(v)) => tracing::debug!(
                target: "writ::audit",
                event = "call_allowed",
                service = %self.0.audience,
                method,
                sub = ?v.principal.subject,
                client_id = ?v.principal.client_id,
                jti = ?v.principal.token_id,
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

    /// The decision up to the token's verification, which the caller does (waiting for keys, or
    /// not): a public method, a cached token, or a token to verify.
    fn prepare<'a>(
        &self,
        rule: &'a Rule,
        method: Option<&str>,
        presented: &Presented<'a>,
    ) -> Result<Prepared<'a>, GuardError> {
        let (scheme, token) = match rule {
            Rule::Public => return Ok(Prepared::Public),
            Rule::Deny => {
                // Authenticate first all the same: an anonymous caller learns nothing about
                // which methods exist.
                credential(presented.authorization)?;
                return Err(GuardError::MethodNotAllowed);
            }
            Rule::Scopes(_) | Rule::AnyScope(_) => credential(presented.authorization)?,
        };
        let sender = Sender {
            scheme,
            token,
            proof: presented.proof,
            htu: presented.htu,
            client_cert: presented.client_cert,
        };
        // A JWT's verdict is the token's alone (its scopes are checked on every call); a
        // Biscuit's depends on the request it is presented for, so it is cached per method and
        // rule (each holder's attenuation is a new token, hence a new entry).
        let cache_key = match TokenFormat::detect(token) {
            TokenFormat::Jwt => Some(self.0.cache.key(token)),
            TokenFormat::Biscuit if self.0.policy_dates.is_some() => {
                Some(self.0.cache.request_key(method, rule, token))
            }
            TokenFormat::Biscuit => None,
        };
        if let Some(key) = cache_key
            && let Some(v) = self.0.cache.get(key, self.0.clock.now())
        {
            return Ok(Prepared::Cached(v, sender));
        }
        Ok(Prepared::Verify { sender, cache_key })
    }

    /// The Biscuit requests to try, in order, until one is granted: one with every required
    /// scope, or for a rule satisfied by any one scope, one per scope. A JWT is verified once,
    /// without a request (its scopes are checked after).
    fn requests(
        &self,
        rule: &Rule,
        method: Option<&str>,
        token: &str,
    ) -> Vec<Option<BiscuitRequest>> {
        if TokenFormat::detect(token) == TokenFormat::Jwt {
            return vec![None];
        }
        let request = |required_scopes: Vec<String>| {
            Some(BiscuitRequest {
                service: Some(self.0.audience.clone()),
                method: method.map(str::to_owned),
                required_scopes,
                policies: self.0.biscuit_policies.clone(),
            })
        };
        match rule {
            Rule::AnyScope(any) => any.iter().map(|s| request(vec![s.clone()])).collect(),
            Rule::Scopes(all) => vec![request(all.clone())],
            Rule::Public | Rule::Deny => Vec::new(),
        }
    }

    /// Verifies `token` for `rule` with the keys known now. An unknown key is refused; with
    /// `fetch_in_background` it also starts a (rate-limited) fetch of its issuer's keys.
    fn verify(
        &self,
        rule: &Rule,
        method: Option<&str>,
        token: &str,
        fetch_in_background: bool,
    ) -> Result<Arc<Verified>, GuardError> {
        let requests = self.requests(rule, method, token);
        let mut outcome = Err(GuardError::MethodNotAllowed);
        for (i, request) in requests.iter().enumerate() {
            let result = self.0.issuers.verify(token, request.as_ref());
            if fetch_in_background && matches!(result, Err(TokenError::UnknownKey)) {
                self.0.issuers.request_refresh(token);
            }
            outcome = result
                .map(|mut token_v| {
                    if let (TokenFormat::Biscuit, Some(dates)) =
                        (token_v.format, &self.0.policy_dates)
                        && let Some(d) =
                            writ_token::first_date_from(dates, self.0.clock.now() - self.0.leeway)
                    {
                        token_v.holds_until =
                            token_v.holds_until.min(d.saturating_add(self.0.leeway));
                    }
                    Arc::new(Verified {
                        principal: Arc::new(Principal::from_verified(&token_v)),
                        token: token_v,
                        bearer: BearerToken(Arc::from(token)),
                    })
                })
                .map_err(|e| match e {
                    // Genuine, but not granting this request: the next one may be granted.
                    TokenError::Denied | TokenError::RunLimit if request.is_some() => {
                        GuardError::Denied(e)
                    }
                    e => GuardError::InvalidToken(e),
                });
            if !matches!(outcome, Err(GuardError::Denied(_))) || i + 1 == requests.len() {
                break;
            }
        }
        outcome
    }

    /// What follows verification, on every call, cached or not: revocation, then the scopes a
    /// JWT must carry.
    fn finish(
        &self,
        rule: &Rule,
        v: Arc<Verified>,
        sender: &Sender<'_>,
    ) -> Result<Option<Arc<Verified>>, GuardError> {
        self.not_revoked(&v)?;
        self.granted(rule, v, sender)
    }

    /// [`Self::finish`] where a revocation check may be awaited.
    async fn finish_awaiting(
        &self,
        rule: &Rule,
        v: Arc<Verified>,
        sender: &Sender<'_>,
    ) -> Result<Option<Arc<Verified>>, GuardError> {
        let Revocations::Awaited { check } = &self.0.revocations else {
            return self.finish(rule, v, sender);
        };
        match check.revoked_async(&TokenFacts::of(&v.token)).await {
            Ok(None) => self.granted(rule, v, sender),
            Ok(Some(kind)) => Err(GuardError::Revoked(kind)),
            Err(why) => Err(GuardError::RevocationFeedStale(why.0)),
        }
    }

    /// The scopes a JWT must carry for `rule`, then the proof a DPoP-bound token needs (last:
    /// its signature is the costliest check).
    fn granted(
        &self,
        rule: &Rule,
        v: Arc<Verified>,
        sender: &Sender<'_>,
    ) -> Result<Option<Arc<Verified>>, GuardError> {
        // Sender constraint first: a thief holding a bound token without its key or
        // certificate learns nothing of its scopes.
        self.proven(&v, sender)?;
        if v.token.format == TokenFormat::Jwt {
            let granted = match rule {
                Rule::Scopes(all) => all.iter().all(|s| v.principal.has_scope(s)),
                Rule::AnyScope(any) => any.iter().any(|s| v.principal.has_scope(s)),
                Rule::Public | Rule::Deny => false,
            };
            if !granted {
                return Err(GuardError::InsufficientScope(
                    rule.required_scopes().to_vec(),
                ));
            }
        }
        Ok(Some(v))
    }

    /// Sender constraint. A token bound to a TLS client certificate (RFC 8705 section 3,
    /// `cnf.x5t#S256`) comes over a connection that presented that certificate. A token bound to
    /// a key (RFC 9449 section 7, over gRPC as `docs/dpop-grpc.md` says: `cnf.jkt`) comes with
    /// the `DPoP` scheme and a fresh proof by that key over this call's URL and this token, used
    /// once; any other token with the `Bearer` scheme. Either one the other way is refused: a
    /// bound token is never a bearer token.
    fn proven(&self, v: &Verified, sender: &Sender<'_>) -> Result<(), GuardError> {
        let Some(cnf) = &v.token.claims.cnf else {
            return match sender.scheme {
                Scheme::Bearer => Ok(()),
                Scheme::Dpop => Err(GuardError::InvalidToken(TokenError::BadClaims(
                    "the DPoP scheme needs a token bound to a key; this one is a bearer token",
                ))),
            };
        };
        if cnf.jkt.is_none() && cnf.x5t_s256.is_none() {
            // Bound some other way (a confirmation method this guard does not know).
            return Err(GuardError::InvalidToken(TokenError::BadClaims(
                "the token is bound to a key in a way this guard cannot check",
            )));
        }
        if let Some(x5t) = &cnf.x5t_s256 {
            // Public values: no constant-time comparison needed.
            let presented = sender.client_cert.map(writ_token::certificate_thumbprint);
            if presented.as_deref() != Some(x5t.as_str()) {
                return Err(GuardError::WrongCertificate);
            }
        }
        let jkt = match (&cnf.jkt, sender.scheme) {
            // Certificate-bound tokens are presented as bearer tokens (RFC 8705 section 3).
            (None, Scheme::Bearer) => return Ok(()),
            (None, Scheme::Dpop) => {
                return Err(GuardError::InvalidToken(TokenError::BadClaims(
                    "the DPoP scheme needs a token bound to a DPoP key",
                )));
            }
            (Some(_), Scheme::Bearer) => {
                return Err(GuardError::InvalidToken(TokenError::BadClaims(
                    "the token is bound to a DPoP key: present it with the DPoP scheme and a proof",
                )));
            }
            (Some(jkt), Scheme::Dpop) => jkt.as_str(),
        };
        let proof = match sender.proof {
            Proof::None => return Err(GuardError::InvalidDpopProof("a DPoP proof is required")),
            Proof::Many => return Err(GuardError::InvalidDpopProof("more than one DPoP proof")),
            Proof::One(p) => std::str::from_utf8(p)
                .map_err(|_| GuardError::InvalidDpopProof("the DPoP proof is not text"))?,
        };
        let htu = sender.htu.ok_or(GuardError::InvalidDpopProof(
            "DPoP proofs are checked by the guard's layer only (an interceptor does not see the call's URL)",
        ))?;
        let now = self.0.clock.now();
        let rules = ProofRules {
            htm: GRPC_HTM,
            htu,
            now,
            max_age: GUARD_DPOP_MAX_AGE,
            leeway: self.0.leeway,
            access_token: Some(sender.token),
            nonce: None,
        };
        let proof = writ_token::verify_proof(proof, &rules).map_err(|e| match e {
            writ_token::DpopError::Invalid(why) => GuardError::InvalidDpopProof(why),
            writ_token::DpopError::UseNonce => {
                GuardError::InvalidDpopProof("the DPoP proof lacks a nonce")
            }
        })?;
        if proof.jkt != jkt {
            return Err(GuardError::InvalidDpopProof(
                "the DPoP proof is signed by another key than the token is bound to",
            ));
        }
        self.0
            .proofs
            .spend(
                &proof.jkt,
                &proof.jti,
                now,
                GUARD_DPOP_MAX_AGE + 2 * self.0.leeway,
            )
            .map_err(|e| match e {
                Replay::Replayed => GuardError::InvalidDpopProof("the DPoP proof was used before"),
                Replay::Full => GuardError::ProofMemoryFull,
            })
    }

    fn not_revoked(&self, v: &Verified) -> Result<(), GuardError> {
        let (check, fail_open) = match &self.0.revocations {
            Revocations::Checked { check, fail_open } => (check, fail_open),
            Revocations::Unchecked => return Ok(()),
            Revocations::Awaited { .. } => {
                return Err(GuardError::RevocationFeedStale(
                    "this guard's revocation check needs the asynchronous layer",
                ));
            }
        };
        match check.revoked(&TokenFacts::of(&v.token)) {
            Ok(None) => Ok(()),
            Ok(Some(kind)) => Err(GuardError::Revoked(kind)),
            Err(why) if *fail_open => {
                tracing::warn!(target: "writ::audit", event = "revocation_unchecked_fail_open", service = %self.0.audience, why = why.0);
                Ok(())
            }
            Err(why) => Err(GuardError::RevocationFeedStale(why.0)),
        }
    }

    /// Remembers a verdict for its cache key, if it has one.
    fn remember(&self, cache_key: Option<u128>, v: &Arc<Verified>) {
        if let Some(key) = cache_key {
            self.0.cache.insert(key, v.clone(), self.0.clock.now());
        }
    }

    /// [`Guard::verify`] for the layer: a Biscuit's Datalog runs off the runtime's workers.
    async fn verify_off_runtime(
        &self,
        rule: &Rule,
        method: Option<&str>,
        token: &str,
    ) -> Result<Arc<Verified>, GuardError> {
        if TokenFormat::detect(token) == TokenFormat::Jwt {
            return self.verify(rule, method, token, false);
        }
        let guard = self.clone();
        let (rule, method, token) = (rule.clone(), method.map(str::to_owned), token.to_owned());
        writ_token::run_off_runtime(move || guard.verify(&rule, method.as_deref(), &token, false))
            .await
            .map_err(GuardError::unverified)?
    }

    /// The decision as the layer makes it: a key not known yet makes its issuer fetch its keys
    /// (single flight, rate-limited), the call waits for that and is decided again, so a key
    /// rotation fails no request.
    async fn decide(
        &self,
        rule: &Rule,
        method: Option<&str>,
        presented: &Presented<'_>,
    ) -> Result<Option<Arc<Verified>>, GuardError> {
        let (sender, cache_key) = match self.prepare(rule, method, presented)? {
            Prepared::Public => return Ok(None),
            Prepared::Cached(v, sender) => return self.finish_awaiting(rule, v, &sender).await,
            Prepared::Verify { sender, cache_key } => (sender, cache_key),
        };
        let token = sender.token;
        let verified = match self.verify_off_runtime(rule, method, token).await {
            Err(GuardError::InvalidToken(TokenError::UnknownKey)) => {
                self.0.issuers.refresh_for(token).await;
                self.verify_off_runtime(rule, method, token).await
            }
            other => other,
        }?;
        self.remember(cache_key, &verified);
        self.finish_awaiting(rule, verified, &sender).await
    }

    /// The decision as the interceptor makes it: synchronously; a key not known yet is
    /// refused, and its issuer's keys fetched in the background. A Biscuit's Datalog runs after
    /// the worker has handed its other tasks on ([`writ_token::run_blocking`]).
    pub(crate) fn decide_without_waiting(
        &self,
        rule: &Rule,
        presented: &Presented<'_>,
    ) -> Result<Option<Arc<Verified>>, GuardError> {
        let (sender, cache_key) = match self.prepare(rule, None, presented)? {
            Prepared::Public => return Ok(None),
            Prepared::Cached(v, sender) => return self.finish(rule, v, &sender),
            Prepared::Verify { sender, cache_key } => (sender, cache_key),
        };
        let token = sender.token;
        let verified = match TokenFormat::detect(token) {
            TokenFormat::Jwt => self.verify(rule, None, token, true),
            TokenFormat::Biscuit => {
                writ_token::run_blocking(|| self.verify(rule, None, token, true))
                    .map_err(GuardError::unverified)?
            }
        }?;
        self.remember(cache_key, &verified);
        self.finish(rule, verified, &sender)
    }
}

/// How far [`Guard::prepare`] got.
enum Prepared<'a> {
    Public,
    Cached(Arc<Verified>, Sender<'a>),
    Verify {
        sender: Sender<'a>,
        cache_key: Option<u128>,
    },
}

/// The scheme and token of an `authorization: Bearer <token>` or `DPoP <token>` header.
fn credential(authorization: Option<&[u8]>) -> Result<(Scheme, &str), GuardError> {
    let value = authorization.ok_or(GuardError::MissingToken)?;
    let value = std::str::from_utf8(value).map_err(|_| GuardError::MalformedHeader)?;
    let (scheme, token) = value.split_once(' ').ok_or(GuardError::MalformedHeader)?;
    // The scheme is case-insensitive (RFC 7235).
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(GuardError::MalformedHeader);
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(GuardError::MissingToken);
    }
    Ok((scheme, token))
}

/// When to start timing a decision: one call in [`TIMING_SAMPLE`] per thread, so the latency
/// histogram costs the cached path (about a microsecond) no clock reads on the other calls.
pub(crate) fn sampled_start() -> Option<std::time::Instant> {
    thread_local! {
        static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    CALLS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        (n % TIMING_SAMPLE == 0).then(std::time::Instant::now)
    })
}

/// One decision in this many is timed (`writ_token_verification_seconds`); every one is counted.
pub(crate) const TIMING_SAMPLE: u32 = 16;

#[cfg(test)]
mod biscuit_cache_tests;
#[cfg(test)]
mod default_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schemes_are_case_insensitive_and_nothing_else_passes() {
        let bearer = |h: Option<&'static [u8]>| credential(h);
        assert_eq!(bearer(Some(b"Bearer abc")), Ok((Scheme::Bearer, "abc")));
        assert_eq!(bearer(Some(b"bearer abc")), Ok((Scheme::Bearer, "abc")));
        assert_eq!(bearer(Some(b"BEARER  abc ")), Ok((Scheme::Bearer, "abc")));
        assert_eq!(bearer(Some(b"DPoP abc")), Ok((Scheme::Dpop, "abc")));
        assert_eq!(bearer(Some(b"dpop abc")), Ok((Scheme::Dpop, "abc")));
        assert_eq!(bearer(None), Err(GuardError::MissingToken));
        assert_eq!(bearer(Some(b"Bearer ")), Err(GuardError::MissingToken));
        assert_eq!(bearer(Some(b"DPoP ")), Err(GuardError::MissingToken));
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
            (GuardError::RevocationFeedStale("stale"), Code::Unavailable),
        ];
        for (e, code) in cases {
            assert_eq!(e.to_status().code(), code, "{e:?}");
        }
    }
}
