//! The rules of the exchange, as one pure function over their inputs: the caller, its
//! policies, the checked parameters, the verified subject (and actor) token, the configuration
//! and the time. No I/O, no clock, no randomness, no keys: [`decide`] says what to issue, or
//! which rule refuses; the engine (`engine.rs`) gathers the inputs and mints.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use writ_token::{AccessClaims, Actor, Attenuation, Scopes, TokenFormat, VerifiedToken};

use crate::Config;
use crate::error::{Cause, ExchangeError, Result};
use crate::ports::ExchangePolicy;
use crate::request::Params;

/// How the issued token relates to the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The actor is recorded in `act`, the subject's chain nested under it.
    Delegation,
    /// No new actor: the token speaks for the subject alone (its existing chain kept).
    Impersonation,
}

/// How the issued token is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Minted {
    Jwt,
    Biscuit,
    /// The subject Biscuit with one more block narrowing it (root signature kept).
    AttenuatedBiscuit,
}

/// What the rules decided.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub policy_id: String,
    pub mode: Mode,
    pub minted: Minted,
    /// The claims of the token to mint; for an attenuated Biscuit, what it allows once narrowed
    /// (the subject's identity), for the audit log.
    pub claims: AccessClaims,
    /// For [`Minted::AttenuatedBiscuit`]: the block to append to the subject token.
    pub attenuation: Option<Attenuation>,
}

/// Everything [`decide`] decides over.
#[derive(Debug)]
pub(crate) struct Inputs<'a> {
    /// The authenticated client.
    pub caller: &'a str,
    /// Its exchange policies, sorted by `policy_id`, at least one.
    pub policies: &'a [ExchangePolicy],
    pub params: &'a Params,
    /// Verified by its own issuer, of the presented type, not revoked.
    pub subject: &'a VerifiedToken,
    pub actor: Option<&'a VerifiedToken>,
    /// Writ's authorization server(s): the issuers an actor token may come from and, with the
    /// STS itself, the issuers whose subjects, scopes and grant ids are Writ's own.
    pub writ_issuers: &'a [String],
    pub config: &'a Config,
    pub now: i64,
    /// The new token's id.
    pub jti: String,
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

/// The rules (see the crate documentation), in the order they are applied.
pub(crate) fn decide(i: Inputs<'_>) -> Result<Decision> {
    let caller = i.caller;
    let s = &i.subject.claims;
    let targets = &i.params.targets;

    // A token bound to a DPoP key (RFC 9449) or a TLS certificate (RFC 8705) is good only with
    // a proof of it, which the STS does not take (yet): minting from it would drop the binding.
    // (The cause keeps its first name, `dpop_bound`, for either.)
    if s.cnf.is_some() {
        return Err(ExchangeError::subject(Cause::Invalid("dpop_bound")));
    }
    if i.actor.is_some_and(|a| a.claims.cnf.is_some()) {
        return Err(ExchangeError::actor(Cause::Invalid("dpop_bound")));
    }
    // The actor token proves who acts, and nothing else: the caller's own, from the issuer that
    // authenticates Writ's clients, delegating nothing. A delegated token (or any token of the
    // STS, which always speaks for another party) would launder its subject into `act`; an
    // external issuer's `client_id` is not a Writ client.
    if let Some(a) = i.actor {
        if a.claims.client_id != caller {
            return Err(ExchangeError::actor(Cause::ActorNotCaller));
        }
        if a.claims.act.is_some() || !i.writ_issuers.contains(&a.claims.iss) {
            return Err(ExchangeError::actor(Cause::ActorDelegated));
        }
    }

    // Who may present the subject token, and so how far its audience may move.
    let binding = if s.aud.iter().any(|a| a == caller)
        || (s.client_id == caller && s.aud.contains(&i.config.audience))
    {
        Binding::Addressed
    } else if s.client_id == caller {
        Binding::Own
    } else {
        return Err(ExchangeError::subject(Cause::NotForCaller));
    };

    // The governing policy: the first (by policy_id) that allows every target.
    let policy = i
        .policies
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

    // A token of an external issuer: its subject is not one of Writ's, its scopes are its
    // issuer's word, its grant id means nothing here. What it may claim is what the policy names.
    let external = !i.writ_issuers.contains(&s.iss) && s.iss != i.config.issuer;
    if external && policy.scope.trim().is_empty() {
        return Err(ExchangeError::InvalidScope(
            "the exchange policy names no scopes an external issuer's token may carry",
        ));
    }
    let scope = scope(&i.params.requested_scope, &s.scope, policy)?;

    // Delegation unless the policy allows impersonation and no actor token names an actor.
    let mode = if i.actor.is_none() && policy.allow_impersonation {
        Mode::Impersonation
    } else {
        Mode::Delegation
    };
    let actor_sub = i.actor.map_or(caller, |a| a.claims.sub.as_str()).to_owned();
    if let Some(may_act) = &s.may_act {
        let allowed =
            may_act.sub == actor_sub && may_act.client_id.as_deref().is_none_or(|c| c == caller);
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
        0 => i.config.default_max_chain_depth,
        n => n,
    } as usize;
    if act.as_ref().map_or(0, Actor::depth) > max_depth {
        return Err(ExchangeError::subject(Cause::ChainTooDeep));
    }

    // Lifetime: the policy's (or the default), never past the subject's (or actor's) expiry.
    let now = i.now;
    let lifetime = match policy.max_lifetime {
        0 => i.config.default_lifetime,
        n => n,
    }
    .min(i.config.max_lifetime);
    let exp = (now + lifetime)
        .min(s.exp)
        .min(i.actor.map_or(i64::MAX, |a| a.claims.exp));
    if exp <= now {
        // Accepted within the verifier's leeway, but nothing of it is left to hand on.
        return Err(ExchangeError::subject(Cause::Expired));
    }

    let claims = AccessClaims {
        iss: i.config.issuer.clone(),
        // An external subject stays in its issuer's namespace, visibly: `issuer#subject` (an
        // issuer has no fragment, so this never reads ambiguously, and Writ's own subjects
        // never contain `#`).
        sub: if external {
            format!("{}#{}", s.iss, s.sub)
        } else {
            s.sub.clone()
        },
        aud: targets.clone(),
        exp,
        iat: now,
        nbf: Some(now),
        jti: i.jti,
        client_id: caller.to_owned(),
        scope: scope.to_string(),
        gid: Some(lineage(i.subject, external)),
        act,
        may_act: None,
        cnf: None,
    };

    // An attenuated Biscuit keeps its checks only if it stays itself: narrowed by one more
    // block, never re-minted (its checks cannot be carried into new facts faithfully).
    let attenuated_subject = i.subject.revocation_ids.len() > 1;
    let attenuation_suffices = i.subject.format == TokenFormat::Biscuit
        && i.params.biscuit_wanted
        && mode == Mode::Impersonation
        && targets.iter().all(|t| s.aud.contains(t));
    let (minted, claims, attenuation) = if attenuation_suffices {
        let attenuation = Attenuation {
            scopes: Some(scope.to_vec()),
            methods: None,
            services: Some(targets.clone()),
            expires_at: Some(exp),
        };
        // What the token now allows: the subject's identity, narrowed.
        let narrowed = AccessClaims {
            aud: targets.clone(),
            scope: claims.scope,
            exp,
            ..s.clone()
        };
        (Minted::AttenuatedBiscuit, narrowed, Some(attenuation))
    } else if attenuated_subject {
        return Err(ExchangeError::subject(Cause::Attenuated));
    } else if i.params.biscuit_wanted {
        (Minted::Biscuit, claims, None)
    } else {
        (Minted::Jwt, claims, None)
    };
    Ok(Decision {
        policy_id: policy.policy_id.clone(),
        mode,
        minted,
        claims,
        attenuation,
    })
}

/// The issued scope: what was asked (or everything usable), within the subject's and the
/// policy's.
fn scope(requested: &Scopes, subject: &str, policy: &ExchangePolicy) -> Result<Scopes> {
    let subject =
        Scopes::parse(subject).map_err(|_| ExchangeError::Internal("a verified token's scope"))?;
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

/// The grant id of everything derived from `subject`: its own for a Writ token (which always
/// carries one); for an external token one derived from its issuer and its own grant id (or its
/// token id), so that exchanging the same external token twice yields one lineage, revocable as
/// a whole, and an external issuer can never name (join, or borrow) a Writ lineage.
fn lineage(subject: &VerifiedToken, external: bool) -> String {
    let c = &subject.claims;
    match (&c.gid, external) {
        (Some(gid), false) => gid.clone(),
        (gid, _) => {
            let (tag, id) = match gid {
                Some(g) => (b"g", g.as_str()),
                None => (b"j", c.jti.as_str()),
            };
            let digest = Sha256::new()
                .chain_update(c.iss.as_bytes())
                .chain_update([0])
                .chain_update(tag)
                .chain_update(id.as_bytes())
                .finalize();
            format!("x-{}", URL_SAFE_NO_PAD.encode(&digest[..16]))
        }
    }
}
