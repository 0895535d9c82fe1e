//! Issue 13, part 1: the API gateway pattern. Reference tokens (a per-client format) reveal
//! nothing and are traded for their JWT by the gateway check: over HTTP behind a real nginx
//! (`auth_request`), and over Envoy's `ext_authz` gRPC API through Envoy's published protos.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use writ_proto::admin as pb_admin;
use writ_proto::common::TokenFormat;
use writ_proto::envoy_api::auth::attribute_context::{HttpRequest, Request};
use writ_proto::envoy_api::auth::authorization_client::AuthorizationClient;
use writ_proto::envoy_api::auth::{AttributeContext, CheckRequest, CheckResponse, check_response};
use writ_proto::envoy_api::envoy::config::core::v3 as envoy_core;
use writ_tests::http_client::{HttpClient, HttpResponse, basic, form_encode};
use writ_tests::nginx::Nginx;
use writ_tests::*;

/// A client_credentials client whose tokens are reference tokens.
fn reference_client(id: &str, scope: &str, audience: &[&str]) -> pb_admin::Client {
    pb_admin::Client {
        token_formats: vec![TokenFormat::Reference as i32],
        default_token_format: TokenFormat::Reference as i32,
        ..service_spec(id, scope, audience)
    }
}

/// A token from the HTTP token endpoint (client_credentials), with `extra` form parameters.
async fn http_token(server: &TestServer, id: &str, secret: &str, extra: &str) -> HttpResponse {
    server
        .http()
        .post_form(
            "/oauth2/token",
            &[("authorization", &basic(id, secret))],
            &format!("grant_type=client_credentials{extra}"),
        )
        .await
}

/// The reference client "shop" (scope orders.read, audience orders) and a token of it.
async fn shop(server: &TestServer) -> (String, String, String) {
    let (id, secret) = server
        .create_client(reference_client("shop", "orders.read", &["orders"]))
        .await;
    let reference = http_token(server, &id, &secret, "").await.token_json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, secret, reference)
}

fn gateway(server: &TestServer) -> HttpClient {
    HttpClient::new(&server.gateway_http_url, server.ca_pem.as_deref())
}

/// The gateway's HTTP check for a request carrying `authorization` (if any).
async fn check(server: &TestServer, query: &str, authorization: &[&str]) -> HttpResponse {
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|a| ("authorization", *a))
        .collect();
    gateway(server)
        .send(Method::GET, &format!("/check{query}"), &headers, Vec::new())
        .await
}

fn header(r: &HttpResponse, name: &str) -> String {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The JWT the gateway forwards, from its `Authorization: Bearer` answer.
fn forwarded(r: &HttpResponse) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(header(r, "cache-control"), "no-store");
    header(r, "authorization")
        .strip_prefix("Bearer ")
        .expect("a bearer token to forward")
        .to_owned()
}

/// RFC 7009 at the HTTP facade, by the token's client.
async fn revoke(server: &TestServer, id: &str, secret: &str, token: &str) {
    let r = server
        .http()
        .post_form(
            "/oauth2/revoke",
            &[("authorization", &basic(id, secret))],
            &format!("token={}", form_encode(token)),
        )
        .await;
    assert_eq!(r.status, 200);
}

async fn introspect(server: &TestServer, id: &str, secret: &str, token: &str) -> serde_json::Value {
    server
        .http()
        .post_form(
            "/oauth2/introspect",
            &[("authorization", &basic(id, secret))],
            &format!("token={}", form_encode(token)),
        )
        .await
        .json()
}

#[tokio::test]
async fn a_reference_token_reveals_nothing_and_stands_for_its_jwt_everywhere() {
    let server = TestServer::start().await;
    let (id, secret) = server
        .create_client(reference_client("shop", "orders.read", &["orders"]))
        .await;
    let body = http_token(&server, &id, &secret, "").await.token_json();
    let reference = body["access_token"].as_str().unwrap().to_owned();
    assert!(
        reference.starts_with(writ_oauth::REFERENCE_PREFIX),
        "{reference}"
    );
    assert!(!reference.contains('.'));
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    // Nothing inside verifies it: it is not a JWT, nor a Biscuit.
    let verifier = crate::grants::verifier_for(&server, "orders").await;
    assert!(verifier.verify(&reference).is_err());

    // The gateway trades it for a JWT of the same token (one jti), which services verify.
    let jwt = forwarded(
        &check(
            &server,
            "?audience=orders",
            &[&format!("Bearer {reference}")],
        )
        .await,
    );
    let claims = verifier.verify(&jwt).unwrap().claims;
    assert_eq!(claims.client_id, id);
    assert_eq!(claims.aud, vec!["orders".to_owned()]);
    let seen = introspect(&server, &id, &secret, &reference).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["jti"], claims.jti.as_str());
    assert_eq!(seen["scope"], "orders.read");

    // Asked for explicitly over gRPC too; each reference differs (fresh salt, fresh token).
    let grpc = server
        .issue(writ_proto::authz::TokenRequest {
            token_format: TokenFormat::Reference as i32,
            ..cc(&id, &secret)
        })
        .await;
    assert!(grpc.access_token.starts_with(writ_oauth::REFERENCE_PREFIX));
    assert_ne!(grpc.access_token, reference);
    // A format the client is not allowed, and a reference mixed with another format.
    for extra in ["&token_format=jwt", "&token_format=reference+jwt"] {
        let r = http_token(&server, &id, &secret, extra).await;
        assert_eq!(r.status, 400, "{extra}");
        assert_eq!(r.json()["error"], "invalid_request");
    }
    let (jwt_client, jwt_secret) = server
        .service_client("plain", "orders.read", &["orders"])
        .await;
    let r = http_token(&server, &jwt_client, &jwt_secret, "&token_format=reference").await;
    assert_eq!(r.json()["error"], "invalid_request");

    // Revoking the reference (RFC 7009) revokes the token: introspection and the gateway.
    revoke(&server, &id, &secret, &reference).await;
    assert_eq!(
        introspect(&server, &id, &secret, &reference).await["active"],
        false
    );
    let r = check(
        &server,
        "?audience=orders",
        &[&format!("Bearer {reference}")],
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(header(&r, "www-authenticate").contains("invalid_token"));
    // The other reference lives on (another jti).
    forwarded(
        &check(
            &server,
            "?audience=orders",
            &[&format!("Bearer {}", grpc.access_token)],
        )
        .await,
    );
}

#[tokio::test]
async fn the_gateway_check_refuses_each_bad_request_with_its_challenge() {
    let server = TestServer::start().await;
    let (id, _, reference) = shop(&server).await;
    let bearer = format!("Bearer {reference}");

    // What the route needs: its audience and scope pass; JWT clients' tokens pass as they are.
    forwarded(&check(&server, "?audience=orders&scope=orders.read", &[&bearer]).await);
    let (jwt_client, jwt_secret) = server
        .service_client("plain", "orders.read", &["orders"])
        .await;
    let jwt = server.cc_token(&jwt_client, &jwt_secret).await;
    assert_eq!(
        forwarded(&check(&server, "?audience=orders", &[&format!("Bearer {jwt}")]).await),
        jwt
    );

    // No token: a challenge without an error code (RFC 6750 section 3.1); another scheme too.
    for presented in [&[][..], &["Basic c2hvcDpzZWNyZXQ="][..]] {
        let r = check(&server, "?audience=orders", presented).await;
        assert_eq!(r.status, 401, "{presented:?}");
        assert_eq!(header(&r, "www-authenticate"), "Bearer");
        assert!(!r.headers.contains_key("authorization"));
    }
    // Two Authorization headers, or the Bearer scheme without a well-formed token:
    // invalid_request (RFC 6750 section 3.1).
    for presented in [
        &[bearer.as_str(), bearer.as_str()][..],
        &["Bearer"][..],
        &["Bearer two words"][..],
    ] {
        let r = check(&server, "?audience=orders", presented).await;
        assert_eq!(r.status, 400, "{presented:?}");
        assert!(header(&r, "www-authenticate").starts_with("Bearer error=\"invalid_request\""));
    }
    // Garbage, a tampered reference, a reference sealed elsewhere: invalid_token.
    let mut tampered = reference.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let elsewhere = {
        let other = TestServer::start().await;
        shop(&other).await.2
    };
    // A Biscuit too: its holder may have narrowed it to other services, which the gateway
    // cannot judge.
    let (bid, bsecret) = server
        .biscuit_client("bis", "orders.read", &["orders"])
        .await;
    let biscuit = server.cc_token(&bid, &bsecret).await;
    assert!(!biscuit.contains('.'), "a Biscuit");
    for token in ["garbage", &tampered, &elsewhere, "writ_ref_", &biscuit] {
        let r = check(&server, "?audience=orders", &[&format!("Bearer {token}")]).await;
        assert_eq!(r.status, 401, "{token}");
        let challenge = header(&r, "www-authenticate");
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{challenge}"
        );
        assert!(!r.headers.contains_key("authorization"));
    }
    // Another audience: invalid_token; a scope the token lacks: insufficient_scope, 403.
    let r = check(&server, "?audience=billing", &[&bearer]).await;
    assert_eq!(r.status, 401);
    assert!(header(&r, "www-authenticate").contains("invalid_token"));
    let r = check(
        &server,
        "?audience=orders&scope=orders.read%20orders.write",
        &[&bearer],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        header(&r, "www-authenticate"),
        "Bearer error=\"insufficient_scope\", error_description=\"the access token lacks a scope this route needs\", scope=\"orders.read orders.write\""
    );
    // The gateway's own configuration at fault, a server error: no audience (never a pass
    // for every token), a malformed scope, a repeated parameter.
    for query in [
        "",
        "?scope=orders.read",
        "?audience=orders&scope=%22",
        "?audience=a&audience=b",
    ] {
        let r = check(&server, query, &[&bearer]).await;
        assert_eq!(r.status, 500, "{query}");
        assert_eq!(r.json()["error"], "server_error");
        assert!(!r.headers.contains_key("authorization"));
    }
    // A client cut off (disabled) after its token was cached: refused at once.
    server.set_disabled(&id, true).await;
    let r = check(&server, "?audience=orders", &[&bearer]).await;
    assert_eq!(r.status, 401);
}

/// A service behind the gateway: it answers 200 and keeps the Authorization header of each
/// request it was sent.
async fn backend() -> (u16, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = seen.clone();
    let app = axum::Router::new().fallback(move |headers: http::HeaderMap| {
        let kept = kept.clone();
        async move {
            let auth = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap_or("").to_owned())
                .unwrap_or_default();
            kept.lock().unwrap().push(auth);
            "inside"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, seen, task)
}

/// nginx in front of `backend_port`: `/orders/` needs the audience `orders` and the scope
/// `orders.read`, `/admin/` the scope `orders.admin`; each asks the gateway check over TLS.
fn nginx_config(backend_port: u16, gateway: &str) -> String {
    let gateway = gateway.strip_prefix("https://").unwrap();
    let route = |name: &str, query: &str| {
        format!(
            r#"
    location /{name}/ {{
      auth_request /_writ_{name};
      auth_request_set $writ_authorization $upstream_http_authorization;
      auth_request_set $writ_challenge $upstream_http_www_authenticate;
      add_header WWW-Authenticate $writ_forbidden always;
      proxy_set_header Authorization $writ_authorization;
      proxy_pass http://127.0.0.1:{backend_port};
    }}
    location = /_writ_{name} {{
      internal;
      proxy_pass https://writ_gateway/check?{query};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffer_size 16k;
      proxy_buffers 8 16k;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {{dir}}/ca.pem;
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }}"#
        )
    };
    format!(
        r#"  # nginx copies a 401's challenge itself; a 403's comes from the check's answer.
  map $status $writ_forbidden {{
    403 $writ_challenge;
    default "";
  }}
  upstream writ_gateway {{
    server {gateway};
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{{port}};
    large_client_header_buffers 4 32k;
{}
{}
  }}"#,
        route("orders", "audience=orders&scope=orders.read"),
        route("admin", "audience=orders&scope=orders.admin")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_in_front_lets_in_refuses_and_follows_revocation_and_expiry() {
    let clock = writ_token::ManualClock::starting_now();
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let (port, seen, task) = backend().await;
    let nginx = Nginx::start(
        &nginx_config(port, &server.gateway_http_url),
        &[("ca.pem", server.ca_pem.as_deref().unwrap())],
    )
    .await;
    let outside = HttpClient::new(&nginx.url(), None);
    let get = |path: &'static str, token: Option<String>| {
        let outside = &outside;
        async move {
            let auth = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("authorization", a.as_str())).collect();
            outside.send(Method::GET, path, &headers, Vec::new()).await
        }
    };
    let (id, secret) = server
        .create_client(reference_client("shop", "orders.read", &["orders"]))
        .await;
    let token = |server: &TestServer| {
        let (id, secret) = (id.clone(), secret.clone());
        let http = server.http();
        async move {
            http.post_form(
                "/oauth2/token",
                &[("authorization", &basic(&id, &secret))],
                "grant_type=client_credentials",
            )
            .await
            .token_json()["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let reference = token(&server).await;

    // Allowed: the service inside gets the JWT, never the reference.
    let r = get("/orders/42", Some(reference.clone())).await;
    assert_eq!(r.status, 200, "{}", nginx.error_log());
    assert_eq!(r.body, b"inside");
    let inside = seen.lock().unwrap().pop().unwrap();
    let jwt = inside.strip_prefix("Bearer ").unwrap();
    let claims = crate::grants::verifier_for(&server, "orders")
        .await
        .verify(jwt)
        .unwrap()
        .claims;
    assert_eq!(claims.client_id, id);
    // Again: the same JWT.
    assert_eq!(get("/orders/43", Some(reference.clone())).await.status, 200);
    assert_eq!(seen.lock().unwrap().pop().unwrap(), inside);

    // Refused: no token, a garbage one, one without the route's scope.
    let r = get("/orders/42", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(header(&r, "www-authenticate"), "Bearer");
    let r = get("/orders/42", Some("garbage".into())).await;
    assert_eq!(r.status, 401);
    assert!(header(&r, "www-authenticate").contains("error=\"invalid_token\""));
    assert_eq!(r.headers.get_all("www-authenticate").iter().count(), 1);
    let r = get("/admin/1", Some(reference.clone())).await;
    assert_eq!(r.status, 403);
    assert!(header(&r, "www-authenticate").contains("error=\"insufficient_scope\""));
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing refused got inside"
    );

    // Revoked (RFC 7009, with the reference): refused at once, though the gateway cached it.
    let second = token(&server).await;
    assert_eq!(get("/orders/1", Some(second.clone())).await.status, 200);
    seen.lock().unwrap().clear();
    revoke(&server, &id, &secret, &reference).await;
    let r = get("/orders/42", Some(reference.clone())).await;
    assert_eq!(r.status, 401);
    assert!(header(&r, "www-authenticate").contains("invalid_token"));
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(get("/orders/1", Some(second.clone())).await.status, 200);

    // Expired: past the token's lifetime (300 s by default) and the leeway verifiers allow
    // for clock skew (30 s), cached or not.
    clock.advance(331);
    let r = get("/orders/1", Some(second)).await;
    assert_eq!(r.status, 401);
    assert!(header(&r, "www-authenticate").contains("invalid_token"));
    let fresh = token(&server).await;
    assert_eq!(get("/orders/1", Some(fresh)).await.status, 200);
    drop(nginx);
    task.abort();
}

fn envoy_request(headers: &[(&str, &str)], extensions: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/orders/42".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: extensions
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }),
    }
}

/// The headers of an answer, as (name, value).
fn envoy_headers(options: &[envoy_core::HeaderValueOption]) -> Vec<(String, String)> {
    options
        .iter()
        .map(|o| {
            let h = o.header.as_ref().unwrap();
            assert_eq!(
                o.append_action,
                envoy_core::header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32
            );
            (h.key.clone(), h.value.clone())
        })
        .collect()
}

fn denied(r: &CheckResponse) -> (i32, u32, Vec<(String, String)>) {
    let Some(check_response::HttpResponse::DeniedResponse(d)) = &r.http_response else {
        panic!("not denied: {r:?}");
    };
    (
        r.status.as_ref().unwrap().code,
        d.status.as_ref().unwrap().code as u32,
        envoy_headers(&d.headers),
    )
}

#[tokio::test]
async fn envoys_ext_authz_check_answers_with_the_jwt_or_the_challenge() {
    let server = TestServer::start().await;
    let mut envoy =
        AuthorizationClient::new(connect(&server.gateway_grpc_url, server.ca_pem.as_deref()).await);
    let (id, _, reference) = shop(&server).await;
    let bearer = format!("Bearer {reference}");
    let route = [("audience", "orders"), ("scope", "orders.read")];

    let ok = envoy
        .check(envoy_request(&[("authorization", &bearer)], &route))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.status.as_ref().unwrap().code, 0);
    let Some(check_response::HttpResponse::OkResponse(pass)) = &ok.http_response else {
        panic!("not allowed: {ok:?}");
    };
    let headers = envoy_headers(&pass.headers);
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0, "authorization");
    let jwt = headers[0].1.strip_prefix("Bearer ").unwrap();
    let claims = crate::grants::verifier_for(&server, "orders")
        .await
        .verify(jwt)
        .unwrap()
        .claims;
    assert_eq!(claims.client_id, id);

    // Raw headers (Envoy's `encode_raw_headers`): the same.
    let mut raw = envoy_request(&[], &route);
    let http = raw.attributes.as_mut().and_then(|a| a.request.as_mut());
    http.and_then(|r| r.http.as_mut()).unwrap().header_map = Some(envoy_core::HeaderMap {
        headers: vec![envoy_core::HeaderValue {
            key: "authorization".into(),
            raw_value: bearer.clone().into_bytes(),
            ..Default::default()
        }],
    });
    let r = envoy.check(raw).await.unwrap().into_inner();
    assert!(matches!(
        r.http_response,
        Some(check_response::HttpResponse::OkResponse(_))
    ));

    // Refusals: gRPC status code, HTTP status and challenge for the caller (request headers,
    // route needs, gRPC code, HTTP status, the whole challenge or what it says).
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        &'a [(&'a str, &'a str)],
        i32,
        u32,
        &'a str,
    );
    let merged = format!("{bearer},{bearer}");
    let cases: [Case<'_>; 5] = [
        (&[], &route, 16, 401, "Bearer"),
        (
            &[("authorization", "Bearer garbage")],
            &route,
            16,
            401,
            "error=\"invalid_token\"",
        ),
        (
            &[("authorization", &bearer)],
            &[("audience", "billing")],
            16,
            401,
            "error=\"invalid_token\"",
        ),
        (
            &[("authorization", &bearer)],
            &[("audience", "orders"), ("scope", "orders.admin")],
            7,
            403,
            "scope=\"orders.admin\"",
        ),
        // Two headers, merged by Envoy with a comma: two headers.
        (
            &[("authorization", &merged)],
            &route,
            3,
            400,
            "error=\"invalid_request\"",
        ),
    ];
    for (headers, extensions, grpc, http, challenge) in cases {
        let r = envoy
            .check(envoy_request(headers, extensions))
            .await
            .unwrap()
            .into_inner();
        let (code, status, headers) = denied(&r);
        assert_eq!((code, status), (grpc, http), "{challenge}");
        let www = headers
            .iter()
            .find(|(k, _)| k == "www-authenticate")
            .map(|(_, v)| v.as_str())
            .unwrap();
        if challenge == "Bearer" {
            assert_eq!(www, challenge);
        } else {
            assert!(www.contains(challenge), "{www}");
        }
        assert!(headers.iter().all(|(k, _)| k != "authorization"));
    }
    // A route without an audience is the configuration's fault: a server error, no pass.
    let r = envoy
        .check(envoy_request(
            &[("authorization", &bearer)],
            &[("scope", "orders.read")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied(&r).0, 13);
    assert_eq!(denied(&r).1, 500);
    // A request Envoy sent without attributes at all: no token.
    let r = envoy
        .check(CheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied(&r).1, 401);

    // Revoked through the admin API: denied at once, cached or not.
    server
        .revoke_as_admin(
            writ_token::RevocationKind::TokenId,
            &claims.jti,
            claims.exp + 60,
        )
        .await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        envoy.check(envoy_request(&[("authorization", &bearer)], &route)),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner();
    assert_eq!(denied(&r).1, 401);
}
