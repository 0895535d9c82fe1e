//! The exchange itself: one request in, one narrower token (or one refusal) out.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use writ_keyring::{KeyState, Keyring, KeyringConfig};
use writ_store::Store;
use writ_token::{
    AccessClaims, Actor, Attenuation, BiscuitPublicKey, KeySet, MAX_BISCUIT_LEN, MAX_SCOPE_LEN,
    RevocationCheck, Scopes, SharedClock, TokenFacts, TokenFormat, TrustedIssuer, TrustedIssuers,
    VerificationKey, VerifiedToken, VerifierConfig, attenuate, encode_access_token, mint_biscuit,
    random_id,
};

use crate::error::{Cause, ExchangeError, Result, TokenRole};
use crate::ports::{Directory, ExchangePolicy};
use writ_vocabulary::grant_type::TOKEN_EXCHANGE as GRANT_TYPE;
use writ_vocabulary::token_type;

use crate::{Config, Metadata};

/// Longest identifier (client id, audience, resource) accepted.
pub const MAX_ID_LEN: usize = 128;
/// Most audiences and resources in one request.
pub const MAX_TARGETS: usize = 16;
/// Longest JWT accepted as a subject or actor token, in bytes.
pub const MAX_JWT_LEN: usize = 8 * 1024;

/// RFC 8693 section 2.1, with the RFC's parameter names.
#[derive(Debug, Clone, Default)]
pub struct ExchangeRequest {
    pub grant_type: String,
    pub client_id: String,
    pub client_secret: String,
    pub audience: Vec<String>,
    pub resource: Vec<String>,
    pub scope: String,
    pub requested_token_type: String,
    pub subject_token: String,
    pub subject_token_type: String,
    pub actor_token: String,
    pub actor_token_type: String,
}

/// RFC 8693 section 2.2.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeResponse {
    pub access_token: String,
    pub issued_token_type: &'static str,
    /// "Bearer".
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

/// How the issued token relates to the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The actor is recorded in `act`, the subject's chain nested under it.
    Delegation,
    /// No new actor: the token speaks for the subject alone (its existing chain kept).
    Impersonation,
}

/// How the issued token was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Minted {
    Jwt,
    Biscuit,
    /// The subject Biscuit with one more block narrowing it (root signature kept).
    AttenuatedBiscuit,
}

/// What a `*_token_type` parameter admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PresentedType {
    Jwt,
    Biscuit,
    /// An access token of either form.
    AccessToken,
}

impl PresentedType {
    fn parse(uri: &str) -> Result<PresentedType, Cause> {
        match uri {
            token_type::JWT => Ok(PresentedType::Jwt),
            token_type::ACCESS_TOKEN => Ok(PresentedType::AccessToken),
            token_type::BISCUIT => Ok(PresentedType::Biscuit),
            // Refresh tokens, ID tokens, SAML assertions and anything unknown: never exchanged.
            _ => Err(Cause::UnsupportedType),
        }
    }

    fn admits(self, format: TokenFormat) -> bool {
        matches!(
            (self, format),
            (PresentedType::AccessToken, _)
                | (PresentedType::Jwt, TokenFormat::Jwt)
                | (PresentedType::Biscuit, TokenFormat::Biscuit)
        )
    }
}

/// How the subject token reached the calling client, which decides the audiences it may be
/// exchanged for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    /// `aud` names the caller (it received the token as a service), or names the STS and the
    /// token was issued to the caller: any audience the caller's policy allows.
    Addressed,
    /// Issued to the caller (`client_id`) for other audiences: a re-exchange may only narrow
    /// them.
    Own,
}

/// What was decided, for the audit log.
struct Decision {
    policy_id: String,
    mode: Mode,
    minted: Minted,
    claims: AccessClaims,
    subject_iss: String,
    subject_jti: String,
}

/// The token exchange engine. Transport-agnostic: the gRPC service and the HTTP facade call
/// [`TokenExchange::exchange`].
#[derive(Debug)]
pub struct TokenExchange {
    config: Config,
    clock: SharedClock,
    keys: Arc<Keyring>,
    issuers: TrustedIssuers,
    directory: Arc<dyn Directory>,
    revocations: Arc<dyn RevocationCheck>,
}

impl TokenExchange {
    /// Opens the engine: loads (or on a first start generates and durably stores) its signing
    /// keys in `store`, and trusts `issuers` plus itself.
    pub async fn open(
        store: Arc<dyn Store>,
        config: Config,
        clock: SharedClock,
        directory: Arc<dyn Directory>,
        revocations: Arc<dyn RevocationCheck>,
        issuers: Vec<TrustedIssuer>,
    ) -> Result<Self> {
        let keys = Arc::new(Keyring::load(store, clock.now(), KeyringConfig::STS).await?);
        // Its own tokens can be exchanged again (the next hop of a chain).
        let mut all = vec![TrustedIssuer::new(config.issuer.clone(), keys.clone())];
        for i in issuers {
            if all.iter().any(|t| t.issuer == i.issuer) {
                return Err(ExchangeError::InvalidRequest("an issuer is trusted twice"));
            }
            all.push(i);
        }
        let issuers = TrustedIssuers::new(
            all,
            VerifierConfig {
                leeway: config.leeway,
                max_token_bytes: MAX_JWT_LEN,
                // The audience is checked by the exchange rules (who may present the token), not
                // here: a subject token is addressed to the service presenting it.
                ..VerifierConfig::new(Vec::new(), None)
            },
            clock.clone(),
        );
        tracing::info!(issuers = ?issuers.names().collect::<Vec<_>>(), "token exchange trusts");
        Ok(TokenExchange {
            config,
            clock,
            keys,
            issuers,
            directory,
            revocations,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The signing keys in use.
    pub fn key_state(&self) -> Arc<KeyState> {
        self.keys.state()
    }

    /// The public keys that verify the tokens this STS issues now.
    pub fn public_keys(&self) -> Arc<KeySet> {
        self.keys.state().public.clone()
    }

    /// JWT keys and Biscuit root keys to publish now (with each retired root key's end of life).
    #[allow(clippy::type_complexity)]
    pub fn published_keys(&self) -> (Vec<VerificationKey>, Vec<(BiscuitPublicKey, i64)>) {
        let now = self.clock.now();
        let state = self.keys.state();
        (
            state.published_jwt_keys(now),
            state.published_biscuit_keys(now),
        )
    }

    /// RFC 8414 metadata. HTTP endpoints hang off the issuer URL.
    pub fn metadata(&self) -> Metadata {
        let base = self.config.issuer.trim_end_matches('/');
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Metadata {
            issuer: self.config.issuer.clone(),
            token_endpoint: format!("{base}/oauth2/token"),
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            grant_types_supported: strings(&[GRANT_TYPE]),
            token_endpoint_auth_methods_supported: strings(&[
                "client_secret_basic",
                "client_secret_post",
            ]),
            token_types_supported: strings(&[
                token_type::JWT,
                token_type::ACCESS_TOKEN,
                token_type::BISCUIT,
            ]),
        }
    }

    /// RFC 8693 section 2: exchanges a subject token for a narrower token. Every decision,
    /// refusals included, is an audit event (target `writ::audit`, event `token_exchanged`).
    pub async fn exchange(&self, req: ExchangeRequest) -> Result<ExchangeResponse> {
        match self.decide(&req).await {
            Ok((response, d)) => {
                tracing::info!(
                    target: "writ::audit",
                    event = "token_exchanged",
                    decision = "issued",
                    client_id = %d.claims.client_id,
                    policy_id = %d.policy_id,
                    sub = %d.claims.sub,
                    subject_iss = %d.subject_iss,
                    subject_jti = %d.subject_jti,
                    jti = %d.claims.jti,
                    gid = d.claims.gid.as_deref().unwrap_or(""),
                    aud = ?d.claims.aud,
                    scope = %d.claims.scope,
                    mode = ?d.mode,
                    act_depth = d.claims.act.as_ref().map_or(0, Actor::depth),
                    minted = ?d.minted,
                    expires_in = response.expires_in,
                );
                Ok(response)
            }
            Err(e) => {
                // A server failure's detail is logged where it is answered (writ_proto::refusal).
                tracing::warn!(
                    target: "writ::audit",
                    event = "token_exchanged",
                    decision = "refused",
                    client_id = %truncate(&req.client_id),
                    reason = e.oauth_code(),
                    cause = e.cause().unwrap_or(""),
                );
                Err(e)
            }
        }
    }

    async fn decide(&self, req: &ExchangeRequest) -> Result<(ExchangeResponse, Decision)> {
        check_sizes(req)?;
        match req.grant_type.as_str() {
            GRANT_TYPE => {}
            "" => return Err(ExchangeError::InvalidRequest("grant_type is required")),
            _ => return Err(ExchangeError::UnsupportedGrantType),
        }
        // Client authentication first: nothing about the request is looked at for a caller who
        // is not one.
        if req.client_id.is_empty() {
            return Err(ExchangeError::InvalidClient);
        }
        self.directory
            .authenticate(&req.client_id, &req.client_secret)
            .await?;
        let caller = req.client_id.as_str();

        // The parameters, before any token is looked at.
        if req.subject_token.is_empty() {
            // Never fall back to the caller's own identity.
            return Err(ExchangeError::InvalidRequest("subject_token is required"));
        }
        if req.subject_token_type.is_empty() {
            return Err(ExchangeError::InvalidRequest(
                "subject_token_type is required",
            ));
        }
        let subject_type =
            PresentedType::parse(&req.subject_token_type).map_err(ExchangeError::subject)?;
        let actor_type = match (req.actor_token.is_empty(), req.actor_token_type.is_empty()) {
            (true, true) => None,
            (false, false) => {
                Some(PresentedType::parse(&req.actor_token_type).map_err(ExchangeError::actor)?)
            }
            (false, true) => {
                return Err(ExchangeError::InvalidRequest(
                    "actor_token needs actor_token_type",
                ));
            }
            (true, false) => {
                return Err(ExchangeError::InvalidRequest(
                    "actor_token_type without actor_token",
                ));
            }
        };
        let (issued_type, biscuit_wanted) = match req.requested_token_type.as_str() {
            "" | token_type::JWT => (token_type::JWT, false),
            token_type::ACCESS_TOKEN => (token_type::ACCESS_TOKEN, false),
            token_type::BISCUIT => (token_type::BISCUIT, true),
            _ => {
                return Err(ExchangeError::InvalidRequest(
                    "requested_token_type is not supported",
                ));
            }
        };
        let targets = targets(req)?;
        let requested_scope = Scopes::parse(&req.scope)
            .map_err(|_| ExchangeError::InvalidScope("scope is malformed"))?;

        let mut policies = self.directory.policies(caller).await?;
        if policies.is_empty() {
            return Err(ExchangeError::UnauthorizedClient(
                "the client may not exchange tokens",
            ));
        }
        policies.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));

        // The tokens: trusted issuer, signature, type, times, not revoked.
        let subject = self
            .verify(TokenRole::Subject, &req.subject_token, subject_type)
            .await?;
        let actor = match actor_type {
            Some(t) => {
                let actor = self.verify(TokenRole::Actor, &req.actor_token, t).await?;
                // The actor token proves who acts: it must be the caller's own.
                if actor.claims.client_id != caller {
                    return Err(ExchangeError::actor(Cause::ActorNotCaller));
                }
                Some(actor)
            }
            None => None,
        };
        let s = &subject.claims;

        // Who may present the subject token, and so how far its audience may move.
        let binding = if s.aud.iter().any(|a| a == caller)
            || (s.client_id == caller && s.aud.contains(&self.config.audience))
        {
            Binding::Addressed
        } else if s.client_id == caller {
            Binding::Own
        } else {
            return Err(ExchangeError::subject(Cause::NotForCaller));
        };

        // The governing policy: the first (by policy_id) that allows every target.
        let policy = policies
            .iter()
            .find(|p| targets.iter().all(|t| p.audience.contains(t)))
            .ok_or(ExchangeError::InvalidTarget(
                "no exchange policy of the client allows this audience",
            ))?;
        if binding == Binding::Own && !targets.iter().all(|t| s.aud.contains(t)) {
            return Err(ExchangeError::InvalidTarget(
                "re-exchanging a token can only narrow its audience",
            ));
        }

        let scope = self.scope(&requested_scope, &s.scope, policy)?;

        // Delegation unless the policy allows impersonation and no actor token names an actor.
        let mode = if actor.is_none() && policy.allow_impersonation {
            Mode::Impersonation
        } else {
            Mode::Delegation
        };
        let actor_sub = actor
            .as_ref()
            .map_or(caller, |a| a.claims.sub.as_str())
            .to_owned();
        if let Some(may_act) = &s.may_act {
            let allowed = may_act.sub == actor_sub
                && may_act.client_id.as_deref().is_none_or(|c| c == caller);
            if !allowed {
                return Err(ExchangeError::subject(Cause::MayAct));
            }
        }
        let act = match mode {
            Mode::Delegation => Some(Actor {
                sub: actor_sub,
                client_id: Some(caller.to_owned()),
                act: s.act.clone().map(Box::new),
            }),
            Mode::Impersonation => s.act.clone(),
        };
        let max_depth = match policy.max_chain_depth {
            0 => self.config.default_max_chain_depth,
            n => n,
        } as usize;
        if act.as_ref().map_or(0, Actor::depth) > max_depth {
            return Err(ExchangeError::subject(Cause::ChainTooDeep));
        }

        // Lifetime: the policy's (or the default), never past the subject's (or actor's) expiry.
        let now = self.clock.now();
        let lifetime = match policy.max_lifetime {
            0 => self.config.default_lifetime,
            n => n,
        }
        .min(self.config.max_lifetime);
        let exp = (now + lifetime)
            .min(s.exp)
            .min(actor.as_ref().map_or(i64::MAX, |a| a.claims.exp));
        if exp <= now {
            // Accepted within the verifier's leeway, but nothing of it is left to hand on.
            return Err(ExchangeError::subject(Cause::Expired));
        }

        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: s.sub.clone(),
            aud: targets.clone(),
            exp,
            iat: now,
            nbf: Some(now),
            jti: random_id(),
            client_id: caller.to_owned(),
            scope: scope.to_string(),
            gid: Some(lineage(&subject)),
            act,
            may_act: None,
        };

        // An attenuated Biscuit keeps its checks only if it stays itself: narrowed by one more
        // block, never re-minted (its checks cannot be carried into new facts faithfully).
        let attenuated_subject = subject.revocation_ids.len() > 1;
        let attenuation_suffices = subject.format == TokenFormat::Biscuit
            && biscuit_wanted
            && mode == Mode::Impersonation
            && targets.iter().all(|t| s.aud.contains(t));
        let keys = self.keys.state();
        let (access_token, minted, claims) = if attenuation_suffices {
            let token = attenuate(
                &req.subject_token,
                &Attenuation {
                    scopes: Some(scope.to_vec()),
                    methods: None,
                    services: Some(targets.clone()),
                    expires_at: Some(exp),
                },
            )?;
            // What the token now allows (for the audit log): the subject's identity, narrowed.
            let narrowed = AccessClaims {
                aud: targets,
                scope: claims.scope,
                exp,
                ..s.clone()
            };
            (token, Minted::AttenuatedBiscuit, narrowed)
        } else if attenuated_subject {
            return Err(ExchangeError::subject(Cause::Attenuated));
        } else if biscuit_wanted {
            (
                mint_biscuit(&keys.biscuit, &claims)?,
                Minted::Biscuit,
                claims,
            )
        } else {
            (
                encode_access_token(&keys.jwt, &claims)?,
                Minted::Jwt,
                claims,
            )
        };
        let response = ExchangeResponse {
            access_token,
            issued_token_type: issued_type,
            token_type: "Bearer",
            expires_in: exp - now,
            scope: claims.scope.clone(),
        };
        Ok((
            response,
            Decision {
                policy_id: policy.policy_id.clone(),
                mode,
                minted,
                claims,
                subject_iss: s.iss.clone(),
                subject_jti: s.jti.clone(),
            },
        ))
    }

    /// A subject or actor token, verified by its issuer and checked against revocations.
    async fn verify(
        &self,
        role: TokenRole,
        token: &str,
        presented: PresentedType,
    ) -> Result<VerifiedToken> {
        let refuse = |cause| ExchangeError::Rejected { role, cause };
        if !presented.admits(TokenFormat::detect(token)) {
            return Err(refuse(Cause::TypeMismatch));
        }
        let verified = self
            .issuers
            .verify_refreshing(token, None)
            .await
            .map_err(|e| refuse(Cause::from(e)))?;
        // An error here (a stale feed) passes through: fail closed, nothing is issued.
        let revoked = self
            .revocations
            .revoked(&TokenFacts::of(&verified))
            .map_err(|why| ExchangeError::Unavailable(why.0))?;
        match revoked {
            None => Ok(verified),
            Some(kind) => Err(refuse(Cause::Revoked(kind))),
        }
    }

    /// The issued scope: what was asked (or everything usable), within the subject's and the
    /// policy's.
    fn scope(&self, requested: &Scopes, subject: &str, policy: &ExchangePolicy) -> Result<Scopes> {
        let subject = Scopes::parse(subject)
            .map_err(|_| ExchangeError::Internal("a verified token's scope"))?;
        let allowed = if policy.scope.trim().is_empty() {
            subject.clone()
        } else {
            let policy = Scopes::parse(&policy.scope)
                .map_err(|_| ExchangeError::Internal("a stored policy's scope"))?;
            if !requested.is_subset(&policy) {
                return Err(ExchangeError::InvalidScope(
                    "the requested scope exceeds the exchange policy",
                ));
            }
            subject.intersection(&policy)
        };
        if !requested.is_subset(&subject) {
            return Err(ExchangeError::InvalidScope(
                "the requested scope exceeds the subject token's",
            ));
        }
        let scope = if requested.is_empty() {
            allowed
        } else {
            requested.clone()
        };
        if scope.is_empty() {
            return Err(ExchangeError::InvalidScope(
                "no scope is left to exchange for",
            ));
        }
        Ok(scope)
    }
}

/// The grant id of everything derived from `subject`: its own (Writ tokens always carry one), or
/// for an external token one derived from its issuer and token id, so that exchanging the same
/// external token twice yields one lineage, revocable as a whole.
fn lineage(subject: &VerifiedToken) -> String {
    match &subject.claims.gid {
        Some(gid) => gid.clone(),
        None => {
            let digest = Sha256::new()
                .chain_update(subject.claims.iss.as_bytes())
                .chain_update([0])
                .chain_update(subject.claims.jti.as_bytes())
                .finalize();
            format!("x-{}", URL_SAFE_NO_PAD.encode(&digest[..16]))
        }
    }
}

fn check_sizes(req: &ExchangeRequest) -> Result<()> {
    let too_long = req.grant_type.len() > 256
        || req.client_id.len() > MAX_ID_LEN
        || req.client_secret.len() > 1024
        || req.scope.len() > MAX_SCOPE_LEN
        || req.requested_token_type.len() > 256
        || req.subject_token_type.len() > 256
        || req.actor_token_type.len() > 256
        || req.subject_token.len() > MAX_BISCUIT_LEN
        || req.actor_token.len() > MAX_BISCUIT_LEN;
    if too_long {
        return Err(ExchangeError::InvalidRequest("a parameter is too long"));
    }
    Ok(())
}

/// `audience` and `resource` together, sorted, without duplicates; at least one.
fn targets(req: &ExchangeRequest) -> Result<Vec<String>> {
    if req.audience.len() + req.resource.len() > MAX_TARGETS {
        return Err(ExchangeError::InvalidRequest("too many audiences"));
    }
    let mut targets: Vec<String> = req.audience.iter().chain(&req.resource).cloned().collect();
    targets.sort();
    targets.dedup();
    if targets.is_empty() {
        return Err(ExchangeError::InvalidRequest(
            "audience or resource is required",
        ));
    }
    let valid =
        |t: &str| !t.is_empty() && t.len() <= MAX_ID_LEN && t.bytes().all(|b| b.is_ascii_graphic());
    if !targets.iter().all(|t| valid(t)) {
        return Err(ExchangeError::InvalidTarget("an audience is malformed"));
    }
    Ok(targets)
}

/// Shows at most 64 characters of an untrusted identifier in logs.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
