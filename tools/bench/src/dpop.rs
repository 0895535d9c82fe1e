//! DPoP-bound issuance (issue 13): `client_credentials` at the HTTP token endpoint with a DPoP
//! proof (ES256, then EdDSA, signed by the load generator per request, as a client must: a
//! proof is good once) beside the same request without one, alternating on one TLS server, two
//! rounds.
//! Keep-alive HTTP/1.1, one connection per request in flight, `client_secret_basic`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use writ_token::{Algorithm, ProofClaimsOut, SigningKey, sign_proof};

use crate::gateway::{Sender, open};
use crate::{Cli, Outcome, Server, drive};

pub fn run(cli: &Cli, load: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Outcome>> {
    let server = Server::start(true)?;
    let (id, secret) = server.cc_client("bench", "inventory.read", "inventory")?;
    let (addr, ca, issuer) = {
        let platform = server.platform()?;
        let authz = platform
            .authz
            .as_ref()
            .context("the authorization server")?;
        (
            authz.http_addr,
            platform.peer_ca.clone().context("TLS is on")?,
            authz.issuer.clone(),
        )
    };
    let tls = writ_tls::client_config(&ca, &[b"http/1.1"])?;
    let basic = {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    };
    let keys = [
        Arc::new(SigningKey::generate(Algorithm::ES256, "bench-es256")?),
        Arc::new(SigningKey::generate(Algorithm::EdDSA, "bench-eddsa")?),
    ];
    let htu = Arc::new(format!("{issuer}/oauth2/token"));
    let mut out = Vec::new();
    for round in 1..=2 {
        for key in [None, Some(keys[0].clone()), Some(keys[1].clone())] {
            let bound = key.is_some();
            let name = format!(
                "client_credentials over HTTPS, {} (round {round})",
                match &key {
                    Some(k) => format!("DPoP-bound, an {} proof per request", k.alg()),
                    None => "bearer".to_owned(),
                }
            );
            let (tls, basic, htu, cli) = (tls.clone(), basic.clone(), htu.clone(), cli.clone());
            let outcome = load.block_on(async move {
                let mut conns = Vec::with_capacity(cli.concurrency);
                for _ in 0..cli.concurrency {
                    conns.push(tokio::sync::Mutex::new(open(addr, tls.clone()).await?));
                }
                let conns = Arc::new(conns);
                anyhow::Ok(
                    drive(&cli, &name, move |worker| {
                        let conns = conns.clone();
                        let proof = key.as_ref().map(|key| {
                            sign_proof(
                                key,
                                &ProofClaimsOut {
                                    htm: "POST",
                                    htu: &htu,
                                    iat: writ_token::system_clock().now(),
                                    access_token: None,
                                    nonce: None,
                                },
                            )
                        });
                        let basic = basic.clone();
                        async move {
                            let mut conn = conns[worker].lock().await;
                            token(&mut conn, addr, &basic, proof.as_deref(), bound)
                                .await
                                .unwrap_or(false)
                        }
                    })
                    .await,
                )
            })?;
            out.push(outcome);
        }
    }
    Ok(out)
}

/// One token request; true if a token of the expected type came back.
async fn token(
    sender: &mut Sender,
    addr: std::net::SocketAddr,
    basic: &str,
    proof: Option<&str>,
    bound: bool,
) -> anyhow::Result<bool> {
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri("/oauth2/token")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::AUTHORIZATION, basic)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    if let Some(p) = proof {
        request = request.header("dpop", p);
    }
    let request = request.body(Full::new(Bytes::from_static(
        b"grant_type=client_credentials",
    )))?;
    let response =
        tokio::time::timeout(Duration::from_secs(10), sender.send_request(request)).await??;
    let ok = response.status() == http::StatusCode::OK;
    let body = response.into_body().collect().await?.to_bytes();
    let expected: &[u8] = if bound {
        b"\"token_type\":\"DPoP\""
    } else {
        b"\"token_type\":\"Bearer\""
    };
    Ok(ok && body.windows(expected.len()).any(|w| w == expected))
}
