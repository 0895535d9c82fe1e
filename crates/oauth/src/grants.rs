//! The token endpoint: `client_credentials`, `refresh_token` (rotation with reuse detection) and
//! `password` (only for clients explicitly allowed it).

use writ_audit::{Event, Outcome};
use writ_store::{AsyncStoreExt, Batch, Tree, encode};
use writ_token::{
    AccessClaims, Scopes, encode_access_token, mint_biscuit, random_id, random_secret,
};

use crate::error::{Error, Result};
use crate::records::{
    AuthCodeRecord, ClientRecord, FORMAT_BISCUIT, FORMAT_JWT, FORMAT_JWT_AND_BISCUIT,
    FORMAT_REFERENCE, GrantRecord, REFRESH_ACTIVE, REFRESH_REPLACED, REFRESH_USED,
    RefreshTokenRecord, UserRecord,
};
use crate::types::{FormatChoice, TokenRequest, TokenResponse};
use crate::{
    AuthorizationServer, MAX_AUDIENCES, MAX_ID_LEN, MAX_SECRET_LEN, grant_type, token_type,
    valid_id,
};

/// A person's sign-in that a grant comes from (a redeemed code, an approved device).
pub(crate) struct SignedIn {
    pub gid: String,
    pub subject: String,
    pub username: String,
    /// Granted.
    pub scope: String,
    pub audience: Vec<String>,
    /// When the grant began (the code's or the approval's time).
    pub began_at: i64,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub sid: String,
    pub nonce: String,
}

/// Everything needed to mint an access token.
pub(crate) struct Minting<'a> {
    /// The thumbprint of the DPoP key the tokens are bound to (empty: bearer tokens).
    pub jkt: &'a str,
    /// The `jti` of the proof, spent when the tokens are minted.
    pub proof_jti: &'a str,
    /// `x5t#S256` of the request's TLS client certificate (empty: none presented).
    pub x5t: &'a str,
    pub client: &'a ClientRecord,
    pub subject: String,
    pub scope: Scopes,
    pub audience: Vec<String>,
    pub gid: String,
    pub format: FormatChoice,
}

impl AuthorizationServer {
    /// RFC 6749 section 3.2.
    /// Every answer is one audit record: `token_issued` (with the state change it made, if any)
    /// or `token_refused` with the reason.
    pub async fn token(&self, req: TokenRequest) -> Result<TokenResponse> {
        let mut req = req;
        req.client_id = crate::client_auth::named_client(&req.client_id, &req.client_assertion);
        let result = self.token_decision(&mut req).await;
        if let Err(e) = &result {
            self.audit_refusal(
                Event::new("token_refused", e.audit_outcome())
                    .actor(&req.client_id)
                    .client(&req.client_id)
                    .reason(e.oauth_code())
                    .detail("grant_type", &req.grant_type)
                    .detail("description", e.description())
                    .detail("username", &req.username)
                    .detail(
                        "source",
                        req.source.map(|s| s.to_string()).unwrap_or_default(),
                    ),
            )
            .await;
        }
        result
    }

    async fn token_decision(&self, req: &mut TokenRequest) -> Result<TokenResponse> {
        check_request_sizes(req)?;
        // The proof first, statelessly: a stale or forged one changes nothing, whatever else the
        // request says (its jti is spent when the tokens are minted).
        let proof = self.verify_dpop(req.dpop.as_ref())?;
        (req.dpop_jkt, req.dpop_jti) = proof.map(|p| (p.jkt, p.jti)).unwrap_or_default();
        req.cert_x5t = req
            .client_certificate
            .as_deref()
            .map(writ_token::certificate_thumbprint)
            .unwrap_or_default();
        let req = &*req;
        // A source with too many failed authentications is refused before any is checked.
        let source = req.source.map(crate::throttle::Subject::Source);
        let source = source.as_slice();
        if let Some(wait) = self.throttle.locked(source, self.now()) {
            writ_metrics::global().token_refused(Error::Throttled(wait).oauth_code());
            return Err(Error::Throttled(wait));
        }
        let result = self.grant(req).await;
        match &result {
            // Labels from closed sets only: the grant types Writ serves, the RFC error codes.
            Ok(_) => writ_metrics::global().token_issued(match req.grant_type.as_str() {
                grant_type::CLIENT_CREDENTIALS => grant_type::CLIENT_CREDENTIALS,
                grant_type::REFRESH_TOKEN => grant_type::REFRESH_TOKEN,
                grant_type::PASSWORD => grant_type::PASSWORD,
                grant_type::AUTHORIZATION_CODE => grant_type::AUTHORIZATION_CODE,
                grant_type::DEVICE_CODE => grant_type::DEVICE_CODE,
                grant_type::JWT_BEARER => grant_type::JWT_BEARER,
                _ => "other",
            }),
            Err(e) => writ_metrics::global().token_refused(e.oauth_code()),
        }
        if matches!(result, Err(Error::InvalidClient))
            || matches!(&result, Err(Error::InvalidGrant(m)) if *m == crate::users::BAD_CREDENTIALS)
        {
            self.throttle.failed(source, self.now());
        }
        result
    }

    async fn grant(&self, req: &TokenRequest) -> Result<TokenResponse> {
        match req.grant_type.as_str() {
            grant_type::CLIENT_CREDENTIALS => self.client_credentials(req).await,
            grant_type::REFRESH_TOKEN => self.refresh(req).await,
            grant_type::PASSWORD => self.password(req).await,
            grant_type::AUTHORIZATION_CODE => self.authorization_code(req).await,
            grant_type::DEVICE_CODE => self.device_code_grant(req).await,
            grant_type::JWT_BEARER => self.jwt_bearer(req).await,
            "" => Err(Error::InvalidRequest("grant_type is required")),
            _ => Err(Error::UnsupportedGrantType),
        }
    }

    /// RFC 6749 section 4.4. Writes nothing: the token is the only record.
    async fn client_credentials(&self, req: &TokenRequest) -> Result<TokenResponse> {
        let client = self
            .authenticate_client_from(req.into(), req.source)
            .await?;
        if client.disabled {
            return Err(Error::InvalidClient);
        }
        if !client.is_confidential() || !client.allows_grant(grant_type::CLIENT_CREDENTIALS) {
            return Err(Error::UnauthorizedClient(
                "the client may not use client_credentials",
            ));
        }
        let allowed = Scopes::parse(&client.scope).map_err(|_| Error::Internal("stored scope"))?;
        let m = Minting {
            jkt: &req.dpop_jkt,
            x5t: &req.cert_x5t,
            proof_jti: &req.dpop_jti,
            scope: narrow_scope(&req.scope, &allowed)?,
            audience: resolve_audience(&client, &req.audience, &req.resource)?,
            format: resolve_format(&client, req.token_format)?,
            subject: client.client_id.clone(),
            gid: random_id(),
            client: &client,
        };
        let (response, event) = self.issue(&m, grant_type::CLIENT_CREDENTIALS, None)?;
        // No state changes: the record is queued, and durable before the token goes out.
        self.audit.record(event).await?;
        Ok(response)
    }

    /// RFC 6749 section 4.3, for clients explicitly allowed it (the legacy API-gateway pattern).
    async fn password(&self, req: &TokenRequest) -> Result<TokenResponse> {
        let client = self
            .authenticate_client_from(req.into(), req.source)
            .await?;
        if client.disabled {
            return Err(Error::InvalidClient);
        }
        // A public client proves nothing about itself: it would make this endpoint a password
        // oracle for anyone. (Registration refuses it too; this covers older records.)
        if !client.is_confidential() || !client.allows_grant(grant_type::PASSWORD) {
            return Err(Error::UnauthorizedClient(
                "the client may not use the password grant",
            ));
        }
        if req.username.is_empty() || req.password.is_empty() {
            return Err(Error::InvalidRequest("username and password are required"));
        }
        // Cheap checks first: a request that will be refused anyway costs no argon2 work.
        let client_scopes =
            Scopes::parse(&client.scope).map_err(|_| Error::Internal("stored scope"))?;
        Scopes::parse(&req.scope).map_err(|_| Error::InvalidScope("scope is malformed"))?;
        let audience = resolve_audience(&client, &req.audience, &req.resource)?;
        let format = resolve_format(&client, req.token_format)?;

        let user = self.authenticate_user(&req.username, &req.password).await?;
        let user_scopes =
            Scopes::parse(&user.scope).map_err(|_| Error::Internal("stored scope"))?;
        let scope = narrow_scope(&req.scope, &client_scopes.intersection(&user_scopes))?;

        let now = self.now();
        let gid = random_id();
        let grant = GrantRecord {
            gid: gid.clone(),
            client_id: client.client_id.clone(),
            subject: user.subject.clone(),
            scope: scope.to_string(),
            created_at: now,
            expires_at: now + self.config.max_grant_lifetime,
            username: user.username.clone(),
        };
        let refresh = client
            .allows_grant(grant_type::REFRESH_TOKEN)
            .then(|| self.new_refresh_token(&client, &grant, now, &req.dpop_jkt));
        let m = Minting {
            jkt: &req.dpop_jkt,
            x5t: &req.cert_x5t,
            proof_jti: &req.dpop_jti,
            client: &client,
            subject: user.subject.clone(),
            scope,
            audience,
            gid,
            format,
        };
        let (response, event) = self.issue(
            &m,
            grant_type::PASSWORD,
            refresh.as_ref().map(|(token, _)| token.clone()),
        )?;
        let event = event.detail("username", &user.username);
        match refresh {
            Some((token, record)) => {
                // The family's first token and the record of its issue, in one batch.
                self.store.put_record(grant.gid.as_bytes(), &grant).await?;
                let intent = self.audit.intent(event);
                let batch =
                    Batch::new().put(self.hasher.hash(token.as_bytes()).to_vec(), encode(&record));
                self.store
                    .commit(Tree::RefreshTokens, intent.attach(batch))
                    .await?;
                self.audit.written(intent);
                self.store.durable().await?;
            }
            None => self.audit.record(event).await?,
        }
        Ok(response)
    }

    /// RFC 6749 section 4.1.3 with RFC 7636 section 4.6: a code redeemed once, by the client it
    /// was issued to, with the redirect URI it was issued for and the PKCE verifier of its
    /// challenge. A code presented again (or redeemed twice at once) revokes what it issued
    /// (RFC 6749 section 4.1.2). Public clients authenticate with their id alone.
    async fn authorization_code(&self, req: &TokenRequest) -> Result<TokenResponse> {
        let client = self
            .authenticate_client_from(req.into(), req.source)
            .await?;
        if client.disabled {
            return Err(Error::InvalidClient);
        }
        if !client.allows_grant(grant_type::AUTHORIZATION_CODE) {
            return Err(Error::UnauthorizedClient(
                "the client may not use the authorization code grant",
            ));
        }
        if req.code.is_empty() || req.redirect_uri.is_empty() || req.code_verifier.is_empty() {
            return Err(Error::InvalidRequest(
                "code, redirect_uri and code_verifier are required",
            ));
        }
        // RFC 7636 section 4.1: 43 to 128 unreserved characters.
        if !(43..=128).contains(&req.code_verifier.len())
            || !req
                .code_verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(Error::InvalidRequest("code_verifier is malformed"));
        }
        let Some(code) = self.codes.open(&req.code) else {
            return Err(Error::InvalidGrant("the code is invalid"));
        };
        // Checks that change nothing first: another client's code is refused without burning
        // it (its holder is not the thief).
        if code.client_id != client.client_id
            || code.client_registration_id != client.registration_id
        {
            return Err(Error::InvalidGrant("the code was issued to another client"));
        }
        // A redeemed code is remembered under its grant id (unique per code, and inside the
        // sealed record) until it can no longer be presented.
        let key = crate::signin::prefixed(b"c/", &self.hasher.hash(code.gid.as_bytes()));
        if self.store.get(Tree::SignIn, &key).await?.is_some() {
            return self.code_replayed(&code.gid).await;
        }
        let now = self.now();
        if now >= code.expires_at {
            return Err(Error::InvalidGrant("the code has expired"));
        }
        if code.redirect_uri != req.redirect_uri {
            return Err(Error::InvalidGrant(
                "redirect_uri is not the one the code was issued for",
            ));
        }
        let challenge = {
            use base64::Engine;
            use sha2::Digest;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(req.code_verifier.as_bytes()))
        };
        let matches: bool =
            subtle::ConstantTimeEq::ct_eq(challenge.as_bytes(), code.code_challenge.as_bytes())
                .into();
        if !matches {
            return Err(Error::InvalidGrant(
                "code_verifier does not match the challenge",
            ));
        }
        let signed_in = SignedIn {
            gid: code.gid.clone(),
            subject: code.subject.clone(),
            username: code.username.clone(),
            scope: code.scope.clone(),
            audience: code.audience.clone(),
            began_at: code.issued_at,
            auth_time: code.auth_time,
            amr: code.amr.clone(),
            sid: code.sid.clone(),
            nonce: code.nonce.clone(),
        };
        // What a replay needs; kept a code's lifetime past the code's end, so a replica whose
        // clock lags another's still finds it.
        let spent = encode(&AuthCodeRecord {
            client_id: code.client_id.clone(),
            gid: code.gid.clone(),
            issued_at: code.issued_at,
            expires_at: code.expires_at + crate::signin::CODE_LIFETIME,
            used: true,
            ..Default::default()
        });
        let consent_key = crate::signin::consent_key(&code.subject, &client.client_id);
        let scope = Scopes::parse(&code.scope).map_err(|_| Error::Internal("sealed scope"))?;
        // Minted once: a retry below only rebuilds the batch that spends the code.
        let mut minted: Option<(TokenResponse, Event)> = None;
        for _ in 0..8 {
            // The grant joins its session, which must still be there (signing out since ended
            // what the code would have issued), under the consent it was issued under.
            let Some((session_key, read, mut session)) = self
                .session_of(&code.subject, &code.sid, &code.session_key)
                .await?
            else {
                return Err(Error::InvalidGrant(
                    "the session the code was issued in has ended",
                ));
            };
            let consent = self.store.get(Tree::SignIn, &consent_key).await?;
            let covered =
                match &consent {
                    Some(bytes) => writ_store::decode::<crate::records::ConsentRecord>(bytes)?
                        .covers(&client, &scope, &code.audience),
                    None => false,
                };
            if !covered {
                return Err(Error::InvalidGrant(
                    "the consent the code was issued under has been revoked",
                ));
            }
            let spend = self
                .admit_grant(&mut session, &code.gid, &client.client_id, Batch::new())
                .await?
                .expect(session_key.clone(), Some(read))
                .put(session_key, encode(&session))
                .expect(consent_key.clone(), consent)
                .expect(key.clone(), None)
                .put(key.clone(), spent.clone());
            let (response, event) = match &minted {
                Some(m) => m,
                None => minted.insert(
                    self.mint_sign_in(&client, &signed_in, req, grant_type::AUTHORIZATION_CODE)
                        .await?,
                ),
            };
            let intent = self.audit.intent(event.clone());
            if self.commit_audited(Tree::SignIn, intent, spend).await? {
                return Ok(response.clone());
            }
            if self.store.get(Tree::SignIn, &key).await?.is_some() {
                return self.code_replayed(&code.gid).await;
            }
            // The session or the consent changed (another code, a renewal, a sign-out, a
            // revocation): read them again.
        }
        Err(Error::Conflict("the session changed concurrently; retry"))
    }

    /// A spent code presented again: whoever holds it is not alone, so everything it issued is
    /// revoked (RFC 6749 section 4.1.2, RFC 9700 section 4.5).
    async fn code_replayed(&self, gid: &str) -> Result<TokenResponse> {
        self.revoke_grant(gid, "authorization code replayed")
            .await?;
        Err(Error::InvalidGrant(
            "the code was already used; what it issued has been revoked",
        ))
    }

    /// Redeems a sign-in's grant (a code, an approved device): the access token, a refresh
    /// token if the client may have one, and an ID token when `openid` was granted. Refused if
    /// the grant was revoked since (signed out) or the user is gone or disabled.
    ///
    /// The grant and its first refresh token are written first (neither is known to anyone
    /// yet), then what redeemed it is spent: `spend`, a batch of compare-and-swaps in
    /// [`Tree::SignIn`], committed with the record of the issue, so of two redemptions exactly
    /// one spends it. `None`: it did not commit (a replay, or a record it expects changed).
    pub(crate) async fn redeem_sign_in(
        &self,
        client: &ClientRecord,
        s: &SignedIn,
        req: &TokenRequest,
        grant: &'static str,
        spend: Batch,
    ) -> Result<Option<TokenResponse>> {
        let (response, event) = self.mint_sign_in(client, s, req, grant).await?;
        let intent = self.audit.intent(event);
        if !self.commit_audited(Tree::SignIn, intent, spend).await? {
            return Ok(None);
        }
        Ok(Some(response))
    }

    /// The checks and the tokens of [`Self::redeem_sign_in`], with the grant and its first
    /// refresh token written (unknown to anyone until the spend commits), and the audit record
    /// of the issue to commit with the spend.
    async fn mint_sign_in(
        &self,
        client: &ClientRecord,
        s: &SignedIn,
        req: &TokenRequest,
        grant: &'static str,
    ) -> Result<(TokenResponse, Event)> {
        let now = self.now();
        let record = GrantRecord {
            gid: s.gid.clone(),
            client_id: client.client_id.clone(),
            subject: s.subject.clone(),
            scope: s.scope.clone(),
            created_at: s.began_at,
            expires_at: s.began_at + self.config.max_grant_lifetime,
            username: s.username.clone(),
        };
        // Signed out (or cut off) since the sign-in.
        if self.grant_revoked(&record).await? {
            return Err(Error::InvalidGrant("the grant has been revoked"));
        }
        let user = self
            .store
            .get_record::<UserRecord>(s.username.as_bytes())
            .await?
            .filter(|u| !u.disabled && u.subject == s.subject)
            .ok_or(Error::InvalidGrant(
                "the resource owner no longer exists or is disabled",
            ))?;
        let scope = Scopes::parse(&s.scope).map_err(|_| Error::Internal("stored scope"))?;
        let format = resolve_format(client, req.token_format)?;
        let refresh = client
            .allows_grant(grant_type::REFRESH_TOKEN)
            .then(|| self.new_refresh_token(client, &record, now, &req.dpop_jkt));
        let m = Minting {
            jkt: &req.dpop_jkt,
            x5t: &req.cert_x5t,
            proof_jti: &req.dpop_jti,
            client,
            subject: s.subject.clone(),
            scope: scope.clone(),
            audience: s.audience.clone(),
            gid: record.gid.clone(),
            format,
        };
        let (mut response, event) =
            self.issue(&m, grant, refresh.as_ref().map(|(token, _)| token.clone()))?;
        if scope.contains("openid") {
            response.id_token =
                Some(self.id_token(client, s, &user, &response.access_token, now)?);
        }
        let event = event
            .detail("username", &user.username)
            .detail("sid", &s.sid)
            .detail(
                "id_token",
                if response.id_token.is_some() {
                    "issued"
                } else {
                    ""
                },
            );
        self.store
            .put_record(record.gid.as_bytes(), &record)
            .await?;
        if let Some((token, refresh)) = &refresh {
            self.store
                .put_record(&self.hasher.hash(token.as_bytes())[..], refresh)
                .await?;
        }
        Ok((response, event))
    }

    /// OpenID Connect Core section 2 and 3.1.3.6: the ID token of a sign-in.
    fn id_token(
        &self,
        client: &ClientRecord,
        code: &SignedIn,
        user: &UserRecord,
        access_token: &str,
        now: i64,
    ) -> Result<String> {
        let keys = self.keys.state();
        let alg = keys.jwt.alg();
        let claims = writ_token::IdTokenClaims {
            iss: self.config.issuer.clone(),
            sub: code.subject.clone(),
            aud: client.client_id.clone(),
            exp: now + self.config.default_access_token_lifetime,
            iat: now,
            auth_time: code.auth_time,
            nonce: (!code.nonce.is_empty()).then(|| code.nonce.clone()),
            at_hash: Some(writ_token::token_hash(alg, access_token)),
            acr: crate::signin::ACR_PASSWORD.to_owned(),
            amr: code.amr.clone(),
            sid: code.sid.clone(),
            azp: client.client_id.clone(),
            preferred_username: Scopes::parse(&code.scope)
                .is_ok_and(|s| s.contains("profile"))
                .then(|| user.username.clone()),
        };
        Ok(writ_token::encode_id_token(&keys.jwt, &claims)?)
    }

    /// RFC 6749 section 6, with rotation: every use returns a new refresh token and marks the
    /// old one used. Presenting a used one is reuse: the whole family (every refresh and access
    /// token of the grant) is revoked, also after a restart since the used record is durable.
    /// Of N concurrent uses exactly one wins; the others are reuse too (RFC 9700 section 4.14.2:
    /// two parties held the same token, so the family is compromised).
    async fn refresh(&self, req: &TokenRequest) -> Result<TokenResponse> {
        let client = self
            .authenticate_client_from(req.into(), req.source)
            .await?;
        if req.refresh_token.is_empty() {
            return Err(Error::InvalidRequest("refresh_token is required"));
        }
        if !client.allows_grant(grant_type::REFRESH_TOKEN) {
            return Err(Error::UnauthorizedClient(
                "the client may not use refresh tokens",
            ));
        }
        let key = self.hasher.hash(req.refresh_token.as_bytes());
        let Some(old_bytes) = self.store.get(Tree::RefreshTokens, &key).await? else {
            return Err(Error::InvalidGrant("the refresh token is invalid"));
        };
        let old: RefreshTokenRecord = writ_store::decode(&old_bytes)?;
        // Checks that change nothing come first: a refresh token presented by another client
        // or after the client was disabled is refused without touching the family.
        if old.client_id != client.client_id {
            return Err(Error::InvalidGrant(
                "the refresh token was issued to another client",
            ));
        }
        if client.disabled {
            return Err(Error::InvalidGrant("the client is disabled"));
        }
        // A bound token (a public client's, issued with a DPoP proof) needs a proof by its key:
        // without one, nothing happens (a thief's attempt is no reuse that revokes the family).
        if !old.jkt.is_empty() && old.jkt != req.dpop_jkt {
            return Err(Error::InvalidDpopProof(
                "the refresh token is bound to a DPoP key this request did not prove",
            ));
        }
        // What the grant's record holds that a rotation needs, the token carries (tokens issued
        // before it did: read from the grant). The owner and the revocations are read at once:
        // on a networked store, one round trip for all of them.
        let owner = async {
            if old.username.is_empty() {
                Ok(None)
            } else {
                self.store
                    .get_record::<UserRecord>(old.username.as_bytes())
                    .await
            }
        };
        let (grant, owner, revoked) = match grant_of(&old) {
            Some(grant) => {
                let (owner, revoked) = tokio::join!(owner, self.grant_revoked(&grant));
                (grant, owner?, revoked?)
            }
            None => {
                let (grant, owner) = tokio::join!(
                    self.store.get_record::<GrantRecord>(old.gid.as_bytes()),
                    owner
                );
                let grant = grant?.ok_or(Error::InvalidGrant("the refresh token is invalid"))?;
                let revoked = self.grant_revoked(&grant).await?;
                (grant, owner?, revoked)
            }
        };
        let mut owner = owner;
        if revoked {
            return Err(Error::InvalidGrant("the grant has been revoked"));
        }
        let now = self.now();
        // A used token presented again by its client shortly after its rotation: the reply
        // carrying the successor may have been lost, so the successor (if still unused) is
        // replaced instead of the family being revoked. Anything else is reuse.
        let mut replacing = None;
        if old.state != REFRESH_ACTIVE {
            match self.retry_within_grace(&old, now).await? {
                Some(successor) => replacing = Some(successor),
                None => return self.reuse_detected(&client, &grant.gid).await,
            }
        }
        if now >= old.expires_at || now >= grant.expires_at {
            return Err(Error::InvalidGrant("the refresh token has expired"));
        }
        // Never more than the client and the user may have now: an administrator who narrowed
        // either narrowed the family too; a user deleted or disabled ends it.
        let mut granted = Scopes::parse(&old.scope).map_err(|_| Error::Internal("stored scope"))?;
        granted = granted.intersection(
            &Scopes::parse(&client.scope).map_err(|_| Error::Internal("stored scope"))?,
        );
        if !grant.username.is_empty() {
            if grant.username != old.username {
                owner = self
                    .store
                    .get_record::<UserRecord>(grant.username.as_bytes())
                    .await?;
            }
            let user = owner
                .filter(|u| !u.disabled && u.subject == grant.subject)
                .ok_or(Error::InvalidGrant(
                    "the resource owner no longer exists or is disabled",
                ))?;
            granted = granted.intersection(
                &Scopes::parse(&user.scope).map_err(|_| Error::Internal("stored scope"))?,
            );
        }
        let scope = narrow_scope(&req.scope, &granted)?;
        let audience = resolve_audience(&client, &req.audience, &req.resource)?;
        let format = resolve_format(&client, req.token_format)?;

        // A bound predecessor's key is the request's (checked above): the successor stays bound
        // to it; an unbound one's successor is bound to the key this request proved, if any.
        let (token, new_record) = self.new_refresh_token(&client, &grant, now, &req.dpop_jkt);
        let new_key = self.hasher.hash(token.as_bytes());
        let mut batch = Batch::new().expect(key.to_vec(), Some(old_bytes));
        let retry = replacing.is_some();
        let used = match replacing {
            // The grace period runs from the rotation, not from each retry.
            None => RefreshTokenRecord {
                state: REFRESH_USED,
                used_at: now,
                successor: new_key.to_vec(),
                ..old.clone()
            },
            Some((successor_key, successor_bytes, successor)) => {
                let replaced = RefreshTokenRecord {
                    state: REFRESH_REPLACED,
                    ..successor
                };
                batch = batch
                    .expect(successor_key.clone(), Some(successor_bytes))
                    .put(successor_key, encode(&replaced));
                RefreshTokenRecord {
                    successor: new_key.to_vec(),
                    ..old.clone()
                }
            }
        };
        // Minted before the rotation commits, so the record of the issue goes in its batch (a
        // token of a rotation that loses is never sent).
        let m = Minting {
            jkt: &req.dpop_jkt,
            x5t: &req.cert_x5t,
            proof_jti: &req.dpop_jti,
            client: &client,
            subject: old.subject.clone(),
            scope,
            audience,
            gid: grant.gid.clone(),
            format,
        };
        let (response, mut event) = self.issue(&m, grant_type::REFRESH_TOKEN, Some(token))?;
        if retry {
            // A retry within the grace period: the successor it replaced is named.
            event = event.detail("retry_of_rotation_at", old.used_at);
        }
        let intent = self.audit.intent(event);
        // Every record read is expected unchanged: of concurrent uses of this token or of its
        // successor, exactly one commits and the others are reuse.
        let batch = batch
            .put(key.to_vec(), encode(&used))
            .expect(new_key.to_vec(), None)
            .put(new_key.to_vec(), encode(&new_record));
        if !self
            .store
            .commit(Tree::RefreshTokens, intent.attach(batch))
            .await?
        {
            return self.reuse_detected(&client, &grant.gid).await;
        }
        self.audit.written(intent);
        self.store.durable().await?;
        Ok(response)
    }

    /// The unused successor of `old` (its stored key, bytes and record) when `old`, a used
    /// token, is presented again within the rotation grace period; `None` when that is reuse.
    /// (The presenting client was already checked to be the token's.)
    async fn retry_within_grace(
        &self,
        old: &RefreshTokenRecord,
        now: i64,
    ) -> Result<Option<(Vec<u8>, Vec<u8>, RefreshTokenRecord)>> {
        let grace = self
            .config
            .refresh_rotation_grace
            .min(crate::MAX_REFRESH_ROTATION_GRACE);
        // `used_at` is the rotating replica's clock: a retry may reach one up to the leeway
        // behind it.
        if grace <= 0
            || old.state != REFRESH_USED
            || old.successor.is_empty()
            || now.saturating_add(self.config.leeway) < old.used_at
            || now.saturating_sub(old.used_at) > grace
        {
            return Ok(None);
        }
        let Some(bytes) = self.store.get(Tree::RefreshTokens, &old.successor).await? else {
            return Ok(None);
        };
        let successor: RefreshTokenRecord = writ_store::decode(&bytes)?;
        if successor.state != REFRESH_ACTIVE || successor.gid != old.gid {
            return Ok(None);
        }
        Ok(Some((old.successor.clone(), bytes, successor)))
    }

    /// Revokes the family (its own record, reason `refresh token reuse`); the refusal that
    /// follows is the token endpoint's.
    async fn reuse_detected(&self, _client: &ClientRecord, gid: &str) -> Result<TokenResponse> {
        self.revoke_grant(gid, "refresh token reuse").await?;
        Err(Error::InvalidGrant(
            "the refresh token was already used; its grant has been revoked",
        ))
    }

    /// A refresh token for `grant`. A public client's is bound to the DPoP key its request
    /// proved (RFC 9449 section 5): a thief without that key cannot use it. A confidential
    /// client's is bound to the client by its authentication, as RFC 9449 has it.
    fn new_refresh_token(
        &self,
        client: &ClientRecord,
        grant: &GrantRecord,
        now: i64,
        jkt: &str,
    ) -> (String, RefreshTokenRecord) {
        let lifetime = match client.refresh_token_lifetime {
            0 => self.config.default_refresh_token_lifetime,
            n => n,
        };
        let record = RefreshTokenRecord {
            gid: grant.gid.clone(),
            client_id: client.client_id.clone(),
            subject: grant.subject.clone(),
            scope: grant.scope.clone(),
            issued_at: now,
            expires_at: (now + lifetime).min(grant.expires_at),
            state: REFRESH_ACTIVE,
            used_at: 0,
            username: grant.username.clone(),
            grant_created_at: grant.created_at,
            grant_expires_at: grant.expires_at,
            successor: Vec::new(),
            jkt: if client.is_confidential() {
                String::new()
            } else {
                jkt.to_owned()
            },
        };
        (random_secret(), record)
    }

    /// [`Self::issue`] without a refresh token.
    pub(crate) fn issue_for(&self, m: &Minting<'_>, grant: &str) -> Result<(TokenResponse, Event)> {
        self.issue(m, grant, None)
    }

    /// Mints the access token(s) for a grant decision, with the audit record of the issue (for
    /// the caller to write with the state change, or queue).
    fn issue(
        &self,
        m: &Minting<'_>,
        grant: &str,
        refresh_token: Option<String>,
    ) -> Result<(TokenResponse, Event)> {
        let now = self.now();
        let lifetime = match m.client.access_token_lifetime {
            0 => self.config.default_access_token_lifetime,
            n => n,
        }
        .min(self.config.max_access_token_lifetime);
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: m.subject.clone(),
            aud: m.audience.clone(),
            exp: now + lifetime,
            iat: now,
            nbf: Some(now),
            jti: random_id(),
            client_id: m.client.client_id.clone(),
            scope: m.scope.to_string(),
            gid: Some(m.gid.clone()),
            act: None,
            may_act: None,
            cnf: None,
        };
        let bound = !m.jkt.is_empty();
        // RFC 9449 section 5.2: a client registered for it always proves a key. Checked before
        // anything is written (the code or refresh token it presented stays as it was).
        if m.client.dpop_bound_access_tokens && !bound {
            return Err(Error::InvalidRequest(
                "this client's tokens are DPoP-bound: send a DPoP proof",
            ));
        }
        // RFC 8705 section 3: a client registered for it gets tokens bound to the certificate
        // it presented; without one, none.
        let x5t = if m.client.tls_client_certificate_bound_access_tokens {
            if m.x5t.is_empty() {
                return Err(Error::InvalidRequest(
                    "this client's access tokens are bound to its TLS client certificate: \
                     present one",
                ));
            }
            m.x5t
        } else {
            ""
        };
        if (bound || !x5t.is_empty())
            && !matches!(m.format, FormatChoice::Jwt | FormatChoice::Default)
        {
            return Err(Error::InvalidRequest(
                "DPoP- and certificate-bound access tokens are JWTs: ask for token_format jwt",
            ));
        }
        if bound {
            self.spend_dpop(m.jkt, m.proof_jti)?;
        }
        let claims = AccessClaims {
            cnf: (bound || !x5t.is_empty()).then(|| writ_token::Confirmation {
                jkt: bound.then(|| m.jkt.to_owned()),
                x5t_s256: (!x5t.is_empty()).then(|| x5t.to_owned()),
            }),
            ..claims
        };
        let keys = self.keys.state();
        let (access_token, issued_token_type, biscuit) = match m.format {
            FormatChoice::Jwt | FormatChoice::Default => (
                encode_access_token(&keys.jwt, &claims)?,
                token_type::JWT,
                None,
            ),
            FormatChoice::Biscuit => (
                mint_biscuit(&keys.biscuit, &claims)?,
                token_type::BISCUIT,
                None,
            ),
            FormatChoice::JwtAndBiscuit => (
                encode_access_token(&keys.jwt, &claims)?,
                token_type::JWT,
                Some(mint_biscuit(&keys.biscuit, &claims)?),
            ),
            // Opaque to its holder: RFC 8693's access token type, not the JWT's.
            FormatChoice::Reference => (
                self.references
                    .seal(&encode_access_token(&keys.jwt, &claims)?)
                    .ok_or(Error::Internal("sealing a reference token failed"))?,
                token_type::ACCESS_TOKEN,
                None,
            ),
        };
        let event = Event::new("token_issued", Outcome::Success)
            .actor(&claims.client_id)
            .client(&claims.client_id)
            .subject(&claims.sub)
            .gid(&m.gid)
            .audience(&claims.aud)
            .detail("grant_type", grant)
            .detail("jti", &claims.jti)
            .detail("scope", &claims.scope)
            .detail("exp", claims.exp)
            .detail("format", format!("{:?}", m.format))
            .detail("dpop_jkt", m.jkt)
            .detail("cert_x5t", x5t)
            .detail(
                "refresh_token",
                if refresh_token.is_some() {
                    "issued"
                } else {
                    ""
                },
            );
        let response = TokenResponse {
            access_token,
            // RFC 9449 section 5: a bound token's type says how to present it.
            token_type: if bound { "DPoP" } else { "Bearer" },
            expires_in: lifetime,
            refresh_token,
            scope: claims.scope,
            issued_token_type,
            biscuit,
            id_token: None,
        };
        Ok((response, event))
    }
}

/// The grant a refresh token belongs to, from what the token records of it (`None` for a token
/// issued before tokens recorded it).
fn grant_of(token: &RefreshTokenRecord) -> Option<GrantRecord> {
    (token.grant_created_at != 0).then(|| GrantRecord {
        gid: token.gid.clone(),
        client_id: token.client_id.clone(),
        subject: token.subject.clone(),
        scope: token.scope.clone(),
        created_at: token.grant_created_at,
        expires_at: token.grant_expires_at,
        username: token.username.clone(),
    })
}

fn check_request_sizes(req: &TokenRequest) -> Result<()> {
    let too_long = req.client_id.len() > MAX_ID_LEN
        || req.client_secret.len() > MAX_SECRET_LEN
        || req.refresh_token.len() > MAX_SECRET_LEN
        || req.username.len() > MAX_ID_LEN
        || req.password.len() > MAX_SECRET_LEN
        || req.scope.len() > writ_token::MAX_SCOPE_LEN
        || req.grant_type.len() > 256
        || req.code.len() > crate::codes::MAX_CODE_LEN
        || req.redirect_uri.len() > crate::signin::MAX_URI_LEN
        || req.code_verifier.len() > 128
        || req.device_code.len() > MAX_SECRET_LEN
        || req.client_assertion.len() > writ_token::MAX_ASSERTION_LEN
        || req.client_assertion_type.len() > 256
        || req.assertion.len() > writ_token::MAX_ASSERTION_LEN;
    if too_long {
        return Err(Error::InvalidRequest("a parameter is too long"));
    }
    // The JWT-bearer grant may name its client by policy alone (RFC 7523 section 2.1: client
    // authentication is optional).
    if req.client_id.is_empty() && req.grant_type != grant_type::JWT_BEARER {
        return Err(Error::InvalidRequest("client_id is required"));
    }
    if req.audience.len() + req.resource.len() > MAX_AUDIENCES {
        return Err(Error::InvalidRequest("too many audiences"));
    }
    Ok(())
}

/// The requested scope, which must lie within `allowed`; none requested means all of `allowed`.
pub(crate) fn narrow_scope(requested: &str, allowed: &Scopes) -> Result<Scopes> {
    let requested =
        Scopes::parse(requested).map_err(|_| Error::InvalidScope("scope is malformed"))?;
    if requested.is_empty() {
        return Ok(allowed.clone());
    }
    if !requested.is_subset(allowed) {
        return Err(Error::InvalidScope(
            "the requested scope exceeds what the client may be granted",
        ));
    }
    Ok(requested)
}

/// `audience` and `resource` together, each allowed for the client; none means its default.
pub(crate) fn resolve_audience(
    client: &ClientRecord,
    audience: &[String],
    resource: &[String],
) -> Result<Vec<String>> {
    if audience.len() + resource.len() > MAX_AUDIENCES {
        return Err(Error::InvalidRequest("too many audiences"));
    }
    let mut wanted: Vec<String> = audience.iter().chain(resource).cloned().collect();
    wanted.sort();
    wanted.dedup();
    if wanted.is_empty() {
        return client
            .audience
            .first()
            .map(|a| vec![a.clone()])
            .ok_or(Error::InvalidTarget(
                "the client has no audience configured",
            ));
    }
    if wanted
        .iter()
        .any(|a| !valid_id(a) || !client.audience.contains(a))
    {
        return Err(Error::InvalidTarget(
            "the requested audience is not allowed for the client",
        ));
    }
    Ok(wanted)
}

pub(crate) fn resolve_format(client: &ClientRecord, wanted: FormatChoice) -> Result<FormatChoice> {
    let allows = |f: i32| {
        if client.token_formats.is_empty() {
            return f == FORMAT_JWT;
        }
        client.token_formats.contains(&f)
            || client.token_formats.contains(&FORMAT_JWT_AND_BISCUIT)
                && (f == FORMAT_JWT || f == FORMAT_BISCUIT)
            || f == FORMAT_JWT_AND_BISCUIT
                && client.token_formats.contains(&FORMAT_JWT)
                && client.token_formats.contains(&FORMAT_BISCUIT)
    };
    let wanted = match wanted {
        FormatChoice::Default => match client.default_token_format {
            FORMAT_BISCUIT => FormatChoice::Biscuit,
            FORMAT_JWT_AND_BISCUIT => FormatChoice::JwtAndBiscuit,
            FORMAT_REFERENCE => FormatChoice::Reference,
            _ => FormatChoice::Jwt,
        },
        other => other,
    };
    let code = match wanted {
        FormatChoice::Jwt | FormatChoice::Default => FORMAT_JWT,
        FormatChoice::Biscuit => FORMAT_BISCUIT,
        FormatChoice::JwtAndBiscuit => FORMAT_JWT_AND_BISCUIT,
        FormatChoice::Reference => FORMAT_REFERENCE,
    };
    if !allows(code) {
        return Err(Error::InvalidRequest(
            "the token format is not allowed for the client",
        ));
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every format a client asks for, against what it allows: a reference token only when
    /// listed (never implied by `jwt+biscuit`), and the default the first it would get.
    #[test]
    fn a_client_gets_only_the_formats_it_allows() {
        use FormatChoice::*;
        let client = |formats: &[i32], default: i32| ClientRecord {
            token_formats: formats.to_vec(),
            default_token_format: default,
            ..ClientRecord::default()
        };
        let cases: [(&[i32], i32, [bool; 4]); 5] = [
            // Allowed: Jwt, Biscuit, JwtAndBiscuit, Reference.
            (&[], 0, [true, false, false, false]),
            (&[FORMAT_JWT_AND_BISCUIT], 0, [true, true, true, false]),
            (&[FORMAT_JWT, FORMAT_BISCUIT], 0, [true, true, true, false]),
            (
                &[FORMAT_REFERENCE],
                FORMAT_REFERENCE,
                [false, false, false, true],
            ),
            (
                &[FORMAT_JWT, FORMAT_REFERENCE],
                0,
                [true, false, false, true],
            ),
        ];
        for (formats, default, allowed) in cases {
            let c = client(formats, default);
            for (choice, allowed) in [Jwt, Biscuit, JwtAndBiscuit, Reference]
                .into_iter()
                .zip(allowed)
            {
                assert_eq!(
                    resolve_format(&c, choice).is_ok(),
                    allowed,
                    "{formats:?} asked for {choice:?}"
                );
            }
        }
        assert_eq!(
            resolve_format(&client(&[FORMAT_REFERENCE], FORMAT_REFERENCE), Default).unwrap(),
            Reference
        );
        assert!(resolve_format(&client(&[FORMAT_REFERENCE], 0), Default).is_err());
    }
}
