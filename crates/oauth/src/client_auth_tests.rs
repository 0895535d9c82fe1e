//! `private_key_jwt` (RFC 7523 section 2.2) on the engine: registration, every way an assertion
//! is refused, replay, key rotation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use writ_store::SledStore;
use writ_token::{
    Algorithm, AssertionClaims, CLIENT_ASSERTION_TYPE, Clock, SigningKey, encode_client_assertion,
};

use crate::*;

const ISSUER: &str = "https://as.test";

async fn engine() -> AuthorizationServer {
    let mut config = Config::new(ISSUER);
    config.throttle.free_failures = u32::MAX;
    let kek = Arc::new(writ_keyring::KeyEncryptionKey::generate().unwrap().0);
    AuthorizationServer::open(
        Arc::new(writ_store::Ready(Arc::new(SledStore::temporary().unwrap()))),
        config,
        writ_token::system_clock(),
        kek,
    )
    .await
    .unwrap()
    .0
}

fn jwks(keys: &[&SigningKey]) -> String {
    let keys: Vec<_> = keys.iter().map(|k| k.verification_key().to_jwk()).collect();
    serde_json::json!({ "keys": keys }).to_string()
}

fn spec(id: &str, jwks: String) -> Client {
    Client {
        client_id: id.into(),
        grant_types: vec!["client_credentials".into()],
        scope: "read".into(),
        audience: vec!["x".into()],
        token_endpoint_auth_method: "private_key_jwt".into(),
        jwks,
        ..Client::default()
    }
}

fn claims(client: &str) -> AssertionClaims {
    let now = writ_token::system_clock().now();
    AssertionClaims {
        iss: client.into(),
        sub: client.into(),
        aud: ISSUER.into(),
        iat: now,
        exp: now + 60,
        jti: writ_token::random_id(),
    }
}

fn sign(key: &SigningKey, claims: &AssertionClaims) -> String {
    encode_client_assertion(key, claims).unwrap()
}

fn request(client_id: &str, assertion: &str) -> TokenRequest {
    TokenRequest {
        grant_type: "client_credentials".into(),
        client_id: client_id.into(),
        client_assertion_type: CLIENT_ASSERTION_TYPE.into(),
        client_assertion: assertion.into(),
        ..TokenRequest::default()
    }
}

async fn code(engine: &AuthorizationServer, req: TokenRequest) -> &'static str {
    match engine.token(req).await {
        Ok(_) => "ok",
        Err(e) => e.oauth_code(),
    }
}

#[tokio::test]
async fn a_client_with_registered_keys_authenticates_by_a_fresh_assertion_once() {
    let engine = engine().await;
    for alg in Algorithm::ALL {
        let id = format!("svc-{alg}");
        let key = SigningKey::generate(alg, "k1").unwrap();
        let (client, secret) = engine
            .create_client(spec(&id, jwks(&[&key])))
            .await
            .unwrap();
        assert_eq!(secret, None, "no secret for a private_key_jwt client");
        assert_eq!(client.token_endpoint_auth_method, "private_key_jwt");

        // The assertion alone names the client; the token is the client's.
        let assertion = sign(&key, &claims(&id));
        let token = engine.token(request("", &assertion)).await.unwrap();
        let introspected = engine
            .introspect(TokenOperation {
                token: token.access_token,
                token_type_hint: String::new(),
                client: ClientCredentials {
                    client_id: id.clone(),
                    client_assertion_type: CLIENT_ASSERTION_TYPE.into(),
                    client_assertion: sign(&key, &claims(&id)),
                    ..ClientCredentials::default()
                },
            })
            .await
            .unwrap();
        assert!(introspected.active);
        assert_eq!(introspected.client_id, id);

        // The same assertion again is a replay.
        assert_eq!(
            code(&engine, request(&id, &assertion)).await,
            "invalid_client"
        );
        // A fresh one works, with or without client_id.
        assert_eq!(
            code(&engine, request(&id, &sign(&key, &claims(&id)))).await,
            "ok"
        );
    }
}

#[tokio::test]
async fn every_bad_assertion_is_invalid_client_and_spends_nothing() {
    let engine = engine().await;
    let key = SigningKey::generate(Algorithm::EdDSA, "k1").unwrap();
    engine
        .create_client(spec("svc", jwks(&[&key])))
        .await
        .unwrap();
    // Another client registered with the same public key: only iss and sub tell them apart.
    engine
        .create_client(spec("twin", jwks(&[&key])))
        .await
        .unwrap();
    let secret_client = engine
        .create_client(Client {
            client_id: "plain".into(),
            grant_types: vec!["client_credentials".into()],
            scope: "read".into(),
            audience: vec!["x".into()],
            ..Client::default()
        })
        .await
        .unwrap()
        .1
        .unwrap();
    let stranger = SigningKey::generate(Algorithm::EdDSA, "k1").unwrap();
    let with = |f: &dyn Fn(&mut AssertionClaims)| {
        let mut c = claims("svc");
        f(&mut c);
        c
    };
    let token_endpoint = format!("{ISSUER}/oauth2/token");
    let cases: Vec<(&str, TokenRequest)> = vec![
        (
            "signed by a key the client did not register",
            request("svc", &sign(&stranger, &claims("svc"))),
        ),
        (
            "for another audience",
            request(
                "svc",
                &sign(&key, &with(&|c| c.aud = "https://other.test".into())),
            ),
        ),
        (
            "expired",
            request("svc", &sign(&key, &with(&|c| c.exp = c.iat - 60))),
        ),
        (
            "living longer than an hour",
            request("svc", &sign(&key, &with(&|c| c.exp = c.iat + 7200))),
        ),
        (
            "issued by another client",
            request("svc", &sign(&key, &with(&|c| c.iss = "plain".into()))),
        ),
        (
            "naming another client than the request (one sharing its key)",
            request("twin", &sign(&key, &claims("svc"))),
        ),
        (
            "issued in the future",
            request("svc", &sign(&key, &with(&|c| c.iat += 120))),
        ),
        (
            "of an unknown type",
            TokenRequest {
                client_assertion_type: "urn:example:saml".into(),
                ..request("svc", &sign(&key, &claims("svc")))
            },
        ),
        ("not a JWT", request("svc", "not-a-jwt")),
        (
            "for a client that authenticates with a secret",
            request("plain", &sign(&key, &claims("plain"))),
        ),
        (
            "a secret for a private_key_jwt client",
            TokenRequest {
                grant_type: "client_credentials".into(),
                client_id: "svc".into(),
                client_secret: secret_client.clone(),
                ..TokenRequest::default()
            },
        ),
    ];
    for (why, req) in cases {
        let assertion = req.client_assertion.clone();
        assert_eq!(code(&engine, req).await, "invalid_client", "{why}");
        // A refused assertion was not spent: had it been valid, it would still work.
        if let Some(jti) = jti_of(&assertion) {
            for client in ["svc", "twin", "plain"] {
                let key = spent_key(&engine, client, &jti);
                assert!(
                    engine
                        .store
                        .get(writ_store::Tree::SignIn, &key)
                        .await
                        .unwrap()
                        .is_none(),
                    "{why}: spent for {client}"
                );
            }
        }
    }
    // A secret and an assertion together: two methods; half an assertion: malformed.
    let both = TokenRequest {
        client_secret: "x".into(),
        ..request("svc", &sign(&key, &claims("svc")))
    };
    assert_eq!(code(&engine, both).await, "invalid_request");
    let half = TokenRequest {
        client_assertion: String::new(),
        ..request("svc", "")
    };
    assert_eq!(code(&engine, half).await, "invalid_request");
    // The token endpoint's URL is an audience too.
    let at_endpoint = sign(&key, &with(&|c| c.aud = token_endpoint.clone()));
    assert_eq!(code(&engine, request("svc", &at_endpoint)).await, "ok");
}

fn jti_of(assertion: &str) -> Option<String> {
    use base64::Engine;
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("jti")?.as_str().map(str::to_owned)
}

fn spent_key(engine: &AuthorizationServer, client: &str, jti: &str) -> Vec<u8> {
    let id = [client.as_bytes(), &[0], jti.as_bytes()].concat();
    crate::signin::prefixed(b"j/", &engine.hasher.hash(&id))
}

#[tokio::test]
async fn registration_takes_public_keys_only_and_rotation_replaces_them() {
    let engine = engine().await;
    let old = SigningKey::generate(Algorithm::EdDSA, "old").unwrap();
    let new = SigningKey::generate(Algorithm::ES256, "new").unwrap();

    let refused = [
        ("private_key_jwt without keys", spec("a", String::new())),
        ("not a JWK Set", spec("a", "{}".into())),
        (
            "a private key",
            spec("a", {
                let mut set: serde_json::Value = serde_json::from_str(&jwks(&[&old])).unwrap();
                set["keys"][0]["d"] = "AAAA".into();
                set.to_string()
            }),
        ),
        (
            "a key of an algorithm Writ does not accept",
            spec(
                "a",
                r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0","alg":"HS256"}]}"#.into(),
            ),
        ),
        (
            "two keys with one kid",
            spec("a", {
                let twin = SigningKey::generate(Algorithm::EdDSA, "old").unwrap();
                jwks(&[&old, &twin])
            }),
        ),
        (
            "keys for a client with a secret",
            Client {
                token_endpoint_auth_method: String::new(),
                ..spec("a", jwks(&[&old]))
            },
        ),
        (
            "a public client with private_key_jwt",
            Client {
                client_type: ClientType::Public,
                grant_types: vec!["refresh_token".into()],
                ..spec("a", jwks(&[&old]))
            },
        ),
        (
            "both jwks and jwks_uri",
            Client {
                jwks_uri: "https://keys.example/jwks.json".into(),
                ..spec("a", jwks(&[&old]))
            },
        ),
        (
            "a jwks_uri that is not https",
            Client {
                jwks_uri: "http://keys.example/jwks.json".into(),
                ..spec("a", String::new())
            },
        ),
        (
            "a jwks_uri with a fragment",
            Client {
                jwks_uri: "https://keys.example/jwks.json#k".into(),
                ..spec("a", String::new())
            },
        ),
        (
            "a jwks_uri for a client with a secret",
            Client {
                token_endpoint_auth_method: String::new(),
                jwks_uri: "https://keys.example/jwks.json".into(),
                ..spec("a", String::new())
            },
        ),
        (
            "an unknown method",
            Client {
                token_endpoint_auth_method: "client_secret_jwt".into(),
                ..spec("a", jwks(&[&old]))
            },
        ),
    ];
    for (why, client) in refused {
        let e = engine.create_client(client).await.expect_err(why);
        assert_eq!(e.oauth_code(), "invalid_request", "{why}");
    }
    assert!(engine.get_client("a").await.is_err(), "nothing registered");

    engine
        .create_client(spec("svc", jwks(&[&old])))
        .await
        .unwrap();
    // Without a fetcher wired (the transport's), a jwks_uri client cannot authenticate.
    engine
        .create_client(Client {
            jwks_uri: "https://keys.example/jwks.json".into(),
            ..spec("by-url", String::new())
        })
        .await
        .unwrap();
    assert_eq!(
        code(&engine, request("by-url", &sign(&old, &claims("by-url")))).await,
        "invalid_client"
    );
    let e = engine.rotate_client_secret("svc", 0).await.unwrap_err();
    assert_eq!(e.oauth_code(), "invalid_request");

    // Rotation: the new key in, the old one out.
    engine
        .update_client(
            Client {
                client_id: "svc".into(),
                jwks: jwks(&[&new]),
                ..Client::default()
            },
            &["jwks".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        code(&engine, request("svc", &sign(&old, &claims("svc")))).await,
        "invalid_client"
    );
    assert_eq!(
        code(&engine, request("svc", &sign(&new, &claims("svc")))).await,
        "ok"
    );
    let shown = engine.get_client("svc").await.unwrap();
    assert_eq!(shown.token_endpoint_auth_method, "private_key_jwt");
    assert!(shown.jwks.contains("\"new\"") && !shown.jwks.contains("\"old\""));
    // The keys cannot be emptied while the client depends on them.
    let e = engine
        .update_client(
            Client {
                client_id: "svc".into(),
                ..Client::default()
            },
            &["jwks".into()],
        )
        .await
        .unwrap_err();
    assert_eq!(e.oauth_code(), "invalid_request");
}

/// Spent `jti`s are kept while their assertions could be presented, then pruned.
#[tokio::test]
async fn spent_assertions_are_pruned_once_they_have_expired() {
    let clock = writ_token::ManualClock::starting_now();
    let mut config = Config::new(ISSUER);
    config.throttle.free_failures = u32::MAX;
    let engine = AuthorizationServer::open(
        Arc::new(writ_store::Ready(Arc::new(SledStore::temporary().unwrap()))),
        config,
        Arc::new(clock.clone()),
        Arc::new(writ_keyring::KeyEncryptionKey::generate().unwrap().0),
    )
    .await
    .unwrap()
    .0;
    let key = SigningKey::generate(Algorithm::EdDSA, "k1").unwrap();
    engine
        .create_client(spec("svc", jwks(&[&key])))
        .await
        .unwrap();
    let now = clock.now();
    let claims = AssertionClaims {
        iat: now,
        exp: now + 60,
        ..claims("svc")
    };
    let assertion = sign(&key, &claims);
    assert_eq!(code(&engine, request("svc", &assertion)).await, "ok");
    let mark = spent_key(&engine, "svc", &claims.jti);
    let spent = || async {
        engine
            .store
            .get(writ_store::Tree::SignIn, &mark)
            .await
            .unwrap()
            .is_some()
    };
    assert!(spent().await);
    engine.prune_expired().await.unwrap();
    assert!(spent().await, "kept while the assertion is alive");
    assert_eq!(
        code(&engine, request("svc", &assertion)).await,
        "invalid_client"
    );
    // Past `exp` and its leeway the assertion is refused as expired; the mark is still kept a
    // leeway longer (another replica's clock may run behind).
    clock.advance(60 + 30 + 1);
    engine.prune_expired().await.unwrap();
    assert!(
        spent().await,
        "kept a leeway past the assertion's last moment"
    );
    clock.advance(30);
    engine.prune_expired().await.unwrap();
    assert!(
        !spent().await,
        "pruned once it could no longer be presented"
    );
    assert_eq!(
        code(&engine, request("svc", &assertion)).await,
        "invalid_client",
        "and the assertion has expired anyway"
    );
}
