//! The request as RFC 8693 section 2.1 names it, and its parameters checked before any token
//! is looked at.

use writ_token::{MAX_BISCUIT_LEN, MAX_SCOPE_LEN, Scopes, TokenFormat};
use writ_vocabulary::grant_type::TOKEN_EXCHANGE;
use writ_vocabulary::token_type;

use crate::error::{Cause, ExchangeError, Result};

/// Longest identifier (client id, audience, resource) accepted.
pub const MAX_ID_LEN: usize = 128;
/// Most audiences and resources in one request.
pub const MAX_TARGETS: usize = 16;

/// What `Debug` shows of a secret or a token: whether there is one, never what it is.
fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() { "" } else { "<redacted>" }
}

/// RFC 8693 section 2.1, with the RFC's parameter names. Its `Debug` shows no secret or token.
#[derive(Clone, Default)]
pub struct ExchangeRequest {
    pub grant_type: String,
    pub client_id: String,
    pub client_secret: String,
    /// RFC 7521 section 4.2 (`private_key_jwt`).
    pub client_assertion_type: String,
    pub client_assertion: String,
    pub audience: Vec<String>,
    pub resource: Vec<String>,
    pub scope: String,
    pub requested_token_type: String,
    pub subject_token: String,
    pub subject_token_type: String,
    pub actor_token: String,
    pub actor_token_type: String,
}

impl std::fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("client_assertion_type", &self.client_assertion_type)
            .field("client_assertion", &redacted(&self.client_assertion))
            .field("audience", &self.audience)
            .field("resource", &self.resource)
            .field("scope", &self.scope)
            .field("requested_token_type", &self.requested_token_type)
            .field("subject_token", &redacted(&self.subject_token))
            .field("subject_token_type", &self.subject_token_type)
            .field("actor_token", &redacted(&self.actor_token))
            .field("actor_token_type", &self.actor_token_type)
            .finish()
    }
}

/// RFC 8693 section 2.2.1.
#[derive(Clone, PartialEq, Eq)]
pub struct ExchangeResponse {
    pub access_token: String,
    pub issued_token_type: &'static str,
    /// "Bearer".
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

impl std::fmt::Debug for ExchangeResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeResponse")
            .field("access_token", &redacted(&self.access_token))
            .field("issued_token_type", &self.issued_token_type)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// What a `*_token_type` parameter admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PresentedType {
    Jwt,
    Biscuit,
    /// An access token of either form.
    AccessToken,
}

impl PresentedType {
    fn parse(uri: &str) -> Result<PresentedType, Cause> {
        match uri {
            token_type::JWT => Ok(PresentedType::Jwt),
            token_type::ACCESS_TOKEN => Ok(PresentedType::AccessToken),
            token_type::BISCUIT => Ok(PresentedType::Biscuit),
            // Refresh tokens, ID tokens, SAML assertions and anything unknown: never exchanged.
            _ => Err(Cause::UnsupportedType),
        }
    }

    pub(crate) fn admits(self, format: TokenFormat) -> bool {
        matches!(
            (self, format),
            (PresentedType::AccessToken, _)
                | (PresentedType::Jwt, TokenFormat::Jwt)
                | (PresentedType::Biscuit, TokenFormat::Biscuit)
        )
    }
}

/// The parameters of a request, checked: what the rules decide over besides the tokens.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub subject_type: PresentedType,
    pub actor_type: Option<PresentedType>,
    /// The `issued_token_type` to report.
    pub issued_type: &'static str,
    /// Whether a Biscuit was asked for (else a JWT).
    pub biscuit_wanted: bool,
    /// `audience` and `resource` together, sorted, without duplicates; at least one.
    pub targets: Vec<String>,
    pub requested_scope: Scopes,
}

/// Sizes and the grant type: checked before the client is authenticated.
pub(crate) fn check_envelope(req: &ExchangeRequest) -> Result<()> {
    let too_long = req.grant_type.len() > 256
        || req.client_id.len() > MAX_ID_LEN
        || req.client_secret.len() > 1024
        || req.client_assertion_type.len() > 256
        || req.client_assertion.len() > writ_token::MAX_ASSERTION_LEN
        || req.scope.len() > MAX_SCOPE_LEN
        || req.requested_token_type.len() > 256
        || req.subject_token_type.len() > 256
        || req.actor_token_type.len() > 256
        || req.subject_token.len() > MAX_BISCUIT_LEN
        || req.actor_token.len() > MAX_BISCUIT_LEN;
    if too_long {
        return Err(ExchangeError::InvalidRequest("a parameter is too long"));
    }
    match req.grant_type.as_str() {
        TOKEN_EXCHANGE => Ok(()),
        "" => Err(ExchangeError::InvalidRequest("grant_type is required")),
        _ => Err(ExchangeError::UnsupportedGrantType),
    }
}

/// The parameters, before any token is looked at (and after the client is authenticated).
pub(crate) fn params(req: &ExchangeRequest) -> Result<Params> {
    if req.subject_token.is_empty() {
        // Never fall back to the caller's own identity.
        return Err(ExchangeError::InvalidRequest("subject_token is required"));
    }
    if req.subject_token_type.is_empty() {
        return Err(ExchangeError::InvalidRequest(
            "subject_token_type is required",
        ));
    }
    let subject_type =
        PresentedType::parse(&req.subject_token_type).map_err(ExchangeError::subject)?;
    let actor_type = match (req.actor_token.is_empty(), req.actor_token_type.is_empty()) {
        (true, true) => None,
        (false, false) => {
            Some(PresentedType::parse(&req.actor_token_type).map_err(ExchangeError::actor)?)
        }
        (false, true) => {
            return Err(ExchangeError::InvalidRequest(
                "actor_token needs actor_token_type",
            ));
        }
        (true, false) => {
            return Err(ExchangeError::InvalidRequest(
                "actor_token_type without actor_token",
            ));
        }
    };
    let (issued_type, biscuit_wanted) = match req.requested_token_type.as_str() {
        "" | token_type::JWT => (token_type::JWT, false),
        token_type::ACCESS_TOKEN => (token_type::ACCESS_TOKEN, false),
        token_type::BISCUIT => (token_type::BISCUIT, true),
        _ => {
            return Err(ExchangeError::InvalidRequest(
                "requested_token_type is not supported",
            ));
        }
    };
    let targets = targets(req)?;
    let requested_scope =
        Scopes::parse(&req.scope).map_err(|_| ExchangeError::InvalidScope("scope is malformed"))?;
    Ok(Params {
        subject_type,
        actor_type,
        issued_type,
        biscuit_wanted,
        targets,
        requested_scope,
    })
}

/// `audience` and `resource` together, sorted, without duplicates; at least one.
fn targets(req: &ExchangeRequest) -> Result<Vec<String>> {
    if req.audience.len() + req.resource.len() > MAX_TARGETS {
        return Err(ExchangeError::InvalidRequest("too many audiences"));
    }
    let mut targets: Vec<String> = req.audience.iter().chain(&req.resource).cloned().collect();
    targets.sort();
    targets.dedup();
    if targets.is_empty() {
        return Err(ExchangeError::InvalidRequest(
            "audience or resource is required",
        ));
    }
    let valid =
        |t: &str| !t.is_empty() && t.len() <= MAX_ID_LEN && t.bytes().all(|b| b.is_ascii_graphic());
    if !targets.iter().all(|t| valid(t)) {
        return Err(ExchangeError::InvalidTarget("an audience is malformed"));
    }
    Ok(targets)
}
