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
        ("authorization_code", "unsupported_grant_type"),
        (
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
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
            grant_types: vec!["password".into(), "refresh_token".into()],
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
