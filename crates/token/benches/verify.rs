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
}

fn scratch(c: &mut Criterion) {
    use ed25519_dalek::{Signer, Verifier};
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let vk_bytes = sk.verifying_key().to_bytes();
    let msg = b"eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImstZWQifQ.eyJpc3MiOiJodHRwczovL2FzLmV4YW1wbGUiLCJzdWIiOiJhbGljZSIsImF1ZCI6ImludmVudG9yeSIsImV4cCI6MTgwMDAwMDMwMCwiaWF0IjoxODAwMDAwMDAwLCJuYmYiOjE4MDAwMDAwMDAsImp0aSI6IldkMm9HWmIweVMzc3hiM0tjRlFtMkEiLCJjbGllbnRfaWQiOiJvcmRlcnMiLCJzY29wZSI6ImludmVudG9yeS5yZWFkIGludmVudG9yeS53cml0ZSIsImdpZCI6ImhWM1Mxd2NUMHVHNlprTHEySjlaTkEifQ";
    let sig = sk.sign(msg);
    let vk = sk.verifying_key();
    c.bench_function("x_dalek_decompress", |b| {
        b.iter(|| ed25519_dalek::VerifyingKey::from_bytes(black_box(&vk_bytes)).unwrap())
    });
    c.bench_function("x_dalek_verify", |b| {
        b.iter(|| vk.verify(black_box(msg), &sig).unwrap())
    });
    c.bench_function("x_dalek_verify_strict", |b| {
        b.iter(|| vk.verify_strict(black_box(msg), &sig).unwrap())
    });
    c.bench_function("x_dalek_sign", |b| b.iter(|| sk.sign(black_box(msg))));
    let s = setup();
    let eddsa = encode_access_token(&s.ed, &s.claims).unwrap();
    c.bench_function("x_decode_header", |b| {
        b.iter(|| jsonwebtoken::decode_header(black_box(&eddsa)).unwrap())
    });
    let key = s.ed.verification_key();
    let (signed, sig64) = eddsa.rsplit_once('.').unwrap();
    c.bench_function("x_key_verify_signature", |b| {
        b.iter(|| assert!(key.verify_signature(black_box(signed.as_bytes()), sig64)))
    });
    let payload = signed.split('.').nth(1).unwrap();
    c.bench_function("x_claims", |b| {
        b.iter(|| {
            use base64::Engine;
            let p = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(black_box(payload))
                .unwrap();
            serde_json::from_slice::<AccessClaims>(&p).unwrap()
        })
    });
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
    let pk = writ_token::biscuit_auth::PublicKey::from_bytes_hex(
        &s.root.public().to_hex(),
        writ_token::biscuit_auth::Algorithm::Ed25519,
    )
    .unwrap();
    c.bench_function("x_biscuit_parse_1block", |b| {
        b.iter(|| {
            writ_token::biscuit_auth::Biscuit::from_base64(black_box(&attenuated), pk).unwrap()
        })
    });
    c.bench_function("x_biscuit_parse_authority", |b| {
        b.iter(|| {
            writ_token::biscuit_auth::Biscuit::from_base64(black_box(&authority), pk).unwrap()
        })
    });
    let bis = writ_token::biscuit_auth::Biscuit::from_base64(&attenuated, pk).unwrap();
    c.bench_function("x_print_parse_block", |b| {
        b.iter(|| {
            let src = bis.print_block_source(1).unwrap();
            writ_token::biscuit_auth::parser::parse_block_source(&src)
                .unwrap()
                .checks
                .len()
        })
    });
    c.bench_function("x_snapshot", |b| {
        b.iter(|| {
            let a = writ_token::biscuit_auth::AuthorizerBuilder::new()
                .build(&bis)
                .unwrap();
            a.snapshot().unwrap().world.blocks.len()
        })
    });
    c.bench_function("x_build_dump", |b| {
        b.iter(|| {
            let a = writ_token::biscuit_auth::AuthorizerBuilder::new()
                .build(black_box(&bis))
                .unwrap();
            let (_f, r, ch, _p) = a.dump();
            r.len()
                + ch.iter()
                    .map(|c| c.queries.iter().map(|q| q.body.len()).sum::<usize>())
                    .sum::<usize>()
        })
    });
    c.bench_function("x_to_vec", |b| b.iter(|| black_box(&bis).to_vec().unwrap()));
    c.bench_function("x_b64_decode", |b| {
        b.iter(|| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE
                .decode(black_box(&attenuated))
                .unwrap()
        })
    });
    c.bench_function("x_build_only", |b| {
        b.iter(|| {
            writ_token::biscuit_auth::AuthorizerBuilder::new()
                .build(black_box(&bis))
                .unwrap()
        })
    });
    c.bench_function("x_authorize_full_datalog", |b| b.iter(|| {
        let mut a = writ_token::biscuit_auth::AuthorizerBuilder::new().code(r#"time(2027-01-15T08:00:00Z); service("inventory"); method("/writ.inventory.v1.InventoryService/GetItem"); required_scope("inventory.read"); check if scope("inventory.read"); allow if true;"#).unwrap().build(black_box(&bis)).unwrap();
        a.authorize().unwrap()
    }));
}

criterion_group!(benches, jwt, biscuit, scratch);
criterion_main!(benches);
