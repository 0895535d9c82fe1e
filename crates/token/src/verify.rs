//! Verifying access tokens: the one code path every Writ service and the guard use.
//!
//! A JWT passes, in this order: a size bound; exactly three base64url segments; a header parsed
//! by `jsonwebtoken` with `typ` = `at+jwt`, no key-bearing or critical parameters (`jku`, `jwk`,
//! `x5u`, `x5c`, `crit`, ...), an allowed `alg`; a `kid` found among the trusted keys whose
//! algorithm equals `alg`; the signature, checked with the calls of `jsonwebtoken`'s rust_crypto
//! backend on a key decoded once ([`VerificationKey::verify_signature`]); then the claims, parsed
//! strictly (integers for times), against the trusted issuers, the expected audience and the
//! injected clock with a small leeway.
//!
//! A Biscuit passes when its root key id names a trusted root key, every block signature holds,
//! its attenuation blocks hold nothing but single-predicate checks, and a Datalog authorizer
//! (with run limits) fed with the time, and for a request its service, method and required
//! scopes, finds every check satisfied. [`authorize_biscuit`] is the part shared with any other
//! Biscuit: signatures, limits, checks and policies.

use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use biscuit_auth::builder::{CheckKind, Policy, Rule, check, fact, pred, string};
use biscuit_auth::{Authorizer, AuthorizerBuilder, AuthorizerLimits, Biscuit, RootKeyProvider};

use crate::biscuit::{MAX_BISCUIT_LEN, actor_chain, check_attenuation_blocks, date};
use crate::claims::{AccessClaims, MAX_NUMERIC_DATE};
use crate::clock::SharedClock;
use crate::error::TokenError;
use crate::jwt::ACCESS_TOKEN_TYP;
use crate::keys::{Algorithm, KeySet, MAX_KID_LEN, VerificationKey};
use crate::scope::Scopes;

/// The two forms of a Writ access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    Jwt,
    Biscuit,
}

impl TokenFormat {
    /// A JWT has two dots; base64url Biscuits have none.
    pub fn detect(token: &str) -> TokenFormat {
        if token.contains('.') {
            TokenFormat::Jwt
        } else {
            TokenFormat::Biscuit
        }
    }
}

/// A token that passed verification, and what it says.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub format: TokenFormat,
    /// For a Biscuit, rebuilt from its authority facts; `scope` is what the token can still use
    /// after attenuation (see [`TokenVerifier::verify_biscuit_for`] for the request variant).
    pub claims: AccessClaims,
    /// The JWT `kid`, or the Biscuit root key id in decimal.
    pub key_id: String,
    /// Biscuit block revocation ids (hex), authority block first. Empty for JWTs.
    pub revocation_ids: Vec<String>,
}

/// A JWS whose header and signature passed; its payload is not yet interpreted.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    pub header: jsonwebtoken::Header,
    pub payload: Vec<u8>,
    pub key_id: String,
}

/// The request a Biscuit is presented for.
#[derive(Debug, Clone, Default)]
pub struct BiscuitRequest {
    /// This service's name (its audience).
    pub service: Option<String>,
    /// The gRPC method path, `/package.Service/Method`.
    pub method: Option<String>,
    /// Scopes the method requires: each must be an authority `scope` no block narrowed away.
    pub required_scopes: Vec<String>,
    /// The service's own Datalog (checks and policies). Without policies, `allow if true` applies
    /// once every check passed.
    pub policies: Option<AuthorizerBuilder>,
}

/// Run limits for Biscuit authorization, so a hostile token cannot stall a verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BiscuitLimits {
    pub max_facts: u64,
    pub max_iterations: u64,
    pub max_time: Duration,
}

impl Default for BiscuitLimits {
    fn default() -> Self {
        BiscuitLimits {
            max_facts: 1000,
            max_iterations: 100,
            // Wall-clock, so it must leave room for a busy machine's scheduling; the fact and
            // iteration limits and the attenuation block rule bound the work itself.
            max_time: Duration::from_millis(25),
        }
    }
}

impl From<BiscuitLimits> for AuthorizerLimits {
    fn from(l: BiscuitLimits) -> Self {
        AuthorizerLimits {
            max_facts: l.max_facts,
            max_iterations: l.max_iterations,
            max_time: l.max_time,
        }
    }
}

/// What a verifier accepts.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// `iss` values accepted.
    pub issuers: Vec<String>,
    /// The audience this verifier stands for; `None` only for an issuer looking at its own
    /// tokens (introspection), which still requires a non-empty `aud`.
    pub audience: Option<String>,
    /// The algorithm allow-list.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: i64,
    /// Longest JWT accepted, in bytes.
    pub max_token_bytes: usize,
    /// Longest Biscuit accepted, in bytes (blocks make them grow).
    pub max_biscuit_bytes: usize,
    /// Longest lifetime (`exp - iat`) accepted, in seconds.
    pub max_lifetime: i64,
    /// Most blocks a Biscuit may carry.
    pub max_biscuit_blocks: usize,
    pub biscuit_limits: BiscuitLimits,
}

impl VerifierConfig {
    /// Secure defaults: both algorithms, 30 s leeway, 8 KiB JWTs, 16 KiB Biscuits, lifetimes up
    /// to a day.
    pub fn new(issuers: Vec<String>, audience: Option<String>) -> Self {
        VerifierConfig {
            issuers,
            audience,
            algorithms: Algorithm::ALL.to_vec(),
            leeway: 30,
            max_token_bytes: 8 * 1024,
            max_biscuit_bytes: MAX_BISCUIT_LEN,
            max_lifetime: 24 * 3600,
            max_biscuit_blocks: 16,
            biscuit_limits: BiscuitLimits::default(),
        }
    }
}

/// Verifies JWT and Biscuit access tokens against trusted keys. The key set can be replaced at
/// any time (rotation, refresh) without blocking verification for long.
#[derive(Debug)]
pub struct TokenVerifier {
    config: VerifierConfig,
    keys: RwLock<Arc<KeySet>>,
    clock: SharedClock,
}

static CLAIMS_RULE: LazyLock<Rule> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Rule::try_from(
        "claims($iss, $sub, $client, $jti, $gid, $iat, $exp) <- issuer($iss), subject($sub), \
         client($client), token_id($jti), grant_id($gid), issued_at($iat), expires_at($exp)",
    )
    .expect("static rule parses")
});
static AUDIENCE_RULE: LazyLock<Rule> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Rule::try_from("aud($a) <- audience($a)").expect("static rule parses")
});
static SCOPE_RULE: LazyLock<Rule> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Rule::try_from("scopes($s) <- scope($s)").expect("static rule parses")
});
static ACTOR_RULE: LazyLock<Rule> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Rule::try_from("actors($d, $s, $c) <- actor($d, $s, $c)").expect("static rule parses")
});
static ALLOW_ALL: LazyLock<Policy> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Policy::try_from("allow if true").expect("static policy parses")
});

type ClaimsRow = (
    String,
    String,
    String,
    String,
    String,
    std::time::SystemTime,
    std::time::SystemTime,
);

impl TokenVerifier {
    pub fn new(config: VerifierConfig, keys: KeySet, clock: SharedClock) -> Self {
        TokenVerifier {
            config,
            keys: RwLock::new(Arc::new(keys)),
            clock,
        }
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Replaces the trusted keys.
    pub fn set_keys(&self, keys: KeySet) {
        let mut guard = self.keys.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(keys);
    }

    /// Replaces the trusted keys with a shared set (no copy).
    pub fn set_shared_keys(&self, keys: Arc<KeySet>) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    /// The trusted keys now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Verifies a token of either form, told apart by its shape.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        match TokenFormat::detect(token) {
            TokenFormat::Jwt => self.verify_jwt(token),
            TokenFormat::Biscuit => self.verify_biscuit(token),
        }
    }

    /// Verifies a JWT access token: header, key, signature and claims.
    pub fn verify_jwt(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let jws = self.check_jws(token, true)?;
        let claims: AccessClaims = serde_json::from_slice(&jws.payload)
            .map_err(|_| TokenError::BadClaims("claims are not a valid RFC 9068 claim set"))?;
        self.check_claims(&claims)?;
        Ok(VerifiedToken {
            format: TokenFormat::Jwt,
            claims,
            key_id: jws.key_id,
            revocation_ids: Vec::new(),
        })
    }

    /// Checks a compact JWS's structure, header policy, key and signature, but neither `typ`
    /// nor the payload. For conformance vectors; access tokens go through
    /// [`TokenVerifier::verify_jwt`].
    pub fn verify_jws(&self, token: &str) -> Result<VerifiedJws, TokenError> {
        self.check_jws(token, false)
    }

    fn check_jws(&self, token: &str, access_token: bool) -> Result<VerifiedJws, TokenError> {
        if token.len() > self.config.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("a JWS has exactly three segments"));
        };
        let b64url = |seg: &str| {
            seg.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if h.is_empty() || s.is_empty() || !b64url(h) || !b64url(p) || !b64url(s) {
            return Err(TokenError::Malformed("segments are not base64url"));
        }

        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Malformed("header is not a JOSE header Writ accepts"))?;
        if access_token {
            let typ_ok = header.typ.as_deref().is_some_and(|t| {
                t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP)
                    || t.eq_ignore_ascii_case("application/at+jwt")
            });
            if !typ_ok {
                return Err(TokenError::WrongType);
            }
        }
        // Keys named by the token are never fetched nor trusted; extensions are not understood.
        if header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
            || header.cty.is_some()
            || header.enc.is_some()
            || header.zip.is_some()
            || header.extras.inner().contains_key("b64")
        {
            return Err(TokenError::ForbiddenHeader);
        }
        let alg = Algorithm::from_jose(header.alg)
            .filter(|a| self.config.algorithms.contains(a))
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        if kid.len() > MAX_KID_LEN {
            return Err(TokenError::UnknownKey);
        }
        let keys = self.keys();
        let key: &VerificationKey = keys.jwt_key(kid).ok_or(TokenError::UnknownKey)?;
        if key.alg() != alg {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let signed_len = h.len() + 1 + p.len();
        if !key.verify_signature(&token.as_bytes()[..signed_len], s) {
            return Err(TokenError::BadSignature);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
        Ok(VerifiedJws {
            key_id: kid.to_owned(),
            header,
            payload,
        })
    }

    /// The claim checks shared by both forms.
    fn check_claims(&self, c: &AccessClaims) -> Result<(), TokenError> {
        let in_range = |t: i64| (0..=MAX_NUMERIC_DATE).contains(&t);
        if !in_range(c.exp) || !in_range(c.iat) || c.nbf.is_some_and(|n| !in_range(n)) {
            return Err(TokenError::BadClaims("time claims out of range"));
        }
        if c.sub.is_empty() || c.jti.is_empty() || c.client_id.is_empty() {
            return Err(TokenError::BadClaims("sub, jti and client_id are required"));
        }
        if !self.config.issuers.iter().any(|i| i == &c.iss) {
            return Err(TokenError::WrongIssuer);
        }
        if c.aud.is_empty() || c.aud.iter().any(String::is_empty) {
            return Err(TokenError::WrongAudience);
        }
        if let Some(expected) = &self.config.audience
            && !c.aud.iter().any(|a| a == expected)
        {
            return Err(TokenError::WrongAudience);
        }
        if c.exp <= c.iat {
            return Err(TokenError::BadClaims("exp must follow iat"));
        }
        if c.exp - c.iat > self.config.max_lifetime {
            return Err(TokenError::LifetimeTooLong);
        }
        let now = self.clock.now();
        let leeway = self.config.leeway;
        if now >= c.exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if c.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway))
            || c.iat > now.saturating_add(leeway)
        {
            return Err(TokenError::NotYetValid);
        }
        Scopes::parse(&c.scope).map_err(|_| TokenError::BadClaims("scope"))?;
        Ok(())
    }

    /// Verifies a Biscuit on its own (no request): keys, signatures, expiry and every block's
    /// checks. `claims.scope` holds the scopes attenuation left usable.
    pub fn verify_biscuit(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let (biscuit, mut verified) = self.check_biscuit(token, None)?;
        if biscuit.block_count() > 1 {
            let usable: Vec<String> = verified
                .claims
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .filter(|s| self.biscuit_grants_scope(&biscuit, s))
                .map(str::to_owned)
                .collect();
            verified.claims.scope = usable.join(" ");
        }
        Ok(verified)
    }

    /// Verifies a Biscuit for one request: it must pass the service's policies with the
    /// request's facts. `claims.scope` holds the authority scopes if the token is not
    /// attenuated, otherwise only the required scopes just proven usable.
    pub fn verify_biscuit_for(
        &self,
        token: &str,
        request: &BiscuitRequest,
    ) -> Result<VerifiedToken, TokenError> {
        let (biscuit, mut verified) = self.check_biscuit(token, Some(request))?;
        if biscuit.block_count() > 1 {
            verified.claims.scope = request.required_scopes.join(" ");
        }
        Ok(verified)
    }

    fn biscuit_grants_scope(&self, biscuit: &Biscuit, scope: &str) -> bool {
        let request = BiscuitRequest {
            required_scopes: vec![scope.to_owned()],
            ..BiscuitRequest::default()
        };
        self.authorizer(&request_facts(Some(&request)), self.clock.now())
            .and_then(|b| {
                b.set_limits(self.config.biscuit_limits.into())
                    .build(biscuit)
                    .map_err(|_| TokenError::Denied)
            })
            .and_then(|mut a| a.authorize().map(|_| ()).map_err(map_authorize_error))
            .is_ok()
    }

    fn authorizer(
        &self,
        request: &RequestFacts,
        now: i64,
    ) -> Result<AuthorizerBuilder, TokenError> {
        // The Datalog clock lags by the leeway, so a Biscuit's expiry checks (the authority's and
        // any an attenuation added) tolerate the same clock skew as a JWT's `exp`; the claim
        // check still reports Expired at `exp + leeway`, as for a JWT.
        let mut builder = AuthorizerBuilder::new()
            .fact(fact("time", &[date(now - self.config.leeway)]))
            .map_err(|_| TokenError::Build("authorizer"))?;
        for f in &request.facts {
            builder = builder
                .fact(f.clone())
                .map_err(|_| TokenError::Build("authorizer"))?;
        }
        for s in &request.required_scopes {
            builder = builder
                .check(check(&[pred("scope", &[string(s)])], CheckKind::One))
                .map_err(|_| TokenError::Build("authorizer"))?;
        }
        match &request.policies {
            Some(policies) => Ok(builder.merge(policies.clone())),
            None => builder
                .policy(ALLOW_ALL.clone())
                .map_err(|_| TokenError::Build("authorizer")),
        }
    }

    fn check_biscuit(
        &self,
        token: &str,
        request: Option<&BiscuitRequest>,
    ) -> Result<(Biscuit, VerifiedToken), TokenError> {
        if token.len() > self.config.max_biscuit_bytes {
            return Err(TokenError::TooLarge);
        }
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        {
            return Err(TokenError::Malformed("a Biscuit is base64url"));
        }
        let keys = self.keys();
        let root = |id: Option<u32>| {
            id.and_then(|id| keys.biscuit_key(id))
                .map(|k| k.key())
                .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
        };
        let policies = self.authorizer(&request_facts(request), self.clock.now())?;
        authorize_biscuit(
            token,
            root,
            policies,
            self.config.biscuit_limits,
            |biscuit, authorizer| self.biscuit_claims(biscuit, authorizer),
        )
    }

    /// Writ's reading of a Biscuit whose signatures hold: its shape, then its identity facts
    /// (the world runs here, within the run limits), checked like a JWT's claims.
    fn biscuit_claims(
        &self,
        biscuit: &Biscuit,
        authorizer: &mut Authorizer,
    ) -> Result<VerifiedToken, TokenError> {
        if biscuit.block_count() > self.config.max_biscuit_blocks {
            return Err(TokenError::TooLarge);
        }
        let root_id = biscuit.root_key_id().ok_or(TokenError::UnknownKey)?;
        // Before any Datalog runs: a block anyone may append must not be able to stall us.
        check_attenuation_blocks(biscuit)?;

        let mut rows: Vec<ClaimsRow> = authorizer
            .query(CLAIMS_RULE.clone())
            .map_err(map_authorize_error)?;
        if rows.len() != 1 {
            return Err(TokenError::BadClaims(
                "a Biscuit needs exactly one of each identity fact",
            ));
        }
        let (iss, sub, client_id, jti, gid, iat, exp) = rows.remove(0);
        let aud: Vec<(String,)> = authorizer
            .query(AUDIENCE_RULE.clone())
            .map_err(map_authorize_error)?;
        let mut scopes: Vec<(String,)> = authorizer
            .query(SCOPE_RULE.clone())
            .map_err(map_authorize_error)?;
        scopes.sort();
        let actors: Vec<(i64, String, String)> = authorizer
            .query(ACTOR_RULE.clone())
            .map_err(map_authorize_error)?;
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs().min(i64::MAX as u64) as i64)
                .unwrap_or(0)
        };
        let claims = AccessClaims {
            iss,
            sub,
            aud: aud.into_iter().map(|a| a.0).collect(),
            exp: secs(exp),
            iat: secs(iat),
            nbf: None,
            jti,
            client_id,
            scope: scopes
                .into_iter()
                .map(|s| s.0)
                .collect::<Vec<_>>()
                .join(" "),
            gid: Some(gid),
            act: actor_chain(actors),
            may_act: None,
        };
        self.check_claims(&claims)?;
        Ok(VerifiedToken {
            format: TokenFormat::Biscuit,
            claims,
            key_id: root_id.to_string(),
            revocation_ids: biscuit
                .revocation_identifiers()
                .iter()
                .map(hex::encode)
                .collect(),
        })
    }
}

/// Writ's Biscuit core, the one path [`TokenVerifier`] and the specification samples share:
/// decodes `token` (base64url, as it travels), checks every block's signature back to the root
/// key `root` chooses, loads the token into `policies` (the verifier's facts, checks and
/// policies) under `limits`, and finally applies every check and policy.
///
/// `inspect` runs in between: after the token is loaded and before checks and policies apply.
/// The verifier reads the identity claims there (the Datalog world runs on the first query,
/// within `limits`), so that an expired token says [`TokenError::Expired`], not just
/// [`TokenError::Denied`]. Pass `|_, _| Ok(())` to only authorize.
pub fn authorize_biscuit<T>(
    token: &str,
    root: impl RootKeyProvider,
    policies: AuthorizerBuilder,
    limits: BiscuitLimits,
    inspect: impl FnOnce(&Biscuit, &mut Authorizer) -> Result<T, TokenError>,
) -> Result<(Biscuit, T), TokenError> {
    let biscuit = Biscuit::from_base64(token, root).map_err(map_parse_error)?;
    let mut authorizer = policies
        .set_limits(limits.into())
        .build(&biscuit)
        .map_err(map_authorize_error)?;
    let inspected = inspect(&biscuit, &mut authorizer)?;
    authorizer.authorize().map_err(map_authorize_error)?;
    Ok((biscuit, inspected))
}

/// The request, as authorizer facts and checks.
struct RequestFacts {
    facts: Vec<biscuit_auth::builder::Fact>,
    required_scopes: Vec<String>,
    policies: Option<AuthorizerBuilder>,
}

fn request_facts(request: Option<&BiscuitRequest>) -> RequestFacts {
    let mut facts = Vec::new();
    let Some(r) = request else {
        return RequestFacts {
            facts,
            required_scopes: Vec::new(),
            policies: None,
        };
    };
    if let Some(s) = &r.service {
        facts.push(fact("service", &[string(s)]));
    }
    if let Some(m) = &r.method {
        facts.push(fact("method", &[string(m)]));
    }
    for s in &r.required_scopes {
        facts.push(fact("required_scope", &[string(s)]));
    }
    RequestFacts {
        facts,
        required_scopes: r.required_scopes.clone(),
        policies: r.policies.clone(),
    }
}

fn map_parse_error(e: biscuit_auth::error::Token) -> TokenError {
    use biscuit_auth::error::{Format, Token};
    match e {
        Token::Format(Format::UnknownPublicKey) => TokenError::UnknownKey,
        Token::Format(Format::Signature(_) | Format::SealedSignature) => TokenError::BadSignature,
        Token::Base64(_) => TokenError::Malformed("a Biscuit is base64url"),
        _ => TokenError::Malformed("not a Biscuit"),
    }
}

fn map_authorize_error(e: biscuit_auth::error::Token) -> TokenError {
    match e {
        biscuit_auth::error::Token::RunLimit(_) => TokenError::RunLimit,
        _ => TokenError::Denied,
    }
}
