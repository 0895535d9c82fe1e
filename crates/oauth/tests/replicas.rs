//! Authorization servers as replicas over one PostgreSQL schema: each with its own connection
//! pool, as separate processes would have. (Process-level tests, `writ serve authz` against
//! PostgreSQL, are in `tests/it`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use writ_oauth::{AuthorizationServer, Client, Config, Error, TokenRequest};
use writ_store::AsyncStore;
use writ_store_postgres::{PgConfig, PgStore, testing};
use writ_token::RevocationKind;
use writ_vocabulary::grant_type;

async fn replicas(config: &PgConfig, n: usize) -> Vec<Arc<AuthorizationServer>> {
    replicas_with(config, n, |_| {}).await
}

async fn replicas_with(
    config: &PgConfig,
    n: usize,
    configure: impl Fn(&mut Config),
) -> Vec<Arc<AuthorizationServer>> {
    let kek = Arc::new(writ_keyring::KeyEncryptionKey::generate().unwrap().0);
    let mut out = Vec::new();
    for _ in 0..n {
        let store: Arc<dyn AsyncStore> = PgStore::open(config).await.unwrap();
        let mut engine_config = Config::new("https://as.test");
        engine_config.throttle.free_failures = u32::MAX;
        configure(&mut engine_config);
        let (engine, _) = AuthorizationServer::open(
            store,
            engine_config,
            writ_token::system_clock(),
            kek.clone(),
        )
        .await
        .unwrap();
        out.push(Arc::new(engine));
    }
    out
}

/// A confidential client allowed the password and refresh grants, and a user.
async fn client_and_user(engine: &AuthorizationServer) -> (String, String) {
    let (_, secret) = engine
        .create_client(Client {
            client_id: "app".into(),
            grant_types: vec![
                grant_type::PASSWORD.into(),
                grant_type::REFRESH_TOKEN.into(),
            ],
            scope: "read".into(),
            audience: vec!["api".into()],
            ..Client::default()
        })
        .await
        .unwrap();
    engine
        .create_user("alice", "correct horse battery", "read")
        .await
        .unwrap();
    ("app".into(), secret.unwrap())
}

/// Alice signs in through `client_id` with her password: her refresh token.
async fn alice_signs_in(server: &AuthorizationServer, client_id: &str, secret: &str) -> String {
    server
        .token(TokenRequest {
            grant_type: grant_type::PASSWORD.into(),
            client_id: client_id.into(),
            client_secret: secret.into(),
            username: "alice".into(),
            password: "correct horse battery".into(),
            ..TokenRequest::default()
        })
        .await
        .unwrap()
        .refresh_token
        .unwrap()
}

/// A client_credentials client `svc`: its secret, and a token request for it.
async fn service_client(server: &AuthorizationServer) -> (String, TokenRequest) {
    let (_, secret) = server
        .create_client(Client {
            client_id: "svc".into(),
            grant_types: vec![grant_type::CLIENT_CREDENTIALS.into()],
            scope: "read".into(),
            audience: vec!["api".into()],
            ..Client::default()
        })
        .await
        .unwrap();
    let secret = secret.unwrap();
    let request = TokenRequest {
        grant_type: grant_type::CLIENT_CREDENTIALS.into(),
        client_id: "svc".into(),
        client_secret: secret.clone(),
        ..TokenRequest::default()
    };
    (secret, request)
}

fn refresh(secret: &str, token: &str) -> TokenRequest {
    TokenRequest {
        grant_type: grant_type::REFRESH_TOKEN.into(),
        client_id: "app".into(),
        client_secret: secret.into(),
        refresh_token: token.into(),
        ..TokenRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_refreshes_over_three_replicas_exactly_one_wins() {
    let Some(config) = testing::fresh().await else {
        return;
    };
    // Without a rotation grace period: a use that comes after the winner's is reuse too.
    let servers = replicas_with(&config, 3, |c| c.refresh_rotation_grace = 0).await;
    let (client_id, secret) = client_and_user(&servers[0]).await;
    // Made on one replica, every record is at once visible on the others.
    assert!(servers[2].get_client(&client_id).await.is_ok());
    for round in 0..5 {
        let token = alice_signs_in(&servers[round % 3], &client_id, &secret).await;
        // Twelve uses of the same refresh token at once, four on each replica.
        let mut tasks = Vec::new();
        for i in 0..12 {
            let server = servers[i % 3].clone();
            let request = refresh(&secret, &token);
            tasks.push(tokio::spawn(async move { server.token(request).await }));
        }
        let mut won = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => won.push(r),
                Err(Error::InvalidGrant(_)) => {}
                Err(e) => panic!("round {round}: unexpected {e:?}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: exactly one use wins");
        // The others were reuse: the family is revoked, on every replica, the winner's new
        // refresh token included.
        let successor = won[0].refresh_token.clone().unwrap();
        for server in &servers {
            assert!(matches!(
                server.token(refresh(&secret, &successor)).await,
                Err(Error::InvalidGrant(_))
            ));
        }
    }
    testing::drop_schema(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_lost_refresh_reply_works_on_another_replica() {
    let Some(config) = testing::fresh().await else {
        return;
    };
    let servers = replicas(&config, 3).await;
    let (client_id, secret) = client_and_user(&servers[0]).await;
    let token = alice_signs_in(&servers[0], &client_id, &secret).await;
    // Rotated on one replica; the reply is lost; the client retries through another.
    let lost = servers[0].token(refresh(&secret, &token)).await.unwrap();
    let retried = servers[1].token(refresh(&secret, &token)).await.unwrap();
    let next = retried.refresh_token.unwrap();
    // The successor nobody received is replaced: presenting it, anywhere, ends the family.
    assert!(matches!(
        servers[2]
            .token(refresh(&secret, &lost.refresh_token.unwrap()))
            .await,
        Err(Error::InvalidGrant(_))
    ));
    assert!(matches!(
        servers[0].token(refresh(&secret, &next)).await,
        Err(Error::InvalidGrant(_))
    ));
    testing::drop_schema(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_and_the_admin_credential_hold_on_every_replica() {
    let Some(config) = testing::fresh().await else {
        return;
    };
    // The first replica bootstraps the store (and shows the admin credential once).
    let kek = Arc::new(writ_keyring::KeyEncryptionKey::generate().unwrap().0);
    let open = || async {
        let store: Arc<dyn AsyncStore> = PgStore::open(&config).await.unwrap();
        AuthorizationServer::open(
            store,
            Config::new("https://as.test"),
            writ_token::system_clock(),
            kek.clone(),
        )
        .await
        .unwrap()
    };
    let (a, boot) = open().await;
    let (b, again) = open().await;
    let credential = boot.admin_credential.expect("a first start creates it");
    assert!(again.admin_credential.is_none());
    assert!(b.authenticate_admin(&credential).await.is_ok());
    // Rotated on one replica: the old credential stops working on the other at once.
    let rotated = a.rotate_admin_credential().await.unwrap();
    assert!(b.authenticate_admin(&credential).await.is_err());
    assert!(b.authenticate_admin(&rotated).await.is_ok());
    // Both replicas record a cut-off of one subject at once: neither is lost.
    async fn cut(server: &AuthorizationServer, not_before: i64) -> writ_oauth::Result<()> {
        let entry = writ_token::RevocationEntry {
            kind: RevocationKind::Subject,
            value: "alice".into(),
            issuer: String::new(),
            expires_at: server.now() + 600,
            not_before,
            reason: "test".into(),
        };
        server
            .record_revocations(&[writ_oauth::Revocation::new(entry)], "test")
            .await
    }
    let now = a.now();
    let (r1, r2) = tokio::join!(cut(&a, now - 10), cut(&b, now - 5));
    r1.unwrap();
    r2.unwrap();
    for server in [&a, &b] {
        assert!(
            server
                .is_revoked(RevocationKind::Subject, "alice", now - 5)
                .await
                .unwrap(),
            "the later cut-off holds everywhere"
        );
    }
    // Two outboxes' worth of entries, both queued, none overwritten by the other replica's.
    assert_eq!(a.outbox(100).await.unwrap().len(), 2);
    testing::drop_schema(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_on_one_replica_verifies_on_another_once_it_looks() {
    let Some(config) = testing::fresh().await else {
        return;
    };
    let servers = replicas(&config, 2).await;
    let (a, b) = (&servers[0], &servers[1]);
    let (secret, request) = service_client(a).await;
    let rotated = a
        .rotate_signing_key(writ_keyring::KeyPurpose::Jwt, None)
        .await
        .unwrap();
    let token = a.token(request).await.unwrap().access_token;
    let operation = || writ_oauth::TokenOperation {
        token: token.clone(),
        token_type_hint: String::new(),
        client: writ_oauth::ClientCredentials::secret("svc", secret.clone()),
    };
    assert!(!b.public_keys().jwt_keys().any(|k| k.kid() == rotated.kid));
    // What the authorization server's periodic task does (every SHARED_STATE_INTERVAL).
    b.refresh_shared_state().await.unwrap();
    assert!(b.public_keys().jwt_keys().any(|k| k.kid() == rotated.kid));
    assert!(
        b.introspect(operation()).await.unwrap().active,
        "signed by the new key"
    );
    assert!(a.introspect(operation()).await.unwrap().active);
    // Nothing changed since: the key set stays the same (its caches stay warm).
    let before = b.public_keys();
    b.refresh_shared_state().await.unwrap();
    assert!(Arc::ptr_eq(&before, &b.public_keys()));
    testing::drop_schema(&config).await;
}

/// Client records are cached for a moment on each replica; a change on another replica reaches
/// the cache through the database's notification, well before the cache's own bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disabled_on_one_replica_is_refused_by_another_at_once() {
    let Some(config) = testing::fresh().await else {
        return;
    };
    let servers = replicas(&config, 2).await;
    let (a, b) = (&servers[0], &servers[1]);
    let (_, request) = service_client(a).await;
    // B reads (and caches) the client.
    assert!(b.token(request.clone()).await.is_ok());
    let disabled = Client {
        client_id: "svc".into(),
        disabled: true,
        ..Client::default()
    };
    a.update_client(disabled, &["disabled".to_owned()])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        if b.token(request.clone()).await.is_err() {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_millis(1500),
            "still issuing to a disabled client 1.5 s later (the cache's own bound is 2 s)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    testing::drop_schema(&config).await;
}

/// `private_key_jwt` over three replicas: the same assertion presented at all of them at once
/// authenticates exactly once (its `jti` is spent by a conditional insert in the shared store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_presented_at_three_replicas_at_once_is_accepted_once() {
    let Some(config) = testing::fresh().await else {
        return;
    };
    let servers = replicas(&config, 3).await;
    let key = writ_token::SigningKey::generate(writ_token::Algorithm::EdDSA, "k1").unwrap();
    let jwks = format!(
        "{{\"keys\":[{}]}}",
        serde_json::to_string(&key.verification_key().to_jwk()).unwrap()
    );
    servers[0]
        .create_client(Client {
            client_id: "keyed".into(),
            grant_types: vec![grant_type::CLIENT_CREDENTIALS.into()],
            scope: "read".into(),
            audience: vec!["api".into()],
            token_endpoint_auth_method: "private_key_jwt".into(),
            jwks,
            ..Client::default()
        })
        .await
        .unwrap();
    for _round in 0..5 {
        let now = writ_token::Clock::now(&*writ_token::system_clock());
        let assertion = writ_token::encode_client_assertion(
            &key,
            &writ_token::AssertionClaims {
                iss: "keyed".into(),
                sub: "keyed".into(),
                aud: "https://as.test".into(),
                iat: now,
                exp: now + 60,
                jti: writ_token::random_id(),
            },
        )
        .unwrap();
        let mut tasks = Vec::new();
        for i in 0..12 {
            let server = servers[i % 3].clone();
            let request = TokenRequest {
                grant_type: grant_type::CLIENT_CREDENTIALS.into(),
                client_assertion_type: writ_token::CLIENT_ASSERTION_TYPE.into(),
                client_assertion: assertion.clone(),
                ..TokenRequest::default()
            };
            tasks.push(tokio::spawn(async move { server.token(request).await }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => won += 1,
                Err(Error::InvalidClient) => {}
                Err(e) => panic!("unexpected: {e:?}"),
            }
        }
        assert_eq!(won, 1, "one of twelve uses authenticates");
    }
    testing::drop_schema(&config).await;
}
