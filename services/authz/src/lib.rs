//! The Writ authorization server: `writ.authz.v1.AuthorizationService` and
//! `writ.admin.v1.AdminService` over gRPC, and the OAuth HTTP facade, all thin transports over
//! the `writ-oauth` engine.

pub mod admin;
pub mod convert;
pub mod grpc;
pub mod http;
pub mod publisher;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use writ_oauth::AuthorizationServer;
use writ_proto::admin::admin_service_server::AdminServiceServer;
use writ_proto::authz::authorization_service_server::AuthorizationServiceServer;
use writ_server::{MAX_GRPC_MESSAGE, ServerError, ShutdownSignal};
use writ_tls::TlsMaterial;

pub use admin::{AdminAuth, AdminGrpc};
pub use grpc::AuthorizationGrpc;

/// How often expired refresh tokens, revocations and grants are pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// The gRPC service names this server reports as serving.
pub const SERVICE_NAMES: [&str; 2] = [
    "writ.authz.v1.AuthorizationService",
    "writ.admin.v1.AdminService",
];

/// A running authorization server.
#[derive(Debug)]
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits until every task of the server has stopped (after shutdown).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Where the authorization server publishes its revocations.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A channel to the revocation service; without one, revocations wait in the outbox.
    pub revocation: Option<tonic::transport::Channel>,
}

/// Starts the gRPC and HTTP servers on the given listeners, with TLS when `tls` is given.
pub async fn start(
    engine: Arc<AuthorizationServer>,
    grpc: TcpListener,
    http: TcpListener,
    tls: Option<&TlsMaterial>,
    options: Options,
    shutdown: ShutdownSignal,
) -> Result<Running, ServerError> {
    let grpc_addr = grpc.local_addr().map_err(|source| ServerError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let http_addr = http.local_addr().map_err(|source| ServerError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;

    let (health, reflection) = writ_server::health_and_reflection(&SERVICE_NAMES).await?;
    let authz = AuthorizationServiceServer::new(AuthorizationGrpc::new(engine.clone()))
        .max_decoding_message_size(MAX_GRPC_MESSAGE);
    let admin = InterceptedService::new(
        AdminServiceServer::new(AdminGrpc::new(engine.clone()))
            .max_decoding_message_size(MAX_GRPC_MESSAGE),
        AdminAuth::new(engine.clone()),
    );
    let router = writ_server::grpc_server(tls)?
        .add_service(health)
        .add_service(reflection)
        .add_service(authz)
        .add_service(admin);
    let grpc_shutdown = shutdown.clone();
    let grpc_task = tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(writ_server::incoming(grpc), grpc_shutdown.wait())
            .await
        {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    });

    let http_tls = match tls {
        Some(m) => Some(writ_tls::server_config(m, &[b"h2", b"http/1.1"])?),
        None => None,
    };
    let http_task = tokio::spawn(writ_server::serve_http(
        http,
        http::router(engine.clone()),
        http_tls,
        shutdown.clone(),
    ));

    let pruner = engine.clone();
    let prune_shutdown = shutdown.clone();
    let prune_task = tokio::spawn(async move {
        let stop = prune_shutdown.wait();
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(PRUNE_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => match pruner.prune_expired().await {
                    Ok(n) => tracing::debug!(removed = n, "pruned expired records"),
                    Err(e) => tracing::warn!(error = %e, "pruning failed"),
                },
            }
        }
    });

    let mut tasks = vec![grpc_task, http_task];
    match options.revocation {
        Some(channel) => tasks.push(tokio::spawn(publisher::run(
            engine.clone(),
            channel,
            shutdown.clone(),
        ))),
        None => tracing::warn!(
            "no revocation service configured: revocations are recorded here and queued, not fanned out"
        ),
    }
    tasks.push(prune_task);

    tracing::info!(%grpc_addr, %http_addr, tls = tls.is_some(), "authorization server listening");
    Ok(Running {
        grpc_addr,
        http_addr,
        tasks,
    })
}
