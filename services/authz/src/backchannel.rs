//! OpenID Connect Back-Channel Logout, the delivering side: each logout token the engine made
//! for a session that ended is POSTed (`logout_token=...`, form-encoded) to its client's
//! registered `backchannel_logout_uri`, off the request path.
//!
//! Bounded: at most [`MAX_IN_FLIGHT`] deliveries at once and [`MAX_PER_CLIENT`] per client (so
//! one client that does not answer cannot crowd out the others; more are dropped and logged),
//! each attempt [`ATTEMPT_TIMEOUT`], a second attempt a second later only after a connection
//! failure, a time-out or a 5xx (a 4xx is the client's final word on that token), the answer's
//! body never read. Best effort by design: the session's grants were already revoked through
//! the feed; a client that misses the token still sees its tokens refused. https URIs are
//! checked against the system's CA bundle (the first of [`CA_BUNDLES`] found; a warning once
//! if none is); http is registered only for loopback addresses.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use writ_oauth::LogoutNotice;

pub const MAX_IN_FLIGHT: usize = 64;
pub const MAX_PER_CLIENT: usize = 4;
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
pub const ATTEMPTS: usize = 2;
/// Where systems keep their bundle of trusted CAs: Debian and Ubuntu, Fedora and RHEL, Alpine.
pub const CA_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Deliveries in flight per client.
static PER_CLIENT: LazyLock<parking_lot::Mutex<std::collections::HashMap<String, usize>>> =
    LazyLock::new(Default::default);

/// A client's slot, given back on drop.
struct ClientSlot(String);

impl ClientSlot {
    fn take(client_id: &str) -> Option<ClientSlot> {
        let mut counts = PER_CLIENT.lock();
        let n = counts.entry(client_id.to_owned()).or_insert(0);
        if *n >= MAX_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ClientSlot(client_id.to_owned()))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = PER_CLIENT.lock();
        if let Some(n) = counts.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.0);
            }
        }
    }
}

static IN_FLIGHT: LazyLock<Arc<tokio::sync::Semaphore>> =
    LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)));

/// Trusts the system's CAs (none if the bundle cannot be read: https deliveries then fail, and
/// say so in the log).
static TLS: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
    let (config, roots) = crate::client_keys::system_tls();
    if roots == 0 {
        tracing::warn!(
            "no CA bundle found ({CA_BUNDLES:?}): back-channel logout over https will fail"
        );
    }
    config
});

/// Delivers `notices` in the background.
pub fn deliver(notices: Vec<LogoutNotice>) {
    for notice in notices {
        let (Ok(permit), Some(slot)) = (
            IN_FLIGHT.clone().try_acquire_owned(),
            ClientSlot::take(&notice.client_id),
        ) else {
            tracing::warn!(
                client_id = %notice.client_id,
                "back-channel logout dropped: too many deliveries in flight"
            );
            continue;
        };
        tokio::spawn(async move {
            let _held = (permit, slot);
            for attempt in 1..=ATTEMPTS {
                match tokio::time::timeout(ATTEMPT_TIMEOUT, post(&notice)).await {
                    Ok(Ok(status)) if status.is_success() => {
                        tracing::info!(client_id = %notice.client_id, "back-channel logout delivered");
                        return;
                    }
                    // The client's final word on this token (a retry would repeat its jti).
                    Ok(Ok(status)) if status.is_client_error() => {
                        tracing::warn!(
                            client_id = %notice.client_id, %status,
                            "back-channel logout refused"
                        );
                        return;
                    }
                    Ok(Ok(status)) => tracing::warn!(
                        client_id = %notice.client_id, attempt, %status,
                        "back-channel logout failed"
                    ),
                    Ok(Err(e)) => tracing::warn!(
                        client_id = %notice.client_id, attempt, error = %e,
                        "back-channel logout failed"
                    ),
                    Err(_) => tracing::warn!(
                        client_id = %notice.client_id, attempt,
                        "back-channel logout timed out"
                    ),
                }
                if attempt < ATTEMPTS {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
    }
}

/// One POST on a fresh connection; the status.
async fn post(notice: &LogoutNotice) -> Result<http::StatusCode, String> {
    let uri: http::Uri = notice
        .uri
        .parse()
        .map_err(|_| "unparsable URI".to_owned())?;
    let authority = uri.authority().ok_or("no host")?.clone();
    let https = uri.scheme_str() == Some("https");
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", &notice.logout_token)
        .finish();
    let request = http::Request::post(path)
        .header(http::header::HOST, authority.as_str())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::USER_AGENT, "writ")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    if https {
        let name =
            rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(TLS.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        send(TokioIo::new(tls), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

async fn send<IO>(io: IO, request: http::Request<Full<Bytes>>) -> Result<http::StatusCode, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string());
    driver.abort();
    Ok(answer?.status())
}
