//! Issue 13, part 2: DPoP (RFC 9449) at the HTTP token endpoint. Tokens issued with a proof are
//! bound to its key (`cnf.jkt`, `token_type` DPoP); every bad proof is `invalid_dpop_proof` and
//! issues nothing; server nonces when required.

use writ_proto::common::TokenFormat;
use writ_tests::http_client::{HttpResponse, basic};
use writ_tests::*;
use writ_token::{Algorithm, ProofClaimsOut, SigningKey, key_thumbprint, sign_proof};

fn now() -> i64 {
    writ_token::system_clock().now()
}

/// What a test proof says: the token endpoint's method and URL, now, no nonce, unless changed.
struct Says<'a> {
    htm: &'a str,
    htu: Option<&'a str>,
    iat: i64,
    nonce: Option<&'a str>,
}

impl Default for Says<'_> {
    fn default() -> Self {
        Says {
            htm: "POST",
            htu: None,
            iat: now(),
            nonce: None,
        }
    }
}

/// A proof by `key` for the token endpoint of `server`, saying what `says` says.
fn proof(server: &TestServer, key: &SigningKey, says: Says<'_>) -> String {
    let endpoint = format!("{}/oauth2/token", server.issuer);
    sign_proof(
        key,
        &ProofClaimsOut {
            htm: says.htm,
            htu: says.htu.unwrap_or(&endpoint),
            iat: says.iat,
            access_token: None,
            nonce: says.nonce,
        },
    )
}

async fn cc_with(server: &TestServer, id: &str, secret: &str, proofs: &[&str]) -> HttpResponse {
    let auth = basic(id, secret);
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend(proofs.iter().map(|p| ("dpop", *p)));
    server
        .http()
        .post_form("/oauth2/token", &headers, "grant_type=client_credentials")
        .await
}

/// A client_credentials request with one fresh proof by `key`.
async fn cc_proved(server: &TestServer, id: &str, secret: &str, key: &SigningKey) -> HttpResponse {
    cc_with(server, id, secret, &[&proof(server, key, Says::default())]).await
}

#[tokio::test]
async fn a_token_issued_with_a_proof_is_bound_to_its_key() {
    let server = TestServer::start().await;
    let (id, secret) = server
        .service_client("svc", "orders.read", &["orders"])
        .await;
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let key = SigningKey::generate(alg, "client").unwrap();
        let body = cc_proved(&server, &id, &secret, &key).await.token_json();
        assert_eq!(body["token_type"], "DPoP", "{body}");
        let claims = crate::grants::verifier_for(&server, "orders")
            .await
            .verify(body["access_token"].as_str().unwrap())
            .unwrap()
            .claims;
        assert_eq!(
            claims.cnf.and_then(|c| c.jkt),
            key_thumbprint(&key),
            "cnf.jkt is the proof key's thumbprint"
        );
    }
    // Without a proof: a bearer token, as before.
    let body = cc_with(&server, &id, &secret, &[]).await.token_json();
    assert_eq!(body["token_type"], "Bearer");
    // Discovery says which algorithms a proof may use.
    let meta = server.http_metadata().await;
    assert_eq!(
        meta["dpop_signing_alg_values_supported"],
        serde_json::json!(["EdDSA", "ES256"])
    );
}

#[tokio::test]
async fn every_bad_proof_is_invalid_dpop_proof_and_issues_nothing() {
    let server = TestServer::start().await;
    let (id, secret) = server
        .service_client("svc", "orders.read", &["orders"])
        .await;
    let key = SigningKey::generate(Algorithm::ES256, "client").unwrap();
    let other = SigningKey::generate(Algorithm::ES256, "other").unwrap();
    let good = proof(&server, &key, Says::default());
    cc_with(&server, &id, &secret, &[&good]).await.token_json();
    let revoke = format!("{}/oauth2/revoke", server.issuer);
    // The proof's key, and a signature by another key under it.
    let swapped = {
        let by_other = proof(&server, &other, Says::default());
        let (header, _) = good.split_once('.').unwrap();
        let (_, rest) = by_other.split_once('.').unwrap();
        format!("{header}.{rest}")
    };
    let cases: Vec<(&str, String)> = vec![
        ("replayed", good.clone()),
        (
            "another method",
            proof(
                &server,
                &key,
                Says {
                    htm: "GET",
                    ..Says::default()
                },
            ),
        ),
        (
            "another URL",
            proof(
                &server,
                &key,
                Says {
                    htu: Some(&revoke),
                    ..Says::default()
                },
            ),
        ),
        (
            "too old",
            proof(
                &server,
                &key,
                Says {
                    iat: now() - 300,
                    ..Says::default()
                },
            ),
        ),
        (
            "from the future",
            proof(
                &server,
                &key,
                Says {
                    iat: now() + 300,
                    ..Says::default()
                },
            ),
        ),
        ("signed by another key", swapped),
        ("garbage", "not.a.proof".to_owned()),
    ];
    let audit_before = server.settled_audit_records().await.len();
    for (why, bad) in &cases {
        let r = cc_with(&server, &id, &secret, &[bad]).await;
        assert_eq!(r.status, 400, "{why}");
        assert_eq!(r.json()["error"], "invalid_dpop_proof", "{why}");
        assert!(r.json().get("access_token").is_none());
    }
    // Two proofs at once.
    let (a, b) = (
        proof(&server, &key, Says::default()),
        proof(&server, &key, Says::default()),
    );
    let r = cc_with(&server, &id, &secret, &[&a, &b]).await;
    assert_eq!(r.json()["error"], "invalid_dpop_proof");
    // Refusals are recorded, nothing else is written (no token was issued).
    let kinds: Vec<String> = server.settled_audit_records().await[audit_before..]
        .iter()
        .map(|r| r.kind.clone())
        .collect();
    assert_eq!(kinds, vec!["token_refused"; cases.len() + 1]);
    // A Biscuit client cannot have a bound token (bound tokens are JWTs).
    let (bid, bsecret) = server
        .biscuit_client("bis", "orders.read", &["orders"])
        .await;
    let r = cc_proved(&server, &bid, &bsecret, &key).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");
    // A reference client neither.
    let (rid, rsecret) = server
        .create_client(writ_proto::admin::Client {
            token_formats: vec![TokenFormat::Reference as i32],
            default_token_format: TokenFormat::Reference as i32,
            ..service_spec("ref", "orders.read", &["orders"])
        })
        .await;
    let r = cc_proved(&server, &rid, &rsecret, &key).await;
    assert_eq!(r.json()["error"], "invalid_request");
}

#[tokio::test]
async fn a_server_that_requires_nonces_hands_one_out_over_http_and_grpc_and_takes_it() {
    let server = TestServer::start_with(Options {
        config: Box::new(|c| c.dpop_nonce_required = true),
        ..Options::default()
    })
    .await;
    let (id, secret) = server
        .service_client("svc", "orders.read", &["orders"])
        .await;
    let key = SigningKey::generate(Algorithm::ES256, "client").unwrap();
    let r = cc_proved(&server, &id, &secret, &key).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "use_dpop_nonce");
    let nonce = r.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let stale = proof(
        &server,
        &key,
        Says {
            nonce: Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ..Says::default()
        },
    );
    let r = cc_with(&server, &id, &secret, &[&stale]).await;
    assert_eq!(r.json()["error"], "use_dpop_nonce");
    let with_nonce = proof(
        &server,
        &key,
        Says {
            nonce: Some(&nonce),
            ..Says::default()
        },
    );
    let body = cc_with(&server, &id, &secret, &[&with_nonce])
        .await
        .token_json();
    assert_eq!(body["token_type"], "DPoP");
    let url = server.grpc_token_url();
    // Over gRPC, the nonce comes in the refusal's metadata.
    let status = grpc_cc_with(
        &server,
        &id,
        &secret,
        &[&proof(
            &server,
            &key,
            Says {
                htu: Some(&url),
                ..Says::default()
            },
        )],
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&status), "use_dpop_nonce", "{status:?}");
    let nonce = status
        .metadata()
        .get("dpop-nonce")
        .unwrap()
        .to_str()
        .unwrap();
    let with_nonce = proof(
        &server,
        &key,
        Says {
            htu: Some(&url),
            nonce: Some(nonce),
            ..Says::default()
        },
    );
    let r = grpc_cc_with(&server, &id, &secret, &[&with_nonce])
        .await
        .unwrap();
    assert_eq!(r.token_type, "DPoP");
    // The client crate's token source asks, learns the nonce, and asks again.
    let source = writ_client::TokenSource::with_dpop(
        server.channel().await,
        &server.grpc_url,
        writ_client::ClientCredentials::new(id.clone(), secret.clone()),
        writ_client::DpopKey::generate().unwrap(),
    )
    .unwrap();
    let token = source.token().await.unwrap();
    let claims = writ_token::decode_unverified(&token)
        .unwrap()
        .claims
        .unwrap();
    assert_eq!(
        claims["cnf"]["jkt"],
        source.dpop_key().unwrap().thumbprint()
    );
}

#[tokio::test]
async fn a_bound_token_shows_its_key_at_introspection_and_is_no_bearer_token_elsewhere() {
    let server = TestServer::start().await;
    let (id, secret) = server
        .create_client(writ_proto::admin::Client {
            may_introspect: true,
            ..service_spec("svc", "orders.read", &["orders"])
        })
        .await;
    let key = SigningKey::generate(Algorithm::ES256, "client").unwrap();
    let body = cc_proved(&server, &id, &secret, &key).await.token_json();
    let token = body["access_token"].as_str().unwrap();
    // RFC 9449 section 6.2: introspection says how the token is bound.
    let seen = server
        .http()
        .post_form(
            "/oauth2/introspect",
            &[("authorization", &basic(&id, &secret))],
            &format!("token={token}"),
        )
        .await
        .json();
    assert_eq!(seen["active"], true);
    assert_eq!(seen["token_type"], "DPoP");
    assert_eq!(seen["cnf"]["jkt"], key_thumbprint(&key).unwrap().as_str());
    // The gateway check does not take it as a bearer token.
    let r = writ_tests::http_client::HttpClient::new(
        &server.gateway_http_url,
        server.ca_pem.as_deref(),
    )
    .send(
        http::Method::GET,
        "/check?audience=orders",
        &[("authorization", &format!("Bearer {token}"))],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(!r.headers.contains_key("authorization"));
}

/// A gRPC client_credentials request with these `dpop` values.
async fn grpc_cc_with(
    server: &TestServer,
    id: &str,
    secret: &str,
    proofs: &[&str],
) -> Result<writ_proto::authz::TokenResponse, tonic::Status> {
    server.token_with_proofs(cc(id, secret), proofs).await
}

#[tokio::test]
async fn the_grpc_token_method_binds_tokens_to_proofs_over_its_own_url() {
    let server = TestServer::start().await;
    let (id, secret) = server
        .service_client("svc", "orders.read", &["orders"])
        .await;
    let key = SigningKey::generate(Algorithm::EdDSA, "client").unwrap();
    let url = server.grpc_token_url();
    let over = |htu: &str, key: &SigningKey| {
        proof(
            &server,
            key,
            Says {
                htu: Some(htu),
                ..Says::default()
            },
        )
    };
    let once = over(&url, &key);
    let r = grpc_cc_with(&server, &id, &secret, &[&once]).await.unwrap();
    assert_eq!(r.token_type, "DPoP");
    // A proof is good for one request.
    let status = grpc_cc_with(&server, &id, &secret, &[&once])
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "invalid_dpop_proof", "{status:?}");
    let claims = writ_token::decode_unverified(&r.access_token)
        .unwrap()
        .claims
        .unwrap();
    assert_eq!(claims["cnf"]["jkt"], key_thumbprint(&key).unwrap().as_str());
    // Without a proof, a bearer token as before.
    let r = grpc_cc_with(&server, &id, &secret, &[]).await.unwrap();
    assert_eq!(r.token_type, "Bearer");
    // A proof for the HTTP endpoint, another method, or two proofs: refused, nothing issued.
    let http_endpoint = format!("{}/oauth2/token", server.issuer);
    let introspect = url.replace("/Token", "/Introspect");
    let bad = [
        vec![over(&http_endpoint, &key)],
        vec![over(&introspect, &key)],
        vec![over(&url, &key), over(&url, &key)],
    ];
    for proofs in &bad {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let status = grpc_cc_with(&server, &id, &secret, &proofs)
            .await
            .unwrap_err();
        assert_eq!(reason(&status), "invalid_dpop_proof", "{status:?}");
    }
}
