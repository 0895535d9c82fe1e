//! Clients' `jwks_uri`s fetched for `private_key_jwt` (`writ_oauth::ClientKeyFetcher`), under
//! the rules for external issuers' JWK Set URLs (`writ_trust::HttpsJwks`): https only, one
//! bounded request, no redirects, at most 64 KiB, trusting the operator's CA or the system's.

use std::time::Duration;

use writ_token::{BoxFuture, KeySet};

/// Bound on one fetch (a client's authentication waits for it when its keys are unknown).
pub const CLIENT_JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches clients' JWK Sets over https, trusting the CA certificates in `ca_pem`.
#[derive(Clone)]
pub struct HttpsClientKeys {
    ca_pem: String,
}

impl std::fmt::Debug for HttpsClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClientKeys").finish_non_exhaustive()
    }
}

impl HttpsClientKeys {
    /// Trusting exactly the CA certificates in `ca_pem`.
    pub fn new(ca_pem: String) -> Self {
        HttpsClientKeys { ca_pem }
    }

    /// Trusting the system's CA bundle (the first of [`crate::backchannel::CA_BUNDLES`] found;
    /// none found: every fetch fails, with a warning now).
    pub fn system() -> Self {
        let pem = crate::backchannel::CA_BUNDLES
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        if pem.is_empty() {
            tracing::warn!("no CA bundle found: clients' jwks_uri cannot be fetched");
        }
        HttpsClientKeys { ca_pem: pem }
    }
}

impl writ_oauth::ClientKeyFetcher for HttpsClientKeys {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<KeySet, String>> {
        Box::pin(async move {
            let source = writ_trust::HttpsJwks::new(url, &self.ca_pem)
                .map_err(|e| e.to_string())?
                .with_timeout(CLIENT_JWKS_FETCH_TIMEOUT);
            source.fetch().await.map_err(|e| e.to_string())
        })
    }
}
