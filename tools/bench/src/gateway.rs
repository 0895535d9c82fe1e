//! The gateway check (issue 13): what a gateway pays per request to trade a reference token for
//! its JWT.
//!
//! - CPU per check in the engine (`AuthorizationServer::gateway_check`), sequential on one
//!   thread, measured by the thread's own CPU clock (`/proc/thread-self/schedstat`): a cached
//!   reference token (the same one again), and a fresh one each time (opened and verified: a
//!   pool of distinct references, each checked once).
//! - Over the network, as nginx asks it: `GET /check` over HTTPS (keep-alive HTTP/1.1, one
//!   connection per request in flight), cached and fresh, at the run's concurrency and at one
//!   in flight (latency).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use writ_oauth::{Client, FormatChoice, GatewayNeeds, IssuedFormat, TokenRequest};

use crate::{Cli, Outcome, Server, drive};

/// Distinct reference tokens the fresh variants take one at a time.
const POOL: usize = 20_000;
/// Checks per engine-level figure.
const ENGINE_CHECKS: usize = 100_000;
const NEEDS: GatewayNeeds<'static> = GatewayNeeds {
    audience: "orders",
    scope: "orders.read",
};

/// This thread's CPU time so far (nanoseconds), from the scheduler's own accounting.
fn thread_cpu_ns() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    stat.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("/proc/thread-self/schedstat")
}

/// The engine-level figures (as notes) and the HTTP rows.
pub fn run(
    cli: &Cli,
    load: &tokio::runtime::Runtime,
) -> anyhow::Result<(Vec<Outcome>, Vec<String>)> {
    let server = Server::start(true)?;
    let (id, secret) = server.client(Client {
        client_id: "shop".into(),
        grant_types: vec!["client_credentials".into()],
        scope: "orders.read".into(),
        audience: vec!["orders".into()],
        token_formats: vec![IssuedFormat::Reference],
        default_token_format: Some(IssuedFormat::Reference),
        ..Client::default()
    })?;
    let engine = server.engine.clone();
    let pool: Vec<String> = server.runtime.block_on(async {
        let mut pool = Vec::with_capacity(POOL + 1);
        for _ in 0..=POOL {
            let r = engine
                .token(TokenRequest {
                    grant_type: "client_credentials".into(),
                    client_id: id.clone(),
                    client_secret: secret.clone(),
                    token_format: FormatChoice::Reference,
                    ..TokenRequest::default()
                })
                .await?;
            pool.push(r.access_token);
        }
        anyhow::Ok(pool)
    })?;
    let reference_len = pool[0].len();

    // The engine alone, on this thread: `block_on` polls the future here, and nothing the check
    // does leaves the thread (the store is sled, read in place; no Biscuit).
    let mut notes = Vec::new();
    let cached = &pool[0];
    let (cached_ns, fresh_ns) = server.runtime.block_on(async {
        engine.gateway_check(cached, NEEDS).await?;
        let start = thread_cpu_ns()?;
        for _ in 0..ENGINE_CHECKS {
            engine.gateway_check(cached, NEEDS).await?;
        }
        let cached_ns = thread_cpu_ns()? - start;
        let fresh = &pool[1..];
        let start = thread_cpu_ns()?;
        for token in fresh {
            engine.gateway_check(token, NEEDS).await?;
        }
        let fresh_ns = thread_cpu_ns()? - start;
        anyhow::Ok((
            cached_ns as f64 / ENGINE_CHECKS as f64 / 1000.0,
            fresh_ns as f64 / fresh.len() as f64 / 1000.0,
        ))
    })?;
    notes.push(format!(
        "gateway_check CPU per check, one thread: cached reference {cached_ns:.1} µs ({ENGINE_CHECKS} checks), fresh reference {fresh_ns:.1} µs ({POOL} distinct; a reference is {reference_len} bytes)"
    ));

    // Over HTTPS, as a gateway asks.
    let (addr, ca) = {
        let platform = server.platform()?;
        let authz = platform
            .authz
            .as_ref()
            .context("the authorization server")?;
        let (_, http) = authz.gateway_addrs.context("the gateway check listens")?;
        (http, platform.peer_ca.clone().context("TLS is on")?)
    };
    let tls = writ_tls::client_config(&ca, &[b"http/1.1"])?;
    let pool = Arc::new(pool);
    let mut out = Vec::new();
    for in_flight in [cli.concurrency, 1] {
        let mut cli = cli.clone();
        cli.concurrency = in_flight;
        for fresh in [false, true] {
            // Fresh references come from a pool larger than the cache holds, in turn.
            let name = format!(
                "gateway check over HTTPS, {} reference, {in_flight} in flight",
                if fresh { "fresh" } else { "cached" }
            );
            let (pool, tls, cli) = (pool.clone(), tls.clone(), cli.clone());
            let outcome = load.block_on(async move {
                let mut conns = Vec::with_capacity(in_flight);
                for _ in 0..in_flight {
                    conns.push(tokio::sync::Mutex::new(open(addr, tls.clone()).await?));
                }
                let conns = Arc::new(conns);
                let next = Arc::new(AtomicUsize::new(1));
                anyhow::Ok(
                    drive(&cli, &name, move |worker| {
                        let conns = conns.clone();
                        let token = if fresh {
                            let i = next.fetch_add(1, Ordering::Relaxed) % (pool.len() - 1);
                            pool[1 + i].clone()
                        } else {
                            pool[0].clone()
                        };
                        async move {
                            let mut conn = conns[worker].lock().await;
                            check(&mut conn, addr, &token).await.unwrap_or(false)
                        }
                    })
                    .await,
                )
            })?;
            out.push(outcome);
        }
    }
    Ok((out, notes))
}

pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub(crate) async fn open(
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One check, as nginx's subrequest makes it; true if the JWT came back.
async fn check(
    sender: &mut Sender,
    addr: std::net::SocketAddr,
    token: &str,
) -> anyhow::Result<bool> {
    let request = http::Request::builder()
        .method(http::Method::GET)
        .uri("/check?audience=orders&scope=orders.read")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))?;
    let response =
        tokio::time::timeout(Duration::from_secs(10), sender.send_request(request)).await??;
    let ok = response.status() == http::StatusCode::OK
        && response
            .headers()
            .get(http::header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes().starts_with(b"Bearer ey"));
    response.into_body().collect().await?;
    Ok(ok)
}
