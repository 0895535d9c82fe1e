//! A guard built with the defaults fails closed while its revocation feed cannot vouch for its
//! answer (SECURITY.md item 30): nothing has to be set for that.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use writ_proto::revocation::{SnapshotBegin, SnapshotEnd, WatchResponse, watch_response::Event};
use writ_revocation_client::RevocationSet;
use writ_token::{
    AccessClaims, Algorithm, FixedKeys, KeySet, ManualClock, SigningKey, TrustedIssuer,
    encode_access_token,
};

use super::*;

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://as.example";
const GET: &str = "/writ.demo.v1.InventoryService/GetStock";

#[tokio::test]
async fn the_default_guard_fails_closed_until_its_feed_vouches() {
    let key = SigningKey::generate(Algorithm::EdDSA, "k1").unwrap();
    let mut keys = KeySet::new();
    keys.insert_jwt(key.verification_key());
    let set = Arc::new(RevocationSet::new());
    // Only the required arguments: every choice about revocations is the default one.
    let mut config = GuardConfig::new(
        "inventory",
        vec![TrustedIssuer::new(ISSUER, Arc::new(FixedKeys::new(keys)))],
        MethodPolicy::new().method(GET, Rule::scopes(&["inventory.read"])),
        set.clone(),
    );
    config.clock = Arc::new(ManualClock::new(NOW));
    let guard = Guard::new(config);
    let claims = AccessClaims {
        iss: ISSUER.into(),
        sub: "alice".into(),
        aud: vec!["inventory".into()],
        iat: NOW,
        nbf: None,
        exp: NOW + 300,
        jti: "t1".into(),
        client_id: "orders".into(),
        scope: "inventory.read".into(),
        gid: None,
        act: None,
        may_act: None,
        cnf: None,
    };
    let header = format!("Bearer {}", encode_access_token(&key, &claims).unwrap());
    let call = || guard.check(GET, Some(header.as_bytes()));

    // Never synced: refused, not waved through.
    assert!(matches!(
        call().await,
        Err(GuardError::RevocationFeedStale(_))
    ));
    // Once the feed has delivered its snapshot, the same call passes.
    for event in [
        Event::SnapshotBegin(SnapshotBegin {
            sequence: 0,
            entry_count: 0,
        }),
        Event::SnapshotEnd(SnapshotEnd { sequence: 0 }),
    ] {
        set.apply(&WatchResponse { event: Some(event) }).unwrap();
    }
    assert!(call().await.unwrap().is_some());

    // A token bound to a DPoP key (RFC 9449) is not taken as a bearer token, on the first call
    // and from its cache alike; with the DPoP scheme, only with a proof over the call's URL,
    // which the interceptor never sees: it refuses bound tokens.
    let dpop = SigningKey::generate(Algorithm::EdDSA, "dpop").unwrap();
    let bound = AccessClaims {
        jti: "t2".into(),
        cnf: Some(writ_token::Confirmation {
            jkt: writ_token::key_thumbprint(&dpop),
            x5t_s256: None,
        }),
        ..claims
    };
    let token = encode_access_token(&key, &bound).unwrap();
    let header = format!("Bearer {token}");
    for _ in 0..2 {
        assert!(matches!(
            guard.check(GET, Some(header.as_bytes())).await,
            Err(GuardError::InvalidToken(TokenError::BadClaims(_)))
        ));
    }
    let htu = format!("https://inventory.internal{GET}");
    let proof = writ_token::sign_proof(
        &dpop,
        &writ_token::ProofClaimsOut {
            htm: "POST",
            htu: &htu,
            iat: NOW,
            access_token: Some(&token),
            nonce: None,
        },
    );
    let header = format!("DPoP {token}");
    let presented = Presented {
        authorization: Some(header.as_bytes()),
        proof: Proof::One(proof.as_bytes()),
        htu: None,
        client_cert: None,
    };
    let rule = Rule::scopes(&["inventory.read"]);
    assert!(matches!(
        guard.decide_without_waiting(&rule, &presented),
        Err(GuardError::InvalidDpopProof(_))
    ));
    // The layer's view (it knows the URL): passes once, then the proof is spent.
    let presented = Presented {
        htu: Some(&htu),
        ..presented
    };
    assert!(guard.check_call(GET, &presented).await.unwrap().is_some());
    assert_eq!(
        guard.check_call(GET, &presented).await.unwrap_err(),
        GuardError::InvalidDpopProof("the DPoP proof was used before")
    );
    // A token bound to a TLS client certificate (RFC 8705) passes over a connection that
    // presented that certificate, as a bearer token; over one with another certificate or
    // none, it is refused.
    let cert = b"the DER of a client certificate".as_slice();
    let cert_bound = AccessClaims {
        jti: "t3".into(),
        cnf: Some(writ_token::Confirmation {
            jkt: None,
            x5t_s256: Some(writ_token::certificate_thumbprint(cert)),
        }),
        ..bound
    };
    let header = format!("Bearer {}", encode_access_token(&key, &cert_bound).unwrap());
    let over = |client_cert| Presented {
        authorization: Some(header.as_bytes()),
        client_cert,
        ..Presented::default()
    };
    assert!(
        guard
            .check_call(GET, &over(Some(cert)))
            .await
            .unwrap()
            .is_some()
    );
    for other in [None, Some(b"another certificate".as_slice())] {
        assert_eq!(
            guard.check_call(GET, &over(other)).await.unwrap_err(),
            GuardError::WrongCertificate
        );
    }
    // The interceptor sees the connection's certificate too.
    assert!(
        guard
            .decide_without_waiting(&rule, &over(Some(cert)))
            .unwrap()
            .is_some()
    );
    assert_eq!(
        guard
            .decide_without_waiting(&rule, &over(None))
            .unwrap_err(),
        GuardError::WrongCertificate
    );
}
