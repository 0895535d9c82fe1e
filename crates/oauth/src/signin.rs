//! People signing in: the authorization endpoint (RFC 6749 section 4.1 with PKCE, RFC 7636,
//! `S256` only; OpenID Connect Core section 3.1), browser sessions (single sign-on), remembered
//! consent, and signing out (RP-initiated logout), which revokes every grant the session made
//! through the revocation feed.
//!
//! The engine decides; the transport renders. [`AuthorizationServer::authorize`] answers a
//! request with an [`Authorize`]: a redirect to the client (a code, or an error the client may
//! learn of), a refusal to show the user (never redirected: the client or its redirect URI is
//! not known to be genuine), or an interaction (sign in, consent) after which the transport
//! sends the browser back to the authorization endpoint with the same request.
//!
//! Stored in [`Tree::SignIn`]: sessions under `s/` + the keyed hash of the cookie's value,
//! the marks of redeemed codes under `c/` + the keyed hash of their grant id (a code is sealed,
//! not stored: [`crate::codes`]), consents under `k/` + subject + `/` + client id, each
//! session's place under `v/` + the keyed hash of its subject + its `sid`, and the grants a
//! session issued under `q/` + its `sid` + a number. Only hashes of the browser's secrets are
//! stored.

use writ_audit::{Event, Outcome};
use writ_store::{AsyncStoreExt, Batch, Tree, encode};
use writ_token::{RevocationEntry, RevocationKind, Scopes, random_id, random_secret};

use crate::error::{Error, Result};
use crate::records::{
    AuthCodeRecord, ClientRecord, ConsentRecord, SessionIndexRecord, SessionRecord, UserRecord,
};
use crate::revocations::Revocation;
use crate::sessions::{Ending, SessionGrant};
use crate::{AuthorizationServer, MAX_ID_LEN, grant_type, valid_id};

/// Most redirect URIs (and post-logout redirect URIs) a client may register.
pub const MAX_REDIRECT_URIS: usize = 16;
/// Longest redirect URI accepted.
pub const MAX_URI_LEN: usize = 2048;
/// Longest `state` and `nonce` accepted (echoed back, so bounded).
pub const MAX_STATE_LEN: usize = 1024;
/// How long an authorization code lives (RFC 6749 section 4.1.2 recommends at most 10 minutes;
/// a browser redirect takes seconds).
pub const CODE_LIFETIME: i64 = 60;
/// Most grants one session keeps track of: signing out revokes each, so the list is bounded;
/// making one more revokes the oldest (a client looping through the authorization endpoint
/// cannot lock the person out).
pub const MAX_SESSION_GRANTS: usize = 1000;
/// The OpenID Connect scopes: any client using the authorization code grant may ask for them,
/// whatever its registered scope, and they are granted whatever the user's.
pub const OIDC_SCOPES: &[&str] = &["openid", "profile"];
/// `acr` of a password sign-in: one factor.
pub const ACR_PASSWORD: &str = "1";

/// RFC 6749 section 4.1.1, RFC 7636 section 4.3 and OpenID Connect Core section 3.1.2.1, with
/// their parameter names.
#[derive(Debug, Clone, Default)]
pub struct AuthorizationRequest {
    pub response_type: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: String,
    pub code_challenge: String,
    pub code_challenge_method: String,
    pub nonce: String,
    /// Space-delimited: `none`, `login`, `consent`.
    pub prompt: String,
    /// Seconds, as sent (empty: none).
    pub max_age: String,
    pub response_mode: String,
    /// A request object (RFC 9101): not supported, refused as such.
    pub request: String,
    pub request_uri: String,
    pub audience: Vec<String>,
    pub resource: Vec<String>,
}

/// What the transport does with an authorization request.
#[derive(Debug)]
pub enum Authorize {
    /// Send the browser to the client's redirect URI (a code or an error, with `state` and
    /// `iss`).
    Redirect(String),
    /// Show this error to the user; never redirect (the client or the redirect URI is not
    /// known to be genuine).
    Refuse(Error),
    /// Ask the user to sign in, then come back with the same request.
    Login(Interaction),
    /// Ask the user to let the client have `scopes`, then come back with the same request.
    Consent(Interaction),
}

/// What a sign-in or consent page shows.
#[derive(Debug, Clone)]
pub struct Interaction {
    pub client_id: String,
    /// The client's name, or its id when it has none.
    pub client_name: String,
    /// What the client asks for (consent), or will (sign-in).
    pub scopes: Vec<String>,
    /// The services its tokens will be for.
    pub audience: Vec<String>,
    /// The signed-in user's name (consent).
    pub username: String,
}

/// A browser session just opened: the cookie's value (shown to the browser alone; stored as a
/// keyed hash) and when it ends.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub cookie: String,
    pub expires_at: i64,
    /// Another user's session this sign-in ended (in the same browser): its clients' logout
    /// tokens, for the transport to deliver.
    pub logout_notices: Vec<LogoutNotice>,
}

/// OpenID Connect Back-Channel Logout: a logout token for one client of a session that ended,
/// to POST (`logout_token=...`) to the client's `backchannel_logout_uri`. Delivering it is the
/// transport's; the grants are revoked through the feed whether or not it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutNotice {
    pub client_id: String,
    pub uri: String,
    pub logout_token: String,
}

/// How long a logout token may be accepted (Back-Channel Logout section 2.4 asks for a short
/// lifetime; the RP checks `iat`).
pub const LOGOUT_TOKEN_LIFETIME: i64 = 120;

/// A consent as the account page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub client_id: String,
    pub client_name: String,
    pub scopes: Vec<String>,
    pub granted_at: i64,
}

/// Most consents the account page lists.
pub const MAX_LISTED_CONSENTS: usize = 200;

/// OpenID Connect Core section 5.3.2: the claims UserInfo returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub sub: String,
    /// With the `profile` scope.
    pub preferred_username: Option<String>,
}

/// A validated request, up to where it may be redirected.
struct Validated {
    client: ClientRecord,
    redirect_uri: String,
    state: String,
    /// What the client may be granted of what it asked (before the user's own scope).
    requested: Scopes,
    audience: Vec<String>,
    nonce: String,
    code_challenge: String,
    prompt_none: bool,
    prompt_login: bool,
    prompt_consent: bool,
    max_age: Option<i64>,
    /// A pushed request (RFC 9126): its stored key and bytes (spent with the code) and when it
    /// was pushed (a sign-in or consent since then answers its `prompt` and `max_age`).
    pushed: Option<(Vec<u8>, Vec<u8>, crate::records::PushedRequestRecord)>,
}

/// How long a pushed authorization request may be used: long enough for a person to sign in
/// (RFC 9126 section 2.2 leaves it to the server; it is spent by its first code).
pub const PUSHED_REQUEST_LIFETIME: i64 = 300;
/// The `request_uri` prefix of RFC 9126 section 2.2.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

impl AuthorizationServer {
    /// The authorization endpoint. `cookie` is the browser's session cookie, if any.
    ///
    /// One audit record per answer that ends the request: `authorization_code_issued` (with the
    /// code's grant; durable before the code is answered, in the batch that spends a pushed
    /// request if one was used) or `authorization_refused` with the reason. Interactions record nothing; their own forms do.
    pub async fn authorize(&self, req: AuthorizationRequest, cookie: Option<&str>) -> Authorize {
        // A pushed request stands for the parameters it was pushed with, and only for them.
        let (req, pushed) = if req.request_uri.is_empty() {
            (req, None)
        } else {
            match self.pushed_request(&req).await {
                Ok((stored, key, bytes, record)) => (stored, Some((key, bytes, record))),
                Err(e) => {
                    self.audit_authorization_refusal(&req, &e).await;
                    return Authorize::Refuse(e);
                }
            }
        };
        let validated = self.validate_authorization(&req, pushed.is_some()).await;
        let v = match validated.map(|v| Validated { pushed, ..v }) {
            Ok(v) => v,
            Err(Ok(refusal)) => {
                self.audit_authorization_refusal(&req, &refusal).await;
                return Authorize::Refuse(refusal);
            }
            Err(Err((redirect, refusal))) => {
                self.audit_authorization_refusal(&req, &refusal).await;
                return Authorize::Redirect(redirect);
            }
        };
        match self.authorize_validated(&v, cookie).await {
            Ok(answer) => answer,
            Err(e) => {
                self.audit_authorization_refusal(&req, &e).await;
                Authorize::Redirect(self.error_redirect(&v.redirect_uri, &v.state, &e))
            }
        }
    }

    async fn audit_authorization_refusal(&self, req: &AuthorizationRequest, e: &Error) {
        self.audit_refusal(
            crate::refusal_event("authorization_refused", e)
                .actor(&req.client_id)
                .client(&req.client_id)
                .detail("redirect_uri", &req.redirect_uri),
        )
        .await;
    }

    /// Checks a request: `Err(Ok(e))` must not be redirected, `Err(Err((uri, e)))` is the
    /// error redirect to make.
    #[allow(clippy::type_complexity)]
    async fn validate_authorization(
        &self,
        req: &AuthorizationRequest,
        pushed: bool,
    ) -> std::result::Result<Validated, std::result::Result<Error, (String, Error)>> {
        // Until the client and its redirect URI are known good, nothing is redirected.
        let too_long = req.client_id.len() > MAX_ID_LEN
            || req.redirect_uri.len() > MAX_URI_LEN
            || req.state.len() > MAX_STATE_LEN
            || req.nonce.len() > MAX_STATE_LEN
            || req.scope.len() > writ_token::MAX_SCOPE_LEN
            || req.code_challenge.len() > 128
            || req.request_uri.len() > MAX_URI_LEN
            || [&req.response_type, &req.code_challenge_method, &req.prompt]
                .iter()
                .chain([&req.max_age, &req.response_mode].iter())
                .any(|p| p.len() > 64);
        if too_long {
            return Err(Ok(Error::InvalidRequest("a parameter is too long")));
        }
        if req.client_id.is_empty() {
            return Err(Ok(Error::InvalidRequest("client_id is required")));
        }
        let client = match self.client_for_authorization(&req.client_id).await {
            Ok(c) => c,
            Err(e) => return Err(Ok(e)),
        };
        if req.redirect_uri.is_empty() {
            return Err(Ok(Error::InvalidRequest("redirect_uri is required")));
        }
        // Exact string comparison (RFC 9700 section 4.1.3): no prefix, no normalisation.
        if !client
            .redirect_uris
            .iter()
            .any(|r| redirect_uri_matches(r, &req.redirect_uri))
        {
            return Err(Ok(Error::InvalidRequest(
                "redirect_uri is not registered for the client",
            )));
        }
        let redirect = |e: Error| {
            Err(Err((
                self.error_redirect(&req.redirect_uri, &req.state, &e),
                e,
            )))
        };
        if !req.request.is_empty() {
            return redirect(Error::RequestNotSupported);
        }
        if !req.request_uri.is_empty() {
            return redirect(Error::InvalidRequest(
                "request_uri cannot be pushed (RFC 9126 section 2.1)",
            ));
        }
        if client.require_pushed_authorization_requests && !pushed {
            return redirect(Error::InvalidRequest(
                "the client must push its authorization requests",
            ));
        }
        if req.response_type != "code" {
            return redirect(Error::UnsupportedResponseType);
        }
        if !matches!(req.response_mode.as_str(), "" | "query") {
            return redirect(Error::InvalidRequest("response_mode may only be query"));
        }
        if !client.allows_grant(grant_type::AUTHORIZATION_CODE) {
            return redirect(Error::UnauthorizedClient(
                "the client may not use the authorization code grant",
            ));
        }
        // PKCE, S256 only (RFC 9700 section 2.1.1): no method is `plain` (RFC 7636 section
        // 4.3), refused like `plain` itself.
        if req.code_challenge.is_empty() {
            return redirect(Error::InvalidRequest("code_challenge is required (PKCE)"));
        }
        if req.code_challenge_method != "S256" {
            return redirect(Error::InvalidRequest("code_challenge_method must be S256"));
        }
        if req.code_challenge.len() != 43 || !is_base64url(&req.code_challenge) {
            return redirect(Error::InvalidRequest(
                "code_challenge is not a base64url SHA-256 digest",
            ));
        }
        let mut prompt_none = false;
        let mut prompt_login = false;
        let mut prompt_consent = false;
        for p in req.prompt.split(' ').filter(|p| !p.is_empty()) {
            match p {
                "none" => prompt_none = true,
                "login" => prompt_login = true,
                "consent" => prompt_consent = true,
                _ => return redirect(Error::InvalidRequest("prompt may be none, login, consent")),
            }
        }
        if prompt_none && (prompt_login || prompt_consent) {
            return redirect(Error::InvalidRequest("prompt=none stands alone"));
        }
        let max_age = match req.max_age.as_str() {
            "" => None,
            s => match s.parse::<i64>() {
                Ok(n) if n >= 0 => Some(n),
                _ => return redirect(Error::InvalidRequest("max_age is a number of seconds")),
            },
        };
        let Ok(asked) = Scopes::parse(&req.scope) else {
            return redirect(Error::InvalidScope("scope is malformed"));
        };
        let Ok(client_scope) = Scopes::parse(&client.scope) else {
            return redirect(Error::Internal("stored scope"));
        };
        let allowed = client_scope.union(&oidc_scopes());
        let requested = if asked.is_empty() {
            client_scope
        } else if asked.is_subset(&allowed) {
            asked
        } else {
            return redirect(Error::InvalidScope(
                "the requested scope exceeds what the client may be granted",
            ));
        };
        let audience = match self.authorization_audience(&client, req) {
            Ok(a) => a,
            Err(e) => return redirect(e),
        };
        Ok(Validated {
            redirect_uri: req.redirect_uri.clone(),
            state: req.state.clone(),
            requested,
            audience,
            nonce: req.nonce.clone(),
            code_challenge: req.code_challenge.clone(),
            prompt_none,
            prompt_login,
            prompt_consent,
            max_age,
            client,
            pushed: None,
        })
    }

    /// The request a `request_uri` stands for, pushed by the client named with it, not yet
    /// spent nor expired; with its stored key and bytes and when it was pushed.
    async fn pushed_request(
        &self,
        req: &AuthorizationRequest,
    ) -> Result<(
        AuthorizationRequest,
        Vec<u8>,
        Vec<u8>,
        crate::records::PushedRequestRecord,
    )> {
        const UNKNOWN: Error =
            Error::InvalidRequestUri("request_uri is unknown, expired, spent or another client's");
        let id = req
            .request_uri
            .strip_prefix(REQUEST_URI_PREFIX)
            .filter(|id| !id.is_empty() && id.len() <= 64)
            .ok_or(UNKNOWN)?;
        let key = prefixed(b"p/", &self.hasher.hash(id.as_bytes()));
        let bytes = self.store.get(Tree::SignIn, &key).await?.ok_or(UNKNOWN)?;
        let p: crate::records::PushedRequestRecord = writ_store::decode(&bytes)?;
        // RFC 9126 section 4: the client_id parameter must name the client that pushed it.
        if p.client_id != req.client_id || self.now() >= p.expires_at {
            return Err(UNKNOWN);
        }
        let stored = AuthorizationRequest {
            response_type: p.response_type.clone(),
            client_id: p.client_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            scope: p.scope.clone(),
            state: p.state.clone(),
            code_challenge: p.code_challenge.clone(),
            code_challenge_method: p.code_challenge_method.clone(),
            nonce: p.nonce.clone(),
            prompt: p.prompt.clone(),
            max_age: p.max_age.clone(),
            response_mode: p.response_mode.clone(),
            request: String::new(),
            request_uri: String::new(),
            audience: p.audience.clone(),
            resource: p.resource.clone(),
        };
        Ok((stored, key, bytes, p))
    }

    /// RFC 9126: a client pushes an authorization request (authenticated like at the token
    /// endpoint; a public client by its id) and gets a `request_uri` for it, valid for
    /// [`PUSHED_REQUEST_LIFETIME`] seconds and spent by its first code. The request is checked
    /// as the authorization endpoint would, and refused here with the same error.
    ///
    /// One audit record: `authorization_request_pushed` or `authorization_refused`.
    pub async fn push_authorization_request(
        &self,
        client: &crate::ClientCredentials,
        req: AuthorizationRequest,
        source: Option<std::net::IpAddr>,
    ) -> Result<(String, i64)> {
        let answer = self.push_decision(client.into(), &req, source).await;
        if let Err(e) = &answer {
            self.audit_authorization_refusal(&req, e).await;
        }
        answer
    }

    async fn push_decision(
        &self,
        presented: crate::client_auth::Presented<'_>,
        req: &AuthorizationRequest,
        source: Option<std::net::IpAddr>,
    ) -> Result<(String, i64)> {
        let client = self.authenticate_client_from(presented, source).await?;
        if client.disabled {
            return Err(Error::InvalidClient);
        }
        if req.client_id != client.client_id {
            return Err(Error::InvalidRequest(
                "client_id differs from the authenticated client",
            ));
        }
        if !req.request_uri.is_empty() {
            return Err(Error::InvalidRequest(
                "request_uri cannot be pushed (RFC 9126 section 2.1)",
            ));
        }
        self.pending_budget
            .spend(source, self.now())
            .map_err(Error::Throttled)?;
        let v = match self.validate_authorization(req, true).await {
            Ok(v) => v,
            Err(Ok(e)) | Err(Err((_, e))) => return Err(e),
        };
        let now = self.now();
        let id = random_secret();
        let key = prefixed(b"p/", &self.hasher.hash(id.as_bytes()));
        let record = crate::records::PushedRequestRecord {
            client_id: v.client.client_id.clone(),
            response_type: req.response_type.clone(),
            redirect_uri: req.redirect_uri.clone(),
            scope: req.scope.clone(),
            state: req.state.clone(),
            code_challenge: req.code_challenge.clone(),
            code_challenge_method: req.code_challenge_method.clone(),
            nonce: req.nonce.clone(),
            prompt: req.prompt.clone(),
            max_age: req.max_age.clone(),
            response_mode: req.response_mode.clone(),
            audience: req.audience.clone(),
            resource: req.resource.clone(),
            pushed_at: now,
            expires_at: now + PUSHED_REQUEST_LIFETIME,
            ..Default::default()
        };
        let intent = self.audit.intent(
            Event::new("authorization_request_pushed", Outcome::Success)
                .actor(&record.client_id)
                .client(&record.client_id)
                .detail("redirect_uri", &record.redirect_uri)
                .detail("scope", &record.scope),
        );
        let batch = Batch::new()
            .expect(key.clone(), None)
            .put(key, encode(&record));
        if !self.commit_audited(Tree::SignIn, intent, batch).await? {
            return Err(Error::Conflict("the request_uri is taken; retry"));
        }
        Ok((format!("{REQUEST_URI_PREFIX}{id}"), PUSHED_REQUEST_LIFETIME))
    }

    /// An enabled client that may be sent to, by id; every other case is one refusal.
    pub(crate) async fn client_for_authorization(&self, client_id: &str) -> Result<ClientRecord> {
        let client = if valid_id(client_id) {
            self.store
                .get_record::<ClientRecord>(client_id.as_bytes())
                .await?
        } else {
            None
        };
        client.filter(|c| !c.disabled).ok_or(Error::InvalidRequest(
            "client_id is not a known, enabled client",
        ))
    }

    pub(crate) fn authorization_audience(
        &self,
        client: &ClientRecord,
        req: &AuthorizationRequest,
    ) -> Result<Vec<String>> {
        crate::grants::resolve_audience(client, &req.audience, &req.resource)
    }

    async fn authorize_validated(&self, v: &Validated, cookie: Option<&str>) -> Result<Authorize> {
        let interaction = |scopes: &Scopes, username: &str| Interaction {
            client_id: v.client.client_id.clone(),
            client_name: if v.client.client_name.is_empty() {
                v.client.client_id.clone()
            } else {
                v.client.client_name.clone()
            },
            scopes: scopes.iter().map(str::to_owned).collect(),
            audience: v.audience.clone(),
            username: username.to_owned(),
        };
        let now = self.now();
        let session = match cookie {
            Some(c) => self.live_session(c).await?,
            None => None,
        };
        // `max_age=0` asks for a sign-in now, like `prompt=login` (OpenID Connect Core section
        // 3.1.2.1); the transport resumes a request without it once the user signed in.
        // A pushed request is resumed as it was pushed, prompt included: the sign-in (and the
        // consent) it asked for are remembered with it, for this browser's session.
        let pushed = v.pushed.as_ref().map(|p| &p.2);
        let signed_in_since_push = |s: &(Vec<u8>, Vec<u8>, SessionRecord, UserRecord)| {
            pushed.is_some_and(|p| !p.signed_in_sid.is_empty() && p.signed_in_sid == s.2.sid)
        };
        let fresh_enough = |s: &(Vec<u8>, Vec<u8>, SessionRecord, UserRecord)| {
            signed_in_since_push(s)
                || v.max_age
                    .is_none_or(|max| max > 0 && now.saturating_sub(s.2.auth_time) <= max)
        };
        let session = match session {
            Some(s) if (!v.prompt_login || signed_in_since_push(&s)) && fresh_enough(&s) => s,
            _ if v.prompt_none => return Err(Error::LoginRequired),
            _ => return Ok(Authorize::Login(interaction(&v.requested, ""))),
        };
        let (key, _, record, user) = session;
        // What the user may let the client have: its own scope, and the OpenID scopes.
        let user_scope = Scopes::parse(&user.scope)
            .map_err(|_| Error::Internal("stored scope"))?
            .union(&oidc_scopes());
        let granted = v.requested.intersection(&user_scope);
        let consent = self
            .store
            .get_record::<ConsentRecord>(&consent_key(&user.subject, &v.client.client_id))
            .await?;
        let consented_since_push =
            pushed.is_some_and(|p| !p.consented_sid.is_empty() && p.consented_sid == record.sid);
        let consented = consent
            .as_ref()
            .is_some_and(|c| c.covers(&v.client, &granted, &v.audience));
        if (v.prompt_consent && !consented_since_push) || !consented {
            if v.prompt_none {
                return Err(Error::ConsentRequired);
            }
            return Ok(Authorize::Consent(interaction(&granted, &user.username)));
        }
        let code = self.issue_code(v, &granted, key, &record, now).await?;
        let mut params = vec![("code", code.as_str())];
        if !v.state.is_empty() {
            params.push(("state", v.state.as_str()));
        }
        params.push(("iss", self.config.issuer.as_str()));
        Ok(Authorize::Redirect(with_query(&v.redirect_uri, &params)))
    }

    /// A code for the signed-in session, sealed (see [`crate::codes`]): issuing it stores
    /// nothing but its audit record. A pushed request it answers is spent in the same batch as
    /// that record (a pushed request answers once). The grant it will issue joins the session
    /// when it is redeemed, and a session ended before then makes it worthless.
    async fn issue_code(
        &self,
        v: &Validated,
        granted: &Scopes,
        session_key: Vec<u8>,
        session: &SessionRecord,
        now: i64,
    ) -> Result<String> {
        let gid = random_id();
        let record = AuthCodeRecord {
            client_id: v.client.client_id.clone(),
            redirect_uri: v.redirect_uri.clone(),
            code_challenge: v.code_challenge.clone(),
            scope: granted.to_string(),
            audience: v.audience.clone(),
            nonce: v.nonce.clone(),
            username: session.username.clone(),
            subject: session.subject.clone(),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            sid: session.sid.clone(),
            gid: gid.clone(),
            issued_at: now,
            expires_at: now + CODE_LIFETIME,
            used: false,
            session_key,
            client_registration_id: v.client.registration_id.clone(),
        };
        let code = self.codes.seal(&record).ok_or(Error::InvalidRequest(
            "the request is too large to answer with a code",
        ))?;
        let event = Event::new("authorization_code_issued", Outcome::Success)
            .actor(&record.client_id)
            .client(&record.client_id)
            .subject(&record.subject)
            .gid(&gid)
            .audience(&record.audience)
            .detail("scope", &record.scope)
            .detail("sid", &record.sid)
            .detail("redirect_uri", &record.redirect_uri);
        match &v.pushed {
            Some((pushed_key, pushed_bytes, _)) => {
                let batch = Batch::new()
                    .expect(pushed_key.clone(), Some(pushed_bytes.clone()))
                    .remove(pushed_key.clone());
                if !self
                    .commit_audited(Tree::SignIn, self.audit.intent(event), batch)
                    .await?
                {
                    return Err(Error::InvalidRequestUri("the request_uri was already used"));
                }
            }
            None => self.audit.record(event).await?,
        }
        Ok(code)
    }

    /// The session a cookie names, if it is live: not expired, its user still there, enabled
    /// and not cut off since it signed in (a password reset, a deletion). With its stored key
    /// and bytes (for a compare-and-swap) and the user.
    pub(crate) async fn live_session(
        &self,
        cookie: &str,
    ) -> Result<Option<(Vec<u8>, Vec<u8>, SessionRecord, UserRecord)>> {
        if cookie.is_empty() || cookie.len() > 64 {
            return Ok(None);
        }
        let key = self.session_key(cookie);
        let Some(bytes) = self.store.get(Tree::SignIn, &key).await? else {
            return Ok(None);
        };
        let session: SessionRecord = writ_store::decode(&bytes)?;
        if self.now() >= session.expires_at {
            return Ok(None);
        }
        let Some(user) = self
            .store
            .get_record::<UserRecord>(session.username.as_bytes())
            .await?
        else {
            return Ok(None);
        };
        if user.disabled
            || user.subject != session.subject
            || self
                .is_revoked(RevocationKind::Subject, &session.subject, session.auth_time)
                .await?
        {
            return Ok(None);
        }
        Ok(Some((key, bytes, session, user)))
    }

    pub(crate) fn session_key(&self, cookie: &str) -> Vec<u8> {
        prefixed(b"s/", &self.hasher.hash(cookie.as_bytes()))
    }

    /// Signs a user in with a password (the login form), from `source`. Opens a session, or
    /// renews the one `cookie` names when it is the same user's (a new cookie value either
    /// way: no session fixation); a session of another user is ended first. Throttled like
    /// the password grant, per username and per source.
    ///
    /// One audit record: `user_signed_in` or `sign_in_refused`.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        cookie: Option<&str>,
        source: Option<std::net::IpAddr>,
    ) -> Result<NewSession> {
        // A success is recorded with the session it opens (`sign_in_decision`).
        let result = self
            .sign_in_decision(username, password, cookie, source)
            .await;
        if let Err(e) = &result {
            self.audit_refusal(
                crate::refusal_event("sign_in_refused", e)
                    .detail("username", username)
                    .detail("source", source.map(|s| s.to_string()).unwrap_or_default()),
            )
            .await
        }
        result
    }

    async fn sign_in_decision(
        &self,
        username: &str,
        password: &str,
        cookie: Option<&str>,
        source: Option<std::net::IpAddr>,
    ) -> Result<NewSession> {
        let from = source.map(crate::throttle::Subject::Source);
        let from = from.as_slice();
        if let Some(wait) = self.throttle.locked(from, self.now()) {
            return Err(Error::Throttled(wait));
        }
        if username.is_empty() || password.is_empty() {
            return Err(Error::InvalidRequest("username and password are required"));
        }
        let user = match self.authenticate_user(username, password).await {
            Ok(u) => u,
            Err(e) => {
                if matches!(&e, Error::InvalidGrant(_)) {
                    self.throttle.failed(from, self.now());
                }
                return Err(e);
            }
        };
        let now = self.now();
        let previous = match cookie {
            Some(c) if !c.is_empty() && c.len() <= 64 => {
                let key = self.session_key(c);
                self.store
                    .get(Tree::SignIn, &key)
                    .await?
                    .map(|b| writ_store::decode::<SessionRecord>(&b).map(|s| (key, b, s)))
                    .transpose()?
            }
            _ => None,
        };
        let mut batch = Batch::new();
        let mut record = SessionRecord {
            sid: random_id(),
            username: user.username.clone(),
            subject: user.subject.clone(),
            auth_time: now,
            amr: vec!["pwd".to_owned()],
            created_at: now,
            expires_at: now + self.config.session_lifetime,
            gids: Vec::new(),
            gid_clients: Vec::new(),
            grants_issued: 0,
            oldest_grant: 0,
        };
        let mut ended = None;
        if let Some((key, bytes, old)) = previous {
            batch = batch.expect(key.clone(), Some(bytes)).remove(key);
            if old.subject == user.subject && now < old.expires_at {
                // The same user again (prompt=login, max_age): the session goes on, renewed.
                record.sid = old.sid;
                record.created_at = old.created_at;
                record.gids = old.gids;
                record.gid_clients = old.gid_clients;
                record.grants_issued = old.grants_issued;
                record.oldest_grant = old.oldest_grant;
            } else {
                ended = Some(old);
            }
        }
        let cookie = random_secret();
        let key = self.session_key(&cookie);
        let intent = self.audit.intent(
            Event::new("user_signed_in", Outcome::Success)
                .actor(&user.username)
                .subject(&user.subject)
                .detail("username", &user.username)
                .detail("sid", &record.sid)
                .detail("amr", "pwd")
                .detail("source", source.map(|s| s.to_string()).unwrap_or_default()),
        );
        let mut ended_grants = Vec::new();
        if let Some(old) = &ended {
            // Another user signs in in this browser: the previous user's session is over, its
            // grants revoked first (as a sign-out does).
            ended_grants = self.session_grants(old).await?;
            let gids: Vec<String> = ended_grants.iter().map(|g| g.gid.clone()).collect();
            self.revoke_grants(&gids, "signed in as another user")
                .await?;
            batch = batch.remove(self.session_index_key(&old.subject, &old.sid));
            for listed in ended_grants.iter().filter_map(|g| g.key.clone()) {
                batch = batch.remove(listed);
            }
        }
        let index = SessionIndexRecord {
            session_key: key.clone(),
            expires_at: record.expires_at,
        };
        let batch = batch
            .expect(key.clone(), None)
            .put(key, encode(&record))
            .put(
                self.session_index_key(&record.subject, &record.sid),
                encode(&index),
            );
        if !self.commit_audited(Tree::SignIn, intent, batch).await? {
            return Err(Error::Conflict("the session changed concurrently; retry"));
        }
        let mut logout_notices = Vec::new();
        if let Some(old) = ended {
            logout_notices = self.logout_notices(&old, &ended_grants).await;
        }
        Ok(NewSession {
            cookie,
            expires_at: record.expires_at,
            logout_notices,
        })
    }

    /// Remembers that the signed-in user lets `client_id` have `scope` (the consent form); a
    /// later request within it needs no consent. Returns whether a session was live.
    pub async fn grant_consent(&self, cookie: &str, req: AuthorizationRequest) -> Result<()> {
        let Some((_, _, session, user)) = self.live_session(cookie).await? else {
            return Err(Error::LoginRequired);
        };
        // The request the consent screen was shown for, checked again: a consent is recorded
        // only for a request that would be answered, and only for what the server computes it
        // grants, never for what the form says.
        let (req, pushed) = if req.request_uri.is_empty() {
            (req, false)
        } else {
            let (stored, key, bytes, record) = self.pushed_request(&req).await?;
            // This consent answers the pushed request's prompt=consent (for this session).
            let answered = crate::records::PushedRequestRecord {
                consented_sid: session.sid.clone(),
                ..record
            };
            let batch = Batch::new()
                .expect(key.clone(), Some(bytes))
                .put(key, encode(&answered));
            self.store.commit(Tree::SignIn, batch).await?;
            (stored, true)
        };
        let v = match self.validate_authorization(&req, pushed).await {
            Ok(v) => v,
            Err(Ok(e)) | Err(Err((_, e))) => return Err(e),
        };
        let user_scope = Scopes::parse(&user.scope)
            .map_err(|_| Error::Internal("stored scope"))?
            .union(&oidc_scopes());
        let scope = v.requested.intersection(&user_scope);
        let client = v.client;
        let audience = v.audience;
        let key = consent_key(&session.subject, &client.client_id);
        let now = self.now();
        self.update_record::<ConsentRecord>(
            &key,
            |current| {
                Ok(Some(ConsentRecord::widened(
                    current,
                    &session.subject,
                    &client,
                    &scope,
                    &audience,
                    now,
                )))
            },
            |before, after| {
                Event::new("consent_granted", Outcome::Success)
                    .actor(&session.username)
                    .subject(&after.subject)
                    .client(&after.client_id)
                    .detail(
                        "before",
                        before.map(|b| b.scope.clone()).unwrap_or_default(),
                    )
                    .detail("after", &after.scope)
            },
        )
        .await?;
        Ok(())
    }

    /// The signed-in user's name and the consents they gave (at most
    /// [`MAX_LISTED_CONSENTS`]), for the account page; `None` without a live session.
    pub async fn consents(&self, cookie: &str) -> Result<Option<(String, Vec<Consent>)>> {
        let Some((_, _, session, user)) = self.live_session(cookie).await? else {
            return Ok(None);
        };
        let prefix = format!("k/{}/", session.subject).into_bytes();
        let rows = self
            .store
            .scan_records::<ConsentRecord>(&prefix, None, MAX_LISTED_CONSENTS)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (_, c) in rows {
            out.push(Consent {
                client_name: self.client_display_name(&c.client_id).await,
                scopes: c
                    .scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                client_id: c.client_id,
                granted_at: c.granted_at,
            });
        }
        Ok(Some((user.username, out)))
    }

    /// The signed-in user takes back a consent: the client must ask again, and the grants this
    /// session made for it are revoked (through the feed, like a sign-out). Grants made in other
    /// browsers end when they expire or when those sessions sign out.
    /// The client's logout token (back-channel logout) is returned when it had signed in in
    /// this session: its part of the session is over.
    pub async fn revoke_consent(&self, cookie: &str, client_id: &str) -> Result<Vec<LogoutNotice>> {
        if !valid_id(client_id) {
            return Err(Error::InvalidRequest("client_id is malformed"));
        }
        let mut revoked: std::collections::HashSet<String> = Default::default();
        for _ in 0..8 {
            let Some((key, bytes, session, user)) = self.live_session(cookie).await? else {
                return Err(Error::LoginRequired);
            };
            let (ended, kept): (Vec<SessionGrant>, Vec<SessionGrant>) = self
                .session_grants(&session)
                .await?
                .into_iter()
                .partition(|g| g.client_id == client_id);
            let fresh: Vec<String> = ended
                .iter()
                .map(|g| g.gid.clone())
                .filter(|g| !revoked.contains(g))
                .collect();
            self.revoke_grants(&fresh, "consent revoked").await?;
            revoked.extend(fresh);
            // Grants listed in the record itself (older sessions) are kept there, less these.
            let mut tidied = session.clone();
            let legacy: Vec<&SessionGrant> = kept.iter().filter(|g| g.key.is_none()).collect();
            tidied.gids = legacy.iter().map(|g| g.gid.clone()).collect();
            tidied.gid_clients = legacy.iter().map(|g| g.client_id.clone()).collect();
            let intent = self.audit.intent(
                Event::new("consent_revoked", Outcome::Success)
                    .actor(&user.username)
                    .subject(&user.subject)
                    .client(client_id)
                    .detail("grants", ended.len()),
            );
            // The consent goes with the session as it was read: a grant another tab made for
            // the client meanwhile changed it, and is revoked on the next turn.
            let mut batch = Batch::new()
                .remove(consent_key(&user.subject, client_id))
                .expect(key.clone(), Some(bytes))
                .put(key, encode(&tidied));
            for listed in ended.iter().filter_map(|g| g.key.clone()) {
                batch = batch.remove(listed);
            }
            if self.commit_audited(Tree::SignIn, intent, batch).await? {
                return Ok(self.logout_notices(&session, &ended).await);
            }
        }
        Err(Error::Conflict("the session changed concurrently; retry"))
    }

    /// Ends the session `cookie` names (logout): removes it and revokes every grant it made,
    /// through the revocation feed, so guards refuse its access tokens and its refresh tokens
    /// stop working. The logout tokens of the session's clients that registered a back-channel
    /// logout URI are returned for the transport to deliver (none if there was no session).
    pub async fn end_session(&self, cookie: &str, why: &str) -> Result<Vec<LogoutNotice>> {
        if cookie.is_empty() || cookie.len() > 64 {
            return Ok(Vec::new());
        }
        let ended = self
            .end_stored_session(&self.session_key(cookie), why, Ending::ByUser)
            .await?;
        Ok(ended.unwrap_or_default())
    }

    /// Ends the session stored under `key`: its grants revoked (unless `ending` says a cut-off
    /// already covers them), then the session and its index entry removed with the audit record
    /// `session_ended`. `None` if there was no session.
    pub(crate) async fn end_stored_session(
        &self,
        key: &[u8],
        why: &str,
        ending: Ending,
    ) -> Result<Option<Vec<LogoutNotice>>> {
        let mut revoked: std::collections::HashSet<String> = Default::default();
        for _ in 0..16 {
            let Some(bytes) = self.store.get(Tree::SignIn, key).await? else {
                return Ok(None);
            };
            let session: SessionRecord = writ_store::decode(&bytes)?;
            let grants = self.session_grants(&session).await?;
            if ending != Ending::CutOff {
                // Revoked first: a crash in between leaves a session whose grants already ended.
                let fresh: Vec<String> = grants
                    .iter()
                    .map(|g| g.gid.clone())
                    .filter(|g| !revoked.contains(g))
                    .collect();
                let revoking = !fresh.is_empty();
                self.revoke_grants(&fresh, why).await?;
                revoked.extend(fresh);
                // Revoking is durable, so slow: a code issued meanwhile would fail the swap
                // below; read again and revoke it first, so the swap's window stays short.
                if revoking
                    && self.store.get(Tree::SignIn, key).await?.as_deref() != Some(&bytes[..])
                {
                    continue;
                }
            }
            let mut event = Event::new("session_ended", Outcome::Success)
                .subject(&session.subject)
                .detail("username", &session.username)
                .detail("sid", &session.sid)
                .detail("grants", grants.len())
                .detail("reason", why);
            if ending == Ending::ByUser {
                // Otherwise the actor is whoever acts (an administrator).
                event = event.actor(&session.username);
            }
            let intent = self.audit.intent(event);
            // Removed only as it was read: a grant another tab added meanwhile changed the
            // session, so this turn writes nothing and the next revokes it too.
            let mut batch = Batch::new()
                .expect(key.to_vec(), Some(bytes))
                .remove(key.to_vec())
                .remove(self.session_index_key(&session.subject, &session.sid));
            for listed in grants.iter().filter_map(|g| g.key.clone()) {
                batch = batch.remove(listed);
            }
            if self.commit_audited(Tree::SignIn, intent, batch).await? {
                return Ok(Some(self.logout_notices(&session, &grants).await));
            }
        }
        Err(Error::Conflict("the session changed concurrently; retry"))
    }

    /// A logout token for each client the session signed in to that registered a back-channel
    /// logout URI (signed with the server's JWT key; `sid` is the one its ID tokens carry).
    ///
    /// Made after the session ended (or after that client's part of it did), for `grants`
    /// (what it listed): a client whose token cannot be made is logged and skipped, never a
    /// reason to fail what already happened.
    pub(crate) async fn logout_notices(
        &self,
        session: &SessionRecord,
        grants: &[SessionGrant],
    ) -> Vec<LogoutNotice> {
        let mut clients: Vec<&String> = grants
            .iter()
            .map(|g| &g.client_id)
            .filter(|c| !c.is_empty())
            .collect();
        clients.sort();
        clients.dedup();
        let now = self.now();
        let keys = self.keys.state();
        let mut notices = Vec::new();
        for client_id in clients {
            let client = match self
                .store
                .get_record::<ClientRecord>(client_id.as_bytes())
                .await
            {
                Ok(Some(c)) if !c.backchannel_logout_uri.is_empty() => c,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(%client_id, error = %e, "no logout token: the client could not be read");
                    continue;
                }
            };
            let claims = writ_token::LogoutTokenClaims {
                iss: self.config.issuer.clone(),
                aud: client.client_id.clone(),
                iat: now,
                exp: now + LOGOUT_TOKEN_LIFETIME,
                jti: random_id(),
                sub: session.subject.clone(),
                sid: session.sid.clone(),
                events: serde_json::json!({ writ_token::BACKCHANNEL_LOGOUT_EVENT: {} }),
            };
            match writ_token::encode_logout_token(&keys.jwt, &claims) {
                Ok(logout_token) => notices.push(LogoutNotice {
                    logout_token,
                    uri: client.backchannel_logout_uri,
                    client_id: client.client_id,
                }),
                Err(e) => tracing::warn!(%client_id, error = %e, "no logout token: signing failed"),
            }
        }
        notices
    }

    /// Revokes grants a session issued, through the feed.
    pub(crate) async fn revoke_grants(&self, gids: &[String], why: &str) -> Result<()> {
        if gids.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let revocations: Vec<Revocation> = gids
            .iter()
            .map(|gid| Revocation {
                entry: RevocationEntry {
                    kind: RevocationKind::GrantId,
                    value: gid.clone(),
                    issuer: String::new(),
                    expires_at: now + self.access_horizon(),
                    not_before: 0,
                    reason: why.to_owned(),
                },
                keep_until: now + self.grant_horizon(),
            })
            .collect();
        for chunk in revocations.chunks(100) {
            self.record_revocations(chunk, "authorization server")
                .await?;
        }
        Ok(())
    }

    /// The user declined the consent screen: the client hears `access_denied` (a request that
    /// cannot be redirected is refused as such).
    pub async fn deny(&self, req: AuthorizationRequest) -> Authorize {
        let (req, pushed) = if req.request_uri.is_empty() {
            (req, false)
        } else {
            match self.pushed_request(&req).await {
                Ok((stored, ..)) => (stored, true),
                Err(e) => return Authorize::Refuse(e),
            }
        };
        match self.validate_authorization(&req, pushed).await {
            Ok(v) => {
                let e = Error::AccessDenied("the user declined");
                self.audit_authorization_refusal(&req, &e).await;
                Authorize::Redirect(self.error_redirect(&v.redirect_uri, &v.state, &e))
            }
            Err(Ok(e)) | Err(Err((_, e))) => Authorize::Refuse(e),
        }
    }

    /// OpenID Connect Core section 5.3: the claims about the user an access token carrying
    /// `openid` stands for. The token is this server's, live (not revoked, not expired), and
    /// was issued to a user; every other token is `invalid_token`.
    pub async fn userinfo(&self, access_token: &str) -> Result<UserInfo> {
        let answer = self.userinfo_decision(access_token).await;
        match &answer {
            Ok(info) => {
                self.audit
                    .record(Event::new("userinfo_served", Outcome::Success).subject(&info.sub))
                    .await?
            }
            Err(e) => {
                self.audit_refusal(crate::refusal_event("userinfo_refused", e))
                    .await
            }
        }
        answer
    }

    async fn userinfo_decision(&self, access_token: &str) -> Result<UserInfo> {
        const INVALID: Error =
            Error::InvalidToken("the access token is invalid, expired or revoked");
        if access_token.is_empty() || access_token.len() > crate::MAX_TOKEN_LEN {
            return Err(INVALID);
        }
        let Some((t, _)) = self.verify_bearer(access_token).await? else {
            return Err(INVALID);
        };
        // A token bound to a DPoP key or a TLS certificate is good only with a proof of it,
        // which UserInfo does not check (yet): refused, never taken as a bearer token.
        if t.claims.cnf.is_some() {
            return Err(Error::InvalidToken(
                "the access token is bound to a DPoP key or a TLS certificate; UserInfo takes \
                 bearer tokens only",
            ));
        }
        if !self.is_live(&t).await? {
            return Err(INVALID);
        }
        let scope = Scopes::parse(&t.claims.scope).map_err(|_| INVALID)?;
        if !scope.contains("openid") {
            return Err(Error::InsufficientScope(
                "the access token lacks the openid scope",
            ));
        }
        let grant = match &t.claims.gid {
            Some(gid) => {
                self.store
                    .get_record::<crate::records::GrantRecord>(gid.as_bytes())
                    .await?
            }
            None => None,
        };
        let Some(grant) = grant.filter(|g| !g.username.is_empty()) else {
            return Err(INVALID);
        };
        let user = self
            .store
            .get_record::<UserRecord>(grant.username.as_bytes())
            .await?
            .filter(|u| !u.disabled && u.subject == t.claims.sub)
            .ok_or(INVALID)?;
        Ok(UserInfo {
            sub: user.subject,
            preferred_username: scope.contains("profile").then_some(user.username),
        })
    }

    /// A sign-in just made in the browser with `cookie` answers the `prompt=login` (and
    /// `max_age`) of the pushed request `request_uri` of `client_id` (the login form calls it
    /// before sending the browser back with that request). Unknown or spent requests and dead
    /// sessions change nothing.
    pub async fn pushed_sign_in_answered(
        &self,
        cookie: &str,
        client_id: &str,
        request_uri: &str,
    ) -> Result<()> {
        let Some((_, _, session, _)) = self.live_session(cookie).await? else {
            return Ok(());
        };
        let req = AuthorizationRequest {
            client_id: client_id.to_owned(),
            request_uri: request_uri.to_owned(),
            ..Default::default()
        };
        let Ok((_, key, bytes, record)) = self.pushed_request(&req).await else {
            return Ok(());
        };
        let answered = crate::records::PushedRequestRecord {
            signed_in_sid: session.sid,
            ..record
        };
        let batch = Batch::new()
            .expect(key.clone(), Some(bytes))
            .put(key, encode(&answered));
        self.store.commit(Tree::SignIn, batch).await?;
        self.store.durable().await?;
        Ok(())
    }

    /// The name a sign-in page shows for a client (its id when it has none or is unknown).
    pub async fn client_display_name(&self, client_id: &str) -> String {
        match self.client_for_authorization(client_id).await {
            Ok(c) if !c.client_name.is_empty() => c.client_name,
            _ => client_id.to_owned(),
        }
    }

    /// Where RP-initiated logout sends the browser back to: `uri` (with `state`) only if it is
    /// one of the client's registered post-logout redirect URIs, exactly. The client is
    /// `client_id`, or the audience of `id_token_hint` (an ID token this server signed; it may
    /// have expired, OpenID Connect RP-Initiated Logout section 2).
    pub async fn post_logout_redirect(
        &self,
        client_id: &str,
        id_token_hint: &str,
        uri: &str,
        state: &str,
    ) -> Option<String> {
        if uri.is_empty() || state.len() > MAX_STATE_LEN {
            return None;
        }
        // RP-Initiated Logout section 2: with both, the hint's client must be the one named.
        let hinted = if id_token_hint.is_empty() {
            None
        } else {
            Some(self.id_token_client(id_token_hint)?)
        };
        let client_id = match (client_id, hinted) {
            ("", Some(h)) => h,
            ("", None) => return None,
            (c, Some(h)) if c != h => return None,
            (c, _) => c.to_owned(),
        };
        let client = self.client_for_authorization(&client_id).await.ok()?;
        if !client.post_logout_redirect_uris.iter().any(|u| u == uri) {
            return None;
        }
        let params: Vec<(&str, &str)> = if state.is_empty() {
            Vec::new()
        } else {
            vec![("state", state)]
        };
        Some(if params.is_empty() {
            uri.to_owned()
        } else {
            with_query(uri, &params)
        })
    }

    /// The client an ID token this server signed was issued to (signature, `iss` and `aud`
    /// checked; not its expiry).
    pub fn id_token_client(&self, id_token: &str) -> Option<String> {
        if id_token.is_empty() || id_token.len() > crate::MAX_TOKEN_LEN {
            return None;
        }
        let verifier = writ_token::TokenVerifier::new(
            writ_token::VerifierConfig::new(vec![self.config.issuer.clone()], None),
            (*self.trusted_keys()).clone(),
            self.clock.clone(),
        );
        let jws = verifier.verify_jws(id_token).ok()?;
        let claims: writ_token::IdTokenClaims = serde_json::from_slice(&jws.payload).ok()?;
        (claims.iss == self.config.issuer && valid_id(&claims.aud)).then_some(claims.aud)
    }

    /// An error the client may learn of, as a redirect (RFC 6749 section 4.1.2.1, with `iss`
    /// of RFC 9207).
    fn error_redirect(&self, redirect_uri: &str, state: &str, e: &Error) -> String {
        let description = e.description();
        let mut params = vec![
            ("error", e.oauth_code()),
            ("error_description", &description),
        ];
        if !state.is_empty() {
            params.push(("state", state));
        }
        params.push(("iss", self.config.issuer.as_str()));
        with_query(redirect_uri, &params)
    }
}

pub(crate) fn oidc_scopes() -> Scopes {
    Scopes::parse(&OIDC_SCOPES.join(" ")).expect("the OpenID scopes parse")
}

pub(crate) fn consent_key(subject: &str, client_id: &str) -> Vec<u8> {
    format!("k/{subject}/{client_id}").into_bytes()
}

pub(crate) fn prefixed(prefix: &[u8], hash: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + hash.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(hash);
    key
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `presented` is the registered redirect URI: the same string, or, for a loopback IP
/// address over http, the same but for the port (RFC 8252 section 7.3: a native app listens on
/// whatever port it gets).
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(r), Ok(p)) = (
        registered.parse::<http::Uri>(),
        presented.parse::<http::Uri>(),
    ) else {
        return false;
    };
    let loopback = |u: &http::Uri| {
        u.scheme_str() == Some("http")
            && u.authority().is_some_and(|a| {
                matches!(a.host(), "127.0.0.1" | "[::1]") && !a.as_str().contains('@')
            })
    };
    loopback(&r)
        && loopback(&p)
        && r.host() == p.host()
        && r.path_and_query().map(|x| x.as_str()) == p.path_and_query().map(|x| x.as_str())
        && !presented.contains('#')
}

/// `uri` with `params` appended to its query (form-encoded), before any fragment (registered
/// URIs have none).
pub fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let query = query.finish();
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{query}")
}

/// A redirect URI a client may register: absolute, without a fragment or credentials, and
/// either https, http on a loopback address (RFC 8252 section 7.3), or a private-use scheme
/// with a dot (RFC 8252 section 7.1, e.g. `com.example.app:/callback`).
pub fn valid_redirect_uri(uri: &str) -> bool {
    if uri.len() > MAX_URI_LEN || uri.contains('#') || uri.bytes().any(|b| !b.is_ascii_graphic()) {
        return false;
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let scheme_ok = !scheme.is_empty()
        && scheme.as_bytes()[0].is_ascii_alphabetic()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return false;
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" | "http" => {
            let Ok(parsed) = uri.parse::<http::Uri>() else {
                return false;
            };
            let Some(authority) = parsed.authority() else {
                return false;
            };
            if authority.as_str().contains('@') || authority.host().is_empty() {
                return false;
            }
            scheme.eq_ignore_ascii_case("https")
                || matches!(authority.host(), "127.0.0.1" | "[::1]" | "localhost")
        }
        // Schemes that would run code or read local files in the browser.
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" => false,
        _ => scheme.contains('.') && rest.starts_with('/'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_loopback_http_or_private_use_schemes() {
        for ok in [
            "https://rp.example/cb",
            "https://rp.example:8443/cb?x=1",
            "http://127.0.0.1:5000/cb",
            "http://[::1]/cb",
            "http://localhost:3000/callback",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(valid_redirect_uri(ok), "{ok}");
        }
        for bad in [
            "",
            "/relative",
            "https://rp.example/cb#frag",
            "http://rp.example/cb",
            "https://user:pw@rp.example/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "myapp:/cb",
            "https://rp.example/c b",
            "https:///cb",
        ] {
            assert!(!valid_redirect_uri(bad), "{bad}");
        }
    }

    #[test]
    fn loopback_ip_redirect_uris_match_on_any_port_and_nothing_else_does() {
        assert!(redirect_uri_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:51004/cb"
        ));
        assert!(redirect_uri_matches(
            "http://127.0.0.1:9/cb",
            "http://127.0.0.1:51004/cb"
        ));
        assert!(redirect_uri_matches(
            "http://[::1]/cb",
            "http://[::1]:8080/cb"
        ));
        for (registered, presented) in [
            ("http://127.0.0.1/cb", "http://127.0.0.1:80/cb2"),
            ("http://127.0.0.1/cb", "http://127.0.0.2:80/cb"),
            ("http://127.0.0.1/cb", "https://127.0.0.1:80/cb"),
            ("http://127.0.0.1/cb", "http://127.0.0.1:80/cb?x=1"),
            ("http://localhost/cb", "http://localhost:80/cb"),
            ("https://rp.example/cb", "https://rp.example:8443/cb"),
            ("http://127.0.0.1/cb", "http://evil@127.0.0.1:80/cb"),
        ] {
            assert!(!redirect_uri_matches(registered, presented), "{presented}");
        }
    }

    #[test]
    fn a_query_is_appended_encoded_to_the_redirect_uri() {
        assert_eq!(
            with_query("https://rp/cb", &[("code", "a b"), ("state", "x&y=z")]),
            "https://rp/cb?code=a+b&state=x%26y%3Dz"
        );
        assert_eq!(
            with_query("https://rp/cb?k=v", &[("code", "c")]),
            "https://rp/cb?k=v&code=c"
        );
    }
}
