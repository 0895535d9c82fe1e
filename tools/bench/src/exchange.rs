//! The STS under load: `SecurityTokenService.Exchange` over gRPC on loopback, wired as `writ up`
//! wires it. The authorization server, the revocation service and the STS (`writ_sts::start`,
//! with its own on-disk store) share the server runtime; the STS authenticates callers and reads
//! their policies from the in-process engine, follows the real revocation feed and consults the
//! engine's revocation index. Each call is a full exchange: client authentication, policy
//! lookup, verification of the subject JWT, revocation checks, and a new token signed with the
//! STS's keys (an EdDSA JWT, or a Biscuit). Every response is checked.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use writ_exchange::ExchangePolicy;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::sts::ExchangeRequest;
use writ_proto::sts::security_token_service_client::SecurityTokenServiceClient;
use writ_vocabulary::grant_type::TOKEN_EXCHANGE as GRANT_TYPE;
use writ_vocabulary::token_type;

use crate::{Cli, Outcome, Server, Services, cc_request, channels, connect_one, drive};

/// JWT → JWT, then JWT → Biscuit.
pub fn run(cli: &Cli, load: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Outcome>> {
    run_named(cli, load, false, "")
}

/// JWT → JWT (and JWT → Biscuit unless `only_jwt`), each name ending in `suffix`.
pub fn run_named(
    cli: &Cli,
    load: &tokio::runtime::Runtime,
    only_jwt: bool,
    suffix: &str,
) -> anyhow::Result<Vec<Outcome>> {
    let server = Server::start_services(false, Services::All)?;
    let (frontend, frontend_secret) =
        server.cc_client("frontend", "inventory.read inventory.write", "orders")?;
    let (orders, orders_secret) =
        server.cc_client("orders", "", writ_vocabulary::names::STS_AUDIENCE)?;
    let engine = server.engine.clone();
    let sts = server.platform()?.sts.as_ref().context("the STS runs")?;
    let sts_url = server.platform()?.url(sts.grpc_addr);
    let revocations = sts.revocations.clone();
    server.runtime.block_on(async {
        engine
            .create_exchange_policy(ExchangePolicy {
                policy_id: "orders-to-inventory".into(),
                client_id: orders.clone(),
                audience: vec!["inventory".into()],
                ..ExchangePolicy::default()
            })
            .await?;
        // Following a feed, exchanges are refused until it has synced once (beside the log,
        // the STS reads it directly).
        if let Some(revocations) = revocations {
            for _ in 0..500 {
                if revocations.staleness().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::ensure!(
                revocations.staleness().is_some(),
                "the STS's revocation feed did not sync within 5 s"
            );
        }
        anyhow::Ok(())
    })?;

    let mut outcomes = Vec::new();
    let kinds = [
        ("token exchange over gRPC, JWT → JWT", token_type::JWT),
        (
            "token exchange over gRPC, JWT → Biscuit",
            token_type::BISCUIT,
        ),
    ];
    for (name, requested) in kinds.into_iter().take(if only_jwt { 1 } else { 2 }) {
        let name = format!("{name}{suffix}");
        let outcome = load.block_on(async {
            // One subject token per worker, as from distinct callers.
            let mut authz = AuthorizationServiceClient::new(connect_one(&server.url).await?);
            let mut requests = Vec::new();
            for _ in 0..cli.concurrency {
                let subject = authz
                    .token(cc_request(
                        &frontend,
                        &frontend_secret,
                        "inventory.read inventory.write",
                    ))
                    .await?
                    .into_inner()
                    .access_token;
                requests.push(ExchangeRequest {
                    grant_type: GRANT_TYPE.into(),
                    client_id: orders.clone(),
                    client_secret: orders_secret.clone(),
                    audience: vec!["inventory".into()],
                    scope: "inventory.read".into(),
                    requested_token_type: requested.into(),
                    subject_token: subject,
                    subject_token_type: token_type::ACCESS_TOKEN.into(),
                    ..ExchangeRequest::default()
                });
            }
            let requests = Arc::new(requests);
            let chans = Arc::new(channels(&sts_url, None, cli.connections).await?);
            anyhow::Ok(
                drive(cli, &name, move |worker| {
                    let mut sts =
                        SecurityTokenServiceClient::new(chans[worker % chans.len()].clone());
                    let request = requests[worker % requests.len()].clone();
                    async move {
                        sts.exchange(request).await.is_ok_and(|r| {
                            let r = r.into_inner();
                            r.issued_token_type == requested && !r.access_token.is_empty()
                        })
                    }
                })
                .await,
            )
        })?;
        outcomes.push(outcome);
    }
    drop(server);
    Ok(outcomes)
}
