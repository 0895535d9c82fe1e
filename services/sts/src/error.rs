//! Why the STS could not start. Refusals of requests are `writ_exchange::ExchangeError`s, mapped
//! to statuses in `status.rs`.

use std::path::PathBuf;

use writ_exchange::ExchangeError;
use writ_server::ServerError;

#[derive(Debug, thiserror::Error)]
pub enum StsError {
    #[error("serving: {0}")]
    Server(#[from] ServerError),
    #[error("opening the token exchange: {0}")]
    Exchange(#[from] ExchangeError),
    #[error("opening the STS's signing keys: {0}")]
    Keys(writ_keyring::KeyringError),
    #[error("reading {path}: {source}")]
    JwksRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a JWK Set with usable keys: {reason}")]
    JwksUnusable { path: PathBuf, reason: String },
    #[error("external issuer {issuer}: {reason}")]
    ExternalIssuer { issuer: String, reason: String },
    #[error("external issuer {issuer}: {source}")]
    JwksUrl {
        issuer: String,
        source: writ_trust::JwksUrlError,
    },
}
