//! What every Writ server offers: TLS by default, gRPC health checking and server reflection.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use writ_tests::*;

#[tokio::test]
async fn health_checks_report_serving() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in [
        "",
        "writ.authz.v1.AuthorizationService",
        "writ.admin.v1.AdminService",
    ] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_lists_the_writ_services() {
    let server = TestServer::start().await;
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection response");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "writ.authz.v1.AuthorizationService",
        "writ.admin.v1.AdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_cannot_connect() {
    let server = TestServer::start().await;
    let other_ca = writ_tls::ensure_dev_pki(tempfile::tempdir().unwrap().path(), &[]).unwrap();
    let endpoint = tonic::transport::Endpoint::from_shared(server.grpc_url.clone())
        .unwrap()
        .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(other_ca.ca_pem.unwrap()),
        ))
        .unwrap();
    assert!(endpoint.connect().await.is_err());
    // And plaintext gRPC to a TLS port fails too.
    let plain =
        tonic::transport::Endpoint::from_shared(server.grpc_url.replace("https", "http")).unwrap();
    if let Ok(ch) = plain.connect().await {
        let mut h = HealthClient::new(ch);
        assert!(
            h.check(HealthCheckRequest {
                service: String::new()
            })
            .await
            .is_err()
        );
    }
}

#[tokio::test]
async fn the_server_metadata_names_the_issuer_and_endpoints() {
    let server = TestServer::start().await;
    let m = server.metadata().await;
    assert_eq!(m.issuer, server.issuer);
    assert_eq!(m.token_endpoint, format!("{}/oauth2/token", server.issuer));
    assert_eq!(
        m.jwks_uri,
        format!("{}/.well-known/jwks.json", server.issuer)
    );
    assert!(
        m.grant_types_supported
            .contains(&"refresh_token".to_owned())
    );
    assert!(!m.grant_types_supported.contains(&"implicit".to_owned()));
}
