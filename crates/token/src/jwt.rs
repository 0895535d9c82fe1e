//! Minting RFC 9068 JWT access tokens. Parsing and signature checks live in [`crate::verify`],
//! on top of the `jsonwebtoken` crate.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::claims::AccessClaims;
use crate::error::TokenError;
use crate::keys::{Algorithm, SigningKey};

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
    encode_jwt(key, ACCESS_TOKEN_TYP, claims)
}

/// The `typ` of an OpenID Connect ID token: a plain JWT, so it can never pass for an access
/// token (whose verifier requires `at+jwt`).
pub const ID_TOKEN_TYP: &str = "JWT";

/// Signs an OpenID Connect ID token (typ `JWT`).
pub fn encode_id_token(key: &SigningKey, claims: &IdTokenClaims) -> Result<String, TokenError> {
    encode_jwt(key, ID_TOKEN_TYP, claims)
}

/// Signs `claims` as a compact JWS with header `{"alg", "typ", "kid"}`.
pub(crate) fn encode_jwt(
    key: &SigningKey,
    typ: &str,
    claims: &impl Serialize,
) -> Result<String, TokenError> {
    let header = serde_json::to_vec(&Header {
        alg: key.alg().name(),
        typ,
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

/// The `typ` of an OpenID Connect Back-Channel Logout token (section 2.4).
pub const LOGOUT_TOKEN_TYP: &str = "logout+jwt";

/// Signs a Back-Channel Logout token (typ `logout+jwt`).
pub fn encode_logout_token(
    key: &SigningKey,
    claims: &LogoutTokenClaims,
) -> Result<String, TokenError> {
    encode_jwt(key, LOGOUT_TOKEN_TYP, claims)
}

/// OpenID Connect Back-Channel Logout section 2.4: the session that ended, for one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LogoutTokenClaims {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub sub: String,
    pub sid: String,
    /// `{"http://schemas.openid.net/event/backchannel-logout": {}}`.
    pub events: serde_json::Value,
}

/// The event a logout token carries.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// OpenID Connect Core section 2: what an ID token says of a sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    /// The client it is for.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// When the user last authenticated (section 2).
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Section 3.1.3.6: the left half of the access token's hash, in the hash of `alg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    pub acr: String,
    pub amr: Vec<String>,
    /// The sign-in session (OpenID Connect Front- and Back-Channel Logout).
    pub sid: String,
    /// The authorized party: the client.
    pub azp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
}

/// `at_hash` (and `c_hash`) of OpenID Connect Core section 3.1.3.6: the left half of the hash
/// of `value`'s ASCII octets, base64url. The hash is the one of the ID token's `alg`: SHA-256
/// for ES256, SHA-512 for EdDSA over Ed25519 (as the OpenID Foundation's libraries compute it).
pub fn token_hash(alg: Algorithm, value: &str) -> String {
    use sha2::Digest;
    let digest: Vec<u8> = match alg {
        Algorithm::ES256 | Algorithm::RS256 | Algorithm::PS256 => {
            sha2::Sha256::digest(value.as_bytes()).to_vec()
        }
        Algorithm::EdDSA => sha2::Sha512::digest(value.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}
