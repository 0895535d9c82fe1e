//! Why the log refused, and how that reads on the wire.

use writ_store::StoreError;
use writ_token::RevocationError;
use writ_vocabulary::{Kind, Refusal, Refuse};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid entry: {0}")]
    Invalid(#[from] RevocationError),
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("the cursor is older than the log retains")]
    Truncated,
    #[error("the cursor is ahead of the log")]
    CursorAhead,
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

/// `google.rpc.ErrorInfo.domain` of the revocation service's refusals.
pub const ERROR_DOMAIN: &str = "revocation.writ.dev";

impl Refuse for LogError {
    fn refusal(&self) -> Refusal {
        let (kind, reason, description) = match self {
            LogError::Invalid(e) => (Kind::InvalidArgument, "invalid_entry", e.to_string()),
            LogError::InvalidRequest(m) => (Kind::InvalidArgument, "invalid_request", (*m).into()),
            LogError::CursorAhead => (
                Kind::OutOfRange,
                "cursor_ahead",
                "the cursor is ahead of the log".into(),
            ),
            LogError::Truncated => (
                Kind::OutOfRange,
                "cursor_truncated",
                "the cursor is older than the log".into(),
            ),
            LogError::Store(_) => {
                return Refusal::new(
                    Kind::Unavailable,
                    ERROR_DOMAIN,
                    "storage",
                    "the revocation log is unavailable",
                )
                .logged();
            }
        };
        Refusal::new(kind, ERROR_DOMAIN, reason, description)
    }
}
