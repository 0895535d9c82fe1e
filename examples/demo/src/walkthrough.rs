//! The walkthrough `writ-demo` runs (and `tests/it/cli.rs` runs against a real `writ up`).

use std::path::PathBuf;
use std::time::Duration;

use crate::pb::PlaceOrderRequest;
use crate::pb::orders_service_client::OrdersServiceClient;
use crate::{ORDERS, Platform, SCOPE_ORDER, SCOPE_RESERVE};
use anyhow::{Context, bail};
use clap::Parser;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use writ_client::{ClientCredentials, PrivateKeyJwt, StaticBearer};
use writ_proto::admin::admin_service_client::AdminServiceClient;
use writ_proto::admin::{self as pb_admin, ClientType};
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::authz::{RevokeRequest, TokenRequest};

/// Where `writ up` is and where the example services listen (`writ-demo --help`).
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Writ's example services (orders calls inventory) against `writ up`"
)]
pub struct Cli {
    /// `writ up`'s data directory (endpoints.json, ca.pem, the admin credential).
    #[arg(long, env = "WRIT_DATA_DIR", default_value = "writ-data")]
    pub data_dir: PathBuf,
    /// Port of the inventory service (loopback).
    #[arg(long, default_value_t = 7450)]
    pub inventory_port: u16,
    /// Port of the orders service (loopback).
    #[arg(long, default_value_t = 7451)]
    pub orders_port: u16,
    /// Keep serving after the walkthrough, until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
}

type Admin = AdminServiceClient<InterceptedService<Channel, StaticBearer>>;

fn read(dir: &std::path::Path, name: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(dir.join(name)).with_context(|| {
        format!(
            "reading {} (is `writ up` running?)",
            dir.join(name).display()
        )
    })
}

/// A client with a usable secret: created, or its secret rotated if it exists already.
async fn client(admin: &mut Admin, spec: pb_admin::Client) -> anyhow::Result<ClientCredentials> {
    let id = spec.client_id.clone();
    let secret = match admin
        .create_client(pb_admin::CreateClientRequest { client: Some(spec) })
        .await
    {
        Ok(r) => r.into_inner().client_secret,
        Err(s) if s.code() == Code::AlreadyExists => {
            admin
                .rotate_client_secret(pb_admin::RotateClientSecretRequest {
                    client_id: id.clone(),
                    grace_seconds: 0,
                })
                .await?
                .into_inner()
                .client_secret
        }
        Err(s) => return Err(s).context(format!("creating client {id}")),
    };
    Ok(ClientCredentials::new(id, secret))
}

/// A client that holds no secret (`private_key_jwt`): a key pair made now, its public half
/// registered (replacing the keys of an earlier run), its assertions for `issuer`.
async fn keyed_client(
    admin: &mut Admin,
    spec: pb_admin::Client,
    issuer: &str,
) -> anyhow::Result<ClientCredentials> {
    let id = spec.client_id.clone();
    let kid = format!("{id}-{}", &writ_token::random_id()[..8]);
    let key = writ_token::SigningKey::generate(writ_token::Algorithm::EdDSA, kid)?;
    let jwks = serde_json::json!({ "keys": [key.verification_key().to_jwk()] }).to_string();
    let spec = pb_admin::Client {
        token_endpoint_auth_method: "private_key_jwt".into(),
        jwks: jwks.clone(),
        ..spec
    };
    match admin
        .create_client(pb_admin::CreateClientRequest {
            client: Some(spec.clone()),
        })
        .await
    {
        Ok(_) => {}
        Err(s) if s.code() == Code::AlreadyExists => {
            let update = admin
                .update_client(pb_admin::UpdateClientRequest {
                    client: Some(pb_admin::Client {
                        client_id: id.clone(),
                        jwks,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["jwks".into()],
                    }),
                })
                .await;
            // Registered with a secret by an older demo: register it again, with keys.
            if let Err(s) = update {
                if s.code() != Code::InvalidArgument {
                    return Err(s).context(format!("updating client {id}"));
                }
                admin
                    .delete_client(pb_admin::DeleteClientRequest {
                        client_id: id.clone(),
                    })
                    .await?;
                admin
                    .create_client(pb_admin::CreateClientRequest { client: Some(spec) })
                    .await?;
            }
        }
        Err(s) => return Err(s).context(format!("creating client {id}")),
    }
    Ok(ClientCredentials::private_key_jwt(
        id,
        PrivateKeyJwt::new(key, issuer),
    ))
}

fn service(id: &str, grants: &[&str], scope: &str, audience: &[&str]) -> pb_admin::Client {
    pb_admin::Client {
        client_id: id.into(),
        client_type: ClientType::Confidential as i32,
        grant_types: grants.iter().map(|g| (*g).to_owned()).collect(),
        scope: scope.into(),
        audience: audience.iter().map(|a| (*a).to_owned()).collect(),
        ..Default::default()
    }
}

/// The walkthrough against the `writ up` whose data directory `cli` names: registers the
/// clients and the exchange policy, starts both services on loopback, places an order as a
/// caller, revokes the caller's token and checks both services refuse it. An error says which
/// step failed; `Ok` means every step did what it should.
pub async fn run(cli: &Cli) -> anyhow::Result<()> {
    let endpoints: serde_json::Value =
        serde_json::from_str(&read(&cli.data_dir, "endpoints.json")?)?;
    let ca = read(&cli.data_dir, "ca.pem").ok();
    let url = |key: &str| -> anyhow::Result<String> {
        endpoints[key]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("endpoints.json has no {key}"))
    };
    let channel = |u: String| -> anyhow::Result<Channel> {
        Ok(writ_server::endpoint(&u, ca.as_deref())?.connect_lazy())
    };
    let platform = Platform {
        authz: channel(url("authz_grpc")?)?,
        sts: channel(url("sts_grpc")?)?,
        revocation: channel(url("revocation_grpc")?)?,
    };
    let credential = read(&cli.data_dir, "admin.token")?;
    // The admin API has a port of its own.
    let mut admin = AdminServiceClient::with_interceptor(
        channel(url("authz_admin")?)?,
        StaticBearer::new(credential.trim())?,
    );

    // The example's clients: each service watches the revocation feed; orders also exchanges
    // tokens at the STS, which only lets a token's audience exchange it, so each service's
    // client id is its audience. "demo-shop" is the caller.
    let watch = "writ.revocation.watch";
    let inventory = client(
        &mut admin,
        service(
            crate::INVENTORY,
            &["client_credentials"],
            watch,
            &["writ-revocation"],
        ),
    )
    .await?;
    // orders holds no secret at all: it signs its requests with a key of its own.
    let orders = keyed_client(
        &mut admin,
        service(ORDERS, &["client_credentials"], watch, &["writ-revocation"]),
        &url("issuer")?,
    )
    .await?;
    let shop = client(
        &mut admin,
        service(
            "demo-shop",
            &["client_credentials"],
            &format!("{SCOPE_ORDER} {SCOPE_RESERVE}"),
            &[ORDERS],
        ),
    )
    .await?;
    admin
        .create_exchange_policy(pb_admin::CreateExchangePolicyRequest {
            policy: Some(pb_admin::ExchangePolicy {
                policy_id: "demo-orders-to-inventory".into(),
                client_id: orders.client_id.clone(),
                audience: vec![crate::INVENTORY.into()],
                scope: SCOPE_RESERVE.into(),
                ..Default::default()
            }),
        })
        .await
        .or_else(|s| {
            if s.code() == Code::AlreadyExists {
                Ok(tonic::Response::new(Default::default()))
            } else {
                Err(s)
            }
        })
        .context("creating the exchange policy")?;

    let (stop, signal) = writ_server::Shutdown::new();
    let bind = |port: u16| writ_server::bind(([127, 0, 0, 1], port).into());
    let demo = crate::start(
        &platform,
        (&inventory, bind(cli.inventory_port).await?),
        (&orders, bind(cli.orders_port).await?),
        signal,
    )
    .await?;
    println!("inventory listening on http://{}", demo.inventory.grpc_addr);
    println!("orders    listening on http://{}", demo.orders.grpc_addr);
    // The guards need the revocation feed before they let anything through.
    for _ in 0..100 {
        if demo.upkeep.iter().all(|u| u.synced()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut authz = AuthorizationServiceClient::new(platform.authz.clone());
    let token = authz
        .token(TokenRequest {
            grant_type: "client_credentials".into(),
            client_id: shop.client_id.clone(),
            client_secret: shop.client_secret.clone(),
            audience: vec![ORDERS.into()],
            ..Default::default()
        })
        .await?
        .into_inner()
        .access_token;
    let orders_channel =
        writ_server::endpoint(&format!("http://{}", demo.orders.grpc_addr), None)?.connect_lazy();
    let place = |token: String| {
        let channel = orders_channel.clone();
        async move {
            let mut request = tonic::Request::new(PlaceOrderRequest {
                sku: "apple".into(),
                quantity: 2,
            });
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| tonic::Status::internal("header"))?,
            );
            OrdersServiceClient::new(channel).place_order(request).await
        }
    };
    let placed = place(token.clone())
        .await
        .context("placing an order")?
        .into_inner();
    let reservation = placed.reservation.unwrap_or_default();
    println!(
        "order {} placed as {}: inventory made {}",
        placed.order_id,
        shop.client_id,
        crate::describe(&reservation)
    );

    authz
        .revoke(RevokeRequest {
            token: token.clone(),
            client_id: shop.client_id.clone(),
            client_secret: shop.client_secret.clone(),
            ..Default::default()
        })
        .await?;
    let mut refused = None;
    // Bounded: 250 tries 20 ms apart (the feed takes milliseconds; a loaded machine longer).
    for _ in 0..250 {
        match place(token.clone()).await {
            Err(s) => {
                refused = Some(s);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    match refused {
        Some(s) if s.code() == Code::Unauthenticated => {
            println!("token revoked: orders now refuses it ({})", s.message())
        }
        Some(s) => bail!("unexpected refusal after revocation: {s:?}"),
        None => bail!("the revoked token was still accepted after 5 s"),
    }

    if cli.serve {
        println!("serving; Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
    }
    stop.trigger();
    Ok(())
}
