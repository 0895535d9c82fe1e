//! The guard in a real service: the example inventory service behind `writ_guard::Guard`,
//! verifying tokens from the real authorization server and following the real revocation feed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Status};
use writ_demo::pb::inventory_service_client::InventoryServiceClient;
use writ_demo::pb::{GetStockRequest, ReserveRequest, ReserveResponse};
use writ_demo::{Inventory, SCOPE_READ, SCOPE_RESERVE};
use writ_guard::{
    ClientCredentials, Guard, GuardConfig, Revocations, Rule, TokenSource, TrustedIssuer,
};
use writ_proto::admin::KeyPurpose;
use writ_proto::common::TokenFormat;
use writ_revocation_client::{RevocationSet, Watcher};
use writ_server::Shutdown;
use writ_tests::*;
use writ_token::{Clock, ManualClock};
use writ_trust::RemoteKeys;

/// Bound on a revocation reaching the guard (the feed's figure is milliseconds).
const PROPAGATION: Duration = Duration::from_secs(2);

/// The inventory service behind a guard, with the authorization server and revocation feed.
struct Guarded {
    server: TestServer,
    set: Arc<RevocationSet>,
    watcher: Option<Watcher>,
    guard: Guard,
    channel: Channel,
    /// The inventory service's origin, as the channel dials it.
    origin: String,
    keys: Arc<RemoteKeys>,
    _stop: Shutdown,
}

struct Setup {
    clock: Option<ManualClock>,
    max_staleness: Duration,
    fail_open: bool,
    interceptor: Option<Rule>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            clock: None,
            max_staleness: Duration::from_secs(30),
            fail_open: false,
            interceptor: None,
        }
    }
}

impl Guarded {
    async fn start() -> Guarded {
        Self::start_with(Setup::default()).await
    }

    /// On a manual clock.
    async fn start_clocked(clock: &ManualClock) -> Guarded {
        Self::start_with(Setup {
            clock: Some(clock.clone()),
            ..Setup::default()
        })
        .await
    }

    async fn start_with(setup: Setup) -> Guarded {
        let server = TestServer::start_with(Options {
            clock: setup.clock.clone(),
            ..Options::default()
        })
        .await;
        let set = Arc::new(RevocationSet::new());
        let watcher = server.watcher(set.clone()).await;
        eventually(Duration::from_secs(10), "the feed syncs", || {
            set.staleness().is_some()
        })
        .await;
        let keys = RemoteKeys::connect(
            server.channel().await,
            Duration::from_secs(300),
            Duration::from_millis(100),
        )
        .await
        .unwrap();
        let mut config = GuardConfig::new(
            "inventory",
            vec![TrustedIssuer::new(
                keys.issuer().to_owned(),
                Arc::new(keys.clone()),
            )],
            writ_demo::inventory_policy(),
            set.clone(),
        );
        config.revocations = Revocations::Checked {
            check: Arc::new(writ_revocation_client::RevocationFeed::new(
                set.clone(),
                setup.max_staleness,
            )),
            fail_open: setup.fail_open,
        };
        if let Some(clock) = &setup.clock {
            config.clock = Arc::new(clock.clone());
        }
        let guard = Guard::new(config);
        let (stop, signal) = Shutdown::new();
        let listener = writ_server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        match setup.interceptor {
            None => {
                writ_demo::serve(
                    writ_demo::pb::inventory_service_server::InventoryServiceServer::new(
                        Inventory::default(),
                    ),
                    guard.clone(),
                    listener,
                    None,
                    signal,
                )
                .await
                .unwrap();
            }
            Some(rule) => {
                let service = writ_demo::pb::inventory_service_server::InventoryServiceServer::with_interceptor(
                    Inventory::default(),
                    guard.interceptor(rule),
                );
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming_shutdown(
                            writ_server::incoming(listener),
                            signal.wait(),
                        ),
                );
            }
        }
        let origin = format!("http://{addr}");
        let channel = connect(&origin, None).await;
        Guarded {
            server,
            set,
            watcher: Some(watcher),
            guard,
            channel,
            origin,
            keys,
            _stop: stop,
        }
    }

    /// A client allowed `scope` at `audience`, and a token for it.
    async fn token(&self, id: &str, scope: &str, audience: &str) -> String {
        let (id, secret) = self.server.service_client(id, scope, &[audience]).await;
        self.server.cc_token(&id, &secret).await
    }

    async fn reserve(&self, authorization: Option<&str>) -> Result<ReserveResponse, Status> {
        let mut request = tonic::Request::new(apple());
        if let Some(a) = authorization {
            request
                .metadata_mut()
                .insert("authorization", a.parse().unwrap());
        }
        InventoryServiceClient::new(self.channel.clone())
            .reserve(request)
            .await
            .map(|r| r.into_inner())
    }

    /// Revokes an entry through the admin API.
    async fn admin_revoke(&self, kind: writ_token::RevocationKind, value: &str) {
        self.server
            .admin()
            .await
            .revoke(writ_proto::admin::RevokeRequest {
                entries: vec![writ_proto::revocation::RevocationEntry {
                    kind: kind as i32,
                    value: value.into(),
                    expires_at: writ_token::system_clock().now() + 3600,
                    reason: "test".into(),
                    not_before: 0,
                    issuer: String::new(),
                }],
            })
            .await
            .unwrap();
    }

    /// Waits (within the propagation bound) until `token` is refused as revoked.
    async fn until_revoked(&self, token: &str) {
        let deadline = Instant::now() + PROPAGATION;
        while self.reserve_with(token).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "still accepted after {PROPAGATION:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        refused(
            self.reserve_with(token).await,
            Code::Unauthenticated,
            "invalid_token",
            "revoked",
        );
    }

    /// A client allowed Biscuits for inventory with `scope`, and a Biscuit for it.
    async fn biscuit(&self, scope: &str) -> String {
        let (id, secret) = self
            .server
            .create_client(writ_proto::admin::Client {
                client_id: "shop".into(),
                client_type: writ_proto::admin::ClientType::Confidential as i32,
                grant_types: vec!["client_credentials".into()],
                scope: scope.into(),
                audience: vec!["inventory".into()],
                token_formats: vec![TokenFormat::Jwt as i32, TokenFormat::Biscuit as i32],
                ..Default::default()
            })
            .await;
        let mut req = cc(&id, &secret);
        req.token_format = TokenFormat::Biscuit as i32;
        self.server.issue(req).await.access_token
    }

    async fn reserve_with(&self, token: &str) -> Result<ReserveResponse, Status> {
        self.reserve(Some(&format!("Bearer {token}"))).await
    }

    async fn get_stock_with(&self, token: &str) -> Result<(), Status> {
        let mut request = tonic::Request::new(GetStockRequest {
            sku: "apple".into(),
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        InventoryServiceClient::new(self.channel.clone())
            .get_stock(request)
            .await
            .map(|_| ())
    }
}

/// The guard's refusal: code, `ErrorInfo.reason` and `metadata["cause"]`.
fn refused<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, reason_: &str, cause: &str) {
    use tonic_types::StatusExt;
    let status = assert_guard_refused(r, code, reason_);
    let info = status.get_details_error_info().expect("ErrorInfo details");
    assert_eq!(
        info.metadata.get("cause").map(String::as_str),
        Some(cause),
        "{status:?}"
    );
}

#[tokio::test]
async fn an_allowed_call_reaches_the_handler_with_the_verified_principal() {
    let g = Guarded::start().await;
    let token = g.token("shop", SCOPE_RESERVE, "inventory").await;
    let r = g.reserve_with(&token).await.unwrap();
    assert_eq!(r.subject, "shop");
    assert!(r.actors.is_empty());
    // Again: served from the cache.
    g.reserve_with(&token).await.unwrap();
    assert_eq!(g.guard.cached(), 1);
}

#[tokio::test]
async fn missing_malformed_and_garbage_tokens_are_unauthenticated() {
    let g = Guarded::start().await;
    refused(
        g.reserve(None).await,
        Code::Unauthenticated,
        "invalid_request",
        "missing",
    );
    refused(
        g.reserve(Some("Basic c2hvcDpzZWNyZXQ=")).await,
        Code::Unauthenticated,
        "invalid_request",
        "malformed_header",
    );
    refused(
        g.reserve(Some("Bearer ")).await,
        Code::Unauthenticated,
        "invalid_request",
        "missing",
    );
    refused(
        g.reserve_with("garbage.garbage.garbage").await,
        Code::Unauthenticated,
        "invalid_token",
        "malformed",
    );
    refused(
        g.reserve_with("EnQKCggAEgZzdWJqZWN0").await,
        Code::Unauthenticated,
        "invalid_token",
        "malformed",
    );
    // An unsigned JWT (alg none): refused before anything else is read.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJ4In0.";
    refused(
        g.reserve_with(none).await,
        Code::Unauthenticated,
        "invalid_token",
        "malformed",
    );
}

#[tokio::test]
async fn an_expired_token_is_unauthenticated_even_once_cached() {
    let clock = ManualClock::starting_now();
    let g = Guarded::start_clocked(&clock).await;
    let token = g.token("shop", SCOPE_RESERVE, "inventory").await;
    g.reserve_with(&token).await.unwrap();
    let exp = writ_token::decode_unverified(&token)
        .unwrap()
        .claims
        .unwrap()["exp"]
        .as_i64()
        .unwrap();
    // Past exp and the leeway.
    clock.advance((exp - clock.now()) + 31);
    refused(
        g.reserve_with(&token).await,
        Code::Unauthenticated,
        "invalid_token",
        "expired",
    );
}

#[tokio::test]
async fn a_token_for_another_audience_is_unauthenticated() {
    let g = Guarded::start().await;
    let token = g.token("shop", SCOPE_RESERVE, "orders").await;
    refused(
        g.reserve_with(&token).await,
        Code::Unauthenticated,
        "invalid_token",
        "wrong_audience",
    );
    // Nor does this service learn its status: revoked, it is still just not for this service.
    let jti = jti_of(&token);
    g.admin_revoke(writ_token::RevocationKind::TokenId, &jti)
        .await;
    tokio::time::sleep(PROPAGATION).await;
    refused(
        g.reserve_with(&token).await,
        Code::Unauthenticated,
        "invalid_token",
        "wrong_audience",
    );
}

/// Issue 10, item 10: an expired token for another audience is refused as not for this service,
/// not as expired.
#[tokio::test]
async fn a_token_for_another_audience_reveals_nothing_of_its_status() {
    let clock = ManualClock::starting_now();
    let g = Guarded::start_clocked(&clock).await;
    let token = g.token("shop", SCOPE_RESERVE, "orders").await;
    clock.advance(3600);
    refused(
        g.reserve_with(&token).await,
        Code::Unauthenticated,
        "invalid_token",
        "wrong_audience",
    );
}

#[tokio::test]
async fn a_token_without_the_methods_scope_is_permission_denied() {
    let g = Guarded::start().await;
    let token = g.token("reader", SCOPE_READ, "inventory").await;
    g.get_stock_with(&token).await.unwrap();
    let status = g.reserve_with(&token).await.unwrap_err();
    refused::<()>(
        Err(status.clone()),
        Code::PermissionDenied,
        "insufficient_scope",
        "scope",
    );
    use tonic_types::StatusExt;
    assert_eq!(
        status.get_details_error_info().unwrap().metadata["scope"],
        SCOPE_RESERVE,
        "the scope needed is named, the token's contents are not"
    );
}

#[tokio::test]
async fn a_revoked_grant_is_refused_within_the_propagation_bound_also_when_cached() {
    let g = Guarded::start().await;
    let (id, secret) = g
        .server
        .service_client("shop", SCOPE_RESERVE, &["inventory"])
        .await;
    let token = g.server.cc_token(&id, &secret).await;
    let other = g.server.cc_token(&id, &secret).await;
    g.reserve_with(&token).await.unwrap();
    g.reserve_with(&other).await.unwrap();
    assert_eq!(g.guard.cached(), 2);
    g.server.revoke_token(&token, &id, &secret).await;
    g.until_revoked(&token).await;
    // Only that token: the client's other token still works.
    g.reserve_with(&other).await.unwrap();
}

#[tokio::test]
async fn a_stale_revocation_feed_fails_closed_unless_configured_open() {
    for fail_open in [false, true] {
        let mut g = Guarded::start_with(Setup {
            max_staleness: Duration::from_secs(1),
            fail_open,
            ..Setup::default()
        })
        .await;
        let token = g.token("shop", SCOPE_RESERVE, "inventory").await;
        g.reserve_with(&token).await.unwrap();
        // The feed goes quiet: no events, no checkpoints.
        g.watcher.take().unwrap().stop();
        let set = g.set.clone();
        eventually(Duration::from_secs(10), "the feed goes stale", || {
            set.staleness()
                .is_some_and(|s| s > Duration::from_millis(1200))
        })
        .await;
        let r = g.reserve_with(&token).await;
        if fail_open {
            r.unwrap();
        } else {
            refused(r, Code::Unavailable, "revocation_feed_stale", "stale");
        }
    }
}

#[tokio::test]
async fn a_signing_key_rotation_passes_with_no_failed_request() {
    let g = Guarded::start().await;
    let (id, secret) = g
        .server
        .service_client("shop", SCOPE_RESERVE, &["inventory"])
        .await;
    let mut kids = std::collections::BTreeSet::new();
    for i in 0..40 {
        if i == 20 {
            g.server.rotate_key(KeyPurpose::Jwt, "EdDSA").await;
        }
        // A fresh token each time: after the rotation, signed by a key the guard never saw.
        let token = g.server.cc_token(&id, &secret).await;
        let kid = kid_of(&token);
        kids.insert(kid);
        g.reserve_with(&token)
            .await
            .unwrap_or_else(|s| panic!("request {i} failed: {s:?}"));
    }
    assert_eq!(kids.len(), 2, "both keys were used");
}

#[tokio::test]
async fn biscuits_are_authorized_per_method_and_attenuation_holds() {
    let g = Guarded::start().await;
    let biscuit = g.biscuit(&format!("{SCOPE_RESERVE} {SCOPE_READ}")).await;
    assert_eq!(
        writ_token::TokenFormat::detect(&biscuit),
        writ_token::TokenFormat::Biscuit
    );
    let r = g.reserve_with(&biscuit).await.unwrap();
    assert_eq!(r.subject, "shop");
    // Narrowed offline by its holder to reading stock only.
    let narrowed = writ_token::attenuate(
        &biscuit,
        &writ_token::Attenuation {
            methods: Some(vec!["/writ.demo.v1.InventoryService/GetStock".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    g.get_stock_with(&narrowed).await.unwrap();
    refused(
        g.reserve_with(&narrowed).await,
        Code::PermissionDenied,
        "insufficient_scope",
        "denied",
    );
    // Narrowed to a scope: reserving needs the one taken away.
    let read_only = writ_token::attenuate(
        &biscuit,
        &writ_token::Attenuation {
            scopes: Some(vec![SCOPE_READ.into()]),
            ..Default::default()
        },
    )
    .unwrap();
    refused(
        g.reserve_with(&read_only).await,
        Code::PermissionDenied,
        "insufficient_scope",
        "denied",
    );
    refused(
        g.reserve_with(&format!("{biscuit}AA")).await,
        Code::Unauthenticated,
        "invalid_token",
        "malformed",
    );
}

#[tokio::test]
async fn the_interceptor_applies_one_rule_to_every_method() {
    let g = Guarded::start_with(Setup {
        interceptor: Some(Rule::scopes(&[SCOPE_READ])),
        ..Setup::default()
    })
    .await;
    let reader = g.token("reader", SCOPE_READ, "inventory").await;
    g.get_stock_with(&reader).await.unwrap();
    // The interceptor does not see the method: reading suffices for reserving here.
    g.reserve_with(&reader).await.unwrap();
    let writer = g.token("writer", SCOPE_RESERVE, "inventory").await;
    refused(
        g.get_stock_with(&writer).await,
        Code::PermissionDenied,
        "insufficient_scope",
        "scope",
    );
    refused(
        g.reserve(None).await,
        Code::Unauthenticated,
        "invalid_request",
        "missing",
    );
}

#[tokio::test]
async fn a_token_source_fetches_once_under_concurrency_and_attaches_tokens() {
    let g = Guarded::start().await;
    let (id, secret) = g
        .server
        .service_client(
            "shop",
            &format!("{SCOPE_RESERVE} {SCOPE_READ}"),
            &["inventory"],
        )
        .await;
    let source = TokenSource::new(
        g.server.channel().await,
        ClientCredentials {
            client_id: id,
            client_secret: secret,
            private_key: None,
            workload_token_file: None,
            scope: SCOPE_RESERVE.into(),
            audience: vec!["inventory".into()],
        },
    );
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let source = source.clone();
        tasks.push(tokio::spawn(async move { source.token().await.unwrap() }));
    }
    let mut tokens = std::collections::BTreeSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap().to_string());
    }
    assert_eq!(tokens.len(), 1, "one fetch served every caller");
    // Attached by the tower layer on the client channel.
    let svc = tower::ServiceBuilder::new()
        .layer(source.layer())
        .service(g.channel.clone());
    let r = InventoryServiceClient::new(svc)
        .reserve(apple())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.subject, "shop");
    // And by the interceptor, from the token held.
    let mut client =
        InventoryServiceClient::with_interceptor(g.channel.clone(), source.interceptor());
    client.reserve(apple()).await.unwrap();
}

#[tokio::test]
async fn unknown_key_ids_are_refused_without_a_fetch_per_request() {
    let g = Guarded::start().await;
    let issuer = g.server.issuer.clone();
    let forger =
        writ_token::SigningKey::generate(writ_token::Algorithm::EdDSA, "k-forged").unwrap();
    let now = writ_token::system_clock().now();
    let forged: Vec<String> = (0..20)
        .map(|i| {
            writ_token::encode_access_token(
                &forger,
                &writ_token::AccessClaims {
                    iss: issuer.clone(),
                    sub: "mallory".into(),
                    aud: vec!["inventory".into()],
                    exp: now + 60,
                    iat: now,
                    nbf: None,
                    jti: format!("forged-{i}"),
                    client_id: "mallory".into(),
                    scope: SCOPE_RESERVE.into(),
                    gid: None,
                    act: None,
                    may_act: None,
                    cnf: None,
                },
            )
            .unwrap()
        })
        .collect();
    let before = g.keys.fetches();
    let started = Instant::now();
    let mut calls = Vec::new();
    for t in &forged {
        calls.push(g.reserve_with(t));
    }
    for r in futures::future::join_all(calls).await {
        refused(r, Code::Unauthenticated, "invalid_token", "unknown_key");
    }
    // 20 concurrent requests with an unknown kid: one fetch (a second at most if a window
    // passed), not twenty.
    let fetched = g.keys.fetches() - before;
    assert!(
        (1..=2).contains(&fetched),
        "{fetched} fetches in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_revoked_signing_key_is_refused_even_for_cached_tokens() {
    let g = Guarded::start().await;
    let token = g.token("shop", SCOPE_RESERVE, "inventory").await;
    g.reserve_with(&token).await.unwrap();
    let kid = kid_of(&token);
    g.admin_revoke(writ_token::RevocationKind::KeyId, &kid)
        .await;
    g.until_revoked(&token).await;
}

#[tokio::test]
async fn revoking_any_biscuit_block_refuses_the_tokens_that_carry_it() {
    let g = Guarded::start().await;
    let biscuit = g.biscuit(SCOPE_RESERVE).await;
    let narrowed = writ_token::attenuate(
        &biscuit,
        &writ_token::Attenuation {
            expires_at: Some(writ_token::system_clock().now() + 120),
            ..Default::default()
        },
    )
    .unwrap();
    g.reserve_with(&narrowed).await.unwrap();
    let ids = crate::grants::verifier_for(&g.server, "inventory")
        .await
        .verify_biscuit(&narrowed)
        .unwrap()
        .revocation_ids;
    assert_eq!(ids.len(), 2);
    // The attenuation block's id, not the authority's.
    g.admin_revoke(writ_token::RevocationKind::BiscuitRevocationId, &ids[1])
        .await;
    g.until_revoked(&narrowed).await;
    // The unattenuated token does not carry that block.
    g.reserve_with(&biscuit).await.unwrap();
}

// --- Both sides, with the STS ---------------------------------------------------------------

#[tokio::test]
async fn orders_calls_inventory_on_its_callers_behalf_and_revoking_the_grant_stops_both() {
    use writ_client::ClientCredentials;
    use writ_demo::Platform;
    use writ_demo::pb::PlaceOrderRequest;
    use writ_demo::pb::orders_service_client::OrdersServiceClient;
    use writ_proto::admin as pb_admin;

    let mut server = TestServer::start().await;
    let sts = server.start_sts().await;
    let watch = "writ.revocation.watch";
    let credentials = |(client_id, client_secret): (String, String)| {
        ClientCredentials::new(client_id, client_secret)
    };
    let inventory = credentials(
        server
            .service_client("inventory", watch, &["writ-revocation"])
            .await,
    );
    // orders holds no secret (issue 13): a key pair, its public half registered, signs
    // its assertions at the authorization server (watch tokens) and at the STS (exchanges).
    let orders_key =
        writ_token::SigningKey::generate(writ_token::Algorithm::EdDSA, "orders-1").unwrap();
    let (orders_id, no_secret) = server
        .create_client(pb_admin::Client {
            token_endpoint_auth_method: "private_key_jwt".into(),
            jwks: crate::client_keys::jwks(&orders_key),
            ..service_spec("orders", watch, &["writ-revocation"])
        })
        .await;
    assert_eq!(no_secret, "");
    let orders = ClientCredentials::private_key_jwt(
        orders_id,
        writ_client::PrivateKeyJwt::from_pem(
            "orders-1",
            &orders_key.to_pkcs8_pem().unwrap(),
            &server.issuer,
        )
        .unwrap(),
    );
    server
        .admin()
        .await
        .create_exchange_policy(pb_admin::CreateExchangePolicyRequest {
            policy: Some(pb_admin::ExchangePolicy {
                client_id: orders.client_id.clone(),
                audience: vec!["inventory".into()],
                scope: SCOPE_RESERVE.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    // The caller: a user signed in through a gateway, so the grant is a refresh family.
    let (gateway, gateway_secret) = server
        .create_client(pb_admin::Client {
            client_id: "gateway".into(),
            grant_types: vec!["password".into(), "refresh_token".into()],
            scope: format!("orders.write {SCOPE_RESERVE}"),
            audience: vec!["orders".into()],
            ..Default::default()
        })
        .await;
    server
        .create_user(
            "alice",
            "correct horse battery",
            &format!("orders.write {SCOPE_RESERVE}"),
        )
        .await;
    let signed_in = server
        .issue(writ_proto::authz::TokenRequest {
            grant_type: "password".into(),
            client_id: gateway.clone(),
            client_secret: gateway_secret.clone(),
            username: "alice".into(),
            password: "correct horse battery".into(),
            ..Default::default()
        })
        .await;

    // Each service's client id is its audience: the STS only lets the audience of a token
    // exchange it (a service passes on what was sent to it, nothing else).
    let platform = Platform {
        authz: server.channel().await,
        sts: connect(&sts.grpc_url, sts.ca_pem.as_deref()).await,
        revocation: server.revocation_channel().await,
    };
    let (_stop, signal) = Shutdown::new();
    let bind = || writ_server::bind("127.0.0.1:0".parse().unwrap());
    let demo = writ_demo::start(
        &platform,
        (&inventory, bind().await.unwrap()),
        (&orders, bind().await.unwrap()),
        signal,
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "both feeds sync", || {
        demo.upkeep.iter().all(|u| u.synced())
    })
    .await;
    let orders_channel = connect(&format!("http://{}", demo.orders.grpc_addr), None).await;
    let place = |token: String| {
        let channel = orders_channel.clone();
        async move {
            let mut request = tonic::Request::new(PlaceOrderRequest {
                sku: "apple".into(),
                quantity: 1,
            });
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            OrdersServiceClient::new(channel).place_order(request).await
        }
    };
    let placed = place(signed_in.access_token.clone())
        .await
        .unwrap()
        .into_inner();
    let seen = placed.reservation.unwrap();
    let user = writ_token::decode_unverified(&signed_in.access_token)
        .unwrap()
        .claims
        .unwrap()["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(seen.subject, user, "inventory sees the user");
    assert_eq!(seen.actors, ["orders"], "with orders as the actor");

    // The token inventory receives: exchanged as orders does, straight to inventory.
    let exchanger = writ_guard::Exchanger::new(platform.sts.clone(), orders.clone());
    let exchanged = exchanger
        .exchange(&signed_in.access_token, "inventory", SCOPE_RESERVE)
        .await
        .unwrap();
    let inventory_channel = connect(&format!("http://{}", demo.inventory.grpc_addr), None).await;
    let reserve = |token: Arc<str>| {
        let channel = inventory_channel.clone();
        async move {
            let mut request = tonic::Request::new(apple());
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            InventoryServiceClient::new(channel).reserve(request).await
        }
    };
    reserve(exchanged.clone()).await.unwrap();
    // Without the exchange, the user's token is refused at inventory: wrong audience.
    refused(
        reserve(Arc::from(signed_in.access_token.as_str())).await,
        Code::Unauthenticated,
        "invalid_token",
        "wrong_audience",
    );

    // Revoke the grant (the refresh token's family): both services refuse within the bound.
    let revoked_at = Instant::now();
    server
        .revoke_token(&signed_in.refresh_token, &gateway, &gateway_secret)
        .await;
    let deadline = revoked_at + PROPAGATION;
    loop {
        let at_orders = place(signed_in.access_token.clone()).await;
        let at_inventory = reserve(exchanged.clone()).await;
        if let (Err(a), Err(b)) = (&at_orders, &at_inventory) {
            refused::<()>(
                Err(a.clone()),
                Code::Unauthenticated,
                "invalid_token",
                "revoked",
            );
            refused::<()>(
                Err(b.clone()),
                Code::Unauthenticated,
                "invalid_token",
                "revoked",
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still accepted {PROPAGATION:?} after the revocation: orders {:?}, inventory {:?}",
            at_orders.map(|_| ()),
            at_inventory.map(|_| ())
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One apple to reserve.
fn apple() -> ReserveRequest {
    ReserveRequest {
        sku: "apple".into(),
        quantity: 1,
    }
}

/// The URL of an inventory method, as a proof names it (Writ's gRPC profile of DPoP).
fn inventory_url(g: &Guarded, method: &str) -> String {
    format!("{}/writ.demo.v1.InventoryService/{method}", g.origin)
}

/// A proof by `key` for a call to `htu` with `token`, made at `iat`.
fn call_proof(key: &writ_token::SigningKey, htu: &str, token: Option<&str>, iat: i64) -> String {
    writ_token::sign_proof(
        key,
        &writ_token::ProofClaimsOut {
            htm: "POST",
            htu,
            iat,
            access_token: token,
            nonce: None,
        },
    )
}

impl Guarded {
    /// A token for `shop` (reserve at inventory) bound to `key`, asked for over gRPC with a
    /// proof over the authorization server's `Token` method.
    async fn bound_token(&self, key: &writ_token::SigningKey) -> String {
        let (id, secret) = self
            .server
            .service_client("shop", SCOPE_RESERVE, &["inventory"])
            .await;
        let htu = self.server.grpc_token_url();
        let proof = call_proof(key, &htu, None, writ_token::system_clock().now());
        let r = self
            .server
            .token_with_proofs(cc(&id, &secret), &[&proof])
            .await
            .unwrap();
        assert_eq!(r.token_type, "DPoP");
        r.access_token
    }

    /// Reserve with `authorization: <scheme> <token>` and these `dpop` values.
    async fn reserve_proved(
        &self,
        scheme: &str,
        token: &str,
        proofs: &[&str],
    ) -> Result<ReserveResponse, Status> {
        let mut request = tonic::Request::new(apple());
        let m = request.metadata_mut();
        m.insert(
            "authorization",
            format!("{scheme} {token}").parse().unwrap(),
        );
        for p in proofs {
            m.append("dpop", p.parse().unwrap());
        }
        InventoryServiceClient::new(self.channel.clone())
            .reserve(request)
            .await
            .map(|r| r.into_inner())
    }
}

#[tokio::test]
async fn a_dpop_bound_token_source_calls_a_guarded_service_with_a_proof_per_call() {
    let g = Guarded::start().await;
    let (id, secret) = g
        .server
        .service_client("shop", SCOPE_RESERVE, &["inventory"])
        .await;
    let key = writ_guard::writ_client::DpopKey::generate().unwrap();
    let source = TokenSource::with_dpop(
        g.server.channel().await,
        &g.server.grpc_url,
        ClientCredentials::new(id, secret).for_audience("inventory", SCOPE_RESERVE),
        key.clone(),
    )
    .unwrap();
    // The token is bound to the source's key.
    let token = source.token().await.unwrap();
    let claims = writ_token::decode_unverified(&token)
        .unwrap()
        .claims
        .unwrap();
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint(), "{claims}");
    let svc = tower::ServiceBuilder::new()
        .layer(source.layer_for(&g.origin).unwrap())
        .service(g.channel.clone());
    let mut client = InventoryServiceClient::new(svc);
    for _ in 0..3 {
        let r = client.reserve(apple()).await.unwrap().into_inner();
        assert_eq!(r.subject, "shop");
    }
    // A layer that does not know the channel's origin cannot name the call's URL; nor can an
    // interceptor; and the token is nobody's bearer token.
    let blind = tower::ServiceBuilder::new()
        .layer(source.layer())
        .service(g.channel.clone());
    let r = InventoryServiceClient::new(blind).reserve(apple()).await;
    assert_eq!(r.unwrap_err().code(), Code::FailedPrecondition);
    let r = InventoryServiceClient::with_interceptor(g.channel.clone(), source.interceptor())
        .reserve(apple())
        .await;
    assert_eq!(r.unwrap_err().code(), Code::FailedPrecondition);
    let bearer = writ_client::BearerSource::bearer(&source).await;
    assert_eq!(bearer.unwrap_err().code(), Code::FailedPrecondition);
    assert!(source.layer_for("not an origin").is_err());
}

#[tokio::test]
async fn a_bound_token_is_refused_without_a_fresh_proof_by_its_key_for_this_call() {
    use writ_token::{Algorithm, SigningKey};
    let g = Guarded::start().await;
    let key = SigningKey::generate(Algorithm::ES256, "client").unwrap();
    let other = SigningKey::generate(Algorithm::ES256, "other").unwrap();
    let token = g.bound_token(&key).await;
    let now = writ_token::system_clock().now();
    let reserve = inventory_url(&g, "Reserve");
    let good = || call_proof(&key, &reserve, Some(&token), now);
    let dpop = |r: Result<ReserveResponse, Status>| {
        refused(r, Code::Unauthenticated, "invalid_dpop_proof", "dpop")
    };

    // The right proof passes, once.
    let once = good();
    assert_eq!(
        g.reserve_proved("DPoP", &token, &[&once])
            .await
            .unwrap()
            .subject,
        "shop"
    );
    dpop(g.reserve_proved("DPoP", &token, &[&once]).await);
    // A stolen bound token as a bearer token, or without a proof.
    refused(
        g.reserve_proved("Bearer", &token, &[]).await,
        Code::Unauthenticated,
        "invalid_token",
        "bad_claims",
    );
    refused(
        g.reserve_proved("Bearer", &token, &[&good()]).await,
        Code::Unauthenticated,
        "invalid_token",
        "bad_claims",
    );
    dpop(g.reserve_proved("DPoP", &token, &[]).await);
    // Proofs that are not for this call, this token, now, or by this key.
    let another_host = format!(
        "http://localhost:{}/writ.demo.v1.InventoryService/Reserve",
        g.origin.rsplit(':').next().unwrap()
    );
    let swapped = {
        let by_other = call_proof(&other, &reserve, Some(&token), now);
        let mine = good();
        let (header, _) = mine.split_once('.').unwrap();
        let (_, rest) = by_other.split_once('.').unwrap();
        format!("{header}.{rest}")
    };
    let cases = [
        (
            "another key",
            call_proof(&other, &reserve, Some(&token), now),
        ),
        (
            "another method",
            call_proof(&key, &inventory_url(&g, "GetStock"), Some(&token), now),
        ),
        (
            "another host",
            call_proof(&key, &another_host, Some(&token), now),
        ),
        (
            "another scheme",
            call_proof(
                &key,
                &reserve.replace("http://", "https://"),
                Some(&token),
                now,
            ),
        ),
        ("no ath", call_proof(&key, &reserve, None, now)),
        (
            "another token",
            call_proof(&key, &reserve, Some("another.token.here"), now),
        ),
        (
            "too old",
            call_proof(&key, &reserve, Some(&token), now - 400),
        ),
        (
            "in the future",
            call_proof(&key, &reserve, Some(&token), now + 400),
        ),
        ("a signature by another key", swapped),
        ("garbage", "not.a.proof".to_owned()),
    ];
    for (why, proof) in &cases {
        let r = g.reserve_proved("DPoP", &token, &[proof]).await;
        use tonic_types::StatusExt;
        let status = r.expect_err(why);
        assert_eq!(status.code(), Code::Unauthenticated, "{why}: {status:?}");
        let info = status.get_details_error_info().expect("ErrorInfo details");
        assert_eq!(info.reason, "invalid_dpop_proof", "{why}: {status:?}");
    }
    // Two proofs at once.
    dpop(g.reserve_proved("DPoP", &token, &[&good(), &good()]).await);
    // None of that spent anything: a fresh good proof still passes.
    g.reserve_proved("DPoP", &token, &[&good()]).await.unwrap();
    // A bearer token is not presented with the DPoP scheme.
    let bearer = g.token("plain", SCOPE_RESERVE, "inventory").await;
    refused(
        g.reserve_proved(
            "DPoP",
            &bearer,
            &[&call_proof(&key, &reserve, Some(&bearer), now)],
        )
        .await,
        Code::Unauthenticated,
        "invalid_token",
        "bad_claims",
    );
    // Revoked means revoked for bound tokens too.
    let grant = writ_token::decode_unverified(&token)
        .unwrap()
        .claims
        .unwrap()["gid"]
        .as_str()
        .unwrap()
        .to_owned();
    g.admin_revoke(writ_token::RevocationKind::GrantId, &grant)
        .await;
    let deadline = Instant::now() + PROPAGATION;
    loop {
        match g.reserve_proved("DPoP", &token, &[&good()]).await {
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            r => {
                refused(r, Code::Unauthenticated, "invalid_token", "revoked");
                break;
            }
        }
    }
}
