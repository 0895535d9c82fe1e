//! Why the guard refused a call, and the one place that becomes a `tonic::Status`.

use tonic::{Code, Status};
use writ_token::{RevocationKind, TokenError};
use writ_vocabulary::{ErrorCode, Kind, Refusal, Refuse};

/// `google.rpc.ErrorInfo.domain` of the guard's refusals.
pub const ERROR_DOMAIN: &str = "guard.writ.dev";

/// Every way the guard refuses a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("a bearer token is required")]
    MissingToken,
    #[error("the authorization header is not `Bearer <token>` or `DPoP <token>`")]
    MalformedHeader,
    #[error("the token is not valid here ({})", .0.reason())]
    InvalidToken(TokenError),
    /// A DPoP-bound token without a good proof by its key (RFC 9449 section 7.1).
    #[error("{0}")]
    InvalidDpopProof(&'static str),
    /// A token bound to a TLS client certificate (RFC 8705) over a connection that did not
    /// present it.
    #[error("the token is bound to a TLS client certificate this connection did not present")]
    WrongCertificate,
    #[error("the token has been revoked")]
    Revoked(RevocationKind),
    #[error("the token lacks a scope this method needs")]
    InsufficientScope(Vec<String>),
    #[error("the token does not grant this request")]
    Denied(TokenError),
    #[error("no policy allows this method")]
    MethodNotAllowed,
    /// The revocation check cannot vouch for its answer now (a feed staler than its bound, or a
    /// revocation log that failed): fail closed. The reason stays `revocation_feed_stale`, the
    /// message says which.
    #[error("{0}; try again")]
    RevocationFeedStale(&'static str),
    /// Too many DPoP proofs within their lifetime to remember another: no verdict; try again.
    #[error("too many DPoP proofs at once to remember another; try again")]
    ProofMemoryFull,
    /// Too many tokens wait for verification: no verdict on this one; try again.
    #[error("too many calls are waiting for their tokens to be verified; try again")]
    Overloaded,
}

impl GuardError {
    /// A token that could not be verified at all (not a verdict on it).
    pub(crate) fn unverified(e: TokenError) -> GuardError {
        match e {
            TokenError::Overloaded => GuardError::Overloaded,
            e => GuardError::InvalidToken(e),
        }
    }

    /// The reason, as `ErrorInfo.reason`: the RFC 6750 error code, or the guard's own for a
    /// method no rule opens and a stale feed.
    pub fn reason(&self) -> &'static str {
        match self {
            GuardError::MissingToken | GuardError::MalformedHeader => {
                ErrorCode::InvalidRequest.as_str()
            }
            GuardError::InvalidToken(_) | GuardError::Revoked(_) | GuardError::WrongCertificate => {
                ErrorCode::InvalidToken.as_str()
            }
            GuardError::InvalidDpopProof(_) => ErrorCode::InvalidDpopProof.as_str(),
            GuardError::InsufficientScope(_) | GuardError::Denied(_) => {
                ErrorCode::InsufficientScope.as_str()
            }
            GuardError::MethodNotAllowed => "method_not_allowed",
            GuardError::RevocationFeedStale(_) => "revocation_feed_stale",
            GuardError::Overloaded | GuardError::ProofMemoryFull => "overloaded",
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
            GuardError::InvalidDpopProof(_) => "dpop",
            GuardError::WrongCertificate => "certificate",
            GuardError::InsufficientScope(_) => "scope",
            GuardError::MethodNotAllowed => "no_policy",
            GuardError::RevocationFeedStale(_) => "stale",
            GuardError::Overloaded => "overloaded",
            GuardError::ProofMemoryFull => "dpop_memory",
        }
    }

    fn kind(&self) -> Kind {
        match self {
            GuardError::MissingToken
            | GuardError::MalformedHeader
            | GuardError::InvalidToken(_)
            | GuardError::InvalidDpopProof(_)
            | GuardError::WrongCertificate
            | GuardError::Revoked(_) => Kind::Unauthenticated,
            GuardError::InsufficientScope(_)
            | GuardError::Denied(_)
            | GuardError::MethodNotAllowed => Kind::PermissionDenied,
            GuardError::RevocationFeedStale(_)
            | GuardError::Overloaded
            | GuardError::ProofMemoryFull => Kind::Unavailable,
        }
    }

    pub fn code(&self) -> Code {
        writ_proto::refusal::grpc_code(self.kind())
    }

    pub fn to_status(&self) -> Status {
        writ_proto::refusal::status(self)
    }
}

impl Refuse for GuardError {
    fn refusal(&self) -> Refusal {
        let refusal = Refusal::new(self.kind(), ERROR_DOMAIN, self.reason(), self.to_string())
            .with("cause", self.cause());
        match self {
            // What the method needs is the service's policy, not the caller's secret.
            GuardError::InsufficientScope(scopes) => refusal.with("scope", scopes.join(" ")),
            _ => refusal,
        }
    }
}

impl From<GuardError> for Status {
    fn from(e: GuardError) -> Status {
        e.to_status()
    }
}
