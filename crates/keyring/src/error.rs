//! Why a key operation failed. Never carries key material.

use writ_store::StoreError;
use writ_token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// Another process or task changed the keys at the same time; the caller may retry.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("storage failure")]
    Storage(#[from] StoreError),
    #[error("key failure: {0}")]
    Token(#[from] TokenError),
    /// The stored keys cannot be opened: the key-encryption key is not the one they were
    /// sealed under (or they were tampered with).
    #[error("{0}")]
    Sealed(&'static str),
    /// The stored keys make no sense (corruption, or a record written by something else).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

pub type Result<T, E = KeyringError> = std::result::Result<T, E>;
