//! The security checklist's (SECURITY.md) items 1-11 (token verification) and 23-24 (Biscuit), each as tests
//! that say what they prove. Bad tokens are made by hand (base64 + JSON + a signing key), so
//! each one differs from a token Writ accepts in exactly the way under test; every test also
//! shows the unchanged token passing, so a rejection cannot come from a broken helper.

use std::net::TcpListener;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::json;
use writ_token::biscuit_auth::builder::{Algorithm as BiscuitAlgorithm, BlockBuilder};
use writ_token::biscuit_auth::{Biscuit, KeyPair};
use writ_token::{
    Algorithm, Attenuation, BiscuitLimits, BiscuitRequest, BiscuitRootKey, KeySet, SigningKey,
    TokenError, VerifiedToken, attenuate, encode_access_token, mint_biscuit, parse_jwk_set,
    random_secret,
};

use super::support::*;

const METHOD: &str = "/writ.inventory.v1.InventoryService/GetItem";

fn assert_rejected(f: &Fixture, token: &str, expected: TokenError, case: &str) {
    assert_eq!(
        f.verifier.verify(token).map(|v| v.claims),
        Err(expected),
        "{case}"
    );
}

/// A call to `METHOD` on this service that needs `scope`.
fn request(method: &str, scope: &str) -> BiscuitRequest {
    BiscuitRequest {
        service: Some(AUDIENCE.into()),
        method: Some(method.into()),
        required_scopes: vec![scope.into()],
        policies: None,
    }
}

/// `token` narrowed by `attenuation`, as `writ attenuate` does it.
fn narrowed(token: &str, attenuation: Attenuation) -> String {
    attenuate(token, &attenuation).unwrap()
}

fn only_scopes(scopes: &[&str]) -> Attenuation {
    Attenuation {
        scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
        ..Attenuation::default()
    }
}

// 1. `alg: none` in any spelling, with or without a signature.

#[test]
fn alg_none_in_any_spelling_is_rejected() {
    let f = Fixture::new();
    assert_baseline_verifies(&f);
    for alg in ["none", "None", "NONE", "nOnE", "none ", ""] {
        let header = json_bytes(&patched(ed_header(), json!({ "alg": alg })));
        let payload = json_bytes(&claims_json());
        let unsigned = format!("{}.{}", b64(&header), b64(&payload));
        let signed_by_trusted_key = compact_raw(&header, &payload, sign_ed);
        for token in [
            format!("{unsigned}."),
            unsigned.clone(),
            signed_by_trusted_key,
        ] {
            let err = f.verifier.verify(&token).unwrap_err();
            assert!(
                matches!(err, TokenError::Malformed(_)),
                "alg {alg:?}: {err:?}"
            );
        }
    }
}

// 2. HS256 with the issuer's public key as the HMAC secret.

fn hmac(alg: &str, secret: &[u8], message: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(secret: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <M as Mac>::new_from_slice(secret).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        "HS256" => run::<Hmac<sha2::Sha256>>(secret, message),
        "HS384" => run::<Hmac<sha2::Sha384>>(secret, message),
        _ => run::<Hmac<sha2::Sha512>>(secret, message),
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_rejected() {
    let f = Fixture::new();
    assert_baseline_verifies(&f);
    let ed_public = f.ed.verification_key();
    let es_public = f.es.verification_key();
    let es_point = es_p256().verifying_key().to_encoded_point(false);
    // Every form of the public key a confused verifier might feed to HMAC.
    let secrets: Vec<(&str, Vec<u8>, &str)> = vec![
        ("raw Ed25519 key", unb64(&ed_public.to_jwk().x), ED_KID),
        (
            "Ed25519 x as text",
            ed_public.to_jwk().x.into_bytes(),
            ED_KID,
        ),
        (
            "Ed25519 JWK",
            serde_json::to_vec(&ed_public.to_jwk()).unwrap(),
            ED_KID,
        ),
        ("P-256 SEC1 point", es_point.as_bytes().to_vec(), ES_KID),
        (
            "P-256 JWK",
            serde_json::to_vec(&es_public.to_jwk()).unwrap(),
            ES_KID,
        ),
    ];
    for (what, secret, kid) in &secrets {
        for alg in ["HS256", "HS384", "HS512"] {
            let header = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
            let token = compact(&header, &claims_json(), |m| hmac(alg, secret, m));
            assert_rejected(
                &f,
                &token,
                TokenError::AlgorithmNotAllowed,
                &format!("{alg} keyed with the {what}"),
            );
        }
    }
}

// 3. `alg` not matching the trusted key: the key decides, never the header.

#[test]
fn alg_not_matching_the_trusted_key_is_rejected() {
    let f = Fixture::new();
    assert_baseline_verifies(&f);
    // Right signature, wrong claimed algorithm for the key named.
    let es_header_on_ed_key = compact(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": ED_KID}),
        &claims_json(),
        sign_es,
    );
    assert_rejected(
        &f,
        &es_header_on_ed_key,
        TokenError::AlgorithmNotAllowed,
        "ES256 header naming the Ed25519 key",
    );
    let ed_header_on_es_key = compact(
        &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ES_KID}),
        &claims_json(),
        sign_ed,
    );
    assert_rejected(
        &f,
        &ed_header_on_es_key,
        TokenError::AlgorithmNotAllowed,
        "EdDSA header naming the P-256 key",
    );
    // Algorithms jsonwebtoken knows but Writ does not allow, and names nobody knows.
    for alg in ["RS256", "PS256", "ES384", "HS256"] {
        let token = ed_token(json!({ "alg": alg }), json!({}));
        assert_rejected(&f, &token, TokenError::AlgorithmNotAllowed, alg);
    }
    for alg in ["ES512", "ES521", "Ed25519", "eddsa", "EDDSA", "RS1"] {
        let err = f
            .verifier
            .verify(&ed_token(json!({ "alg": alg }), json!({})))
            .unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{alg}: {err:?}");
    }
    let no_alg = ed_token(json!({ "alg": null }), json!({}));
    assert!(matches!(
        f.verifier.verify(&no_alg),
        Err(TokenError::Malformed(_))
    ));

    // The allow-list narrows further: a verifier configured for EdDSA only refuses a valid ES256
    // token that the default verifier accepts.
    assert!(f.verifier.verify(&f.es_jwt()).is_ok());
    let ed_only = Fixture::with_config(|c| c.algorithms = vec![Algorithm::EdDSA]);
    assert_rejected(
        &ed_only,
        &f.es_jwt(),
        TokenError::AlgorithmNotAllowed,
        "ES256 on an EdDSA-only verifier",
    );
}

// 4. Keys named by the token itself.

#[test]
fn jku_jwk_x5u_x5c_headers_are_rejected() {
    let f = Fixture::new();
    assert_baseline_verifies(&f);
    // Anything that fetched a key would connect here; nothing may.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    let attacker = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let attacker_jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": ED_KID,
        "x": b64(attacker.verifying_key().to_bytes()),
    });
    let certificate = "MIIBszCCAVmgAwIBAgIUYXR0YWNrZXI=";
    let forbidden = [
        json!({ "jku": url }),
        json!({ "x5u": url }),
        json!({ "jwk": attacker_jwk }),
        json!({ "x5c": [certificate] }),
        json!({ "crit": ["exp"] }),
        json!({ "b64": false }),
        json!({ "cty": "JWT" }),
        json!({ "zip": "DEF" }),
        json!({ "enc": "A256GCM" }),
    ];
    for patch in forbidden {
        // Signed by the trusted key: only the header parameter is wrong.
        let token = ed_token(patch.clone(), json!({}));
        assert_rejected(&f, &token, TokenError::ForbiddenHeader, &patch.to_string());
    }
    // The classic attack: the attacker signs with their own key and embeds it.
    let self_signed = compact(
        &patched(ed_header(), json!({ "jwk": attacker_jwk })),
        &claims_json(),
        |m| {
            use ed25519_dalek::Signer;
            attacker.sign(m).to_bytes().to_vec()
        },
    );
    assert_rejected(
        &f,
        &self_signed,
        TokenError::ForbiddenHeader,
        "self-signed with embedded jwk",
    );
    assert!(
        listener
            .accept()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "verifying a token must never connect to a URL the token names"
    );
}

// 5. Unknown or hostile key ids.

#[test]
fn unknown_or_hostile_kid_is_rejected() {
    let f = Fixture::new();
    assert_baseline_verifies(&f);
    let long = "k".repeat(4000);
    let kids = [
        "unknown",
        "K-ED",
        "k-ed ",
        " k-ed",
        "k-ed\u{0}",
        "k-ed\n",
        "",
        "../../../../etc/passwd",
        "/dev/stdin",
        "k-ed\" OR \"1\"=\"1",
        "' OR 1=1 --",
        "http://127.0.0.1/jwks",
        "%6B-ed",
        long.as_str(),
    ];
    for kid in kids {
        // Signed by the trusted key: only the key id is wrong.
        let token = ed_token(json!({ "kid": kid }), json!({}));
        assert_rejected(
            &f,
            &token,
            TokenError::UnknownKey,
            &format!("kid {:?}", &kid[..kid.len().min(40)]),
        );
    }
    assert_rejected(
        &f,
        &ed_token(json!({ "kid": null }), json!({})),
        TokenError::UnknownKey,
        "no kid",
    );
    for kid in [
        json!(1),
        json!(["k-ed"]),
        json!({"kid": "k-ed"}),
        json!(true),
    ] {
        let err = f
            .verifier
            .verify(&ed_token(json!({ "kid": kid }), json!({})))
            .unwrap_err();
        assert!(
            matches!(err, TokenError::Malformed(_)),
            "kid {kid}: {err:?}"
        );
    }
    // Key lookup is a map access in the trusted KeySet: writ-token has no refresh and no I/O,
    // so an unknown kid cannot make the verifier fetch anything, let alone once per request.
}

// 6 and 7. Token type, issuer and audience.

#[test]
fn wrong_typ_aud_iss_are_rejected() {
    let f = Fixture::new();
    assert_baseline_verifies(&f);

    // RFC 9068 section 4: only at+jwt. Media types compare case-insensitively (RFC 7515 4.1.9),
    // so "AT+JWT" and "application/at+jwt" are the same type and are accepted.
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let token = ed_token(json!({ "typ": typ }), json!({}));
        assert!(f.verifier.verify(&token).is_ok(), "typ {typ:?}");
    }
    for typ in [
        "JWT",
        "jwt",
        "",
        "at+jwt ",
        " at+jwt",
        "at+jwt\u{0}",
        "at+jwt; charset=utf-8",
        "application/jwt",
        "rt+jwt",
        "refresh+jwt",
        "id_token",
        "id+jwt",
        "logout+jwt",
        "secevent+jwt",
        "dpop+jwt",
        "token-introspection+jwt",
    ] {
        let token = ed_token(json!({ "typ": typ }), json!({}));
        assert_rejected(&f, &token, TokenError::WrongType, &format!("typ {typ:?}"));
    }
    assert_rejected(
        &f,
        &ed_token(json!({ "typ": null }), json!({})),
        TokenError::WrongType,
        "no typ",
    );
    for typ in [json!(1), json!(["at+jwt"])] {
        let err = f
            .verifier
            .verify(&ed_token(json!({ "typ": typ }), json!({})))
            .unwrap_err();
        assert!(
            matches!(err, TokenError::Malformed(_)),
            "typ {typ}: {err:?}"
        );
    }

    for iss in [
        "https://as.example/",
        "https://AS.example",
        "http://as.example",
        "https://as.example.evil",
        "https://evil.example",
        "",
    ] {
        let token = ed_token(json!({}), json!({ "iss": iss }));
        assert_rejected(&f, &token, TokenError::WrongIssuer, &format!("iss {iss:?}"));
    }

    for aud in [
        json!("orders"),
        json!("Inventory"),
        json!("inventory "),
        json!(["orders", "billing"]),
        json!([]),
        json!(""),
        json!(["inventory", ""]),
    ] {
        let token = ed_token(json!({}), json!({ "aud": aud }));
        assert_rejected(&f, &token, TokenError::WrongAudience, &format!("aud {aud}"));
    }
    // Several audiences including this one are fine.
    let token = ed_token(json!({}), json!({ "aud": ["orders", AUDIENCE] }));
    assert!(f.verifier.verify(&token).is_ok());
    for missing in ["aud", "iss"] {
        let token = ed_token(json!({}), json!({ missing: null }));
        assert!(
            matches!(f.verifier.verify(&token), Err(TokenError::BadClaims(_))),
            "missing {missing}"
        );
    }
    for aud in [json!(5), json!({"aud": AUDIENCE}), json!([AUDIENCE, 5])] {
        let token = ed_token(json!({}), json!({ "aud": aud }));
        assert!(
            matches!(f.verifier.verify(&token), Err(TokenError::BadClaims(_))),
            "aud {aud}"
        );
    }
}

#[test]
fn other_token_kinds_are_never_accepted_as_access_tokens() {
    let f = Fixture::new();
    assert_baseline_verifies(&f);
    // An OpenID Connect ID token from the same issuer and key: its typ says JWT.
    let id_token = compact(
        &json!({"alg": "EdDSA", "typ": "JWT", "kid": ED_KID}),
        &json!({
            "iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "exp": NOW + 300, "iat": NOW,
            "nonce": "n-0S6_WzA2Mj", "auth_time": NOW,
        }),
        sign_ed,
    );
    assert_rejected(&f, &id_token, TokenError::WrongType, "ID token");
    // Even relabelled at+jwt, an ID token lacks the access-token claims.
    let relabelled = compact(
        &ed_header(),
        &json!({
            "iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "exp": NOW + 300, "iat": NOW,
            "nonce": "n-0S6_WzA2Mj",
        }),
        sign_ed,
    );
    assert!(matches!(
        f.verifier.verify(&relabelled),
        Err(TokenError::BadClaims(_))
    ));
    // Writ's refresh tokens are opaque random strings: never a token that verifies.
    let refresh = random_secret();
    assert!(matches!(
        f.verifier.verify(&refresh),
        Err(TokenError::Malformed(_))
    ));
    // Each form only through its own door.
    assert!(matches!(
        f.verifier.verify_jwt(&f.biscuit()),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(
        f.verifier.verify_biscuit(&f.ed_jwt()),
        Err(TokenError::Malformed(_))
    ));
}

// 8. Time claims: type, range and both sides of the leeway.

#[test]
fn exp_as_string_float_negative_or_huge_is_rejected() {
    let f = Fixture::new();
    assert_baseline_verifies(&f);
    let bad = [
        json!("1800000300"),
        json!(1_800_000_300.5),
        json!(1.8000003e9),
        json!(-1),
        json!(-1_800_000_000),
        json!(writ_token::MAX_NUMERIC_DATE + 1),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1e300),
        json!(true),
        json!([NOW + 300]),
        json!({"$date": NOW + 300}),
    ];
    for claim in ["exp", "nbf", "iat"] {
        for value in &bad {
            let token = ed_token(json!({}), json!({ claim: value }));
            let err = f.verifier.verify(&token).unwrap_err();
            assert!(
                matches!(err, TokenError::BadClaims(_)),
                "{claim} = {value}: {err:?}"
            );
        }
    }
    for claim in ["exp", "iat"] {
        let token = ed_token(json!({}), json!({ claim: null }));
        assert!(
            matches!(f.verifier.verify(&token), Err(TokenError::BadClaims(_))),
            "missing {claim}"
        );
    }
    // `nbf` is optional: absent or null both mean "no lower bound".
    let token = ed_token(json!({}), json!({ "nbf": null }));
    assert!(f.verifier.verify(&token).is_ok());
    // Order and length of the lifetime.
    let token = ed_token(json!({}), json!({ "exp": NOW }));
    assert!(matches!(
        f.verifier.verify(&token),
        Err(TokenError::BadClaims(_))
    ));
    let token = ed_token(json!({}), json!({ "exp": NOW + 24 * 3600 + 1 }));
    assert_rejected(&f, &token, TokenError::LifetimeTooLong, "25-hour token");
}

#[test]
fn fixture_uses_the_default_leeway() {
    assert_eq!(Fixture::new().verifier.config().leeway, LEEWAY);
}

#[test]
fn leeway_is_honoured_on_both_sides() {
    let f = Fixture::new();
    let exp = NOW + 300;
    let token = f.ed_jwt();

    // exp: valid up to the last second of the leeway, expired from then on.
    f.clock.set(exp + LEEWAY - 1);
    assert!(
        f.verifier.verify(&token).is_ok(),
        "inside the leeway after exp"
    );
    f.clock.set(exp + LEEWAY);
    assert_rejected(&f, &token, TokenError::Expired, "at exp + leeway");
    f.clock.set(exp + 10 * LEEWAY);
    assert_rejected(&f, &token, TokenError::Expired, "long after exp");

    // nbf: accepted from leeway seconds before it, not earlier.
    let nbf = NOW + 100;
    let later = ed_token(json!({}), json!({ "nbf": nbf, "exp": nbf + 300 }));
    f.clock.set(nbf - LEEWAY);
    assert!(
        f.verifier.verify(&later).is_ok(),
        "inside the leeway before nbf"
    );
    f.clock.set(nbf - LEEWAY - 1);
    assert_rejected(&f, &later, TokenError::NotYetValid, "before nbf - leeway");

    // iat in the future gets the same tolerance.
    let iat = NOW + 100;
    let issued_later = ed_token(
        json!({}),
        json!({ "iat": iat, "nbf": null, "exp": iat + 300 }),
    );
    f.clock.set(iat - LEEWAY);
    assert!(
        f.verifier.verify(&issued_later).is_ok(),
        "iat inside the leeway"
    );
    f.clock.set(iat - LEEWAY - 1);
    assert_rejected(
        &f,
        &issued_later,
        TokenError::NotYetValid,
        "iat in the future",
    );

    // A Biscuit's expiry gets the same leeway as a JWT's: its Datalog clock lags by the leeway,
    // so it is accepted up to the last second of the leeway and Expired from then on.
    let biscuit = f.biscuit();
    f.clock.set(exp + LEEWAY - 1);
    assert!(
        f.verifier.verify(&biscuit).is_ok(),
        "Biscuit inside the leeway after exp"
    );
    f.clock.set(exp + LEEWAY);
    assert_rejected(&f, &biscuit, TokenError::Expired, "Biscuit at exp + leeway");
}

// 9. Structural damage, without panicking.

fn json_serializations(token: &str) -> [String; 2] {
    let [h, p, s]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().unwrap();
    [
        json!({"payload": p, "signatures": [{"protected": h, "signature": s}]}).to_string(),
        json!({"payload": p, "protected": h, "signature": s}).to_string(),
    ]
}

#[test]
fn structural_damage_is_rejected_without_panicking() {
    let f = Fixture::new();
    let token = f.ed_jwt();
    assert!(f.verifier.verify(&token).is_ok());
    let [h, p, s]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().unwrap();

    let mut damaged: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, t: String| damaged.push((what.to_owned(), t));
    // Segment counts.
    for (what, t) in [
        ("empty", String::new()),
        ("one dot", ".".into()),
        ("two dots", "..".into()),
        ("three dots", "...".into()),
        ("header only", h.into()),
        ("two segments", format!("{h}.{p}")),
        ("empty signature", format!("{h}.{p}.")),
        ("empty header", format!(".{p}.{s}")),
        ("four segments", format!("{token}.{s}")),
        ("trailing dot", format!("{token}.")),
        ("leading dot", format!(".{token}")),
        ("five segments", format!("{h}.{h}.{p}.{p}.{s}")),
    ] {
        add(what, t);
    }
    // Padding and characters outside base64url.
    for (i, segment) in [h, p, s].iter().enumerate() {
        for suffix in ["=", "==", "==="] {
            let mut parts = [h, p, s].map(str::to_owned);
            parts[i] = format!("{segment}{suffix}");
            add(&format!("padding on segment {i}"), parts.join("."));
        }
        for bad in ['+', '/', '*', '!', '~', '%', 'é', '\u{0}', '.'] {
            let mut parts = [h, p, s].map(str::to_owned);
            parts[i].insert(parts[i].len() / 2, bad);
            add(&format!("{bad:?} in segment {i}"), parts.join("."));
        }
    }
    // Whitespace.
    for (what, t) in [
        ("leading space", format!(" {token}")),
        ("trailing space", format!("{token} ")),
        ("trailing newline", format!("{token}\n")),
        ("CRLF", format!("{token}\r\n")),
        ("tab inside", format!("{h}.\t{p}.{s}")),
        ("space inside", format!("{h} .{p}.{s}")),
        ("Bearer prefix", format!("Bearer {token}")),
    ] {
        add(what, t);
    }
    // JSON serialization instead of compact.
    for t in json_serializations(&token) {
        add("JSON serialization", t);
    }
    // Invalid UTF-8 in the header (signed, so only the encoding is wrong).
    let mut header = json_bytes(&ed_header());
    header.insert(header.len() - 2, 0xff);
    add(
        "invalid UTF-8 in header",
        compact_raw(&header, &json_bytes(&claims_json()), sign_ed),
    );
    // Headers that are not JSON objects.
    for header in [
        b"[]".to_vec(),
        b"null".to_vec(),
        b"\"at+jwt\"".to_vec(),
        b"{".to_vec(),
        b"{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k-ed\"}garbage".to_vec(),
        format!("{}{}", "[".repeat(2000), "]".repeat(2000)).into_bytes(),
    ] {
        add(
            "header not a JSON object",
            compact_raw(&header, &json_bytes(&claims_json()), sign_ed),
        );
    }
    // Oversized, by a byte and by a lot, before any decoding.
    let max = f.verifier.config().max_token_bytes;
    add(
        "one byte over the limit",
        format!("{token}{}", "A".repeat(max + 1 - token.len())),
    );
    add("a megabyte", format!("{h}.{}.{s}", "A".repeat(1 << 20)));

    for (what, t) in &damaged {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            (
                f.verifier.verify(t).map(|v| v.claims),
                f.verifier.verify_jwt(t).map(|v| v.claims),
                f.verifier.verify_jws(t).map(|v| v.payload),
            )
        }));
        let (any, jwt, jws) = outcome.unwrap_or_else(|_| panic!("{what}: the verifier panicked"));
        assert!(
            any.is_err() && jwt.is_err() && jws.is_err(),
            "{what}: accepted"
        );
        let expect_too_large = t.len() > max;
        assert_eq!(
            jwt.unwrap_err() == TokenError::TooLarge,
            expect_too_large,
            "{what}"
        );
    }

    // Signed payloads that are damaged inside: the signature holds, the claims do not parse.
    let mut payload = json_bytes(&claims_json());
    let at = payload.iter().position(|&b| b == b'a').unwrap();
    payload[at] = 0xc3; // a lone UTF-8 lead byte inside a string
    let payloads = [
        payload,
        b"[]".to_vec(),
        b"null".to_vec(),
        b"".to_vec(),
        format!("{}{}", "[".repeat(2000), "]".repeat(2000)).into_bytes(),
        json_bytes(&claims_json())
            .into_iter()
            .chain(*b"{}")
            .collect(),
        // Duplicate claim: the first would pass, the second is what other parsers may keep.
        br#"{"iss":"https://as.example","sub":"alice","aud":"inventory","exp":1800000300,"exp":1,"iat":1800000000,"jti":"t","client_id":"c"}"#.to_vec(),
    ];
    for payload in payloads {
        let t = compact_raw(&json_bytes(&ed_header()), &payload, sign_ed);
        let outcome = catch_unwind(AssertUnwindSafe(|| f.verifier.verify(&t).map(|v| v.claims)));
        let result = outcome.unwrap_or_else(|_| panic!("the verifier panicked on a payload"));
        assert!(
            matches!(result, Err(TokenError::BadClaims(_))),
            "payload {:?}: {result:?}",
            String::from_utf8_lossy(&payload[..payload.len().min(60)])
        );
    }
}

#[test]
fn duplicate_header_parameters_are_rejected() {
    let f = Fixture::new();
    assert_baseline_verifies(&f);
    // RFC 7515 section 5.2: a header with duplicate names must be rejected, or parsers disagree
    // on which value counts.
    for header in [
        r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k-ed","alg":"none"}"#,
        r#"{"alg":"EdDSA","typ":"at+jwt","kid":"unknown","kid":"k-ed"}"#,
        r#"{"alg":"EdDSA","typ":"JWT","kid":"k-ed","typ":"at+jwt"}"#,
    ] {
        let token = compact_raw(header.as_bytes(), &json_bytes(&claims_json()), sign_ed);
        assert!(
            matches!(f.verifier.verify(&token), Err(TokenError::Malformed(_))),
            "{header}"
        );
    }
}

// 10. Signature edge cases.

/// A valid ES256 token's signing input, P-256 signature and header/payload segments.
fn es_parts() -> (String, p256::ecdsa::Signature) {
    use p256::ecdsa::signature::Signer;
    let input = format!(
        "{}.{}",
        b64(json_bytes(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": ES_KID})
        )),
        b64(json_bytes(&claims_json()))
    );
    let signature: p256::ecdsa::Signature = es_p256().sign(input.as_bytes());
    (input, signature)
}

#[test]
fn der_signature_instead_of_p1363_is_rejected() {
    let f = Fixture::new();
    let (input, signature) = es_parts();
    let p1363 = format!("{input}.{}", b64(signature.to_bytes()));
    assert!(f.verifier.verify(&p1363).is_ok(), "the P1363 form verifies");
    let der = format!("{input}.{}", b64(signature.to_der()));
    assert_rejected(&f, &der, TokenError::BadSignature, "DER signature");
}

#[test]
fn ecdsa_zero_and_out_of_range_signatures_are_rejected() {
    let f = Fixture::new();
    let (input, signature) = es_parts();
    let n =
        hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551").unwrap();
    let zero = [0u8; 32].to_vec();
    let mut one = [0u8; 32].to_vec();
    one[31] = 1;
    let (r, s) = signature.split_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("r = s = 0", [zero.clone(), zero.clone()].concat()),
        ("r = 0", [zero.clone(), s.to_vec()].concat()),
        ("s = 0", [r.to_vec(), zero.clone()].concat()),
        ("r = s = 1", [one.clone(), one.clone()].concat()),
        ("r = n", [n.clone(), s.to_vec()].concat()),
        ("s = n", [r.to_vec(), n.clone()].concat()),
        ("r = s = n", [n.clone(), n.clone()].concat()),
        ("all ones", vec![0xff; 64]),
        ("63 bytes", signature.to_bytes()[..63].to_vec()),
        (
            "65 bytes",
            [signature.to_bytes().to_vec(), vec![0]].concat(),
        ),
        ("r and s swapped", [s.to_vec(), r.to_vec()].concat()),
        ("empty-ish", vec![0]),
    ];
    for (what, sig) in cases {
        let token = format!("{input}.{}", b64(sig));
        assert_rejected(&f, &token, TokenError::BadSignature, what);
    }
}

/// The order of the Ed25519 group, little-endian.
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

#[test]
fn non_canonical_ed25519_signatures_are_rejected() {
    let f = Fixture::new();
    let token = f.ed_jwt();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = unb64(sig);
    // S + L verifies the same equation; a strict verifier must refuse S >= L (malleability).
    let mut s_plus_l = sig.clone();
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(sig[32 + i]) + u16::from(ED25519_L[i]) + carry;
        s_plus_l[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    let mut s_all_ones = sig.clone();
    s_all_ones[32..].fill(0xff);
    let mut r_flipped = sig.clone();
    r_flipped[0] ^= 1;
    for (what, bad) in [
        ("S + L", s_plus_l),
        ("S = 2^256 - 1", s_all_ones),
        ("R altered", r_flipped),
        ("all zero", vec![0; 64]),
        ("63 bytes", sig[..63].to_vec()),
        ("65 bytes", [sig.clone(), vec![0]].concat()),
    ] {
        let token = format!("{input}.{}", b64(bad));
        assert_rejected(&f, &token, TokenError::BadSignature, what);
    }
}

#[test]
fn small_order_ed25519_keys_are_never_trusted() {
    // With a small-order public key A, [s]B = R + [k]A holds for forged (R, s) whatever the
    // message (e.g. A = identity: R = B, s = 1), so such a key must never become trusted.
    let identity = {
        let mut y = [0u8; 32];
        y[0] = 1;
        y
    };
    let order_two = {
        let mut y = [0xff; 32];
        y[0] = 0xec;
        y[31] = 0x7f;
        y
    };
    for (what, point) in [("identity", identity), ("order 2", order_two)] {
        let from_components = writ_token::VerificationKey::from_components(
            "weak".into(),
            Algorithm::EdDSA,
            &point,
            &[],
        );
        assert!(
            matches!(from_components, Err(TokenError::InvalidKey(_))),
            "{what}: from_components"
        );
        let jwks =
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": b64(point)}]});
        assert!(
            parse_jwk_set(&jwks.to_string()).unwrap().is_empty(),
            "{what}: parse_jwk_set"
        );
    }
}

// 11. Keys that are no longer trusted.

#[test]
fn token_signed_by_a_key_no_longer_trusted_is_rejected() {
    let f = Fixture::new();
    let old_jwt = f.ed_jwt();
    let old_biscuit = f.biscuit();
    assert!(f.verifier.verify(&old_jwt).is_ok());
    assert!(f.verifier.verify(&old_biscuit).is_ok());

    // Rotation: the old key is dropped from the trusted set.
    let new = SigningKey::generate(Algorithm::EdDSA, "k-ed-2").unwrap();
    let new_root = BiscuitRootKey::generate(ROOT_ID + 1);
    let mut keys = KeySet::new();
    keys.insert_jwt(new.verification_key());
    keys.insert_jwt(f.es.verification_key());
    keys.insert_biscuit(new_root.public());
    f.verifier.set_keys(keys.clone());
    assert_rejected(&f, &old_jwt, TokenError::UnknownKey, "JWT after rotation");
    assert_rejected(
        &f,
        &old_biscuit,
        TokenError::UnknownKey,
        "Biscuit after rotation",
    );
    let fresh = encode_access_token(&new, &claims()).unwrap();
    assert!(f.verifier.verify(&fresh).is_ok(), "the new key works");

    // The same key id now names another key: old tokens no longer verify.
    let reused = SigningKey::generate(Algorithm::EdDSA, ED_KID).unwrap();
    let reused_root = BiscuitRootKey::generate(ROOT_ID);
    let mut keys = KeySet::new();
    keys.insert_jwt(reused.verification_key());
    keys.insert_biscuit(reused_root.public());
    f.verifier.set_keys(keys);
    assert_rejected(&f, &old_jwt, TokenError::BadSignature, "JWT, key id reused");
    assert_rejected(
        &f,
        &old_biscuit,
        TokenError::BadSignature,
        "Biscuit, root id reused",
    );

    // A JWKS refreshed without the key (revoked) works the same way.
    let jwks = json!({ "keys": [new.verification_key().to_jwk()] });
    let mut keys = KeySet::new();
    for key in parse_jwk_set(&jwks.to_string()).unwrap() {
        keys.insert_jwt(key);
    }
    f.verifier.set_keys(keys);
    assert_rejected(&f, &old_jwt, TokenError::UnknownKey, "JWT, kid revoked");
}

// 23. Biscuit: damaged, foreign, hostile.

/// Flips every bit and cuts at every length of `token`'s bytes. No cut verifies. A flip may only
/// verify if it leaves the token's meaning untouched: protobuf tolerates some re-encodings of the
/// unsigned envelope (an unknown field number in place of a field at its default value, say), so
/// such a copy must decode to exactly the original token, which biscuit-auth's own encoding of
/// it shows byte for byte. Returns how many flips were such encoding-only variants.
fn assert_every_bit_flip_and_truncation_fails(
    f: &Fixture,
    token: &str,
    verify: impl Fn(&str) -> Result<VerifiedToken, TokenError>,
    what: &str,
) -> usize {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE;
    let bytes = URL_SAFE.decode(token).unwrap();
    let original = verify(token).unwrap();
    let mut encoding_only = 0;
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[i] ^= 1 << bit;
            let Ok(verified) = verify(&URL_SAFE.encode(&flipped)) else {
                continue;
            };
            let reencoded = Biscuit::from(&flipped, f.root_public())
                .unwrap()
                .to_vec()
                .unwrap();
            assert!(
                reencoded == bytes
                    && verified.claims == original.claims
                    && verified.revocation_ids == original.revocation_ids,
                "{what}: bit {bit} of byte {i} flipped, accepted as a different token"
            );
            encoding_only += 1;
        }
    }
    for len in 0..bytes.len() {
        let result = verify(&URL_SAFE.encode(&bytes[..len]));
        assert!(
            result.is_err(),
            "{what}: truncated to {len} bytes, accepted"
        );
    }
    eprintln!(
        "{what}: {} bit flips and {} truncations; {encoding_only} flips only re-encoded the \
         envelope (same token), all others rejected",
        bytes.len() * 8,
        bytes.len()
    );
    encoding_only
}

#[test]
fn truncated_or_bit_flipped_biscuits_are_rejected() {
    let f = Fixture::new();
    let token = f.biscuit();
    assert!(f.verifier.verify_biscuit(&token).is_ok());
    // Flipping the tag of `PublicKey.algorithm = 0` (Ed25519) to an unknown field number is one
    // such re-encoding: the field is then absent and defaults to the same 0. Anything that names
    // a Biscuit must therefore use its revocation ids, as Writ does, never the bytes of its text.
    let verify = |t: &str| f.verifier.verify_biscuit(t);
    let variants = assert_every_bit_flip_and_truncation_fails(&f, &token, verify, "authority only");
    assert!(variants < 16, "{variants} flips kept the token valid");

    let read_only = narrowed(&token, only_scopes(&["inventory.read"]));
    assert!(f.verifier.verify_biscuit(&read_only).is_ok());
    let variants =
        assert_every_bit_flip_and_truncation_fails(&f, &read_only, verify, "one attenuation block");
    assert!(variants < 16, "{variants} flips kept the token valid");
}

#[test]
fn tampered_third_party_blocks_are_rejected() {
    let f = Fixture::new();
    let biscuit = Biscuit::from_base64(f.biscuit(), f.root_public()).unwrap();
    let third_party = KeyPair::new_with_algorithm(BiscuitAlgorithm::Ed25519);
    let block = biscuit
        .third_party_request()
        .unwrap()
        .create_block(
            &third_party.private(),
            BlockBuilder::new()
                .code(r#"check if method("/writ.inventory.v1.InventoryService/GetItem");"#)
                .unwrap(),
        )
        .unwrap();
    let with_third_party = biscuit
        .append_third_party(third_party.public(), block)
        .unwrap()
        .to_base64()
        .unwrap();
    // Untouched, it verifies and its check applies.
    let read = |method: &str| request(method, "inventory.read");
    assert!(
        f.verifier
            .verify_biscuit_for(&with_third_party, &read(METHOD))
            .is_ok()
    );
    assert_eq!(
        f.verifier
            .verify_biscuit_for(&with_third_party, &read("/other.v1.Other/Call"))
            .map(|v| v.claims),
        Err(TokenError::Denied)
    );
    let verify = |t: &str| f.verifier.verify_biscuit_for(t, &read(METHOD));
    let variants =
        assert_every_bit_flip_and_truncation_fails(&f, &with_third_party, verify, "third-party");
    assert!(variants < 16, "{variants} flips kept the token valid");
}

#[test]
fn biscuit_from_unknown_root_key_is_rejected() {
    let f = Fixture::new();
    assert!(f.verifier.verify(&f.biscuit()).is_ok());
    // Same root key id, another key: the signature fails.
    let impostor = BiscuitRootKey::generate(ROOT_ID);
    let forged = mint_biscuit(&impostor, &claims()).unwrap();
    assert_rejected(&f, &forged, TokenError::BadSignature, "same id, other key");
    // A root key id nobody trusts.
    let stranger = BiscuitRootKey::generate(ROOT_ID + 7);
    let foreign = mint_biscuit(&stranger, &claims()).unwrap();
    assert_rejected(&f, &foreign, TokenError::UnknownKey, "unknown root key id");
    // No root key id at all, even if signed by the trusted key.
    let root_keypair = writ_token::biscuit_auth::KeyPair::from(
        &writ_token::biscuit_auth::PrivateKey::from_bytes(
            &f.root.secret_bytes(),
            BiscuitAlgorithm::Ed25519,
        )
        .unwrap(),
    );
    let anonymous = Biscuit::builder()
        .code(r#"issuer("https://as.example"); subject("alice");"#)
        .unwrap()
        .build(&root_keypair)
        .unwrap()
        .to_base64()
        .unwrap();
    assert_rejected(&f, &anonymous, TokenError::UnknownKey, "no root key id");
}

/// Appends a raw block of Datalog, as any holder of a token can.
fn append_block(f: &Fixture, token: &str, code: &str) -> String {
    Biscuit::from_base64(token, f.root_public())
        .unwrap()
        .append(BlockBuilder::new().code(code).unwrap())
        .unwrap()
        .to_base64()
        .unwrap()
}

/// Runs `verify` on another thread and fails if it takes longer than `bound`.
fn within<T: Send + 'static>(bound: Duration, verify: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(verify());
    });
    rx.recv_timeout(bound)
        .unwrap_or_else(|_| panic!("verification still running after {bound:?}"))
}

#[test]
fn hostile_datalog_hits_run_limits_not_a_hang() {
    let f = Fixture::new();
    let token = f.biscuit();
    let thirty: String = (0..30).map(|i| format!("n({i});")).collect();
    // Each of these costs seconds to hours of evaluation in one rule application or one check
    // query, where biscuit-auth does not look at its clock; Writ refuses them before running.
    let hostile = [
        (
            "rule generating 27,000 facts",
            format!("{thirty} big($a, $b, $c) <- n($a), n($b), n($c);"),
        ),
        (
            "seven-way join rule producing nothing",
            format!(
                "{thirty} none($a) <- n($a), n($b), n($c), n($d), n($e), n($f), n($g), \
                 $a + $b + $c + $d + $e + $f + $g < 0;"
            ),
        ),
        (
            "seven-way join check",
            format!(
                "{thirty} check if n($a), n($b), n($c), n($d), n($e), n($f), n($g), \
                 $a + $b + $c + $d + $e + $f + $g < 0;"
            ),
        ),
        (
            "join over the authority's own facts",
            "check if scope($a), scope($b), scope($c), scope($d), scope($e), scope($f), \
             $a == \"none\";"
                .to_owned(),
        ),
        ("facts only", thirty.clone()),
        // Closures run inside one expression, where no limit looks at the clock: three nested
        // over a thousand elements each is 10^9 evaluations.
        (
            "nested closures over large arrays",
            format!(
                "check if time($t), {a}.all($x -> {a}.all($y -> {a}.any($z -> $x + $y == $z)));",
                a = format!(
                    "[{}]",
                    (0..300)
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            ),
        ),
        (
            "one small closure",
            r#"check if scope($s), ["inventory.read"].any($x -> $x == $s);"#.to_owned(),
        ),
        (
            "a regular expression (compiled per evaluation)",
            r#"check if scope($s), $s.matches("(?:[a-z0-9]|x|y){2500}");"#.to_owned(),
        ),
        (
            "a foreign function",
            "check if scope($s), $s.extern::probe();".to_owned(),
        ),
        (
            "more operations than a query may hold",
            format!("check if scope($s), {} == 65;", vec!["1"; 65].join(" + ")),
        ),
        (
            "more collection elements than a query may hold",
            format!(
                "check if scope($s), {{{}}}.contains(1);",
                (0..300)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
        (
            "more checks than a block may hold",
            "check if scope($s);".repeat(33),
        ),
    ];
    let f = std::sync::Arc::new(f);
    for (what, code) in hostile {
        let token = append_block(&f, &token, &code);
        let verifier = f.clone();
        let started = Instant::now();
        let result = within(Duration::from_secs(2), move || {
            verifier.verifier.verify(&token).map(|v| v.claims)
        });
        assert!(
            matches!(result, Err(TokenError::InvalidAttenuation(_))),
            "{what}: {result:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(500), "{what}");
    }

    // The block count is bounded before any signature is checked: a token with too many blocks
    // is refused as too large even when a signature is broken.
    let mut long = token.clone();
    for _ in 0..16 {
        long = append_block(&f, &long, "check if time($t);");
    }
    assert_rejected(&f, &long, TokenError::TooLarge, "17 blocks");
    let mut raw = Biscuit::from_base64(&long, f.root_public())
        .unwrap()
        .to_vec()
        .unwrap();
    let last = raw.len() - 40;
    raw[last] ^= 1;
    use base64::Engine;
    let broken = base64::engine::general_purpose::URL_SAFE.encode(raw);
    assert_rejected(
        &f,
        &broken,
        TokenError::TooLarge,
        "17 blocks, one signature broken",
    );

    // The worst a holder can still do: blocks full of the largest checks allowed, up to the
    // size limit. Bounded: done (allowed, refused or cut by the time limit) within 250 ms.
    let heavy_check = format!(
        "check if scope($s), {{{set}}}.union({{{set}}}).intersection({{{set}}}).length() > 0 \
         || $s.starts_with(\"inventory\");\n",
        set = (0..80).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    );
    let mut heavy = token.clone();
    loop {
        let next = append_block(&f, &heavy, &heavy_check.repeat(4));
        if next.len() > writ_token::MAX_BISCUIT_LEN {
            break;
        }
        heavy = next;
    }
    assert!(
        heavy.len() > writ_token::MAX_BISCUIT_LEN / 2,
        "the test token is heavy"
    );
    let verifier = f.clone();
    let started = Instant::now();
    let result = within(Duration::from_secs(2), move || {
        verifier.verifier.verify(&heavy).map(|v| v.claims)
    });
    assert!(
        result.is_ok() || result == Err(TokenError::RunLimit),
        "{result:?}"
    );
    eprintln!(
        "heaviest allowed Biscuit: {result:?} in {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    // The limits apply to every Biscuit, whatever its blocks: a verifier allowing no time at
    // all refuses even a plain token.
    let tight = Fixture::with_config(|c| {
        c.biscuit_limits = BiscuitLimits {
            max_time: Duration::ZERO,
            ..BiscuitLimits::default()
        }
    });
    assert_eq!(
        tight.verifier.verify(&tight.biscuit()).map(|v| v.claims),
        Err(TokenError::RunLimit)
    );

    // Writ's own attenuation, and the same checks written by hand, are still accepted.
    let own = append_block(
        &f,
        &token,
        r#"reject if required_scope($s), !{"inventory.read"}.contains($s);
           check if time($t), $t <= 2030-01-01T00:00:00Z;
           check if scope("inventory.read") or scope("admin");"#,
    );
    assert!(f.verifier.verify(&own).is_ok());
}

#[test]
fn attenuated_biscuit_cannot_regain_scopes() {
    let f = Fixture::new();
    let full = f.biscuit();
    let read_only = narrowed(&full, only_scopes(&["inventory.read"]));
    let request = |scope: &str| request(METHOD, scope);
    assert!(
        f.verifier
            .verify_biscuit_for(&full, &request("inventory.write"))
            .is_ok()
    );
    assert_eq!(
        f.verifier.verify(&read_only).unwrap().claims.scope,
        "inventory.read"
    );
    assert!(
        f.verifier
            .verify_biscuit_for(&read_only, &request("inventory.read"))
            .is_ok()
    );

    // Widening again by a second attenuation block changes nothing: blocks only add checks.
    let widened = narrowed(
        &read_only,
        only_scopes(&["inventory.read", "inventory.write", "admin"]),
    );
    for token in [&read_only, &widened] {
        for scope in ["inventory.write", "admin"] {
            assert_eq!(
                f.verifier
                    .verify_biscuit_for(token, &request(scope))
                    .map(|v| v.claims),
                Err(TokenError::Denied),
                "{scope}"
            );
        }
    }
    assert_eq!(
        f.verifier.verify(&widened).unwrap().claims.scope,
        "inventory.read"
    );

    // Facts claiming rights in a later block are not read: the block is refused outright, and a
    // block that only checks cannot add a scope.
    let claimed = append_block(
        &f,
        &read_only,
        r#"scope("inventory.write"); scope("admin");"#,
    );
    assert!(matches!(
        f.verifier
            .verify_biscuit_for(&claimed, &request("inventory.write")),
        Err(TokenError::InvalidAttenuation(_))
    ));
    let vacuous = append_block(&f, &read_only, "check if true;");
    assert_eq!(
        f.verifier
            .verify_biscuit_for(&vacuous, &request("inventory.write"))
            .map(|v| v.claims),
        Err(TokenError::Denied)
    );
}

#[test]
fn method_and_service_attenuation_is_enforced_for_requests() {
    let f = Fixture::new();
    let narrowed = narrowed(
        &f.biscuit(),
        Attenuation {
            methods: Some(vec![METHOD.into()]),
            services: Some(vec![AUDIENCE.into()]),
            expires_at: Some(NOW + 60),
            ..Attenuation::default()
        },
    );
    let request = |service: &str, method: &str| BiscuitRequest {
        service: Some(service.into()),
        ..request(method, "inventory.read")
    };
    assert!(
        f.verifier
            .verify_biscuit_for(&narrowed, &request(AUDIENCE, METHOD))
            .is_ok()
    );
    for (service, method) in [
        (AUDIENCE, "/writ.inventory.v1.InventoryService/DeleteItem"),
        (AUDIENCE, "/writ.inventory.v1.InventoryService/GetItem/"),
        (AUDIENCE, "/WRIT.inventory.v1.InventoryService/GetItem"),
        ("billing", METHOD),
    ] {
        assert_eq!(
            f.verifier
                .verify_biscuit_for(&narrowed, &request(service, method))
                .map(|v| v.claims),
            Err(TokenError::Denied),
            "{service} {method}"
        );
    }
    // The narrowed expiry holds too (with the usual leeway), though the authority's is later.
    f.clock.set(NOW + 60 + LEEWAY - 1);
    assert!(
        f.verifier
            .verify_biscuit_for(&narrowed, &request(AUDIENCE, METHOD))
            .is_ok()
    );
    f.clock.set(NOW + 61 + LEEWAY);
    assert_eq!(
        f.verifier
            .verify_biscuit_for(&narrowed, &request(AUDIENCE, METHOD))
            .map(|v| v.claims),
        Err(TokenError::Denied)
    );
    // A request that names no method leaves method attenuation vacuous (see biscuit.rs): a
    // service must pass its method for the narrowing to bite.
    f.clock.set(NOW);
    let no_method = BiscuitRequest {
        method: None,
        ..request(AUDIENCE, METHOD)
    };
    assert!(f.verifier.verify_biscuit_for(&narrowed, &no_method).is_ok());
}

// 24. Every block's revocation id.

#[test]
fn every_block_revocation_id_is_reported() {
    let f = Fixture::new();
    let authority = f.biscuit();
    let one = narrowed(&authority, only_scopes(&["inventory.read"]));
    let two = narrowed(
        &one,
        Attenuation {
            methods: Some(vec![METHOD.into()]),
            ..Attenuation::default()
        },
    );
    let ids = |token: &str| f.verifier.verify(token).unwrap().revocation_ids;
    let (a, b, c) = (ids(&authority), ids(&one), ids(&two));
    assert_eq!((a.len(), b.len(), c.len()), (1, 2, 3));
    // Each block keeps its id as blocks are added; a revocation list can name any of them.
    assert_eq!(b[..1], a[..]);
    assert_eq!(c[..2], b[..]);
    let mut distinct = c.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "revocation ids must differ per block");
    for id in &c {
        assert_eq!(id.len(), 128, "hex of a 64-byte signature");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    // They are the ids biscuit-auth computes, and the request path reports them too.
    let expected: Vec<String> = Biscuit::from_base64(&two, f.root_public())
        .unwrap()
        .revocation_identifiers()
        .iter()
        .map(hex::encode)
        .collect();
    assert_eq!(c, expected);
    assert_eq!(
        f.verifier
            .verify_biscuit_for(&two, &request(METHOD, "inventory.read"))
            .unwrap()
            .revocation_ids,
        expected
    );
}
