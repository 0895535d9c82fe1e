//! An external issuer's JWK Set fetched over HTTPS from a URL the operator configured (never
//! from anything a token names), trusting exactly the CA the operator gave for it.
//!
//! One HTTP/1.1 request per fetch on a fresh connection (fetches are rare: at start, in the
//! background, and rate-limited when a token names an unknown key), bounded in time and size,
//! redirects not followed. The body is parsed by [`writ_token::jwt_key_set`]
//! ([`HttpsJwks::fetch`]), or handed over as it came ([`HttpsJwks::fetch_document`]) to a caller
//! that trusts other keys.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use writ_token::KeySet;

/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// Bound on one fetch: connecting, the TLS handshake, the request and the whole body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a JWKS URL cannot be used, or a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum JwksUrlError {
    #[error("the JWKS URL {0:?} is not an https:// URL with a host")]
    NotHttps(String),
    #[error("the CA certificate for {url}: {reason}")]
    Ca { url: String, reason: String },
    #[error("fetching {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("fetching {url}: no answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("fetching {url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("fetching {url}: the JWKS is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url} did not serve a usable JWK Set: {reason}")]
    Unusable { url: String, reason: String },
}

/// Where an external issuer publishes its JWK Set: an https URL and the CA its server
/// certificate must chain to.
#[derive(Clone)]
pub struct HttpsJwks {
    url: String,
    /// `host[:port]`, the request's `host` header.
    authority: String,
    host: String,
    port: u16,
    path: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpsJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsJwks").field("url", &self.url).finish()
    }
}

impl HttpsJwks {
    /// `url` must be `https://host[:port]/path` (no user info); `ca_pem` holds the CA
    /// certificate(s) to trust for it, and nothing else is trusted.
    pub fn new(url: &str, ca_pem: &str) -> Result<Self, JwksUrlError> {
        Self::at(url, || {
            client_config(ca_pem).map_err(|reason| JwksUrlError::Ca {
                url: url.to_owned(),
                reason,
            })
        })
    }

    /// [`Self::new`] with a TLS configuration built once by the caller (its roots are what is
    /// trusted; its ALPN should be `http/1.1`).
    pub fn with_tls(url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Self, JwksUrlError> {
        Self::at(url, || Ok(tls))
    }

    /// The URL judged first (a wrong URL is reported as such whatever the CA), then `tls`.
    fn at(
        url: &str,
        tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, JwksUrlError>,
    ) -> Result<Self, JwksUrlError> {
        let not_https = || JwksUrlError::NotHttps(url.to_owned());
        let uri: http::Uri = url.parse().map_err(|_| not_https())?;
        if uri.scheme() != Some(&http::uri::Scheme::HTTPS) {
            return Err(not_https());
        }
        let authority = uri.authority().ok_or_else(not_https)?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(not_https());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = ServerName::try_from(host.clone()).map_err(|_| not_https())?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_owned();
        Ok(HttpsJwks {
            url: url.to_owned(),
            authority: authority.as_str().to_owned(),
            port: authority.port_u16().unwrap_or(443),
            host,
            path,
            server_name,
            tls: tls()?,
            timeout: FETCH_TIMEOUT,
        })
    }

    /// Bounds every fetch by `timeout` instead of [`FETCH_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches and parses the JWK Set: a 200 answer, at most [`MAX_JWKS_BYTES`], holding at
    /// least one usable signature key.
    pub async fn fetch(&self) -> Result<KeySet, JwksUrlError> {
        let json = self.fetch_document().await?;
        writ_token::jwt_key_set(&json).map_err(|e| JwksUrlError::Unusable {
            url: self.url.clone(),
            reason: e.to_string(),
        })
    }

    /// Fetches the JWK Set document, unparsed: a 200 answer, at most [`MAX_JWKS_BYTES`], UTF-8.
    pub async fn fetch_document(&self) -> Result<String, JwksUrlError> {
        let body = tokio::time::timeout(self.timeout, self.get())
            .await
            .map_err(|_| JwksUrlError::Timeout {
                url: self.url.clone(),
                after: self.timeout,
            })??;
        let unusable = |reason: String| JwksUrlError::Unusable {
            url: self.url.clone(),
            reason,
        };
        String::from_utf8(body.to_vec()).map_err(|_| unusable("not UTF-8".into()))
    }

    /// One GET on a fresh connection; the body, bounded.
    async fn get(&self) -> Result<Bytes, JwksUrlError> {
        let fail = |reason: String| JwksUrlError::Fetch {
            url: self.url.clone(),
            reason,
        };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| fail(format!("connecting: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| fail(e.to_string()))?;
        // Driven beside the request; aborted when this fetch ends or is cancelled (time-out).
        let _conn = AbortOnDrop(tokio::spawn(conn));
        let req = http::Request::get(self.path.as_str())
            .header(http::header::HOST, self.authority.as_str())
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .header(http::header::USER_AGENT, "writ")
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if resp.status() != http::StatusCode::OK {
            return Err(JwksUrlError::Status {
                url: self.url.clone(),
                status: resp.status().as_u16(),
            });
        }
        let too_large = || JwksUrlError::TooLarge {
            url: self.url.clone(),
        };
        let declared = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
            return Err(too_large());
        }
        match Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
        {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A rustls client configuration (ring) trusting exactly the CA certificates in `ca_pem`.
fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|_| "not a PEM certificate".to_owned())?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no certificate in it".into());
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_with_a_host_are_accepted() {
        for bad in [
            "http://idp.example/jwks.json",
            "ftp://idp.example/jwks.json",
            "idp.example/jwks.json",
            "https:///jwks.json",
            "https://user@idp.example/jwks.json",
            "",
        ] {
            assert!(
                matches!(HttpsJwks::new(bad, ""), Err(JwksUrlError::NotHttps(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_ca_is_required() {
        assert!(matches!(
            HttpsJwks::new("https://idp.example/jwks.json", ""),
            Err(JwksUrlError::Ca { .. })
        ));
        assert!(matches!(
            HttpsJwks::new("https://idp.example/jwks.json", "not pem"),
            Err(JwksUrlError::Ca { .. })
        ));
    }
}
