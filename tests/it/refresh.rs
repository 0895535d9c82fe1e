//! Refresh tokens: rotation, narrowing, reuse detection (also after a restart), concurrency.

use tonic::Code;
use writ_tests::*;

use crate::grants::{gateway_and_user, password_request};

async fn active(server: &TestServer, token: &str, id: &str, secret: &str) -> bool {
    server.introspect(token, id, secret).await.active
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_keeps_the_grant_id() {
    let server = TestServer::start().await;
    let (id, secret) = gateway_and_user(&server).await;
    let first = server
        .issue(password_request(&id, &secret, "correct horse battery"))
        .await;
    let second = server
        .issue(refresh_request(&id, &secret, &first.refresh_token))
        .await;
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    let v = crate::grants::verifier_for(&server, "orders").await;
    let a = v.verify(&first.access_token).unwrap();
    let b = v.verify(&second.access_token).unwrap();
    assert_eq!(a.claims.gid, b.claims.gid, "one grant, one family");
    assert_eq!(a.claims.sub, b.claims.sub);
    // The new refresh token works in turn.
    server
        .token(refresh_request(&id, &secret, &second.refresh_token))
        .await
        .unwrap();
}

#[tokio::test]
async fn refresh_may_narrow_scope_but_never_widen_it() {
    let server = TestServer::start().await;
    let (id, secret) = gateway_and_user(&server).await;
    let first = server
        .issue(password_request(&id, &secret, "correct horse battery"))
        .await;
    let mut narrow = refresh_request(&id, &secret, &first.refresh_token);
    narrow.scope = "orders.read".into();
    let second = server.issue(narrow).await;
    assert_eq!(second.scope, "orders.read");

    let before = server.state();
    let mut wide = refresh_request(&id, &secret, &second.refresh_token);
    wide.scope = "orders.read admin".into();
    assert_refused(
        server.token(wide).await,
        Code::PermissionDenied,
        "invalid_scope",
    );
    assert_eq!(
        server.state(),
        before,
        "a refused refresh does not consume the token"
    );

    // The refresh token keeps the grant's scope (RFC 6749 section 6): a later refresh may ask
    // for all of it again.
    let third = server
        .issue(refresh_request(&id, &secret, &second.refresh_token))
        .await;
    assert_eq!(third.scope, "orders.read orders.write");
}

#[tokio::test]
async fn replaying_a_used_refresh_token_revokes_the_whole_family() {
    let server = TestServer::start().await;
    let (id, secret) = gateway_and_user(&server).await;
    let first = server
        .issue(password_request(&id, &secret, "correct horse battery"))
        .await;
    let second = server
        .issue(refresh_request(&id, &secret, &first.refresh_token))
        .await;
    assert!(active(&server, &second.access_token, &id, &secret).await);

    assert_refused(
        server
            .token(refresh_request(&id, &secret, &first.refresh_token))
            .await,
        Code::PermissionDenied,
        "invalid_grant",
    );
    // Every token of the family is dead: both access tokens and the newest refresh token.
    assert!(!active(&server, &first.access_token, &id, &secret).await);
    assert!(!active(&server, &second.access_token, &id, &secret).await);
    assert!(!active(&server, &second.refresh_token, &id, &secret).await);
    assert_refused(
        server
            .token(refresh_request(&id, &secret, &second.refresh_token))
            .await,
        Code::PermissionDenied,
        "invalid_grant",
    );
}

#[tokio::test]
async fn reuse_is_still_detected_after_a_restart() {
    let server = TestServer::start().await;
    let (id, secret) = gateway_and_user(&server).await;
    let first = server
        .issue(password_request(&id, &secret, "correct horse battery"))
        .await;
    let second = server
        .issue(refresh_request(&id, &secret, &first.refresh_token))
        .await;

    let server = server.restart().await;
    assert_refused(
        server
            .token(refresh_request(&id, &secret, &first.refresh_token))
            .await,
        Code::PermissionDenied,
        "invalid_grant",
    );
    assert!(!active(&server, &second.refresh_token, &id, &secret).await);
    assert!(!active(&server, &second.access_token, &id, &secret).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_uses_of_one_refresh_token_exactly_one_wins() {
    let server = TestServer::start().await;
    let (id, secret) = gateway_and_user(&server).await;
    let first = server
        .issue(password_request(&id, &secret, "correct horse battery"))
        .await;
    let channel = server.channel().await;
    let mut calls = Vec::new();
    for _ in 0..16 {
        let mut client =
            writ_proto::authz::authorization_service_client::AuthorizationServiceClient::new(
                channel.clone(),
            );
        let req = refresh_request(&id, &secret, &first.refresh_token);
        calls.push(tokio::spawn(async move { client.token(req).await }));
    }
    let mut wins = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(r) => wins.push(r.into_inner()),
            Err(status) => assert_eq!(reason(&status), "invalid_grant", "{status:?}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one concurrent refresh succeeds");
    // Two parties held one refresh token: the family is treated as compromised (RFC 9700
    // section 4.14.2), so even the winner's new refresh token is refused afterwards.
    assert_refused(
        server
            .token(refresh_request(&id, &secret, &wins[0].refresh_token))
            .await,
        Code::PermissionDenied,
        "invalid_grant",
    );
}

#[tokio::test]
async fn a_refresh_token_presented_by_another_client_is_invalid_grant_and_changes_nothing() {
    let server = TestServer::start().await;
    let (id, secret) = gateway_and_user(&server).await;
    let (other, other_secret) = server
        .create_client(writ_proto::admin::Client {
            client_id: "other".into(),
            grant_types: vec!["refresh_token".into()],
            audience: vec!["orders".into()],
            ..Default::default()
        })
        .await;
    let first = server
        .issue(password_request(&id, &secret, "correct horse battery"))
        .await;
    let before = server.state();
    assert_refused(
        server
            .token(refresh_request(&other, &other_secret, &first.refresh_token))
            .await,
        Code::PermissionDenied,
        "invalid_grant",
    );
    assert_eq!(server.state(), before);
    // The rightful client can still use it.
    server
        .token(refresh_request(&id, &secret, &first.refresh_token))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_refresh_token_of_a_disabled_client_is_invalid_grant() {
    let server = TestServer::start().await;
    let (id, secret) = gateway_and_user(&server).await;
    let first = server
        .issue(password_request(&id, &secret, "correct horse battery"))
        .await;
    server.set_disabled(&id, true).await;
    let before = server.state();
    assert_refused(
        server
            .token(refresh_request(&id, &secret, &first.refresh_token))
            .await,
        Code::PermissionDenied,
        "invalid_grant",
    );
    assert_eq!(server.state(), before);
}

#[tokio::test]
async fn unknown_or_garbage_refresh_tokens_are_invalid_grant() {
    let server = TestServer::start().await;
    let (id, secret) = gateway_and_user(&server).await;
    let before = server.state();
    for token in [
        "x",
        "not-a-refresh-token-at-all-but-long-enough-to-look-like-one",
        "\u{0}",
    ] {
        assert_refused(
            server.token(refresh_request(&id, &secret, token)).await,
            Code::PermissionDenied,
            "invalid_grant",
        );
    }
    assert_refused(
        server.token(refresh_request(&id, &secret, "")).await,
        Code::InvalidArgument,
        "invalid_request",
    );
    assert_eq!(server.state(), before);
}

#[tokio::test]
async fn an_expired_refresh_token_is_invalid_grant() {
    let clock = writ_token::ManualClock::starting_now();
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let (id, secret) = gateway_and_user(&server).await;
    let first = server
        .issue(password_request(&id, &secret, "correct horse battery"))
        .await;
    clock.advance(15 * 24 * 3600);
    assert_refused(
        server
            .token(refresh_request(&id, &secret, &first.refresh_token))
            .await,
        Code::PermissionDenied,
        "invalid_grant",
    );
}
