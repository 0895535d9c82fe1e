//! The Writ authorization server: `writ.authz.v1.AuthorizationService` and
//! `writ.admin.v1.AdminService` over gRPC, and the OAuth HTTP facade, all thin transports over
//! the `writ-oauth` engine.

pub mod admin;
pub mod backchannel;
pub mod client_keys;
pub mod convert;
pub mod gateway;
pub mod grpc;
pub mod http;
pub mod publisher;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use writ_oauth::AuthorizationServer;
use writ_proto::admin::admin_service_server::AdminServiceServer;
use writ_proto::authz::authorization_service_server::AuthorizationServiceServer;
pub use writ_server::Running;
use writ_server::{MAX_GRPC_MESSAGE, ServerError, ServiceSpec, ShutdownSignal};
use writ_tls::TlsMaterial;

pub use admin::{AdminAuth, AdminGrpc, permission};
pub use client_keys::HttpsClientKeys;
pub use grpc::AuthorizationGrpc;

/// How often expired refresh tokens, revocations and grants are pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(600);
/// How often a replica looks for signing keys and key revocations another replica made: the
/// bound on a rotation elsewhere reaching this one's JWKS and verifier.
pub const SHARED_STATE_INTERVAL: Duration = Duration::from_secs(5);

/// Where the authorization server publishes its revocations.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A channel to the revocation service; without one, revocations wait in the outbox.
    pub revocation: Option<tonic::transport::Channel>,
}

/// What the authorization server serves on its public port: `AuthorizationService` over gRPC,
/// the OAuth HTTP facade, the pruning of expired records, and the outbox publisher feeding the
/// revocation service. The admin API is served apart ([`admin_spec`]).
pub fn spec(
    engine: Arc<AuthorizationServer>,
    options: Options,
    shutdown: ShutdownSignal,
) -> ServiceSpec {
    let (pruner, refresher) = (engine.clone(), engine.clone());
    let spec = ServiceSpec::new("authorization server")
        // RFC 8705 over gRPC: clients may authenticate with, and bind tokens to, certificates.
        .client_certificates()
        .grpc(
            AuthorizationServiceServer::new(AuthorizationGrpc::new(engine.clone()))
                .max_decoding_message_size(MAX_GRPC_MESSAGE),
        )
        .http(http::router(engine.clone()))
        .every("prune", PRUNE_INTERVAL, move || {
            let engine = pruner.clone();
            async move {
                match engine.prune_expired().await {
                    Ok(n) => tracing::debug!(removed = n, "pruned expired records"),
                    Err(e) => tracing::warn!(error = %e, "pruning failed"),
                }
            }
        })
        .every("shared state", SHARED_STATE_INTERVAL, move || {
            let engine = refresher.clone();
            async move {
                if let Err(e) = engine.refresh_shared_state().await {
                    tracing::warn!(error = %e, "reading the shared signing keys failed");
                }
            }
        });
    match options.revocation {
        Some(channel) => spec.task(publisher::run(engine, channel, shutdown)),
        None => {
            tracing::warn!(
                "no revocation service configured: revocations are recorded here and queued, not fanned out"
            );
            spec
        }
    }
}

/// The admin API (`AdminService`, behind the admin credential), on a listener of its own: it is
/// not on the port clients and services reach, and is bound to loopback unless told otherwise.
pub fn admin_spec(engine: Arc<AuthorizationServer>) -> ServiceSpec {
    ServiceSpec::new("admin API").grpc(AdminAuth::new(
        engine.clone(),
        AdminServiceServer::new(AdminGrpc::new(engine)).max_decoding_message_size(MAX_GRPC_MESSAGE),
    ))
}

/// The authorization server, serving: its public port, its admin port and, when given
/// listeners, the gateway check's.
#[derive(Debug)]
pub struct Served {
    pub public: Running,
    pub admin: Running,
    pub gateway: Option<Running>,
    /// The mTLS endpoint aliases (RFC 8705 section 5), when served.
    pub mtls: Option<tokio::task::JoinHandle<()>>,
}

/// The gateway check's listeners: gRPC (Envoy's `ext_authz`) and HTTP (nginx's `auth_request`).
#[derive(Debug)]
pub struct GatewayListeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
}

/// Listeners besides the public and admin ports: the gateway check's, and the mTLS endpoint
/// aliases' (served only with TLS).
#[derive(Debug, Default)]
pub struct ExtraListeners {
    pub gateway: Option<GatewayListeners>,
    pub mtls: Option<TcpListener>,
}

/// Serves the authorization server on the given listeners (gRPC, HTTP, admin, the gateway
/// check's), with TLS when `tls` is given, until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    engine: Arc<AuthorizationServer>,
    grpc: TcpListener,
    http: TcpListener,
    admin: TcpListener,
    extra: ExtraListeners,
    tls: Option<&TlsMaterial>,
    options: Options,
    shutdown: ShutdownSignal,
) -> Result<Served, ServerError> {
    let ExtraListeners { gateway, mtls } = extra;
    let public = writ_server::serve(
        spec(engine.clone(), options, shutdown.clone()),
        grpc,
        Some(http),
        tls,
        shutdown.clone(),
    )
    .await?;
    let mtls = match (mtls, tls) {
        (Some(listener), Some(material)) => Some(tokio::spawn(writ_server::serve_http(
            listener,
            http::mtls_router(engine.clone()),
            Some(writ_tls::server_config_asking_client_certificates(
                material,
                &[b"h2", b"http/1.1"],
            )?),
            // The public port's bounds (its own count of connections).
            writ_server::ConnectionLimits::default(),
            shutdown.clone(),
        ))),
        _ => None,
    };
    let gateway = match gateway {
        Some(l) => Some(
            writ_server::serve(
                gateway::spec(engine.clone()),
                l.grpc,
                Some(l.http),
                tls,
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let admin = writ_server::serve(admin_spec(engine), admin, None, tls, shutdown).await?;
    Ok(Served {
        public,
        admin,
        gateway,
        mtls,
    })
}
