//! Introspection (RFC 7662) and revocation (RFC 7009) over gRPC.

use tonic::Code;
use writ_proto::authz::{IntrospectRequest, IntrospectResponse, RevokeRequest};
use writ_tests::*;

use crate::grants::alice_signed_in;

/// A server with one client, "orders", allowed scope "read" for audience "inventory".
async fn orders() -> (TestServer, String, String) {
    let server = TestServer::start().await;
    let (id, secret) = server
        .service_client("orders", "read", &["inventory"])
        .await;
    (server, id, secret)
}

#[tokio::test]
async fn introspection_reports_an_active_token_to_its_client() {
    let (server, id, secret) = orders().await;
    let token = server.cc_token(&id, &secret).await;
    let r = server.introspect(&token, &id, &secret).await;
    assert!(r.active);
    assert_eq!(r.client_id, "orders");
    assert_eq!(r.sub, "orders");
    assert_eq!(r.scope, "read");
    assert_eq!(r.aud, ["inventory"]);
    assert_eq!(r.iss, server.issuer);
    assert_eq!(r.token_type, "Bearer");
    assert!(r.exp > r.iat && !r.jti.is_empty() && !r.gid.is_empty());
}

#[tokio::test]
async fn introspection_needs_an_authenticated_confidential_caller() {
    let (server, id, secret) = orders().await;
    let token = server.cc_token(&id, &secret).await;
    for (cid, csecret) in [
        ("", ""),
        (id.as_str(), ""),
        (id.as_str(), "wrong"),
        ("nobody", secret.as_str()),
    ] {
        let r = server
            .authz()
            .await
            .introspect(IntrospectRequest {
                token: token.clone(),
                client_id: cid.into(),
                client_secret: csecret.into(),
                ..Default::default()
            })
            .await;
        // Missing, wrong or unknown: one answer, invalid_client.
        assert_refused(r, Code::Unauthenticated, "invalid_client");
    }
}

#[tokio::test]
async fn an_inactive_token_yields_only_active_false() {
    let (server, id, secret) = orders().await;
    for token in [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        &"x".repeat(5000),
    ] {
        let r = server.introspect(token, &id, &secret).await;
        assert_eq!(
            r,
            IntrospectResponse::default(),
            "nothing but active=false for {token:.20}"
        );
    }
}

#[tokio::test]
async fn a_resource_server_sees_tokens_for_its_audience_but_not_others() {
    let server = TestServer::start().await;
    let (orders, orders_secret) = server
        .service_client("orders", "read", &["inventory", "billing"])
        .await;
    let (inventory, inventory_secret) = server.service_client("inventory", "", &["x"]).await;
    let (billing_peer, billing_secret) = server.service_client("stranger", "", &["x"]).await;
    let mut req = cc(&orders, &orders_secret);
    req.audience = vec!["inventory".into()];
    let token = server.issue(req).await.access_token;
    assert!(
        server
            .introspect(&token, &inventory, &inventory_secret)
            .await
            .active
    );
    // A client that is neither the token's client nor its audience learns nothing.
    assert_eq!(
        server
            .introspect(&token, &billing_peer, &billing_secret)
            .await,
        IntrospectResponse::default()
    );
}

#[tokio::test]
async fn revoking_an_access_token_makes_it_inactive() {
    let (server, id, secret) = orders().await;
    let token = server.cc_token(&id, &secret).await;
    let other = server.cc_token(&id, &secret).await;
    server.revoke_token(&token, &id, &secret).await;
    assert!(!server.introspect(&token, &id, &secret).await.active);
    assert!(
        server.introspect(&other, &id, &secret).await.active,
        "only that token"
    );
    // Revocation is durable: it survives a restart.
    let server = server.restart().await;
    assert!(!server.introspect(&token, &id, &secret).await.active);
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_the_access_tokens_of_its_grant() {
    let server = TestServer::start().await;
    let (id, secret, r) = alice_signed_in(&server).await;
    let tokens = [r.access_token.as_str(), r.refresh_token.as_str()];
    for token in tokens {
        assert!(server.introspect(token, &id, &secret).await.active);
    }
    server.revoke_token(&r.refresh_token, &id, &secret).await;
    server.assert_inactive(&tokens, &id, &secret).await;
}

#[tokio::test]
async fn revoking_garbage_or_unknown_tokens_succeeds_and_changes_nothing() {
    let (server, id, secret) = orders().await;
    for token in [
        "garbage",
        "a.b.c",
        "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    ] {
        server
            .assert_unchanged(server.revoke_token(token, &id, &secret))
            .await;
    }
}

#[tokio::test]
async fn a_client_cannot_revoke_another_clients_token() {
    let server = TestServer::start().await;
    let (a, a_secret) = server.service_client("a", "read", &["x"]).await;
    let (b, b_secret) = server.service_client("b", "read", &["x"]).await;
    let token = server.cc_token(&a, &a_secret).await;
    server
        .assert_unchanged(server.revoke_token(&token, &b, &b_secret))
        .await;
    assert!(server.introspect(&token, &a, &a_secret).await.active);
}

#[tokio::test]
async fn revocation_needs_client_authentication() {
    let server = TestServer::start().await;
    let (a, a_secret) = server.service_client("a", "read", &["x"]).await;
    let token = server.cc_token(&a, &a_secret).await;
    let r = server
        .assert_unchanged(async {
            server
                .authz()
                .await
                .revoke(RevokeRequest {
                    token: token.clone(),
                    client_id: a.clone(),
                    client_secret: "wrong".into(),
                    ..Default::default()
                })
                .await
        })
        .await;
    assert_refused(r, Code::Unauthenticated, "invalid_client");
}

#[tokio::test]
async fn a_biscuit_can_be_introspected_and_revoked_like_a_jwt() {
    let server = TestServer::start().await;
    let (id, secret) = server.biscuit_client("svc", "a b", &["x"]).await;
    let token = server.cc_token(&id, &secret).await;
    let narrowed = writ_token::attenuate(
        &token,
        &writ_token::Attenuation {
            scopes: Some(vec!["a".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    let r = server.introspect(&narrowed, &id, &secret).await;
    assert!(r.active);
    assert_eq!(r.scope, "a", "introspection reports what attenuation left");
    assert_eq!(
        r.token_format,
        writ_proto::common::TokenFormat::Biscuit as i32
    );
    server.revoke_token(&token, &id, &secret).await;
    // Revoking the token id kills every attenuated copy too.
    assert!(!server.introspect(&narrowed, &id, &secret).await.active);
}

/// Issue 10, item 9: introspection sees every revocation the feed carries, not only the
/// authorization server's own: a token revoked by another producer is inactive.
#[tokio::test]
async fn introspection_sees_revocations_of_other_producers() {
    let (server, id, secret) = orders().await;
    let token = server.cc_token(&id, &secret).await;
    assert!(server.introspect(&token, &id, &secret).await.active);
    let jti = jti_of(&token);
    let mut producer = server.revocation(&server.publish_token().await).await;
    producer
        .revoke(writ_proto::revocation::RevokeRequest {
            entries: vec![writ_proto::revocation::RevocationEntry {
                kind: writ_token::RevocationKind::TokenId as i32,
                value: jti.clone(),
                expires_at: writ_token::system_clock().now() + 600,
                reason: "another producer".into(),
                not_before: 0,
                issuer: String::new(),
            }],
        })
        .await
        .unwrap();
    assert!(
        !server
            .engine
            .is_revoked(writ_token::RevocationKind::TokenId, &jti, 0)
            .await
            .unwrap(),
        "not in the authorization server's own index"
    );
    assert!(!server.introspect(&token, &id, &secret).await.active);
}

/// Issue 10, item 9, with the services apart: an authorization server whose revocation service
/// runs in another platform follows its feed (watched with its own tokens), so introspection
/// sees what another producer revoked there.
#[tokio::test]
async fn introspection_follows_a_remote_revocation_feed() {
    use writ::platform::{AuthzSettings, Platform, PlatformConfig, RevocationSettings, TlsMode};
    use writ_oauth::{Client, ClientCredentials, TokenOperation, TokenRequest};

    let revocation_addr: std::net::SocketAddr = ([127, 0, 0, 1], writ_tests::free_port()).into();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = PlatformConfig::new(dir_a.path());
    a.tls = TlsMode::Off;
    a.authz = Some(AuthzSettings::default());
    a.revocation_url = Some(format!("http://{revocation_addr}"));
    let a = Platform::start(a).await.unwrap();
    let authz = a.authz.as_ref().unwrap();
    let mut b = PlatformConfig::new(dir_b.path());
    b.tls = TlsMode::Off;
    b.authz_url = Some(a.url(authz.grpc_addr));
    b.revocation = Some(RevocationSettings {
        grpc: revocation_addr,
        service: writ_tests::revocation_config(),
        ..RevocationSettings::default()
    });
    let b = Platform::start(b).await.unwrap();

    let engine = authz.engine.clone();
    let client = |id: &str, scope: &str, audience: &str| Client {
        client_id: id.into(),
        grant_types: vec!["client_credentials".into()],
        scope: scope.into(),
        audience: vec![audience.into()],
        ..Client::default()
    };
    let (_, secret) = engine
        .create_client(client("svc", "read", "x"))
        .await
        .unwrap();
    let secret = secret.unwrap();
    let (_, producer_secret) = engine
        .create_client(client(
            TEST_PRODUCER,
            writ_vocabulary::names::REVOCATION_PUBLISH_SCOPE,
            writ_vocabulary::names::REVOCATION_AUDIENCE,
        ))
        .await
        .unwrap();
    let cc = |id: &str, secret: &str| TokenRequest {
        grant_type: "client_credentials".into(),
        client_id: id.into(),
        client_secret: secret.into(),
        ..TokenRequest::default()
    };
    let token = engine.token(cc("svc", &secret)).await.unwrap().access_token;
    let op = TokenOperation {
        token: token.clone(),
        token_type_hint: String::new(),
        client: ClientCredentials::secret("svc", secret.clone()),
    };
    // Active once the feed is followed (until then, it cannot vouch: temporarily_unavailable).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match engine.introspect(op.clone()).await {
            Ok(r) => {
                assert!(r.active);
                break;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("the feed never synced: {e:?}"),
        }
    }

    let publish = engine
        .token(TokenRequest {
            audience: vec![writ_vocabulary::names::REVOCATION_AUDIENCE.into()],
            ..cc(TEST_PRODUCER, &producer_secret.unwrap())
        })
        .await
        .unwrap()
        .access_token;
    let channel = connect(&b.url(revocation_addr), None).await;
    let jti = jti_of(&token);
    writ_proto::revocation::revocation_service_client::RevocationServiceClient::with_interceptor(
        channel,
        bearer(&publish),
    )
    .revoke(writ_proto::revocation::RevokeRequest {
        entries: vec![revocation_entry(
            writ_token::RevocationKind::TokenId,
            &jti,
            writ_token::system_clock().now() + 600,
        )],
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.introspect(op.clone()).await.unwrap().active {
        assert!(
            std::time::Instant::now() < deadline,
            "the remote revocation never reached introspection"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    b.stop().await;
    a.stop().await;
}
