//! The engine's one error enum. Each variant is an RFC 6749 / RFC 8693 error code or an
//! administrative outcome; transports map them to gRPC statuses and HTTP responses in one place
//! each. Descriptions are fixed strings: never a secret, never token contents.

use writ_store::StoreError;
use writ_token::TokenError;
use writ_vocabulary::{ErrorCode, Kind, Refusal, Refuse};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// Client authentication failed. One message for every cause (unknown client, wrong secret,
    /// disabled client), so the response does not tell which.
    #[error("invalid_client: client authentication failed")]
    InvalidClient,
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(&'static str),
    #[error("unsupported_grant_type: the grant type is not supported")]
    UnsupportedGrantType,
    #[error("invalid_scope: {0}")]
    InvalidScope(&'static str),
    #[error("invalid_target: {0}")]
    InvalidTarget(&'static str),
    #[error("access_denied: {0}")]
    AccessDenied(&'static str),
    /// The admin credential is missing or wrong.
    #[error("unauthenticated: a valid admin credential is required")]
    AdminUnauthenticated,
    /// An admin token that does not carry the scope the admin call needs (or a call only the
    /// master credential may make).
    #[error("insufficient_scope: {0}")]
    AdminForbidden(&'static str),
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("already exists: {0}")]
    AlreadyExists(&'static str),
    /// A concurrent change won; the caller may retry.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("storage failure")]
    Storage(#[from] StoreError),
    #[error("token failure: {0}")]
    Token(#[from] TokenError),
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// Too many failed authentications for this client, username or source: no credential is
    /// checked until the lockout ends.
    #[error("temporarily_unavailable: too many failed attempts; retry in {0} s")]
    Throttled(i64),
    /// Something a decision depends on (the revocation feed) cannot vouch for it now: retry.
    #[error("temporarily_unavailable: {0}")]
    Unavailable(&'static str),
    #[error("unsupported_response_type: response_type must be code")]
    UnsupportedResponseType,
    #[error("request_not_supported: request objects are not supported")]
    RequestNotSupported,
    #[error("invalid_request_uri: {0}")]
    InvalidRequestUri(&'static str),
    /// `prompt=none`, and no live session (OpenID Connect Core section 3.1.2.6).
    #[error("login_required: the user is not signed in")]
    LoginRequired,
    /// `prompt=none`, and the user has not consented yet.
    #[error("consent_required: the user has not consented")]
    ConsentRequired,
    /// A bearer token at a resource of this server (UserInfo) that is invalid, expired or
    /// revoked (RFC 6750 section 3.1).
    #[error("invalid_token: {0}")]
    InvalidToken(&'static str),
    /// A valid bearer token without the scope a resource needs (RFC 6750 section 3.1).
    #[error("insufficient_scope: {0}")]
    InsufficientScope(&'static str),
    /// RFC 8628 section 3.5: the user has not answered yet; poll again.
    #[error("authorization_pending: the user has not answered yet")]
    AuthorizationPending,
    /// RFC 8628 section 3.5: polled too often; the interval grew by 5 seconds.
    #[error("slow_down: poll less often")]
    SlowDown,
    /// RFC 8628 section 3.5: the device code expired before the user answered.
    #[error("expired_token: the device code has expired")]
    ExpiredToken,
    /// A DPoP proof (RFC 9449) that is malformed, not for this request, too old, replayed, or
    /// not by the key a refresh token is bound to.
    #[error("invalid_dpop_proof: {0}")]
    InvalidDpopProof(&'static str),
    /// RFC 9449 section 8: a server nonce is required; the transport sends one (`DPoP-Nonce`).
    #[error("use_dpop_nonce: a fresh DPoP nonce from this server is required")]
    UseDpopNonce,
    /// Too many password checks at once: retry.
    #[error("temporarily_unavailable: too many password checks at once; retry")]
    Busy,
}

impl Error {
    /// The OAuth error code (RFC 6749 section 5.2 and extensions) and the kind of refusal.
    fn classify(&self) -> (Kind, ErrorCode) {
        match self {
            Error::InvalidRequest(_) => (Kind::InvalidArgument, ErrorCode::InvalidRequest),
            Error::UnsupportedGrantType => (Kind::InvalidArgument, ErrorCode::UnsupportedGrantType),
            Error::InvalidClient => (Kind::Unauthenticated, ErrorCode::InvalidClient),
            Error::AdminUnauthenticated => (Kind::Unauthenticated, ErrorCode::AccessDenied),
            Error::AdminForbidden(_) => (Kind::PermissionDenied, ErrorCode::InsufficientScope),
            Error::InvalidGrant(_) => (Kind::PermissionDenied, ErrorCode::InvalidGrant),
            Error::UnauthorizedClient(_) => (Kind::PermissionDenied, ErrorCode::UnauthorizedClient),
            Error::InvalidScope(_) => (Kind::PermissionDenied, ErrorCode::InvalidScope),
            Error::InvalidTarget(_) => (Kind::PermissionDenied, ErrorCode::InvalidTarget),
            Error::AccessDenied(_) => (Kind::PermissionDenied, ErrorCode::AccessDenied),
            Error::UnsupportedResponseType => {
                (Kind::InvalidArgument, ErrorCode::UnsupportedResponseType)
            }
            Error::RequestNotSupported => (Kind::InvalidArgument, ErrorCode::RequestNotSupported),
            Error::InvalidRequestUri(_) => (Kind::InvalidArgument, ErrorCode::InvalidRequestUri),
            Error::LoginRequired => (Kind::PermissionDenied, ErrorCode::LoginRequired),
            // Not refusals of the client: answers to poll again (gRPC FAILED_PRECONDITION).
            Error::AuthorizationPending => (Kind::Pending, ErrorCode::AuthorizationPending),
            Error::SlowDown => (Kind::Pending, ErrorCode::SlowDown),
            Error::ExpiredToken => (Kind::PermissionDenied, ErrorCode::ExpiredToken),
            Error::InvalidDpopProof(_) => (Kind::InvalidArgument, ErrorCode::InvalidDpopProof),
            Error::UseDpopNonce => (Kind::InvalidArgument, ErrorCode::UseDpopNonce),
            Error::ConsentRequired => (Kind::PermissionDenied, ErrorCode::ConsentRequired),
            Error::InvalidToken(_) => (Kind::Unauthenticated, ErrorCode::InvalidToken),
            Error::InsufficientScope(_) => (Kind::PermissionDenied, ErrorCode::InsufficientScope),
            Error::NotFound(_) => (Kind::NotFound, ErrorCode::InvalidRequest),
            Error::AlreadyExists(_) => (Kind::AlreadyExists, ErrorCode::InvalidRequest),
            Error::Conflict(_) => (Kind::Conflict, ErrorCode::InvalidRequest),
            // The database out of reach (restarting, say): a retry will do.
            Error::Storage(StoreError::Unavailable(_)) => {
                (Kind::Unavailable, ErrorCode::TemporarilyUnavailable)
            }
            Error::Storage(_) => (Kind::Unavailable, ErrorCode::ServerError),
            Error::Throttled(_) => (Kind::Exhausted, ErrorCode::TemporarilyUnavailable),
            Error::Busy | Error::Unavailable(_) => {
                (Kind::Unavailable, ErrorCode::TemporarilyUnavailable)
            }
            Error::Token(TokenError::Overloaded) => {
                (Kind::Unavailable, ErrorCode::TemporarilyUnavailable)
            }
            Error::Token(_) | Error::Internal(_) => (Kind::Internal, ErrorCode::ServerError),
        }
    }

    /// How an audit record tells this answer: the server's own failure is not a refusal of the
    /// caller.
    pub fn audit_outcome(&self) -> writ_audit::Outcome {
        match self {
            Error::Storage(_)
            | Error::Token(_)
            | Error::Internal(_)
            | Error::Busy
            | Error::Unavailable(_) => writ_audit::Outcome::Failed,
            _ => writ_audit::Outcome::Refused,
        }
    }

    /// The OAuth error code for responses.
    pub fn oauth_code(&self) -> &'static str {
        self.classify().1.as_str()
    }

    /// A human-readable description without secrets or token contents.
    pub fn description(&self) -> String {
        match self {
            Error::Storage(StoreError::Unavailable(_)) => {
                "the store cannot be reached; retry".to_owned()
            }
            // Storage and token-building details stay in the server log.
            Error::Storage(_) | Error::Token(_) | Error::Internal(_) => {
                "the server could not complete the request".to_owned()
            }
            other => {
                let s = other.to_string();
                s.split_once(": ").map(|(_, d)| d.to_owned()).unwrap_or(s)
            }
        }
    }
}

impl Refuse for Error {
    fn refusal(&self) -> Refusal {
        let (kind, code) = self.classify();
        let refusal = Refusal::oauth(kind, code, self.description());
        if matches!(self, Error::Storage(_)) {
            refusal.logged()
        } else {
            refusal
        }
    }
}

/// The audit log could not take a record: the operation is not acknowledged (retry).
impl From<writ_audit::AuditError> for Error {
    fn from(e: writ_audit::AuditError) -> Self {
        Error::Storage(StoreError::Unavailable(e.to_string()))
    }
}

impl From<writ_keyring::KeyringError> for Error {
    fn from(e: writ_keyring::KeyringError) -> Self {
        use writ_keyring::KeyringError as K;
        match e {
            K::InvalidRequest(m) => Error::InvalidRequest(m),
            K::Conflict(m) => Error::Conflict(m),
            K::Storage(e) => Error::Storage(e),
            K::Token(e) => Error::Token(e),
            K::Internal(m) | K::Sealed(m) => Error::Internal(m),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
