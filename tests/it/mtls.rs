//! Issue 13, part 2: mutual TLS (RFC 8705) over gRPC. A client authenticates with the TLS
//! certificate it registered (`self_signed_tls_client_auth`), its tokens are bound to it
//! (`cnf.x5t#S256`), and a guard takes them only over a connection presenting it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tower::Layer as _;
use writ_demo::pb::ReserveRequest;
use writ_demo::pb::inventory_service_client::InventoryServiceClient;
use writ_demo::{Inventory, SCOPE_RESERVE};
use writ_guard::{Guard, GuardConfig, Revocations, TrustedIssuer};
use writ_proto::admin::{Client, ClientType};
use writ_server::{ServiceSpec, Shutdown};
use writ_tests::*;

/// A client's TLS certificate and key (PEM), self-signed, and the certificate's DER.
struct ClientCert {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn client_cert(name: &str) -> ClientCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// A JWK Set registering `certs` (RFC 8705 section 2.2.2: `x5c`).
fn jwks_of(certs: &[&ClientCert]) -> String {
    let keys: Vec<_> = certs
        .iter()
        .map(|c| {
            serde_json::json!({
                "x5c": [base64::engine::general_purpose::STANDARD.encode(&c.der)]
            })
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// A channel to `url` trusting `ca`, presenting `cert` if given.
async fn channel(url: &str, ca: &str, cert: Option<&ClientCert>) -> Channel {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some(c) = cert {
        tls = tls.identity(Identity::from_pem(&c.cert_pem, &c.key_pem));
    }
    Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A client authenticating with `cert`, its tokens bound to it, for inventory.
fn certificate_client(id: &str, cert: &ClientCert) -> Client {
    Client {
        token_endpoint_auth_method: "self_signed_tls_client_auth".into(),
        jwks: jwks_of(&[cert]),
        tls_client_certificate_bound_access_tokens: true,
        may_introspect: true,
        ..service_spec(id, SCOPE_RESERVE, &["inventory"])
    }
}

/// A token request for `id` with no secret, over `channel`.
/// The claims of `token`, after checking it is bound to `cert` (`cnf.x5t#S256`).
fn bound_to(token: &str, cert: &ClientCert) -> serde_json::Value {
    let claims = writ_token::decode_unverified(token)
        .unwrap()
        .claims
        .unwrap();
    assert_eq!(
        claims["cnf"]["x5t#S256"],
        writ_token::certificate_thumbprint(&cert.der).as_str(),
        "{claims}"
    );
    claims
}

async fn token_over(
    channel: Channel,
    id: &str,
    secret: &str,
) -> Result<writ_proto::authz::TokenResponse, tonic::Status> {
    writ_proto::authz::authorization_service_client::AuthorizationServiceClient::new(channel)
        .token(cc(id, secret))
        .await
        .map(|r| r.into_inner())
}

/// A server, its CA, a client `orders` registered with the certificate `mine`, and another
/// certificate.
struct World {
    server: TestServer,
    ca: String,
    mine: ClientCert,
    other: ClientCert,
    id: String,
}

async fn world() -> World {
    let server = TestServer::start().await;
    let ca = server.ca_pem.clone().unwrap();
    let mine = client_cert("orders");
    let (id, secret) = server
        .create_client(certificate_client("orders", &mine))
        .await;
    assert!(secret.is_empty(), "a certificate client has no secret");
    World {
        server,
        ca,
        mine,
        other: client_cert("intruder"),
        id,
    }
}

#[tokio::test]
async fn a_client_authenticates_with_its_registered_certificate_and_gets_tokens_bound_to_it() {
    let World {
        server,
        ca,
        mine,
        other,
        id,
    } = world().await;
    let with_mine = channel(&server.grpc_url, &ca, Some(&mine)).await;
    let r = token_over(with_mine.clone(), &id, "").await.unwrap();
    // RFC 8705 section 3: still a bearer token by type, bound by its cnf.
    assert_eq!(r.token_type, "Bearer");
    bound_to(&r.access_token, &mine);
    // Introspection, over the same connection, says what the token is bound to.
    let seen = writ_proto::authz::authorization_service_client::AuthorizationServiceClient::new(
        with_mine.clone(),
    )
    .introspect(writ_proto::authz::IntrospectRequest {
        token: r.access_token.clone(),
        client_id: id.clone(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert!(seen.active);
    assert_eq!(
        seen.cnf_x5t_s256,
        writ_token::certificate_thumbprint(&mine.der)
    );
    // Another certificate, none, or a secret besides: invalid_client, nothing issued.
    for (why, channel, secret) in [
        (
            "another certificate",
            self::channel(&server.grpc_url, &ca, Some(&other)).await,
            "",
        ),
        (
            "no certificate",
            self::channel(&server.grpc_url, &ca, None).await,
            "",
        ),
        ("a secret as well", with_mine.clone(), "a secret"),
    ] {
        let status = token_over(channel, &id, secret).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{why}: {status:?}");
        assert_eq!(reason(&status), "invalid_client", "{why}");
    }
    // A client with a secret whose tokens are bound: it must present a certificate.
    let (bound_id, bound_secret) = server
        .create_client(Client {
            tls_client_certificate_bound_access_tokens: true,
            ..service_spec("billing", SCOPE_RESERVE, &["inventory"])
        })
        .await;
    let r = token_over(
        channel(&server.grpc_url, &ca, Some(&other)).await,
        &bound_id,
        &bound_secret,
    )
    .await
    .unwrap();
    bound_to(&r.access_token, &other);
    let status = token_over(
        channel(&server.grpc_url, &ca, None).await,
        &bound_id,
        &bound_secret,
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&status), "invalid_request", "{status:?}");
    // Nor does token exchange (which sees no certificate) hand it unbound tokens.
    let status = server
        .admin()
        .await
        .authenticate_client(writ_proto::admin::AuthenticateClientRequest {
            client_id: bound_id.clone(),
            client_secret: bound_secret.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(reason(&status), "unauthorized_client");

    // Rotation: registering another certificate ends the old one at once.
    server
        .admin()
        .await
        .update_client(writ_proto::admin::UpdateClientRequest {
            client: Some(Client {
                client_id: id.clone(),
                jwks: jwks_of(&[&other]),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["jwks".into()],
            }),
        })
        .await
        .unwrap();
    let status = token_over(with_mine, &id, "").await.unwrap_err();
    assert_eq!(reason(&status), "invalid_client");
    token_over(channel(&server.grpc_url, &ca, Some(&other)).await, &id, "")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_certificate_clients_registration_is_checked() {
    let server = TestServer::start().await;
    let mine = client_cert("orders");
    let cases = [
        (
            "no certificate",
            Client {
                jwks: String::new(),
                ..certificate_client("a", &mine)
            },
        ),
        (
            "not a certificate",
            Client {
                jwks: r#"{"keys":[{"x5c":["bm90IGEgY2VydGlmaWNhdGU="]}]}"#.into(),
                ..certificate_client("b", &mine)
            },
        ),
        (
            "a key without x5c",
            Client {
                jwks: r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#.into(),
                ..certificate_client("c", &mine)
            },
        ),
        (
            "private key material",
            Client {
                jwks: format!(
                    r#"{{"keys":[{{"x5c":["{}"],"d":"secret"}}]}}"#,
                    base64::engine::general_purpose::STANDARD.encode(&mine.der)
                ),
                ..certificate_client("d", &mine)
            },
        ),
        (
            "eleven certificates",
            Client {
                jwks: jwks_of(&[&mine; 11]),
                ..certificate_client("g", &mine)
            },
        ),
        (
            "bytes after the certificate",
            Client {
                jwks: format!(
                    r#"{{"keys":[{{"x5c":["{}"]}}]}}"#,
                    base64::engine::general_purpose::STANDARD
                        .encode([mine.der.as_slice(), b"trailing"].concat())
                ),
                ..certificate_client("h", &mine)
            },
        ),
        (
            "bound tokens by default as Biscuits",
            Client {
                token_formats: vec![writ_proto::common::TokenFormat::Biscuit as i32],
                default_token_format: writ_proto::common::TokenFormat::Biscuit as i32,
                ..certificate_client("i", &mine)
            },
        ),
        (
            "a jwks_uri",
            Client {
                jwks: String::new(),
                jwks_uri: "https://orders.example/jwks.json".into(),
                ..certificate_client("e", &mine)
            },
        ),
        (
            "bound tokens for a public client",
            Client {
                client_type: ClientType::Public as i32,
                tls_client_certificate_bound_access_tokens: true,
                ..service_spec("f", SCOPE_RESERVE, &["inventory"])
            },
        ),
    ];
    for (why, spec) in cases {
        refused_registration(&server, spec, why).await;
    }
}

#[tokio::test]
async fn a_guard_takes_a_certificate_bound_token_only_over_a_connection_presenting_it() {
    let World {
        server,
        ca,
        mine,
        other,
        id,
    } = world().await;
    let bound = token_over(channel(&server.grpc_url, &ca, Some(&mine)).await, &id, "")
        .await
        .unwrap()
        .access_token;
    let (plain_id, plain_secret) = server
        .service_client("shop", SCOPE_RESERVE, &["inventory"])
        .await;
    let plain = server.cc_token(&plain_id, &plain_secret).await;

    // Inventory behind a guard, on TLS that asks clients for certificates. Revocations are not
    // this test's subject (the guard tests follow the feed).
    let keys = writ_trust::RemoteKeys::connect(
        server.channel().await,
        Duration::from_secs(300),
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    let guard = Guard::new(GuardConfig {
        revocations: Revocations::Unchecked,
        ..GuardConfig::without_revocations(
            "inventory",
            vec![TrustedIssuer::new(keys.issuer().to_owned(), Arc::new(keys))],
            writ_demo::inventory_policy(),
        )
    });
    let pki = tempfile::tempdir().unwrap();
    let tls = writ_tls::ensure_dev_pki(pki.path(), &[]).unwrap();
    let (_stop, signal) = Shutdown::new();
    let listener = writ_server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let spec = ServiceSpec::new("inventory")
        .client_certificates()
        .grpc(guard.layer().layer(
            writ_demo::pb::inventory_service_server::InventoryServiceServer::new(
                Inventory::default(),
            ),
        ));
    writ_server::serve(spec, listener, None, Some(&tls), signal)
        .await
        .unwrap();
    let inventory_ca = tls.ca_pem.clone().unwrap();
    let reserve = |channel: Channel, token: String| async move {
        let mut request = tonic::Request::new(ReserveRequest {
            sku: "apple".into(),
            quantity: 1,
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        InventoryServiceClient::new(channel).reserve(request).await
    };
    let r = reserve(
        channel(&url, &inventory_ca, Some(&mine)).await,
        bound.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.into_inner().subject, "orders");
    for (why, cert) in [("another certificate", Some(&other)), ("none", None)] {
        let r = reserve(channel(&url, &inventory_ca, cert).await, bound.clone()).await;
        let status = assert_guard_refused(r, Code::Unauthenticated, "invalid_token");
        use tonic_types::StatusExt;
        let info = status.get_details_error_info().unwrap();
        assert_eq!(
            info.metadata.get("cause").map(String::as_str),
            Some("certificate"),
            "{why}"
        );
    }
    // An unbound token passes with a certificate or without.
    for cert in [Some(&other), None] {
        reserve(channel(&url, &inventory_ca, cert).await, plain.clone())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn over_http_certificates_are_taken_at_the_mtls_aliases_only() {
    use writ_tests::http_client::HttpClient;
    let World {
        server,
        ca,
        mine,
        other,
        id,
    } = world().await;
    let alias = server
        .mtls_url
        .clone()
        .expect("with TLS on, the mTLS aliases are served");
    // RFC 8705 section 5: the metadata names the aliases.
    let meta = server.http_metadata().await;
    assert_eq!(
        meta["mtls_endpoint_aliases"]["token_endpoint"],
        format!("{alias}/oauth2/token")
    );
    assert_eq!(meta["tls_client_certificate_bound_access_tokens"], true);
    assert!(
        meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "self_signed_tls_client_auth"),
        "{meta}"
    );
    let form = format!("grant_type=client_credentials&client_id={id}");
    let with_mine = HttpClient::with_identity(&alias, &ca, &mine.cert_pem, &mine.key_pem);
    let body = with_mine
        .post_form("/oauth2/token", &[], &form)
        .await
        .token_json();
    let token = body["access_token"].as_str().unwrap();
    bound_to(token, &mine);
    let thumbprint = writ_token::certificate_thumbprint(&mine.der);
    let seen = with_mine
        .post_form(
            "/oauth2/introspect",
            &[],
            &format!("client_id={id}&token={token}"),
        )
        .await
        .json();
    assert_eq!(seen["cnf"]["x5t#S256"], thumbprint.as_str(), "{seen}");
    // Another certificate, none, or the main port (which asks for none): invalid_client.
    for (why, client) in [
        (
            "another certificate",
            HttpClient::with_identity(&alias, &ca, &other.cert_pem, &other.key_pem),
        ),
        ("no certificate", HttpClient::new(&alias, Some(&ca))),
        (
            "the main port",
            HttpClient::with_identity(&server.http_url, &ca, &mine.cert_pem, &mine.key_pem),
        ),
    ] {
        let r = client.post_form("/oauth2/token", &[], &form).await;
        assert_eq!(r.status, 401, "{why}");
        assert_eq!(r.json()["error"], "invalid_client", "{why}");
    }
    // The sign-in pages are not served where browsers would be asked for certificates.
    assert_eq!(with_mine.get("/oauth2/authorize").await.status, 404);
    // DPoP at the alias: a proof over the alias's URL, and the token bound to both.
    let key = writ_token::SigningKey::generate(writ_token::Algorithm::EdDSA, "k").unwrap();
    let proof_for = |htu: &str| {
        writ_token::sign_proof(
            &key,
            &writ_token::ProofClaimsOut {
                htm: "POST",
                htu,
                iat: writ_token::system_clock().now(),
                access_token: None,
                nonce: None,
            },
        )
    };
    let proof = proof_for(&format!("{alias}/oauth2/token"));
    let body = with_mine
        .post_form("/oauth2/token", &[("dpop", &proof)], &form)
        .await
        .token_json();
    assert_eq!(body["token_type"], "DPoP");
    let claims = bound_to(body["access_token"].as_str().unwrap(), &mine);
    assert_eq!(
        claims["cnf"]["jkt"],
        writ_token::key_thumbprint(&key).unwrap().as_str()
    );
    let main = proof_for(&format!("{}/oauth2/token", server.issuer));
    let r = with_mine
        .post_form("/oauth2/token", &[("dpop", &main)], &form)
        .await;
    assert_eq!(r.json()["error"], "invalid_dpop_proof");
}

/// A CA for client certificates: its certificate (DER) and what signs with it.
struct ClientCa {
    der: Vec<u8>,
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
}

fn client_ca(name: &str) -> ClientCa {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, name);
        dn
    };
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let der = params.self_signed(&key).unwrap().der().to_vec();
    ClientCa { der, params, key }
}

/// A client certificate from `ca` whose subject is `O=<org>,CN=<cn>` in certificate order (RFC
/// 4514: `CN=<cn>,O=<org>`), with no subject alternative name.
fn issued_to(ca: &ClientCa, org: &str, cn: &str) -> ClientCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, org);
        dn.push(rcgen::DnType::CommonName, cn);
        dn
    };
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .signed_by(&key, &rcgen::Issuer::from_params(&ca.params, &ca.key))
        .unwrap();
    ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// A client certificate from `ca` naming `uri` (its only subject alternative name), for
/// client authentication (or, with `eku` false, for servers only), valid now unless
/// `expired`.
fn issued(ca: &ClientCa, uri: &str, eku: bool, expired: bool) -> ClientCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    // A certificate with no extended key usage is good for any (RFC 5280 section 4.2.1.12):
    // one "not for client authentication" says so.
    params.extended_key_usages = vec![if eku {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params
        .signed_by(&key, &rcgen::Issuer::from_params(&ca.params, &ca.key))
        .unwrap();
    ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// A CA for client certificates, a server trusting it for `tls_client_auth`, and the
/// server's own CA (PEM).
async fn trusting_a_client_ca() -> (ClientCa, TestServer, String) {
    let ca = client_ca("client CA");
    let anchor = ca.der.clone();
    let server = TestServer::start_with(Options {
        config: Box::new(move |c| c.tls_client_cas = vec![anchor.clone()]),
        ..Options::default()
    })
    .await;
    let tls_ca = server.ca_pem.clone().unwrap();
    (ca, server, tls_ca)
}

/// Registering `spec` is refused as INVALID_ARGUMENT (`why` says what is wrong with it).
async fn refused_registration(server: &TestServer, spec: Client, why: &str) {
    let status = server
        .admin()
        .await
        .create_client(writ_proto::admin::CreateClientRequest { client: Some(spec) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{why}: {status:?}");
}

#[tokio::test]
async fn a_client_authenticates_with_a_certificate_from_a_trusted_ca_naming_it() {
    const ORDERS: &str = "spiffe://example.org/ns/shop/sa/orders";
    let (ca, server, tls_ca) = trusting_a_client_ca().await;
    let (id, secret) = server
        .create_client(Client {
            token_endpoint_auth_method: "tls_client_auth".into(),
            tls_client_auth_san_uri: ORDERS.into(),
            tls_client_certificate_bound_access_tokens: true,
            ..service_spec("orders", SCOPE_RESERVE, &["inventory"])
        })
        .await;
    assert!(secret.is_empty());
    let good = issued(&ca, ORDERS, true, false);
    let r = token_over(
        channel(&server.grpc_url, &tls_ca, Some(&good)).await,
        &id,
        "",
    )
    .await
    .unwrap();
    bound_to(&r.access_token, &good);
    // Over HTTP, at the mTLS alias, the same.
    let alias = server.mtls_url.clone().unwrap();
    let http = writ_tests::http_client::HttpClient::with_identity(
        &alias,
        &tls_ca,
        &good.cert_pem,
        &good.key_pem,
    );
    http.post_form(
        "/oauth2/token",
        &[],
        &format!("grant_type=client_credentials&client_id={id}"),
    )
    .await
    .token_json();
    // Every other certificate: invalid_client.
    let other_ca = client_ca("another CA");
    let cases = [
        ("another CA", issued(&other_ca, ORDERS, true, false)),
        ("self-signed", client_cert("orders")),
        (
            "another name",
            issued(&ca, "spiffe://example.org/ns/shop/sa/billing", true, false),
        ),
        (
            "a longer name",
            issued(&ca, &format!("{ORDERS}-x"), true, false),
        ),
        (
            "a trailing slash",
            issued(&ca, &format!("{ORDERS}/"), true, false),
        ),
        (
            "another case",
            issued(&ca, &ORDERS.to_uppercase(), true, false),
        ),
        (
            "not for client authentication",
            issued(&ca, ORDERS, false, false),
        ),
        ("expired", issued(&ca, ORDERS, true, true)),
    ];
    // Four failures per client (a fifth would start throttling it): clients of the same name.
    let mut ids = Vec::new();
    for i in 0..cases.len().div_ceil(4) {
        let (id, _) = server
            .create_client(Client {
                token_endpoint_auth_method: "tls_client_auth".into(),
                tls_client_auth_san_uri: ORDERS.into(),
                ..service_spec(&format!("orders-{i}"), SCOPE_RESERVE, &["inventory"])
            })
            .await;
        ids.push(id);
    }
    for (i, (why, cert)) in cases.iter().enumerate() {
        let r = token_over(
            channel(&server.grpc_url, &tls_ca, Some(cert)).await,
            &ids[i / 4],
            "",
        )
        .await;
        let status = r.expect_err(why);
        assert_eq!(reason(&status), "invalid_client", "{why}: {status:?}");
    }
    // The metadata lists it once the CA is configured.
    let meta = server.http_metadata().await;
    assert!(
        meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "tls_client_auth"),
        "{meta}"
    );
    // Registration: exactly one name, a parsable IP.
    for (why, spec) in [
        (
            "no name",
            Client {
                token_endpoint_auth_method: "tls_client_auth".into(),
                ..service_spec("a", SCOPE_RESERVE, &["inventory"])
            },
        ),
        (
            "two names",
            Client {
                token_endpoint_auth_method: "tls_client_auth".into(),
                tls_client_auth_san_uri: ORDERS.into(),
                tls_client_auth_san_dns: "orders.internal".into(),
                ..service_spec("b", SCOPE_RESERVE, &["inventory"])
            },
        ),
        (
            "not an IP address",
            Client {
                token_endpoint_auth_method: "tls_client_auth".into(),
                tls_client_auth_san_ip: "orders".into(),
                ..service_spec("c", SCOPE_RESERVE, &["inventory"])
            },
        ),
        (
            "a wildcard",
            Client {
                token_endpoint_auth_method: "tls_client_auth".into(),
                tls_client_auth_san_dns: "*.internal".into(),
                ..service_spec("w", SCOPE_RESERVE, &["inventory"])
            },
        ),
        (
            "a name for a client with a secret",
            Client {
                tls_client_auth_san_uri: ORDERS.into(),
                ..service_spec("d", SCOPE_RESERVE, &["inventory"])
            },
        ),
    ] {
        refused_registration(&server, spec, why).await;
    }
    // A server that trusts no CA for clients takes no such registration.
    let plain = TestServer::start().await;
    refused_registration(
        &plain,
        Client {
            token_endpoint_auth_method: "tls_client_auth".into(),
            tls_client_auth_san_uri: ORDERS.into(),
            ..service_spec("e", SCOPE_RESERVE, &["inventory"])
        },
        "no CA trusted for clients",
    )
    .await;
}

#[tokio::test]
async fn a_client_may_be_known_by_its_certificates_subject() {
    let (ca, server, tls_ca) = trusting_a_client_ca().await;
    let (id, _) = server
        .create_client(Client {
            token_endpoint_auth_method: "tls_client_auth".into(),
            tls_client_auth_subject_dn: "CN=orders,O=Shop".into(),
            ..service_spec("orders", SCOPE_RESERVE, &["inventory"])
        })
        .await;
    let good = issued_to(&ca, "Shop", "orders");
    token_over(
        channel(&server.grpc_url, &tls_ca, Some(&good)).await,
        &id,
        "",
    )
    .await
    .unwrap();
    for (why, cert) in [
        ("another organization", issued_to(&ca, "Other", "orders")),
        ("another name", issued_to(&ca, "Shop", "billing")),
        ("another case", issued_to(&ca, "Shop", "Orders")),
        (
            "another CA",
            issued_to(&client_ca("another CA"), "Shop", "orders"),
        ),
    ] {
        let r = token_over(
            channel(&server.grpc_url, &tls_ca, Some(&cert)).await,
            &id,
            "",
        )
        .await;
        assert_eq!(reason(&r.expect_err(why)), "invalid_client", "{why}");
    }
    refused_registration(
        &server,
        Client {
            token_endpoint_auth_method: "tls_client_auth".into(),
            tls_client_auth_subject_dn: "not a distinguished name".into(),
            ..service_spec("x", SCOPE_RESERVE, &["inventory"])
        },
        "not a distinguished name",
    )
    .await;
}
