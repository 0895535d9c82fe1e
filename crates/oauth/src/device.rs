//! The device authorization grant (RFC 8628), for command-line tools and devices without a
//! browser: the device asks for a device code and a short user code; the person opens the
//! verification page in any browser, signs in (single sign-on applies), checks the code the
//! device shows and allows it; meanwhile the device polls the token endpoint.
//!
//! Stored in [`Tree::SignIn`]: `d/` + the keyed hash of the device code (the authorization) and
//! `u/` + the user code (pointing at it). User codes are eight letters from an alphabet without
//! vowels or look-alikes (RFC 8628 section 6.1: about 34 bits), live ten minutes, and entering
//! wrong ones counts against the source's throttle.

use writ_audit::{Event, Outcome};
use writ_store::{AsyncStoreExt, Batch, Tree, encode};
use writ_token::{Scopes, random_bytes, random_id, random_secret};

use crate::error::{Error, Result};
use crate::records::{
    ClientRecord, ConsentRecord, DEVICE_APPROVED, DEVICE_DENIED, DEVICE_PENDING, DEVICE_USED,
    DeviceRecord, SessionRecord,
};
use crate::signin::{Interaction, consent_key, oidc_scopes, prefixed};
use crate::types::{TokenRequest, TokenResponse};
use crate::{AuthorizationServer, grant_type};

/// How long a device code and its user code live (RFC 8628 section 3.2 `expires_in`).
pub const DEVICE_CODE_LIFETIME: i64 = 600;
/// Seconds a device waits between polls (RFC 8628 section 3.2 `interval`).
pub const DEVICE_POLL_INTERVAL: i64 = 5;
/// RFC 8628 section 6.1: no vowels (no words), no look-alikes.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;

/// RFC 8628 section 3.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    pub device_code: String,
    /// As shown to the person: `XXXX-XXXX`.
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

/// What the verification page shows.
#[derive(Debug)]
pub enum DevicePage {
    /// Sign in first.
    Login(Interaction),
    /// Ask for the code (none given, or it was not found: `error`).
    EnterCode { error: &'static str },
    /// Show the code and what the device asks for; allow or deny.
    Confirm {
        interaction: Interaction,
        user_code: String,
    },
}

/// A user code as typed: dashes and spaces dropped, upper-cased (RFC 8628 section 6.1).
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

fn display_user_code(code: &str) -> String {
    format!("{}-{}", &code[..4], &code[4..])
}

fn new_user_code() -> String {
    // 20 letters: a byte modulo 20 would favour the first 16 (256 = 12 * 20 + 16); bytes of
    // 240 and above are drawn again.
    let mut code = String::with_capacity(USER_CODE_LEN);
    while code.len() < USER_CODE_LEN {
        for b in random_bytes::<16>() {
            if b < 240 && code.len() < USER_CODE_LEN {
                code.push(USER_CODE_ALPHABET[usize::from(b) % 20] as char);
            }
        }
    }
    code
}

impl AuthorizationServer {
    /// RFC 8628 section 3.1: a device asks to be authorized (client authentication as at the
    /// token endpoint; a public client by its id).
    ///
    /// One audit record: `device_authorization_started` or `device_authorization_refused`.
    pub async fn device_authorization(
        &self,
        client: &crate::ClientCredentials,
        scope: &str,
        audience: Vec<String>,
        resource: Vec<String>,
        source: Option<std::net::IpAddr>,
    ) -> Result<DeviceAuthorization> {
        let client_id =
            &crate::client_auth::named_client(&client.client_id, &client.client_assertion);
        let answer = self
            .device_decision(client.into(), scope, audience, resource, source)
            .await;
        if let Err(e) = &answer {
            self.audit_refusal(
                crate::refusal_event("device_authorization_refused", e)
                    .actor(client_id)
                    .client(client_id),
            )
            .await;
        }
        answer
    }

    async fn device_decision(
        &self,
        presented: crate::client_auth::Presented<'_>,
        scope: &str,
        audience: Vec<String>,
        resource: Vec<String>,
        source: Option<std::net::IpAddr>,
    ) -> Result<DeviceAuthorization> {
        let client = self.authenticate_client_from(presented, source).await?;
        if client.disabled {
            return Err(Error::InvalidClient);
        }
        if !client.allows_grant(grant_type::DEVICE_CODE) {
            return Err(Error::UnauthorizedClient(
                "the client may not use the device authorization grant",
            ));
        }
        let requested = requested_scope(&client, scope)?;
        self.pending_budget
            .spend(source, self.now())
            .map_err(Error::Throttled)?;
        let req = crate::signin::AuthorizationRequest {
            audience,
            resource,
            ..Default::default()
        };
        let audience = self.authorization_audience(&client, &req)?;
        let now = self.now();
        let device_code = random_secret();
        let key = prefixed(b"d/", &self.hasher.hash(device_code.as_bytes()));
        let base = self.config.issuer.trim_end_matches('/');
        for _ in 0..4 {
            let user_code = new_user_code();
            let record = DeviceRecord {
                client_id: client.client_id.clone(),
                scope: requested.to_string(),
                audience: audience.clone(),
                user_code: user_code.clone(),
                state: DEVICE_PENDING,
                issued_at: now,
                expires_at: now + DEVICE_CODE_LIFETIME,
                interval: DEVICE_POLL_INTERVAL,
                ..Default::default()
            };
            let intent = self.audit.intent(
                Event::new("device_authorization_started", Outcome::Success)
                    .actor(&client.client_id)
                    .client(&client.client_id)
                    .audience(&audience)
                    .detail("scope", &record.scope),
            );
            let code_key = format!("u/{user_code}").into_bytes();
            let batch = Batch::new()
                .expect(code_key.clone(), None)
                .put(code_key, key.clone())
                .expect(key.clone(), None)
                .put(key.clone(), encode(&record));
            // A user code still in use (rare: 20^8 of them) is drawn again.
            if self.commit_audited(Tree::SignIn, intent, batch).await? {
                let shown = display_user_code(&user_code);
                return Ok(DeviceAuthorization {
                    verification_uri: format!("{base}/oauth2/device"),
                    verification_uri_complete: format!("{base}/oauth2/device?user_code={shown}"),
                    device_code,
                    user_code: shown,
                    expires_in: DEVICE_CODE_LIFETIME,
                    interval: DEVICE_POLL_INTERVAL,
                });
            }
        }
        Err(Error::Conflict("no free user code; retry"))
    }

    /// The pending device authorization a typed user code names, with its stored key and bytes.
    async fn pending_device(
        &self,
        typed: &str,
    ) -> Result<Option<(Vec<u8>, Vec<u8>, DeviceRecord)>> {
        let Some(code) = normalize_user_code(typed) else {
            return Ok(None);
        };
        let Some(key) = self
            .store
            .get(Tree::SignIn, format!("u/{code}").as_bytes())
            .await?
        else {
            return Ok(None);
        };
        let Some(bytes) = self.store.get(Tree::SignIn, &key).await? else {
            return Ok(None);
        };
        let record: DeviceRecord = writ_store::decode(&bytes)?;
        if record.state != DEVICE_PENDING || self.now() >= record.expires_at {
            return Ok(None);
        }
        Ok(Some((key, bytes, record)))
    }

    /// The verification page (RFC 8628 section 3.3) for a browser with `cookie`, and the code
    /// it was given (by the link, or typed). A wrong code counts against `source`'s throttle.
    pub async fn device_page(
        &self,
        cookie: Option<&str>,
        user_code: &str,
        source: Option<std::net::IpAddr>,
    ) -> Result<DevicePage> {
        let session = match cookie {
            Some(c) => self.live_session(c).await?,
            None => None,
        };
        let Some((_, _, _, user)) = session else {
            return Ok(DevicePage::Login(Interaction {
                client_id: String::new(),
                client_name: "your device".to_owned(),
                scopes: Vec::new(),
                audience: Vec::new(),
                username: String::new(),
            }));
        };
        if user_code.is_empty() {
            return Ok(DevicePage::EnterCode { error: "" });
        }
        self.throttled(source)?;
        let Some((_, _, device)) = self.pending_device(user_code).await? else {
            self.throttle_failure(source);
            return Ok(DevicePage::EnterCode {
                error: "That code is not valid, or has expired. Check the code on your device.",
            });
        };
        let client = self.client_for_authorization(&device.client_id).await?;
        let scopes = granted_scope(&device, &user.scope)?;
        Ok(DevicePage::Confirm {
            interaction: Interaction {
                client_name: if client.client_name.is_empty() {
                    client.client_id.clone()
                } else {
                    client.client_name.clone()
                },
                client_id: client.client_id,
                scopes: scopes.iter().map(str::to_owned).collect(),
                audience: device.audience.clone(),
                username: user.username,
            },
            user_code: display_user_code(&device.user_code),
        })
    }

    fn throttled(&self, source: Option<std::net::IpAddr>) -> Result<()> {
        let from = source.map(crate::throttle::Subject::Source);
        match self.throttle.locked(from.as_slice(), self.now()) {
            Some(wait) => Err(Error::Throttled(wait)),
            None => Ok(()),
        }
    }

    fn throttle_failure(&self, source: Option<std::net::IpAddr>) {
        let from = source.map(crate::throttle::Subject::Source);
        self.throttle.failed(from.as_slice(), self.now());
    }

    /// The signed-in person allows (or denies) the device that shows `user_code`. Allowing
    /// records the consent, and the grant in the session (signing out revokes it).
    ///
    /// One audit record: `device_approved`, `device_denied`, or `device_decision_refused`.
    pub async fn device_decide(
        &self,
        cookie: &str,
        user_code: &str,
        allow: bool,
        source: Option<std::net::IpAddr>,
    ) -> Result<()> {
        let answer = self
            .device_decide_inner(cookie, user_code, allow, source)
            .await;
        if let Err(e) = &answer {
            self.audit_refusal(crate::refusal_event("device_decision_refused", e))
                .await;
        }
        answer
    }

    async fn device_decide_inner(
        &self,
        cookie: &str,
        user_code: &str,
        allow: bool,
        source: Option<std::net::IpAddr>,
    ) -> Result<()> {
        self.throttled(source)?;
        let Some((session_key, session_bytes, session, user)) = self.live_session(cookie).await?
        else {
            return Err(Error::LoginRequired);
        };
        let Some((key, bytes, device)) = self.pending_device(user_code).await? else {
            self.throttle_failure(source);
            return Err(Error::InvalidRequest(
                "the code is not valid, or has expired",
            ));
        };
        let now = self.now();
        let mut batch = Batch::new().expect(key.clone(), Some(bytes));
        let (updated, event) = if allow {
            let granted = granted_scope(&device, &user.scope)?;
            let client = self.client_for_authorization(&device.client_id).await?;
            let gid = random_id();
            let mut in_session: SessionRecord = session.clone();
            batch = self
                .admit_grant(&mut in_session, &gid, &device.client_id, batch)
                .await?;
            batch = batch
                .expect(session_key.clone(), Some(session_bytes))
                .put(session_key, encode(&in_session));
            // The confirmation page is the consent screen: remember it like one (expected as
            // read, so a consent given in another tab meanwhile is not lost).
            let consent_key = consent_key(&user.subject, &device.client_id);
            let before = self.store.get(Tree::SignIn, &consent_key).await?;
            let current = before
                .as_deref()
                .map(writ_store::decode::<ConsentRecord>)
                .transpose()?;
            let consent = ConsentRecord::widened(
                current,
                &user.subject,
                &client,
                &granted,
                &device.audience,
                now,
            );
            batch = batch
                .expect(consent_key.clone(), before)
                .put(consent_key, encode(&consent));
            let record = DeviceRecord {
                state: DEVICE_APPROVED,
                username: user.username.clone(),
                subject: user.subject.clone(),
                auth_time: session.auth_time,
                amr: session.amr.clone(),
                sid: session.sid.clone(),
                gid: gid.clone(),
                granted_scope: granted.to_string(),
                approved_at: now,
                ..device.clone()
            };
            let event = Event::new("device_approved", Outcome::Success)
                .actor(&user.username)
                .subject(&user.subject)
                .client(&device.client_id)
                .gid(&gid)
                .detail("scope", granted.to_string())
                .detail("sid", &session.sid);
            (record, event)
        } else {
            let record = DeviceRecord {
                state: DEVICE_DENIED,
                ..device.clone()
            };
            let event = Event::new("device_denied", Outcome::Success)
                .actor(&user.username)
                .subject(&user.subject)
                .client(&device.client_id);
            (record, event)
        };
        let intent = self.audit.intent(event);
        let batch = batch.put(key, encode(&updated));
        if !self.commit_audited(Tree::SignIn, intent, batch).await? {
            return Err(Error::Conflict("the request changed concurrently; retry"));
        }
        Ok(())
    }

    /// RFC 8628 section 3.4: the device polls with its device code. Pending, too fast, denied,
    /// expired and used each have their answer; an approved code issues tokens once.
    pub(crate) async fn device_code_grant(&self, req: &TokenRequest) -> Result<TokenResponse> {
        let client = self
            .authenticate_client_from(req.into(), req.source)
            .await?;
        if client.disabled {
            return Err(Error::InvalidClient);
        }
        if !client.allows_grant(grant_type::DEVICE_CODE) {
            return Err(Error::UnauthorizedClient(
                "the client may not use the device authorization grant",
            ));
        }
        if req.device_code.is_empty() {
            return Err(Error::InvalidRequest("device_code is required"));
        }
        let key = prefixed(b"d/", &self.hasher.hash(req.device_code.as_bytes()));
        let Some(bytes) = self.store.get(Tree::SignIn, &key).await? else {
            return Err(Error::InvalidGrant("the device code is invalid"));
        };
        let device: DeviceRecord = writ_store::decode(&bytes)?;
        if device.client_id != client.client_id {
            return Err(Error::InvalidGrant(
                "the device code was issued to another client",
            ));
        }
        let now = self.now();
        match device.state {
            DEVICE_USED => {
                // Its tokens went to whoever polled first: a second holder is not the device.
                self.revoke_grant(&device.gid, "device code replayed")
                    .await?;
                return Err(Error::InvalidGrant(
                    "the device code was already used; what it issued has been revoked",
                ));
            }
            DEVICE_DENIED => return Err(Error::AccessDenied("the user denied the request")),
            _ if now >= device.expires_at => return Err(Error::ExpiredToken),
            DEVICE_PENDING => {
                // Every poll is remembered; one sooner than the interval slows the device down.
                let too_soon = now < device.last_polled_at + device.interval;
                let polled = DeviceRecord {
                    last_polled_at: now,
                    interval: device.interval + if too_soon { 5 } else { 0 },
                    ..device.clone()
                };
                let batch = Batch::new()
                    .expect(key.clone(), Some(bytes))
                    .put(key, encode(&polled));
                self.store.commit(Tree::SignIn, batch).await?;
                return Err(if too_soon {
                    Error::SlowDown
                } else {
                    Error::AuthorizationPending
                });
            }
            DEVICE_APPROVED => {}
            _ => return Err(Error::Internal("stored device state")),
        }
        let signed_in = crate::grants::SignedIn {
            gid: device.gid.clone(),
            subject: device.subject.clone(),
            username: device.username.clone(),
            scope: device.granted_scope.clone(),
            audience: device.audience.clone(),
            began_at: device.approved_at,
            auth_time: device.auth_time,
            amr: device.amr.clone(),
            sid: device.sid.clone(),
            nonce: String::new(),
        };
        let spent = encode(&DeviceRecord {
            state: DEVICE_USED,
            ..device.clone()
        });
        match self
            .redeem_sign_in(
                &client,
                &signed_in,
                req,
                grant_type::DEVICE_CODE,
                Batch::new()
                    .expect(key.clone(), Some(bytes))
                    .put(key, spent),
            )
            .await?
        {
            Some(response) => Ok(response),
            // Of two polls exactly one wins; the other holder is not the device.
            None => {
                self.revoke_grant(&device.gid, "device code replayed")
                    .await?;
                Err(Error::InvalidGrant("the device code was already used"))
            }
        }
    }
}

impl AuthorizationServer {
    /// Removes device authorizations past their end (a spent one is kept until then, so a
    /// replay within its life still revokes what it issued), with their user codes.
    pub(crate) async fn prune_devices(&self, now: i64, margin: i64) -> Result<usize> {
        let mut removed = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan_records::<DeviceRecord>(b"d/", after.as_deref(), 1000)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, device) in page {
                if device.expires_at + margin >= now {
                    continue;
                }
                let code_key = format!("u/{}", device.user_code).into_bytes();
                let mut batch = Batch::new().remove(key.clone());
                if self.store.get(Tree::SignIn, &code_key).await?.as_deref() == Some(&key[..]) {
                    batch = batch.remove(code_key);
                }
                self.store.commit(Tree::SignIn, batch).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// What a device may ask for: within the client's scope and the OpenID scopes; none asked
/// means the client's.
fn requested_scope(client: &ClientRecord, scope: &str) -> Result<Scopes> {
    let asked = Scopes::parse(scope).map_err(|_| Error::InvalidScope("scope is malformed"))?;
    let client_scope = Scopes::parse(&client.scope).map_err(|_| Error::Internal("stored scope"))?;
    if asked.is_empty() {
        return Ok(client_scope);
    }
    if !asked.is_subset(&client_scope.union(&oidc_scopes())) {
        return Err(Error::InvalidScope(
            "the requested scope exceeds what the client may be granted",
        ));
    }
    Ok(asked)
}

/// What the person may let the device have: its request within their own scope (and the
/// OpenID scopes).
fn granted_scope(device: &DeviceRecord, user_scope: &str) -> Result<Scopes> {
    let asked = Scopes::parse(&device.scope).map_err(|_| Error::Internal("stored scope"))?;
    let user = Scopes::parse(user_scope)
        .map_err(|_| Error::Internal("stored scope"))?
        .union(&oidc_scopes());
    Ok(asked.intersection(&user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_eight_consonants_typed_any_way() {
        for _ in 0..100 {
            let code = new_user_code();
            assert_eq!(normalize_user_code(&code).as_deref(), Some(code.as_str()));
            let shown = display_user_code(&code);
            assert_eq!(shown.len(), 9);
            assert_eq!(
                normalize_user_code(&shown.to_lowercase()).as_deref(),
                Some(code.as_str())
            );
        }
        assert_eq!(
            normalize_user_code("BCDF GHJK").as_deref(),
            Some("BCDFGHJK")
        );
        for bad in ["", "BCDFGHJ", "BCDFGHJKL", "ABCDEFGH", "BCDF-GHJ1"] {
            assert_eq!(normalize_user_code(bad), None, "{bad}");
        }
    }
}
