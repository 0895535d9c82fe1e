#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn signing_keys_round_trip_through_their_secret_bytes() {
    for alg in Algorithm::ALL {
        let key = SigningKey::generate(alg, "k1").unwrap();
        let again = SigningKey::from_secret(alg, "k1".into(), &key.secret_bytes()).unwrap();
        assert_eq!(
            key.verification_key().to_jwk(),
            again.verification_key().to_jwk()
        );
    }
}

#[test]
fn jwk_round_trips_for_both_algorithms() {
    for alg in Algorithm::ALL {
        let public = SigningKey::generate(alg, "k1").unwrap().verification_key();
        let jwk = public.to_jwk();
        let back = VerificationKey::from_jwk(&jwk).unwrap();
        assert_eq!(back.to_jwk(), jwk);
    }
}

#[test]
fn jwk_with_disagreeing_kty_and_alg_is_refused() {
    let mut jwk = SigningKey::generate(Algorithm::EdDSA, "k1")
        .unwrap()
        .verification_key()
        .to_jwk();
    jwk.alg = "ES256".into();
    assert!(VerificationKey::from_jwk(&jwk).is_err());
    jwk.alg = "HS256".into();
    assert!(VerificationKey::from_jwk(&jwk).is_err());
}

#[test]
fn short_ed25519_keys_are_refused_without_panicking() {
    assert!(VerificationKey::from_components("k".into(), Algorithm::EdDSA, &[1; 31], &[]).is_err());
    assert!(
        VerificationKey::from_components("k".into(), Algorithm::ES256, &[1; 32], &[1; 32]).is_err()
    );
}

#[test]
fn hostile_key_ids_are_refused() {
    for kid in ["", "../../etc/passwd", "a\"b", &"k".repeat(200), "a b"] {
        assert!(
            SigningKey::generate(Algorithm::EdDSA, kid).is_err(),
            "{kid}"
        );
    }
}

#[test]
fn parse_jwk_set_keeps_only_allowed_signature_keys() {
    let ed = SigningKey::generate(Algorithm::EdDSA, "ed")
        .unwrap()
        .verification_key()
        .to_jwk();
    let ec = SigningKey::generate(Algorithm::ES256, "ec")
        .unwrap()
        .verification_key()
        .to_jwk();
    let json = serde_json::json!({"keys": [
        ed, ec,
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
        {"kty": "OKP", "crv": "Ed25519", "x": ed.x, "use": "enc", "kid": "enc"},
        {"kty": "OKP", "crv": "Ed25519", "x": ed.x}
    ]});
    let keys = parse_jwk_set(&json.to_string()).unwrap();
    let mut kids: Vec<_> = keys.iter().map(|k| k.kid().to_owned()).collect();
    kids.sort();
    assert_eq!(kids, ["ec", "ed"]);
}
