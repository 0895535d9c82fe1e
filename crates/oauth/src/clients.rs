//! Clients: registration (admin) and authentication (every grant, introspection, revocation).

use writ_audit::{Event, Outcome};
use writ_store::{AsyncStoreExt, Batch, Tree, encode};
use writ_token::{Scopes, random_id, random_secret};

use writ_token::RevocationKind;

use crate::error::{Error, Result};
use crate::records::{
    AUTH_CLIENT_SECRET, AUTH_PRIVATE_KEY_JWT, AUTH_SELF_SIGNED_TLS, AUTH_TLS, CLIENT_CONFIDENTIAL,
    CLIENT_PUBLIC, ClientRecord, FORMAT_BISCUIT, FORMAT_JWT, FORMAT_JWT_AND_BISCUIT,
    FORMAT_REFERENCE,
};
use crate::types::{Client, ClientType, IssuedFormat, Page};
use crate::{AuthorizationServer, MAX_AUDIENCES, grant_type, valid_id};

/// Fields of a client an update may change (`client_id` and `client_type` may not).
pub const UPDATABLE_CLIENT_FIELDS: &[&str] = &[
    "client_name",
    "grant_types",
    "scope",
    "audience",
    "access_token_lifetime",
    "refresh_token_lifetime",
    "token_formats",
    "default_token_format",
    "may_introspect",
    "disabled",
    "redirect_uris",
    "post_logout_redirect_uris",
    "require_pushed_authorization_requests",
    "backchannel_logout_uri",
    "jwks",
    "jwks_uri",
    "tls_client_certificate_bound_access_tokens",
    "dpop_bound_access_tokens",
    "tls_client_auth_san_dns",
    "tls_client_auth_san_uri",
    "tls_client_auth_san_ip",
    "tls_client_auth_san_email",
    "tls_client_auth_subject_dn",
];

const MAX_PAGE: usize = 1000;
/// Longest a rotated client secret keeps working beside its successor: 7 days.
pub const MAX_SECRET_GRACE: i64 = 7 * 24 * 3600;
const DEFAULT_PAGE: usize = 100;

impl AuthorizationServer {
    /// Registers a client; returns it and, for a confidential client, its secret (shown once).
    pub async fn create_client(&self, client: Client) -> Result<(Client, Option<String>)> {
        let mut spec = ClientRecord::default();
        set_fields(&mut spec, &client, UPDATABLE_CLIENT_FIELDS);
        spec.client_id = match client.client_id.as_str() {
            "" => random_id(),
            // Writ's own identities: a client by one of these names could mint tokens that pass
            // for Writ's own (the revocation publisher's above all).
            id if writ_vocabulary::names::is_reserved(id) => {
                return Err(Error::InvalidRequest(
                    "this client_id is reserved for Writ itself",
                ));
            }
            // `issuer#subject` is how an external issuer's subject reads in Writ's tokens
            // (the STS): no client's own subject may look like one.
            id if id.contains('#') => {
                return Err(Error::InvalidRequest("a client_id may not contain '#'"));
            }
            id => id.to_owned(),
        };
        spec.client_type = match client.client_type {
            ClientType::Confidential => CLIENT_CONFIDENTIAL,
            ClientType::Public => CLIENT_PUBLIC,
        };
        spec.auth_method = match (
            client.token_endpoint_auth_method.as_str(),
            client.client_type,
        ) {
            ("" | "client_secret_basic" | "client_secret_post", ClientType::Confidential) => {
                AUTH_CLIENT_SECRET
            }
            ("private_key_jwt", ClientType::Confidential) => AUTH_PRIVATE_KEY_JWT,
            ("self_signed_tls_client_auth", ClientType::Confidential) => AUTH_SELF_SIGNED_TLS,
            ("tls_client_auth", ClientType::Confidential) => AUTH_TLS,
            ("" | "none", ClientType::Public) => AUTH_CLIENT_SECRET,
            _ => {
                return Err(Error::InvalidRequest(
                    "token_endpoint_auth_method is client_secret_basic, client_secret_post, \
                     private_key_jwt, self_signed_tls_client_auth or tls_client_auth for a \
                     confidential client, none for a public one",
                ));
            }
        };
        self.validate_client(&spec)?;
        // Checked at creation only: a replica started without the CA can still disable or
        // update an existing client.
        if spec.auth_method == AUTH_TLS && self.config.tls_client_cas.is_empty() {
            return Err(Error::InvalidRequest(
                "tls_client_auth needs a CA trusted for client certificates: this server has \
                 none (--tls-client-ca)",
            ));
        }
        let secret = spec.uses_secret().then(random_secret);
        spec.secret_hash = secret
            .as_ref()
            .map(|s| self.hasher.hash(s.as_bytes()).to_vec())
            .unwrap_or_default();
        spec.created_at = self.now();
        spec.registration_id = writ_token::random_id();
        let intent = self.audit.intent(
            Event::new("client_created", Outcome::Success)
                .client(&spec.client_id)
                .detail("client_type", client_type_name(spec.client_type))
                .detail("token_endpoint_auth_method", auth_method_name(&spec))
                .detail("after", fields_text(&spec, UPDATABLE_CLIENT_FIELDS)),
        );
        let key = spec.client_id.as_bytes();
        let batch = Batch::new().expect(key, None).put(key, encode(&spec));
        if !self
            .store
            .commit(Tree::Clients, intent.attach(batch))
            .await?
        {
            return Err(Error::AlreadyExists("a client with this client_id exists"));
        }
        self.audit.written(intent);
        self.store.durable().await?;
        self.client_cache.invalidate(&spec.client_id);
        Ok((client_of(&spec), secret))
    }

    pub async fn get_client(&self, client_id: &str) -> Result<Client> {
        self.client_record(client_id).await.map(|c| client_of(&c))
    }

    pub(crate) async fn client_record(&self, client_id: &str) -> Result<ClientRecord> {
        if !valid_id(client_id) {
            return Err(Error::InvalidRequest("client_id is malformed"));
        }
        self.store
            .get_record::<ClientRecord>(client_id.as_bytes())
            .await?
            .ok_or(Error::NotFound("no such client"))
    }

    pub async fn list_clients(&self, page_size: usize, page_token: &str) -> Result<Page<Client>> {
        let page =
            list_page::<ClientRecord>(self, page_size, page_token, None, |c| c.client_id.clone())
                .await?;
        Ok(page.map(|c| client_of(&c)))
    }

    /// Changes the fields named in `mask` (every updatable field if empty), atomically.
    pub async fn update_client(&self, spec: Client, mask: &[String]) -> Result<Client> {
        if mask
            .iter()
            .any(|m| !UPDATABLE_CLIENT_FIELDS.contains(&m.as_str()))
        {
            return Err(Error::InvalidRequest(
                "update_mask names a field that cannot be updated",
            ));
        }
        let was_enabled = !self.client_record(&spec.client_id).await?.disabled;
        let all: Vec<String> = UPDATABLE_CLIENT_FIELDS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mask = if mask.is_empty() { &all[..] } else { mask };
        let updated = self
            .modify_client(
                &spec.client_id,
                |c| {
                    set_fields(c, &spec, mask);
                    self.validate_client(c)
                },
                |before, after| {
                    let changed: Vec<&str> = mask
                        .iter()
                        .map(String::as_str)
                        .filter(|f| field_text(before, f) != field_text(after, f))
                        .collect();
                    Event::new("client_updated", Outcome::Success)
                        .client(&after.client_id)
                        .detail("before", fields_text(before, &changed))
                        .detail("after", fields_text(after, &changed))
                },
            )
            .await?;
        if was_enabled && updated.disabled {
            self.cut_off(
                RevocationKind::Client,
                &updated.client_id,
                "client disabled",
            )
            .await?;
        }
        Ok(client_of(&updated))
    }

    pub async fn delete_client(&self, client_id: &str) -> Result<()> {
        let before = self.client_record(client_id).await?;
        let intent = self.audit.intent(
            Event::new("client_deleted", Outcome::Success)
                .client(client_id)
                .detail("before", fields_text(&before, UPDATABLE_CLIENT_FIELDS)),
        );
        let batch = Batch::new().remove(client_id.as_bytes());
        self.store
            .commit(Tree::Clients, intent.attach(batch))
            .await?;
        self.audit.written(intent);
        self.store.durable().await?;
        self.client_cache.invalidate(client_id);
        self.url_keys.forget(client_id);
        // Its live access tokens die now, not at their expiry.
        self.cut_off(RevocationKind::Client, client_id, "client deleted")
            .await
    }

    /// Replaces a confidential client's secret. The old one keeps working for `grace_seconds`
    /// (0: it stops at once; at most [`MAX_SECRET_GRACE`]), so a client can be redeployed with
    /// the new one first; a secret older than that never comes back.
    pub async fn rotate_client_secret(
        &self,
        client_id: &str,
        grace_seconds: i64,
    ) -> Result<String> {
        if !(0..=MAX_SECRET_GRACE).contains(&grace_seconds) {
            return Err(Error::InvalidRequest(
                "grace_seconds is between 0 and 604800 (7 days)",
            ));
        }
        let secret = random_secret();
        let hash = self.hasher.hash(secret.as_bytes()).to_vec();
        let now = self.now();
        self.modify_client(
            client_id,
            |c| {
                if !c.is_confidential() {
                    return Err(Error::InvalidRequest("a public client has no secret"));
                }
                if !c.uses_secret() {
                    return Err(Error::InvalidRequest(
                        "the client authenticates with a key or a certificate: it has no secret",
                    ));
                }
                if grace_seconds > 0 {
                    c.previous_secret_hash = std::mem::take(&mut c.secret_hash);
                    c.previous_secret_expires_at = now + grace_seconds;
                } else {
                    c.previous_secret_hash.clear();
                    c.previous_secret_expires_at = 0;
                }
                c.secret_hash = hash.clone();
                Ok(())
            },
            // Never the secret, nor its hash.
            |_, after| {
                Event::new("client_secret_rotated", Outcome::Success)
                    .client(&after.client_id)
                    .detail("grace_seconds", grace_seconds)
            },
        )
        .await?;
        Ok(secret)
    }

    async fn modify_client(
        &self,
        client_id: &str,
        change: impl Fn(&mut ClientRecord) -> Result<()>,
        describe: impl Fn(&ClientRecord, &ClientRecord) -> Event,
    ) -> Result<ClientRecord> {
        if !valid_id(client_id) {
            return Err(Error::InvalidRequest("client_id is malformed"));
        }
        let updated = self
            .update_record::<ClientRecord>(
                client_id.as_bytes(),
                |current| {
                    let mut client = current.ok_or(Error::NotFound("no such client"))?;
                    change(&mut client)?;
                    Ok(Some(client))
                },
                |before, after| describe(before.unwrap_or(after), after),
            )
            .await?;
        self.client_cache.invalidate(client_id);
        // Keys fetched from its jwks_uri are fetched again when next needed (a rotation the
        // administrator asked for takes effect on this replica at once).
        self.url_keys.forget(client_id);
        updated.ok_or(Error::Internal("client update wrote nothing"))
    }

    fn validate_client(&self, c: &ClientRecord) -> Result<()> {
        if !valid_id(&c.client_id) {
            return Err(Error::InvalidRequest(
                "client_id must be 1-128 printable characters without spaces",
            ));
        }
        if c.client_name.len() > 256 || c.client_name.chars().any(char::is_control) {
            return Err(Error::InvalidRequest(
                "client_name is too long or has control characters",
            ));
        }
        if c.client_type != CLIENT_CONFIDENTIAL && c.client_type != CLIENT_PUBLIC {
            return Err(Error::InvalidRequest(
                "client_type must be confidential or public",
            ));
        }
        for g in &c.grant_types {
            if ![
                grant_type::CLIENT_CREDENTIALS,
                grant_type::AUTHORIZATION_CODE,
                grant_type::DEVICE_CODE,
                grant_type::REFRESH_TOKEN,
                grant_type::PASSWORD,
                grant_type::JWT_BEARER,
            ]
            .contains(&g.as_str())
            {
                return Err(Error::InvalidRequest(
                    "grant_types may be client_credentials, authorization_code, \
                     urn:ietf:params:oauth:grant-type:device_code, refresh_token, password, \
                     urn:ietf:params:oauth:grant-type:jwt-bearer",
                ));
            }
        }
        for uris in [&c.redirect_uris, &c.post_logout_redirect_uris] {
            if uris.len() > crate::signin::MAX_REDIRECT_URIS
                || !uris.iter().all(|u| crate::signin::valid_redirect_uri(u))
            {
                return Err(Error::InvalidRequest(
                    "redirect URIs are absolute https URIs, http on a loopback address, or a \
                     private-use scheme with a dot (RFC 8252), without a fragment; at most 16",
                ));
            }
        }
        if !c.backchannel_logout_uri.is_empty()
            && !(crate::signin::valid_redirect_uri(&c.backchannel_logout_uri)
                && (c.backchannel_logout_uri.starts_with("https://")
                    || c.backchannel_logout_uri.starts_with("http://")))
        {
            return Err(Error::InvalidRequest(
                "backchannel_logout_uri is an https URI, or http on a loopback address",
            ));
        }
        if c.allows_grant(grant_type::AUTHORIZATION_CODE) && c.redirect_uris.is_empty() {
            return Err(Error::InvalidRequest(
                "a client using authorization_code needs at least one redirect URI",
            ));
        }
        if c.client_type == CLIENT_PUBLIC && c.allows_grant(grant_type::CLIENT_CREDENTIALS) {
            return Err(Error::InvalidRequest(
                "a public client cannot use client_credentials",
            ));
        }
        if c.client_type == CLIENT_PUBLIC && c.allows_grant(grant_type::PASSWORD) {
            return Err(Error::InvalidRequest(
                "a public client cannot use the password grant",
            ));
        }
        Scopes::parse(&c.scope).map_err(|_| Error::InvalidRequest("scope is malformed"))?;
        if c.audience.len() > MAX_AUDIENCES || c.audience.iter().any(|a| !valid_id(a)) {
            return Err(Error::InvalidRequest(
                "audience entries must be 1-128 printable characters, at most 16",
            ));
        }
        let max = self.config.max_access_token_lifetime;
        if c.access_token_lifetime < 0 || c.access_token_lifetime > max {
            return Err(Error::InvalidRequest(
                "access_token_lifetime is out of range",
            ));
        }
        if c.refresh_token_lifetime < 0 || c.refresh_token_lifetime > self.config.max_grant_lifetime
        {
            return Err(Error::InvalidRequest(
                "refresh_token_lifetime is out of range",
            ));
        }
        match (c.auth_method, c.jwks.is_empty(), c.jwks_uri.is_empty()) {
            (AUTH_PRIVATE_KEY_JWT, false, true) => {
                crate::client_auth::validate_client_jwks(&c.jwks)?
            }
            (AUTH_PRIVATE_KEY_JWT, true, false) => {
                crate::client_auth::validate_jwks_uri(&c.jwks_uri)?
            }
            (AUTH_PRIVATE_KEY_JWT, _, _) => {
                return Err(Error::InvalidRequest(
                    "a private_key_jwt client registers its keys: jwks or jwks_uri, one of them",
                ));
            }
            (AUTH_SELF_SIGNED_TLS, false, true) => {
                crate::client_auth::validate_client_certificates(&c.jwks)?
            }
            (AUTH_SELF_SIGNED_TLS, _, _) => {
                return Err(Error::InvalidRequest(
                    "a self_signed_tls_client_auth client registers its certificates in jwks \
                     (x5c), not jwks_uri",
                ));
            }
            (_, true, true) => {}
            (_, _, _) => {
                return Err(Error::InvalidRequest(
                    "jwks and jwks_uri are for clients that authenticate with private_key_jwt or \
                     self_signed_tls_client_auth",
                ));
            }
        }
        let names = crate::client_auth::registered_names(c);
        match (c.auth_method, names.len()) {
            (AUTH_TLS, 1) => crate::client_auth::validate_registered_name(names[0])?,
            (AUTH_TLS, _) => {
                return Err(Error::InvalidRequest(
                    "a tls_client_auth client registers exactly one of tls_client_auth_san_dns, \
                     _san_uri, _san_ip and _san_email",
                ));
            }
            (_, 0) => {}
            (_, _) => {
                return Err(Error::InvalidRequest(
                    "tls_client_auth_san_* are for clients that authenticate with tls_client_auth",
                ));
            }
        }
        if c.tls_client_certificate_bound_access_tokens && !c.is_confidential() {
            return Err(Error::InvalidRequest(
                "certificate-bound access tokens are for confidential clients (a public client \
                 binds its tokens with DPoP)",
            ));
        }
        // Bound tokens are JWTs: a client whose default is another format would be refused
        // every time it asks for none.
        if (c.tls_client_certificate_bound_access_tokens || c.dpop_bound_access_tokens)
            && !matches!(c.default_token_format, 0 | FORMAT_JWT)
        {
            return Err(Error::InvalidRequest(
                "bound access tokens are JWTs: the client's default format is jwt",
            ));
        }
        let known = [
            FORMAT_JWT,
            FORMAT_BISCUIT,
            FORMAT_JWT_AND_BISCUIT,
            FORMAT_REFERENCE,
        ];
        if c.token_formats.iter().any(|f| !known.contains(f))
            || (c.default_token_format != 0 && !known.contains(&c.default_token_format))
        {
            return Err(Error::InvalidRequest("unknown token format"));
        }
        Ok(())
    }
}

/// Copies the fields named in `mask` from the admin API's `client` onto the stored record.
/// An updatable field's value as an audit detail shows it (strings escaped).
fn field_text(c: &ClientRecord, field: &str) -> String {
    match field {
        "client_name" => format!("{:?}", c.client_name),
        "grant_types" => format!("{:?}", c.grant_types),
        "scope" => format!("{:?}", c.scope),
        "audience" => format!("{:?}", c.audience),
        "access_token_lifetime" => c.access_token_lifetime.to_string(),
        "refresh_token_lifetime" => c.refresh_token_lifetime.to_string(),
        "token_formats" => format!("{:?}", c.token_formats),
        "default_token_format" => c.default_token_format.to_string(),
        "may_introspect" => c.may_introspect.to_string(),
        "disabled" => c.disabled.to_string(),
        "redirect_uris" => format!("{:?}", c.redirect_uris),
        "post_logout_redirect_uris" => format!("{:?}", c.post_logout_redirect_uris),
        "require_pushed_authorization_requests" => {
            c.require_pushed_authorization_requests.to_string()
        }
        "backchannel_logout_uri" => format!("{:?}", c.backchannel_logout_uri),
        // Public keys, but long: their ids (a certificate's thumbprint) say which were
        // registered.
        "jwks" if c.auth_method == AUTH_SELF_SIGNED_TLS => format!(
            "certificates{:?}",
            crate::client_auth::certificate_thumbprints(&c.jwks)
        ),
        "jwks" => format!("kids{:?}", crate::client_auth::jwks_kids(&c.jwks)),
        "jwks_uri" => format!("{:?}", c.jwks_uri),
        "tls_client_certificate_bound_access_tokens" => {
            c.tls_client_certificate_bound_access_tokens.to_string()
        }
        "dpop_bound_access_tokens" => c.dpop_bound_access_tokens.to_string(),
        "tls_client_auth_san_dns" => format!("{:?}", c.tls_client_auth_san_dns),
        "tls_client_auth_san_uri" => format!("{:?}", c.tls_client_auth_san_uri),
        "tls_client_auth_san_ip" => format!("{:?}", c.tls_client_auth_san_ip),
        "tls_client_auth_san_email" => format!("{:?}", c.tls_client_auth_san_email),
        "tls_client_auth_subject_dn" => format!("{:?}", c.tls_client_auth_subject_dn),
        _ => String::new(),
    }
}

/// `field=value` for each of `fields`: what an audit record shows of a client (never a secret
/// or its hash: they are not updatable fields).
fn fields_text<S: AsRef<str>>(c: &ClientRecord, fields: &[S]) -> String {
    fields
        .iter()
        .map(|f| format!("{}={}", f.as_ref(), field_text(c, f.as_ref())))
        .collect::<Vec<_>>()
        .join(" ")
}

fn auth_method_name(c: &ClientRecord) -> &'static str {
    match (c.is_confidential(), c.auth_method) {
        (false, _) => "none",
        (true, AUTH_PRIVATE_KEY_JWT) => "private_key_jwt",
        (true, AUTH_SELF_SIGNED_TLS) => "self_signed_tls_client_auth",
        (true, AUTH_TLS) => "tls_client_auth",
        (true, _) => "client_secret_basic",
    }
}

fn client_type_name(t: i32) -> &'static str {
    if t == CLIENT_CONFIDENTIAL {
        "confidential"
    } else {
        "public"
    }
}

fn set_fields<S: AsRef<str>>(c: &mut ClientRecord, client: &Client, mask: &[S]) {
    for field in mask {
        match field.as_ref() {
            "client_name" => c.client_name = client.client_name.clone(),
            "grant_types" => c.grant_types = client.grant_types.clone(),
            "scope" => c.scope = client.scope.clone(),
            "audience" => c.audience = client.audience.clone(),
            "access_token_lifetime" => c.access_token_lifetime = client.access_token_lifetime,
            "refresh_token_lifetime" => c.refresh_token_lifetime = client.refresh_token_lifetime,
            "token_formats" => {
                c.token_formats = client.token_formats.iter().map(|f| stored(*f)).collect()
            }
            "default_token_format" => {
                c.default_token_format = client.default_token_format.map_or(0, stored)
            }
            "may_introspect" => c.may_introspect = client.may_introspect,
            "disabled" => c.disabled = client.disabled,
            "redirect_uris" => c.redirect_uris = client.redirect_uris.clone(),
            "post_logout_redirect_uris" => {
                c.post_logout_redirect_uris = client.post_logout_redirect_uris.clone()
            }
            "require_pushed_authorization_requests" => {
                c.require_pushed_authorization_requests =
                    client.require_pushed_authorization_requests
            }
            "backchannel_logout_uri" => {
                c.backchannel_logout_uri = client.backchannel_logout_uri.clone()
            }
            "jwks" => c.jwks = client.jwks.clone(),
            "jwks_uri" => c.jwks_uri = client.jwks_uri.clone(),
            "tls_client_certificate_bound_access_tokens" => {
                c.tls_client_certificate_bound_access_tokens =
                    client.tls_client_certificate_bound_access_tokens
            }
            "dpop_bound_access_tokens" => {
                c.dpop_bound_access_tokens = client.dpop_bound_access_tokens
            }
            "tls_client_auth_san_dns" => {
                c.tls_client_auth_san_dns = client.tls_client_auth_san_dns.clone()
            }
            "tls_client_auth_san_uri" => {
                c.tls_client_auth_san_uri = client.tls_client_auth_san_uri.clone()
            }
            "tls_client_auth_san_ip" => {
                c.tls_client_auth_san_ip = client.tls_client_auth_san_ip.clone()
            }
            "tls_client_auth_san_email" => {
                c.tls_client_auth_san_email = client.tls_client_auth_san_email.clone()
            }
            "tls_client_auth_subject_dn" => {
                c.tls_client_auth_subject_dn = client.tls_client_auth_subject_dn.clone()
            }
            _ => {}
        }
    }
}

fn stored(f: IssuedFormat) -> i32 {
    match f {
        IssuedFormat::Jwt => FORMAT_JWT,
        IssuedFormat::Biscuit => FORMAT_BISCUIT,
        IssuedFormat::JwtAndBiscuit => FORMAT_JWT_AND_BISCUIT,
        IssuedFormat::Reference => FORMAT_REFERENCE,
    }
}

fn issued(f: i32) -> Option<IssuedFormat> {
    match f {
        FORMAT_JWT => Some(IssuedFormat::Jwt),
        FORMAT_BISCUIT => Some(IssuedFormat::Biscuit),
        FORMAT_JWT_AND_BISCUIT => Some(IssuedFormat::JwtAndBiscuit),
        FORMAT_REFERENCE => Some(IssuedFormat::Reference),
        _ => None,
    }
}

/// A stored client as the admin API shows it: everything but the secret's hash.
fn client_of(c: &ClientRecord) -> Client {
    Client {
        client_id: c.client_id.clone(),
        client_name: c.client_name.clone(),
        client_type: if c.client_type == CLIENT_PUBLIC {
            ClientType::Public
        } else {
            ClientType::Confidential
        },
        grant_types: c.grant_types.clone(),
        scope: c.scope.clone(),
        audience: c.audience.clone(),
        access_token_lifetime: c.access_token_lifetime,
        refresh_token_lifetime: c.refresh_token_lifetime,
        token_formats: c.token_formats.iter().filter_map(|f| issued(*f)).collect(),
        default_token_format: issued(c.default_token_format),
        may_introspect: c.may_introspect,
        disabled: c.disabled,
        created_at: c.created_at,
        redirect_uris: c.redirect_uris.clone(),
        post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
        require_pushed_authorization_requests: c.require_pushed_authorization_requests,
        backchannel_logout_uri: c.backchannel_logout_uri.clone(),
        token_endpoint_auth_method: auth_method_name(c).to_owned(),
        jwks: c.jwks.clone(),
        jwks_uri: c.jwks_uri.clone(),
        tls_client_certificate_bound_access_tokens: c.tls_client_certificate_bound_access_tokens,
        dpop_bound_access_tokens: c.dpop_bound_access_tokens,
        tls_client_auth_san_dns: c.tls_client_auth_san_dns.clone(),
        tls_client_auth_san_uri: c.tls_client_auth_san_uri.clone(),
        tls_client_auth_san_ip: c.tls_client_auth_san_ip.clone(),
        tls_client_auth_san_email: c.tls_client_auth_san_email.clone(),
        tls_client_auth_subject_dn: c.tls_client_auth_subject_dn.clone(),
    }
}

/// One page of a tree listing, keyed by `id`, of the keys above `floor`. Page tokens are the
/// last key, base64url encoded.
pub(crate) async fn list_page<R: writ_store::Record>(
    server: &AuthorizationServer,
    page_size: usize,
    page_token: &str,
    floor: Option<&[u8]>,
    id: impl Fn(&R) -> String,
) -> Result<Page<R>> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let size = match page_size {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let after = if page_token.is_empty() {
        None
    } else {
        Some(
            URL_SAFE_NO_PAD
                .decode(page_token)
                .map_err(|_| Error::InvalidRequest("page_token is malformed"))?,
        )
    };
    let after = match (after, floor) {
        (Some(a), Some(f)) => Some(a.max(f.to_vec())),
        (a, f) => a.or(f.map(<[u8]>::to_vec)),
    };
    let mut rows = server
        .store
        .scan_records::<R>(b"", after.as_deref(), size + 1)
        .await?;
    let more = rows.len() > size;
    rows.truncate(size);
    let next_page_token = match (more, rows.last()) {
        (true, Some((_, last))) => URL_SAFE_NO_PAD.encode(id(last)),
        _ => String::new(),
    };
    Ok(Page {
        items: rows.into_iter().map(|(_, r)| r).collect(),
        next_page_token,
    })
}
