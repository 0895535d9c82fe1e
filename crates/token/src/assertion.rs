//! RFC 7523 JWT assertions: a party (a client authenticating, RFC 7523 section 2.2) signs a short
//! JWT with a key it registered; the verifier checks it against those keys only (never a key the
//! assertion names), with the algorithm allow-list, one audience, a bounded lifetime and a `jti`
//! the caller remembers until `exp` so the assertion is used once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::claims::MAX_NUMERIC_DATE;
use crate::error::TokenError;
use crate::keys::{Algorithm, KeySet, SigningKey};
use crate::verify::jwt::{Typ, check_jws};

/// `client_assertion_type` for a JWT (RFC 7523 section 2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Largest assertion accepted, in bytes.
pub const MAX_ASSERTION_LEN: usize = 8 * 1024;

/// Longest `jti` accepted, in bytes.
pub const MAX_JTI_LEN: usize = 256;

/// The `typ` Writ's own client puts on its assertions (draft-ietf-oauth-rfc7523bis).
pub const CLIENT_ASSERTION_TYP: &str = "client-authentication+jwt";

/// What an assertion must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct AssertionRules<'a> {
    /// `iss` and `sub` must both equal it (the client id, for client authentication).
    pub party: &'a str,
    /// `aud` must be exactly one value, one of these.
    pub audiences: &'a [&'a str],
    pub now: i64,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: i64,
    /// `exp` at most this many seconds from now: the verifier remembers each `jti` until `exp`,
    /// so this bounds what it remembers.
    pub max_lifetime: i64,
}

/// What a workload identity token (RFC 7523 section 2.1, the JWT-bearer grant) must satisfy
/// besides its signature by one of its issuer's keys.
#[derive(Debug, Clone)]
pub struct WorkloadRules<'a> {
    /// `iss` must equal it.
    pub issuer: &'a str,
    /// `aud` must contain it (one value or several: the issuer chose).
    pub audience: &'a str,
    pub now: i64,
    pub leeway: i64,
    /// `exp` at most this many seconds from now.
    pub max_lifetime: i64,
    /// A `jti` is required (the caller spends it: single-use tokens). Kubernetes' projected
    /// tokens are reused by the workload until they are refreshed, so an issuer may waive it.
    pub require_jti: bool,
}

/// A verified workload identity token's claims that matter to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedWorkload {
    pub subject: String,
    /// Empty when the token has none (allowed only if the rules do not require one).
    pub jti: String,
    pub exp: i64,
    pub key_id: String,
}

/// Most `aud` values a workload identity token may carry.
pub const MAX_WORKLOAD_AUDIENCES: usize = 16;

/// A verified assertion's claims that matter to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub jti: String,
    pub exp: i64,
    /// The key that signed it.
    pub key_id: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    jti: String,
}

impl Claims {
    fn parse(payload: &[u8]) -> Result<Claims, TokenError> {
        let c: Claims = serde_json::from_slice(payload)
            .map_err(|_| TokenError::BadClaims("iss, sub, aud and exp are required"))?;
        let in_range = |t: i64| (0..=MAX_NUMERIC_DATE).contains(&t);
        if !in_range(c.exp)
            || c.nbf.is_some_and(|t| !in_range(t))
            || c.iat.is_some_and(|t| !in_range(t))
        {
            return Err(TokenError::BadClaims("time claims out of range"));
        }
        if c.jti.len() > MAX_JTI_LEN {
            return Err(TokenError::BadClaims("jti is at most 256 bytes"));
        }
        Ok(c)
    }

    /// `exp` not past, at most `max_lifetime` ahead, `nbf` and `iat` not in the future.
    fn check_times(&self, now: i64, leeway: i64, max_lifetime: i64) -> Result<(), TokenError> {
        if now >= self.exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if self.exp - now > max_lifetime.saturating_add(leeway) {
            return Err(TokenError::LifetimeTooLong);
        }
        if self.nbf.is_some_and(|t| t > now.saturating_add(leeway))
            || self.iat.is_some_and(|t| t > now.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }
}

/// Verifies a workload identity token from a trusted issuer against that issuer's `keys` (EdDSA,
/// ES256, RS256 or PS256) and `rules`. When it carries a `jti`, the caller may spend it.
pub fn verify_workload_token(
    token: &str,
    keys: &KeySet,
    rules: &WorkloadRules<'_>,
) -> Result<VerifiedWorkload, TokenError> {
    let jws = check_jws(
        token,
        keys,
        &Algorithm::WORKLOAD,
        MAX_ASSERTION_LEN,
        Typ::Workload,
    )?;
    let c = Claims::parse(&jws.payload)?;
    if c.iss != rules.issuer {
        return Err(TokenError::WrongIssuer);
    }
    let named = match &c.aud {
        Audience::One(a) => a == rules.audience,
        Audience::Many(v) if v.len() <= MAX_WORKLOAD_AUDIENCES => {
            v.iter().any(|a| a == rules.audience)
        }
        Audience::Many(_) => false,
    };
    if !named {
        return Err(TokenError::WrongAudience);
    }
    if c.sub.is_empty() {
        return Err(TokenError::BadClaims("sub is required"));
    }
    if rules.require_jti && c.jti.is_empty() {
        return Err(TokenError::BadClaims("jti is required"));
    }
    c.check_times(rules.now, rules.leeway, rules.max_lifetime)?;
    Ok(VerifiedWorkload {
        subject: c.sub,
        jti: c.jti,
        exp: c.exp,
        key_id: jws.key_id,
    })
}

/// The unverified `sub` of an assertion, to find whose keys verify it when the request names no
/// client. Nothing else may be concluded from it.
pub fn assertion_subject(assertion: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Sub {
        sub: String,
    }
    if assertion.len() > MAX_ASSERTION_LEN {
        return None;
    }
    let payload = assertion.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Sub>(&bytes).ok().map(|s| s.sub)
}

/// The unverified `iss` of an assertion, to find whose keys verify it (a workload token's
/// issuer). Nothing else may be concluded from it.
pub fn assertion_issuer(assertion: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: String,
    }
    if assertion.len() > MAX_ASSERTION_LEN {
        return None;
    }
    let payload = assertion.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok().map(|i| i.iss)
}

/// Verifies `assertion` against `keys` (the party's registered keys) and `rules`. The caller
/// must then remember the returned `jti` until `exp` and refuse it a second time.
pub fn verify_assertion(
    assertion: &str,
    keys: &KeySet,
    rules: &AssertionRules<'_>,
) -> Result<VerifiedAssertion, TokenError> {
    let jws = check_jws(
        assertion,
        keys,
        &Algorithm::ALL,
        MAX_ASSERTION_LEN,
        Typ::Assertion,
    )?;
    let c = Claims::parse(&jws.payload)?;
    if c.iss != rules.party || c.sub != rules.party {
        return Err(TokenError::WrongIssuer);
    }
    // One audience: an assertion meant for several servers would be good at each of them.
    let aud = match &c.aud {
        Audience::One(a) => a,
        Audience::Many(v) if v.len() == 1 => &v[0],
        Audience::Many(_) => return Err(TokenError::WrongAudience),
    };
    if !rules.audiences.contains(&aud.as_str()) {
        return Err(TokenError::WrongAudience);
    }
    if c.jti.is_empty() {
        return Err(TokenError::BadClaims("jti is required, at most 256 bytes"));
    }
    c.check_times(rules.now, rules.leeway, rules.max_lifetime)?;
    Ok(VerifiedAssertion {
        jti: c.jti,
        exp: c.exp,
        key_id: jws.key_id,
    })
}

/// An assertion's claims, as a party signs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Signs a client assertion (RFC 7523 section 2.2; `typ` `client-authentication+jwt`).
pub fn encode_client_assertion(
    key: &SigningKey,
    claims: &AssertionClaims,
) -> Result<String, TokenError> {
    crate::jwt::encode_jwt(key, CLIENT_ASSERTION_TYP, claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::VerificationKey;

    const AS: &str = "https://as.example";
    const NOW: i64 = 1_800_000_000;

    fn claims() -> AssertionClaims {
        AssertionClaims {
            iss: "orders".into(),
            sub: "orders".into(),
            aud: AS.into(),
            iat: NOW,
            exp: NOW + 60,
            jti: "j1".into(),
        }
    }

    fn rules() -> AssertionRules<'static> {
        AssertionRules {
            party: "orders",
            audiences: &[AS, "https://as.example/oauth2/token"],
            now: NOW,
            leeway: 5,
            max_lifetime: 300,
        }
    }

    fn keys(k: &SigningKey) -> KeySet {
        let mut set = KeySet::new();
        set.insert_jwt(k.verification_key());
        set
    }

    /// A JWS with any header and payload, signed by `key`.
    fn raw(key: &SigningKey, header: serde_json::Value, payload: serde_json::Value) -> String {
        let mut t = URL_SAFE_NO_PAD.encode(header.to_string());
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(payload.to_string()));
        let sig = key.sign(t.as_bytes());
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(sig));
        t
    }

    #[test]
    fn a_signed_assertion_passes_once_its_rules_hold_and_not_otherwise() {
        for alg in Algorithm::ALL {
            let key = SigningKey::generate(alg, "c1").unwrap();
            let set = keys(&key);
            let ok = encode_client_assertion(&key, &claims()).unwrap();
            let v = verify_assertion(&ok, &set, &rules()).unwrap();
            assert_eq!(
                (v.jti.as_str(), v.exp, v.key_id.as_str()),
                ("j1", NOW + 60, "c1")
            );
            assert_eq!(assertion_subject(&ok).as_deref(), Some("orders"));

            let refused = |c: AssertionClaims| {
                verify_assertion(&encode_client_assertion(&key, &c).unwrap(), &set, &rules())
                    .unwrap_err()
            };
            let with = |f: fn(&mut AssertionClaims)| {
                let mut c = claims();
                f(&mut c);
                c
            };
            assert_eq!(
                refused(with(|c| c.iss = "other".into())),
                TokenError::WrongIssuer
            );
            assert_eq!(
                refused(with(|c| c.sub = "other".into())),
                TokenError::WrongIssuer
            );
            assert_eq!(
                refused(with(|c| c.aud = "https://elsewhere".into())),
                TokenError::WrongAudience
            );
            assert_eq!(refused(with(|c| c.exp = NOW - 10)), TokenError::Expired);
            assert_eq!(
                refused(with(|c| c.exp = NOW + 3600)),
                TokenError::LifetimeTooLong
            );
            assert_eq!(refused(with(|c| c.iat = NOW + 60)), TokenError::NotYetValid);
            assert!(matches!(
                refused(with(|c| c.jti = String::new())),
                TokenError::BadClaims(_)
            ));
            // Another key (even with the registered kid) does not verify it.
            let other = SigningKey::generate(alg, "c1").unwrap();
            let forged = encode_client_assertion(&other, &claims()).unwrap();
            assert_eq!(
                verify_assertion(&forged, &set, &rules()).unwrap_err(),
                TokenError::BadSignature
            );
        }
    }

    #[test]
    fn a_clients_key_round_trips_through_pkcs8_pem() {
        for alg in Algorithm::ALL {
            let key = SigningKey::generate(alg, "c1").unwrap();
            let pem = key.to_pkcs8_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let back = SigningKey::from_pkcs8_pem("c1", &pem).unwrap();
            assert_eq!(back.alg(), alg);
            assert_eq!(
                back.verification_key().to_jwk(),
                key.verification_key().to_jwk()
            );
        }
        assert!(SigningKey::from_pkcs8_pem("c1", "-----BEGIN PRIVATE KEY-----\n").is_err());
    }

    /// Keys made by OpenSSL 3 (`openssl genpkey -algorithm ed25519`, and `-algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`), with their public coordinates as `openssl pkey -pubout` gave
    /// them: generated for this test, no secret of anything.
    #[test]
    fn keys_made_by_openssl_load_with_their_public_halves() {
        let ed = "-----BEGIN PRIVATE KEY-----\n\
                  MC4CAQAwBQYDK2VwBCIEIEwTxy1CbNjl8/Nt1Jb/Lg0tMiBCQEGZQPcOhr5RKJvf\n\
                  -----END PRIVATE KEY-----\n";
        let ec = "-----BEGIN PRIVATE KEY-----\n\
                  MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1+e00zstXMd/ucNY\n\
                  lMN2mqkLE+KrwW9DAF93/zdSoRmhRANCAAQWi9TaiO3rcY1PbXbA3v52qwoF+u6B\n\
                  7yDXFZ8R66glrHePqtrq/59a1pgD3iKo/9u6yw9UZ/Q0OZJp6LmC5uYT\n\
                  -----END PRIVATE KEY-----\n";
        let jwk = SigningKey::from_pkcs8_pem("o", ed)
            .unwrap()
            .verification_key()
            .to_jwk();
        assert_eq!(
            (jwk.alg.as_str(), jwk.x.as_str()),
            ("EdDSA", "OFNEZ4PnmquaNtM_zIcCKiepYtNLkhnHca_HkiMrp18")
        );
        let jwk = SigningKey::from_pkcs8_pem("oe", ec)
            .unwrap()
            .verification_key()
            .to_jwk();
        assert_eq!(jwk.alg, "ES256");
        assert_eq!(jwk.x, "FovU2ojt63GNT212wN7-dqsKBfruge8g1xWfEeuoJaw");
        assert_eq!(
            jwk.y.as_deref(),
            Some("d4-q2ur_n1rWmAPeIqj_27rLD1Rn9DQ5kmnouYLm5hM")
        );
        // What Writ writes, OpenSSL reads: PKCS#8 v1, no public key inside (v2 is refused by
        // OpenSSL 3 and Python's cryptography).
        let written = SigningKey::from_pkcs8_pem("o", ed)
            .unwrap()
            .to_pkcs8_pem()
            .unwrap();
        assert_eq!(written.as_str(), ed);
    }

    #[test]
    fn the_header_must_be_an_assertions_and_name_no_key() {
        let key = SigningKey::generate(Algorithm::EdDSA, "c1").unwrap();
        let set = keys(&key);
        let payload = serde_json::json!({
            "iss": "orders", "sub": "orders", "aud": AS, "exp": NOW + 60, "jti": "j"
        });
        let check = |header: serde_json::Value| {
            verify_assertion(&raw(&key, header, payload.clone()), &set, &rules())
        };
        // typ absent or JWT, kid absent (one key of the algorithm): accepted.
        assert!(check(serde_json::json!({"alg": "EdDSA"})).is_ok());
        assert!(check(serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "c1"})).is_ok());
        // An access token's or a logout token's typ is not an assertion's.
        for typ in ["at+jwt", "application/at+jwt", "logout+jwt"] {
            assert_eq!(
                check(serde_json::json!({"alg": "EdDSA", "typ": typ})).unwrap_err(),
                TokenError::WrongType
            );
        }
        let jwk = key.verification_key().to_jwk();
        assert_eq!(
            check(serde_json::json!({"alg": "EdDSA", "jwk": jwk})).unwrap_err(),
            TokenError::ForbiddenHeader
        );
        assert_eq!(
            check(serde_json::json!({"alg": "EdDSA", "kid": "c2"})).unwrap_err(),
            TokenError::UnknownKey
        );
        // Another algorithm than the key's, "none" and HMAC are refused.
        for alg in ["ES256", "HS256", "none", "RS256"] {
            assert!(check(serde_json::json!({"alg": alg})).is_err(), "{alg}");
        }
        // Two keys of the algorithm (a rotation): the one whose signature holds, whichever
        // comes first; signed by neither: as an unknown key.
        let mut two = KeySet::new();
        two.insert_jwt(
            SigningKey::generate(Algorithm::EdDSA, "a-first")
                .unwrap()
                .verification_key(),
        );
        two.insert_jwt(key.verification_key());
        let unnamed = raw(&key, serde_json::json!({"alg": "EdDSA"}), payload.clone());
        assert_eq!(
            verify_assertion(&unnamed, &two, &rules()).unwrap().key_id,
            "c1"
        );
        let stranger = SigningKey::generate(Algorithm::EdDSA, "c1").unwrap();
        let forged = raw(
            &stranger,
            serde_json::json!({"alg": "EdDSA"}),
            payload.clone(),
        );
        assert_eq!(
            verify_assertion(&forged, &two, &rules()).unwrap_err(),
            TokenError::UnknownKey
        );
        // Several audiences are refused even when one is right.
        let mut many = payload.clone();
        many["aud"] = serde_json::json!([AS, "https://other.example"]);
        assert_eq!(
            verify_assertion(
                &raw(&key, serde_json::json!({"alg": "EdDSA"}), many),
                &set,
                &rules()
            )
            .unwrap_err(),
            TokenError::WrongAudience
        );
        // A missing exp is malformed claims.
        let mut no_exp = payload;
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(matches!(
            verify_assertion(
                &raw(&key, serde_json::json!({"alg": "EdDSA"}), no_exp),
                &set,
                &rules()
            )
            .unwrap_err(),
            TokenError::BadClaims(_)
        ));
    }

    /// A made-up Kubernetes cluster's service-account token signer (vendored, testdata/).
    const RSA_PEM: &str = include_str!("../testdata/rsa-2048.pem");
    const RSA_JWKS: &str = include_str!("../testdata/rsa-2048.jwks.json");
    const CLUSTER: &str = "https://kubernetes.default.svc";

    fn workload_token(
        alg: jsonwebtoken::Algorithm,
        kid: Option<&str>,
        claims: serde_json::Value,
    ) -> String {
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = kid.map(str::to_owned);
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    fn sa_claims() -> serde_json::Value {
        serde_json::json!({
            "iss": CLUSTER,
            "sub": "system:serviceaccount:prod:orders",
            "aud": ["writ", "https://kubernetes.default.svc"],
            "exp": NOW + 3600,
            "iat": NOW,
            "nbf": NOW,
            "kubernetes.io": {"namespace": "prod"},
        })
    }

    fn workload_rules() -> WorkloadRules<'static> {
        WorkloadRules {
            issuer: CLUSTER,
            audience: "writ",
            now: NOW,
            leeway: 5,
            max_lifetime: 3600,
            require_jti: false,
        }
    }

    #[test]
    fn an_rs256_service_account_token_verifies_with_its_clusters_published_key() {
        let keys = crate::workload_key_set(RSA_JWKS).unwrap();
        let key = keys.jwt_key("k8s-1").unwrap();
        assert_eq!(key.alg(), Algorithm::RS256);
        assert_eq!(
            crate::parse_jwk_set_for(
                &serde_json::json!({"keys": [key.to_jwk()]}).to_string(),
                &Algorithm::WORKLOAD
            )
            .unwrap()[0]
                .to_jwk(),
            key.to_jwk(),
            "the JWK round-trips"
        );
        let token = workload_token(jsonwebtoken::Algorithm::RS256, Some("k8s-1"), sa_claims());
        let v = verify_workload_token(&token, &keys, &workload_rules()).unwrap();
        assert_eq!(v.subject, "system:serviceaccount:prod:orders");
        assert_eq!(
            (v.jti.as_str(), v.exp, v.key_id.as_str()),
            ("", NOW + 3600, "k8s-1")
        );
        // Without a kid, the issuer's keys of the algorithm are tried.
        let unnamed = workload_token(jsonwebtoken::Algorithm::RS256, None, sa_claims());
        assert!(verify_workload_token(&unnamed, &keys, &workload_rules()).is_ok());

        // RSA is for workload tokens only: the same token is no client assertion, nor an
        // access token, and the key does not verify PS256 (one algorithm per key).
        assert_eq!(
            verify_assertion(&token, &keys, &rules()).unwrap_err(),
            TokenError::AlgorithmNotAllowed
        );
        let pss = workload_token(jsonwebtoken::Algorithm::PS256, Some("k8s-1"), sa_claims());
        assert_eq!(
            verify_workload_token(&pss, &keys, &workload_rules()).unwrap_err(),
            TokenError::AlgorithmNotAllowed
        );
        // Published as PS256, the key verifies PS256.
        let mut ps_jwks: serde_json::Value = serde_json::from_str(RSA_JWKS).unwrap();
        ps_jwks["keys"][0]["alg"] = "PS256".into();
        let ps_keys = crate::workload_key_set(&ps_jwks.to_string()).unwrap();
        assert!(verify_workload_token(&pss, &ps_keys, &workload_rules()).is_ok());
        assert!(
            SigningKey::generate(Algorithm::RS256, "r").is_err(),
            "Writ never signs RSA"
        );
    }

    #[test]
    fn a_workload_token_is_refused_for_each_rule_it_breaks() {
        let keys = crate::workload_key_set(RSA_JWKS).unwrap();
        let refused = |f: &dyn Fn(&mut serde_json::Value), rules: &WorkloadRules<'_>| {
            let mut c = sa_claims();
            f(&mut c);
            let token = workload_token(jsonwebtoken::Algorithm::RS256, Some("k8s-1"), c);
            verify_workload_token(&token, &keys, rules).unwrap_err()
        };
        let r = workload_rules();
        assert_eq!(
            refused(&|c| c["iss"] = "https://other".into(), &r),
            TokenError::WrongIssuer
        );
        assert_eq!(
            refused(&|c| c["aud"] = "kubernetes".into(), &r),
            TokenError::WrongAudience
        );
        assert_eq!(
            refused(
                &|c| c["aud"] = serde_json::json!(
                    vec!["x"; 17]
                        .iter()
                        .chain(["writ"].iter())
                        .collect::<Vec<_>>()
                ),
                &r
            ),
            TokenError::WrongAudience,
            "too many audiences"
        );
        assert_eq!(
            refused(&|c| c["exp"] = (NOW - 10).into(), &r),
            TokenError::Expired
        );
        assert_eq!(
            refused(&|c| c["exp"] = (NOW + 7200).into(), &r),
            TokenError::LifetimeTooLong
        );
        assert_eq!(
            refused(&|c| c["nbf"] = (NOW + 60).into(), &r),
            TokenError::NotYetValid
        );
        assert!(matches!(
            refused(&|c| c["sub"] = "".into(), &r),
            TokenError::BadClaims(_)
        ));
        let single_use = WorkloadRules {
            require_jti: true,
            ..workload_rules()
        };
        assert!(matches!(
            refused(&|_| {}, &single_use),
            TokenError::BadClaims(_)
        ));
        let mut with_jti = sa_claims();
        with_jti["jti"] = "j-1".into();
        let token = workload_token(jsonwebtoken::Algorithm::RS256, Some("k8s-1"), with_jti);
        assert_eq!(
            verify_workload_token(&token, &keys, &single_use)
                .unwrap()
                .jti,
            "j-1"
        );
        // Another issuer's key, and a typ of an access token, are refused.
        let other = SigningKey::generate(Algorithm::ES256, "k8s-1").unwrap();
        let mut other_keys = KeySet::new();
        other_keys.insert_jwt(other.verification_key());
        let token = workload_token(jsonwebtoken::Algorithm::RS256, Some("k8s-1"), sa_claims());
        assert_eq!(
            verify_workload_token(&token, &other_keys, &r).unwrap_err(),
            TokenError::AlgorithmNotAllowed
        );
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("k8s-1".into());
        header.typ = Some("at+jwt".into());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap();
        let at = jsonwebtoken::encode(&header, &sa_claims(), &key).unwrap();
        assert_eq!(
            verify_workload_token(&at, &keys, &r).unwrap_err(),
            TokenError::WrongType
        );
    }

    /// RSA signatures are really checked: another RSA key's signature under the issuer's kid,
    /// or without a kid, and a payload changed after signing, are all refused; RSA keys are
    /// not loaded where only EdDSA and ES256 are trusted.
    #[test]
    fn an_rsa_signature_by_another_key_or_over_another_payload_is_refused() {
        const OTHER_PEM: &str = include_str!("../testdata/rsa-2048-other.pem");
        let keys = crate::workload_key_set(RSA_JWKS).unwrap();
        let forge = |kid: Option<&str>| {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            header.kid = kid.map(str::to_owned);
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(OTHER_PEM.as_bytes()).unwrap();
            jsonwebtoken::encode(&header, &sa_claims(), &key).unwrap()
        };
        assert_eq!(
            verify_workload_token(&forge(Some("k8s-1")), &keys, &workload_rules()).unwrap_err(),
            TokenError::BadSignature
        );
        assert_eq!(
            verify_workload_token(&forge(None), &keys, &workload_rules()).unwrap_err(),
            TokenError::UnknownKey
        );
        let good = workload_token(jsonwebtoken::Algorithm::RS256, Some("k8s-1"), sa_claims());
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut claims = sa_claims();
        claims["sub"] = "system:serviceaccount:kube-system:admin".into();
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert_eq!(
            verify_workload_token(&parts.join("."), &keys, &workload_rules()).unwrap_err(),
            TokenError::BadSignature
        );
        assert!(
            crate::jwt_key_set(RSA_JWKS).is_err(),
            "no RSA outside workload sets"
        );
        assert!(crate::parse_jwk_set(RSA_JWKS).unwrap().is_empty());
    }

    #[test]
    fn rsa_keys_under_2048_bits_or_with_a_bad_exponent_are_refused() {
        let mut jwks: serde_json::Value = serde_json::from_str(RSA_JWKS).unwrap();
        let n = URL_SAFE_NO_PAD
            .decode(jwks["keys"][0]["n"].as_str().unwrap())
            .unwrap();
        let short = URL_SAFE_NO_PAD.encode(&n[..n.len() / 2]);
        let k = |n: &str, e: &str| {
            VerificationKey::from_components(
                "r".into(),
                Algorithm::RS256,
                &URL_SAFE_NO_PAD.decode(n).unwrap(),
                &URL_SAFE_NO_PAD.decode(e).unwrap(),
            )
        };
        assert!(k(jwks["keys"][0]["n"].as_str().unwrap(), "AQAB").is_ok());
        assert!(k(&short, "AQAB").is_err(), "1024 bits");
        let mut n2047 = n.clone();
        n2047[0] &= 0x7f;
        assert!(
            k(&URL_SAFE_NO_PAD.encode(&n2047), "AQAB").is_err(),
            "2047 bits"
        );
        assert!(
            k(jwks["keys"][0]["n"].as_str().unwrap(), "Ag").is_err(),
            "e = 2"
        );
        assert!(
            k(jwks["keys"][0]["n"].as_str().unwrap(), "AQ").is_err(),
            "e = 1"
        );
        jwks["keys"][0]["n"] = short.into();
        assert!(
            crate::workload_key_set(&jwks.to_string()).is_err(),
            "an unusable key is skipped"
        );
    }
}
