//! Why a token was refused. Messages name the rule that failed, never the token's contents.

/// Every way minting, attenuating or verifying a token can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token is larger than allowed")]
    TooLarge,
    #[error("token algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("token type is not an access token")]
    WrongType,
    #[error("token header names a key or an extension Writ does not accept")]
    ForbiddenHeader,
    #[error("token is signed by an unknown key")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token claims are malformed: {0}")]
    BadClaims(&'static str),
    #[error("token issuer is not trusted")]
    WrongIssuer,
    #[error("token audience does not include this service")]
    WrongAudience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token lifetime is longer than allowed")]
    LifetimeTooLong,
    #[error("token does not grant this request")]
    Denied,
    #[error("token authorization exceeded its run limits")]
    RunLimit,
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("invalid attenuation: {0}")]
    InvalidAttenuation(&'static str),
    #[error("token could not be built: {0}")]
    Build(&'static str),
    /// Too many tokens are waiting to be verified: not a verdict on this one; try again.
    #[error("too many tokens are waiting to be verified; try again")]
    Overloaded,
}

impl TokenError {
    /// A short, stable, machine-readable reason, for status details and audit logs.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::TooLarge => "too_large",
            TokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
            TokenError::WrongType => "wrong_type",
            TokenError::ForbiddenHeader => "forbidden_header",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::BadClaims(_) => "bad_claims",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::LifetimeTooLong => "lifetime_too_long",
            TokenError::Denied => "denied",
            TokenError::RunLimit => "run_limit",
            TokenError::InvalidKey(_) => "invalid_key",
            TokenError::InvalidAttenuation(_) => "invalid_attenuation",
            TokenError::Build(_) => "build",
            TokenError::Overloaded => "overloaded",
        }
    }
}
