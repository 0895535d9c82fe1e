//! The `jwks_uri`s of clients (`private_key_jwt`) and workload issuers, fetched
//! (`writ_oauth::ClientKeyFetcher`) under the rules for external issuers' JWK Set URLs
//! (`writ_trust::HttpsJwks`): https only, one bounded request, no redirects, at most 64 KiB,
//! trusting the operator's CA or the system's. The engine parses what it fetched.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use writ_token::BoxFuture;

/// Bound on one fetch (a client's authentication waits for it when its keys are unknown).
pub const CLIENT_JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches clients' JWK Sets over https; the TLS roots are read once.
#[derive(Clone)]
pub struct HttpsClientKeys {
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for HttpsClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClientKeys").finish_non_exhaustive()
    }
}

impl HttpsClientKeys {
    /// Trusting exactly the CA certificates in `ca_pem` (the operator's `--client-jwks-ca`); a
    /// file without one, or with one that cannot be used, is an error.
    pub fn new(ca_pem: &str) -> Result<Self, String> {
        let mut scratch = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|_| "not a PEM certificate".to_owned())?;
            scratch.add(cert).map_err(|e| e.to_string())?;
        }
        let (tls, roots) = tls_trusting(ca_pem.as_bytes());
        if roots == 0 {
            return Err("no CA certificate in it".into());
        }
        Ok(HttpsClientKeys { tls })
    }

    /// Trusting the system's CA bundle (the first of [`crate::backchannel::CA_BUNDLES`] found;
    /// certificates it cannot use are skipped; none found: every fetch fails, with a warning
    /// now).
    pub fn system() -> Self {
        let (tls, roots) = system_tls();
        if roots == 0 {
            tracing::warn!("no CA bundle found: clients' jwks_uri cannot be fetched");
        }
        HttpsClientKeys { tls }
    }
}

/// [`tls_trusting`] the system's CA bundle (the first of [`crate::backchannel::CA_BUNDLES`]
/// found).
pub(crate) fn system_tls() -> (Arc<rustls::ClientConfig>, usize) {
    let pem = crate::backchannel::CA_BUNDLES
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    tls_trusting(&pem)
}

/// A rustls client configuration (ring, http/1.1) trusting the usable certificates in `pem`,
/// and how many there were.
fn tls_trusting(pem: &[u8]) -> (Arc<rustls::ClientConfig>, usize) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem).flatten() {
        let _ = roots.add(cert);
    }
    let count = roots.len();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(config), count)
}

impl writ_oauth::ClientKeyFetcher for HttpsClientKeys {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let source = writ_trust::HttpsJwks::with_tls(url, self.tls.clone())
                .map_err(|e| e.to_string())?
                .with_timeout(CLIENT_JWKS_FETCH_TIMEOUT);
            source.fetch_document().await.map_err(|e| e.to_string())
        })
    }
}
