//! Minting and verifying Writ's access tokens.
//!
//! Targets: an EdDSA JWT verifies in at most 50 µs; a Biscuit with one attenuation block verifies
//! and authorizes a request in at most 150 µs. Run with `cargo bench -p writ-token --bench verify`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use writ_token::{
    AccessClaims, Algorithm, Attenuation, BiscuitRequest, BiscuitRootKey, KeySet, ManualClock,
    SigningKey, TokenVerifier, VerifierConfig, attenuate, encode_access_token, mint_biscuit,
};

const NOW: i64 = 1_800_000_000;
const METHOD: &str = "/writ.inventory.v1.InventoryService/GetItem";

struct Setup {
    ed: SigningKey,
    es: SigningKey,
    root: BiscuitRootKey,
    verifier: TokenVerifier,
    claims: AccessClaims,
}

fn setup() -> Setup {
    let ed = SigningKey::generate(Algorithm::EdDSA, "k-ed").unwrap();
    let es = SigningKey::generate(Algorithm::ES256, "k-es").unwrap();
    let root = BiscuitRootKey::generate(1);
    let mut keys = KeySet::new();
    keys.insert_jwt(ed.verification_key());
    keys.insert_jwt(es.verification_key());
    keys.insert_biscuit(root.public());
    let verifier = TokenVerifier::new(
        VerifierConfig::new(vec!["https://as.example".into()], Some("inventory".into())),
        keys,
        Arc::new(ManualClock::new(NOW)),
    );
    let claims = AccessClaims {
        iss: "https://as.example".into(),
        sub: "alice".into(),
        aud: vec!["inventory".into()],
        iat: NOW,
        nbf: Some(NOW),
        exp: NOW + 300,
        jti: "Wd2oGZb0yS3sxb3KcFQm2A".into(),
        client_id: "orders".into(),
        scope: "inventory.read inventory.write".into(),
        gid: Some("hV3S1wcT0uG6ZkLq2J9ZNA".into()),
        act: None,
        may_act: None,
        cnf: None,
    };
    Setup {
        ed,
        es,
        root,
        verifier,
        claims,
    }
}

fn jwt(c: &mut Criterion) {
    let s = setup();
    let eddsa = encode_access_token(&s.ed, &s.claims).unwrap();
    let es256 = encode_access_token(&s.es, &s.claims).unwrap();
    assert!(s.verifier.verify_jwt(&eddsa).is_ok());
    assert!(s.verifier.verify_jwt(&es256).is_ok());

    c.bench_function("jwt_verify_eddsa", |b| {
        b.iter(|| s.verifier.verify_jwt(black_box(&eddsa)).unwrap())
    });
    c.bench_function("jwt_verify_es256", |b| {
        b.iter(|| s.verifier.verify_jwt(black_box(&es256)).unwrap())
    });
    c.bench_function("jwt_mint_eddsa", |b| {
        b.iter(|| encode_access_token(&s.ed, black_box(&s.claims)).unwrap())
    });
}

fn biscuit(c: &mut Criterion) {
    let s = setup();
    let authority = mint_biscuit(&s.root, &s.claims).unwrap();
    let attenuated = attenuate(
        &authority,
        &Attenuation {
            scopes: Some(vec!["inventory.read".into()]),
            methods: Some(vec![METHOD.into()]),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let request = BiscuitRequest {
        service: Some("inventory".into()),
        method: Some(METHOD.into()),
        required_scopes: vec!["inventory.read".into()],
        policies: None,
    };
    assert!(s.verifier.verify_biscuit_for(&attenuated, &request).is_ok());
    assert!(s.verifier.verify_biscuit(&authority).is_ok());

    c.bench_function("biscuit_mint", |b| {
        b.iter(|| mint_biscuit(&s.root, black_box(&s.claims)).unwrap())
    });
    c.bench_function("biscuit_verify_authorize_one_block", |b| {
        b.iter(|| {
            s.verifier
                .verify_biscuit_for(black_box(&attenuated), &request)
                .unwrap()
        })
    });
    c.bench_function("biscuit_verify_authority_only", |b| {
        b.iter(|| s.verifier.verify_biscuit(black_box(&authority)).unwrap())
    });

    // The floor biscuit-auth itself sets, without any Writ code: decoding and checking every
    // block signature, then the smallest useful authorization (time, one scope check, allow).
    let root = writ_token::biscuit_auth::PublicKey::from_bytes_hex(
        &s.root.public().to_hex(),
        writ_token::biscuit_auth::Algorithm::Ed25519,
    )
    .unwrap();
    use writ_token::biscuit_auth::builder::{CheckKind, Term, check, fact, pred, string};
    use writ_token::biscuit_auth::{AuthorizerBuilder, Biscuit};
    c.bench_function("biscuit_auth_alone_parse_one_block", |b| {
        b.iter(|| Biscuit::from_base64(black_box(&attenuated), root).unwrap())
    });
    c.bench_function("biscuit_auth_alone_parse_and_authorize_one_block", |b| {
        b.iter(|| {
            let token = Biscuit::from_base64(black_box(&attenuated), root).unwrap();
            let mut authorizer = AuthorizerBuilder::new()
                .fact(fact("time", &[Term::Date(NOW as u64)]))
                .unwrap()
                .fact(fact("required_scope", &[string("inventory.read")]))
                .unwrap()
                .check(check(
                    &[pred("scope", &[string("inventory.read")])],
                    CheckKind::One,
                ))
                .unwrap()
                .policy("allow if true")
                .unwrap()
                .build(&token)
                .unwrap();
            authorizer.authorize().unwrap()
        })
    });
}

criterion_group!(benches, jwt, biscuit);
criterion_main!(benches);
