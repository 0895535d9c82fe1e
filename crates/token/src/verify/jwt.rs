//! The JWT half of [`TokenVerifier`]: compact JWS structure, header policy, key, signature,
//! then the claims.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{TokenFormat, TokenVerifier, VerifiedJws, VerifiedToken};
use crate::claims::AccessClaims;
use crate::error::TokenError;
use crate::jwt::ACCESS_TOKEN_TYP;
use crate::keys::{Algorithm, KeySet, MAX_KID_LEN, VerificationKey};

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
        let typ = if access_token {
            Typ::AccessToken
        } else {
            Typ::Unchecked
        };
        check_jws(
            token,
            &self.keys(),
            &self.config.algorithms,
            self.config.max_token_bytes,
            typ,
        )
    }
}

/// Most keys an assertion without a `kid` is tried against (a party registers at most ten;
/// a fetched set may hold more, and each try is a signature check).
const MAX_UNNAMED_KEYS_TRIED: usize = 10;

/// What a JWS's `typ` header must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Typ {
    /// `at+jwt` (RFC 9068 section 2.1).
    AccessToken,
    /// Anything: conformance vectors.
    Unchecked,
    /// An RFC 7523 assertion: absent, `JWT`, or `client-authentication+jwt`
    /// (draft-ietf-oauth-rfc7523bis), so that an access token or a logout token does not pass
    /// for one (an ID token's `typ` is `JWT` too: it has no `jti`, and is signed by Writ's keys,
    /// not the party's). The `kid` may be absent: the party's keys of the header's algorithm
    /// are tried.
    Assertion,
    /// A workload identity token from a trusted issuer (RFC 7523 section 2.1): absent, `JWT`
    /// or `JOSE`; the `kid` may be absent, as for an assertion.
    Workload,
}

/// A compact JWS's structure, header policy, key and signature, against `keys`.
pub(crate) fn check_jws(
    token: &str,
    keys: &KeySet,
    algorithms: &[Algorithm],
    max_bytes: usize,
    typ: Typ,
) -> Result<VerifiedJws, TokenError> {
    if token.len() > max_bytes {
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
    let is = |t: &str, name: &str| {
        t.eq_ignore_ascii_case(name)
            || t.strip_prefix("application/")
                .is_some_and(|rest| rest.eq_ignore_ascii_case(name))
    };
    let typ_ok = match (typ, header.typ.as_deref()) {
        (Typ::Unchecked, _) => true,
        (Typ::AccessToken, Some(t)) => is(t, ACCESS_TOKEN_TYP),
        (Typ::AccessToken, None) => false,
        (Typ::Assertion, None) => true,
        (Typ::Assertion, Some(t)) => is(t, "JWT") || is(t, "client-authentication+jwt"),
        // A workload identity token: Kubernetes sets none, SPIFFE allows `JWT` or `JOSE`.
        (Typ::Workload, None) => true,
        (Typ::Workload, Some(t)) => is(t, "JWT") || is(t, "JOSE"),
    };
    if !typ_ok {
        return Err(TokenError::WrongType);
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
        .filter(|a| algorithms.contains(a))
        .ok_or(TokenError::AlgorithmNotAllowed)?;
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    let key: &VerificationKey = match header.kid.as_deref() {
        Some(kid) if kid.len() > MAX_KID_LEN => return Err(TokenError::UnknownKey),
        Some(kid) => {
            let key = keys.jwt_key(kid).ok_or(TokenError::UnknownKey)?;
            if key.alg() != alg {
                return Err(TokenError::AlgorithmNotAllowed);
            }
            if !key.verify_signature(signed, s) {
                return Err(TokenError::BadSignature);
            }
            key
        }
        // Only an assertion may leave the key unnamed (a party's own keys, a handful): the
        // first of them with the header's algorithm whose signature holds. None: as if it
        // named a key not known (yet).
        None if matches!(typ, Typ::Assertion | Typ::Workload) => keys
            .jwt_keys()
            .filter(|k| k.alg() == alg)
            .take(MAX_UNNAMED_KEYS_TRIED)
            .find(|k| k.verify_signature(signed, s))
            .ok_or(TokenError::UnknownKey)?,
        None => return Err(TokenError::UnknownKey),
    };
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
    Ok(VerifiedJws {
        key_id: key.kid().to_owned(),
        header,
        payload,
    })
}
