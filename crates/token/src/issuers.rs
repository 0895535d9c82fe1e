//! Which key may verify which token: the one answer every Writ verifier uses (the guard, the
//! STS, introspection, the revocation service, `writ inspect`).
//!
//! [`TrustedIssuers`] holds the issuers a verifier trusts, each with its own key source and its
//! own [`TokenVerifier`], accepting that issuer's `iss` alone with that issuer's keys alone. A key
//! is therefore trusted only for its own issuer, by construction: a token claiming issuer A is
//! never checked against issuer B's keys, so an external issuer's key cannot sign tokens that
//! pass as Writ's. A JWT is routed by the `iss` it claims (read unverified, only to choose; the
//! chosen verifier checks it again); a Biscuit by its root key id (each issuer's verifier only
//! knows its own root keys, and Writ's issuers keep distinct id ranges). No I/O here: fetching
//! keys is the key sources' business ([`KeySource`]).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::clock::SharedClock;
use crate::error::TokenError;
use crate::keys::{KeySet, KeySource};
use crate::verify::{BiscuitRequest, TokenFormat, TokenVerifier, VerifiedToken, VerifierConfig};

/// One issuer a verifier trusts: its `iss` and where its keys come from.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// Its `iss`, compared exactly.
    pub issuer: String,
    pub keys: Arc<dyn KeySource>,
    /// Whether its Biscuits are trusted too (Writ's issuers), or only its JWTs (external ones).
    pub biscuits: bool,
}

impl TrustedIssuer {
    /// A Writ issuer: its JWTs and its Biscuits.
    pub fn new(issuer: impl Into<String>, keys: Arc<dyn KeySource>) -> Self {
        TrustedIssuer {
            issuer: issuer.into(),
            keys,
            biscuits: true,
        }
    }

    /// An external issuer: its JWTs only.
    pub fn jwt_only(issuer: impl Into<String>, keys: Arc<dyn KeySource>) -> Self {
        TrustedIssuer {
            biscuits: false,
            ..TrustedIssuer::new(issuer, keys)
        }
    }
}

#[derive(Debug)]
struct Issuer {
    spec: TrustedIssuer,
    verifier: TokenVerifier,
}

impl Issuer {
    /// The verifier, on the key source's keys now (adopted without a copy when they changed).
    fn current(&self) -> &TokenVerifier {
        let keys = self.spec.keys.keys();
        if !Arc::ptr_eq(&keys, &self.verifier.keys()) {
            self.verifier.set_shared_keys(keys);
        }
        &self.verifier
    }

    fn verify(
        &self,
        token: &str,
        format: TokenFormat,
        request: Option<&BiscuitRequest>,
    ) -> Result<VerifiedToken, TokenError> {
        let verifier = self.current();
        match (format, request) {
            (TokenFormat::Jwt, _) => verifier.verify_jwt(token),
            (TokenFormat::Biscuit, None) => verifier.verify_biscuit(token),
            (TokenFormat::Biscuit, Some(r)) => verifier.verify_biscuit_for(token, r),
        }
    }

    /// Fetches this issuer's keys again (single flight, rate-limited; see
    /// [`KeySource::refresh_now`]) and adopts them.
    async fn refresh(&self) {
        let seen = self.verifier.keys();
        let keys = self.spec.keys.refresh_now(&seen).await;
        self.verifier.set_shared_keys(keys);
    }
}

/// The issuers a verifier trusts, each with its own verifier over its own keys. Cheap to clone
/// (shared).
#[derive(Debug, Clone)]
pub struct TrustedIssuers {
    issuers: Arc<[Issuer]>,
    /// The verifiers' bound on a JWT, applied before the unverified `iss` is read.
    max_jwt_bytes: usize,
}

impl TrustedIssuers {
    /// `config` applies to every issuer's verifier (audience, algorithms, leeway, bounds), its
    /// `issuers` replaced by that issuer alone.
    pub fn new(trusted: Vec<TrustedIssuer>, config: VerifierConfig, clock: SharedClock) -> Self {
        let max_jwt_bytes = config.max_token_bytes;
        let issuers = trusted
            .into_iter()
            .map(|spec| {
                let verifier = TokenVerifier::new(
                    VerifierConfig {
                        issuers: vec![spec.issuer.clone()],
                        ..config.clone()
                    },
                    KeySet::new(),
                    clock.clone(),
                );
                verifier.set_shared_keys(spec.keys.keys());
                Issuer { spec, verifier }
            })
            .collect::<Vec<_>>()
            .into();
        TrustedIssuers {
            issuers,
            max_jwt_bytes,
        }
    }

    /// The issuers' names, in the order given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.issuers.iter().map(|i| i.spec.issuer.as_str())
    }

    /// Verifies a JWT, or a Biscuit on its own (`request` `None`) or for one request, with the
    /// verifier of the issuer it belongs to. [`TokenError::WrongIssuer`] for a JWT claiming an
    /// issuer not trusted here, [`TokenError::UnknownKey`] for a key its issuer does not
    /// publish (see [`TrustedIssuers::verify_refreshing`]).
    pub fn verify(
        &self,
        token: &str,
        request: Option<&BiscuitRequest>,
    ) -> Result<VerifiedToken, TokenError> {
        let format = TokenFormat::detect(token);
        match format {
            TokenFormat::Jwt => self.jwt_issuer(token)?.verify(token, format, request),
            TokenFormat::Biscuit => {
                // Only the issuer holding the root key id gets past the key lookup; the others
                // stop there, before any signature is checked.
                for issuer in self.issuers.iter().filter(|i| i.spec.biscuits) {
                    match issuer.verify(token, format, request) {
                        Err(TokenError::UnknownKey) => continue,
                        other => return other,
                    }
                }
                Err(TokenError::UnknownKey)
            }
        }
    }

    /// [`TrustedIssuers::verify`] for async callers: a Biscuit is verified off the runtime's
    /// workers ([`crate::run_off_runtime`]); a JWT, whose cost is one signature check, here.
    pub async fn verify_off_runtime(
        &self,
        token: &str,
        request: Option<&BiscuitRequest>,
    ) -> Result<VerifiedToken, TokenError> {
        if TokenFormat::detect(token) == TokenFormat::Jwt {
            return self.verify(token, request);
        }
        let (issuers, token, request) = (self.clone(), token.to_owned(), request.cloned());
        crate::run_off_runtime(move || issuers.verify(&token, request.as_ref())).await?
    }

    /// [`TrustedIssuers::verify_off_runtime`]; a key its issuer does not know (yet) makes that
    /// issuer (for a Biscuit, every issuer of Biscuits) fetch its keys again, and the token is
    /// verified once more. A key rotated in at an issuer costs one fetch, not a refused request.
    pub async fn verify_refreshing(
        &self,
        token: &str,
        request: Option<&BiscuitRequest>,
    ) -> Result<VerifiedToken, TokenError> {
        match self.verify_off_runtime(token, request).await {
            Err(TokenError::UnknownKey) => {
                self.refresh_for(token).await;
                self.verify_off_runtime(token, request).await
            }
            other => other,
        }
    }

    /// Makes the issuer(s) `token` may belong to fetch their keys again and waits for that
    /// (single flight, at most one fetch per rate-limit window; see [`KeySource::refresh_now`]).
    pub async fn refresh_for(&self, token: &str) {
        for issuer in self.relevant(token) {
            issuer.refresh().await;
        }
    }

    /// Asks the issuer(s) `token` may belong to to fetch their keys in the background
    /// (rate-limited), without waiting: for callers that cannot wait (a tonic interceptor).
    pub fn request_refresh(&self, token: &str) {
        for issuer in self.relevant(token) {
            issuer.spec.keys.request_refresh();
        }
    }

    /// The issuer a JWT claims. With one issuer there is nothing to choose: its verifier checks
    /// `iss` anyway.
    fn jwt_issuer(&self, token: &str) -> Result<&Issuer, TokenError> {
        if let [only] = &*self.issuers {
            return Ok(only);
        }
        // Bounded before anything of an unauthenticated token is decoded.
        if token.len() > self.max_jwt_bytes {
            return Err(TokenError::TooLarge);
        }
        let iss = unverified_issuer(token)?;
        self.issuers
            .iter()
            .find(|i| i.spec.issuer == iss)
            .ok_or(TokenError::WrongIssuer)
    }

    fn relevant<'a>(&'a self, token: &str) -> Vec<&'a Issuer> {
        match TokenFormat::detect(token) {
            TokenFormat::Jwt => self.jwt_issuer(token).into_iter().collect(),
            TokenFormat::Biscuit => self.issuers.iter().filter(|i| i.spec.biscuits).collect(),
        }
    }
}

/// The `iss` a JWT claims, read without trusting it.
fn unverified_issuer(token: &str) -> Result<String, TokenError> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{
        AccessClaims, Algorithm, BiscuitRootKey, Clock, ManualClock, SigningKey,
        encode_access_token, mint_biscuit,
    };

    #[derive(Debug)]
    struct Fixed(Arc<KeySet>);

    impl KeySource for Fixed {
        fn keys(&self) -> Arc<KeySet> {
            self.0.clone()
        }
    }

    fn claims(iss: &str, now: i64) -> AccessClaims {
        AccessClaims {
            iss: iss.into(),
            sub: "alice".into(),
            aud: vec!["inventory".into()],
            iat: now,
            nbf: None,
            exp: now + 60,
            jti: "j".into(),
            client_id: "orders".into(),
            scope: "read".into(),
            gid: Some("g".into()),
            act: None,
            may_act: None,
            cnf: None,
        }
    }

    struct Issuer {
        name: &'static str,
        jwt: SigningKey,
        root: BiscuitRootKey,
    }

    impl Issuer {
        fn new(name: &'static str, kid: &str, root: u32) -> Self {
            Issuer {
                name,
                jwt: SigningKey::generate(Algorithm::EdDSA, kid).unwrap(),
                root: BiscuitRootKey::generate(root),
            }
        }

        fn trusted(&self, biscuits: bool) -> TrustedIssuer {
            let mut keys = KeySet::new();
            keys.insert_jwt(self.jwt.verification_key());
            keys.insert_biscuit(self.root.public());
            let keys: Arc<dyn KeySource> = Arc::new(Fixed(Arc::new(keys)));
            if biscuits {
                TrustedIssuer::new(self.name, keys)
            } else {
                TrustedIssuer::jwt_only(self.name, keys)
            }
        }
    }

    fn setup() -> (Issuer, Issuer, TrustedIssuers, i64) {
        let clock = ManualClock::new(1_800_000_000);
        let now = clock.now();
        let a = Issuer::new("https://a", "ka", 1);
        let b = Issuer::new("https://b", "kb", 1_000_000);
        let trusted = TrustedIssuers::new(
            vec![a.trusted(true), b.trusted(false)],
            VerifierConfig::new(Vec::new(), Some("inventory".into())),
            Arc::new(clock),
        );
        (a, b, trusted, now)
    }

    #[test]
    fn each_issuer_verifies_its_own_tokens() {
        let (a, b, trusted, now) = setup();
        let from_a = encode_access_token(&a.jwt, &claims(a.name, now)).unwrap();
        let from_b = encode_access_token(&b.jwt, &claims(b.name, now)).unwrap();
        assert_eq!(trusted.verify(&from_a, None).unwrap().claims.iss, a.name);
        assert_eq!(trusted.verify(&from_b, None).unwrap().claims.iss, b.name);
        let biscuit = mint_biscuit(&a.root, &claims(a.name, now)).unwrap();
        assert_eq!(trusted.verify(&biscuit, None).unwrap().claims.iss, a.name);
        assert_eq!(trusted.names().collect::<Vec<_>>(), [a.name, b.name]);
    }

    #[test]
    fn a_key_is_trusted_only_for_its_own_issuer() {
        let (a, b, trusted, now) = setup();
        // B's key signing a token that claims A: routed to A, whose keys do not hold it.
        let forged = encode_access_token(&b.jwt, &claims(a.name, now)).unwrap();
        assert_eq!(
            trusted.verify(&forged, None).unwrap_err(),
            TokenError::UnknownKey
        );
        // A token claiming an issuer nobody trusts.
        let stranger = encode_access_token(&a.jwt, &claims("https://c", now)).unwrap();
        assert_eq!(
            trusted.verify(&stranger, None).unwrap_err(),
            TokenError::WrongIssuer
        );
        // B's Biscuits are not trusted at all (an external issuer: JWTs only), even with a root
        // key B publishes.
        let biscuit = mint_biscuit(&b.root, &claims(b.name, now)).unwrap();
        assert_eq!(
            trusted.verify(&biscuit, None).unwrap_err(),
            TokenError::UnknownKey
        );
        // A Biscuit under A's root key claiming B is A's verifier's to refuse.
        let lying = mint_biscuit(&a.root, &claims(b.name, now)).unwrap();
        assert_eq!(
            trusted.verify(&lying, None).unwrap_err(),
            TokenError::WrongIssuer
        );
    }
}
