//! Minting RFC 9068 JWT access tokens. Parsing and signature checks live in [`crate::verify`],
//! on top of the `jsonwebtoken` crate.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::claims::AccessClaims;
use crate::error::TokenError;
use crate::keys::SigningKey;

/// The `typ` of a JWT access token (RFC 9068 section 2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Signs `claims` as a compact JWS with header `{"alg", "typ": "at+jwt", "kid"}`.
pub fn encode_access_token(key: &SigningKey, claims: &AccessClaims) -> Result<String, TokenError> {
    let header = serde_json::to_vec(&Header {
        alg: key.alg().name(),
        typ: ACCESS_TOKEN_TYP,
        kid: key.kid(),
    })
    .map_err(|_| TokenError::Build("header"))?;
    let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Build("claims"))?;

    let mut token = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 100);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}
