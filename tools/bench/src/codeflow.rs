//! The browserless authorization code flow over HTTPS: Writ against node `oidc-provider`, with
//! the same load generator, in the same run.
//!
//! Each simulated browser holds a signed-in session (opened before the clock runs) and one
//! keep-alive HTTP/1.1 connection over TLS; a flow is what a relying party and a browser do
//! when the person is already signed in: `GET` the authorization endpoint with the session
//! cookie and a fresh PKCE challenge (`S256`), read the code from the redirect, then `POST` it to
//! the token endpoint (`client_secret_basic`, the verifier) and read the access and ID tokens.
//! Each server's endpoints come from its discovery document. Passes alternate (Writ, node,
//! Writ, node, ...), each with new sessions, so both see the same machine.
//!
//! node `oidc-provider` runs from `tools/bench/oidc-provider` (its lockfile), installed with
//! `npm ci` beside this binary: one process (its in-memory adapter cannot be shared by a
//! cluster), sign-in and consent answered at once. Both issue the same tokens per flow: a JWT
//! access token (RFC 9068, audience `orders`) and an ID token, signed with Ed25519; the flow
//! checks both are JWTs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use sha2::Digest;
use writ_oauth::ClientType;

use crate::signin::{REDIRECT, web_client};
use crate::{PASSWORD, Server, Services, percentile};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// `codeflow`: passes of each server, alternating.
    #[arg(long, default_value_t = 2)]
    pub codeflow_rounds: usize,
    /// `codeflow`: browsers at once, each with its own session and connection.
    #[arg(long, default_value_t = 16)]
    pub codeflow_browsers: usize,
}

const SCOPE: &str = "openid orders.read";
/// How long one request may take before the run fails.
const REQUEST_BOUND: Duration = Duration::from_secs(10);
/// Sessions each browser takes turns with, so no session comes near the 1,000 grants past which
/// Writ revokes a session's oldest (a cost node does not have): a 10 s pass at 2,000 flows/s
/// over 16 browsers is about 300 codes per session.
const SESSIONS_PER_BROWSER: usize = 4;
/// Redirects followed while opening a session at node `oidc-provider`.
const MAX_REDIRECTS: usize = 10;

/// One server under test, as a relying party and a browser see it.
#[derive(Clone)]
struct Target {
    name: &'static str,
    /// `127.0.0.1:port`.
    authority: String,
    tls: Arc<rustls::ClientConfig>,
    authorize_path: String,
    token_path: String,
    basic: String,
}

/// What the load generator saw in one pass.
pub struct Pass {
    pub flows: u64,
    pub seconds: f64,
    pub p50: Duration,
    pub p99: Duration,
}

pub fn run(
    args: &Args,
    duration: Duration,
    warmup: Duration,
    load: &tokio::runtime::Runtime,
) -> anyhow::Result<Vec<String>> {
    // Writ, as `writ up` wires it (TLS, the durable audit log), in this process.
    let server = Server::start_services(true, Services::All)?;
    let engine = server.engine.clone();
    let platform = server.platform()?;
    let authz = platform.authz.as_ref().context("authz")?;
    let writ_authority = authz.http_addr.to_string();
    let (client_id, secret) = server.client(web_client(ClientType::Confidential))?;
    server
        .runtime
        .block_on(engine.create_user("ada", PASSWORD, "orders.read"))?;
    let writ_tls = writ_tls::client_config(
        server.ca_pem.as_deref().context("TLS is on")?,
        &[b"http/1.1"],
    )?;

    // node oidc-provider, in its own process, with a certificate of its own development CA.
    let node_dir = install_oidc_provider()?;
    let pki = tempfile::tempdir()?;
    let material = writ_tls::ensure_dev_pki(pki.path(), &[])?;
    let node_secret = writ_token::random_secret();
    let node_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut node = NodeProvider::spawn(&node_dir, pki.path(), node_port, &node_secret)?;
    let node_tls = writ_tls::client_config(
        material.ca_pem.as_deref().context("a development CA")?,
        &[b"http/1.1"],
    )?;

    let basic = |id: &str, secret: &str| {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(id),
                enc(secret)
            ))
        )
    };
    let passes = load.block_on(async {
        node.ready(REQUEST_BOUND).await?;
        let writ =
            Target::discover("Writ", writ_authority, writ_tls, basic(&client_id, &secret)).await?;
        let node_target = Target::discover(
            "node oidc-provider",
            format!("127.0.0.1:{node_port}"),
            node_tls,
            basic("web", &node_secret),
        )
        .await?;
        // Writ's consent is given once for the user; each browser signs in through the engine
        // (argon2id, before the clock runs).
        let consent = engine.sign_in("ada", PASSWORD, None, None).await?;
        engine
            .grant_consent(&consent.cookie, authorization_request(&client_id))
            .await?;
        let mut passes = Vec::new();
        for _ in 0..args.codeflow_rounds {
            for target in [&writ, &node_target] {
                let mut browsers = Vec::with_capacity(args.codeflow_browsers);
                for _ in 0..args.codeflow_browsers {
                    let mut conn = Conn::open(target).await?;
                    conn.jars = vec![HashMap::new(); SESSIONS_PER_BROWSER];
                    for turn in 0..SESSIONS_PER_BROWSER {
                        conn.turn = turn;
                        if target.name == "Writ" {
                            let session = engine.sign_in("ada", PASSWORD, None, None).await?;
                            conn.jars[turn].insert("__Host-writ-session".into(), session.cookie);
                        } else {
                            conn.sign_in_by_redirects(target).await?;
                        }
                    }
                    browsers.push(conn);
                }
                passes.push((
                    target.name,
                    measure(target, browsers, warmup, duration).await?,
                ));
            }
        }
        anyhow::Ok(passes)
    })?;
    node.stop();

    let mut notes = vec![format!(
        "the authorization code flow over HTTPS (authorize with a signed-in session → code → \
         token; {} browsers, each a keep-alive connection and a session opened before the clock; \
         {} s per pass after {} s of warm-up, passes alternating):",
        args.codeflow_browsers,
        duration.as_secs(),
        warmup.as_secs()
    )];
    for (name, pass) in &passes {
        notes.push(format!(
            "  {name}: {:.0} flows/s (p50 {:.2} ms, p99 {:.2} ms; {} flows)",
            pass.flows as f64 / pass.seconds,
            pass.p50.as_secs_f64() * 1e3,
            pass.p99.as_secs_f64() * 1e3,
            pass.flows
        ));
    }
    let mean = |who: &str| {
        let rates: Vec<f64> = passes
            .iter()
            .filter(|(n, _)| *n == who)
            .map(|(_, p)| p.flows as f64 / p.seconds)
            .collect();
        rates.iter().sum::<f64>() / rates.len().max(1) as f64
    };
    let (w, n) = (mean("Writ"), mean("node oidc-provider"));
    notes.push(format!(
        "  mean: Writ {w:.0} flows/s, node oidc-provider {n:.0} flows/s: {:.2}×",
        w / n.max(f64::MIN_POSITIVE)
    ));
    Ok(notes)
}

fn authorization_request(client_id: &str) -> writ_oauth::AuthorizationRequest {
    writ_oauth::AuthorizationRequest {
        response_type: "code".into(),
        client_id: client_id.into(),
        redirect_uri: REDIRECT.into(),
        scope: SCOPE.into(),
        // Any: what is consented to is the client and scope.
        code_challenge: base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(b"a consent needs a valid request")),
        code_challenge_method: "S256".into(),
        ..Default::default()
    }
}

/// Runs every browser's flows for `warmup`, then counts them for `duration`.
async fn measure(
    target: &Target,
    browsers: Vec<Conn>,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Pass> {
    let start = Instant::now();
    let from = start + warmup;
    let until = from + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in browsers {
        let target = target.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let began = Instant::now();
                if began >= until {
                    break;
                }
                conn.flow(&target).await?;
                if began >= from {
                    latencies.push(began.elapsed());
                }
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    all.sort();
    Ok(Pass {
        flows: all.len() as u64,
        seconds: duration.as_secs_f64(),
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    })
}

impl Target {
    /// The endpoints from the server's discovery document.
    async fn discover(
        name: &'static str,
        authority: String,
        tls: Arc<rustls::ClientConfig>,
        basic: String,
    ) -> anyhow::Result<Target> {
        let mut target = Target {
            name,
            authority,
            tls,
            authorize_path: String::new(),
            token_path: String::new(),
            basic,
        };
        let mut conn = Conn::open(&target).await?;
        let (status, _, body) = conn
            .send(
                &target,
                http::Method::GET,
                "/.well-known/openid-configuration",
                None,
            )
            .await?;
        anyhow::ensure!(status.is_success(), "{name}'s discovery answered {status}");
        let doc: serde_json::Value = serde_json::from_slice(&body)?;
        let base = format!("https://{}", target.authority);
        let path = |field: &str| -> anyhow::Result<String> {
            let url = doc[field].as_str().context("an endpoint")?;
            url.strip_prefix(&base)
                .map(str::to_owned)
                .with_context(|| format!("{name}'s {field} is elsewhere: {url}"))
        };
        target.authorize_path = path("authorization_endpoint")?;
        target.token_path = path("token_endpoint")?;
        Ok(target)
    }
}

/// A browser (and its relying party) on one keep-alive connection.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// The cookies of each session it takes turns with.
    jars: Vec<HashMap<String, String>>,
    turn: usize,
}

impl Conn {
    async fn open(target: &Target) -> anyhow::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(&target.authority).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
        let stream = tokio_rustls::TlsConnector::from(target.tls.clone())
            .connect(name, tcp)
            .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn {
            sender,
            jars: vec![HashMap::new()],
            turn: 0,
        })
    }

    /// One request with the jar's cookies; the jar takes what the response sets.
    async fn send(
        &mut self,
        target: &Target,
        method: http::Method,
        path: &str,
        form: Option<String>,
    ) -> anyhow::Result<(http::StatusCode, http::HeaderMap, Bytes)> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &target.authority);
        let jar = &mut self.jars[self.turn];
        if !jar.is_empty() {
            let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header(http::header::COOKIE, cookies.join("; "));
        }
        let body = match form {
            Some(form) => {
                request = request
                    .header(
                        http::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .header(http::header::AUTHORIZATION, &target.basic);
                Bytes::from(form)
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(body))?;
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            anyhow::Ok((parts, body.collect().await?.to_bytes()))
        };
        let (parts, body) = tokio::time::timeout(REQUEST_BOUND, exchange)
            .await
            .context("a request took too long")??;
        for value in parts.headers.get_all(http::header::SET_COOKIE) {
            let cookie = cookie::Cookie::parse(value.to_str()?.to_owned())?;
            if cookie.value().is_empty() || cookie.max_age().is_some_and(|a| a.is_zero()) {
                self.jars[self.turn].remove(cookie.name());
            } else {
                self.jars[self.turn].insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
        Ok((parts.status, parts.headers, body))
    }

    /// Opens a session at node `oidc-provider` by following its redirects (its interactions
    /// answer at once) until it sends the browser to the client with a code.
    async fn sign_in_by_redirects(&mut self, target: &Target) -> anyhow::Result<()> {
        let (_, _, mut path) = authorize_url(target);
        let base = format!("https://{}", target.authority);
        for _ in 0..MAX_REDIRECTS {
            let (status, headers, _) = self.send(target, http::Method::GET, &path, None).await?;
            anyhow::ensure!(status.is_redirection(), "{status} while signing in");
            let to = location(&headers)?;
            if to.starts_with(REDIRECT) {
                code_of(&to)?;
                return Ok(());
            }
            path = match to.strip_prefix(&base) {
                Some(rest) => rest.to_owned(),
                None if to.starts_with('/') => to,
                None => anyhow::bail!("sent elsewhere while signing in: {to}"),
            };
        }
        anyhow::bail!("more than {MAX_REDIRECTS} redirects while signing in")
    }

    /// One flow: authorize with the session, then redeem the code.
    async fn flow(&mut self, target: &Target) -> anyhow::Result<()> {
        self.turn = (self.turn + 1) % self.jars.len();
        let (verifier, state, path) = authorize_url(target);
        let (status, headers, _) = self.send(target, http::Method::GET, &path, None).await?;
        anyhow::ensure!(
            status.is_redirection(),
            "{}: authorize answered {status}",
            target.name
        );
        let to = location(&headers)?;
        let (code, returned_state) = code_of(&to)?;
        anyhow::ensure!(returned_state == state, "state did not come back");
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_verifier", &verifier)
            .finish();
        let token_path = target.token_path.clone();
        let (status, _, body) = self
            .send(target, http::Method::POST, &token_path, Some(form))
            .await?;
        anyhow::ensure!(
            status.is_success(),
            "{}: the token endpoint answered {status}: {}",
            target.name,
            String::from_utf8_lossy(&body)
        );
        let tokens: serde_json::Value = serde_json::from_slice(&body)?;
        // Both servers do the same work: two signed JWTs (an RFC 9068 access token, an ID token).
        let jwt = |t: &serde_json::Value| t.as_str().is_some_and(|t| t.split('.').count() == 3);
        anyhow::ensure!(
            jwt(&tokens["access_token"]) && jwt(&tokens["id_token"]),
            "{}: not a JWT access token and an ID token: {tokens}",
            target.name
        );
        Ok(())
    }
}

/// A fresh PKCE verifier and state, and the authorization request's path.
fn authorize_url(target: &Target) -> (String, String, String) {
    let verifier = writ_token::random_secret();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let state = writ_token::random_id();
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", "web")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", SCOPE)
        .append_pair("state", &state)
        .append_pair("nonce", &writ_token::random_id())
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let path = format!("{}?{query}", target.authorize_path);
    (verifier, state, path)
}

fn location(headers: &http::HeaderMap) -> anyhow::Result<String> {
    Ok(headers
        .get(http::header::LOCATION)
        .context("a redirect without a Location")?
        .to_str()?
        .to_owned())
}

/// The code and state of a redirect to the client.
fn code_of(to: &str) -> anyhow::Result<(String, String)> {
    let query = to
        .strip_prefix(REDIRECT)
        .and_then(|q| q.strip_prefix('?'))
        .with_context(|| format!("not a redirect to the client: {to}"))?;
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let code = params
        .get("code")
        .with_context(|| format!("no code: {to}"))?;
    Ok((
        code.clone(),
        params.get("state").cloned().unwrap_or_default(),
    ))
}

/// `tools/bench/oidc-provider`, installed from its lockfile beside this binary (again only
/// when the lockfile changed).
fn install_oidc_provider() -> anyhow::Result<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc-provider");
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("a directory")?.join("oidc-provider");
    std::fs::create_dir_all(&dir)?;
    for f in ["package.json", "package-lock.json", "server.mjs"] {
        std::fs::copy(source.join(f), dir.join(f)).with_context(|| format!("copying {f}"))?;
    }
    let lock = std::fs::read_to_string(source.join("package-lock.json"))?;
    let stamp = dir.join("writ-package-lock.json");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(&lock)
        && dir.join("node_modules/oidc-provider").exists()
    {
        return Ok(dir);
    }
    let status = std::process::Command::new("npm")
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
        ])
        .current_dir(&dir)
        .status()
        .context("npm (Node 20) is needed to run node oidc-provider")?;
    anyhow::ensure!(status.success(), "npm ci failed: {status}");
    std::fs::write(&stamp, lock)?;
    Ok(dir)
}

/// The node process, stopped when dropped.
struct NodeProvider {
    child: std::process::Child,
    port: u16,
}

impl NodeProvider {
    fn spawn(dir: &Path, pki: &Path, port: u16, secret: &str) -> anyhow::Result<NodeProvider> {
        let child = std::process::Command::new("node")
            .arg("server.mjs")
            .current_dir(dir)
            .env("PORT", port.to_string())
            .env("CERT", pki.join(writ_tls::SERVER_CERT_FILE))
            .env("KEY", pki.join(writ_tls::SERVER_KEY_FILE))
            .env("CLIENT_SECRET", secret)
            .env("NODE_ENV", "production")
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("node (20) is needed to run node oidc-provider")?;
        Ok(NodeProvider { child, port })
    }

    /// Waits (bounded) until it accepts connections.
    async fn ready(&mut self, bound: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + bound;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("node oidc-provider exited: {status}");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "node oidc-provider never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProvider {
    fn drop(&mut self) {
        self.stop();
    }
}
