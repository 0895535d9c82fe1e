//! A minimal HTTP/1.1 client over rustls for the OAuth facade tests. One connection per request
//! keeps it obviously correct.

use http::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// `application/x-www-form-urlencoded` encoding of one value (every byte but the unreserved
/// ones escaped).
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An `Authorization` value for `client_secret_basic`: each part form-encoded, then base64
/// (RFC 6749 section 2.3.1).
pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    let pair = format!("{}:{}", form_encode(id), form_encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

pub struct HttpClient {
    base: String,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body of a successful token response: a 200, marked not to be cached (RFC 6749
    /// section 5.1).
    #[track_caller]
    pub fn token_json(&self) -> serde_json::Value {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.headers["cache-control"], "no-store");
        self.json()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl HttpClient {
    pub fn new(base: &str, ca_pem: Option<&str>) -> Self {
        HttpClient {
            base: base.trim_end_matches('/').to_owned(),
            tls: ca_pem.map(|ca| writ_tls::client_config(ca, &[b"http/1.1"]).unwrap()),
        }
    }

    /// A client presenting a TLS client certificate (PEM) to a server that asks for one.
    pub fn with_identity(base: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Self {
        HttpClient {
            base: base.trim_end_matches('/').to_owned(),
            tls: Some(
                writ_tls::client_config_with_identity(ca_pem, cert_pem, key_pem, &[b"http/1.1"])
                    .unwrap(),
            ),
        }
    }

    pub async fn get(&self, path: &str) -> HttpResponse {
        self.send(Method::GET, path, &[], Vec::new()).await
    }

    /// GETs `path` with `Authorization: Bearer <token>`.
    pub async fn get_bearer(&self, path: &str, token: &str) -> HttpResponse {
        let authorization = format!("Bearer {token}");
        self.send(
            Method::GET,
            path,
            &[("authorization", &authorization)],
            Vec::new(),
        )
        .await
    }

    /// POSTs `form` (already encoded) as application/x-www-form-urlencoded.
    pub async fn post_form(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        form: &str,
    ) -> HttpResponse {
        let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        self.send(Method::POST, path, &all, form.as_bytes().to_vec())
            .await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> HttpResponse {
        let (authority, stream) = self.open().await;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &authority);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(http_body_full(body)).unwrap();
        roundtrip(TokioIo::new(stream), req).await
    }

    /// A connection to the server (inside TLS when it has a CA), and its authority.
    async fn open(&self) -> (String, Box<dyn Stream>) {
        let authority = self.base.split("://").nth(1).unwrap().to_owned();
        let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let stream: Box<dyn Stream> = match &self.tls {
            Some(cfg) => {
                let host = authority.rsplit_once(':').unwrap().0.to_owned();
                let name = rustls::pki_types::ServerName::try_from(host).unwrap();
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .unwrap();
                Box::new(tls)
            }
            None => Box::new(tcp),
        };
        (authority, stream)
    }
}

/// A byte stream to the server, plain or inside TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for T {}

impl HttpClient {
    /// Writes `head` (a request line and headers, without the blank line) and no body, then
    /// reads one response: status, headers, and a body of its `content-length`. For requests a
    /// well-behaved client library will not send (a declared body it withholds). Bounded: 10 s.
    pub async fn raw_head(&self, head: &str) -> HttpResponse {
        use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
        async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, head: &str) -> Vec<u8> {
            s.write_all(format!("{head}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return buf;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some((headers, body)) = text.split_once("\r\n\r\n") {
                    let length = headers
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        return buf;
                    }
                }
            }
        }
        let raw = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            let (_, stream) = self.open().await;
            exchange(stream, head).await
        })
        .await
        .expect("an answer within 10 s");
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .expect("a complete response head");
        let mut lines = head.lines();
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let mut headers = HeaderMap::new();
        for l in lines {
            let (k, v) = l.split_once(':').unwrap();
            headers.append(
                http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                v.trim().parse().unwrap(),
            );
        }
        HttpResponse {
            status: StatusCode::from_bytes(status.as_bytes()).unwrap(),
            headers,
            body: body.as_bytes().to_vec(),
        }
    }
}

type Body = http_body_util::Full<hyper::body::Bytes>;

fn http_body_full(body: Vec<u8>) -> Body {
    Body::new(body.into())
}

async fn roundtrip<IO>(io: IO, req: Request<Body>) -> HttpResponse
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    HttpResponse {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}
