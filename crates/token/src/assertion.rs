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
    jti: String,
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
    let c: Claims = serde_json::from_slice(&jws.payload)
        .map_err(|_| TokenError::BadClaims("iss, sub, aud, exp and jti are required"))?;
    let in_range = |t: i64| (0..=MAX_NUMERIC_DATE).contains(&t);
    if !in_range(c.exp)
        || c.nbf.is_some_and(|t| !in_range(t))
        || c.iat.is_some_and(|t| !in_range(t))
    {
        return Err(TokenError::BadClaims("time claims out of range"));
    }
    if c.iss != rules.party || c.sub != rules.party {
        return Err(TokenError::WrongIssuer);
    }
    // One audience: an assertion meant for several servers would be good at each of them.
    let aud = match c.aud {
        Audience::One(a) => a,
        Audience::Many(mut v) if v.len() == 1 => v.remove(0),
        Audience::Many(_) => return Err(TokenError::WrongAudience),
    };
    if !rules.audiences.contains(&aud.as_str()) {
        return Err(TokenError::WrongAudience);
    }
    if c.jti.is_empty() || c.jti.len() > MAX_JTI_LEN {
        return Err(TokenError::BadClaims("jti is required, at most 256 bytes"));
    }
    let (now, leeway) = (rules.now, rules.leeway);
    if now >= c.exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if c.exp - now > rules.max_lifetime.saturating_add(leeway) {
        return Err(TokenError::LifetimeTooLong);
    }
    if c.nbf.is_some_and(|t| t > now.saturating_add(leeway))
        || c.iat.is_some_and(|t| t > now.saturating_add(leeway))
    {
        return Err(TokenError::NotYetValid);
    }
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
}
