//! The exchange's one error enum. Each variant is an RFC 6749 / RFC 8693 error code (or a server
//! failure); the STS maps them to gRPC statuses and HTTP responses in one place each.
//! Descriptions are fixed strings: never a secret, never token contents.

use writ_token::{RevocationKind, TokenError};
use writ_vocabulary::{ErrorCode, Kind, Refusal, Refuse};

/// Which token of the request a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    Subject,
    Actor,
}

impl TokenRole {
    pub fn name(self) -> &'static str {
        match self {
            TokenRole::Subject => "subject_token",
            TokenRole::Actor => "actor_token",
        }
    }
}

/// Why a subject or actor token was not accepted. The name ([`Cause::name`]) is stable and
/// machine-readable: the STS reports it in `google.rpc.ErrorInfo.metadata["cause"]` and in the
/// audit log, alongside the RFC error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Its issuer is not trusted, or it is signed by a key the issuer does not publish.
    UntrustedIssuer,
    Expired,
    NotYetValid,
    /// A revocation (token, grant, subject, client, Biscuit block or key) applies to it.
    Revoked(RevocationKind),
    /// It is not what its `*_token_type` says (a Biscuit sent as a JWT, or the reverse).
    TypeMismatch,
    /// Its `*_token_type` is one the STS never exchanges (refresh tokens, ID tokens, SAML).
    UnsupportedType,
    /// The subject token is neither addressed to the calling client (nor to the STS on its
    /// behalf) nor issued to it.
    NotForCaller,
    /// The actor token was not issued to the calling client.
    ActorNotCaller,
    /// The actor token speaks for someone else (it is delegated, or an STS token), or comes
    /// from an issuer that does not authenticate Writ's clients.
    ActorDelegated,
    /// The subject token's `may_act` does not name the actor.
    MayAct,
    /// The delegation chain would grow past the policy's maximum depth.
    ChainTooDeep,
    /// An attenuated Biscuit can only be narrowed further by appending a block: its checks
    /// cannot be carried into a newly minted token faithfully.
    Attenuated,
    /// Anything else the verifier refused (signature, structure, claims...), by the verifier's
    /// reason (`TokenError::reason`).
    Invalid(&'static str),
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::UntrustedIssuer => "untrusted_issuer",
            Cause::Expired => "expired",
            Cause::NotYetValid => "not_yet_valid",
            Cause::Revoked(_) => "revoked",
            Cause::TypeMismatch => "type_mismatch",
            Cause::UnsupportedType => "unsupported_token_type",
            Cause::NotForCaller => "not_for_caller",
            Cause::ActorNotCaller => "actor_not_caller",
            Cause::ActorDelegated => "actor_not_self",
            Cause::MayAct => "may_act",
            Cause::ChainTooDeep => "chain_too_deep",
            Cause::Attenuated => "attenuated",
            Cause::Invalid(reason) => reason,
        }
    }

    fn description(self) -> &'static str {
        match self {
            Cause::UntrustedIssuer => "the token is not from a trusted issuer",
            Cause::Expired => "the token has expired",
            Cause::NotYetValid => "the token is not valid yet",
            Cause::Revoked(_) => "the token has been revoked",
            Cause::TypeMismatch => "the token is not of the type its token_type names",
            Cause::UnsupportedType => {
                "the token type is not exchangeable (JWT access tokens and Biscuits only)"
            }
            Cause::NotForCaller => "the subject token is not addressed to the calling client",
            Cause::ActorNotCaller => "the actor token was not issued to the calling client",
            Cause::ActorDelegated => {
                "the actor token must be the caller's own token from the authorization server, delegating nothing"
            }
            Cause::MayAct => "the subject token's may_act does not allow this actor",
            Cause::ChainTooDeep => "the delegation chain would exceed its maximum depth",
            Cause::Attenuated => {
                "an attenuated Biscuit can only be narrowed to a Biscuit, without delegation"
            }
            Cause::Invalid(_) => "the token is not valid",
        }
    }
}

impl From<TokenError> for Cause {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::WrongIssuer | TokenError::UnknownKey => Cause::UntrustedIssuer,
            TokenError::Expired => Cause::Expired,
            TokenError::NotYetValid => Cause::NotYetValid,
            other => Cause::Invalid(other.reason()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// A missing, repeated, malformed or unsupported parameter.
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// The subject or actor token is invalid or unacceptable. RFC 8693 section 2.2.2 makes this
    /// `invalid_request`; the cause says which rule refused it.
    #[error("invalid_request: {role:?} refused ({})", cause.name())]
    Rejected { role: TokenRole, cause: Cause },
    /// Client authentication failed, or none was given. One message for every cause.
    #[error("invalid_client: client authentication failed")]
    InvalidClient,
    /// The client has no exchange policy at all.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(&'static str),
    #[error("unsupported_grant_type: the grant type is not supported")]
    UnsupportedGrantType,
    #[error("invalid_scope: {0}")]
    InvalidScope(&'static str),
    /// An audience or resource no policy of the client allows (RFC 8693 section 2.2.2).
    #[error("invalid_target: {0}")]
    InvalidTarget(&'static str),
    /// A dependency the decision needs cannot vouch for it now: the revocation feed is staler
    /// than its bound, or the directory cannot be reached. Nothing is issued (fail closed).
    #[error("temporarily_unavailable: {0}")]
    Unavailable(&'static str),
    #[error("token failure: {0}")]
    Token(#[from] TokenError),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl ExchangeError {
    pub(crate) fn subject(cause: Cause) -> Self {
        ExchangeError::Rejected {
            role: TokenRole::Subject,
            cause,
        }
    }

    pub(crate) fn actor(cause: Cause) -> Self {
        ExchangeError::Rejected {
            role: TokenRole::Actor,
            cause,
        }
    }

    /// The OAuth error code (RFC 6749 section 5.2, RFC 8693 section 2.2.2) and the kind of
    /// refusal.
    fn classify(&self) -> (Kind, ErrorCode) {
        match self {
            ExchangeError::InvalidRequest(_) | ExchangeError::Rejected { .. } => {
                (Kind::InvalidArgument, ErrorCode::InvalidRequest)
            }
            ExchangeError::UnsupportedGrantType => {
                (Kind::InvalidArgument, ErrorCode::UnsupportedGrantType)
            }
            ExchangeError::InvalidClient => (Kind::Unauthenticated, ErrorCode::InvalidClient),
            ExchangeError::UnauthorizedClient(_) => {
                (Kind::PermissionDenied, ErrorCode::UnauthorizedClient)
            }
            ExchangeError::InvalidScope(_) => (Kind::PermissionDenied, ErrorCode::InvalidScope),
            ExchangeError::InvalidTarget(_) => (Kind::PermissionDenied, ErrorCode::InvalidTarget),
            ExchangeError::Unavailable(_) => (Kind::Unavailable, ErrorCode::TemporarilyUnavailable),
            ExchangeError::Token(_) | ExchangeError::Internal(_) => {
                (Kind::Internal, ErrorCode::ServerError)
            }
        }
    }

    /// The OAuth error code.
    pub fn oauth_code(&self) -> &'static str {
        self.classify().1.as_str()
    }

    /// For a refused token: which rule refused it (see [`Cause::name`]).
    pub fn cause(&self) -> Option<&'static str> {
        match self {
            ExchangeError::Rejected { cause, .. } => Some(cause.name()),
            _ => None,
        }
    }

    /// A human-readable description without secrets or token contents.
    pub fn description(&self) -> String {
        match self {
            // Key and token-building details stay in the server log.
            ExchangeError::Token(_) | ExchangeError::Internal(_) => {
                "the server could not complete the request".to_owned()
            }
            ExchangeError::Rejected { role, cause } => {
                format!("{}: {}", role.name(), cause.description())
            }
            other => {
                let s = other.to_string();
                s.split_once(": ").map(|(_, d)| d.to_owned()).unwrap_or(s)
            }
        }
    }
}

impl Refuse for ExchangeError {
    /// The RFC code as the reason and, for a refused subject or actor token, the rule that
    /// refused it as `metadata["cause"]`.
    fn refusal(&self) -> Refusal {
        let (kind, code) = self.classify();
        let refusal = Refusal::oauth(kind, code, self.description());
        match self.cause() {
            Some(cause) => refusal.with("cause", cause),
            None => refusal,
        }
    }
}

pub type Result<T, E = ExchangeError> = std::result::Result<T, E>;
