//! A refusal, described once for every transport.

use std::fmt;

/// `google.rpc.ErrorInfo.domain` of OAuth refusals (the authorization server, the STS); the
/// reason is the RFC error code.
pub const OAUTH_ERROR_DOMAIN: &str = "oauth2.writ.dev";

/// The OAuth error codes Writ answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // RFC 6749 section 5.2.
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    // RFC 6749 section 4.1.2.1.
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    // RFC 7009 section 2.2.1.
    UnsupportedTokenType,
    // RFC 8707 section 2 (and RFC 8693 section 2.2.2).
    InvalidTarget,
    // RFC 6750 section 3.1.
    InvalidToken,
    InsufficientScope,
    // RFC 6749 section 4.1.2.1.
    UnsupportedResponseType,
    // OpenID Connect Core section 3.1.2.6.
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    // RFC 9126 section 2.3.
    InvalidRequestUri,
    // OpenID Connect Core section 3.1.2.6 (request objects are not supported).
    RequestNotSupported,
    // RFC 8628 section 3.5.
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    // RFC 9449 sections 5 and 8.
    InvalidDpopProof,
    UseDpopNonce,
}

impl ErrorCode {
    /// The code as the RFCs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::InteractionRequired => "interaction_required",
            ErrorCode::InvalidRequestUri => "invalid_request_uri",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of refusal it is, whatever the transport: decides the gRPC code and the HTTP
/// status (`writ_proto::refusal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The request is malformed or breaks a rule (gRPC INVALID_ARGUMENT, HTTP 400).
    InvalidArgument,
    /// The caller's credential was missing or wrong (UNAUTHENTICATED, 401).
    Unauthenticated,
    /// The caller is known but not allowed this (PERMISSION_DENIED, 400 for OAuth endpoints as
    /// RFC 6749 section 5.2 has it, 403 for resources).
    PermissionDenied,
    /// NOT_FOUND, 404.
    NotFound,
    /// What was asked for is not offered here, as asked (UNIMPLEMENTED; over HTTP, a method an
    /// endpoint does not take: 405).
    Unimplemented,
    /// ALREADY_EXISTS, 409.
    AlreadyExists,
    /// A concurrent change won; retry (ABORTED, 409).
    Conflict,
    /// A cursor or position outside what exists (OUT_OF_RANGE, 400).
    OutOfRange,
    /// The request is larger than allowed (RESOURCE_EXHAUSTED, 413).
    TooLarge,
    /// The caller went too slow or too fast (RESOURCE_EXHAUSTED, 429).
    Exhausted,
    /// Something the decision depends on cannot vouch for it now; retry later (UNAVAILABLE,
    /// 503).
    Unavailable,
    /// The server failed (INTERNAL, 500). Its detail goes to the server log only.
    Internal,
    /// Not yet: what the caller waits for has not happened; ask again later (FAILED_PRECONDITION;
    /// 400 at an OAuth endpoint, as RFC 8628 section 3.5 has it).
    Pending,
}

/// One refusal, as every transport reports it: the kind, the error domain and reason
/// (`google.rpc.ErrorInfo`, and `error` in RFC 6749 JSON), a description that never holds a
/// secret or token contents, and machine-readable metadata (such as the `cause`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: Kind,
    pub domain: &'static str,
    pub reason: &'static str,
    pub description: String,
    pub metadata: Vec<(&'static str, String)>,
    /// Whether the error's detail (its `Display`) goes to the server log: the server, or
    /// something it depends on, failed. Set for [`Kind::Internal`], and by [`Refusal::logged`].
    pub log_detail: bool,
}

impl Refusal {
    /// An OAuth refusal: `reason` is the RFC error code, the domain [`OAUTH_ERROR_DOMAIN`].
    pub fn oauth(kind: Kind, code: ErrorCode, description: impl Into<String>) -> Self {
        Refusal::new(kind, OAUTH_ERROR_DOMAIN, code.as_str(), description)
    }

    /// A refusal in another domain, with a reason of that domain's own.
    pub fn new(
        kind: Kind,
        domain: &'static str,
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Refusal {
            kind,
            domain,
            reason,
            description: description.into(),
            metadata: Vec::new(),
            log_detail: kind == Kind::Internal,
        }
    }

    /// Logs the error's detail too (a storage failure answered as UNAVAILABLE, say).
    pub fn logged(mut self) -> Self {
        self.log_detail = true;
        self
    }

    /// Adds `metadata[key] = value`.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.metadata.push((key, value.into()));
        self
    }
}

/// A domain error that refuses a request. Its `Display` is the detail for the server log; the
/// [`Refusal`] is what the caller sees.
pub trait Refuse: fmt::Display {
    fn refusal(&self) -> Refusal;
}

impl<T: Refuse + ?Sized> Refuse for &T {
    fn refusal(&self) -> Refusal {
        (**self).refusal()
    }
}

impl Refuse for Refusal {
    fn refusal(&self) -> Refusal {
        self.clone()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_spelled_as_the_rfcs_spell_them() {
        assert_eq!(ErrorCode::InvalidRequest.as_str(), "invalid_request");
        assert_eq!(ErrorCode::InvalidTarget.to_string(), "invalid_target");
        assert_eq!(
            ErrorCode::TemporarilyUnavailable.as_str(),
            "temporarily_unavailable"
        );
        let r = Refusal::oauth(Kind::InvalidArgument, ErrorCode::InvalidScope, "too wide")
            .with("cause", "scope");
        assert_eq!(r.domain, OAUTH_ERROR_DOMAIN);
        assert_eq!(r.reason, "invalid_scope");
        assert_eq!(r.metadata, vec![("cause", "scope".to_owned())]);
    }
}
