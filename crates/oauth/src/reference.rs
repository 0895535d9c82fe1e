//! Reference tokens: the phantom token pattern's outside half.
//!
//! A client whose format is `reference` is given an opaque token instead of its JWT: the JWT,
//! sealed ([`crate::sealed`]) under a key derived from the key-encryption key for reference
//! tokens alone. It reveals nothing to whoever holds it (no subject, scope or audience), no
//! service inside verifies it, and nothing is written to issue it: any replica opens it. A
//! gateway trades it for the JWT inside ([`crate::gateway`]); introspection, revocation and
//! UserInfo take it wherever they take the JWT, and revoking either revokes both (one `jti`).

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use writ_token::{TokenError, VerifiedToken};

use crate::AuthorizationServer;
use crate::sealed::Sealer;

/// What every reference token starts with: tells it from a JWT (no dot) and from a Biscuit (a
/// Biscuit's first byte is a protobuf tag, never these characters), and lets secret scanners
/// find one.
pub const REFERENCE_PREFIX: &str = "writ_ref_";

/// Binds a sealed reference token to its purpose and format.
const AAD: &[u8] = b"writ/reference-token/v1";

/// Seals JWTs into reference tokens and opens them.
#[derive(Debug)]
pub(crate) struct ReferenceSealer(Sealer);

impl ReferenceSealer {
    /// The purpose reference tokens' key is derived from the key-encryption key for.
    pub(crate) const PURPOSE: &'static [u8] = b"writ reference tokens v1";

    pub(crate) fn new(secret: &[u8]) -> Self {
        ReferenceSealer(Sealer::new(secret, AAD))
    }

    /// The reference token for `jwt`; `None` if it would be longer than any token this server
    /// takes back ([`crate::MAX_TOKEN_LEN`]).
    pub(crate) fn seal(&self, jwt: &str) -> Option<String> {
        let sealed = self.0.seal(jwt.as_bytes())?;
        let token = format!("{REFERENCE_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed));
        (token.len() <= crate::MAX_TOKEN_LEN).then_some(token)
    }

    /// The JWT behind `token`, if it is a reference token this server's secret sealed, unchanged.
    pub(crate) fn open(&self, token: &str) -> Option<String> {
        if token.len() > crate::MAX_TOKEN_LEN {
            return None;
        }
        let body = token.strip_prefix(REFERENCE_PREFIX)?;
        let plain = self.0.open(URL_SAFE_NO_PAD.decode(body).ok()?)?;
        String::from_utf8(plain).ok()
    }
}

/// Whether `token` has the form of a reference token (not whether it opens).
pub fn is_reference(token: &str) -> bool {
    token.starts_with(REFERENCE_PREFIX)
}

impl AuthorizationServer {
    /// Verifies an access token as presented to one of this server's endpoints: one of its
    /// JWTs or Biscuits, or a reference token (opened, then its JWT verified). With the token,
    /// what stands for it inside: the JWT behind a reference, the presented token otherwise.
    /// `None` when it is not a valid token of this server (revocation aside); an error only
    /// when verification could not run (too many Biscuits waiting).
    pub(crate) async fn verify_bearer<'a>(
        &self,
        presented: &'a str,
    ) -> Result<Option<(VerifiedToken, Cow<'a, str>)>, TokenError> {
        let inner: Cow<'a, str> = if is_reference(presented) {
            match self.references.open(presented) {
                Some(jwt) => Cow::Owned(jwt),
                None => return Ok(None),
            }
        } else {
            Cow::Borrowed(presented)
        };
        match self.verifier.verify_off_runtime(&inner, None).await {
            Ok(t) => Ok(Some((t, inner))),
            Err(e @ TokenError::Overloaded) => Err(e),
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_token_opens_to_its_jwt_and_says_nothing_of_it() {
        let jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhZGEifQ.c2ln";
        let sealer = ReferenceSealer::new(b"one key");
        let token = sealer.seal(jwt).unwrap();
        assert!(is_reference(&token));
        assert!(!token.contains('.'), "no dot: never taken for a JWT");
        assert!(!token.contains("eyJ"), "the JWT does not show through");
        assert_eq!(sealer.open(&token).as_deref(), Some(jwt));
        assert_eq!(ReferenceSealer::new(b"another key").open(&token), None);
        // A code sealed under the same secret is not a reference token (purposes differ).
        let code = Sealer::new(b"one key", b"writ/authorization-code/v1")
            .seal(jwt.as_bytes())
            .unwrap();
        assert_eq!(
            sealer.open(&format!(
                "{REFERENCE_PREFIX}{}",
                URL_SAFE_NO_PAD.encode(code)
            )),
            None
        );
        assert_eq!(sealer.open(&token[REFERENCE_PREFIX.len()..]), None);
        assert_eq!(sealer.open(&token[..token.len() - 2]), None);
        assert_eq!(sealer.open(&format!("{REFERENCE_PREFIX}!!")), None);
    }

    #[test]
    fn a_reference_longer_than_any_token_taken_back_is_not_sealed() {
        let sealer = ReferenceSealer::new(b"one key");
        // base64url makes 4 characters of 3 bytes; the salt and the tag add 32 bytes.
        let fits = (crate::MAX_TOKEN_LEN - REFERENCE_PREFIX.len()) / 4 * 3 - 32;
        let token = sealer.seal(&"a".repeat(fits)).unwrap();
        assert!(token.len() <= crate::MAX_TOKEN_LEN);
        assert_eq!(sealer.open(&token).map(|j| j.len()), Some(fits));
        assert_eq!(sealer.seal(&"a".repeat(fits + 3)), None);
    }
}
