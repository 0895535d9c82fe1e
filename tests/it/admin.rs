//! The admin API: closed without the credential, and its operations.

use tonic::{Code, Request};
use writ_proto::admin::admin_service_client::AdminServiceClient;
use writ_proto::admin::*;
use writ_tests::*;
use writ_token::RevocationKind;

use crate::grants::{ALICE_PASSWORD, password_request};

#[tokio::test]
async fn the_admin_api_is_closed_without_the_admin_credential() {
    let server = TestServer::start().await;
    for credential in [
        None,
        Some("Bearer wrong"),
        Some("Bearer "),
        Some(&*format!("Basic {}", server.admin_credential)),
    ] {
        let mut client = AdminServiceClient::new(server.admin_channel().await);
        let mut req = Request::new(CreateClientRequest {
            client: Some(Client::default()),
        });
        if let Some(c) = credential {
            req.metadata_mut()
                .insert("authorization", c.parse().unwrap());
        }
        let r = server.assert_unchanged(client.create_client(req)).await;
        assert_refused(r, Code::Unauthenticated, "access_denied");
        let r = client.list_clients(ListClientsRequest::default()).await;
        assert_eq!(r.unwrap_err().code(), Code::Unauthenticated);
    }
}

#[tokio::test]
async fn the_admin_credential_is_never_stored_in_clear() {
    // Only its keyed hash is stored; `writ up` writes the credential itself to a 0600 file.
    let server = TestServer::start().await;
    let haystack: Vec<u8> = server.state().into_values().flatten().collect();
    let c = server.admin_credential.as_bytes();
    assert!(!haystack.windows(c.len()).any(|w| w == c));
}

#[tokio::test]
async fn clients_can_be_created_read_listed_updated_rotated_and_deleted() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    let (id, secret) = server.service_client("svc", "read", &["x"]).await;
    assert_eq!(secret.len(), 43);
    let got = admin
        .get_client(GetClientRequest {
            client_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap();
    assert_eq!(got.scope, "read");
    assert!(got.create_time.is_some());

    for i in 0..5 {
        server.service_client(&format!("c{i}"), "", &["x"]).await;
    }
    let page = admin
        .list_clients(ListClientsRequest {
            page_size: 4,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.clients.len(), 4);
    let rest = admin
        .list_clients(ListClientsRequest {
            page_size: 4,
            page_token: page.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.clients.len(), 2);
    assert!(rest.next_page_token.is_empty());

    let updated = admin
        .update_client(UpdateClientRequest {
            client: Some(Client {
                client_id: id.clone(),
                scope: "read write".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["scope".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap();
    assert_eq!(updated.scope, "read write");
    assert_eq!(updated.audience, ["x"], "fields outside the mask are kept");

    let new_secret = admin
        .rotate_client_secret(RotateClientSecretRequest {
            client_id: id.clone(),
            grace_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .client_secret;
    server
        .assert_token_refused(cc(&id, &secret), Code::Unauthenticated, "invalid_client")
        .await;
    server.issue(cc(&id, &new_secret)).await;

    admin
        .delete_client(DeleteClientRequest {
            client_id: id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        admin
            .get_client(GetClientRequest {
                client_id: id.clone()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    server
        .assert_token_refused(
            cc(&id, &new_secret),
            Code::Unauthenticated,
            "invalid_client",
        )
        .await;
}

#[tokio::test]
async fn invalid_client_registrations_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    server.service_client("taken", "", &["x"]).await;
    let mut admin = server.admin().await;
    let bad = [
        Client {
            client_id: "has space".into(),
            ..Default::default()
        },
        Client {
            grant_types: vec!["implicit".into()],
            ..Default::default()
        },
        Client {
            scope: "bad\"scope".into(),
            ..Default::default()
        },
        Client {
            access_token_lifetime: 10 * 24 * 3600,
            ..Default::default()
        },
        Client {
            access_token_lifetime: -1,
            ..Default::default()
        },
        Client {
            token_formats: vec![9],
            ..Default::default()
        },
        Client {
            client_type: 7,
            ..Default::default()
        },
    ];
    let taken = Client {
        client_id: "taken".into(),
        ..Default::default()
    };
    for c in bad {
        let r = server
            .assert_unchanged(admin.create_client(CreateClientRequest { client: Some(c) }))
            .await;
        assert_refused(r, Code::InvalidArgument, "invalid_request");
    }
    let dup = server
        .assert_unchanged(admin.create_client(CreateClientRequest {
            client: Some(taken.clone()),
        }))
        .await;
    assert_eq!(dup.unwrap_err().code(), Code::AlreadyExists);
    let r = server
        .assert_unchanged(admin.update_client(UpdateClientRequest {
            client: Some(taken),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["client_type".into()],
            }),
        }))
        .await;
    assert_refused(r, Code::InvalidArgument, "invalid_request");
}

#[tokio::test]
async fn users_are_created_with_argon2id_hashes_and_can_change_password() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    let (id, secret) = crate::grants::gateway_and_user(&server).await;
    let haystack: Vec<u8> = server.state().into_values().flatten().collect();
    let password = ALICE_PASSWORD.as_bytes();
    assert!(!haystack.windows(password.len()).any(|w| w == password));
    assert!(haystack.windows(10).any(|w| w == b"$argon2id$"));

    admin
        .set_user_password(SetUserPasswordRequest {
            username: "alice".into(),
            password: "another long one".into(),
        })
        .await
        .unwrap();
    let refused = async |password| {
        server
            .assert_token_refused(
                password_request(&id, &secret, password),
                Code::PermissionDenied,
                "invalid_grant",
            )
            .await
    };
    refused(ALICE_PASSWORD).await;
    server
        .issue(password_request(&id, &secret, "another long one"))
        .await;

    let short = admin
        .create_user(CreateUserRequest {
            username: "bob".into(),
            password: "short".into(),
            scope: String::new(),
        })
        .await;
    assert_refused(short, Code::InvalidArgument, "invalid_request");
    admin
        .delete_user(DeleteUserRequest {
            username: "alice".into(),
        })
        .await
        .unwrap();
    refused("another long one").await;
}

#[tokio::test]
async fn exchange_policies_are_stored_listed_and_deleted() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    let p = admin
        .create_exchange_policy(CreateExchangePolicyRequest {
            policy: Some(ExchangePolicy {
                client_id: "orders".into(),
                audience: vec!["inventory".into()],
                scope: "inventory.read".into(),
                max_lifetime: 120,
                max_chain_depth: 2,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert!(!p.policy_id.is_empty());
    let listed = admin
        .list_exchange_policies(ListExchangePoliciesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.policies, vec![p.clone()]);
    let bad = admin
        .create_exchange_policy(CreateExchangePolicyRequest {
            policy: Some(ExchangePolicy {
                client_id: "x".into(),
                ..Default::default()
            }),
        })
        .await;
    assert_refused(bad, Code::InvalidArgument, "invalid_request");
    admin
        .delete_exchange_policy(DeleteExchangePolicyRequest {
            policy_id: p.policy_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        admin
            .get_exchange_policy(GetExchangePolicyRequest {
                policy_id: p.policy_id
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

/// Issue 10, item 10: a rotated secret may keep working for a grace period (so clients can be
/// redeployed first), and not a second longer; without one it stops at once.
#[tokio::test]
async fn a_rotated_client_secret_keeps_working_for_its_grace_period_only() {
    let clock = writ_token::ManualClock::starting_now();
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let (id, first) = server.service_client("svc", "read", &["x"]).await;
    let mut admin = server.admin().await;
    let rotate = |grace_seconds| RotateClientSecretRequest {
        client_id: id.clone(),
        grace_seconds,
    };
    assert_refused(
        admin.rotate_client_secret(rotate(7 * 24 * 3600 + 1)).await,
        Code::InvalidArgument,
        "invalid_request",
    );
    let second = admin
        .rotate_client_secret(rotate(60))
        .await
        .unwrap()
        .into_inner()
        .client_secret;
    server.issue(cc(&id, &first)).await;
    server.issue(cc(&id, &second)).await;
    clock.advance(60);
    server
        .assert_token_refused(cc(&id, &first), Code::Unauthenticated, "invalid_client")
        .await;
    server.issue(cc(&id, &second)).await;

    // Without a grace period the previous secret stops at once, and an older one never returns.
    let third = admin
        .rotate_client_secret(rotate(0))
        .await
        .unwrap()
        .into_inner()
        .client_secret;
    for old in [&first, &second] {
        server
            .assert_token_refused(cc(&id, old), Code::Unauthenticated, "invalid_client")
            .await;
    }
    server.issue(cc(&id, &third)).await;
}

/// Issue 10, item 7: the admin credential is rotatable; the old one stops working at once.
#[tokio::test]
async fn the_admin_credential_rotates_and_the_old_one_stops_at_once() {
    let server = TestServer::start().await;
    let new = server
        .admin()
        .await
        .rotate_admin_credential(RotateAdminCredentialRequest {})
        .await
        .unwrap()
        .into_inner()
        .admin_credential;
    assert!(new.starts_with("writ-admin-") && new != server.admin_credential);
    let channel = server.admin_channel().await;
    let with = |credential: &str| {
        AdminServiceClient::with_interceptor(channel.clone(), writ_tests::bearer(credential))
    };
    assert_refused(
        with(&server.admin_credential)
            .list_signing_keys(ListSigningKeysRequest {})
            .await,
        Code::Unauthenticated,
        "access_denied",
    );
    with(&new)
        .list_signing_keys(ListSigningKeysRequest {})
        .await
        .expect("the new credential works");
}

/// Issue 10, item 7: tools and a standalone STS use Writ-issued admin tokens carrying only the
/// `writ.admin.*` scopes they need, never the master credential. Each method needs its scope;
/// rotating the master credential needs the master credential; the token must be for
/// `writ-admin`, live, and its client enabled.
#[tokio::test]
async fn admin_tokens_allow_only_what_their_scopes_name() {
    use writ_vocabulary::names::*;
    let server = TestServer::start().await;
    let (reader, secret) = server
        .service_client(
            "directory-reader",
            &format!("{ADMIN_READ_SCOPE} {ADMIN_AUTHENTICATE_CLIENT_SCOPE}"),
            &[ADMIN_AUDIENCE, "inventory"],
        )
        .await;
    let token_for = |audience: &str| {
        let mut req = cc(&reader, &secret);
        req.audience = vec![audience.into()];
        req
    };
    let token = server.issue(token_for(ADMIN_AUDIENCE)).await.access_token;
    let channel = server.admin_channel().await;
    let with = |credential: &str| {
        AdminServiceClient::with_interceptor(channel.clone(), writ_tests::bearer(credential))
    };
    let mut admin = with(&token);
    let later = writ_token::system_clock().now() + 600;

    // What its scopes name works...
    admin
        .list_clients(ListClientsRequest::default())
        .await
        .expect("writ.admin.read lists clients");
    admin
        .list_exchange_policies(ListExchangePoliciesRequest::default())
        .await
        .expect("writ.admin.read lists policies");
    let ok = admin
        .authenticate_client(AuthenticateClientRequest {
            client_id: reader.clone(),
            client_secret: secret.clone(),
            ..Default::default()
        })
        .await;
    assert!(ok.is_ok(), "{ok:?}");

    // ...nothing else does, and a refused call changes nothing.
    let r = server
        .assert_unchanged(admin.create_client(CreateClientRequest {
            client: Some(service_spec("sneaky", "inventory.read", &["inventory"])),
        }))
        .await;
    assert_refused(r, Code::PermissionDenied, "insufficient_scope");
    let r = server
        .assert_unchanged(admin.revoke(RevokeRequest {
            entries: vec![revocation_entry(RevocationKind::Subject, "alice", later)],
        }))
        .await;
    assert_refused(r, Code::PermissionDenied, "insufficient_scope");
    let r = server
        .assert_unchanged(admin.rotate_admin_credential(RotateAdminCredentialRequest {}))
        .await;
    assert_refused(r, Code::PermissionDenied, "insufficient_scope");

    // A token of the same client for another audience is no admin token, nor is one for the
    // admin API *and* a service (that service could replay it here).
    let other = server.issue(token_for("inventory")).await.access_token;
    let r = with(&other)
        .list_clients(ListClientsRequest::default())
        .await;
    assert_refused(r, Code::Unauthenticated, "access_denied");
    let mut both = token_for(ADMIN_AUDIENCE);
    both.audience.push("inventory".into());
    let both = server.issue(both).await.access_token;
    let r = with(&both)
        .list_clients(ListClientsRequest::default())
        .await;
    assert_refused(r, Code::Unauthenticated, "access_denied");
    // Nor is a forged or mangled one.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let r = with(&forged)
        .list_clients(ListClientsRequest::default())
        .await;
    assert_refused(r, Code::Unauthenticated, "access_denied");

    // Revoked, it stops at once; a new one works until the client is disabled.
    server
        .revoke_as_admin(RevocationKind::TokenId, &jti_of(&token), later)
        .await;
    let r = admin.list_clients(ListClientsRequest::default()).await;
    assert_refused(r, Code::Unauthenticated, "access_denied");
    let fresh = server.issue(token_for(ADMIN_AUDIENCE)).await.access_token;
    with(&fresh)
        .list_clients(ListClientsRequest::default())
        .await
        .expect("a new admin token works");
    server.set_disabled(&reader, true).await;
    let r = with(&fresh)
        .list_clients(ListClientsRequest::default())
        .await;
    assert_refused(r, Code::Unauthenticated, "access_denied");
}

/// `writ.admin.write` manages ordinary clients, users and keys, but not clients that hold admin
/// scopes (it could grant itself every other admin scope, or take over the STS's client): only
/// the master credential does. And a scope taken from a client ends its tokens' use of it at
/// once.
#[tokio::test]
async fn admin_writers_cannot_mint_admin_clients_and_lost_scopes_end_at_once() {
    use writ_vocabulary::names::*;
    let server = TestServer::start().await;
    let (writer, secret) = server
        .service_client(
            "provisioner",
            &format!("{ADMIN_WRITE_SCOPE} {ADMIN_READ_SCOPE}"),
            &[ADMIN_AUDIENCE],
        )
        .await;
    let (peer, _) = server
        .service_client(
            "sts-peer",
            ADMIN_AUTHENTICATE_CLIENT_SCOPE,
            &[ADMIN_AUDIENCE],
        )
        .await;
    let mut req = cc(&writer, &secret);
    req.audience = vec![ADMIN_AUDIENCE.into()];
    let token = server.issue(req).await.access_token;
    let mut admin =
        AdminServiceClient::with_interceptor(server.admin_channel().await, bearer(&token));

    // Ordinary clients: yes.
    admin
        .create_client(CreateClientRequest {
            client: Some(service_spec("orders", "inventory.read", &["inventory"])),
        })
        .await
        .expect("writ.admin.write creates an ordinary client");
    // Clients with admin scopes or the admin audience, new or existing: no.
    for spec in [
        service_spec("escalated", ADMIN_REVOKE_SCOPE, &["inventory"]),
        service_spec("escalated", "inventory.read", &[ADMIN_AUDIENCE]),
    ] {
        let r = server
            .assert_unchanged(admin.create_client(CreateClientRequest { client: Some(spec) }))
            .await;
        assert_refused(r, Code::PermissionDenied, "insufficient_scope");
    }
    let r = server
        .assert_unchanged(admin.update_client(UpdateClientRequest {
            client: Some(service_spec("orders", ADMIN_WRITE_SCOPE, &["inventory"])),
            update_mask: None,
        }))
        .await;
    assert_refused(r, Code::PermissionDenied, "insufficient_scope");
    let r = server
        .assert_unchanged(admin.rotate_client_secret(RotateClientSecretRequest {
            client_id: peer.clone(),
            grace_seconds: 0,
        }))
        .await;
    assert_refused(r, Code::PermissionDenied, "insufficient_scope");
    let r = server
        .assert_unchanged(admin.delete_client(DeleteClientRequest {
            client_id: peer.clone(),
        }))
        .await;
    assert_refused(r, Code::PermissionDenied, "insufficient_scope");

    // The master credential takes writ.admin.read away: the token stops reading at once.
    admin
        .list_clients(ListClientsRequest::default())
        .await
        .expect("still allowed");
    server
        .admin()
        .await
        .update_client(UpdateClientRequest {
            client: Some(service_spec(
                "provisioner",
                ADMIN_WRITE_SCOPE,
                &[ADMIN_AUDIENCE],
            )),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["scope".into()],
            }),
        })
        .await
        .unwrap();
    let r = admin.list_clients(ListClientsRequest::default()).await;
    assert_refused(r, Code::PermissionDenied, "insufficient_scope");
}

/// Every AdminService method has a deliberate permission: a method added to the proto without
/// one falls to "master credential only", and this test lists the ones that do.
#[test]
fn every_admin_method_has_a_deliberate_permission() {
    use prost::Message as _;
    use writ_oauth::AdminPermission;
    let set = prost_types::FileDescriptorSet::decode(writ_proto::FILE_DESCRIPTOR_SET).unwrap();
    let methods: Vec<String> = set
        .file
        .iter()
        .flat_map(|f| &f.service)
        .filter(|s| s.name() == "AdminService")
        .flat_map(|s| &s.method)
        .map(|m| m.name().to_owned())
        .collect();
    assert!(methods.len() >= 18, "{methods:?}");
    for m in &methods {
        let p = writ_authz::permission(m);
        if p == AdminPermission::Master {
            assert_eq!(m, "RotateAdminCredential", "{m} is master-only by default");
        }
    }
}
