//! Workloads without any secret (issue 13, part 3): the JWT-bearer grant (RFC 7523 section 2.1).
//! A made-up Kubernetes cluster (its RS256 signing key vendored in crates/token/testdata) signs
//! service-account tokens; an administrator trusts it and maps its subjects to a client through
//! the admin API; the workload's token source reads its projected token file and gets Writ
//! tokens over gRPC, and a plain HTTP form does the same.

use serde_json::{Value, json};
use tonic::Code;
use writ_client::{ClientCredentials, TokenSource};
use writ_proto::admin as pb_admin;
use writ_proto::authz;
use writ_tests::Options;
use writ_tests::*;
use writ_token::{Algorithm, SigningKey};
use writ_vocabulary::grant_type::JWT_BEARER;

use crate::grants::verifier_for;

pub(crate) const CLUSTER_KEY: &str = include_str!("../../crates/token/testdata/rsa-2048.pem");
pub(crate) const CLUSTER_JWKS: &str =
    include_str!("../../crates/token/testdata/rsa-2048.jwks.json");
pub(crate) const CLUSTER: &str = "https://kubernetes.default.svc.cluster.local";
const ORDERS_SA: &str = "system:serviceaccount:prod:orders";

/// A service-account token as the cluster signs it (RS256, its kid), with `claims` over the
/// defaults (`aud` "writ", an hour of life).
pub(crate) fn sa_token(claims: Value) -> String {
    let now = writ_token::system_clock().now();
    let mut c = json!({
        "iss": CLUSTER,
        "sub": ORDERS_SA,
        "aud": ["writ"],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "orders"}},
    });
    for (k, v) in claims.as_object().unwrap() {
        c[k] = v.clone();
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("k8s-1".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(CLUSTER_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &c, &key).unwrap()
}

/// A token signed by `key` (EdDSA or ES256) with its kid, by jsonwebtoken.
fn signed_by(key: &SigningKey, claims: Value) -> String {
    let pem = key.to_pkcs8_pem().unwrap();
    let (alg, encoding) = match key.alg() {
        Algorithm::EdDSA => (
            jsonwebtoken::Algorithm::EdDSA,
            jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        ),
        _ => (
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        ),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(key.kid().to_owned());
    jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
}

/// The workload's client: public (it holds nothing), allowed only the JWT-bearer grant.
pub(crate) fn workload_client(id: &str) -> pb_admin::Client {
    pb_admin::Client {
        client_type: pb_admin::ClientType::Public as i32,
        grant_types: vec![JWT_BEARER.into()],
        ..service_spec(
            id,
            "inventory.read inventory.write",
            &["inventory", "billing"],
        )
    }
}

pub(crate) fn cluster(policies: Vec<pb_admin::WorkloadPolicy>) -> pb_admin::WorkloadIssuer {
    pb_admin::WorkloadIssuer {
        issuer: CLUSTER.into(),
        jwks: CLUSTER_JWKS.into(),
        audience: "writ".into(),
        policies,
        ..Default::default()
    }
}

pub(crate) fn prod_policy(client: &str) -> pb_admin::WorkloadPolicy {
    pb_admin::WorkloadPolicy {
        subject: "system:serviceaccount:prod:*".into(),
        client_id: client.into(),
        scope: "inventory.read".into(),
        audience: vec!["inventory".into()],
        ..Default::default()
    }
}

async fn trust(server: &TestServer, issuer: pb_admin::WorkloadIssuer) -> pb_admin::WorkloadIssuer {
    server
        .admin()
        .await
        .create_workload_issuer(pb_admin::CreateWorkloadIssuerRequest {
            issuer: Some(issuer),
        })
        .await
        .unwrap()
        .into_inner()
        .issuer
        .unwrap()
}

/// The grant refused as `invalid_grant`, writing nothing.
async fn no_grant(server: &TestServer, client_id: &str, assertion: String) {
    server
        .assert_token_refused_unchanged(
            grant(client_id, assertion),
            Code::PermissionDenied,
            "invalid_grant",
        )
        .await;
}

fn grant(client_id: &str, assertion: String) -> authz::TokenRequest {
    authz::TokenRequest {
        grant_type: JWT_BEARER.into(),
        client_id: client_id.into(),
        assertion,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_service_account_token_gets_a_writ_token_without_any_secret() {
    let server = TestServer::start().await;
    server.create_client(workload_client("orders")).await;
    let trusted = trust(&server, cluster(vec![prod_policy("orders")])).await;
    assert_eq!(trusted.policies.len(), 1);
    assert!(!trusted.policies[0].policy_id.is_empty(), "an id is given");
    let meta = server.metadata().await;
    assert!(meta.grant_types_supported.iter().any(|g| g == JWT_BEARER));

    // The token source reads the projected token file on each request.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, sa_token(json!({})) + "\n").unwrap();
    let source = TokenSource::new(
        server.channel().await,
        ClientCredentials::workload("orders", &file),
    );
    let token = source.token().await.unwrap();
    let verified = verifier_for(&server, "inventory")
        .await
        .verify(&token)
        .unwrap();
    assert_eq!(
        verified.claims.sub, ORDERS_SA,
        "the workload is the subject"
    );
    assert_eq!(verified.claims.client_id, "orders");
    assert_eq!(
        verified.claims.scope, "inventory.read",
        "the policy's scope"
    );
    assert_eq!(verified.claims.aud, vec!["inventory".to_owned()]);

    // Kubernetes' tokens are presented again until the kubelet refreshes them: reuse works
    // for an issuer not marked single-use; no client_id is needed (the policy names it), and
    // no refresh token is issued.
    let assertion = sa_token(json!({}));
    let again = server.issue(grant("", assertion.clone())).await;
    assert_eq!(again.refresh_token, "");
    server.issue(grant("orders", assertion.clone())).await;

    // The same over the HTTP facade, as a standard client sends it.
    let form = format!(
        "grant_type={}&assertion={}&scope=inventory.read",
        http_client::form_encode(JWT_BEARER),
        assertion
    );
    let body = server
        .http()
        .post_form("/oauth2/token", &[], &form)
        .await
        .token_json();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("refresh_token").is_none(), "{body}");

    // The audit trail says which issuer, policy and key vouched for the workload.
    let issued = server.audit_records_of("token_issued");
    let last = issued.last().unwrap();
    assert_eq!(last.details["grant_type"], JWT_BEARER);
    assert_eq!(last.details["issuer"], CLUSTER);
    assert_eq!(last.details["policy_id"], trusted.policies[0].policy_id);
    assert_eq!(last.details["assertion_kid"], "k8s-1");
    assert_eq!(last.subject, ORDERS_SA);
}

#[tokio::test]
async fn bad_workload_tokens_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    server.create_client(workload_client("orders")).await;
    server.create_client(workload_client("billing")).await;
    let (cc_id, _) = server
        .service_client("cc-only", "inventory.read", &["inventory"])
        .await;
    let mut policies = vec![prod_policy("orders")];
    policies.push(pb_admin::WorkloadPolicy {
        subject: "system:serviceaccount:batch:report".into(),
        client_id: cc_id.clone(),
        ..Default::default()
    });
    trust(&server, cluster(policies)).await;
    let now = writ_token::system_clock().now();
    let invalid_grant = async |req: authz::TokenRequest, what: &str| {
        let status = server
            .assert_token_refused_unchanged(req, Code::PermissionDenied, "invalid_grant")
            .await;
        assert!(!status.message().is_empty(), "{what}");
    };

    // Claims the cluster signed but Writ must not accept.
    for (what, claims) in [
        ("another issuer", json!({"iss": "https://other.example"})),
        (
            "a subject no policy names",
            json!({"sub": "system:serviceaccount:dev:orders"}),
        ),
        (
            "expired",
            json!({"exp": now - 120, "iat": now - 3700, "nbf": now - 3700}),
        ),
        ("living too long", json!({"exp": now + 7200})),
        ("for another audience", json!({"aud": ["kubernetes"]})),
        ("not yet valid", json!({"nbf": now + 600})),
    ] {
        invalid_grant(grant("orders", sa_token(claims)), what).await;
    }
    // Signed by a key the cluster does not publish (an unregistered key, its kid borrowed).
    let stranger = SigningKey::generate(Algorithm::ES256, "k8s-1").unwrap();
    let forged = signed_by(
        &stranger,
        json!({"iss": CLUSTER, "sub": ORDERS_SA, "aud": "writ", "exp": now + 60}),
    );
    invalid_grant(grant("orders", forged), "an unregistered key").await;
    // Another RSA key's signature under the cluster's kid.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("k8s-1".into());
    let other = jsonwebtoken::EncodingKey::from_rsa_pem(
        include_str!("../../crates/token/testdata/rsa-2048-other.pem").as_bytes(),
    )
    .unwrap();
    let claims = json!({"iss": CLUSTER, "sub": ORDERS_SA, "aud": "writ", "exp": now + 60});
    let forged = jsonwebtoken::encode(&header, &claims, &other).unwrap();
    invalid_grant(grant("orders", forged), "another RSA key").await;
    invalid_grant(grant("orders", "not.a.jwt".into()), "garbage").await;
    // A client the subject's policy does not name.
    invalid_grant(grant("billing", sa_token(json!({}))), "another client").await;

    // Within the policy only: no wider scope, no other audience.
    let mut wide = grant("orders", sa_token(json!({})));
    wide.scope = "inventory.write".into();
    server
        .assert_token_refused_unchanged(wide, Code::PermissionDenied, "invalid_scope")
        .await;
    let mut elsewhere = grant("orders", sa_token(json!({})));
    elsewhere.audience = vec!["billing".into()];
    server
        .assert_token_refused_unchanged(elsewhere, Code::PermissionDenied, "invalid_target")
        .await;
    // A policy naming a client that may not use the grant.
    server
        .assert_token_refused_unchanged(
            grant(
                &cc_id,
                sa_token(json!({"sub": "system:serviceaccount:batch:report"})),
            ),
            Code::PermissionDenied,
            "unauthorized_client",
        )
        .await;
    // The assertion is required.
    server
        .assert_token_refused_unchanged(
            grant("orders", String::new()),
            Code::InvalidArgument,
            "invalid_request",
        )
        .await;
    // Each refusal is recorded, with the grant type.
    assert!(
        server
            .audit_records_of("token_refused")
            .iter()
            .filter(|r| r.details.get("grant_type").map(String::as_str) == Some(JWT_BEARER))
            .count()
            >= 12
    );
}

/// An issuer whose tokens carry a `jti` and are used once: a replay is refused, on this server
/// and after a restart (the mark is durable), and a token without a `jti` is refused.
#[tokio::test]
async fn a_single_use_issuers_token_cannot_be_replayed() {
    let server = TestServer::start().await;
    server.create_client(workload_client("orders")).await;
    trust(
        &server,
        pb_admin::WorkloadIssuer {
            single_use: true,
            max_token_lifetime: 300,
            ..cluster(vec![prod_policy("orders")])
        },
    )
    .await;
    let now = writ_token::system_clock().now();
    let once = sa_token(json!({"jti": "svid-1", "exp": now + 300}));
    server.issue(grant("orders", once.clone())).await;
    no_grant(&server, "orders", once.clone()).await;
    no_grant(&server, "orders", sa_token(json!({"exp": now + 300}))).await;
    let server = server.restart().await;
    no_grant(&server, "orders", once).await;
    server
        .issue(grant(
            "orders",
            sa_token(json!({"jti": "svid-2", "exp": now + 300})),
        ))
        .await;
}

/// The admin API refuses what must not be trusted, and what it changes takes effect at once:
/// a removed policy or a deleted issuer gets nothing more; new keys replace the old ones.
#[tokio::test]
async fn trusted_issuers_are_managed_through_the_admin_api() {
    let server = TestServer::start().await;
    server.create_client(workload_client("orders")).await;
    let mut admin = server.admin().await;
    let create = |issuer: pb_admin::WorkloadIssuer| pb_admin::CreateWorkloadIssuerRequest {
        issuer: Some(issuer),
    };
    let mut private: Value = serde_json::from_str(CLUSTER_JWKS).unwrap();
    private["keys"][0]["d"] = "AQAB".into();
    let ed = SigningKey::generate(Algorithm::EdDSA, "ed-1").unwrap();
    for (what, bad) in [
        (
            "private key material",
            pb_admin::WorkloadIssuer {
                jwks: private.to_string(),
                ..cluster(vec![])
            },
        ),
        (
            "no keys",
            pb_admin::WorkloadIssuer {
                jwks: String::new(),
                ..cluster(vec![])
            },
        ),
        (
            "keys and a URL",
            pb_admin::WorkloadIssuer {
                jwks_uri: "https://keys.example/jwks".into(),
                ..cluster(vec![])
            },
        ),
        (
            "an http URL",
            pb_admin::WorkloadIssuer {
                jwks: String::new(),
                jwks_uri: "http://keys.example/jwks".into(),
                ..cluster(vec![])
            },
        ),
        (
            "a day and more",
            pb_admin::WorkloadIssuer {
                max_token_lifetime: 86_401,
                ..cluster(vec![])
            },
        ),
        (
            "any subject",
            cluster(vec![pb_admin::WorkloadPolicy {
                subject: "*".into(),
                ..prod_policy("orders")
            }]),
        ),
        (
            "the API server's audience",
            pb_admin::WorkloadIssuer {
                audience: CLUSTER.into(),
                ..cluster(vec![])
            },
        ),
        (
            "the API server's audience, with a slash",
            pb_admin::WorkloadIssuer {
                audience: format!("{CLUSTER}/"),
                ..cluster(vec![])
            },
        ),
        (
            "the in-cluster API server URL",
            pb_admin::WorkloadIssuer {
                audience: "https://kubernetes.default.svc".into(),
                ..cluster(vec![])
            },
        ),
        (
            "a malformed issuer",
            pb_admin::WorkloadIssuer {
                issuer: "has space".into(),
                ..cluster(vec![])
            },
        ),
    ] {
        let refused = admin.create_workload_issuer(create(bad)).await;
        assert_eq!(
            refused.expect_err(what).code(),
            Code::InvalidArgument,
            "{what}"
        );
    }
    assert!(
        admin
            .list_workload_issuers(pb_admin::ListWorkloadIssuersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .issuers
            .is_empty(),
        "nothing refused was stored"
    );

    trust(&server, cluster(vec![])).await;
    let again = admin.create_workload_issuer(create(cluster(vec![]))).await;
    assert_eq!(again.unwrap_err().code(), Code::AlreadyExists);
    // Trusted, but no subject is allowed anything until a policy names it.
    no_grant(&server, "orders", sa_token(json!({}))).await;
    let policy = admin
        .add_workload_policy(pb_admin::AddWorkloadPolicyRequest {
            issuer: CLUSTER.into(),
            policy: Some(pb_admin::WorkloadPolicy {
                subject: ORDERS_SA.into(),
                ..prod_policy("orders")
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    server.issue(grant("orders", sa_token(json!({})))).await;
    // An exact subject is exact: its neighbour gets nothing.
    no_grant(
        &server,
        "orders",
        sa_token(json!({"sub": "system:serviceaccount:prod:orders-2"})),
    )
    .await;

    // An update names what it changes: the rest stays as stored (here, the keys, which the
    // request leaves empty); a field it cannot change is refused and changes nothing.
    let before = admin
        .get_workload_issuer(pb_admin::GetWorkloadIssuerRequest {
            issuer: CLUSTER.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .issuer
        .unwrap();
    let masked = |paths: &[&str]| pb_admin::UpdateWorkloadIssuerRequest {
        issuer: Some(pb_admin::WorkloadIssuer {
            issuer: CLUSTER.into(),
            max_token_lifetime: 7200,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    };
    let changed = admin
        .update_workload_issuer(masked(&["max_token_lifetime"]))
        .await
        .unwrap()
        .into_inner()
        .issuer
        .unwrap();
    assert_eq!(changed.max_token_lifetime, 7200);
    assert_eq!(
        (&changed.jwks, &changed.audience, changed.single_use),
        (&before.jwks, &before.audience, before.single_use),
        "kept"
    );
    let refused = admin
        .update_workload_issuer(masked(&["issuer"]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    server.issue(grant("orders", sa_token(json!({})))).await;

    // New keys replace the old ones (the policies stay).
    let updated = admin
        .update_workload_issuer(pb_admin::UpdateWorkloadIssuerRequest {
            issuer: Some(pb_admin::WorkloadIssuer {
                jwks: json!({"keys": [ed.verification_key().to_jwk()]}).to_string(),
                ..cluster(vec![])
            }),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .issuer
        .unwrap();
    assert_eq!(updated.policies, vec![policy.clone()]);
    no_grant(&server, "orders", sa_token(json!({}))).await;
    let now = writ_token::system_clock().now();
    let by_ed = signed_by(
        &ed,
        json!({"iss": CLUSTER, "sub": ORDERS_SA, "aud": "writ", "exp": now + 60}),
    );
    server.issue(grant("orders", by_ed.clone())).await;

    admin
        .remove_workload_policy(pb_admin::RemoveWorkloadPolicyRequest {
            issuer: CLUSTER.into(),
            policy_id: policy.policy_id.clone(),
        })
        .await
        .unwrap();
    no_grant(&server, "orders", by_ed.clone()).await;
    admin
        .delete_workload_issuer(pb_admin::DeleteWorkloadIssuerRequest {
            issuer: CLUSTER.into(),
        })
        .await
        .unwrap();
    let gone = admin
        .get_workload_issuer(pb_admin::GetWorkloadIssuerRequest {
            issuer: CLUSTER.into(),
        })
        .await;
    assert_eq!(gone.unwrap_err().code(), Code::NotFound);
    // Every change is in the audit trail, key ids and rules, never key material.
    for (kind, times) in [
        ("workload_issuer_created", 1),
        ("workload_policy_added", 1),
        ("workload_issuer_updated", 2),
        ("workload_policy_removed", 1),
        ("workload_issuer_deleted", 1),
    ] {
        let records = server.audit_records_of(kind);
        assert_eq!(records.len(), times, "{kind}");
        let modulus = serde_json::from_str::<Value>(CLUSTER_JWKS).unwrap()["keys"][0]["n"]
            .as_str()
            .unwrap()
            .to_owned();
        for value in records[0].details.values() {
            assert!(!value.contains(&modulus[..32]), "{kind}: {value}");
        }
        if kind == "workload_issuer_created" {
            assert!(
                records[0].details["after"].contains("k8s-1"),
                "kids are shown"
            );
        }
    }
}

/// An issuer that publishes its keys at a `jwks_uri` (as a cluster's OIDC discovery does): the
/// RSA set is fetched when first needed and kept; when the cluster rotates, a token naming the
/// new key fetches the set again (at most once per `client_jwks_min_refetch`).
#[tokio::test]
async fn an_issuers_published_keys_are_fetched_once_and_again_on_rotation() {
    let pki = tempfile::tempdir().unwrap();
    let published = writ_tests::sts::JwksServer::start(pki.path(), CLUSTER_JWKS).await;
    const MIN_REFETCH: std::time::Duration = std::time::Duration::from_secs(1);
    let server = TestServer::start_with(Options {
        client_jwks_ca: Some(published.ca_path.clone()),
        config: Box::new(|c| c.client_jwks_min_refetch = MIN_REFETCH),
        ..Options::default()
    })
    .await;
    server.create_client(workload_client("orders")).await;
    trust(
        &server,
        pb_admin::WorkloadIssuer {
            jwks: String::new(),
            jwks_uri: published.url.clone(),
            ..cluster(vec![prod_policy("orders")])
        },
    )
    .await;
    assert_eq!(published.fetches(), 0, "fetched when first needed");
    for _ in 0..3 {
        server.issue(grant("orders", sa_token(json!({})))).await;
    }
    assert_eq!(published.fetches(), 1, "fetched once, then kept");

    tokio::time::sleep(MIN_REFETCH).await;
    let rotated = SigningKey::generate(Algorithm::ES256, "k8s-2").unwrap();
    published.serve(&json!({"keys": [rotated.verification_key().to_jwk()]}).to_string());
    let now = writ_token::system_clock().now();
    let by_new = signed_by(
        &rotated,
        json!({"iss": CLUSTER, "sub": ORDERS_SA, "aud": "writ", "exp": now + 60}),
    );
    server.issue(grant("orders", by_new)).await;
    assert_eq!(
        published.fetches(),
        2,
        "an unknown kid fetched the set again"
    );
    // The old key left the set: its tokens are refused (without another fetch).
    no_grant(&server, "orders", sa_token(json!({}))).await;
    assert_eq!(published.fetches(), 2);
}

/// One policy decides (the most specific), never a mix of two; a single-use token is spent
/// only by a request that gets a token; each other refusal has its own answer.
#[tokio::test]
async fn the_most_specific_policy_decides_and_a_refused_request_spends_nothing() {
    let server = TestServer::start().await;
    server.create_client(workload_client("orders")).await;
    server.create_client(workload_client("billing")).await;
    let broad = pb_admin::WorkloadPolicy {
        subject: "system:serviceaccount:prod:*".into(),
        client_id: "orders".into(),
        scope: "inventory.write".into(),
        audience: vec!["billing".into()],
        ..Default::default()
    };
    let exact = pb_admin::WorkloadPolicy {
        subject: ORDERS_SA.into(),
        client_id: "orders".into(),
        scope: "inventory.read".into(),
        audience: vec!["inventory".into()],
        ..Default::default()
    };
    // The broadest: any service account, as billing.
    let everyone = pb_admin::WorkloadPolicy {
        subject: "system:serviceaccount:*".into(),
        client_id: "billing".into(),
        ..Default::default()
    };
    trust(
        &server,
        pb_admin::WorkloadIssuer {
            single_use: true,
            ..cluster(vec![broad, exact, everyone])
        },
    )
    .await;
    let now = writ_token::system_clock().now();
    let mut jti = 0;
    let mut fresh = |sub: &str| {
        jti += 1;
        sa_token(json!({"sub": sub, "jti": format!("t{jti}"), "exp": now + 600}))
    };
    let verifier = verifier_for(&server, "billing").await;

    // The exact policy decides for its subject: the broad one's scope and audience are not
    // added to it.
    let mut wide = grant("orders", fresh(ORDERS_SA));
    wide.scope = "inventory.write".into();
    server
        .assert_token_refused_unchanged(wide, Code::PermissionDenied, "invalid_scope")
        .await;
    let mut elsewhere = grant("orders", fresh(ORDERS_SA));
    elsewhere.audience = vec!["billing".into()];
    server
        .assert_token_refused_unchanged(elsewhere, Code::PermissionDenied, "invalid_target")
        .await;
    // Another subject gets the broad policy's, its audience by default (the client's first
    // one the policy allows).
    let other = server
        .issue(grant("orders", fresh("system:serviceaccount:prod:other")))
        .await;
    let claims = verifier.verify(&other.access_token).unwrap().claims;
    assert_eq!(claims.scope, "inventory.write");
    assert_eq!(claims.aud, vec!["billing".to_owned()]);
    // A narrower policy is not escaped by naming the client of a broader one.
    no_grant(&server, "billing", fresh(ORDERS_SA)).await;
    server
        .issue(grant("billing", fresh("system:serviceaccount:dev:x")))
        .await;
    // One policy per subject and client.
    let twice = server
        .admin()
        .await
        .add_workload_policy(pb_admin::AddWorkloadPolicyRequest {
            issuer: CLUSTER.into(),
            policy: Some(pb_admin::WorkloadPolicy {
                subject: ORDERS_SA.into(),
                client_id: "orders".into(),
                ..Default::default()
            }),
        })
        .await;
    assert_eq!(twice.unwrap_err().code(), Code::AlreadyExists);

    // A refused request spends nothing: the same single-use token works afterwards.
    let once = fresh(ORDERS_SA);
    let mut biscuit = grant("orders", once.clone());
    biscuit.token_format = writ_proto::common::TokenFormat::Biscuit as i32;
    server
        .assert_token_refused_unchanged(biscuit, Code::InvalidArgument, "invalid_request")
        .await;
    server.issue(grant("orders", once.clone())).await;
    no_grant(&server, "orders", once).await;

    // Two clients for one subject: the request must name one.
    server
        .admin()
        .await
        .add_workload_policy(pb_admin::AddWorkloadPolicyRequest {
            issuer: CLUSTER.into(),
            policy: Some(pb_admin::WorkloadPolicy {
                subject: ORDERS_SA.into(),
                client_id: "billing".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    server
        .assert_token_refused_unchanged(
            grant("", fresh(ORDERS_SA)),
            Code::InvalidArgument,
            "invalid_request",
        )
        .await;
    server.issue(grant("billing", fresh(ORDERS_SA))).await;

    // Another client's credentials do not authenticate the policy's client.
    let (_, secret) = server
        .create_client(pb_admin::Client {
            grant_types: vec![JWT_BEARER.into()],
            ..service_spec("svc", "inventory.read", &["inventory"])
        })
        .await;
    let mut borrowed = grant("orders", fresh(ORDERS_SA));
    borrowed.client_secret = secret;
    server
        .assert_token_refused_unchanged(borrowed, Code::Unauthenticated, "invalid_client")
        .await;
    // A disabled client gets nothing.
    server.set_disabled("orders", true).await;
    no_grant(&server, "orders", fresh(ORDERS_SA)).await;

    // RSA keys are for workload issuers: a client cannot register one for private_key_jwt.
    let refused = server
        .admin()
        .await
        .create_client(pb_admin::CreateClientRequest {
            client: Some(pb_admin::Client {
                token_endpoint_auth_method: "private_key_jwt".into(),
                jwks: CLUSTER_JWKS.into(),
                ..service_spec("rsa-client", "inventory.read", &["inventory"])
            }),
        })
        .await;
    assert_refused(refused, Code::InvalidArgument, "invalid_request");
}
