//! Server plumbing shared by every Writ service: the one service skeleton ([`ServiceSpec`],
//! [`serve`]: gRPC with TLS and sane limits, health checking, server reflection v1 and v1alpha,
//! the HTTP facade, periodic tasks, shutdown), HTTP/1.1 and HTTP/2 serving over rustls, the
//! OAuth form parsing both facades share ([`form`]), and client endpoints.

mod connections;
pub mod form;
pub mod logging;
pub mod ops;

pub use connections::ConnectionLimits;
mod service;

pub use service::{Running, ServiceSpec, serve};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use writ_tls::TlsMaterial;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("TLS setup failed: {0}")]
    Tls(#[from] writ_tls::TlsError),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("an https:// peer needs a CA certificate to trust")]
    MissingCa,
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Tells servers to stop. Dropping it stops them too.
#[derive(Debug)]
pub struct Shutdown(watch::Sender<bool>);

/// Resolves when shutdown is asked for.
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (Shutdown, ShutdownSignal) {
        let (tx, rx) = watch::channel(false);
        (Shutdown(tx), ShutdownSignal(rx))
    }

    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.0.subscribe())
    }
}

impl ShutdownSignal {
    pub async fn wait(mut self) {
        // Either a `true` was sent or the sender is gone: both mean stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Largest gRPC message a Writ service decodes. Token requests are small; this bounds memory.
pub const MAX_GRPC_MESSAGE: usize = 256 * 1024;

/// A tonic server with TLS (when `tls` is given), keepalives and per-connection limits.
/// Largest header block a gRPC request may carry, in bytes.
pub const MAX_HEADER_LIST: u32 = 64 * 1024;

pub fn grpc_server(tls: Option<&TlsMaterial>) -> Result<Server, ServerError> {
    let mut builder = Server::builder()
        .concurrency_limit_per_connection(1024)
        // Streams open at once on one connection, and the header block a request may carry
        // (a bearer token included): past it the stream is refused, not the connection.
        .max_concurrent_streams(Some(256))
        .http2_max_header_list_size(Some(MAX_HEADER_LIST))
        .timeout(Duration::from_secs(30))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_nodelay(true);
    if let Some(m) = tls {
        let identity = Identity::from_pem(&m.cert_pem, &m.key_pem);
        // A client that never finishes its handshake holds a connection slot 10 s at most.
        builder = builder.tls_config(
            ServerTlsConfig::new()
                .identity(identity)
                .timeout(crate::connections::TLS_HANDSHAKE_TIMEOUT),
        )?;
    }
    Ok(builder)
}

/// The accepted connections of `listener`, with Nagle's algorithm off and TCP keepalives on.
/// (`serve_with_incoming` ignores the builder's socket options: without this, small gRPC
/// responses wait on delayed ACKs, some 40 ms each.)
pub fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)))
}

/// A client endpoint for another Writ service: `https://` URLs trust exactly `ca_pem` (the
/// development CA, or the deployment's), with connect and request timeouts.
pub fn endpoint(
    url: &str,
    ca_pem: Option<&str>,
) -> Result<tonic::transport::Endpoint, ServerError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let mut endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let ca = ca_pem.ok_or(ServerError::MissingCa)?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))?;
    }
    Ok(endpoint)
}

/// The address `listener` is bound to.
pub fn local_addr(listener: &TcpListener) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// Binds a TCP listener, mapping the error to one that names the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Longest an HTTP request may take, from its headers to its response (its body included).
pub const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The URI a request was made to, as this server received it (over HTTP/2, a gRPC call's
/// included: scheme, `:authority` and path), in every request's extensions: what a DPoP proof
/// over gRPC names.
#[derive(Debug, Clone)]
pub struct RequestUri(pub http::Uri);

/// Runs every request of `router` in its [`writ_telemetry::server_span`]: the caller's trace
/// continues here, and every log line of the request carries its trace id. Each request's
/// [`RequestUri`] goes in its extensions.
pub fn traced(router: axum::Router) -> axum::Router {
    async fn in_span(
        mut request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        use tracing::Instrument as _;
        let uri = RequestUri(request.uri().clone());
        request.extensions_mut().insert(uri);
        let span = writ_telemetry::server_span(request.uri().path(), request.headers());
        next.run(request).instrument(span).await
    }
    router.layer(axum::middleware::from_fn(in_span))
}

/// The peer of an HTTP connection, in every request's extensions (`axum::Extension<Peer>`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The leaf TLS client certificate (DER) of an HTTP connection, in its requests' extensions
/// (`axum::Extension<ClientCertificate>`) when the client presented one: only a listener
/// whose TLS asks for one (`writ_tls::server_config_asking_client_certificates`) gets any.
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub Arc<[u8]>);

/// Serves `router` on `listener` over HTTP/1.1 and HTTP/2, inside TLS when `tls` is given, until
/// `shutdown`; open connections then finish their requests.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    shutdown: ShutdownSignal,
) {
    let connections = connections::Connections::new(limits);
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    // A request (its body included) must be complete and answered within the bound: a client
    // that sends its body slowly, or never, holds nothing for longer.
    let router = router.layer(
        tower::ServiceBuilder::new()
            .layer(axum::error_handling::HandleErrorLayer::new(
                |_: tower::BoxError| async {
                    (
                        http::StatusCode::REQUEST_TIMEOUT,
                        [(http::header::CACHE_CONTROL, "no-store")],
                        axum::Json(serde_json::json!({
                            "error": "invalid_request",
                            "error_description": "the request was not complete within the time allowed",
                        })),
                    )
                },
            ))
            .layer(tower::timeout::TimeoutLayer::new(HTTP_REQUEST_TIMEOUT)),
    );
    let router = traced(router);
    let stop = shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = connections.admit(peer) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = connections::Activity::new();
        let router = router.clone().layer(axum::Extension(Peer(peer)));
        let tracked = {
            let activity = activity.clone();
            move |inner: axum::Router| {
                TowerToHyperService::new(connections::Tracked { inner, activity })
            }
        };
        let acceptor = acceptor.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            // The same stream and header bounds as the gRPC listeners, and pings so a peer
            // that vanished is noticed.
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(256)
                .max_header_list_size(MAX_HEADER_LIST)
                .keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10));
            let ended = match acceptor {
                Some(acceptor) => {
                    // A client that never finishes its handshake must not hold a task forever.
                    let tls =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await;
                    match tls {
                        Ok(Ok(tls)) => {
                            let certificate = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| ClientCertificate(Arc::from(c.as_ref())));
                            let router = match certificate {
                                Some(c) => router.layer(axum::Extension(c)),
                                None => router,
                            };
                            let io = TokioIo::new(tls);
                            let service = tracked(router);
                            drive(&builder, io, service, &activity, limits.http_idle, stop).await
                        }
                        _ => Some("TLS handshake failed".into()),
                    }
                }
                None => {
                    let io = TokioIo::new(stream);
                    let service = tracked(router);
                    drive(&builder, io, service, &activity, limits.http_idle, stop).await
                }
            };
            if let Some(why) = ended {
                tracing::debug!(%peer, %why, "HTTP connection ended");
            }
        });
    }
    // Open connections finish what they are answering (bounded), then close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while connections.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves one HTTP connection until it ends. When it has had nothing in flight for `idle`, or
/// the server stops, it is shut down gracefully (HTTP/1.1 closes between requests, HTTP/2 sends
/// GOAWAY and finishes its streams), then given at most 5 s more.
async fn drive<I>(
    builder: &hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    io: I,
    service: hyper_util::service::TowerToHyperService<connections::Tracked<axum::Router>>,
    activity: &connections::Activity,
    idle: Duration,
    stop: ShutdownSignal,
) -> Option<String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let stop = stop.wait();
    tokio::pin!(stop);
    let why = tokio::select! {
        r = conn.as_mut() => return r.err().map(|e| e.to_string()),
        _ = &mut stop => "stopping",
        _ = activity.idle_for(idle) => "idle",
    };
    conn.as_mut().graceful_shutdown();
    match tokio::time::timeout(Duration::from_secs(5), conn).await {
        Ok(Ok(())) => Some(why.into()),
        Ok(Err(e)) => Some(format!("{why}: {e}")),
        Err(_) => Some(format!("{why}: cut off")),
    }
}
