//! Why the guard refused a call, and the one place that becomes a `tonic::Status`.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use writ_token::{RevocationKind, TokenError};

/// `google.rpc.ErrorInfo.domain` of the guard's refusals.
pub const ERROR_DOMAIN: &str = "guard.writ.dev";

/// Every way the guard refuses a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("a bearer token is required")]
    MissingToken,
    #[error("the authorization header is not `Bearer <token>`")]
    MalformedHeader,
    #[error("the token is not valid here ({})", .0.reason())]
    InvalidToken(TokenError),
    #[error("the token has been revoked")]
    Revoked(RevocationKind),
    #[error("the token lacks a scope this method needs")]
    InsufficientScope(Vec<String>),
    #[error("the token does not grant this request")]
    Denied(TokenError),
    #[error("no policy allows this method")]
    MethodNotAllowed,
    #[error("the revocation feed is too stale to trust; try again")]
    RevocationFeedStale,
}

impl GuardError {
    /// The RFC 6750 error code, as `ErrorInfo.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            GuardError::MissingToken | GuardError::MalformedHeader => "invalid_request",
            GuardError::InvalidToken(_) | GuardError::Revoked(_) => "invalid_token",
            GuardError::InsufficientScope(_) | GuardError::Denied(_) => "insufficient_scope",
            GuardError::MethodNotAllowed => "method_not_allowed",
            GuardError::RevocationFeedStale => "revocation_feed_stale",
        }
    }

    /// A finer cause, as `ErrorInfo.metadata["cause"]`: which rule failed, never what the token
    /// holds.
    pub fn cause(&self) -> &'static str {
        match self {
            GuardError::MissingToken => "missing",
            GuardError::MalformedHeader => "malformed_header",
            GuardError::InvalidToken(e) | GuardError::Denied(e) => e.reason(),
            GuardError::Revoked(_) => "revoked",
            GuardError::InsufficientScope(_) => "scope",
            GuardError::MethodNotAllowed => "no_policy",
            GuardError::RevocationFeedStale => "stale",
        }
    }

    pub fn code(&self) -> Code {
        match self {
            GuardError::MissingToken
            | GuardError::MalformedHeader
            | GuardError::InvalidToken(_)
            | GuardError::Revoked(_) => Code::Unauthenticated,
            GuardError::InsufficientScope(_)
            | GuardError::Denied(_)
            | GuardError::MethodNotAllowed => Code::PermissionDenied,
            GuardError::RevocationFeedStale => Code::Unavailable,
        }
    }

    pub fn to_status(&self) -> Status {
        let mut metadata = HashMap::from([("cause".to_owned(), self.cause().to_owned())]);
        if let GuardError::InsufficientScope(scopes) = self {
            // What the method needs is the service's policy, not the caller's secret.
            metadata.insert("scope".to_owned(), scopes.join(" "));
        }
        Status::with_error_details(
            self.code(),
            self.to_string(),
            ErrorDetails::with_error_info(self.reason(), ERROR_DOMAIN, metadata),
        )
    }
}

impl From<GuardError> for Status {
    fn from(e: GuardError) -> Status {
        e.to_status()
    }
}
