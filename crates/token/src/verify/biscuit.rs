//! The Biscuit half of [`TokenVerifier`], and Writ's Biscuit core ([`authorize_biscuit`]).

use std::sync::LazyLock;

use biscuit_auth::builder::{CheckKind, Policy, Rule, check, fact, pred, string};
use biscuit_auth::{Authorizer, AuthorizerBuilder, Biscuit, RootKeyProvider};

use super::{BiscuitLimits, BiscuitRequest, TokenFormat, TokenVerifier, VerifiedToken};
use crate::biscuit::{actor_chain, date, decode_biscuit_base64};
use crate::claims::AccessClaims;
use crate::error::TokenError;
use crate::holder::{BiscuitShape, inspect_biscuit};

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
        let bytes = decode_biscuit_base64(token)?;
        // Before any signature is checked or any Datalog runs: a block anyone may append must
        // not be able to stall us, and the block count is bounded first.
        let shape = inspect_biscuit(&bytes, self.config.max_biscuit_blocks)?;
        let keys = self.keys();
        let root = |id: Option<u32>| {
            id.and_then(|id| keys.biscuit_key(id))
                .map(|k| k.key())
                .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
        };
        let now = self.clock.now();
        let policies = self.authorizer(&request_facts(request), now)?;
        authorize_biscuit(
            &bytes,
            root,
            policies,
            self.config.biscuit_limits,
            |biscuit, authorizer| self.biscuit_claims(biscuit, authorizer, &shape, now),
        )
    }

    /// Writ's reading of a Biscuit whose signatures hold: its shape, then its identity facts
    /// (the world runs here, within the run limits), checked like a JWT's claims.
    fn biscuit_claims(
        &self,
        biscuit: &Biscuit,
        authorizer: &mut Authorizer,
        shape: &BiscuitShape,
        now: i64,
    ) -> Result<VerifiedToken, TokenError> {
        let root_id = biscuit.root_key_id().ok_or(TokenError::UnknownKey)?;

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
            cnf: None,
        };
        self.check_claims(&claims)?;
        // The Datalog clock reads `now - leeway` (see `authorizer`); the verdict stands until it
        // reaches the first date the token compares against.
        let leeway = self.config.leeway;
        let holds_until = shape
            .first_date_from(now - leeway)
            .map_or(claims.exp, |d| d.saturating_add(leeway).min(claims.exp));
        Ok(VerifiedToken {
            format: TokenFormat::Biscuit,
            holds_until,
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
/// decodes `token` (the Biscuit's bytes), checks every block's signature back to the root
/// key `root` chooses, loads the token into `policies` (the verifier's facts, checks and
/// policies) under `limits`, and finally applies every check and policy.
///
/// `inspect` runs in between: after the token is loaded and before checks and policies apply.
/// The verifier reads the identity claims there (the Datalog world runs on the first query,
/// within `limits`), so that an expired token says [`TokenError::Expired`], not just
/// [`TokenError::Denied`]. Pass `|_, _| Ok(())` to only authorize.
pub fn authorize_biscuit<T>(
    token: &[u8],
    root: impl RootKeyProvider,
    policies: AuthorizerBuilder,
    limits: BiscuitLimits,
    inspect: impl FnOnce(&Biscuit, &mut Authorizer) -> Result<T, TokenError>,
) -> Result<(Biscuit, T), TokenError> {
    let biscuit = Biscuit::from(token, root).map_err(map_parse_error)?;
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
