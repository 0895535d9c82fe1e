//! The guard's own cost per call, no network: `Guard::check` on a fresh token (a full
//! verification: signature, claims, revocation, scopes) and on a repeated one (the cache).
//!
//! Targets: a fresh token costs at most 50 µs of CPU; a repeated one about a microsecond; a
//! repeated Biscuit at most 2 µs. Sender-constrained tokens, side by side: a DPoP proof's
//! check per call, a certificate's thumbprint per call.
//! Run with `cargo bench -p writ-guard --bench guard`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use writ_guard::{
    Guard, GuardConfig, MethodPolicy, Presented, Proof, Revocations, Rule, TrustedIssuer,
};
use writ_proto::revocation::{Checkpoint, WatchResponse, watch_response};
use writ_revocation_client::RevocationSet;
use writ_token::{
    AccessClaims, Algorithm, Attenuation, BiscuitRootKey, KeySet, ManualClock, SigningKey,
    attenuate, encode_access_token, mint_biscuit,
};
use writ_trust::LocalKeys;

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://as.example";
const METHOD: &str = "/writ.demo.v1.InventoryService/GetStock";

fn claims(jti: String) -> AccessClaims {
    AccessClaims {
        iss: ISSUER.into(),
        sub: "alice".into(),
        aud: vec!["inventory".into()],
        iat: NOW,
        nbf: Some(NOW),
        exp: NOW + 300,
        jti,
        client_id: "orders".into(),
        scope: "inventory.read inventory.reserve".into(),
        gid: Some("hV3S1wcT0uG6ZkLq2J9ZNA".into()),
        act: None,
        may_act: None,
        cnf: None,
    }
}

fn guard(cache_capacity: usize, keys: Arc<KeySet>) -> Guard {
    let set = Arc::new(RevocationSet::new());
    set.apply(&WatchResponse {
        event: Some(watch_response::Event::Checkpoint(Checkpoint {
            sequence: 0,
            server_time: None,
        })),
    })
    .unwrap();
    let mut config = GuardConfig::new(
        "inventory",
        vec![TrustedIssuer::new(
            ISSUER,
            Arc::new(LocalKeys(move || keys.clone())),
        )],
        MethodPolicy::new().method(METHOD, Rule::scopes(&["inventory.read"])),
        set.clone(),
    );
    config.revocations = Revocations::Checked {
        check: Arc::new(writ_revocation_client::RevocationFeed::new(
            set,
            Duration::from_secs(3600),
        )),
        fail_open: false,
    };
    config.cache_capacity = cache_capacity;
    config.clock = Arc::new(ManualClock::new(NOW));
    Guard::new(config)
}

fn check(c: &mut Criterion) {
    let key = SigningKey::generate(Algorithm::EdDSA, "k-ed").unwrap();
    let root = BiscuitRootKey::generate(1);
    let mut keys = KeySet::new();
    keys.insert_jwt(key.verification_key());
    keys.insert_biscuit(root.public());
    let keys = Arc::new(keys);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Distinct tokens, so "fresh" never meets the cache even if it were on.
    let fresh: Vec<String> = (0..2_000)
        .map(|i| {
            let t = encode_access_token(&key, &claims(format!("jti-{i:018}"))).unwrap();
            format!("Bearer {t}")
        })
        .collect();
    let keys_for_baseline = keys.clone();
    let uncached = guard(0, keys.clone());
    let cached = guard(100_000, keys);
    for t in &fresh[..2] {
        assert!(
            runtime
                .block_on(uncached.check(METHOD, Some(t.as_bytes())))
                .unwrap()
                .is_some()
        );
    }

    // The signature and claims check alone, for side-by-side: the guard's own share is the
    // difference.
    let verifier = writ_token::TokenVerifier::new(
        writ_token::VerifierConfig::new(vec![ISSUER.into()], Some("inventory".into())),
        (*keys_for_baseline).clone(),
        Arc::new(ManualClock::new(NOW)),
    );
    c.bench_function("jwt_verify_alone", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % fresh.len();
            let token = fresh[i].strip_prefix("Bearer ").unwrap();
            black_box(verifier.verify_jwt(token).unwrap())
        })
    });
    c.bench_function("guard_check_fresh_token", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % fresh.len();
            black_box(
                runtime
                    .block_on(uncached.check(METHOD, Some(fresh[i].as_bytes())))
                    .unwrap(),
            )
        })
    });
    let repeated = fresh[0].clone();
    runtime
        .block_on(cached.check(METHOD, Some(repeated.as_bytes())))
        .unwrap();
    c.bench_function("guard_check_repeated_token", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .block_on(cached.check(METHOD, Some(repeated.as_bytes())))
                    .unwrap(),
            )
        })
    });

    // Biscuits, attenuated once as a holder would (Datalog off the runtime's workers when not
    // cached): every call verified (the cache off) against a repeated one (the cache on).
    let biscuit = attenuate(
        &mint_biscuit(&root, &claims("jti-biscuit".into())).unwrap(),
        &Attenuation {
            scopes: Some(vec!["inventory.read".into()]),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let biscuit = format!("Bearer {biscuit}");
    // A service's runtime: multi-threaded (a Biscuit's Datalog then leaves the worker by
    // `block_in_place`; on a current-thread runtime it would go to the blocking pool).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    c.bench_function("guard_check_biscuit_uncached", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .block_on(uncached.check(METHOD, Some(biscuit.as_bytes())))
                    .unwrap(),
            )
        })
    });
    runtime
        .block_on(cached.check(METHOD, Some(biscuit.as_bytes())))
        .unwrap();
    c.bench_function("guard_check_repeated_biscuit", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .block_on(cached.check(METHOD, Some(biscuit.as_bytes())))
                    .unwrap(),
            )
        })
    });
}

/// Sender-constrained tokens (cached, so what is measured is the constraint): a DPoP-bound
/// token with a fresh proof per call (signed outside the measurement), and a
/// certificate-bound one over a connection presenting its certificate.
fn sender_constrained(c: &mut Criterion) {
    let key = SigningKey::generate(Algorithm::EdDSA, "k-ed").unwrap();
    let mut keys = KeySet::new();
    keys.insert_jwt(key.verification_key());
    let guard = guard(100_000, Arc::new(keys));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let htu = format!("https://inventory.internal{METHOD}");
    for (name, alg) in [
        ("guard_check_repeated_dpop_bound_eddsa", Algorithm::EdDSA),
        ("guard_check_repeated_dpop_bound_es256", Algorithm::ES256),
    ] {
        let dpop = SigningKey::generate(alg, "dpop").unwrap();
        let token = encode_access_token(
            &key,
            &AccessClaims {
                cnf: Some(writ_token::Confirmation {
                    jkt: writ_token::key_thumbprint(&dpop),
                    x5t_s256: None,
                }),
                ..claims(format!("jti-{name}"))
            },
        )
        .unwrap();
        let header = format!("DPoP {token}");
        let proof = || {
            writ_token::sign_proof(
                &dpop,
                &writ_token::ProofClaimsOut {
                    htm: "POST",
                    htu: &htu,
                    iat: NOW,
                    access_token: Some(&token),
                    nonce: None,
                },
            )
        };
        c.bench_function(name, |b| {
            b.iter_batched(
                proof,
                |proof| {
                    let presented = Presented {
                        authorization: Some(header.as_bytes()),
                        proof: Proof::One(proof.as_bytes()),
                        htu: Some(&htu),
                        client_cert: None,
                    };
                    black_box(
                        runtime
                            .block_on(guard.check_call(METHOD, &presented))
                            .unwrap(),
                    )
                },
                BatchSize::SmallInput,
            )
        });
    }
    // A certificate's DER is about 500 bytes (rcgen's P-256 leaf is 400 to 600).
    let certificate = vec![0x30u8; 560];
    let token = encode_access_token(
        &key,
        &AccessClaims {
            cnf: Some(writ_token::Confirmation {
                jkt: None,
                x5t_s256: Some(writ_token::certificate_thumbprint(&certificate)),
            }),
            ..claims("jti-certificate".into())
        },
    )
    .unwrap();
    let header = format!("Bearer {token}");
    let presented = Presented {
        authorization: Some(header.as_bytes()),
        client_cert: Some(&certificate),
        ..Presented::default()
    };
    c.bench_function("guard_check_repeated_certificate_bound", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .block_on(guard.check_call(METHOD, &presented))
                    .unwrap(),
            )
        })
    });
}

criterion_group!(benches, check, sender_constrained);
criterion_main!(benches);
