//! Introspection (RFC 7662) and revocation (RFC 7009).

use writ_audit::{Event, Outcome};
use writ_store::{AsyncStoreExt, Tree, decode};
use writ_token::{RevocationEntry, RevocationKind, VerifiedToken};

use crate::error::{Error, Result};
use crate::records::{ClientRecord, GrantRecord, REFRESH_ACTIVE, RefreshTokenRecord};
use crate::revocations::Revocation;
use crate::types::{Introspection, TokenOperation};
use crate::{AuthorizationServer, MAX_SECRET_LEN, MAX_TOKEN_LEN};

/// What a presented token turned out to be.
enum Found {
    Access(Box<VerifiedToken>),
    Refresh(Box<RefreshTokenRecord>),
    Nothing,
}

impl AuthorizationServer {
    /// RFC 7662. The caller is a confidential client. It sees a token's details only if the
    /// token was issued to it, names it as an audience, or it may introspect any token; every
    /// other case, like every invalid, expired, revoked or unknown token, is `active: false`
    /// and nothing else.
    ///
    /// One audit record per answer: `token_introspected` (who asked, about which token, whether
    /// it was active) or `introspection_refused`.
    pub async fn introspect(&self, op: TokenOperation) -> Result<Introspection> {
        let mut op = op;
        op.client.client_id =
            crate::client_auth::named_client(&op.client.client_id, &op.client.client_assertion);
        let answer = self.introspect_decision(&op).await;
        match &answer {
            Ok(i) => {
                let event = Event::new("token_introspected", Outcome::Success)
                    .actor(&op.client.client_id)
                    .client(&i.client_id)
                    .subject(&i.sub)
                    .gid(&i.gid)
                    .audience(&i.aud)
                    .detail("active", i.active)
                    .detail("jti", &i.jti)
                    .detail("token_type", &i.token_type);
                self.audit.record(event).await?;
            }
            Err(e) => {
                self.audit_refusal(
                    crate::refusal_event("introspection_refused", e).actor(&op.client.client_id),
                )
                .await
            }
        }
        answer
    }

    async fn introspect_decision(&self, op: &TokenOperation) -> Result<Introspection> {
        let caller = self.authenticate_client((&op.client).into()).await?;
        if !caller.is_confidential() || caller.disabled {
            return Err(Error::InvalidClient);
        }
        check_token_param(&op.token)?;
        let result = match self.find(&op.token, &op.token_type_hint).await? {
            Found::Access(t)
                if self.is_live(&t).await?
                    && may_see(&caller, &t.claims.client_id, &t.claims.aud) =>
            {
                let c = t.claims;
                let username = match &c.gid {
                    Some(gid) => self
                        .store
                        .get_record::<GrantRecord>(gid.as_bytes())
                        .await?
                        .map(|g| g.username)
                        .unwrap_or_default(),
                    None => String::new(),
                };
                let bound = c.cnf.as_ref().is_some_and(|cnf| cnf.jkt.is_some());
                Introspection {
                    active: true,
                    token_type: if bound { "DPoP" } else { "Bearer" }.to_owned(),
                    scope: c.scope,
                    client_id: c.client_id,
                    username,
                    cnf_jkt: c
                        .cnf
                        .as_ref()
                        .and_then(|cnf| cnf.jkt.clone())
                        .unwrap_or_default(),
                    cnf_x5t_s256: c.cnf.and_then(|cnf| cnf.x5t_s256).unwrap_or_default(),
                    exp: c.exp,
                    iat: c.iat,
                    nbf: c.nbf.unwrap_or(c.iat),
                    sub: c.sub,
                    aud: c.aud,
                    iss: c.iss,
                    jti: c.jti,
                    gid: c.gid.unwrap_or_default(),
                    act: c.act,
                    format: Some(t.format),
                }
            }
            Found::Refresh(r)
                if r.client_id == caller.client_id && self.refresh_is_live(&r).await? =>
            {
                Introspection {
                    active: true,
                    scope: r.scope,
                    client_id: r.client_id,
                    username: r.username,
                    token_type: "refresh_token".to_owned(),
                    exp: r.expires_at,
                    iat: r.issued_at,
                    nbf: r.issued_at,
                    sub: r.subject,
                    iss: self.config.issuer.clone(),
                    gid: r.gid,
                    ..Introspection::default()
                }
            }
            _ => Introspection::inactive(),
        };
        Ok(result)
    }

    /// RFC 7009. The caller must be the client the token was issued to; anything else, like an
    /// unknown or garbage token, succeeds and changes nothing. Revoking a refresh token revokes
    /// its whole grant (every refresh and access token of the family). Success means durable.
    ///
    /// A revocation made is recorded with it (`revoked`); a request that revokes nothing is
    /// `revocation_ignored`, a refused one `revocation_refused`.
    pub async fn revoke(&self, op: TokenOperation) -> Result<()> {
        let mut op = op;
        op.client.client_id =
            crate::client_auth::named_client(&op.client.client_id, &op.client.client_assertion);
        let answer = self.revoke_decision(&op).await;
        let event = match &answer {
            Ok(true) => return Ok(()),
            Ok(false) => Event::new("revocation_ignored", Outcome::Success)
                .actor(&op.client.client_id)
                .client(&op.client.client_id),
            Err(e) => crate::refusal_event("revocation_refused", e).actor(&op.client.client_id),
        };
        match answer {
            Ok(_) => {
                self.audit.record(event).await?;
                Ok(())
            }
            Err(e) => {
                self.audit_refusal(event).await;
                Err(e)
            }
        }
    }

    /// Whether something was revoked.
    async fn revoke_decision(&self, op: &TokenOperation) -> Result<bool> {
        let caller = self.authenticate_client((&op.client).into()).await?;
        if caller.disabled {
            return Err(Error::InvalidClient);
        }
        check_token_param(&op.token)?;
        match self.find(&op.token, &op.token_type_hint).await? {
            Found::Refresh(r) if r.client_id == caller.client_id => {
                self.revoke_grant(&r.gid, "refresh token revoked by its client")
                    .await?;
                Ok(true)
            }
            Found::Access(t) if t.claims.client_id == caller.client_id => {
                let entry = RevocationEntry {
                    kind: RevocationKind::TokenId,
                    value: t.claims.jti.clone(),
                    issuer: String::new(),
                    // Past the token's own expiry plus leeway, nothing is left to revoke.
                    expires_at: t.claims.exp + self.config.leeway,
                    not_before: 0,
                    reason: "revoked by its client (RFC 7009)".to_owned(),
                };
                self.record_revocations(&[Revocation::new(entry)], &caller.client_id)
                    .await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Revokes every token of a grant: its access tokens through the revocation feed, its
    /// refresh tokens here for as long as the grant could live. Idempotent; durable on return.
    pub async fn revoke_grant(&self, gid: &str, reason: &str) -> Result<()> {
        let now = self.now();
        let keep_until = self
            .store
            .get_record::<GrantRecord>(gid.as_bytes())
            .await?
            .map(|g| g.expires_at)
            .unwrap_or(now + self.config.max_grant_lifetime);
        let entry = RevocationEntry {
            kind: RevocationKind::GrantId,
            value: gid.to_owned(),
            issuer: String::new(),
            expires_at: now + self.access_horizon(),
            not_before: 0,
            reason: reason.to_owned(),
        };
        self.record_revocations(&[Revocation { entry, keep_until }], "authorization server")
            .await
    }

    /// How long after now a token issued now can still be live.
    pub(crate) fn access_horizon(&self) -> i64 {
        self.config.max_access_token_lifetime + self.config.leeway
    }

    async fn find(&self, token: &str, hint: &str) -> Result<Found> {
        let looks_like_refresh = token.len() <= 64 && !token.contains('.');
        if hint == "refresh_token" || looks_like_refresh {
            let key = self.hasher.hash(token.as_bytes());
            if let Some(bytes) = self.store.get(Tree::RefreshTokens, &key).await? {
                return Ok(Found::Refresh(Box::new(decode(&bytes)?)));
            }
        }
        // A Biscuit's Datalog runs off the runtime's workers; too many waiting is an error to
        // retry, not a verdict on the token. A reference token is its JWT here.
        Ok(match self.verify_bearer(token).await? {
            Some((t, _)) => Found::Access(Box::new(t)),
            None => Found::Nothing,
        })
    }

    /// Whether a verified access token escaped every revocation: its id, its grant, its
    /// subject's and client's cut-offs, its signing key, and each of its Biscuit blocks.
    pub async fn is_live(&self, t: &VerifiedToken) -> Result<bool> {
        let c = &t.claims;
        let mut named = vec![
            (RevocationKind::TokenId, c.jti.as_str()),
            (RevocationKind::Subject, c.sub.as_str()),
            (RevocationKind::Client, c.client_id.as_str()),
            (RevocationKind::KeyId, t.key_id.as_str()),
        ];
        named.extend(c.gid.as_deref().map(|g| (RevocationKind::GrantId, g)));
        named.extend(
            t.revocation_ids
                .iter()
                .map(|id| (RevocationKind::BiscuitRevocationId, id.as_str())),
        );
        let targets: Vec<_> = named.into_iter().map(|(k, v)| (k, v, c.iat)).collect();
        if self.first_revoked(&targets).await?.is_some() {
            return Ok(false);
        }
        let Some(feed) = self.feed.get() else {
            if self.index_incomplete() {
                // Token revocations were left to a log no one follows yet (a restart, before
                // the log in the process is open): fail closed.
                return Err(Error::Unavailable("the revocation log is not followed yet"));
            }
            return Ok(true);
        };
        match feed.revoked_async(&writ_token::TokenFacts::of(t)).await {
            Ok(None) => Ok(true),
            Ok(Some(_)) => Ok(false),
            Err(why) => Err(Error::Unavailable(why.0)),
        }
    }

    async fn refresh_is_live(&self, r: &RefreshTokenRecord) -> Result<bool> {
        let now = self.now();
        if r.state != REFRESH_ACTIVE || now >= r.expires_at {
            return Ok(false);
        }
        match self
            .store
            .get_record::<GrantRecord>(r.gid.as_bytes())
            .await?
        {
            Some(g) => Ok(now < g.expires_at && !self.grant_revoked(&g).await?),
            // A refresh token outlives no grant.
            None => Ok(false),
        }
    }
}

fn may_see(caller: &ClientRecord, token_client: &str, aud: &[String]) -> bool {
    caller.may_introspect
        || caller.client_id == token_client
        || aud.iter().any(|a| a == &caller.client_id)
}

fn check_token_param(token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(Error::InvalidRequest("token is required"));
    }
    if token.len() > MAX_TOKEN_LEN.max(MAX_SECRET_LEN) {
        return Err(Error::InvalidRequest("token is too long"));
    }
    Ok(())
}
