//! Clients without a shared secret (issue 13, part 3): `private_key_jwt` (RFC 7523 section 2.2)
//! over gRPC, through `writ-client`'s token source and by hand, against the running server.

use serde_json::json;
use tonic::Code;
use writ_client::{ClientCredentials, PrivateKeyJwt, TokenSource};
use writ_proto::admin as pb_admin;
use writ_proto::authz;
use writ_tests::Options;
use writ_tests::*;
use writ_token::{
    Algorithm, AssertionClaims, CLIENT_ASSERTION_TYPE, SigningKey, encode_client_assertion,
};

pub(crate) fn jwks(key: &SigningKey) -> String {
    json!({ "keys": [key.verification_key().to_jwk()] }).to_string()
}

pub(crate) fn assertion(key: &SigningKey, client: &str, aud: &str) -> String {
    let now = writ_token::system_clock().now();
    encode_client_assertion(
        key,
        &AssertionClaims {
            iss: client.into(),
            sub: client.into(),
            aud: aud.into(),
            iat: now,
            exp: now + 60,
            jti: writ_token::random_id(),
        },
    )
    .unwrap()
}

/// An assertion for "orders" signed by `key`, refused as `invalid_client`.
async fn refused_for(server: &TestServer, key: &SigningKey) {
    server
        .assert_token_refused(
            by_assertion("orders", assertion(key, "orders", &server.issuer)),
            Code::Unauthenticated,
            "invalid_client",
        )
        .await;
}

/// Registers `id` as a `private_key_jwt` client of `key`.
async fn register_with_key(server: &TestServer, id: &str, key: &SigningKey) {
    server
        .create_client(pb_admin::Client {
            token_endpoint_auth_method: "private_key_jwt".into(),
            jwks: jwks(key),
            ..service_spec(id, "inventory.read", &["inventory"])
        })
        .await;
}

/// Each request is `invalid_client`, with a message, and changes nothing.
async fn each_invalid_client<const N: usize>(
    server: &TestServer,
    refusals: [(&str, authz::TokenRequest); N],
) {
    for (why, req) in refusals {
        let status = server
            .assert_token_refused_unchanged(req, Code::Unauthenticated, "invalid_client")
            .await;
        assert!(!status.message().is_empty(), "{why}");
    }
}

fn by_assertion(client_id: &str, assertion: String) -> authz::TokenRequest {
    authz::TokenRequest {
        grant_type: "client_credentials".into(),
        client_id: client_id.into(),
        client_assertion_type: CLIENT_ASSERTION_TYPE.into(),
        client_assertion: assertion,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_client_holding_only_a_private_key_gets_tokens_from_the_token_source() {
    let server = TestServer::start().await;
    let key = SigningKey::generate(Algorithm::EdDSA, "orders-1").unwrap();
    let (id, secret) = server
        .create_client(pb_admin::Client {
            token_endpoint_auth_method: "private_key_jwt".into(),
            jwks: jwks(&key),
            ..service_spec("orders", "inventory.read", &["inventory"])
        })
        .await;
    assert_eq!(secret, "", "no secret exists to leak");

    let pem = key.to_pkcs8_pem().unwrap();
    let source = TokenSource::new(
        server.channel().await,
        ClientCredentials::private_key_jwt(
            &id,
            PrivateKeyJwt::from_pem("orders-1", &pem, &server.issuer).unwrap(),
        ),
    );
    let token = source.token().await.unwrap();
    let claims = writ_token::decode_unverified(&token)
        .unwrap()
        .claims
        .unwrap();
    assert_eq!(claims["client_id"], "orders");
    assert_eq!(claims["scope"], "inventory.read");

    // Discovery says so, over gRPC as over HTTP.
    let m = server.metadata().await;
    assert!(
        m.token_endpoint_auth_methods_supported
            .contains(&"private_key_jwt".to_owned())
    );
    assert_eq!(
        m.token_endpoint_auth_signing_alg_values_supported,
        ["EdDSA", "ES256"]
    );
    let http = server
        .http()
        .get("/.well-known/oauth-authorization-server")
        .await;
    let doc = http.json();
    assert!(
        doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );
    assert!(
        doc["introspection_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );
}

#[tokio::test]
async fn an_assertion_is_used_once_for_this_server_and_a_rotated_key_stops_at_once() {
    let server = TestServer::start().await;
    let old = SigningKey::generate(Algorithm::ES256, "old").unwrap();
    register_with_key(&server, "orders", &old).await;

    register_with_key(&server, "billing", &old).await;
    // No client_id: the assertion names the client.
    let once = assertion(&old, "orders", &server.issuer);
    server.issue(by_assertion("", once.clone())).await;
    let records = server.settled_audit_records().await;
    let issued = records
        .iter()
        .filter(|r| r.kind == "token_issued" && r.client_id == "orders")
        .count();
    assert_eq!(issued, 1, "one record of the issue");

    let refusals: [(&str, authz::TokenRequest); 4] = [
        ("the same assertion again", by_assertion("orders", once)),
        (
            "an assertion for another server",
            by_assertion(
                "orders",
                assertion(&old, "orders", "https://elsewhere.test"),
            ),
        ),
        (
            "an assertion of orders presented as billing (registered with the same key)",
            by_assertion("billing", assertion(&old, "orders", &server.issuer)),
        ),
        (
            "a secret for a client registered with keys",
            cc("orders", "any secret at all"),
        ),
    ];
    each_invalid_client(&server, refusals).await;
    // Both methods at once: a malformed request, not an authentication failure.
    server
        .assert_token_refused(
            authz::TokenRequest {
                client_secret: "s".into(),
                ..by_assertion("orders", assertion(&old, "orders", &server.issuer))
            },
            Code::InvalidArgument,
            "invalid_request",
        )
        .await;

    // Rotation: the administrator registers the new key; the old one stops at once.
    let new = SigningKey::generate(Algorithm::EdDSA, "new").unwrap();
    server
        .admin()
        .await
        .update_client(pb_admin::UpdateClientRequest {
            client: Some(pb_admin::Client {
                client_id: "orders".into(),
                jwks: jwks(&new),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["jwks".into()],
            }),
        })
        .await
        .unwrap();
    refused_for(&server, &old).await;
    server
        .issue(by_assertion(
            "orders",
            assertion(&new, "orders", &format!("{}/oauth2/token", server.issuer)),
        ))
        .await;
    let shown = server
        .admin()
        .await
        .get_client(pb_admin::GetClientRequest {
            client_id: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap();
    assert_eq!(shown.token_endpoint_auth_method, "private_key_jwt");
    assert_eq!(shown.jwks, jwks(&new));
}

/// Assertions that were never good: expired, or signed by a key never registered (under a kid
/// of its own, or under the registered key's kid). Each is `invalid_client` and changes nothing.
#[tokio::test]
async fn an_expired_or_foreign_assertion_is_invalid_client() {
    let server = TestServer::start().await;
    let old = SigningKey::generate(Algorithm::ES256, "old").unwrap();
    register_with_key(&server, "orders", &old).await;
    let now = writ_token::system_clock().now();
    let expired = encode_client_assertion(
        &old,
        &AssertionClaims {
            iss: "orders".into(),
            sub: "orders".into(),
            aud: server.issuer.clone(),
            iat: now - 600,
            exp: now - 300,
            jti: writ_token::random_id(),
        },
    )
    .unwrap();
    // Never registered: under a kid of its own, and under the registered key's kid.
    let stranger = SigningKey::generate(Algorithm::ES256, "stranger").unwrap();
    let impostor = SigningKey::generate(Algorithm::ES256, "old").unwrap();
    let refusals: [(&str, authz::TokenRequest); 3] = [
        ("an expired assertion", by_assertion("orders", expired)),
        (
            "an assertion signed by a key never registered",
            by_assertion("orders", assertion(&stranger, "orders", &server.issuer)),
        ),
        (
            "an assertion signed by another key under the registered kid",
            by_assertion("orders", assertion(&impostor, "orders", &server.issuer)),
        ),
    ];
    each_invalid_client(&server, refusals).await;
    // The registered key still works: the refusals spent nothing of it.
    server
        .issue(by_assertion(
            "orders",
            assertion(&old, "orders", &server.issuer),
        ))
        .await;
}

/// A client that publishes its keys at a `jwks_uri` (https, the CA the operator configured):
/// fetched when first needed, kept, fetched again when an assertion names a key it lacks (the
/// client rotated) but not more often than `client_jwks_min_refetch`; a URL that is not https is
/// refused at registration.
#[tokio::test]
async fn a_client_publishing_its_keys_at_a_url_is_fetched_once_and_again_on_rotation() {
    let pki = tempfile::tempdir().unwrap();
    let old = SigningKey::generate(Algorithm::ES256, "old").unwrap();
    let new = SigningKey::generate(Algorithm::EdDSA, "new").unwrap();
    let published = writ_tests::sts::JwksServer::start(pki.path(), &jwks(&old)).await;
    const MIN_REFETCH: std::time::Duration = std::time::Duration::from_secs(5);
    let server = TestServer::start_with(Options {
        client_jwks_ca: Some(published.ca_path.clone()),
        config: Box::new(|c| c.client_jwks_min_refetch = MIN_REFETCH),
        ..Options::default()
    })
    .await;
    let spec = |uri: &str| pb_admin::Client {
        token_endpoint_auth_method: "private_key_jwt".into(),
        jwks_uri: uri.into(),
        ..service_spec("orders", "inventory.read", &["inventory"])
    };
    for bad in [
        "http://127.0.0.1/jwks.json",
        "https://user@127.0.0.1/jwks.json",
        "https:///jwks.json",
    ] {
        let refused = server
            .admin()
            .await
            .create_client(pb_admin::CreateClientRequest {
                client: Some(spec(bad)),
            })
            .await;
        assert_refused(refused, Code::InvalidArgument, "invalid_request");
    }
    let (_, secret) = server.create_client(spec(&published.url)).await;
    assert_eq!(secret, "");
    assert_eq!(
        published.fetches(),
        0,
        "fetched when first needed, not before"
    );

    for _ in 0..3 {
        server
            .issue(by_assertion(
                "orders",
                assertion(&old, "orders", &server.issuer),
            ))
            .await;
    }
    assert_eq!(published.fetches(), 1, "fetched once, then kept");

    // The client rotates: it publishes the new key, and signs with it at once (a while after
    // the last fetch: at most one fetch per client per `client_jwks_min_refetch`, 10 s by
    // default).
    tokio::time::sleep(MIN_REFETCH).await;
    published.serve(&jwks(&new));
    server
        .issue(by_assertion(
            "orders",
            assertion(&new, "orders", &server.issuer),
        ))
        .await;
    assert_eq!(
        published.fetches(),
        2,
        "an unknown kid fetched the set again"
    );
    // The old key is gone from the set: refused (without a fetch: the last was just now).
    refused_for(&server, &old).await;
    // A kid nobody publishes does not make Writ fetch on every request.
    let stranger = SigningKey::generate(Algorithm::EdDSA, "stranger").unwrap();
    for _ in 0..3 {
        refused_for(&server, &stranger).await;
    }
    assert_eq!(
        published.fetches(),
        2,
        "at most one fetch per client_jwks_min_refetch"
    );
}
