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
    for (channel, services) in [
        (
            server.channel().await,
            &["", "writ.authz.v1.AuthorizationService"][..],
        ),
        (
            server.admin_channel().await,
            &["", "writ.admin.v1.AdminService"][..],
        ),
    ] {
        let mut health = HealthClient::new(channel);
        for service in services {
            let r = health
                .check(HealthCheckRequest {
                    service: (*service).into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
        }
    }
}

/// The services a port's reflection lists, asked in `v1` and in `v1alpha` (many tools speak
/// only the latter); both must agree.
async fn listed(url: &str, ca_pem: Option<&str>) -> Vec<String> {
    use tonic_reflection::pb::v1alpha;
    let channel = connect(url, ca_pem).await;
    let mut v1 = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let resp = v1
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection response");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let resp = alpha
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        resp.message_response
    else {
        panic!("unexpected v1alpha reflection response");
    };
    let mut alpha_names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    alpha_names.sort();
    assert_eq!(names, alpha_names, "v1 and v1alpha list the same services");
    names
}

#[tokio::test]
async fn each_ports_reflection_lists_exactly_the_services_it_serves_in_v1_and_v1alpha() {
    let mut server = TestServer::start().await;
    let sts = server.start_sts().await;
    let standard = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    for (url, own) in [
        // The admin API has a port of its own, not the one clients reach.
        (
            &server.grpc_url,
            &["writ.authz.v1.AuthorizationService"][..],
        ),
        (&server.admin_url, &["writ.admin.v1.AdminService"][..]),
        (
            &server.revocation_url,
            &["writ.revocation.v1.RevocationService"][..],
        ),
        (&sts.grpc_url, &["writ.sts.v1.SecurityTokenService"][..]),
    ] {
        let mut expected: Vec<String> = own
            .iter()
            .chain(standard.iter())
            .map(|s| (*s).to_owned())
            .collect();
        expected.sort();
        assert_eq!(
            listed(url, server.ca_pem.as_deref()).await,
            expected,
            "{url}"
        );
    }
    // Health checking reports each port's own services, and only them.
    let mut health = HealthClient::new(connect(&sts.grpc_url, server.ca_pem.as_deref()).await);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    let r = health
        .check(check("writ.sts.v1.SecurityTokenService"))
        .await
        .unwrap();
    assert_eq!(r.into_inner().status, ServingStatus::Serving as i32);
    assert!(
        health
            .check(check("writ.authz.v1.AuthorizationService"))
            .await
            .is_err()
    );
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

/// Issue 10, item 8: open connections are bounded per source (and in all), on both listeners
/// of a service: past the bound a new connection is closed at once, and a closed one gives its
/// place back.
#[tokio::test]
async fn open_connections_are_bounded_per_source_on_both_listeners() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let (grpc_addr, http_addr, shutdown) = plain_service_with(
        axum::Router::new().route("/", axum::routing::get(|| async { "ok" })),
        writ_server::ConnectionLimits {
            per_source: 2,
            total: 100,
            ..writ_server::ConnectionLimits::default()
        },
    )
    .await;

    /// Whether the server closes `stream` at once (EOF within a short wait).
    async fn closed_at_once(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
    for addr in [grpc_addr, http_addr] {
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_at_once(&mut third).await,
            "{addr}: the third is closed"
        );
        assert!(!closed_at_once(&mut first).await, "{addr}: the first stays");
        assert!(!closed_at_once(&mut second).await);
        drop(first);
        // Its place comes back once the server has seen it close.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mut again = TcpStream::connect(addr).await.unwrap();
            if !closed_at_once(&mut again).await {
                if addr == http_addr {
                    again
                        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .await
                        .unwrap();
                    let mut response = Vec::new();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        again.read_to_end(&mut response),
                    )
                    .await;
                    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"));
                }
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{addr}: no place given back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    shutdown.trigger();
}

/// Issue 10, item 8: an HTTP facade closes a connection that sits idle (HTTP/1.1 keep-alive or
/// HTTP/2) once nothing has been in flight for its idle bound, but never one whose request is
/// still being answered.
#[tokio::test]
async fn idle_http_connections_are_closed_busy_ones_are_not() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let idle = Duration::from_secs(1);
    let router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                "slow"
            }),
        );
    let (_, addr, shutdown) = plain_service_with(
        router,
        writ_server::ConnectionLimits {
            http_idle: idle,
            ..writ_server::ConnectionLimits::default()
        },
    )
    .await;

    /// Reads until the server closes the connection; how long that took (bounded).
    async fn until_closed(stream: &mut TcpStream) -> (Duration, Vec<u8>) {
        let started = Instant::now();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), seen),
                Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
                Err(_) => panic!("the connection was not closed within 10 s"),
            }
        }
    }

    // HTTP/1.1 keep-alive: answered, then closed about `idle` later.
    let mut h1 = TcpStream::connect(addr).await.unwrap();
    h1.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (after, seen) = until_closed(&mut h1).await;
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    assert!(after >= idle / 2 && after < idle * 4, "{after:?}");

    // HTTP/2 (prior knowledge): the preface and SETTINGS, then nothing.
    let mut h2 = TcpStream::connect(addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // (Shut down gracefully: GOAWAY, then a PING this raw client never answers, so the close
    // comes at the 5 s bound after it.)
    let (after, _) = until_closed(&mut h2).await;
    assert!(after < idle + Duration::from_secs(8), "{after:?}");

    // A request in flight longer than the idle bound is answered.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (_, seen) = until_closed(&mut slow).await;
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        seen.starts_with("HTTP/1.1 200") && seen.ends_with("slow"),
        "{seen}"
    );
    shutdown.trigger();
}

/// A service with a gRPC listener and an HTTP facade (plain TCP, so raw frames can be read),
/// its two addresses, and the switch that stops it.
async fn plain_service(
    router: axum::Router,
) -> (
    std::net::SocketAddr,
    std::net::SocketAddr,
    writ_server::Shutdown,
) {
    plain_service_with(router, writ_server::ConnectionLimits::default()).await
}

/// [`plain_service`] with connection limits of its own.
async fn plain_service_with(
    router: axum::Router,
    limits: writ_server::ConnectionLimits,
) -> (
    std::net::SocketAddr,
    std::net::SocketAddr,
    writ_server::Shutdown,
) {
    let (shutdown, signal) = writ_server::Shutdown::new();
    let spec = writ_server::ServiceSpec::new("bounded")
        .http(router)
        .connection_limits(limits);
    let grpc = writ_server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = writ_server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http_addr = writ_server::local_addr(&http).unwrap();
    let running = writ_server::serve(spec, grpc, Some(http), None, signal)
        .await
        .unwrap();
    (running.grpc_addr, http_addr, shutdown)
}

/// SECURITY.md item 37: both listeners of a service announce their HTTP/2 bounds in their
/// SETTINGS (at most 256 concurrent streams per connection, 64 KiB of headers per request), so
/// a client learns them before it sends, and the server refuses a stream past them.
#[tokio::test]
async fn http2_listeners_announce_their_stream_and_header_bounds() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (grpc, http, shutdown) = plain_service(axum::Router::new()).await;
    for addr in [grpc, http] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        // The server's first frame is its SETTINGS: a 9-byte frame header, then 6-byte entries.
        let mut head = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head[3], 0x4, "{addr}: the first frame is SETTINGS");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        let settings: std::collections::HashMap<u16, u32> = body
            .chunks_exact(6)
            .map(|e| {
                (
                    u16::from_be_bytes([e[0], e[1]]),
                    u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
                )
            })
            .collect();
        // SETTINGS_MAX_CONCURRENT_STREAMS (0x3), SETTINGS_MAX_HEADER_LIST_SIZE (0x6).
        assert_eq!(settings.get(&0x3), Some(&256), "{addr}: {settings:?}");
        assert_eq!(
            settings.get(&0x6),
            Some(&writ_server::MAX_HEADER_LIST),
            "{addr}: {settings:?}"
        );
    }
    shutdown.trigger();
}

/// SECURITY.md item 37: on the HTTP facade too, an oversized request on a shared HTTP/2
/// connection costs that request only; the connection goes on serving. (Past 1.25 times the
/// header bound, h2's CONTINUATION-flood defence ends the connection with ENHANCE_YOUR_CALM
/// instead: reading that much to refuse one stream would be the attack.)
#[tokio::test]
async fn an_oversized_header_does_not_tear_down_a_shared_http2_connection() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let (_, http, shutdown) = plain_service(router).await;
    let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let get = |big: Option<String>| {
        let mut r = http::Request::get(format!("http://{http}/"));
        if let Some(v) = big {
            r = r.header("x-big", v);
        }
        r.body(Empty::<axum::body::Bytes>::new()).unwrap()
    };
    // 100 KiB of headers (HPACK's Huffman code sends 'a' in 5 bits: 63 KiB on the wire).
    let huge = send.send_request(get(Some("a".repeat(100 * 1024)))).await;
    assert_eq!(
        huge.map(|r| r.status()).unwrap(),
        http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    for _ in 0..3 {
        send.ready().await.expect("the connection is still up");
        let r = send.send_request(get(None)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            &r.into_body().collect().await.unwrap().to_bytes()[..],
            b"ok"
        );
    }
    shutdown.trigger();
}

/// SECURITY.md item 37: a client that starts a request's headers and never finishes them is cut
/// off after 10 s (HTTP/1.1 header read timeout), not held forever.
#[tokio::test]
async fn unfinished_request_headers_are_cut_off() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let (_, http, shutdown) = plain_service(router).await;
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("still open after 20 s"),
        }
    }
    let after = started.elapsed();
    assert!(
        after >= Duration::from_secs(9) && after < Duration::from_secs(15),
        "{after:?}"
    );
    shutdown.trigger();
}

/// Issue 11: `/readyz` fails (503, naming the failed check and why) while any readiness check
/// fails, and passes once they all do; `/livez` stays up throughout; `/metrics` is OpenMetrics.
#[tokio::test]
async fn readiness_follows_its_checks_and_liveness_stays_up() {
    use std::sync::atomic::{AtomicBool, Ordering};

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let url = format!("http://{addr}{path}");
        tokio::task::spawn_blocking(move || writ_tests::http_get(&url))
            .await
            .unwrap()
    }

    let database_up = std::sync::Arc::new(AtomicBool::new(false));
    let readiness = writ_server::ops::Readiness::default();
    readiness.add("always", || async { Ok(()) });
    {
        let up = database_up.clone();
        readiness.add("database", move || {
            let up = up.load(Ordering::SeqCst);
            async move {
                if up {
                    Ok(())
                } else {
                    Err("unreachable".to_owned())
                }
            }
        });
    }
    let (shutdown, signal) = writ_server::Shutdown::new();
    let listener = writ_server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = writ_server::local_addr(&listener).unwrap();
    tokio::spawn(writ_server::ops::serve_ops(listener, readiness, signal));

    let (status, body) = get(addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (503, "database: unreachable\n"));
    assert_eq!(get(addr, "/livez").await.0, 200);
    database_up.store(true, Ordering::SeqCst);
    assert_eq!(get(addr, "/readyz").await.0, 200);
    let (status, metrics) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    shutdown.trigger();
}
