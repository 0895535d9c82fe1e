//! The guard's price on a trivial unary RPC (`InventoryService.GetStock` of the example
//! inventory service), side by side on loopback: no guard; the guard with a repeated token (its
//! cache); the guard verifying every call in full (a fresh token per call: cache off, a pool of
//! distinct tokens); and a per-call RFC 7662 introspection at the authorization server, what an
//! opaque-token design must do. Each variant is the same inventory service on its own port;
//! the authorization server runs on the same server runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};
use writ_demo::Inventory;
use writ_demo::pb::GetStockRequest;
use writ_demo::pb::inventory_service_client::InventoryServiceClient;
use writ_demo::pb::inventory_service_server::InventoryServiceServer;
use writ_guard::{Guard, GuardConfig, Revocations, TrustedIssuer};
use writ_oauth::Client;
use writ_proto::authz::IntrospectRequest;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::revocation::{Checkpoint, WatchResponse, watch_response};
use writ_revocation_client::RevocationSet;

use crate::{Cli, Outcome, Server, channels, drive};

/// Distinct tokens the "fresh" variant cycles through.
const POOL: usize = 2_000;

/// Calls the authorization server's `Introspect` for every request: the opaque-token design.
#[derive(Clone)]
struct Introspect {
    client: AuthorizationServiceClient<Channel>,
    id: String,
    secret: String,
}

impl<S> tower::Layer<S> for Introspect {
    type Service = IntrospectService<S>;
    fn layer(&self, inner: S) -> IntrospectService<S> {
        IntrospectService {
            introspect: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
struct IntrospectService<S> {
    introspect: Introspect,
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for IntrospectService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let i = self.introspect.clone();
        Box::pin(async move {
            let token = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default()
                .to_owned();
            let answer = i
                .client
                .clone()
                .introspect(IntrospectRequest {
                    token,
                    client_id: i.id,
                    client_secret: i.secret,
                    ..Default::default()
                })
                .await;
            let allowed = answer.is_ok_and(|a| {
                let a = a.into_inner();
                a.active
                    && a.aud.iter().any(|x| x == "inventory")
                    && a.scope.split(' ').any(|s| s == "inventory.read")
            });
            if allowed {
                inner.call(request).await
            } else {
                Ok(Status::unauthenticated("inactive").into_http())
            }
        })
    }
}

/// A synced revocation set that stays fresh for the run.
fn feed() -> Revocations {
    let set = Arc::new(RevocationSet::new());
    let _ = set.apply(&WatchResponse {
        event: Some(watch_response::Event::Checkpoint(Checkpoint {
            sequence: 0,
            server_time: None,
        })),
    });
    Revocations::Checked {
        check: Arc::new(writ_revocation_client::RevocationFeed::new(
            set,
            Duration::from_secs(3600),
        )),
        fail_open: false,
    }
}

/// The four variants, at `cli.concurrency` in flight and then at one in flight (latency).
pub fn run(cli: &Cli, load: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Outcome>> {
    let server = Server::start(false)?;
    let (id, secret) = server.client(Client {
        client_id: "inventory".into(),
        grant_types: vec!["client_credentials".into()],
        scope: "inventory.read".into(),
        audience: vec!["inventory".into()],
        may_introspect: true,
        ..Client::default()
    })?;
    let engine = server.engine.clone();
    let mut pool = Vec::with_capacity(POOL);
    for _ in 0..POOL {
        let (jwt, _) = engine.service_token("inventory", "inventory.read")?;
        pool.push(MetadataValue::try_from(format!("Bearer {jwt}"))?);
    }
    let pool = Arc::new(pool);
    let urls = server.runtime.block_on(async {
        let keys = writ_trust::RemoteKeys::connect(
            crate::connect_one(&server.url).await?,
            Duration::from_secs(300),
            Duration::from_secs(1),
        )
        .await?;
        let issuer = TrustedIssuer::new(keys.issuer().to_owned(), Arc::new(keys));
        let guard = |cache: usize| {
            let mut c = GuardConfig::new(
                "inventory",
                vec![issuer.clone()],
                writ_demo::inventory_policy(),
                Arc::new(RevocationSet::new()),
            );
            c.revocations = feed();
            c.cache_capacity = cache;
            Guard::new(c)
        };
        let introspect = Introspect {
            client: AuthorizationServiceClient::new(crate::connect_one(&server.url).await?),
            id,
            secret,
        };
        let mut urls = Vec::new();
        for variant in 0..4 {
            let listener = writ_server::bind("127.0.0.1:0".parse()?).await?;
            urls.push(format!("http://{}", listener.local_addr()?));
            let service = InventoryServiceServer::new(Inventory::default());
            let incoming = writ_server::incoming(listener);
            let mut builder = tonic::transport::Server::builder();
            let signal = server.platform()?.shutdown_signal();
            match variant {
                0 => tokio::spawn(
                    builder
                        .add_service(service)
                        .serve_with_incoming_shutdown(incoming, signal.wait()),
                ),
                1 | 2 => tokio::spawn(
                    builder
                        .layer(guard(if variant == 1 { 100_000 } else { 0 }).layer())
                        .add_service(service)
                        .serve_with_incoming_shutdown(incoming, signal.wait()),
                ),
                _ => tokio::spawn(
                    builder
                        .layer(introspect.clone())
                        .add_service(service)
                        .serve_with_incoming_shutdown(incoming, signal.wait()),
                ),
            };
        }
        anyhow::Ok(urls)
    })?;
    let names = [
        "GetStock, no guard",
        "GetStock, guard, repeated token (cached)",
        "GetStock, guard, fresh token per call (full verification)",
        "GetStock, introspection call per request",
    ];
    let mut out = Vec::new();
    for in_flight in [cli.concurrency, 1] {
        let mut cli = cli.clone();
        cli.concurrency = in_flight;
        if in_flight == 1 {
            cli.connections = 1;
        }
        for (variant, url) in urls.iter().enumerate() {
            let pool = pool.clone();
            let next = Arc::new(AtomicUsize::new(0));
            let name = format!("{}, {in_flight} in flight", names[variant]);
            let outcome = load.block_on(async {
                let chans = Arc::new(channels(url, None, cli.connections).await?);
                anyhow::Ok(
                    drive(&cli, &name, move |worker| {
                        let mut client =
                            InventoryServiceClient::new(chans[worker % chans.len()].clone());
                        let token = if variant == 2 {
                            pool[next.fetch_add(1, Ordering::Relaxed) % pool.len()].clone()
                        } else {
                            pool[0].clone()
                        };
                        let mut request = Request::new(GetStockRequest {
                            sku: "apple".into(),
                        });
                        request.metadata_mut().insert("authorization", token);
                        async move { client.get_stock(request).await.is_ok() }
                    })
                    .await,
                )
            })?;
            out.push(outcome);
        }
    }
    Ok(out)
}
