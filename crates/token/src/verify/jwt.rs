//! The JWT half of [`TokenVerifier`]: compact JWS structure, header policy, key, signature,
//! then the claims.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{TokenFormat, TokenVerifier, VerifiedJws, VerifiedToken};
use crate::claims::AccessClaims;
use crate::error::TokenError;
use crate::jwt::ACCESS_TOKEN_TYP;
use crate::keys::{Algorithm, MAX_KID_LEN, VerificationKey};

impl TokenVerifier {
    /// Verifies a JWT access token: header, key, signature and claims.
    pub fn verify_jwt(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let jws = self.check_jws(token, true)?;
        let claims: AccessClaims = serde_json::from_slice(&jws.payload)
            .map_err(|_| TokenError::BadClaims("claims are not a valid RFC 9068 claim set"))?;
        self.check_claims(&claims)?;
        Ok(VerifiedToken {
            format: TokenFormat::Jwt,
            holds_until: claims.exp,
            claims,
            key_id: jws.key_id,
            revocation_ids: Vec::new(),
        })
    }

    /// Checks a compact JWS's structure, header policy, key and signature, but neither `typ`
    /// nor the payload. For conformance vectors; access tokens go through
    /// [`TokenVerifier::verify_jwt`].
    pub fn verify_jws(&self, token: &str) -> Result<VerifiedJws, TokenError> {
        self.check_jws(token, false)
    }

    fn check_jws(&self, token: &str, access_token: bool) -> Result<VerifiedJws, TokenError> {
        if token.len() > self.config.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("a JWS has exactly three segments"));
        };
        let b64url = |seg: &str| {
            seg.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if h.is_empty() || s.is_empty() || !b64url(h) || !b64url(p) || !b64url(s) {
            return Err(TokenError::Malformed("segments are not base64url"));
        }

        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Malformed("header is not a JOSE header Writ accepts"))?;
        if access_token {
            let typ_ok = header.typ.as_deref().is_some_and(|t| {
                t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP)
                    || t.eq_ignore_ascii_case("application/at+jwt")
            });
            if !typ_ok {
                return Err(TokenError::WrongType);
            }
        }
        // Keys named by the token are never fetched nor trusted; extensions are not understood.
        if header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
            || header.cty.is_some()
            || header.enc.is_some()
            || header.zip.is_some()
            || header.extras.inner().contains_key("b64")
        {
            return Err(TokenError::ForbiddenHeader);
        }
        let alg = Algorithm::from_jose(header.alg)
            .filter(|a| self.config.algorithms.contains(a))
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        if kid.len() > MAX_KID_LEN {
            return Err(TokenError::UnknownKey);
        }
        let keys = self.keys();
        let key: &VerificationKey = keys.jwt_key(kid).ok_or(TokenError::UnknownKey)?;
        if key.alg() != alg {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let signed_len = h.len() + 1 + p.len();
        if !key.verify_signature(&token.as_bytes()[..signed_len], s) {
            return Err(TokenError::BadSignature);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
        Ok(VerifiedJws {
            key_id: kid.to_owned(),
            header,
            payload,
        })
    }
}
