//! The exchange engine: gathers what the rules decide over (the authenticated caller, its
//! policies, the verified tokens, the time), applies them (`rules::decide`), mints what they
//! decided with the STS's own keys, and audits every decision.

use std::sync::Arc;

use writ_token::{
    AsyncRevocationCheck, IssuerKeys, SharedClock, TokenError, TokenFacts, TokenFormat,
    TrustedIssuer, TrustedIssuers, VerifiedToken, VerifierConfig, attenuate, encode_access_token,
    mint_biscuit, random_id,
};
use writ_vocabulary::grant_type::TOKEN_EXCHANGE;
use writ_vocabulary::token_type;

use crate::error::{Cause, ExchangeError, Result, TokenRole};
use crate::ports::{Credentials, Directory};
use crate::request::{self, ExchangeRequest, ExchangeResponse, PresentedType};
use crate::rules::{self, Decision, Inputs, Minted};
use crate::{Config, Metadata};

/// Longest JWT accepted as a subject or actor token, in bytes.
pub const MAX_JWT_LEN: usize = 8 * 1024;

/// The token exchange engine. Transport-agnostic: the gRPC service and the HTTP facade call
/// [`TokenExchange::exchange`].
#[derive(Debug)]
pub struct TokenExchange {
    config: Config,
    clock: SharedClock,
    keys: Arc<dyn IssuerKeys>,
    issuers: TrustedIssuers,
    /// The same issuers without the time rules: used only to learn, of a token refused as
    /// expired (or not yet valid), whether the caller may be told so.
    timeless: TrustedIssuers,
    /// The issuers whose tokens may be actor tokens: Writ's authorization server(s), which
    /// authenticate Writ's clients. Not the STS itself (its tokens speak for someone else) nor
    /// an external issuer (its client ids are not Writ's).
    actor_issuers: Vec<String>,
    directory: Arc<dyn Directory>,
    revocations: Arc<dyn AsyncRevocationCheck>,
    audit: writ_audit::Auditor,
}

impl TokenExchange {
    /// The engine signing with `keys` (the STS's own, in its own store), trusting `issuers` and
    /// itself, learning callers and policies from `directory`, refusing what `revocations`
    /// revokes (or cannot vouch for).
    pub fn new(
        config: Config,
        clock: SharedClock,
        keys: Arc<dyn IssuerKeys>,
        directory: Arc<dyn Directory>,
        revocations: Arc<dyn AsyncRevocationCheck>,
        issuers: Vec<TrustedIssuer>,
        audit: writ_audit::Auditor,
    ) -> Result<Self> {
        // Its own tokens can be exchanged again (the next hop of a chain).
        let own: Arc<dyn writ_token::KeySource> = Arc::new(OwnKeys(keys.clone()));
        let mut all = vec![TrustedIssuer::new(config.issuer.clone(), own)];
        let actor_issuers = issuers
            .iter()
            .filter(|i| i.biscuits)
            .map(|i| i.issuer.clone())
            .collect();
        for i in issuers {
            if all.iter().any(|t| t.issuer == i.issuer) {
                return Err(ExchangeError::InvalidRequest("an issuer is trusted twice"));
            }
            all.push(i);
        }
        let verifier = VerifierConfig {
            leeway: config.leeway,
            max_token_bytes: MAX_JWT_LEN,
            // The audience is checked by the rules (who may present the token), not here: a
            // subject token is addressed to the service presenting it.
            ..VerifierConfig::new(Vec::new(), None)
        };
        let timeless = TrustedIssuers::new(
            all.clone(),
            VerifierConfig {
                // A century of leeway: no token is expired or not yet valid.
                leeway: 100 * 366 * 24 * 3600,
                ..verifier.clone()
            },
            clock.clone(),
        );
        let issuers = TrustedIssuers::new(all, verifier, clock.clone());
        tracing::info!(issuers = ?issuers.names().collect::<Vec<_>>(), "token exchange trusts");
        Ok(TokenExchange {
            config,
            clock,
            keys,
            issuers,
            timeless,
            actor_issuers,
            directory,
            revocations,
            audit,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// RFC 8414 metadata. HTTP endpoints hang off the issuer URL.
    pub fn metadata(&self) -> Metadata {
        let base = self.config.issuer.trim_end_matches('/');
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Metadata {
            issuer: self.config.issuer.clone(),
            token_endpoint: format!("{base}/oauth2/token"),
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            biscuit_keys_uri: format!("{base}/.well-known/biscuit-keys.json"),
            grant_types_supported: strings(&[TOKEN_EXCHANGE]),
            token_endpoint_auth_methods_supported: strings(&[
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ]),
            token_types_supported: strings(&[
                token_type::JWT,
                token_type::ACCESS_TOKEN,
                token_type::BISCUIT,
            ]),
        }
    }

    /// RFC 8693 section 2: exchanges a subject token for a narrower token. Every decision is
    /// one audit record: `token_exchanged` (subject, actor chain, audience, the lineage's grant
    /// id), durable before the token goes out, or `token_exchange_refused` with the reason.
    pub async fn exchange(&self, req: ExchangeRequest) -> Result<ExchangeResponse> {
        let mut req = req;
        // A request authenticated by an assertion alone names its client there (verified below:
        // `iss` and `sub` must both be it).
        if req.client_id.is_empty() && !req.client_assertion.is_empty() {
            req.client_id = writ_token::assertion_subject(&req.client_assertion)
                .filter(|s| s.len() <= request::MAX_ID_LEN)
                .unwrap_or_default();
        }
        match self.decide(&req).await {
            Ok((response, d, subject)) => {
                let c = &d.claims;
                let event = writ_audit::Event::new("token_exchanged", writ_audit::Outcome::Success)
                    .actor(&c.client_id)
                    .client(&c.client_id)
                    .subject(&c.sub)
                    .gid(c.gid.as_deref().unwrap_or(""))
                    .audience(&c.aud)
                    .detail("policy_id", &d.policy_id)
                    .detail("subject_iss", &subject.claims.iss)
                    .detail("subject_jti", &subject.claims.jti)
                    .detail("jti", &c.jti)
                    .detail("scope", &c.scope)
                    .detail("mode", format!("{:?}", d.mode))
                    .detail(
                        "act",
                        c.act.as_ref().map(|a| format!("{a:?}")).unwrap_or_default(),
                    )
                    .detail(
                        "act_depth",
                        c.act.as_ref().map_or(0, writ_token::Actor::depth),
                    )
                    .detail("minted", format!("{:?}", d.minted))
                    .detail("expires_in", response.expires_in);
                self.audit
                    .record(event)
                    .await
                    .map_err(|_| ExchangeError::Unavailable("the audit log is unavailable"))?;
                Ok(response)
            }
            Err(e) => {
                // A server failure's detail is logged where it is answered (writ_proto::refusal).
                let event =
                    writ_audit::Event::new("token_exchange_refused", writ_audit::Outcome::Refused)
                        .actor(&req.client_id)
                        .client(&req.client_id)
                        .reason(e.oauth_code())
                        .detail("cause", e.cause().unwrap_or(""));
                if let Err(a) = self.audit.record(event).await {
                    tracing::error!(error = %a, "a refusal could not be recorded in the audit log");
                }
                Err(e)
            }
        }
    }

    async fn decide(
        &self,
        req: &ExchangeRequest,
    ) -> Result<(ExchangeResponse, Decision, VerifiedToken)> {
        request::check_envelope(req)?;
        // Client authentication first: nothing about the request is looked at for a caller who
        // is not one.
        if req.client_id.is_empty() {
            return Err(ExchangeError::InvalidClient);
        }
        let assertion = !req.client_assertion.is_empty() || !req.client_assertion_type.is_empty();
        if assertion && !req.client_secret.is_empty() {
            return Err(ExchangeError::InvalidRequest(
                "use one client authentication method",
            ));
        }
        if assertion && (req.client_assertion.is_empty() || req.client_assertion_type.is_empty()) {
            return Err(ExchangeError::InvalidRequest(
                "client_assertion and client_assertion_type go together",
            ));
        }
        let base = self.config.issuer.trim_end_matches('/');
        let audiences = [self.config.issuer.clone(), format!("{base}/oauth2/token")];
        self.directory
            .authenticate(Credentials {
                client_id: &req.client_id,
                client_secret: &req.client_secret,
                client_assertion_type: &req.client_assertion_type,
                client_assertion: &req.client_assertion,
                audiences: &audiences,
            })
            .await?;
        let caller = req.client_id.as_str();
        let params = request::params(req)?;

        let mut policies = self.directory.policies(caller).await?;
        if policies.is_empty() {
            return Err(ExchangeError::UnauthorizedClient(
                "the client may not exchange tokens",
            ));
        }
        policies.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));

        // The tokens: trusted issuer, signature, type, times, not revoked.
        let subject = self
            .verify(
                caller,
                TokenRole::Subject,
                &req.subject_token,
                params.subject_type,
            )
            .await?;
        let actor = match params.actor_type {
            Some(t) => Some(
                self.verify(caller, TokenRole::Actor, &req.actor_token, t)
                    .await?,
            ),
            None => None,
        };

        let now = self.clock.now();
        let decision = rules::decide(Inputs {
            caller,
            policies: &policies,
            params: &params,
            subject: &subject,
            actor: actor.as_ref(),
            writ_issuers: &self.actor_issuers,
            config: &self.config,
            now,
            jti: random_id(),
        })?;

        let (jwt_key, root_key) = self.keys.signing();
        let access_token = match (&decision.minted, &decision.attenuation) {
            (Minted::AttenuatedBiscuit, Some(attenuation)) => {
                attenuate(&req.subject_token, attenuation)?
            }
            (Minted::Biscuit, _) => mint_biscuit(&root_key, &decision.claims)?,
            (Minted::Jwt, _) => encode_access_token(&jwt_key, &decision.claims)?,
            (Minted::AttenuatedBiscuit, None) => {
                return Err(ExchangeError::Internal("an attenuation without its block"));
            }
        };
        let response = ExchangeResponse {
            access_token,
            issued_token_type: params.issued_type,
            token_type: token_type::BEARER,
            expires_in: decision.claims.exp - now,
            scope: decision.claims.scope.clone(),
        };
        Ok((response, decision, subject))
    }

    /// A subject or actor token, verified by its issuer and checked against revocations. Whether
    /// it expired or was revoked is told only to a caller who may present it: anyone else
    /// learns that it is not theirs, and nothing about its status.
    async fn verify(
        &self,
        caller: &str,
        role: TokenRole,
        token: &str,
        presented: PresentedType,
    ) -> Result<VerifiedToken> {
        let refuse = |cause| ExchangeError::Rejected { role, cause };
        let not_theirs = || {
            refuse(match role {
                TokenRole::Subject => Cause::NotForCaller,
                TokenRole::Actor => Cause::ActorNotCaller,
            })
        };
        if !presented.admits(TokenFormat::detect(token)) {
            return Err(refuse(Cause::TypeMismatch));
        }
        let verified = match self.issuers.verify_refreshing(token, None).await {
            Ok(v) => v,
            Err(TokenError::Overloaded) => {
                return Err(ExchangeError::Unavailable(
                    "too many tokens waiting to be verified",
                ));
            }
            Err(e @ (TokenError::Expired | TokenError::NotYetValid)) => {
                // Genuine but out of its time: read once more without the time rules, only to
                // learn whether this caller may be told so.
                return Err(match self.timeless.verify_off_runtime(token, None).await {
                    Ok(v) if !presentable(role, &v.claims, caller) => not_theirs(),
                    _ => refuse(Cause::from(e)),
                });
            }
            Err(e) => return Err(refuse(Cause::from(e))),
        };
        if !presentable(role, &verified.claims, caller) {
            return Err(not_theirs());
        }
        // A check that cannot vouch (a stale feed) fails closed: nothing is issued.
        let revoked = self
            .revocations
            .revoked_async(&TokenFacts::of(&verified))
            .await
            .map_err(|why| ExchangeError::Unavailable(why.0))?;
        match revoked {
            None => Ok(verified),
            Some(kind) => Err(refuse(Cause::Revoked(kind))),
        }
    }
}

/// Whether `caller` may present a token with these claims at all (the rules decide how far):
/// a subject token addressed to it or issued to it; an actor token issued to it.
fn presentable(role: TokenRole, c: &writ_token::AccessClaims, caller: &str) -> bool {
    match role {
        TokenRole::Subject => c.client_id == caller || c.aud.iter().any(|a| a == caller),
        TokenRole::Actor => c.client_id == caller,
    }
}

/// The STS's own public keys, as the key source of its own issuer.
#[derive(Debug)]
struct OwnKeys(Arc<dyn IssuerKeys>);

impl writ_token::KeySource for OwnKeys {
    fn keys(&self) -> Arc<writ_token::KeySet> {
        self.0.keys()
    }
}
