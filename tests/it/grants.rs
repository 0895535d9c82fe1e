//! The token endpoint over gRPC: client_credentials, password, and every refusal.

use tonic::Code;
use writ_proto::admin as pb_admin;
use writ_proto::authz::{TokenRequest, TokenResponse};
use writ_proto::common::TokenFormat;
use writ_tests::*;
use writ_token::{TokenVerifier, VerifierConfig};

/// The server's published keys, fetched over gRPC, as a verifier for `audience`.
pub async fn verifier_for(server: &TestServer, audience: &str) -> TokenVerifier {
    let jwks = server.jwks().await;
    let issuer = server.metadata().await.issuer;
    TokenVerifier::new(
        VerifierConfig::new(vec![issuer], Some(audience.into())),
        writ_proto::convert::PublishedKeys::from(jwks)
            .key_set()
            .unwrap(),
        writ_token::system_clock(),
    )
}

/// A server with one client_credentials client, "svc", allowed `scope` for audience "x".
async fn svc(scope: &str) -> (TestServer, String, String) {
    let server = TestServer::start().await;
    let (id, secret) = server.service_client("svc", scope, &["x"]).await;
    (server, id, secret)
}

#[tokio::test]
async fn client_credentials_issues_an_rfc9068_jwt_that_verifies_offline() {
    let server = TestServer::start().await;
    let (id, secret) = server
        .service_client("orders", "inventory.read inventory.write", &["inventory"])
        .await;
    let mut req = cc(&id, &secret);
    req.scope = "inventory.read".into();
    let r = server.issue(req).await;
    assert_eq!(r.token_type, "Bearer");
    assert_eq!(r.scope, "inventory.read");
    assert_eq!(r.expires_in, 300);
    assert!(
        r.refresh_token.is_empty(),
        "client_credentials issues no refresh token"
    );
    assert_eq!(r.issued_token_type, "urn:ietf:params:oauth:token-type:jwt");

    let header = writ_token::decode_unverified(&r.access_token)
        .unwrap()
        .header
        .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    let v = verifier_for(&server, "inventory")
        .await
        .verify(&r.access_token)
        .unwrap();
    assert_eq!(v.claims.iss, server.issuer);
    assert_eq!(v.claims.sub, "orders");
    assert_eq!(v.claims.client_id, "orders");
    assert_eq!(v.claims.aud, ["inventory"]);
    assert_eq!(v.claims.scope, "inventory.read");
    assert_eq!(v.claims.exp - v.claims.iat, 300);
    assert!(v.claims.gid.is_some());
}

#[tokio::test]
async fn empty_scope_grants_everything_the_client_may_have() {
    let (server, id, secret) = svc("b a").await;
    let r = server.issue(cc(&id, &secret)).await;
    assert_eq!(r.scope, "a b");
}

async fn biscuit_client(server: &TestServer) -> (String, String) {
    server
        .create_client(pb_admin::Client {
            client_id: "gateway".into(),
            grant_types: vec!["client_credentials".into()],
            scope: "inventory.read inventory.write".into(),
            audience: vec!["inventory".into()],
            token_formats: vec![TokenFormat::Jwt as i32, TokenFormat::Biscuit as i32],
            ..Default::default()
        })
        .await
}

#[tokio::test]
async fn a_biscuit_is_issued_on_request_and_verifies_with_the_published_root_key() {
    let server = TestServer::start().await;
    let (id, secret) = biscuit_client(&server).await;
    let mut req = cc(&id, &secret);
    req.token_format = TokenFormat::Biscuit as i32;
    let r = server.issue(req).await;
    assert_eq!(
        r.issued_token_type,
        "urn:writ:params:oauth:token-type:biscuit"
    );
    assert!(r.biscuit.is_empty());
    let v = verifier_for(&server, "inventory")
        .await
        .verify(&r.access_token)
        .unwrap();
    assert_eq!(v.format, writ_token::TokenFormat::Biscuit);
    assert_eq!(v.claims.scope, "inventory.read inventory.write");
    assert_eq!(v.claims.client_id, "gateway");
}

#[tokio::test]
async fn jwt_and_biscuit_alongside_share_token_and_grant_ids() {
    let server = TestServer::start().await;
    let (id, secret) = biscuit_client(&server).await;
    let mut req = cc(&id, &secret);
    req.token_format = TokenFormat::JwtAndBiscuit as i32;
    let r = server.issue(req).await;
    let verifier = verifier_for(&server, "inventory").await;
    let jwt = verifier.verify(&r.access_token).unwrap();
    let biscuit = verifier.verify(&r.biscuit).unwrap();
    assert_eq!(jwt.format, writ_token::TokenFormat::Jwt);
    assert_eq!(biscuit.format, writ_token::TokenFormat::Biscuit);
    assert_eq!(jwt.claims.jti, biscuit.claims.jti);
    assert_eq!(jwt.claims.gid, biscuit.claims.gid);
    assert_eq!(jwt.claims.exp, biscuit.claims.exp);
}

#[tokio::test]
async fn a_format_the_client_is_not_allowed_is_refused() {
    let (server, id, secret) = svc("a").await;
    let req = TokenRequest {
        token_format: TokenFormat::Biscuit as i32,
        ..cc(&id, &secret)
    };
    server
        .assert_token_refused_unchanged(req, Code::InvalidArgument, "invalid_request")
        .await;
}

#[tokio::test]
async fn unknown_grant_types_and_implicit_are_unsupported() {
    let (server, id, secret) = svc("a").await;
    for (grant, error) in [
        ("implicit", "unsupported_grant_type"),
        (
            "urn:ietf:params:oauth:grant-type:saml2-bearer",
            "unsupported_grant_type",
        ),
        ("CLIENT_CREDENTIALS", "unsupported_grant_type"),
        ("", "invalid_request"),
    ] {
        let req = TokenRequest {
            grant_type: grant.into(),
            ..cc(&id, &secret)
        };
        server
            .assert_token_refused_unchanged(req, Code::InvalidArgument, error)
            .await;
    }
    // A grant Writ serves, to a client not registered for it.
    let req = TokenRequest {
        grant_type: "authorization_code".into(),
        ..cc(&id, &secret)
    };
    server
        .assert_token_refused_unchanged(req, Code::PermissionDenied, "unauthorized_client")
        .await;
}

#[tokio::test]
async fn wrong_missing_empty_or_padded_secrets_are_invalid_client() {
    let (server, id, secret) = svc("a").await;
    for bad in [
        String::new(),
        "wrong".to_owned(),
        format!("{secret} "),
        format!("{secret}\0"),
        format!(" {secret}"),
        secret[..secret.len() - 1].to_owned(),
        secret.to_uppercase(),
    ] {
        server
            .assert_token_refused_unchanged(cc(&id, &bad), Code::Unauthenticated, "invalid_client")
            .await;
        // A success clears the failure count (the throttle has tests of its own).
        server.issue(cc(&id, &secret)).await;
    }
}

#[tokio::test]
async fn another_clients_secret_and_unknown_clients_get_the_same_invalid_client() {
    let server = TestServer::start().await;
    let (a, _) = server.service_client("a", "s", &["x"]).await;
    let (_, b_secret) = server.service_client("b", "s", &["x"]).await;
    let refused = async |id: &str| {
        server
            .assert_token_refused_unchanged(
                cc(id, &b_secret),
                Code::Unauthenticated,
                "invalid_client",
            )
            .await
    };
    let other = refused(&a).await;
    let unknown = refused("nobody").await;
    // Same path, same answer: the response does not reveal which clients exist.
    assert_eq!(other.message(), unknown.message());
}

#[tokio::test]
async fn a_public_client_cannot_use_client_credentials() {
    let server = TestServer::start().await;
    let (id, secret) = server
        .create_client(pb_admin::Client {
            client_id: "spa".into(),
            client_type: pb_admin::ClientType::Public as i32,
            grant_types: vec!["refresh_token".into()],
            audience: vec!["x".into()],
            ..Default::default()
        })
        .await;
    assert!(secret.is_empty(), "public clients have no secret");
    server
        .assert_token_refused_unchanged(cc(&id, ""), Code::PermissionDenied, "unauthorized_client")
        .await;
    // And a public client cannot be registered for client_credentials at all.
    let r = server
        .assert_unchanged(async {
            server
                .admin()
                .await
                .create_client(pb_admin::CreateClientRequest {
                    client: Some(pb_admin::Client {
                        client_type: pb_admin::ClientType::Public as i32,
                        grant_types: vec!["client_credentials".into()],
                        ..Default::default()
                    }),
                })
                .await
        })
        .await;
    assert_refused(r, Code::InvalidArgument, "invalid_request");
}

#[tokio::test]
async fn a_scope_the_client_may_not_have_is_invalid_scope() {
    let (server, id, secret) = svc("read").await;
    for scope in ["write", "read write", "read\"", "rëad"] {
        let req = TokenRequest {
            scope: scope.into(),
            ..cc(&id, &secret)
        };
        server
            .assert_token_refused_unchanged(req, Code::PermissionDenied, "invalid_scope")
            .await;
    }
}

#[tokio::test]
async fn an_audience_the_client_may_not_target_is_invalid_target() {
    let server = TestServer::start().await;
    let (id, secret) = server
        .service_client("svc", "read", &["inventory", "billing"])
        .await;
    let req = TokenRequest {
        audience: vec!["billing".into()],
        ..cc(&id, &secret)
    };
    let r = server.issue(req).await;
    let v = verifier_for(&server, "billing")
        .await
        .verify(&r.access_token)
        .unwrap();
    assert_eq!(v.claims.aud, ["billing"]);

    let req = TokenRequest {
        resource: vec!["payroll".into()],
        ..cc(&id, &secret)
    };
    server
        .assert_token_refused_unchanged(req, Code::PermissionDenied, "invalid_target")
        .await;
}

#[tokio::test]
async fn malformed_requests_are_invalid_request_and_change_nothing() {
    let (server, id, secret) = svc("read").await;
    let cases: Vec<TokenRequest> = vec![
        TokenRequest {
            client_id: String::new(),
            ..cc("", &secret)
        },
        TokenRequest {
            client_id: "c".repeat(10_000),
            ..cc(&id, &secret)
        },
        TokenRequest {
            client_secret: "s".repeat(10_000),
            ..cc(&id, &secret)
        },
        TokenRequest {
            token_format: 42,
            ..cc(&id, &secret)
        },
        TokenRequest {
            audience: (0..40).map(|i| format!("a{i}")).collect(),
            ..cc(&id, &secret)
        },
    ];
    for req in cases {
        server
            .assert_token_refused_unchanged(req, Code::InvalidArgument, "invalid_request")
            .await;
    }
}

#[tokio::test]
async fn an_oversized_message_is_refused_by_the_transport() {
    let (server, id, _) = svc("read").await;
    let req = TokenRequest {
        scope: "a ".repeat(300_000),
        ..cc(&id, "x")
    };
    let status = server
        .assert_unchanged(server.token(req))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_disabled_client_cannot_get_tokens() {
    let (server, id, secret) = svc("read").await;
    server.issue(cc(&id, &secret)).await;
    server.set_disabled(&id, true).await;
    server
        .assert_token_refused(cc(&id, &secret), Code::Unauthenticated, "invalid_client")
        .await;
}

/// A password-grant client and a user, the legacy API-gateway pattern.
/// The `gateway` client: the password and refresh grants for `orders`.
pub async fn gateway_client(server: &TestServer) -> (String, String) {
    server
        .create_client(pb_admin::Client {
            client_id: "gateway".into(),
            grant_types: vec!["password".into(), "refresh_token".into()],
            scope: "orders.read orders.write admin".into(),
            audience: vec!["orders".into()],
            ..Default::default()
        })
        .await
}

pub async fn gateway_and_user(server: &TestServer) -> (String, String) {
    let (id, secret) = gateway_client(server).await;
    server
        .create_user("alice", ALICE_PASSWORD, "orders.read orders.write")
        .await;
    (id, secret)
}

/// Alice's password.
pub const ALICE_PASSWORD: &str = "correct horse battery";

/// `gateway_and_user`, and the tokens alice gets through the gateway with her password: the
/// gateway's id and secret, and the token response.
pub async fn alice_signed_in(server: &TestServer) -> (String, String, TokenResponse) {
    let (id, secret) = gateway_and_user(server).await;
    let r = server
        .issue(password_request(&id, &secret, ALICE_PASSWORD))
        .await;
    (id, secret, r)
}

pub fn password_request(id: &str, secret: &str, password: &str) -> TokenRequest {
    TokenRequest {
        grant_type: "password".into(),
        client_id: id.into(),
        client_secret: secret.into(),
        username: "alice".into(),
        password: password.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn password_grant_issues_user_tokens_with_the_intersection_of_scopes() {
    let server = TestServer::start().await;
    let (id, secret, r) = alice_signed_in(&server).await;
    // The client may have "admin", the user may not: the token gets neither more nor less.
    assert_eq!(r.scope, "orders.read orders.write");
    assert!(!r.refresh_token.is_empty());
    let v = verifier_for(&server, "orders")
        .await
        .verify(&r.access_token)
        .unwrap();
    assert_ne!(
        v.claims.sub, "alice",
        "sub is the user's stable opaque subject"
    );
    assert_eq!(v.claims.client_id, "gateway");

    let req = TokenRequest {
        scope: "admin".into(),
        ..password_request(&id, &secret, ALICE_PASSWORD)
    };
    server
        .assert_token_refused(req, Code::PermissionDenied, "invalid_scope")
        .await;
}

#[tokio::test]
async fn password_grant_with_wrong_password_or_unknown_user_is_invalid_grant() {
    let server = TestServer::start().await;
    let (id, secret) = gateway_and_user(&server).await;
    let refused = async |req: TokenRequest| {
        server
            .assert_token_refused_unchanged(req, Code::PermissionDenied, "invalid_grant")
            .await
    };
    let wrong = refused(password_request(&id, &secret, "wrong password")).await;
    let unknown = refused(TokenRequest {
        username: "mallory".into(),
        ..password_request(&id, &secret, ALICE_PASSWORD)
    })
    .await;
    assert_eq!(wrong.message(), unknown.message());
}

#[tokio::test]
async fn password_grant_is_off_unless_the_client_is_allowed_it() {
    let server = TestServer::start().await;
    let (_, _) = gateway_and_user(&server).await;
    let (id, secret) = server
        .service_client("svc", "orders.read", &["orders"])
        .await;
    server
        .assert_token_refused_unchanged(
            password_request(&id, &secret, ALICE_PASSWORD),
            Code::PermissionDenied,
            "unauthorized_client",
        )
        .await;
}

#[tokio::test]
async fn client_secrets_are_stored_only_as_hashes() {
    let (server, _, secret) = svc("read").await;
    let haystack: Vec<u8> = server.state().into_values().flatten().collect();
    assert!(
        !haystack
            .windows(secret.len())
            .any(|w| w == secret.as_bytes())
    );
    let dump = std::fs::read_dir(server.data_dir().join("store"))
        .unwrap()
        .flat_map(|e| std::fs::read(e.unwrap().path()).unwrap_or_default())
        .collect::<Vec<u8>>();
    assert!(!dump.windows(secret.len()).any(|w| w == secret.as_bytes()));
}

/// Issue 10, item 4: failed authentications are throttled per username, per client and per
/// source: past the free failures, the credential is not even checked (right or wrong) until
/// a lockout that doubles with each failure ends; an unknown username is treated alike; a
/// success clears the count. Over HTTP the refusal is a 429.
#[tokio::test]
async fn failed_authentication_is_throttled_per_username_client_and_source() {
    let clock = writ_token::ManualClock::starting_now();
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        config: Box::new(|c| c.throttle.free_failures_per_source = 30),
        ..Options::default()
    })
    .await;
    let (id, secret) = gateway_and_user(&server).await;
    let throttled = |r: Result<TokenResponse, tonic::Status>| {
        assert_refused(r, Code::ResourceExhausted, "temporarily_unavailable");
    };
    let with_user = |user: &str, password: &str| TokenRequest {
        username: user.into(),
        ..password_request(&id, &secret, password)
    };

    for user in ["alice", "mallory"] {
        for _ in 0..6 {
            server
                .assert_token_refused(
                    with_user(user, "wrong"),
                    Code::PermissionDenied,
                    "invalid_grant",
                )
                .await;
        }
        // Locked: even the right password is not looked at.
        throttled(server.token(with_user(user, ALICE_PASSWORD)).await);
    }
    clock.advance(1);
    server.issue(with_user("alice", ALICE_PASSWORD)).await;
    // The success cleared alice's count: one more failure is free again.
    server
        .assert_token_refused(
            with_user("alice", "wrong"),
            Code::PermissionDenied,
            "invalid_grant",
        )
        .await;
    server.issue(with_user("alice", ALICE_PASSWORD)).await;

    // A client's secret, likewise; another client is not affected.
    let (svc, svc_secret) = server.service_client("svc", "read", &["x"]).await;
    let (other, other_secret) = server.service_client("other", "read", &["x"]).await;
    for _ in 0..6 {
        server
            .assert_token_refused(cc(&svc, "wrong"), Code::Unauthenticated, "invalid_client")
            .await;
    }
    throttled(server.token(cc(&svc, &svc_secret)).await);
    server.issue(cc(&other, &other_secret)).await;
    let http = server.http();
    let r = http
        .post_form(
            "/oauth2/token",
            &[],
            &format!("grant_type=client_credentials&client_id={svc}&client_secret={svc_secret}"),
        )
        .await;
    assert_eq!(r.status, http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["error"], "temporarily_unavailable");

    // The source: thirty failures over many names, then nothing from it is looked at.
    for n in 0..30 {
        let _ = server.token(cc(&format!("nobody-{n}"), "x")).await;
    }
    throttled(server.token(cc(&other, &other_secret)).await);
    clock.advance(400);
    server.issue(cc(&other, &other_secret)).await;
    server.issue(cc(&svc, &svc_secret)).await;
}

/// Issue 10, item 4: a public client never gets the password grant (no password oracle), and
/// password checks are bounded: past the permits and the queue, a password grant is refused as
/// `temporarily_unavailable` at once, while other clients are served.
#[tokio::test]
async fn password_checks_are_bounded_and_never_for_public_clients() {
    let server = TestServer::start_with(Options {
        config: Box::new(|c| {
            c.max_concurrent_password_checks = 1;
            c.max_waiting_password_checks = 2;
        }),
        ..Options::default()
    })
    .await;
    let r = server
        .admin()
        .await
        .create_client(writ_proto::admin::CreateClientRequest {
            client: Some(writ_proto::admin::Client {
                client_id: "spa".into(),
                client_type: writ_proto::admin::ClientType::Public as i32,
                grant_types: vec!["password".into()],
                ..Default::default()
            }),
        })
        .await;
    assert_refused(r, Code::InvalidArgument, "invalid_request");

    let (id, secret) = gateway_and_user(&server).await;
    let (svc, svc_secret) = server.service_client("svc", "read", &["x"]).await;
    let flood = futures::future::join_all((0..24).map(|n| {
        let server = &server;
        let req = TokenRequest {
            username: format!("user-{n}"),
            ..password_request(&id, &secret, "wrong")
        };
        async move { server.token(req).await }
    }));
    let (outcomes, served) = tokio::join!(flood, server.token(cc(&svc, &svc_secret)));
    served.expect("another client is served during the flood");
    let busy = outcomes
        .iter()
        .filter(|r| r.as_ref().is_err_and(|s| s.code() == Code::Unavailable))
        .count();
    let checked = outcomes
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_err_and(|s| s.code() == Code::PermissionDenied)
        })
        .count();
    assert!(busy > 0, "some were refused as busy");
    assert!(checked >= 1, "and some checked");
    assert_eq!(busy + checked, outcomes.len());
}
