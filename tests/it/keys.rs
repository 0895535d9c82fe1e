//! Signing keys: published in the JWKS, persisted, rotated without breaking tokens in flight.

use writ_proto::admin::{KeyPurpose, ListSigningKeysRequest};
use writ_tests::*;

use crate::grants::verifier_for;

#[tokio::test]
async fn the_jwks_publishes_the_active_key_and_a_biscuit_root_key() {
    let server = TestServer::start().await;
    let jwks = server.jwks().await;
    assert_eq!(jwks.keys.len(), 1);
    let k = &jwks.keys[0];
    assert_eq!(
        (
            k.kty.as_str(),
            k.crv.as_str(),
            k.alg.as_str(),
            k.r#use.as_str()
        ),
        ("OKP", "Ed25519", "EdDSA", "sig")
    );
    assert_eq!(jwks.biscuit_root_keys.len(), 1);
    assert_eq!(jwks.biscuit_root_keys[0].algorithm, "ed25519");
}

#[tokio::test]
async fn keys_are_generated_once_and_survive_a_restart() {
    let server = TestServer::start().await;
    let before = server.jwks().await;
    let server = server.restart().await;
    let after = server.jwks().await;
    assert_eq!(before, after);
}

#[tokio::test]
async fn rotation_keeps_tokens_in_flight_valid_and_signs_new_ones_with_the_new_key() {
    let server = TestServer::start().await;
    let (id, secret) = server.service_client("svc", "read", &["x"]).await;
    let old_token = server.cc_token(&id, &secret).await;
    let rotated = server.rotate_key(KeyPurpose::Jwt, "ES256").await;
    assert_eq!(rotated.alg, "ES256");
    let new_token = server.cc_token(&id, &secret).await;
    let header = writ_token::decode_unverified(&new_token)
        .unwrap()
        .header
        .unwrap();
    assert_eq!(header["kid"], rotated.kid.as_str());
    assert_eq!(header["alg"], "ES256");

    // Fetched after rotation, the JWKS verifies both the old and the new token.
    let verifier = verifier_for(&server, "x").await;
    verifier.verify(&old_token).unwrap();
    verifier.verify(&new_token).unwrap();
    let keys = server
        .admin()
        .await
        .list_signing_keys(ListSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    let jwt_keys: Vec<_> = keys
        .iter()
        .filter(|k| k.purpose == KeyPurpose::Jwt as i32)
        .collect();
    assert_eq!(jwt_keys.len(), 2);
    assert_eq!(
        jwt_keys
            .iter()
            .filter(|k| k.status == writ_proto::admin::KeyStatus::Active as i32)
            .count(),
        1
    );
    let retired = jwt_keys
        .iter()
        .find(|k| k.status == writ_proto::admin::KeyStatus::Retired as i32)
        .unwrap();
    assert!(retired.expire_time.is_some());
}

#[tokio::test]
async fn a_retired_key_leaves_the_jwks_once_its_tokens_have_expired() {
    let clock = writ_token::ManualClock::starting_now();
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let (id, secret) = server.service_client("svc", "read", &["x"]).await;
    let old_token = server.cc_token(&id, &secret).await;
    server.rotate_key(KeyPurpose::Jwt, "").await;
    assert_eq!(server.jwks().await.keys.len(), 2);
    // Past the longest access token lifetime plus leeway, the old key is gone and so is trust in it.
    clock.advance(3600 + 31);
    assert_eq!(server.jwks().await.keys.len(), 1);
    server.engine.prune_expired().await.unwrap();
    let keys = server.engine.public_keys();
    let kid = kid_of(&old_token);
    assert!(keys.jwt_key(&kid).is_none());
}

#[tokio::test]
async fn biscuit_root_keys_rotate_too() {
    let server = TestServer::start().await;
    let k = server.rotate_key(KeyPurpose::Biscuit, "").await;
    assert_eq!(k.kid, "2");
    let jwks = server.jwks().await;
    let ids: Vec<u32> = jwks
        .biscuit_root_keys
        .iter()
        .map(|k| k.root_key_id)
        .collect();
    assert!(ids.contains(&1) && ids.contains(&2));
}
