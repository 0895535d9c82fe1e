//! Issue 16: the durable audit trail. Every audited decision is exactly one record with the
//! right fields, in the order it was made, and the log a running platform writes verifies.

use std::sync::Arc;
use std::time::Duration;

use writ_audit::AuditRecord;
use writ_proto::admin as pb_admin;
use writ_tests::*;

/// The records `server` chains after the first `seen`, once exactly `count` arrived (bounded
/// wait); a moment later there must still be exactly `count`: one record per decision.
async fn next_records(server: &TestServer, seen: &mut usize, count: usize) -> Vec<AuditRecord> {
    eventually(
        Duration::from_secs(10),
        "the decisions are recorded",
        || server.audit_records().len() >= *seen + count,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = server.settled_audit_records().await;
    let new = all[*seen..].to_vec();
    assert_eq!(
        new.len(),
        count,
        "exactly {count} record(s): {:#?}",
        new.iter().map(|r| &r.kind).collect::<Vec<_>>()
    );
    *seen = all.len();
    new
}

/// The keys a first start generates are in the audit trail (by `system`, key ids and
/// algorithms, never key material); a restart, which generates nothing, records nothing of it.
#[tokio::test]
async fn the_signing_keys_of_a_first_start_are_recorded_once() {
    let server = TestServer::start().await;
    let created = server.audit_records_of("signing_key_created");
    let mut purposes: Vec<&str> = created
        .iter()
        .map(|r| r.details["purpose"].as_str())
        .collect();
    purposes.sort_unstable();
    assert_eq!(purposes, ["biscuit", "jwt"], "{created:#?}");
    let published = server.jwks().await;
    for r in &created {
        assert_eq!((r.actor.as_str(), r.service.as_str()), ("system", "authz"));
        if r.details["purpose"] == "jwt" {
            assert_eq!(r.details["kid"], published.keys[0].kid);
            assert_eq!(r.details["alg"], "EdDSA");
        }
    }
    let server = server.restart().await;
    assert_eq!(
        server.audit_records_of("signing_key_created").len(),
        2,
        "a restart creates no key"
    );
}

#[tokio::test]
async fn every_decision_is_one_record_with_its_fields() {
    init_logs();
    let server = TestServer::start().await;
    let mut seen = server.settled_audit_records().await.len();

    // An administrator registers a client: its fields after, never its secret.
    let (id, secret) = server
        .create_client(service_spec("svc", "read", &["api"]))
        .await;
    let r = &next_records(&server, &mut seen, 1).await[0];
    assert_eq!(
        (
            r.kind.as_str(),
            r.outcome.as_str(),
            r.actor.as_str(),
            r.client_id.as_str()
        ),
        ("client_created", "success", "admin", "svc")
    );
    assert!(r.details["after"].contains("scope=\"read\""), "{r:?}");
    assert!(
        !format!("{r:?}").contains(&secret),
        "no secret in the record"
    );
    assert_eq!(r.service, "authz");

    // A token issued: who, for whom, which grant, which token.
    let token = server.cc_token(&id, &secret).await;
    let claims = server
        .engine
        .verifier()
        .verify(&token, None)
        .unwrap()
        .claims;
    let r = &next_records(&server, &mut seen, 1).await[0];
    assert_eq!(r.kind, "token_issued");
    assert_eq!((r.actor.as_str(), r.client_id.as_str()), ("svc", "svc"));
    assert_eq!(r.subject, claims.sub);
    assert_eq!(Some(r.gid.clone()), claims.gid);
    assert_eq!(r.audience, ["api"]);
    assert_eq!(r.details["jti"], claims.jti);
    assert_eq!(r.details["grant_type"], "client_credentials");

    // A refusal, with its reason (and nothing about the secret tried).
    server
        .assert_token_refused(
            cc(&id, "wrong-secret"),
            tonic::Code::Unauthenticated,
            "invalid_client",
        )
        .await;
    let r = &next_records(&server, &mut seen, 1).await[0];
    assert_eq!(
        (
            r.kind.as_str(),
            r.outcome.as_str(),
            r.client_id.as_str(),
            r.reason.as_str()
        ),
        ("token_refused", "refused", "svc", "invalid_client")
    );
    assert!(!format!("{r:?}").contains("wrong-secret"));

    // An introspection: who asked about which token.
    assert!(server.introspect(&token, &id, &secret).await.active);
    let r = &next_records(&server, &mut seen, 1).await[0];
    assert_eq!(
        (r.kind.as_str(), r.actor.as_str()),
        ("token_introspected", "svc")
    );
    assert_eq!(r.details["jti"], claims.jti);
    assert_eq!(r.details["active"], "true");

    // An administrator's revocation: recorded by the authorization server as it is made, and
    // by the revocation service when the publisher relays it.
    server
        .revoke_as_admin(writ_token::RevocationKind::TokenId, &claims.jti, claims.exp)
        .await;
    let mut both = next_records(&server, &mut seen, 2).await;
    both.sort_by(|a, b| a.kind.cmp(&b.kind));
    assert_eq!(
        both.iter()
            .map(|r| (
                r.kind.as_str(),
                r.service.as_str(),
                r.details["value"].as_str()
            ))
            .collect::<Vec<_>>(),
        [
            ("revocation_recorded", "revocation", claims.jti.as_str()),
            ("revoked", "authz", claims.jti.as_str())
        ]
    );
    assert_eq!(both[1].actor, "admin");
    assert_eq!(both[0].actor, writ_vocabulary::names::SELF_CLIENT_ID);

    // An update: what changed, before and after.
    let mut admin = server.admin().await;
    admin
        .update_client(pb_admin::UpdateClientRequest {
            client: Some(pb_admin::Client {
                client_id: "svc".into(),
                scope: "read write".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["scope".into()],
            }),
        })
        .await
        .unwrap();
    let r = &next_records(&server, &mut seen, 1).await[0];
    assert_eq!(r.kind, "client_updated");
    assert_eq!(
        (r.details["before"].as_str(), r.details["after"].as_str()),
        ("scope=\"read\"", "scope=\"read write\"")
    );

    // A read of the admin API is recorded too (who looked).
    admin
        .list_clients(pb_admin::ListClientsRequest::default())
        .await
        .unwrap();
    let r = &next_records(&server, &mut seen, 1).await[0];
    assert_eq!(
        (
            r.kind.as_str(),
            r.actor.as_str(),
            r.details["method"].as_str()
        ),
        ("admin_read", "admin", "ListClients")
    );

    // The whole log chains and verifies, signed up to its end once closed.
    // The log's view of the store (its segment files): the server's own, while it runs.
    let store = writ_audit::open_store(Arc::new(writ_store::Ready(
        server.store.clone() as Arc<dyn writ_store::Store>
    )))
    .await
    .unwrap();
    let report = writ_audit::verify::verify(&*store, None).await.unwrap();
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.records as usize, seen);
}

#[tokio::test]
async fn list_audit_events_filters_and_pages_through_the_admin_api() {
    let server = TestServer::start().await;
    let (id, secret) = server
        .create_client(service_spec("svc", "read", &["api"]))
        .await;
    for _ in 0..5 {
        server.cc_token(&id, &secret).await;
    }
    for _ in 0..3 {
        server
            .assert_token_refused(
                cc(&id, "nope"),
                tonic::Code::Unauthenticated,
                "invalid_client",
            )
            .await;
    }
    let mut admin = server.admin().await;
    let list = |req: pb_admin::ListAuditEventsRequest| {
        let mut admin = admin.clone();
        async move { admin.list_audit_events(req).await.unwrap().into_inner() }
    };
    // Pages of two: every refusal of svc, once, in order.
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = list(pb_admin::ListAuditEventsRequest {
            client_id: "svc".into(),
            outcome: "refused".into(),
            page_size: 2,
            page_token: token.clone(),
            ..Default::default()
        })
        .await;
        seen.extend(page.events.iter().map(|e| e.sequence));
        assert!(page.events.iter().all(|e| e.event_type == "token_refused"));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let issued = list(pb_admin::ListAuditEventsRequest {
        event_type: "token_issued".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(issued.events.len(), 5);
    assert!(issued.events.iter().all(|e| e.hash.len() == 64));
    // A time range that ended before anything happened.
    let past = list(pb_admin::ListAuditEventsRequest {
        until: Some(prost_types::Timestamp {
            seconds: 1_000_000_000,
            nanos: 0,
        }),
        ..Default::default()
    })
    .await;
    assert!(past.events.is_empty());
    // A token the server never gave is refused.
    let bad = admin
        .list_audit_events(pb_admin::ListAuditEventsRequest {
            page_token: "not-a-cursor".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    // Reading the trail is itself in the trail.
    assert!(
        !server
            .settled_audit_records()
            .await
            .iter()
            .filter(|r| r.kind == "admin_read")
            .any(|r| r.details["method"] != "ListAuditEvents")
    );
}

#[tokio::test]
async fn a_refused_admin_change_is_recorded_with_its_method() {
    let server = TestServer::start().await;
    let mut seen = server.settled_audit_records().await.len();
    let mut admin = server.admin().await;
    let refused = admin
        .delete_client(pb_admin::DeleteClientRequest {
            client_id: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);
    let r = &next_records(&server, &mut seen, 1).await[0];
    assert_eq!(
        (r.kind.as_str(), r.outcome.as_str(), r.actor.as_str()),
        ("admin_call_refused", "refused", "admin")
    );
    assert_eq!(r.details["method"], "DeleteClient");
    assert_eq!(r.reason, "grpc-status 5");
}

/// A split deployment's STS checks each caller through `AdminService.AuthenticateClient`: the
/// authorization server's log has one record of each answer (who asked, for which client and
/// audience, and why not), not the generic refused-call record.
#[tokio::test]
async fn a_remote_sts_client_check_is_one_record_either_way() {
    let server = TestServer::start().await;
    let (id, secret) = server
        .create_client(service_spec("exchanger", "read", &["api"]))
        .await;
    let mut seen = server.settled_audit_records().await.len();
    let mut admin = server.admin().await;
    let asked = |client_secret: &str| pb_admin::AuthenticateClientRequest {
        client_id: id.clone(),
        client_secret: client_secret.to_owned(),
        audience: vec!["https://sts.test".into()],
        ..Default::default()
    };
    let told = |r: &AuditRecord| {
        (
            r.kind.clone(),
            r.outcome.clone(),
            r.actor.clone(),
            r.client_id.clone(),
            r.reason.clone(),
            r.audience.clone(),
        )
    };
    let expected = |outcome: &str, reason: &str| {
        (
            "exchange_client_authenticated".to_owned(),
            outcome.to_owned(),
            "admin".to_owned(),
            "exchanger".to_owned(),
            reason.to_owned(),
            vec!["https://sts.test".to_owned()],
        )
    };
    admin.authenticate_client(asked(&secret)).await.unwrap();
    let r = &next_records(&server, &mut seen, 1).await[0];
    assert_eq!(told(r), expected("success", ""));

    let refused = admin
        .authenticate_client(asked("wrong-secret"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let r = &next_records(&server, &mut seen, 1).await[0];
    assert_eq!(told(r), expected("refused", "invalid_client"));
    assert!(!format!("{r:?}").contains("wrong-secret"));
}

/// `--audit-max-refusals-per-second` on the running platform: a burst of refused token
/// requests past it is recorded up to the budget and counted in `refusals_unrecorded`; not
/// one refusal goes missing from the sum.
#[tokio::test]
async fn a_flood_of_refusals_is_counted_past_the_budget() {
    let server = TestServer::start_with(Options {
        audit: writ_audit::Settings {
            max_refusals_per_second: 2,
            ..writ_audit::Settings::default()
        },
        ..Options::default()
    })
    .await;
    let before = server.settled_audit_records().await.len();
    let flood = 12;
    for i in 0..flood {
        server
            .assert_token_refused(
                cc(&format!("nobody-{i}"), "guess"),
                tonic::Code::Unauthenticated,
                "invalid_client",
            )
            .await;
    }
    // Counted refusals are recorded on the appender's next tick (about a second).
    let tally = || {
        let records = server.audit_records();
        let one_by_one = records[before..]
            .iter()
            .filter(|r| r.kind == "token_refused")
            .count();
        let counted: usize = records[before..]
            .iter()
            .filter(|r| r.kind == "refusals_unrecorded")
            .map(|r| {
                assert_eq!(
                    (r.details.get("kind").map(String::as_str), r.reason.as_str()),
                    (Some("token_refused"), "invalid_client")
                );
                r.details["count"].parse::<usize>().unwrap()
            })
            .sum();
        (one_by_one, counted)
    };
    eventually(
        Duration::from_secs(10),
        "every refusal is recorded or counted",
        || {
            let (one_by_one, counted) = tally();
            one_by_one + counted == flood
        },
    )
    .await;
    let (one_by_one, _) = tally();
    assert!((2..flood).contains(&one_by_one), "{one_by_one}");
}
