//! The keys of the issuers the STS trusts: the authorization server's (in-process or fetched,
//! through `writ-trust`), and external JWT issuers' JWK Sets, read from files or fetched from
//! their https JWKS URLs (through `writ-trust`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use writ_token::KeySet;
use writ_token::{KeySource, TrustedIssuer};

use crate::error::StsError;

/// How often an external issuer's JWKS URL is fetched in the background.
pub const EXTERNAL_REFRESH_EVERY: Duration = Duration::from_secs(300);
/// At most one fetch (or file read) per this window when tokens name unknown keys.
pub const EXTERNAL_MIN_REFRESH: Duration = Duration::from_secs(5);

/// An external JWT issuer as the operator configured it: its `iss`, and `jwks`, either a file
/// holding its JWK Set ([`JwksFile`]) or an `https://` URL serving it, fetched with
/// `writ_trust::RemoteKeys` and trusting only the CA certificate(s) in the file `ca` (required
/// for a URL, refused for a file). Fails closed: a URL that is not https, an unreadable CA, a
/// first fetch that fails (time-out, not 200, larger than 64 KiB, not a JWK Set with a usable
/// key) all refuse the configuration. Only its JWTs are trusted, never Biscuits.
pub async fn external_issuer(
    issuer: &str,
    jwks: &str,
    ca: Option<&Path>,
    every: Duration,
    min_refresh: Duration,
) -> Result<TrustedIssuer, StsError> {
    let refuse = |reason: String| StsError::ExternalIssuer {
        issuer: issuer.to_owned(),
        reason,
    };
    if issuer.is_empty() {
        return Err(refuse("the issuer name is empty".into()));
    }
    let keys: Arc<dyn KeySource> = if jwks.contains("://") {
        let ca = ca.ok_or_else(|| {
            refuse(format!(
                "the JWKS URL {jwks} needs the CA file to trust for it"
            ))
        })?;
        let ca_pem = std::fs::read_to_string(ca)
            .map_err(|e| refuse(format!("reading the CA file {}: {e}", ca.display())))?;
        let url_error = |source| StsError::JwksUrl {
            issuer: issuer.to_owned(),
            source,
        };
        let source = writ_trust::HttpsJwks::new(jwks, &ca_pem).map_err(url_error)?;
        let remote =
            writ_trust::RemoteKeys::fetch_jwks_url(issuer.to_owned(), source, every, min_refresh)
                .await
                .map_err(url_error)?;
        Arc::new(remote)
    } else {
        if ca.is_some() {
            return Err(refuse(
                "a CA file is only for a JWKS URL, not a JWKS file".into(),
            ));
        }
        Arc::new(JwksFile::load(Path::new(jwks), min_refresh)?)
    };
    Ok(TrustedIssuer::jwt_only(issuer, keys))
}

/// An external issuer's JWK Set, read from a file (deployed next to the STS, e.g. by the
/// identity provider's rotation job). Read at start, failing if unusable; read again, at most
/// every `min_refresh`, when a token names a key not in it, so a rotation needs no restart.
/// Keys are never fetched from anything a token names.
#[derive(Debug)]
pub struct JwksFile {
    path: PathBuf,
    keys: Mutex<Arc<KeySet>>,
    last_read: Mutex<Instant>,
    min_refresh: Duration,
}

impl JwksFile {
    pub fn load(path: &Path, min_refresh: Duration) -> Result<Self, StsError> {
        Ok(JwksFile {
            keys: Mutex::new(Arc::new(read(path)?)),
            path: path.to_owned(),
            last_read: Mutex::new(Instant::now()),
            min_refresh,
        })
    }
}

fn read(path: &Path) -> Result<KeySet, StsError> {
    let json = std::fs::read_to_string(path).map_err(|source| StsError::JwksRead {
        path: path.to_owned(),
        source,
    })?;
    let unusable = |reason: String| StsError::JwksUnusable {
        path: path.to_owned(),
        reason,
    };
    writ_token::jwt_key_set(&json).map_err(|e| unusable(e.to_string()))
}

impl KeySource for JwksFile {
    fn keys(&self) -> Arc<KeySet> {
        self.keys.lock().clone()
    }

    fn request_refresh(&self) {
        {
            let mut last = self.last_read.lock();
            if last.elapsed() < self.min_refresh {
                return;
            }
            *last = Instant::now();
        }
        // A small local file: read in place. Keep the keys we have if it became unusable.
        match read(&self.path) {
            Ok(keys) => *self.keys.lock() = Arc::new(keys),
            Err(e) => tracing::warn!(error = %e, "could not re-read an external issuer's keys"),
        }
    }
}
