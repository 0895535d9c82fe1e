//! The STS in a [`TestServer`]'s platform, wired as `writ up` wires it (the authorization
//! server's directory and keys and the revocation log in-process), or as `writ serve sts` does
//! (the feed followed over loopback gRPC).

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;
use tonic::transport::Channel;
use writ::platform::{StsSettings, StsWiring};
use writ_exchange::{Config, TokenExchange, TrustedIssuer};
use writ_proto::sts::security_token_service_client::SecurityTokenServiceClient;
use writ_proto::sts::{ExchangeRequest, ExchangeResponse};
use writ_revocation_client::{RevocationSet, WatchConfig};
use writ_token::{SharedClock, TokenVerifier, VerifierConfig};
use writ_vocabulary::token_type;

use crate::{TestServer, connect, eventually, http_client};

/// How the test STS is set up.
pub struct StsOptions {
    /// External issuers trusted besides the authorization server and the STS itself.
    pub issuers: Vec<TrustedIssuer>,
    pub config: Box<dyn Fn(&mut Config) + Send>,
    pub max_staleness: Duration,
    /// Whether the authorization server's own revocation index is consulted too (as under
    /// `writ up`); without it only the revocation log is.
    pub local_index: bool,
    /// Wire the STS as `writ serve sts` does, as if in its own process: clients and policies
    /// over the authorization server's AdminService (with the admin credential), the feed
    /// watched with a client_credentials token, no in-process index.
    pub remote: bool,
    /// When the STS rotates its keys.
    pub key_rotation: writ_sts::KeyRotation,
}

impl Default for StsOptions {
    fn default() -> Self {
        StsOptions {
            issuers: Vec::new(),
            config: Box::new(|_| {}),
            max_staleness: writ_revocation_client::DEFAULT_MAX_STALENESS,
            local_index: true,
            remote: false,
            key_rotation: writ_sts::KeyRotation::default(),
        }
    }
}

/// The STS, running in the test server's platform on ephemeral loopback ports.
pub struct TestSts {
    pub grpc_url: String,
    pub http_url: String,
    /// Its `iss`.
    pub issuer: String,
    pub ca_pem: Option<String>,
    pub engine: Arc<TokenExchange>,
    /// The revocation set it keeps from the feed (`None` beside the revocation log, which it
    /// reads directly).
    pub revocations: Option<Arc<RevocationSet>>,
    clock: SharedClock,
}

impl TestServer {
    pub async fn start_sts(&mut self) -> TestSts {
        self.start_sts_with(StsOptions::default()).await
    }

    /// Adds the STS to the platform, as `writ up` starts it (or, with `remote`, as
    /// `writ serve sts` wires it).
    pub async fn start_sts_with(&mut self, opts: StsOptions) -> TestSts {
        let mut settings = StsSettings {
            trusted_issuers: opts.issuers,
            max_feed_staleness: opts.max_staleness,
            wiring: StsWiring::InProcess {
                consult_authz_index: opts.local_index,
            },
            watch: WatchConfig {
                backoff_min: Duration::from_millis(20),
                backoff_max: Duration::from_millis(200),
                ..WatchConfig::default()
            },
            key_rotation: opts.key_rotation,
            ..StsSettings::default()
        };
        (opts.config)(&mut settings.exchange);
        if opts.remote {
            // The STS's own client: the feed, and the narrow admin scopes it needs (never the
            // master admin credential).
            use writ_vocabulary::names::*;
            let (id, secret) = self
                .service_client(
                    "sts-peer",
                    &format!(
                        "{REVOCATION_WATCH_SCOPE} {ADMIN_AUTHENTICATE_CLIENT_SCOPE} {ADMIN_READ_SCOPE}"
                    ),
                    &[REVOCATION_AUDIENCE, ADMIN_AUDIENCE],
                )
                .await;
            settings.wiring = StsWiring::Remote {
                client: writ_client::ClientCredentials::new(id, secret),
            };
        }
        let clock = self.platform.clock().clone();
        let running = self.platform.start_sts(settings).await.unwrap();
        let (engine, revocations) = (running.engine.clone(), running.revocations.clone());
        let (grpc_addr, http_addr) = (running.grpc_addr, running.http_addr);
        let sts = TestSts {
            issuer: engine.config().issuer.clone(),
            engine,
            revocations: revocations.clone(),
            grpc_url: self.platform.url(grpc_addr),
            http_url: self.platform.url(http_addr),
            ca_pem: self.ca_pem.clone(),
            clock,
        };
        // Exchanges fail closed until the feed has synced once.
        if let Some(set) = &revocations {
            eventually(Duration::from_secs(10), "the STS's feed syncs", || {
                set.staleness().is_some()
            })
            .await;
        }
        sts
    }
}

impl TestSts {
    pub async fn channel(&self) -> Channel {
        connect(&self.grpc_url, self.ca_pem.as_deref()).await
    }

    pub async fn client(&self) -> SecurityTokenServiceClient<Channel> {
        SecurityTokenServiceClient::new(self.channel().await)
    }

    /// An Exchange call over gRPC.
    pub async fn exchange(&self, req: ExchangeRequest) -> Result<ExchangeResponse, Status> {
        self.client()
            .await
            .exchange(req)
            .await
            .map(|r| r.into_inner())
    }

    /// A verifier for `audience` trusting the STS's published keys (fetched over gRPC) and
    /// nothing else.
    pub async fn verifier(&self, audience: &str) -> TokenVerifier {
        let jwks = self
            .client()
            .await
            .get_jwks(writ_proto::sts::GetJwksRequest {})
            .await
            .unwrap()
            .into_inner();
        let keys = writ_proto::convert::PublishedKeys::from(jwks)
            .key_set()
            .unwrap();
        TokenVerifier::new(
            VerifierConfig::new(vec![self.issuer.clone()], Some(audience.into())),
            keys,
            self.clock.clone(),
        )
    }

    pub fn http(&self) -> http_client::HttpClient {
        http_client::HttpClient::new(&self.http_url, self.ca_pem.as_deref())
    }
}

/// An exchange request from client `id` (secret `secret`) of `subject` (its type told by its
/// shape: a JWT or a Biscuit), for `audience`.
pub fn exchange_request(
    id: &str,
    secret: &str,
    subject: &str,
    audience: &[&str],
) -> ExchangeRequest {
    let subject_token_type = match writ_token::TokenFormat::detect(subject) {
        writ_token::TokenFormat::Jwt => token_type::JWT,
        writ_token::TokenFormat::Biscuit => token_type::BISCUIT,
    };
    ExchangeRequest {
        grant_type: writ_vocabulary::grant_type::TOKEN_EXCHANGE.into(),
        client_id: id.into(),
        client_secret: secret.into(),
        audience: audience.iter().map(|s| (*s).to_owned()).collect(),
        subject_token: subject.into(),
        subject_token_type: subject_token_type.into(),
        ..Default::default()
    }
}

/// An external issuer's JWK Set served over HTTPS on a loopback port, under a development CA
/// generated in a directory of the test's; counts the fetches it answers. What it serves can be
/// replaced (a key rotation). Stops when dropped.
pub struct JwksServer {
    /// `https://127.0.0.1:<port>/jwks.json`.
    pub url: String,
    /// The CA file to trust for it.
    pub ca_path: std::path::PathBuf,
    body: Arc<std::sync::Mutex<String>>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    /// Serves `body` (with the CA and certificate in `dir`).
    pub async fn start(dir: &std::path::Path, body: &str) -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let tls = writ_tls::ensure_dev_pki(dir, &[]).unwrap();
        let acceptor =
            tokio_rustls::TlsAcceptor::from(writ_tls::server_config(&tls, &[b"http/1.1"]).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://127.0.0.1:{}/jwks.json",
            listener.local_addr().unwrap().port()
        );
        let body = Arc::new(std::sync::Mutex::new(body.to_owned()));
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, counted) = (body.clone(), fetches.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, served, counted) =
                    (acceptor.clone(), served.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |_req| {
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let body = served.lock().unwrap().clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(hyper::body::Bytes::from(body)),
                            ))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        JwksServer {
            url,
            ca_path: dir.join(writ_tls::CA_CERT_FILE),
            body,
            fetches,
            task,
        }
    }

    /// Serves `body` from now on.
    pub fn serve(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_owned();
    }

    /// How many requests it answered.
    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The CA to trust for it, PEM.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.ca_path).unwrap()
    }
}

/// A JWK Set document publishing `keys`.
pub fn jwks_of(keys: &[&writ_token::SigningKey]) -> String {
    serde_json::to_string(&writ_token::JwkSet {
        keys: keys.iter().map(|k| k.verification_key().to_jwk()).collect(),
    })
    .unwrap()
}
