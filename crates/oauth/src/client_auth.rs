//! Client authentication (RFC 6749 section 2.3): a secret (`client_secret_basic` or
//! `client_secret_post`), a JWT signed with a key the client registered (`private_key_jwt`,
//! RFC 7523 section 2.2), or, for a public client, its id alone. Every endpoint that
//! authenticates a client goes through [`AuthorizationServer::authenticate_client_from`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use writ_audit::{Event, Outcome};
use writ_store::{AsyncStoreExt, Batch, Tree, encode};
use writ_token::{AssertionRules, CLIENT_ASSERTION_TYPE, KeySet, MAX_ASSERTION_LEN};

use crate::error::{Error, Result};
use crate::records::{
    AUTH_PRIVATE_KEY_JWT, AUTH_SELF_SIGNED_TLS, AUTH_TLS, ClientRecord, SpentAssertionRecord,
};
use crate::secrets::SecretHasher;
use crate::throttle::Subject;
use crate::types::{ClientCredentials, TokenRequest};
use crate::{AuthorizationServer, MAX_SECRET_LEN, valid_id};

/// Latest `exp` accepted in a client assertion, in seconds from now: each `jti` is remembered
/// until `exp`, so this bounds how many are. An hour, what common clients sign by default
/// (authlib does); Writ's own client signs for a minute.
pub const MAX_ASSERTION_LIFETIME: i64 = 3600;

/// Largest JWK Set a client may register, in bytes, and most keys in it.
pub const MAX_CLIENT_JWKS_LEN: usize = 16 * 1024;
pub const MAX_CLIENT_KEYS: usize = 10;

/// Longest `jwks_uri` accepted, in bytes.
pub const MAX_JWKS_URI_LEN: usize = 2048;

/// How long keys fetched from a client's `jwks_uri` are used before they are fetched again.
const URL_KEYS_FRESH: Duration = Duration::from_secs(3600);
/// Oldest fetched keys still used while the URL cannot be fetched again: past it the client
/// cannot authenticate (a client that withdraws its keys by taking its URL down, or by
/// publishing an empty set, is not served old keys for ever).
const URL_KEYS_MAX_AGE: Duration = Duration::from_secs(2 * 3600);
/// Most clients whose fetched keys are remembered.
const MAX_URL_CLIENTS: usize = 10_000;

/// Fetches a JWK Set document from a `jwks_uri` a client or a workload issuer registered: the
/// transport's (the engine does no I/O), under the rules for external issuers' JWKS URLs
/// (https, a CA the operator chose, bounded in time and size, no redirects). The engine parses
/// it for what it trusts the keys for.
pub trait ClientKeyFetcher: Send + Sync + std::fmt::Debug {
    fn fetch<'a>(
        &'a self,
        url: &'a str,
    ) -> writ_token::BoxFuture<'a, std::result::Result<String, String>>;
}

/// Keys fetched from `jwks_uri`s: per owner (a client, a workload issuer), refreshed after
/// [`URL_KEYS_FRESH`] or when a token names an unknown key (at most every
/// `Config::client_jwks_min_refetch`), one fetch at a time per owner.
#[derive(Debug)]
pub(crate) struct UrlKeys {
    entries: parking_lot::Mutex<HashMap<String, Arc<UrlEntry>>>,
    /// What a fetched document is trusted as (clients' sets: EdDSA and ES256 only).
    parse: fn(&str) -> std::result::Result<KeySet, writ_token::TokenError>,
}

#[derive(Debug)]
struct UrlEntry {
    url: String,
    state: tokio::sync::Mutex<Fetched>,
}

#[derive(Debug, Default)]
struct Fetched {
    keys: Option<Arc<KeySet>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

impl UrlKeys {
    pub(crate) fn new(
        parse: fn(&str) -> std::result::Result<KeySet, writ_token::TokenError>,
    ) -> Self {
        UrlKeys {
            entries: Default::default(),
            parse,
        }
    }

    fn entry(&self, client_id: &str, url: &str) -> Arc<UrlEntry> {
        let mut entries = self.entries.lock();
        if let Some(e) = entries.get(client_id).filter(|e| e.url == url) {
            return e.clone();
        }
        if entries.len() >= MAX_URL_CLIENTS
            && let Some(victim) = entries.keys().next().cloned()
        {
            entries.remove(&victim);
        }
        let e = Arc::new(UrlEntry {
            url: url.to_owned(),
            state: tokio::sync::Mutex::new(Fetched::default()),
        });
        entries.insert(client_id.to_owned(), e.clone());
        e
    }

    /// The client's keys: as fetched, fresh; fetched now when stale, missing, or `refetch` (and
    /// not attempted within `min_refetch`).
    async fn keys(
        &self,
        fetcher: &dyn ClientKeyFetcher,
        client_id: &str,
        url: &str,
        refetch: bool,
        min_refetch: Duration,
    ) -> Option<Arc<KeySet>> {
        let entry = self.entry(client_id, url);
        let mut state = entry.state.lock().await;
        let fresh = state
            .fetched_at
            .is_some_and(|t| t.elapsed() < URL_KEYS_FRESH);
        if state.keys.is_some() && fresh && !refetch {
            return state.keys.clone();
        }
        if state
            .attempted_at
            .is_some_and(|t| t.elapsed() < min_refetch)
        {
            return state.keys.clone();
        }
        state.attempted_at = Some(Instant::now());
        let fetched = fetcher
            .fetch(url)
            .await
            .and_then(|doc| (self.parse)(&doc).map_err(|e| e.to_string()));
        match fetched {
            Ok(keys) => {
                state.keys = Some(Arc::new(keys));
                state.fetched_at = Some(Instant::now());
            }
            // Keys fetched before keep working a while (the URL may be down for a moment),
            // never past URL_KEYS_MAX_AGE.
            Err(e) => {
                tracing::warn!(owner = %client_id, url, error = %e, "a jwks_uri could not be fetched or held no usable key");
                if state
                    .fetched_at
                    .is_none_or(|t| t.elapsed() >= URL_KEYS_MAX_AGE)
                {
                    state.keys = None;
                }
            }
        }
        state.keys.clone()
    }

    /// Forgets what was fetched for `client_id` (its registration changed or ended).
    pub(crate) fn forget(&self, client_id: &str) {
        self.entries.lock().remove(client_id);
    }
}

/// A client's credentials as a request presents them. Its `Debug` shows only the client id.
#[derive(Clone, Copy)]
pub(crate) struct Presented<'a> {
    pub client_id: &'a str,
    pub secret: &'a str,
    pub assertion_type: &'a str,
    pub assertion: &'a str,
    /// The connection's TLS client certificate (DER).
    pub certificate: Option<&'a [u8]>,
}

impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("client_id", &self.client_id)
            .field("assertion_type", &self.assertion_type)
            .finish_non_exhaustive()
    }
}

impl<'a> Presented<'a> {
    #[cfg(test)]
    pub(crate) fn secret(client_id: &'a str, secret: &'a str) -> Self {
        Presented {
            client_id,
            secret,
            assertion_type: "",
            assertion: "",
            certificate: None,
        }
    }
}

impl<'a> From<&'a TokenRequest> for Presented<'a> {
    fn from(r: &'a TokenRequest) -> Self {
        Presented {
            client_id: &r.client_id,
            secret: &r.client_secret,
            assertion_type: &r.client_assertion_type,
            assertion: &r.client_assertion,
            certificate: r.client_certificate.as_deref(),
        }
    }
}

impl<'a> From<&'a ClientCredentials> for Presented<'a> {
    fn from(c: &'a ClientCredentials) -> Self {
        Presented {
            client_id: &c.client_id,
            secret: &c.client_secret,
            assertion_type: &c.client_assertion_type,
            assertion: &c.client_assertion,
            certificate: c.client_certificate.as_deref(),
        }
    }
}

/// The client a request names: its `client_id`, or when it sends only an assertion, the
/// assertion's (unverified) subject, which verification then holds to `iss` and `sub`.
pub fn named_client(client_id: &str, assertion: &str) -> String {
    if client_id.is_empty() && !assertion.is_empty() {
        writ_token::assertion_subject(assertion).unwrap_or_default()
    } else {
        client_id.to_owned()
    }
}

impl AuthorizationServer {
    /// Authenticates a client. An unknown client, a wrong secret, and a secret sent for a public
    /// client all take the same path (one keyed hash, one constant-time comparison) and end in
    /// the same `invalid_client`. A disabled client authenticates; grants refuse it.
    pub(crate) async fn authenticate_client(
        &self,
        presented: Presented<'_>,
    ) -> Result<ClientRecord> {
        self.authenticate_client_from(presented, None).await
    }

    /// [`Self::authenticate_client`] for a request from `source`: past its free failures, a
    /// client id (from that source) is refused without its credentials being checked, until its
    /// lockout ends.
    pub(crate) async fn authenticate_client_from(
        &self,
        presented: Presented<'_>,
        source: Option<std::net::IpAddr>,
    ) -> Result<ClientRecord> {
        // A secret (the hot path) has no audience to build.
        if presented.assertion.is_empty() && presented.assertion_type.is_empty() {
            return self.authenticate_client_for(presented, source, &[]).await;
        }
        // The issuer identifier (draft-ietf-oauth-rfc7523bis), or the token endpoint's URL
        // (RFC 7523 section 3, OpenID Connect Core section 9), and nothing else.
        let token_endpoint = self.metadata_token_endpoint();
        let audiences = [self.config.issuer.as_str(), token_endpoint.as_str()];
        self.authenticate_client_for(presented, source, &audiences)
            .await
    }

    /// [`Self::authenticate_client_from`], an assertion naming one of `audiences`.
    async fn authenticate_client_for(
        &self,
        presented: Presented<'_>,
        source: Option<std::net::IpAddr>,
        audiences: &[&str],
    ) -> Result<ClientRecord> {
        let has_assertion = !presented.assertion.is_empty() || !presented.assertion_type.is_empty();
        if has_assertion && !presented.secret.is_empty() {
            return Err(Error::InvalidRequest(
                "use one client authentication method",
            ));
        }
        if has_assertion && (presented.assertion.is_empty() || presented.assertion_type.is_empty())
        {
            return Err(Error::InvalidRequest(
                "client_assertion and client_assertion_type go together",
            ));
        }
        let named = named_client(presented.client_id, presented.assertion);
        let client_id = named.as_str();
        let who = [Subject::Client(client_id, source)];
        let now = self.now();
        // Refusals are recorded by the endpoint that answers them (one record per decision).
        if let Some(wait) = self.throttle.locked(&who, now) {
            return Err(Error::Throttled(wait));
        }
        let fits = if has_assertion {
            presented.assertion.len() <= MAX_ASSERTION_LEN
        } else {
            presented.secret.len() <= MAX_SECRET_LEN
        };
        let record = if valid_id(client_id) && fits {
            self.cached_client(client_id).await?
        } else {
            None
        };
        let ok = match &record {
            Some(c) if has_assertion => self.verify_assertion(c, presented, audiences).await?,
            None if has_assertion => false,
            // RFC 8705 section 2.2: the connection's certificate is one the client registered.
            // The keyed hash is computed all the same: this path costs what a secret's does.
            Some(c) if c.is_confidential() && c.auth_method == AUTH_SELF_SIGNED_TLS => {
                std::hint::black_box(self.verify_secret(None, presented.secret, now));
                presented.secret.is_empty()
                    && presented
                        .certificate
                        .is_some_and(|cert| certificate_registered(&c.jwks, cert))
            }
            // RFC 8705 section 2.1: a certificate from a CA trusted for clients, naming the
            // client as it registered.
            Some(c) if c.is_confidential() && c.auth_method == AUTH_TLS => {
                std::hint::black_box(self.verify_secret(None, presented.secret, now));
                presented.secret.is_empty()
                    && presented
                        .certificate
                        .is_some_and(|cert| self.certificate_names_client(c, cert, now))
            }
            _ => self.verify_secret(record.as_ref(), presented.secret, now),
        };
        match record {
            Some(c) if ok => {
                self.throttle.succeeded(&who);
                Ok(c)
            }
            _ => {
                self.throttle.failed(&who, now);
                Err(Error::InvalidClient)
            }
        }
    }

    async fn cached_client(&self, client_id: &str) -> Result<Option<ClientRecord>> {
        if let Some(cached) = self.client_cache.get(client_id) {
            return Ok(Some(cached));
        }
        let generation = self.client_cache.generation();
        let read = self
            .store
            .get_record::<ClientRecord>(client_id.as_bytes())
            .await?;
        if let Some(r) = &read {
            self.client_cache.put(generation, r);
        }
        Ok(read)
    }

    /// One keyed hash on every path, then constant-time comparisons: an unknown client, a
    /// public one, one registered for `private_key_jwt` and a wrong secret cost the same.
    fn verify_secret(&self, record: Option<&ClientRecord>, secret: &str, now: i64) -> bool {
        let computed = self.hasher.hash(secret.as_bytes());
        match record {
            Some(c) if c.uses_secret() => {
                // The previous secret counts only within its grace period; both are compared.
                let current = SecretHasher::matches(&computed, Some(&c.secret_hash));
                let previous = SecretHasher::matches(&computed, Some(&c.previous_secret_hash));
                current | (previous & (now < c.previous_secret_expires_at))
            }
            // Public clients do not authenticate; they must not send a secret either.
            Some(c) if !c.is_confidential() => {
                std::hint::black_box(SecretHasher::matches(&computed, None));
                secret.is_empty()
            }
            _ => {
                std::hint::black_box(SecretHasher::matches(&computed, None));
                false
            }
        }
    }

    /// `private_key_jwt`: the assertion verified with the client's registered keys, then its
    /// `jti` spent (durably, once across replicas: a conditional insert). `false` for any
    /// failure of the client's making; a store failure is an error.
    async fn verify_assertion(
        &self,
        c: &ClientRecord,
        p: Presented<'_>,
        audiences: &[&str],
    ) -> Result<bool> {
        if !c.is_confidential() || c.auth_method != AUTH_PRIVATE_KEY_JWT {
            return Ok(false);
        }
        if p.assertion_type != CLIENT_ASSERTION_TYPE || p.assertion.is_empty() {
            return Ok(false);
        }
        let now = self.now();
        let rules = AssertionRules {
            party: &c.client_id,
            audiences,
            now,
            leeway: self.config.leeway,
            max_lifetime: MAX_ASSERTION_LIFETIME,
        };
        let verified = if c.jwks_uri.is_empty() {
            match client_keys(&c.jwks) {
                Ok(keys) => writ_token::verify_assertion(p.assertion, &keys, &rules),
                Err(e) => Err(e),
            }
        } else {
            self.verify_with_url_keys(&self.url_keys, &c.client_id, &c.jwks_uri, |keys| {
                writ_token::verify_assertion(p.assertion, keys, &rules)
            })
            .await
        };
        let verified = match verified {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(client_id = %c.client_id, reason = e.reason(), "client assertion refused");
                return Ok(false);
            }
        };
        if !self
            .spend_jti(&[c.client_id.as_bytes()], &verified.jti, verified.exp)
            .await?
        {
            tracing::debug!(client_id = %c.client_id, "client assertion replayed");
            return Ok(false);
        }
        Ok(true)
    }

    /// Spends a `jti` of a JWT that lives until `exp`, for the party named by `scope` (parts
    /// joined by NUL): a conditional insert of `j/` + their keyed hash in the `SignIn` tree,
    /// durable before this returns (a crash cannot make it usable again), once across
    /// replicas. `false` if it was spent already. Pruned once the JWT has expired.
    pub(crate) async fn spend_jti(&self, scope: &[&[u8]], jti: &str, exp: i64) -> Result<bool> {
        let key = self.jti_key(scope, jti);
        let mark = SpentAssertionRecord {
            expires_at: exp + self.config.leeway,
        };
        let batch = Batch::new()
            .expect(key.clone(), None)
            .put(key, encode(&mark));
        if !self.store.commit(Tree::SignIn, batch).await? {
            return Ok(false);
        }
        self.store.durable().await?;
        Ok(true)
    }

    /// Whether [`Self::spend_jti`] spent this `jti` already (a read; the spend itself decides).
    pub(crate) async fn jti_spent(&self, scope: &[&[u8]], jti: &str) -> Result<bool> {
        Ok(self
            .store
            .get(Tree::SignIn, &self.jti_key(scope, jti))
            .await?
            .is_some())
    }

    fn jti_key(&self, scope: &[&[u8]], jti: &str) -> Vec<u8> {
        let mut id = Vec::new();
        for part in scope {
            id.extend_from_slice(part);
            id.push(0);
        }
        id.extend_from_slice(jti.as_bytes());
        crate::signin::prefixed(b"j/", &self.hasher.hash(&id))
    }

    /// `verify` with the keys `owner` (a client, a workload issuer) publishes at `url`, cached in
    /// `cache`: as last fetched, then, if the token names a key they lack (a rotation), fetched
    /// again.
    pub(crate) async fn verify_with_url_keys<T>(
        &self,
        cache: &UrlKeys,
        owner: &str,
        url: &str,
        verify: impl Fn(&KeySet) -> std::result::Result<T, writ_token::TokenError>,
    ) -> std::result::Result<T, writ_token::TokenError> {
        use writ_token::TokenError;
        let Some(fetcher) = self.client_key_fetcher.get() else {
            tracing::warn!(%owner, "a jwks_uri is registered but nothing fetches it here");
            return Err(TokenError::UnknownKey);
        };
        let mut refetch = false;
        loop {
            let keys = cache
                .keys(
                    fetcher.as_ref(),
                    owner,
                    url,
                    refetch,
                    self.config.client_jwks_min_refetch,
                )
                .await;
            let result = match keys {
                Some(keys) => verify(&keys),
                None => Err(TokenError::UnknownKey),
            };
            match result {
                Err(TokenError::UnknownKey) if !refetch => refetch = true,
                other => return other,
            }
        }
    }

    /// Fetches keys of clients registered with a `jwks_uri` with `fetcher` (the transport's).
    /// Without one, those clients cannot authenticate.
    pub fn fetch_client_keys_with(&self, fetcher: Arc<dyn ClientKeyFetcher>) {
        let _ = self.client_key_fetcher.set(fetcher);
    }

    /// The token endpoint's URL, as the metadata names it (and a DPoP proof must).
    pub fn metadata_token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.config.issuer.trim_end_matches('/'))
    }

    /// The token endpoint's mTLS alias (RFC 8705 section 5), if one is served: what a DPoP
    /// proof sent there names.
    pub fn mtls_token_endpoint(&self) -> Option<String> {
        let base = self.config.mtls_endpoint.trim_end_matches('/');
        (!base.is_empty()).then(|| format!("{base}/oauth2/token"))
    }

    /// [`Self::authenticate_exchange_client`] for an STS in another process
    /// (`AdminService.AuthenticateClient`), with one audit record either way
    /// (`exchange_client_authenticated`): that STS's exchanges are in its own log, so this is
    /// what the authorization server's log knows of its callers. (In process, the STS's own
    /// `token_exchanged` or `token_exchange_refused` in this log says it.)
    pub async fn authenticate_remote_exchange_client(
        &self,
        presented: &ClientCredentials,
        audiences: &[String],
    ) -> Result<()> {
        let result = self
            .authenticate_exchange_client(presented, audiences)
            .await;
        let event = match &result {
            Ok(()) => Event::new("exchange_client_authenticated", Outcome::Success),
            Err(e) => Event::new("exchange_client_authenticated", e.audit_outcome())
                .reason(e.oauth_code())
                .detail("description", e.description()),
        }
        .client(&named_client(
            &presented.client_id,
            &presented.client_assertion,
        ))
        .audience(audiences);
        match result {
            // Answered once its record is durable, as every success.
            Ok(()) => self.audit.record(event).await.map_err(Error::from),
            Err(e) => {
                self.audit_refusal(event).await;
                Err(e)
            }
        }
    }

    /// Authenticates a client calling the STS (token exchange, RFC 8693): a confidential,
    /// enabled client with its secret or an assertion whose `aud` is one of `audiences` (the
    /// STS's issuer identifier and token endpoint) or this server's issuer identifier (the
    /// platform's: one assertion audience serves a client at both; its `jti` is spent once
    /// for both). Every failure is the same `invalid_client`, along the same path as
    /// [`Self::authenticate_client`].
    pub async fn authenticate_exchange_client(
        &self,
        presented: &ClientCredentials,
        audiences: &[String],
    ) -> Result<()> {
        if audiences.len() > 4 {
            return Err(Error::InvalidRequest("at most 4 audiences"));
        }
        let mut accepted: Vec<&str> = audiences.iter().map(String::as_str).collect();
        accepted.push(&self.config.issuer);
        let client = self
            .authenticate_client_for(presented.into(), None, &accepted)
            .await?;
        if !client.is_confidential() || client.disabled {
            return Err(Error::InvalidClient);
        }
        // The STS sees no client certificate (it is called over its own connection, or in
        // process): a client whose tokens must be bound to one gets none from it.
        if client.tls_client_certificate_bound_access_tokens {
            return Err(Error::UnauthorizedClient(
                "this client's tokens are bound to its TLS client certificate, which token \
                 exchange does not carry",
            ));
        }
        // Nor a DPoP proof: a client registered to prove a key gets no bearer token there.
        if client.dpop_bound_access_tokens {
            return Err(Error::UnauthorizedClient(
                "this client's tokens are DPoP-bound, which token exchange does not carry",
            ));
        }
        Ok(())
    }
}

/// A client's registered JWK Set as verification keys.
fn client_keys(jwks: &str) -> std::result::Result<KeySet, writ_token::TokenError> {
    writ_token::jwt_key_set(jwks)
}

/// The certificates (DER) a `self_signed_tls_client_auth` client registered: the first of each
/// key's `x5c` (RFC 8705 section 2.2.2). `None` if a key has none, or the set is malformed.
fn registered_certificates(jwks: &str) -> Option<Vec<Vec<u8>>> {
    use base64::Engine as _;
    let doc: serde_json::Value = serde_json::from_str(jwks).ok()?;
    doc.get("keys")?
        .as_array()?
        .iter()
        .map(|k| {
            let first = k.get("x5c")?.as_array()?.first()?.as_str()?;
            // RFC 7517 section 4.7: base64, not base64url.
            base64::engine::general_purpose::STANDARD.decode(first).ok()
        })
        .collect()
}

/// Checks CAs an operator trusts for client certificates: each one must make a trust anchor.
pub fn validate_client_cas(cas: &[Vec<u8>]) -> std::result::Result<(), String> {
    for (i, ca) in cas.iter().enumerate() {
        let der = rustls_pki_types::CertificateDer::from(ca.as_slice());
        webpki::anchor_from_trusted_cert(&der)
            .map_err(|e| format!("certificate {} is no trust anchor: {e}", i + 1))?;
    }
    Ok(())
}

/// The subject alternative names a `tls_client_auth` client registered (RFC 8705 section
/// 2.1.2), non-empty ones only: valid registrations have exactly one.
pub(crate) fn registered_names(c: &ClientRecord) -> Vec<RegisteredName<'_>> {
    [
        (NameKind::Dns, &c.tls_client_auth_san_dns),
        (NameKind::Uri, &c.tls_client_auth_san_uri),
        (NameKind::Ip, &c.tls_client_auth_san_ip),
        (NameKind::Email, &c.tls_client_auth_san_email),
        (NameKind::SubjectDn, &c.tls_client_auth_subject_dn),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(kind, value)| RegisteredName { kind, value })
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameKind {
    Dns,
    Uri,
    Ip,
    Email,
    SubjectDn,
}

/// A subject alternative name a client registered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegisteredName<'a> {
    kind: NameKind,
    value: &'a str,
}

/// A registered name must be one a certificate can carry: at most 512 bytes, printable, an IP
/// address that parses.
pub(crate) fn validate_registered_name(name: RegisteredName<'_>) -> Result<()> {
    let printable = name.value.len() <= 512
        && name
            .value
            .bytes()
            .all(|b| b.is_ascii_graphic() || (b == b' ' && name.kind == NameKind::SubjectDn));
    let parses = match name.kind {
        NameKind::Ip => name.value.parse::<std::net::IpAddr>().is_ok(),
        // A wildcard names no one client.
        NameKind::Dns => !name.value.contains('*'),
        NameKind::SubjectDn => subject_dn(name.value).is_some(),
        NameKind::Uri | NameKind::Email => true,
    };
    if printable && parses {
        Ok(())
    } else {
        Err(Error::InvalidRequest(
            "a tls_client_auth_san_* or _subject_dn is printable ASCII (spaces too in a DN), at \
             most 512 bytes (an IP address for _san_ip, no wildcard in _san_dns, an RFC 4514 \
             string for _subject_dn)",
        ))
    }
}

impl AuthorizationServer {
    /// Whether `certificate` (DER) chains to a CA trusted for clients, now, for client
    /// authentication, and carries the subject alternative name `c` registered.
    fn certificate_names_client(&self, c: &ClientRecord, certificate: &[u8], now: i64) -> bool {
        use rustls_pki_types::{CertificateDer, UnixTime};
        let names = registered_names(c);
        let [name] = names.as_slice() else {
            return false;
        };
        let cas: Vec<CertificateDer<'_>> = self
            .config
            .tls_client_cas
            .iter()
            .map(|ca| CertificateDer::from(ca.as_slice()))
            .collect();
        let anchors: Vec<_> = cas
            .iter()
            .filter_map(|ca| webpki::anchor_from_trusted_cert(ca).ok())
            .collect();
        let der = CertificateDer::from(certificate);
        let Ok(end_entity) = webpki::EndEntityCert::try_from(&der) else {
            return false;
        };
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now).unwrap_or(0),
        ));
        let chained = end_entity.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &[],
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        );
        if let Err(e) = chained {
            tracing::debug!(client_id = %c.client_id, error = %e, "a client certificate did not chain to a client CA");
            return false;
        }
        certificate_names(certificate, *name)
    }
}

/// An RFC 4514 string in x509-cert's rendering (attribute names upper case, values escaped
/// one way), or `None` if it is no distinguished name.
fn subject_dn(s: &str) -> Option<String> {
    let dn: x509_cert::name::RdnSequence = s.parse().ok()?;
    (!dn.0.is_empty()).then(|| dn.to_string())
}

/// Whether the certificate's subject alternative names include `name` (exactly; a DNS name
/// without regard to case, an IP address as an address), or its subject is `name`'s.
fn certificate_names(certificate: &[u8], name: RegisteredName<'_>) -> bool {
    use x509_parser::extensions::GeneralName;
    if name.kind == NameKind::SubjectDn {
        use x509_cert::der::Decode as _;
        let Ok(cert) = x509_cert::Certificate::from_der(certificate) else {
            return false;
        };
        let presented = cert.tbs_certificate.subject.to_string();
        return !presented.is_empty() && Some(presented) == subject_dn(name.value);
    }
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(certificate) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let ip: Option<std::net::IpAddr> = name.value.parse().ok();
    san.value
        .general_names
        .iter()
        .any(|g| match (name.kind, g) {
            (NameKind::Dns, GeneralName::DNSName(d)) => d.eq_ignore_ascii_case(name.value),
            (NameKind::Uri, GeneralName::URI(u)) => *u == name.value,
            // The local part exactly, the domain without regard to case (RFC 5280 section 7.5).
            (NameKind::Email, GeneralName::RFC822Name(e)) => {
                match (e.rsplit_once('@'), name.value.rsplit_once('@')) {
                    (Some((local, domain)), Some((want_local, want_domain))) => {
                        local == want_local && domain.eq_ignore_ascii_case(want_domain)
                    }
                    _ => false,
                }
            }
            (NameKind::Ip, GeneralName::IPAddress(bytes)) => {
                let presented = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).ok().map(std::net::IpAddr::from),
                    16 => <[u8; 16]>::try_from(*bytes)
                        .ok()
                        .map(std::net::IpAddr::from),
                    _ => None,
                };
                presented.is_some() && presented == ip
            }
            _ => false,
        })
}

/// The `x5t#S256` of each certificate `jwks` registers: what audit records show of them.
pub(crate) fn certificate_thumbprints(jwks: &str) -> Vec<String> {
    registered_certificates(jwks)
        .unwrap_or_default()
        .iter()
        .map(|c| writ_token::certificate_thumbprint(c))
        .collect()
}

/// Whether `certificate` (DER) is one of those `jwks` registers, byte for byte.
fn certificate_registered(jwks: &str, certificate: &[u8]) -> bool {
    registered_certificates(jwks).is_some_and(|certs| certs.iter().any(|c| c == certificate))
}

/// Checks the certificates a `self_signed_tls_client_auth` client registers: a JWK Set of 1 to
/// [`MAX_CLIENT_KEYS`] keys, no private key material, each with an `x5c` whose first element is
/// an X.509 certificate.
pub(crate) fn validate_client_certificates(jwks: &str) -> Result<()> {
    const BAD: &str = "jwks is a JWK Set of 1 to 10 keys, each with x5c: the client's TLS \
                       certificate first (base64 DER), and no private key material";
    if jwks.len() > MAX_CLIENT_JWKS_LEN {
        return Err(Error::InvalidRequest("jwks is larger than 16 KiB"));
    }
    public_keys_listed(jwks, BAD)?;
    let certs = registered_certificates(jwks).ok_or(Error::InvalidRequest(BAD))?;
    if certs.is_empty()
        || certs.len() > MAX_CLIENT_KEYS
        || certs.iter().any(|c| {
            x509_parser::parse_x509_certificate(c).map_or(true, |(rest, _)| !rest.is_empty())
        })
    {
        return Err(Error::InvalidRequest(BAD));
    }
    Ok(())
}

/// Checks a JWK Set a client registers: public signature keys only (no private or symmetric
/// key material is ever stored), each with a `kid`, of an allowed algorithm, at most
/// [`MAX_CLIENT_KEYS`], distinct kids.
pub(crate) fn validate_client_jwks(jwks: &str) -> Result<()> {
    const BAD: &str = "jwks is a JWK Set of 1 to 10 public EdDSA (Ed25519) or ES256 (P-256) \
                       signature keys, each with a distinct kid";
    if jwks.len() > MAX_CLIENT_JWKS_LEN {
        return Err(Error::InvalidRequest("jwks is larger than 16 KiB"));
    }
    let listed = public_keys_listed(jwks, BAD)?;
    let keys = writ_token::parse_jwk_set(jwks).map_err(|_| Error::InvalidRequest(BAD))?;
    let mut kids: Vec<&str> = keys.iter().map(|k| k.kid()).collect();
    kids.sort_unstable();
    kids.dedup();
    // parse_jwk_set keeps EdDSA and ES256 keys only: an RSA key (for workload identity tokens
    // only) makes the counts differ, and is refused.
    if keys.is_empty()
        || keys.len() != listed
        || keys.len() > MAX_CLIENT_KEYS
        || kids.len() != keys.len()
    {
        return Err(Error::InvalidRequest(BAD));
    }
    Ok(())
}

/// How many keys a JWK Set document lists, refusing one holding private key material (no
/// private or symmetric key is ever stored). `bad`: the refusal of a document that is no set.
pub(crate) fn public_keys_listed(jwks: &str, bad: &'static str) -> Result<usize> {
    let doc: serde_json::Value =
        serde_json::from_str(jwks).map_err(|_| Error::InvalidRequest(bad))?;
    let listed = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or(Error::InvalidRequest(bad))?;
    // RFC 7518 section 6: the private members of EC, OKP, RSA and symmetric keys.
    const PRIVATE: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];
    if listed
        .iter()
        .any(|k| PRIVATE.iter().any(|m| k.get(m).is_some()))
    {
        return Err(Error::InvalidRequest(
            "jwks holds private key material: register public keys only",
        ));
    }
    Ok(listed.len())
}

/// Checks a `jwks_uri` a client registers: an absolute https URL with a host, without user
/// info or fragment (as the fetcher parses it).
pub(crate) fn validate_jwks_uri(uri: &str) -> Result<()> {
    let parsed = uri.parse::<http::Uri>().ok();
    let authority = parsed.as_ref().and_then(http::Uri::authority);
    let ok = uri.len() <= MAX_JWKS_URI_LEN
        && parsed.as_ref().and_then(http::Uri::scheme) == Some(&http::uri::Scheme::HTTPS)
        && authority.is_some_and(|a| {
            !a.host().is_empty()
                && !a.as_str().contains('@')
                && a.port()
                    .is_none_or(|p| p.as_str().parse::<u16>().is_ok_and(|n| n > 0))
        })
        && !uri.contains('#');
    if !ok {
        return Err(Error::InvalidRequest(
            "jwks_uri is an https URL with a host, without user info or fragment, at most 2048 \
             bytes",
        ));
    }
    Ok(())
}

/// The key ids of a registered JWK Set, as an audit record shows it.
pub(crate) fn jwks_kids(jwks: &str) -> Vec<String> {
    writ_token::parse_jwk_set_for(jwks, &writ_token::Algorithm::WORKLOAD)
        .map(|keys| keys.iter().map(|k| k.kid().to_owned()).collect())
        .unwrap_or_default()
}
