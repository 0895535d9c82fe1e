//! Refresh tokens: rotation, narrowing, reuse detection (also after a restart), concurrency.

use tonic::{Code, Status};
use writ_proto::authz::{TokenRequest, TokenResponse};
use writ_tests::*;
use writ_token::Clock;

use crate::grants::alice_signed_in;

/// Refreshing `refresh_token` as the client `id`, which must be refused as invalid_grant.
async fn assert_invalid_grant(
    server: &TestServer,
    id: &str,
    secret: &str,
    refresh_token: &str,
) -> Status {
    server
        .assert_token_refused(
            refresh_request(id, secret, refresh_token),
            Code::PermissionDenied,
            "invalid_grant",
        )
        .await
}

/// Refreshing `refresh_token` as the client `id`, which must succeed.
async fn refreshed(
    server: &TestServer,
    id: &str,
    secret: &str,
    refresh_token: &str,
) -> TokenResponse {
    server
        .issue(refresh_request(id, secret, refresh_token))
        .await
}

/// Another client ("other", allowed refresh tokens) presenting `refresh_token`: invalid_grant,
/// and nothing changes.
async fn another_client_is_refused_unchanged(server: &TestServer, refresh_token: &str) {
    let (other, other_secret) = server
        .create_client(writ_proto::admin::Client {
            client_id: "other".into(),
            grant_types: vec!["refresh_token".into()],
            audience: vec!["orders".into()],
            ..Default::default()
        })
        .await;
    server
        .assert_unchanged(assert_invalid_grant(
            server,
            &other,
            &other_secret,
            refresh_token,
        ))
        .await;
}

/// Refreshes with each of `tokens` at once, a call each: the successes. Every refusal must be
/// invalid_grant.
async fn at_once(
    server: &TestServer,
    id: &str,
    secret: &str,
    tokens: &[&str],
) -> Vec<TokenResponse> {
    let channel = server.channel().await;
    let calls: Vec<_> = tokens
        .iter()
        .map(|token| {
            let mut client =
                writ_proto::authz::authorization_service_client::AuthorizationServiceClient::new(
                    channel.clone(),
                );
            let req = refresh_request(id, secret, token);
            tokio::spawn(async move { client.token(req).await })
        })
        .collect();
    let mut wins = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(r) => wins.push(r.into_inner()),
            Err(status) => assert_eq!(reason(&status), "invalid_grant", "{status:?}"),
        }
    }
    wins
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_keeps_the_grant_id() {
    let server = TestServer::start().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    let second = refreshed(&server, &id, &secret, &first.refresh_token).await;
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    let v = crate::grants::verifier_for(&server, "orders").await;
    let a = v.verify(&first.access_token).unwrap();
    let b = v.verify(&second.access_token).unwrap();
    assert_eq!(a.claims.gid, b.claims.gid, "one grant, one family");
    assert_eq!(a.claims.sub, b.claims.sub);
    // The new refresh token works in turn.
    refreshed(&server, &id, &secret, &second.refresh_token).await;
}

#[tokio::test]
async fn refresh_may_narrow_scope_but_never_widen_it() {
    let server = TestServer::start().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    let narrow = TokenRequest {
        scope: "orders.read".into(),
        ..refresh_request(&id, &secret, &first.refresh_token)
    };
    let second = server.issue(narrow).await;
    assert_eq!(second.scope, "orders.read");

    let wide = TokenRequest {
        scope: "orders.read admin".into(),
        ..refresh_request(&id, &secret, &second.refresh_token)
    };
    // A refused refresh does not consume the token.
    server
        .assert_token_refused_unchanged(wide, Code::PermissionDenied, "invalid_scope")
        .await;

    // The refresh token keeps the grant's scope (RFC 6749 section 6): a later refresh may ask
    // for all of it again.
    let third = refreshed(&server, &id, &secret, &second.refresh_token).await;
    assert_eq!(third.scope, "orders.read orders.write");
}

/// A server whose clock the test moves.
async fn with_clock() -> (TestServer, writ_token::ManualClock) {
    let clock = writ_token::ManualClock::starting_now();
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    (server, clock)
}

/// Just past the rotation grace period.
const PAST_GRACE: i64 = writ_oauth::DEFAULT_REFRESH_ROTATION_GRACE + 1;

#[tokio::test]
async fn replaying_a_used_refresh_token_revokes_the_whole_family() {
    let (server, clock) = with_clock().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    let second = refreshed(&server, &id, &secret, &first.refresh_token).await;
    clock.advance(PAST_GRACE);
    assert!(
        server
            .introspect(&second.access_token, &id, &secret)
            .await
            .active
    );

    assert_invalid_grant(&server, &id, &secret, &first.refresh_token).await;
    // Every token of the family is dead: both access tokens and the newest refresh token.
    server
        .assert_inactive(
            &[
                &first.access_token,
                &second.access_token,
                &second.refresh_token,
            ],
            &id,
            &secret,
        )
        .await;
    assert_invalid_grant(&server, &id, &secret, &second.refresh_token).await;
}

#[tokio::test]
async fn reuse_is_still_detected_after_a_restart() {
    let (server, clock) = with_clock().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    let second = refreshed(&server, &id, &secret, &first.refresh_token).await;
    clock.advance(PAST_GRACE);

    let server = server.restart().await;
    assert_invalid_grant(&server, &id, &secret, &first.refresh_token).await;
    server
        .assert_inactive(&[&second.refresh_token, &second.access_token], &id, &secret)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_of_one_refresh_token_leave_no_usable_successor() {
    let server = TestServer::start().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    let wins = at_once(&server, &id, &secret, &[first.refresh_token.as_str(); 16]).await;
    // Within the grace period a use that follows another may pass for a retry and replace the
    // successor; uses that overlap are reuse (two parties held one refresh token: RFC 9700
    // section 4.14.2) and revoke the family. Either way at most one successor stays usable.
    assert!(!wins.is_empty(), "the first refresh succeeds");
    let mut active = 0;
    for w in &wins {
        if server
            .introspect(&w.refresh_token, &id, &secret)
            .await
            .active
        {
            active += 1;
        }
    }
    assert!(active <= 1, "{active} of {} successors usable", wins.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_grace_period_exactly_one_of_concurrent_uses_wins() {
    let server = TestServer::start_with(Options::without_refresh_grace()).await;
    let (id, secret, first) = alice_signed_in(&server).await;
    let wins = at_once(&server, &id, &secret, &[first.refresh_token.as_str(); 16]).await;
    assert_eq!(wins.len(), 1, "exactly one concurrent refresh succeeds");
    assert_invalid_grant(&server, &id, &secret, &wins[0].refresh_token).await;
}

#[tokio::test]
async fn a_retry_after_a_lost_reply_gets_a_new_successor_within_the_grace_period() {
    let (server, clock) = with_clock().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    // The rotation commits, but its reply never reaches the client.
    let lost = refreshed(&server, &id, &secret, &first.refresh_token).await;
    clock.advance(writ_oauth::DEFAULT_REFRESH_ROTATION_GRACE);
    // The client still holds the previous token and presents it again, at the window's edge.
    let retried = refreshed(&server, &id, &secret, &first.refresh_token).await;
    assert_ne!(retried.refresh_token, lost.refresh_token);
    let v = crate::grants::verifier_for(&server, "orders").await;
    assert_eq!(
        v.verify(&retried.access_token).unwrap().claims.gid,
        v.verify(&first.access_token).unwrap().claims.gid,
        "the same family"
    );
    // The successor nobody received is invalid; the new one is the family's only refresh token.
    server
        .assert_inactive(&[&lost.refresh_token], &id, &secret)
        .await;
    assert!(
        server
            .introspect(&retried.refresh_token, &id, &secret)
            .await
            .active
    );
    let next = refreshed(&server, &id, &secret, &retried.refresh_token).await;
    assert!(
        server
            .introspect(&next.access_token, &id, &secret)
            .await
            .active
    );
}

#[tokio::test]
async fn a_retry_on_a_replica_whose_clock_is_behind_is_still_a_retry() {
    let (server, clock) = with_clock().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    let lost = refreshed(&server, &id, &secret, &first.refresh_token).await;
    // The retry lands where the clock reads 20 s earlier (within the 30 s leeway).
    clock.advance(-20);
    let retried = refreshed(&server, &id, &secret, &first.refresh_token).await;
    server
        .assert_inactive(&[&lost.refresh_token], &id, &secret)
        .await;
    refreshed(&server, &id, &secret, &retried.refresh_token).await;
}

#[tokio::test]
async fn the_successor_a_retry_replaced_is_stolen_if_presented() {
    let (server, clock) = with_clock().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    let lost = refreshed(&server, &id, &secret, &first.refresh_token).await;
    clock.advance(1);
    let retried = refreshed(&server, &id, &secret, &first.refresh_token).await;
    // Whoever holds the replaced successor is not the client that retried: the family ends.
    assert_invalid_grant(&server, &id, &secret, &lost.refresh_token).await;
    server
        .assert_inactive(
            &[
                &retried.refresh_token,
                &retried.access_token,
                &lost.access_token,
            ],
            &id,
            &secret,
        )
        .await;
}

#[tokio::test]
async fn a_retry_after_the_successor_was_used_is_theft() {
    let (server, clock) = with_clock().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    let second = refreshed(&server, &id, &secret, &first.refresh_token).await;
    let third = refreshed(&server, &id, &secret, &second.refresh_token).await;
    clock.advance(1);
    assert_invalid_grant(&server, &id, &secret, &first.refresh_token).await;
    server
        .assert_inactive(&[&third.refresh_token, &third.access_token], &id, &secret)
        .await;
}

#[tokio::test]
async fn within_the_grace_period_another_client_gets_nothing() {
    let (server, _clock) = with_clock().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    let second = refreshed(&server, &id, &secret, &first.refresh_token).await;
    another_client_is_refused_unchanged(&server, &first.refresh_token).await;
    // Refused without touching the family: its own client's successor still works.
    refreshed(&server, &id, &secret, &second.refresh_token).await;
}

#[tokio::test]
async fn a_grace_period_of_zero_makes_any_reuse_theft() {
    let server = TestServer::start_with(Options::without_refresh_grace()).await;
    let (id, secret, first) = alice_signed_in(&server).await;
    let second = refreshed(&server, &id, &secret, &first.refresh_token).await;
    assert_invalid_grant(&server, &id, &secret, &first.refresh_token).await;
    server
        .assert_inactive(&[&second.refresh_token, &second.access_token], &id, &secret)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_racing_the_successors_use_never_leaves_two_live_tokens() {
    let (server, clock) = with_clock().await;
    let (id, secret, _) = alice_signed_in(&server).await;
    for round in 0..8 {
        let first = server
            .issue(crate::grants::password_request(
                &id,
                &secret,
                crate::grants::ALICE_PASSWORD,
            ))
            .await;
        let lost = refreshed(&server, &id, &secret, &first.refresh_token).await;
        clock.advance(1);
        // The client's late reply arrived after all and it uses the successor, while its retry
        // of the previous token is still in flight.
        let issued = at_once(
            &server,
            &id,
            &secret,
            &[&first.refresh_token, &lost.refresh_token],
        )
        .await;
        // Whichever came second saw the other's work: the successor used (the retry is theft),
        // or the successor replaced (its use is theft). Either way the family ends, and nothing
        // either call was given stays usable.
        for r in &issued {
            server
                .assert_inactive(&[&r.refresh_token, &r.access_token], &id, &secret)
                .await;
        }
        assert!(issued.len() <= 1, "round {round}: both calls succeeded");
    }
}

#[tokio::test]
async fn a_refresh_token_presented_by_another_client_is_invalid_grant_and_changes_nothing() {
    let server = TestServer::start().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    another_client_is_refused_unchanged(&server, &first.refresh_token).await;
    // The rightful client can still use it.
    refreshed(&server, &id, &secret, &first.refresh_token).await;
}

#[tokio::test]
async fn a_refresh_token_of_a_disabled_client_is_invalid_grant() {
    let server = TestServer::start().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    server.set_disabled(&id, true).await;
    server
        .assert_unchanged(assert_invalid_grant(
            &server,
            &id,
            &secret,
            &first.refresh_token,
        ))
        .await;
}

#[tokio::test]
async fn unknown_or_garbage_refresh_tokens_are_invalid_grant() {
    let server = TestServer::start().await;
    let (id, secret) = crate::grants::gateway_and_user(&server).await;
    for (token, code, error) in [
        ("x", Code::PermissionDenied, "invalid_grant"),
        (
            "not-a-refresh-token-at-all-but-long-enough-to-look-like-one",
            Code::PermissionDenied,
            "invalid_grant",
        ),
        ("\u{0}", Code::PermissionDenied, "invalid_grant"),
        ("", Code::InvalidArgument, "invalid_request"),
    ] {
        server
            .assert_token_refused_unchanged(refresh_request(&id, &secret, token), code, error)
            .await;
    }
}

#[tokio::test]
async fn an_expired_refresh_token_is_invalid_grant() {
    let clock = writ_token::ManualClock::starting_now();
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let (id, secret, first) = alice_signed_in(&server).await;
    clock.advance(15 * 24 * 3600);
    assert_invalid_grant(&server, &id, &secret, &first.refresh_token).await;
}

/// What an administrator may do that ends a principal's access.
#[derive(Debug, Clone, Copy)]
enum Act {
    RevokeSubject,
    RevokeClient,
    DeleteUser,
    ResetPassword,
    DisableClient,
    DeleteAndRecreateClient,
}

#[tokio::test]
async fn every_administrative_act_that_ends_a_principals_access_ends_its_refresh_families() {
    use writ_proto::admin as pb_admin;
    let clock = writ_token::ManualClock::starting_now();
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let (mut id, mut secret, _) = alice_signed_in(&server).await;
    let mut password = crate::grants::ALICE_PASSWORD.to_owned();
    for act in [
        Act::RevokeSubject,
        Act::RevokeClient,
        Act::DeleteUser,
        Act::ResetPassword,
        Act::DisableClient,
        Act::DeleteAndRecreateClient,
    ] {
        // A session begun strictly after the previous act's cut-off.
        clock.advance(2);
        let session = server
            .issue(crate::grants::password_request(&id, &secret, &password))
            .await;
        let subject = writ_token::decode_unverified(&session.access_token)
            .unwrap()
            .claims
            .unwrap()["sub"]
            .as_str()
            .unwrap()
            .to_owned();
        clock.advance(1);
        let mut admin = server.admin().await;
        let revoke = |kind: writ_token::RevocationKind, value: &str| pb_admin::RevokeRequest {
            entries: vec![writ_proto::revocation::RevocationEntry {
                kind: kind as i32,
                value: value.into(),
                expires_at: clock.now() + 600,
                reason: "test".into(),
                not_before: 0,
                issuer: String::new(),
            }],
        };
        match act {
            Act::RevokeSubject => {
                admin
                    .revoke(revoke(writ_token::RevocationKind::Subject, &subject))
                    .await
                    .unwrap();
            }
            Act::RevokeClient => {
                admin
                    .revoke(revoke(writ_token::RevocationKind::Client, &id))
                    .await
                    .unwrap();
            }
            Act::DeleteUser => {
                admin
                    .delete_user(pb_admin::DeleteUserRequest {
                        username: "alice".into(),
                    })
                    .await
                    .unwrap();
                // Someone else registers the name: the old session is still not theirs.
                server
                    .create_user("alice", &password, "orders.read orders.write")
                    .await;
            }
            Act::ResetPassword => {
                password = "a brand new passphrase".into();
                admin
                    .set_user_password(pb_admin::SetUserPasswordRequest {
                        username: "alice".into(),
                        password: password.clone(),
                    })
                    .await
                    .unwrap();
            }
            Act::DisableClient => {
                server.set_disabled(&id, true).await;
                // Enabled again later: what was cut stays cut.
                clock.advance(1);
                server.set_disabled(&id, false).await;
            }
            Act::DeleteAndRecreateClient => {
                admin
                    .delete_client(pb_admin::DeleteClientRequest {
                        client_id: id.clone(),
                    })
                    .await
                    .unwrap();
                (id, secret) = crate::grants::gateway_client(&server).await;
            }
        }
        clock.advance(1);
        let refused = server
            .token(refresh_request(&id, &secret, &session.refresh_token))
            .await;
        let status = refused.expect_err(&format!("{act:?}: the refresh token is dead"));
        assert_eq!(status.code(), Code::PermissionDenied, "{act:?}: {status:?}");
        assert_eq!(reason(&status), "invalid_grant", "{act:?}");
        for token in [&session.refresh_token, &session.access_token] {
            assert!(
                !server.introspect(token, &id, &secret).await.active,
                "{act:?}: inactive"
            );
        }
    }
}

#[tokio::test]
async fn a_refresh_never_grants_more_than_the_client_may_have_now() {
    use writ_proto::admin as pb_admin;
    let server = TestServer::start().await;
    let (id, secret, first) = alice_signed_in(&server).await;
    assert_eq!(first.scope, "orders.read orders.write");
    server
        .admin()
        .await
        .update_client(pb_admin::UpdateClientRequest {
            client: Some(pb_admin::Client {
                client_id: id.clone(),
                scope: "orders.read".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["scope".into()],
            }),
        })
        .await
        .unwrap();
    let second = refreshed(&server, &id, &secret, &first.refresh_token).await;
    assert_eq!(second.scope, "orders.read", "narrowed with the client");
}
