//! Two example services guarded by Writ, on both sides.
//!
//! `inventory` (audience `inventory`) reserves stock; `orders` (audience `orders`) places an
//! order and reserves its stock at inventory on behalf of its caller: it exchanges the caller's
//! token at the STS for one naming inventory, so inventory sees the original subject with
//! orders recorded as the actor (`act`). Both install [`writ_guard::Guard`] as a tower layer,
//! built in a few lines ([`guard_for`]).

pub mod walkthrough;

/// The example services' generated code (`proto/writ/demo/v1/demo.proto`, not part of Writ's
/// contract).
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("writ.demo.v1");

    /// The encoded `FileDescriptorSet`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("demo_descriptor");
}

use std::collections::HashMap;

use parking_lot::Mutex;
use pb::inventory_service_client::InventoryServiceClient;
use pb::inventory_service_server::{InventoryService, InventoryServiceServer};
use pb::orders_service_server::{OrdersService, OrdersServiceServer};
use pb::{
    GetStockRequest, GetStockResponse, PlaceOrderRequest, PlaceOrderResponse, ReserveRequest,
    ReserveResponse,
};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tower::Layer;
use writ_guard::{ClientCredentials, Exchanger, Guard, GuardUpkeep, MethodPolicy, Principal, Rule};
use writ_server::{ServerError, ServiceSpec, ShutdownSignal};
use writ_tls::TlsMaterial;

pub const INVENTORY: &str = "inventory";
pub const ORDERS: &str = "orders";
pub const SCOPE_RESERVE: &str = "inventory.reserve";
pub const SCOPE_READ: &str = "inventory.read";
pub const SCOPE_ORDER: &str = "orders.write";

/// Inventory's rules: reserving and reading need their scopes; nothing else is open.
pub fn inventory_policy() -> MethodPolicy {
    type Service = InventoryServiceServer<Inventory>;
    MethodPolicy::new()
        .method_of::<Service>("Reserve", Rule::scopes(&[SCOPE_RESERVE]))
        .method_of::<Service>("GetStock", Rule::scopes(&[SCOPE_READ]))
}

/// Orders' rules.
pub fn orders_policy() -> MethodPolicy {
    MethodPolicy::new()
        .method_of::<OrdersServiceServer<Orders>>("PlaceOrder", Rule::scopes(&[SCOPE_ORDER]))
}

#[derive(Debug, Default)]
pub struct Inventory {
    stock: Mutex<HashMap<String, i64>>,
    next: Mutex<u64>,
}

#[tonic::async_trait]
impl InventoryService for Inventory {
    async fn reserve(
        &self,
        request: Request<ReserveRequest>,
    ) -> Result<Response<ReserveResponse>, Status> {
        let principal = Principal::of(&request)
            .cloned()
            .ok_or_else(|| Status::internal("the guard attached no principal"))?;
        let r = request.into_inner();
        if r.sku.is_empty() || r.quantity <= 0 {
            return Err(Status::invalid_argument("a sku and a positive quantity"));
        }
        {
            let mut stock = self.stock.lock();
            let left = stock.entry(r.sku.clone()).or_insert(1_000);
            if *left < i64::from(r.quantity) {
                return Err(Status::failed_precondition("not enough stock"));
            }
            *left -= i64::from(r.quantity);
        }
        let id = {
            let mut next = self.next.lock();
            *next += 1;
            *next
        };
        Ok(Response::new(ReserveResponse {
            reservation_id: format!("r-{id}"),
            actors: principal
                .actors()
                .iter()
                .map(|a| a.client_id.clone().unwrap_or_else(|| a.sub.clone()))
                .collect(),
            subject: principal.subject,
        }))
    }

    async fn get_stock(
        &self,
        request: Request<GetStockRequest>,
    ) -> Result<Response<GetStockResponse>, Status> {
        let sku = request.into_inner().sku;
        let available = self.stock.lock().get(&sku).copied().unwrap_or(1_000);
        Ok(Response::new(GetStockResponse { sku, available }))
    }
}

#[derive(Debug)]
pub struct Orders {
    exchanger: Exchanger,
    inventory: Channel,
    next: Mutex<u64>,
}

impl Orders {
    /// `inventory` reaches the inventory service; `exchanger` trades callers' tokens at the STS.
    pub fn new(exchanger: Exchanger, inventory: Channel) -> Self {
        Orders {
            exchanger,
            inventory,
            next: Mutex::new(0),
        }
    }
}

#[tonic::async_trait]
impl OrdersService for Orders {
    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<PlaceOrderResponse>, Status> {
        // The caller's token, narrowed to inventory's audience and the one scope needed there.
        let token = self
            .exchanger
            .for_request(&request, INVENTORY, SCOPE_RESERVE)
            .await?;
        let order = request.into_inner();
        let mut call = Request::new(ReserveRequest {
            sku: order.sku,
            quantity: order.quantity,
        });
        call.metadata_mut()
            .insert("authorization", writ_client::bearer_value(&token)?);
        let reservation = InventoryServiceClient::new(self.inventory.clone())
            .reserve(call)
            .await?
            .into_inner();
        let id = {
            let mut next = self.next.lock();
            *next += 1;
            *next
        };
        Ok(Response::new(PlaceOrderResponse {
            order_id: format!("o-{id}"),
            reservation: Some(reservation),
        }))
    }
}

/// A running example service.
pub type Running = writ_server::Running;

/// Serves one example service behind `guard` on `listener`, with health checking and
/// reflection, through Writ's own service skeleton.
pub async fn serve<S>(
    service: S,
    guard: Guard,
    listener: TcpListener,
    tls: Option<&TlsMaterial>,
    shutdown: ShutdownSignal,
) -> Result<Running, ServerError>
where
    S: tonic::server::NamedService
        + tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let spec = ServiceSpec::new(S::NAME)
        .descriptors(pb::FILE_DESCRIPTOR_SET)
        .grpc(guard.layer().layer(service));
    writ_server::serve(spec, listener, None, tls, shutdown).await
}

/// Whom inventory saw, for printing.
pub fn describe(reservation: &ReserveResponse) -> String {
    format!(
        "reservation {} for subject {} via {}",
        reservation.reservation_id,
        reservation.subject,
        if reservation.actors.is_empty() {
            "no actor".to_owned()
        } else {
            reservation.actors.join(" <- ")
        }
    )
}

pub use writ_guard;

/// Where the Writ platform is, as the example services see it.
#[derive(Debug, Clone)]
pub struct Platform {
    pub authz: Channel,
    pub sts: Channel,
    pub revocation: Channel,
}

/// Both example services, running.
#[derive(Debug)]
pub struct Demo {
    pub inventory: Running,
    pub orders: Running,
    pub inventory_guard: Guard,
    pub orders_guard: Guard,
    /// What keeps each guard current (as separate processes would each have).
    pub upkeep: Vec<GuardUpkeep>,
}

/// A guard for `audience`: trusting the authorization server and the STS, following the
/// revocation feed with the service's own client, enforcing `policy`.
pub async fn guard_for(
    platform: &Platform,
    audience: &str,
    policy: MethodPolicy,
    credentials: &ClientCredentials,
) -> anyhow::Result<(Guard, GuardUpkeep)> {
    Ok(Guard::builder(audience)
        .authorization_server(platform.authz.clone())
        .sts(platform.sts.clone())
        .revocation_feed(platform.revocation.clone(), credentials.clone())
        .policy(policy)
        .build()
        .await?)
}

/// Starts inventory and orders on the given listeners (plaintext: they are examples on
/// loopback), each with its own guard, orders exchanging its callers' tokens at the STS.
pub async fn start(
    platform: &Platform,
    inventory: (&ClientCredentials, TcpListener),
    orders: (&ClientCredentials, TcpListener),
    shutdown: ShutdownSignal,
) -> anyhow::Result<Demo> {
    let (inventory_guard, u1) =
        guard_for(platform, INVENTORY, inventory_policy(), inventory.0).await?;
    let (orders_guard, u2) = guard_for(platform, ORDERS, orders_policy(), orders.0).await?;
    let inventory_running = serve(
        InventoryServiceServer::new(Inventory::default()),
        inventory_guard.clone(),
        inventory.1,
        None,
        shutdown.clone(),
    )
    .await?;
    let exchanger = Exchanger::new(platform.sts.clone(), orders.0.clone());
    let to_inventory =
        writ_server::endpoint(&format!("http://{}", inventory_running.grpc_addr), None)?
            .connect_lazy();
    let orders_running = serve(
        OrdersServiceServer::new(Orders::new(exchanger, to_inventory)),
        orders_guard.clone(),
        orders.1,
        None,
        shutdown,
    )
    .await?;
    Ok(Demo {
        inventory: inventory_running,
        orders: orders_running,
        inventory_guard,
        orders_guard,
        upkeep: vec![u1, u2],
    })
}
