//! Verifying a presented token against the issuer it claims, and only that issuer's keys.
//!
//! Each trusted issuer has a verifier of its own, accepting its `iss` alone with its keys alone:
//! a token claiming issuer A is never checked against issuer B's keys, so a key of an external
//! issuer cannot sign tokens that pass as Writ's. A JWT is routed by its (unverified) `iss`, a
//! Biscuit by its root key id (Writ issuers keep distinct id ranges); the chosen verifier then
//! checks everything, `iss` included.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use writ_token::biscuit_auth::UnverifiedBiscuit;
use writ_token::{
    KeySet, MAX_BISCUIT_LEN, SharedClock, TokenError, TokenFormat, TokenVerifier, VerifiedToken,
    VerifierConfig,
};

use crate::ports::TrustedIssuer;

/// Longest JWT accepted as a subject or actor token, in bytes.
pub const MAX_JWT_LEN: usize = 8 * 1024;

#[derive(Debug)]
struct Issuer {
    spec: TrustedIssuer,
    verifier: TokenVerifier,
}

impl Issuer {
    fn new(spec: TrustedIssuer, leeway: i64, clock: SharedClock) -> Self {
        let verifier = TokenVerifier::new(
            VerifierConfig {
                leeway,
                max_token_bytes: MAX_JWT_LEN,
                // The audience is checked by the exchange rules (who may present the token), not
                // here: a subject token is addressed to the service presenting it.
                ..VerifierConfig::new(vec![spec.issuer.clone()], None)
            },
            KeySet::new(),
            clock,
        );
        verifier.set_shared_keys(spec.keys.keys());
        Issuer { spec, verifier }
    }

    fn current_keys(&self) -> Arc<KeySet> {
        let keys = self.spec.keys.keys();
        if !Arc::ptr_eq(&keys, &self.verifier.keys()) {
            self.verifier.set_shared_keys(keys.clone());
        }
        keys
    }

    fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.current_keys();
        self.verifier.verify(token)
    }

    /// Fetches this issuer's keys again (rate-limited, single flight; see
    /// `KeySource::refresh_now`) and adopts them.
    async fn refresh(&self) {
        let seen = self.verifier.keys();
        let keys = self.spec.keys.refresh_now(&seen).await;
        self.verifier.set_shared_keys(keys);
    }
}

/// Every trusted issuer, each with its own verifier.
#[derive(Debug)]
pub(crate) struct Issuers(Vec<Issuer>);

impl Issuers {
    pub(crate) fn new(specs: Vec<TrustedIssuer>, leeway: i64, clock: SharedClock) -> Self {
        Issuers(
            specs
                .into_iter()
                .map(|s| Issuer::new(s, leeway, clock.clone()))
                .collect(),
        )
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|i| i.spec.issuer.as_str())
    }

    /// Verifies `token` with the verifier of the issuer it names.
    pub(crate) fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        match TokenFormat::detect(token) {
            TokenFormat::Jwt => {
                let iss = unverified_issuer(token)?;
                self.0
                    .iter()
                    .find(|i| i.spec.issuer == iss)
                    .ok_or(TokenError::WrongIssuer)?
                    .verify(token)
            }
            TokenFormat::Biscuit => {
                if token.len() > MAX_BISCUIT_LEN {
                    return Err(TokenError::TooLarge);
                }
                let id = UnverifiedBiscuit::from_base64(token)
                    .ok()
                    .and_then(|b| b.root_key_id())
                    .ok_or(TokenError::Malformed("not a Biscuit with a root key id"))?;
                let biscuit_issuers = || self.0.iter().filter(|i| i.spec.biscuits);
                match biscuit_issuers().find(|i| i.current_keys().biscuit_key(id).is_some()) {
                    Some(issuer) => issuer.verify(token),
                    None => Err(TokenError::UnknownKey),
                }
            }
        }
    }
}

impl Issuers {
    /// [`Issuers::verify`]; a key its issuer does not know (yet) makes that issuer (for a
    /// Biscuit: every Writ issuer) fetch its keys again, and the token is verified once more. A
    /// key rotated in at an issuer thus costs one fetch, not a refused exchange.
    pub(crate) async fn verify_refreshing(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        match self.verify(token) {
            Err(TokenError::UnknownKey) => {
                let claimed = match TokenFormat::detect(token) {
                    TokenFormat::Jwt => unverified_issuer(token).ok(),
                    TokenFormat::Biscuit => None,
                };
                for issuer in &self.0 {
                    let relevant = match &claimed {
                        Some(iss) => &issuer.spec.issuer == iss,
                        None => issuer.spec.biscuits,
                    };
                    if relevant {
                        issuer.refresh().await;
                    }
                }
                self.verify(token)
            }
            other => other,
        }
    }
}

/// The `iss` a JWT claims, read without trusting it (only to choose the verifier, which checks
/// it again).
fn unverified_issuer(token: &str) -> Result<String, TokenError> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    if token.len() > MAX_JWT_LEN {
        return Err(TokenError::TooLarge);
    }
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .ok_or(TokenError::Malformed("payload is not base64url"))?;
    serde_json::from_slice::<Iss>(&payload)
        .map(|c| c.iss)
        .map_err(|_| TokenError::BadClaims("iss is missing"))
}
