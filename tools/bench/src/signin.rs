//! Sign-in figures.
//!
//! - Sign-out to refusal: a person signs in, a client redeems its code; then the browser's
//!   `POST /oauth2/logout` (over HTTPS, the real form with its CSRF cookie) is answered, and the
//!   clock runs from that answer until a guard's revocation set (a `Watcher` following the
//!   revocation service, as every guard does) refuses the session's access token. One sign-out
//!   at a time, `--signout-rounds` of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use writ_oauth::{AuthorizationRequest, Authorize, Client, ClientType};
use writ_revocation_client::{RevocationSet, TokenFacts, WatchConfig, Watcher};

use crate::{PASSWORD, Server, Services, percentile};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// `signout`: sign-outs measured, one after the other.
    #[arg(long, default_value_t = 200)]
    pub signout_rounds: usize,
}

pub const REDIRECT: &str = "https://rp.example/callback";

/// The client `web`: the authorization code grant, redirecting to [`REDIRECT`].
pub fn web_client(client_type: ClientType) -> Client {
    Client {
        client_id: "web".into(),
        client_type,
        grant_types: vec!["authorization_code".into()],
        scope: "orders.read".into(),
        audience: vec!["orders".into()],
        redirect_uris: vec![REDIRECT.into()],
        ..Client::default()
    }
}
/// How long a sign-out may take to reach the guard before the run fails.
const BOUND: Duration = Duration::from_secs(5);

pub fn signout(args: &Args, load: &tokio::runtime::Runtime) -> anyhow::Result<Vec<String>> {
    let server = Server::start_services(true, Services::AuthzAndRevocation)?;
    let engine = server.engine.clone();
    let platform = server.platform()?;
    let authz = platform.authz.as_ref().context("authz")?;
    let http_url = platform.url(authz.http_addr);
    let revocation_url = platform.url(
        platform
            .revocation
            .as_ref()
            .context("the revocation service")?
            .grpc_addr,
    );
    let ca = server.ca_pem.clone().context("TLS is on")?;
    server.client(web_client(ClientType::Public))?;
    let (guard_id, guard_secret) = server.cc_client(
        "bench-guard",
        writ_vocabulary::names::REVOCATION_WATCH_SCOPE,
        writ_vocabulary::names::REVOCATION_AUDIENCE,
    )?;
    server
        .runtime
        .block_on(engine.create_user("ada", PASSWORD, "orders.read"))?;

    let latencies = load.block_on(async move {
        // The guard's side: a revocation set kept by a watcher of the revocation service.
        let watch_token = engine
            .token(writ_oauth::TokenRequest {
                grant_type: "client_credentials".into(),
                client_id: guard_id,
                client_secret: guard_secret,
                ..Default::default()
            })
            .await?;
        let channel = writ_server::endpoint(&revocation_url, Some(&ca))?.connect_lazy();
        let set = Arc::new(RevocationSet::new());
        let _watcher = Watcher::spawn(
            channel,
            Arc::new(writ_client::StaticBearer::new(&watch_token.access_token)?),
            set.clone(),
            WatchConfig::default(),
        );
        let tls = writ_tls::client_config(&ca, &[b"http/1.1"])?;
        let mut latencies = Vec::with_capacity(args.signout_rounds);
        for round in 0..args.signout_rounds {
            let session = engine.sign_in("ada", PASSWORD, None, None).await?;
            let challenge = {
                use base64::Engine;
                use sha2::Digest;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(
                    b"a-verifier-of-at-least-43-characters-for-pkce",
                ))
            };
            let request = AuthorizationRequest {
                response_type: "code".into(),
                client_id: "web".into(),
                redirect_uri: REDIRECT.into(),
                scope: "orders.read".into(),
                code_challenge: challenge,
                code_challenge_method: "S256".into(),
                ..Default::default()
            };
            if round == 0 {
                engine
                    .grant_consent(&session.cookie, request.clone())
                    .await?;
            }
            let answer = engine.authorize(request, Some(&session.cookie)).await;
            let Authorize::Redirect(to) = answer else {
                anyhow::bail!("no code: {answer:?}");
            };
            let code = to
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("code="))
                .context("a code")?
                .to_owned();
            let tokens = engine
                .token(writ_oauth::TokenRequest {
                    grant_type: "authorization_code".into(),
                    client_id: "web".into(),
                    code,
                    redirect_uri: REDIRECT.into(),
                    code_verifier: "a-verifier-of-at-least-43-characters-for-pkce".into(),
                    ..Default::default()
                })
                .await?;
            let verified = engine.verifier().verify(&tokens.access_token, None)?;
            let facts = TokenFacts::of(&verified);
            anyhow::ensure!(set.check(&facts).is_none(), "revoked before the sign-out");

            // The browser signs out: the form, its CSRF cookie, the session cookie.
            let csrf = writ_token::random_secret();
            let cookie = format!(
                "__Host-writ-session={}; __Host-writ-csrf={csrf}",
                session.cookie
            );
            let body = format!("csrf={csrf}&client_id=&post_logout_redirect_uri=&state=");
            let status = post(&http_url, &tls, "/oauth2/logout", &cookie, body).await?;
            let answered = Instant::now();
            anyhow::ensure!(status.is_success(), "logout answered {status}");
            loop {
                if set.check(&facts).is_some() {
                    latencies.push(answered.elapsed());
                    break;
                }
                anyhow::ensure!(answered.elapsed() < BOUND, "the guard never refused");
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
        }
        anyhow::Ok(latencies)
    })?;
    let mut sorted = latencies;
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(vec![format!(
        "sign-out to refusal ({} sign-outs, one at a time; from the logout response to a guard's \
         revocation set refusing the session's access token): p50 {:.2} ms, p99 {:.2} ms, max \
         {:.2} ms",
        sorted.len(),
        ms(percentile(&sorted, 0.50)),
        ms(percentile(&sorted, 0.99)),
        ms(sorted.last().copied().unwrap_or_default()),
    )])
}

/// One HTTP/1.1 POST of a form over TLS; the status.
async fn post(
    base: &str,
    tls: &Arc<rustls::ClientConfig>,
    path: &str,
    cookie: &str,
    body: String,
) -> anyhow::Result<http::StatusCode> {
    let authority = base.split("://").nth(1).context("a URL")?.to_owned();
    let tcp = tokio::net::TcpStream::connect(&authority).await?;
    tcp.set_nodelay(true)?;
    let host = authority.rsplit_once(':').context("a port")?.0.to_owned();
    let name = rustls::pki_types::ServerName::try_from(host)?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = http::Request::post(path)
        .header(http::header::HOST, &authority)
        .header(http::header::COOKIE, cookie)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}
