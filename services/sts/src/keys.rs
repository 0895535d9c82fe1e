//! The keys of the issuers the STS trusts: the authorization server's (in-process or fetched,
//! through `writ-trust`), and external JWT issuers' JWKS documents read from files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use writ_exchange::IssuerKeys;
use writ_token::KeySet;

use crate::error::StsError;

/// A `writ-trust` key source (the authorization server's keys) as the exchange sees it.
#[derive(Debug, Clone)]
pub struct TrustedKeys(pub Arc<dyn writ_trust::KeySource>);

impl IssuerKeys for TrustedKeys {
    fn keys(&self) -> Arc<KeySet> {
        self.0.keys()
    }

    fn request_refresh(&self) {
        self.0.request_refresh()
    }
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
    let keys = writ_token::parse_jwk_set(&json).map_err(|e| unusable(e.to_string()))?;
    if keys.is_empty() {
        return Err(unusable(
            "no EdDSA or ES256 signature key with a kid".into(),
        ));
    }
    let mut set = KeySet::new();
    for k in keys {
        set.insert_jwt(k);
    }
    Ok(set)
}

impl IssuerKeys for JwksFile {
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
