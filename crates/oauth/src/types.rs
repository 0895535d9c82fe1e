//! The engine's requests and responses, with the RFC parameter names, independent of transport.

use writ_token::Actor;

/// The token formats a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatChoice {
    /// The client's default.
    #[default]
    Default,
    Jwt,
    Biscuit,
    /// A JWT with a Biscuit alongside, sharing token and grant ids.
    JwtAndBiscuit,
    /// An opaque reference token standing for a JWT (see `REFERENCE_PREFIX`).
    Reference,
}

/// What `Debug` shows of a secret: whether there is one, never what it is (requests and
/// responses end up in logs and panics).
fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() { "" } else { "<redacted>" }
}

/// RFC 6749 section 3.2 (and 4.3, 4.4, 6).
#[derive(Clone, Default)]
pub struct TokenRequest {
    pub grant_type: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: String,
    pub refresh_token: String,
    pub username: String,
    pub password: String,
    pub audience: Vec<String>,
    pub resource: Vec<String>,
    pub token_format: FormatChoice,
    /// RFC 6749 section 4.1.3 and RFC 7636 section 4.5.
    pub code: String,
    pub redirect_uri: String,
    pub code_verifier: String,
    /// RFC 8628 section 3.4.
    pub device_code: String,
    /// RFC 7521 section 4.2 (`private_key_jwt`, RFC 7523 section 2.2).
    pub client_assertion_type: String,
    pub client_assertion: String,
    /// RFC 7521 section 4.1: the JWT-bearer grant's token (RFC 7523 section 2.1).
    pub assertion: String,
    /// Where the request came from (the transport's peer address), for brute-force throttling.
    pub source: Option<std::net::IpAddr>,
    /// RFC 9449: the request's DPoP proof, and what it must name; the tokens are bound to its
    /// key.
    pub dpop: Option<crate::DpopRequest>,
    /// The thumbprint of the key of a verified proof, and the proof's `jti`: set by the engine
    /// (whatever a caller put here is overwritten).
    pub dpop_jkt: String,
    pub dpop_jti: String,
    /// The TLS client certificate (DER) of the connection, as the transport saw it: RFC 8705
    /// client authentication and certificate-bound tokens.
    pub client_certificate: Option<Vec<u8>>,
    /// Its `x5t#S256` (when one was presented): set by the engine; tokens carry it when the
    /// client is registered for bound tokens.
    pub cert_x5t: String,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("scope", &self.scope)
            .field("refresh_token", &redacted(&self.refresh_token))
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("audience", &self.audience)
            .field("resource", &self.resource)
            .field("token_format", &self.token_format)
            .field("code", &redacted(&self.code))
            .field("redirect_uri", &self.redirect_uri)
            .field("code_verifier", &redacted(&self.code_verifier))
            .field("device_code", &redacted(&self.device_code))
            .field("client_assertion_type", &self.client_assertion_type)
            .field("client_assertion", &redacted(&self.client_assertion))
            .field("assertion", &redacted(&self.assertion))
            .field("source", &self.source)
            .field("dpop", &self.dpop)
            .finish_non_exhaustive()
    }
}

/// RFC 6749 section 5.1.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: Option<String>,
    pub scope: String,
    pub issued_token_type: &'static str,
    pub biscuit: Option<String>,
    /// OpenID Connect Core section 3.1.3.3: for an authorization code granted with `openid`.
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = |t: &Option<String>| t.as_deref().map(redacted);
        f.debug_struct("TokenResponse")
            .field("access_token", &redacted(&self.access_token))
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &held(&self.refresh_token))
            .field("scope", &self.scope)
            .field("issued_token_type", &self.issued_token_type)
            .field("biscuit", &held(&self.biscuit))
            .field("id_token", &held(&self.id_token))
            .finish()
    }
}

/// A client authenticating to introspect or revoke.
#[derive(Clone, Default)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
    /// RFC 7521 section 4.2 (`private_key_jwt`, RFC 7523 section 2.2).
    pub client_assertion_type: String,
    pub client_assertion: String,
    /// The TLS client certificate (DER) of the connection, as the transport saw it (RFC 8705).
    pub client_certificate: Option<Vec<u8>>,
}

impl ClientCredentials {
    /// A client id and secret (empty for a public client).
    pub fn secret(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        ClientCredentials {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            ..ClientCredentials::default()
        }
    }
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("client_assertion_type", &self.client_assertion_type)
            .field("client_assertion", &redacted(&self.client_assertion))
            .field("client_certificate", &self.client_certificate.is_some())
            .finish()
    }
}

/// RFC 7662 section 2.1 and RFC 7009 section 2.1.
#[derive(Clone, Default)]
pub struct TokenOperation {
    pub token: String,
    pub token_type_hint: String,
    pub client: ClientCredentials,
}

impl std::fmt::Debug for TokenOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenOperation")
            .field("token", &redacted(&self.token))
            .field("token_type_hint", &self.token_type_hint)
            .field("client", &self.client)
            .finish()
    }
}

/// RFC 7662 section 2.2. `Introspection::inactive()` carries nothing but `active: false`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Introspection {
    pub active: bool,
    pub scope: String,
    pub client_id: String,
    pub username: String,
    pub token_type: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub sub: String,
    pub aud: Vec<String>,
    pub iss: String,
    pub jti: String,
    pub gid: String,
    pub act: Option<Actor>,
    /// RFC 9449 section 6.2: the DPoP key's thumbprint a bound token carries (`cnf.jkt`).
    pub cnf_jkt: String,
    /// RFC 8705 section 3.2: the thumbprint of the certificate a bound token carries
    /// (`cnf.x5t#S256`).
    pub cnf_x5t_s256: String,
    /// Set for access tokens.
    pub format: Option<writ_token::TokenFormat>,
}

impl Introspection {
    pub fn inactive() -> Self {
        Introspection::default()
    }
}

/// RFC 8414 section 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// Writ's extension: the Biscuit root keys (`writ_token::BiscuitKeySet`).
    pub biscuit_keys_uri: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub grant_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Every method but `none`: introspection is for confidential clients.
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub access_token_signing_alg_values_supported: Vec<String>,
    pub token_types_supported: Vec<String>,
    /// RFC 6749 section 3.1 (sign-in in a browser).
    pub authorization_endpoint: String,
    /// OpenID Connect Core section 5.3.
    pub userinfo_endpoint: String,
    /// OpenID Connect RP-Initiated Logout.
    pub end_session_endpoint: String,
    /// RFC 8414: what signs a `private_key_jwt` assertion.
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// RFC 7636: `S256` only.
    pub code_challenge_methods_supported: Vec<String>,
    /// The ID token's signature algorithm (the signing key's).
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// RFC 8705 section 5: where the mTLS endpoint aliases are served; empty: nowhere.
    pub mtls_endpoint: String,
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Empty when this is the last page.
    pub next_page_token: String,
}

impl<T> Page<T> {
    pub(crate) fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_page_token: self.next_page_token,
        }
    }
}

/// RFC 6749 section 2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientType {
    /// Holds a secret.
    #[default]
    Confidential,
    /// Cannot keep a secret; never allowed `client_credentials`.
    Public,
}

/// A token format a client may be issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuedFormat {
    Jwt,
    Biscuit,
    /// A JWT with a Biscuit alongside.
    JwtAndBiscuit,
    /// An opaque reference token for a JWT, traded for it by the gateway check.
    Reference,
}

/// A registered client, as the admin API creates, reads and updates it. Its secret is never
/// part of it: it is shown once, at creation or rotation, and stored only as a keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Client {
    /// Generated when empty at creation.
    pub client_id: String,
    pub client_name: String,
    pub client_type: ClientType,
    /// `client_credentials`, `authorization_code`, `refresh_token`, `password`.
    pub grant_types: Vec<String>,
    /// Space-delimited scopes the client may get.
    pub scope: String,
    /// Audiences it may ask for; the first is the default.
    pub audience: Vec<String>,
    /// Seconds; 0: the server's default.
    pub access_token_lifetime: i64,
    /// Seconds; 0: the server's default.
    pub refresh_token_lifetime: i64,
    /// Formats it may be issued (none: JWT only).
    pub token_formats: Vec<IssuedFormat>,
    /// What it gets when it asks for none (`None`: JWT).
    pub default_token_format: Option<IssuedFormat>,
    /// May introspect tokens of other clients (a resource server).
    pub may_introspect: bool,
    pub disabled: bool,
    /// Set by the server.
    pub created_at: i64,
    /// Where authorization responses may be sent (`authorization_code`), compared exactly.
    pub redirect_uris: Vec<String>,
    /// Where the browser may return after RP-initiated logout, compared exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// Only pushed authorization requests (RFC 9126) are accepted from it.
    pub require_pushed_authorization_requests: bool,
    /// Where a logout token is POSTed when a session that signed in to it ends (OpenID
    /// Connect Back-Channel Logout); empty: none.
    pub backchannel_logout_uri: String,
    /// RFC 7591: `client_secret_basic` (a confidential client's default; `client_secret_post`
    /// is the same method), `private_key_jwt`, or `none` (a public client). Empty at creation:
    /// the client type's default. Fixed at creation.
    pub token_endpoint_auth_method: String,
    /// RFC 7591: the client's public keys, a JWK Set, for `private_key_jwt`.
    pub jwks: String,
    /// RFC 7591: or where the client publishes them (https), fetched when needed.
    pub jwks_uri: String,
    /// RFC 8705 section 3.4: access tokens bound to the client's TLS certificate.
    pub tls_client_certificate_bound_access_tokens: bool,
    /// RFC 8705 section 2.1.2: the subject alternative name a `tls_client_auth` client's
    /// certificate carries (exactly one of these).
    pub tls_client_auth_san_dns: String,
    pub tls_client_auth_san_uri: String,
    pub tls_client_auth_san_ip: String,
    pub tls_client_auth_san_email: String,
    /// Or the certificate's subject (RFC 4514).
    pub tls_client_auth_subject_dn: String,
    /// RFC 9449 section 5.2: every token request proves a DPoP key; tokens are bound to it.
    pub dpop_bound_access_tokens: bool,
}

/// A resource owner, as the admin API sees it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    /// The `sub` of its tokens: stable and opaque, unlike the username.
    pub subject: String,
    pub scope: String,
    pub disabled: bool,
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests and responses go into logs and panic messages: their secrets never do.
    #[test]
    fn debug_shows_whether_a_secret_is_there_never_the_secret() {
        let req = TokenRequest {
            client_id: "svc".into(),
            client_secret: "s3cret-1".into(),
            refresh_token: "s3cret-2".into(),
            password: "s3cret-3".into(),
            code: "s3cret-4".into(),
            code_verifier: "s3cret-5".into(),
            device_code: "s3cret-6".into(),
            client_assertion: "s3cret-7".into(),
            assertion: "s3cret-8".into(),
            ..TokenRequest::default()
        };
        let resp = TokenResponse {
            access_token: "s3cret-9".into(),
            token_type: "Bearer",
            expires_in: 60,
            refresh_token: Some("s3cret-10".into()),
            scope: String::new(),
            issued_token_type: "",
            biscuit: Some("s3cret-11".into()),
            id_token: Some("s3cret-12".into()),
        };
        let op = TokenOperation {
            token: "s3cret-13".into(),
            client: ClientCredentials::secret("svc", "s3cret-14"),
            ..TokenOperation::default()
        };
        let shown = format!("{req:?} {resp:?} {op:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("svc") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
