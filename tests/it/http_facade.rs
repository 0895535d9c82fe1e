//! The OAuth HTTP facade: the same engine, spoken as RFC 6749 / 7662 / 7009 / 8414 over HTTPS.

use http::StatusCode;
use serde_json::json;
use writ_tests::http_client::{HttpClient, HttpResponse, basic, form_encode};
use writ_tests::*;

/// POSTs `form` to `path` with `authorization` (a `basic` value) as client authentication.
async fn post(http: &HttpClient, path: &str, authorization: &str, form: &str) -> HttpResponse {
    http.post_form(path, &[("authorization", authorization)], form)
        .await
}

/// POSTs `form` to the token endpoint, as [`post`].
async fn token(http: &HttpClient, authorization: &str, form: &str) -> HttpResponse {
    post(http, "/oauth2/token", authorization, form).await
}

/// A server with the client "svc" (scope "read", audience "x"), an HTTP client for it, and the
/// client's id and secret.
async fn svc() -> (TestServer, HttpClient, String, String) {
    let server = TestServer::start().await;
    let (id, secret) = server.service_client("svc", "read", &["x"]).await;
    let http = server.http();
    (server, http, id, secret)
}

#[tokio::test]
async fn client_secret_basic_and_client_secret_post_both_get_tokens() {
    let server = TestServer::start().await;
    let (id, secret) = server.service_client("svc:1", "read write", &["x"]).await;
    let http = server.http();

    let r = token(
        &http,
        &basic(&id, &secret),
        "grant_type=client_credentials&scope=read",
    )
    .await;
    let body = r.token_json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "read");
    assert_eq!(body["expires_in"], 300);
    crate::grants::verifier_for(&server, "x")
        .await
        .verify(body["access_token"].as_str().unwrap())
        .unwrap();

    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        form_encode(&id),
        form_encode(&secret)
    );
    let r = http.post_form("/oauth2/token", &[], &form).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn errors_are_rfc6749_json_with_the_right_status() {
    let (server, http, id, secret) = svc().await;
    let auth = basic(&id, &secret);
    let before = server.state();

    let r = token(&http, &basic(&id, "wrong"), "grant_type=client_credentials").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["www-authenticate"], "Basic realm=\"writ\"");
    assert_eq!(r.json()["error"], "invalid_client");

    let cases = [
        ("grant_type=implicit", "unsupported_grant_type"),
        ("grant_type=client_credentials&scope=admin", "invalid_scope"),
        (
            "grant_type=client_credentials&audience=elsewhere",
            "invalid_target",
        ),
        (
            "grant_type=client_credentials&scope=read&scope=read",
            "invalid_request",
        ),
        (
            "grant_type=client_credentials&token_format=xml",
            "invalid_request",
        ),
    ];
    for (form, error) in cases {
        let r = token(&http, &auth, form).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{form}");
        assert_eq!(r.json()["error"], error, "{form}");
        assert!(r.json()["error_description"].is_string());
    }

    // Two authentication methods at once.
    let form = format!("grant_type=client_credentials&client_secret={secret}");
    let r = token(&http, &auth, &form).await;
    assert_eq!(r.json()["error"], "invalid_request");

    // Not a form.
    let r = http
        .send(
            http::Method::POST,
            "/oauth2/token",
            &[("content-type", "application/json")],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_request");

    // Too large.
    let huge = format!(
        "grant_type=client_credentials&scope={}",
        "a".repeat(200_000)
    );
    let r = token(&http, &auth, &huge).await;
    assert_oversized_refusal(&r);
    // Declared far too large and withheld (`Expect: 100-continue`): refused before it is sent,
    // as RFC JSON, not a reset connection.
    let r = http
        .raw_head(&format!(
            "POST /oauth2/token HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\n\
             content-type: application/x-www-form-urlencoded\r\n\
             content-length: 50000000\r\nexpect: 100-continue"
        ))
        .await;
    assert_oversized_refusal(&r);
    assert_eq!(server.state(), before);
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_rfc_json_refusals_too() {
    let (server, http, _, _) = svc().await;
    for (method, path, status) in [
        (
            http::Method::GET,
            "/oauth2/token",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            http::Method::POST,
            "/.well-known/jwks.json",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (http::Method::GET, "/oauth2/nowhere", StatusCode::NOT_FOUND),
        (http::Method::POST, "/nowhere", StatusCode::NOT_FOUND),
    ] {
        let r = http.send(method.clone(), path, &[], Vec::new()).await;
        assert_eq!(r.status, status, "{method} {path}");
        assert_eq!(r.headers["cache-control"], "no-store", "{method} {path}");
        assert_eq!(r.json()["error"], "invalid_request", "{method} {path}");
    }
    drop(server);
}

/// An oversized body's refusal: 413, RFC 6749 JSON `invalid_request`, never cached.
#[track_caller]
pub fn assert_oversized_refusal(r: &HttpResponse) {
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.json()["error"], "invalid_request");
}

#[tokio::test]
async fn introspection_and_revocation_over_http() {
    let (_server, http, id, secret) = svc().await;
    let auth = basic(&id, &secret);
    let token = token(&http, &auth, "grant_type=client_credentials")
        .await
        .json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let introspect = async |token: &str| {
        post(
            &http,
            "/oauth2/introspect",
            &auth,
            &format!("token={token}"),
        )
        .await
    };

    let body = introspect(&token).await.json();
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], "svc");
    assert_eq!(body["aud"], json!(["x"]));

    assert_eq!(
        introspect("garbage").await.json(),
        json!({ "active": false })
    );
    let r = http
        .post_form("/oauth2/introspect", &[], &format!("token={token}"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = post(
        &http,
        "/oauth2/revoke",
        &auth,
        &format!("token={token}&token_type_hint=access_token"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(introspect(&token).await.json(), json!({ "active": false }));
}

#[tokio::test]
async fn discovery_documents_and_the_jwks_match_the_grpc_answers() {
    let server = TestServer::start().await;
    let http = server.http();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let m = http.get(path).await.json();
        assert_eq!(m["issuer"], server.issuer.as_str());
        assert_eq!(
            m["token_endpoint"],
            format!("{}/oauth2/token", server.issuer)
        );
        assert_eq!(
            m["jwks_uri"],
            format!("{}/.well-known/jwks.json", server.issuer)
        );
    }
    let jwks = http.get("/.well-known/jwks.json").await.json();
    let grpc = server.jwks().await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), grpc.keys.len());
    assert_eq!(jwks["keys"][0]["kid"], grpc.keys[0].kid.as_str());
    assert_eq!(jwks["keys"][0]["x"], grpc.keys[0].x.as_str());
    // And the published set parses with the jsonwebtoken crate's JWK parser.
    let keys = writ_token::parse_jwk_set(&jwks.to_string()).unwrap();
    assert_eq!(keys.len(), 1);
}

#[tokio::test]
async fn the_password_and_refresh_grants_work_over_http() {
    // No rotation grace period: the replay below is reuse however soon it comes.
    let server = TestServer::start_with(Options::without_refresh_grace()).await;
    let (id, secret) = crate::grants::gateway_and_user(&server).await;
    let http = server.http();
    let auth = basic(&id, &secret);
    let r = token(
        &http,
        &auth,
        "grant_type=password&username=alice&password=correct+horse+battery",
    )
    .await
    .json();
    let refresh = r["refresh_token"].as_str().unwrap();
    let form = format!("grant_type=refresh_token&refresh_token={refresh}");
    let r2 = token(&http, &auth, &form).await.json();
    assert!(r2["refresh_token"].as_str().unwrap() != refresh);
    let replay = token(&http, &auth, &form).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.json()["error"], "invalid_grant");
}

/// Issue 10, items 10 and 11: a third party with only HTTP verifies a Writ Biscuit with the
/// root keys the facade publishes (the biscuit-auth crate alone, no Writ code); a root key
/// revoked by id is withdrawn from both the HTTP document and gRPC `GetJwks`.
#[tokio::test]
async fn biscuit_root_keys_are_published_over_http_and_a_revoked_one_is_withdrawn() {
    use writ_token::biscuit_auth::{AuthorizerBuilder, Biscuit, PublicKey};
    let server = TestServer::start().await;
    let (id, secret) = server.biscuit_client("svc", "a", &["x"]).await;
    let token = server.cc_token(&id, &secret).await;

    let http = server.http();
    let uri = http
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()["biscuit_keys_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        uri,
        format!("{}/.well-known/biscuit-keys.json", server.issuer)
    );
    let published = || async {
        http.get("/.well-known/biscuit-keys.json").await.json()["keys"]
            .as_array()
            .unwrap()
            .clone()
    };
    let keys = published().await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["algorithm"], "ed25519");
    let root_id = keys[0]["root_key_id"].as_u64().unwrap() as u32;
    let root = PublicKey::from_bytes_hex(
        keys[0]["public_key"].as_str().unwrap(),
        writ_token::biscuit_auth::Algorithm::Ed25519,
    )
    .unwrap();
    // The third party's own verification.
    let biscuit = Biscuit::from_base64(&token, |id: Option<u32>| {
        (id == Some(root_id))
            .then_some(root)
            .ok_or(writ_token::biscuit_auth::error::Format::UnknownPublicKey)
    })
    .expect("the published key verifies the Biscuit");
    let mut authorizer = AuthorizerBuilder::new()
        .time()
        .code("allow if scope(\"a\");")
        .unwrap()
        .build(&biscuit)
        .unwrap();
    authorizer.authorize().expect("and it authorizes");
    // The same key as gRPC publishes, and the document parses with Writ's own reader.
    let grpc = server.jwks().await;
    assert_eq!(
        grpc.biscuit_root_keys[0].public_key,
        keys[0]["public_key"].as_str().unwrap()
    );
    let doc: writ_token::BiscuitKeySet = serde_json::from_value(json!({ "keys": keys })).unwrap();
    assert_eq!(doc.public_keys().unwrap()[0].id(), root_id);

    // Revoked by id (its decimal id, the `key_id` its Biscuits carry): withdrawn everywhere.
    server
        .revoke_as_admin(
            writ_token::RevocationKind::KeyId,
            &root_id.to_string(),
            writ_token::system_clock().now() + 600,
        )
        .await;
    // (Revoking the active root key makes the server rotate to a fresh one.)
    let ids: Vec<u64> = published()
        .await
        .iter()
        .map(|k| k["root_key_id"].as_u64().unwrap())
        .collect();
    assert!(
        !ids.contains(&u64::from(root_id)),
        "withdrawn from HTTP: {ids:?}"
    );
    assert!(
        server
            .jwks()
            .await
            .biscuit_root_keys
            .iter()
            .all(|k| k.root_key_id != root_id),
        "and from gRPC"
    );
}

/// Issue 10, item 8: a request whose body never arrives holds nothing past the request bound:
/// 408 with an RFC 6749 JSON body, and the facade goes on serving.
#[tokio::test]
async fn a_request_whose_body_never_arrives_is_timed_out() {
    let server = TestServer::start().await;
    let http = server.http();
    let started = std::time::Instant::now();
    let r = http
        .raw_head(
            "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 100",
        )
        .await;
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(r.json()["error"], "invalid_request");
    assert!(started.elapsed() >= writ_server::HTTP_REQUEST_TIMEOUT);
    assert!(started.elapsed() < writ_server::HTTP_REQUEST_TIMEOUT * 2);
    assert_eq!(
        http.get("/.well-known/jwks.json").await.status,
        StatusCode::OK
    );
}
