//! One service skeleton: serving gRPC (and an HTTP facade) with TLS, health, reflection,
//! periodic tasks and shutdown is written once here; each service only contributes what is its
//! own ([`ServiceSpec`]): its gRPC services, its routes, its tasks.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use writ_tls::TlsMaterial;

use crate::{ServerError, ShutdownSignal};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A task run every `period` until shutdown (pruning, syncing).
struct Periodic {
    what: &'static str,
    period: Duration,
    run: Box<dyn Fn() -> BoxFuture + Send + Sync>,
}

/// What a service contributes to the skeleton.
pub struct ServiceSpec {
    name: &'static str,
    routes: Routes,
    grpc_names: Vec<&'static str>,
    descriptors: Vec<&'static [u8]>,
    http: Option<axum::Router>,
    periodic: Vec<Periodic>,
    tasks: Vec<BoxFuture>,
    limits: crate::ConnectionLimits,
    client_certificates: bool,
}

impl std::fmt::Debug for ServiceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSpec")
            .field("name", &self.name)
            .field("grpc", &self.grpc_names)
            .field("http", &self.http.is_some())
            .finish_non_exhaustive()
    }
}

impl ServiceSpec {
    /// `name` says what it is in logs ("authorization server").
    pub fn new(name: &'static str) -> Self {
        ServiceSpec {
            name,
            routes: Routes::default(),
            grpc_names: Vec::new(),
            descriptors: vec![writ_proto::FILE_DESCRIPTOR_SET],
            http: None,
            periodic: Vec::new(),
            tasks: Vec::new(),
            limits: crate::ConnectionLimits::default(),
            client_certificates: false,
        }
    }

    /// A gRPC service this port serves: routed, reported serving by health checking, and
    /// listed by reflection (from the descriptors of Writ's protos, and any added with
    /// [`ServiceSpec::descriptors`]).
    pub fn grpc<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.routes = self.routes.add_service(service);
        self.grpc_names.push(S::NAME);
        self
    }

    /// An encoded `FileDescriptorSet` describing services added with [`ServiceSpec::grpc`] that
    /// are not Writ's own (an example's).
    pub fn descriptors(mut self, set: &'static [u8]) -> Self {
        self.descriptors.push(set);
        self
    }

    /// The HTTP facade, served on its own listener.
    pub fn http(mut self, router: axum::Router) -> Self {
        self.http = Some(router);
        self
    }

    /// Runs `run` every `period` (the first time one period after start) until shutdown.
    /// Bounds on open connections (each listener's): per source address and in all.
    pub fn connection_limits(mut self, limits: crate::ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn every<F, Fut>(mut self, what: &'static str, period: Duration, run: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.periodic.push(Periodic {
            what,
            period,
            run: Box::new(move || Box::pin(run())),
        });
        self
    }

    /// A task of the service's own that runs until it ends (it is given the shutdown signal
    /// itself if it must stop with the service).
    pub fn task(mut self, task: impl Future<Output = ()> + Send + 'static) -> Self {
        self.tasks.push(Box::pin(task));
        self
    }

    /// With TLS, the gRPC port asks clients for a certificate (requiring none, taking any the
    /// client proves it holds: `writ_tls::server_config_asking_client_certificates`), which
    /// handlers read as `tonic::Request::peer_certs` (RFC 8705 client authentication and
    /// certificate-bound tokens).
    pub fn client_certificates(mut self) -> Self {
        self.client_certificates = true;
        self
    }

    /// The gRPC services this port serves.
    pub fn grpc_names(&self) -> &[&'static str] {
        &self.grpc_names
    }
}

/// A running service: where it listens, and its tasks.
#[derive(Debug)]
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits until every task has stopped (after shutdown).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The services grpc.health.v1 and server reflection (v1 and v1alpha) list besides a port's own.
const STANDARD_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Serves `spec` on `grpc` (and its HTTP facade on `http`), inside TLS when `tls` is given,
/// until `shutdown`: health (`grpc.health.v1`) reports each of its services serving, server
/// reflection (`v1` and `v1alpha`: many tools still speak only the latter) lists exactly them.
pub async fn serve(
    spec: ServiceSpec,
    grpc: TcpListener,
    http: Option<TcpListener>,
    tls: Option<&TlsMaterial>,
    shutdown: ShutdownSignal,
) -> Result<Running, ServerError> {
    let grpc_addr = crate::local_addr(&grpc)?;
    let http_addr = http.as_ref().map(crate::local_addr).transpose()?;
    let name = spec.name;

    let (reporter, health) = tonic_health::server::health_reporter();
    for service in spec.grpc_names.iter().chain([&""]) {
        reporter
            .set_service_status(*service, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = |b: tonic_reflection::server::Builder<'static>| {
        let b = spec.descriptors.iter().fold(
            b.register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |b, set| b.register_encoded_file_descriptor_set(set),
        );
        spec.grpc_names
            .iter()
            .chain(&STANDARD_SERVICES)
            .fold(b, |b, n| b.with_service_name(*n))
    };
    let v1 = reflection(tonic_reflection::server::Builder::configure()).build_v1()?;
    let v1alpha = reflection(tonic_reflection::server::Builder::configure()).build_v1alpha()?;
    let routes = spec
        .routes
        .add_service(health)
        .add_service(v1)
        .add_service(v1alpha);
    let routes = tonic::service::Routes::from(crate::traced(routes.into_axum_router()));
    // With client certificates, TLS is this server's own (tonic's takes only certificates
    // issued by a CA it is given); else tonic's.
    let own_tls = match tls {
        Some(m) if spec.client_certificates => Some(tokio_rustls::TlsAcceptor::from(
            writ_tls::server_config_asking_client_certificates(m, &[b"h2"])?,
        )),
        _ => None,
    };
    let router = crate::grpc_server(if own_tls.is_some() { None } else { tls })?.add_routes(routes);
    let grpc_shutdown = shutdown.clone();
    let connections = crate::connections::Connections::new(spec.limits);
    let incoming = futures::StreamExt::filter_map(crate::incoming(grpc), move |accepted| {
        let connections = connections.clone();
        async move {
            match accepted {
                Ok(stream) => {
                    let peer = stream.peer_addr().ok()?;
                    let slot = connections.admit(peer)?;
                    Some(Ok::<_, std::io::Error>(crate::connections::Admitted::new(
                        stream, slot,
                    )))
                }
                Err(e) => Some(Err(e)),
            }
        }
    });
    let mut tasks = vec![tokio::spawn(async move {
        let served = match own_tls {
            Some(acceptor) => {
                let incoming = crate::connections::tls_handshakes(incoming, acceptor);
                router
                    .serve_with_incoming_shutdown(Box::pin(incoming), grpc_shutdown.wait())
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(Box::pin(incoming), grpc_shutdown.wait())
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, service = name, "gRPC server stopped");
        }
    })];

    if let (Some(listener), Some(router)) = (http, spec.http) {
        let http_tls = match tls {
            Some(m) => Some(writ_tls::server_config(m, &[b"h2", b"http/1.1"])?),
            None => None,
        };
        tasks.push(tokio::spawn(crate::serve_http(
            listener,
            router,
            http_tls,
            spec.limits,
            shutdown.clone(),
        )));
    }

    for p in spec.periodic {
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let stop = stop.wait();
            tokio::pin!(stop);
            let mut tick = tokio::time::interval(p.period);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tick.tick() => {
                        tracing::trace!(service = name, task = p.what, "periodic task");
                        (p.run)().await
                    }
                }
            }
        }));
    }
    tasks.extend(spec.tasks.into_iter().map(tokio::spawn));

    tracing::info!(service = name, %grpc_addr, http_addr = ?http_addr, tls = tls.is_some(), "listening");
    Ok(Running {
        grpc_addr,
        http_addr,
        tasks,
    })
}
