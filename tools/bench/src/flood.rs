//! A flood of bad passwords (credential stuffing from one source) against the authorization
//! server, and what it does to another client's `client_credentials` latency: without the
//! brute-force protection (no throttle, every password checked at once: as before issue 10)
//! and with it (throttled per source, username and client; argon2 bounded), side by side.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tonic::transport::{Channel, Endpoint};
use writ_oauth::Client;
use writ_proto::authz::TokenRequest;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;

use crate::{Cli, Outcome, Server, Services, cc_request, drive};

/// Flooding requests in flight.
const FLOOD: usize = 32;

/// Channels from `local` (a loopback address of its own, so the server tells the sources apart).
async fn channels_from(url: &str, local: [u8; 4], n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let e = Endpoint::from_shared(url.to_owned())?
            .tcp_nodelay(true)
            .local_address(Some(std::net::IpAddr::from(local)));
        out.push(e.connect().await?);
    }
    Ok(out)
}

pub fn run(
    cli: &Cli,
    load: &tokio::runtime::Runtime,
) -> anyhow::Result<(Vec<Outcome>, Vec<String>)> {
    let mut outcomes = Vec::new();
    let mut notes = Vec::new();
    for protected in [false, true] {
        let server = Server::start_with(false, Services::Authz, |config| {
            if let Some(authz) = config.authz.as_mut()
                && !protected
            {
                let e = &mut authz.engine;
                e.throttle.free_failures = u32::MAX;
                e.throttle.free_failures_per_source = u32::MAX;
                e.max_concurrent_password_checks = 1 << 16;
                e.max_waiting_password_checks = usize::MAX / 2;
            }
        })?;
        let (gateway, gateway_secret) = server.client(Client {
            client_id: "gateway".into(),
            grant_types: vec!["password".into()],
            scope: "orders.read".into(),
            audience: vec!["orders".into()],
            ..Client::default()
        })?;
        let (id, secret) = server.cc_client("bench", "inventory.read", "inventory")?;
        let label = if protected {
            "with the protection"
        } else {
            "without the protection"
        };
        let (quiet, flooded, flood_stats) = load.block_on(async {
            let legit = Arc::new(channels_from(&server.url, [127, 0, 0, 2], cli.connections).await?);
            let attacker = channels_from(&server.url, [127, 0, 0, 1], 4).await?;
            let request = cc_request(&id, &secret, "inventory.read");
            let call = {
                let (legit, request) = (legit.clone(), request.clone());
                move |worker: usize| {
                    let mut client =
                        AuthorizationServiceClient::new(legit[worker % legit.len()].clone());
                    let request = request.clone();
                    async move { client.token(request).await.is_ok() }
                }
            };
            let quiet = drive(
                cli,
                &format!("client_credentials from another source, quiet ({label})"),
                call.clone(),
            )
            .await;
            let stop = Arc::new(AtomicBool::new(false));
            let sent = Arc::new(AtomicU64::new(0));
            let mut flood = Vec::new();
            for n in 0..FLOOD {
                let mut client = AuthorizationServiceClient::new(attacker[n % attacker.len()].clone());
                let (stop, sent) = (stop.clone(), sent.clone());
                let (gateway, gateway_secret) = (gateway.clone(), gateway_secret.clone());
                flood.push(tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let _ = client
                            .token(TokenRequest {
                                grant_type: "password".into(),
                                client_id: gateway.clone(),
                                client_secret: gateway_secret.clone(),
                                username: format!("user-{n}-{i}"),
                                password: "guess".into(),
                                ..TokenRequest::default()
                            })
                            .await;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            let started = std::time::Instant::now();
            let flooded = drive(
                cli,
                &format!("client_credentials from another source, during a flood of bad passwords ({label})"),
                call,
            )
            .await;
            stop.store(true, Ordering::Relaxed);
            for f in flood {
                let _ = f.await;
            }
            let rate = sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
            anyhow::Ok((quiet, flooded, rate))
        })?;
        notes.push(format!(
            "password flood {label}: {FLOOD} in flight from 127.0.0.1, {flood_stats:.0} bad passwords answered per second"
        ));
        outcomes.push(quiet);
        outcomes.push(flooded);
    }
    Ok((outcomes, notes))
}
