//! The request side of an OAuth HTTP facade (RFC 6749): form bodies and client authentication,
//! shared by the authorization server's and the STS's facades so both parse alike.
//!
//! Bodies must be `application/x-www-form-urlencoded` UTF-8; a parameter may not repeat unless
//! the caller reads it with [`Form::many`] (`audience`, `resource`). Clients authenticate with
//! `client_secret_basic` (RFC 6749 section 2.3.1: each part form-urlencoded, then base64) or
//! `client_secret_post`, never both.

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, header};
use writ_vocabulary::{ErrorCode, Kind, Refusal, Refuse};

/// Why a request was refused before it reached an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// The `Authorization: Basic` header could not be decoded.
    #[error("invalid_client: client authentication failed")]
    InvalidClient,
    /// The body is larger than the facade accepts.
    #[error("invalid_request: the request body is too large")]
    TooLarge,
}

impl Refuse for FormError {
    fn refusal(&self) -> Refusal {
        match self {
            FormError::InvalidRequest(m) => {
                Refusal::oauth(Kind::InvalidArgument, ErrorCode::InvalidRequest, *m)
            }
            FormError::InvalidClient => Refusal::oauth(
                Kind::Unauthenticated,
                ErrorCode::InvalidClient,
                "client authentication failed",
            ),
            FormError::TooLarge => Refusal::oauth(
                Kind::TooLarge,
                ErrorCode::InvalidRequest,
                "the request body is too large",
            ),
        }
    }
}

/// Largest form body a facade accepts: two tokens of up to 16 KiB fit with room to spare.
pub const MAX_BODY: usize = 64 * 1024;

/// Past the limit, at most this much more is read and discarded so that the client, still
/// sending, reads the refusal instead of a reset connection; a larger body is cut off.
const DRAIN: usize = 1024 * 1024;

/// The body of a form request, at most [`MAX_BODY`] bytes. A larger one is refused with an
/// RFC 6749 JSON 413 (`invalid_request`), never a plain-text error or a dropped connection.
#[derive(Debug)]
pub struct FormBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for FormBody {
    type Rejection = Refused;

    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, Refused> {
        use http_body_util::BodyExt;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = req.into_body();
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            drain(body, declared.unwrap_or(0)).await;
            return Err(FormError::TooLarge.into());
        }
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|_| FormError::InvalidRequest("the body could not be read"))?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() > MAX_BODY {
                    drain(body, u64::MAX).await;
                    return Err(FormError::TooLarge.into());
                }
            }
        }
        Ok(FormBody(buf.into()))
    }
}

/// Reads and discards what is left of an oversized body, if it is small enough to be worth it
/// (bounded in size and time).
async fn drain(mut body: axum::body::Body, declared: u64) {
    use http_body_util::BodyExt;
    if declared > (MAX_BODY + DRAIN) as u64 && declared != u64::MAX {
        return;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len());
            if read > DRAIN {
                break;
            }
        }
    })
    .await;
}

/// A parsed form body.
#[derive(Debug)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Form, FormError> {
        let form_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form_type {
            return Err(FormError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        if std::str::from_utf8(body).is_err() {
            return Err(FormError::InvalidRequest("the body is not UTF-8"));
        }
        Ok(Form(form_urlencoded::parse(body).into_owned().collect()))
    }

    /// A URL's query (or a form carried in a hidden field): no content type to check, UTF-8
    /// required.
    pub fn from_query(query: &[u8]) -> Result<Form, FormError> {
        if std::str::from_utf8(query).is_err() {
            return Err(FormError::InvalidRequest("the query is not UTF-8"));
        }
        Ok(Form(form_urlencoded::parse(query).into_owned().collect()))
    }

    /// Every parameter, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// [`Form::parse`], then the client authentication the request carries ([`client_auth`]).
    pub fn parse_with_client(
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(Form, ClientAuth), FormError> {
        let form = Form::parse(headers, body)?;
        let client = client_auth(headers, &form)?;
        Ok((form, client))
    }

    /// A parameter that may appear at most once (empty if absent).
    pub fn one(&self, name: &str) -> Result<String, FormError> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = values.next().cloned().unwrap_or_default();
        if values.next().is_some() {
            return Err(FormError::InvalidRequest("a parameter is repeated"));
        }
        Ok(first)
    }

    /// Every value of a repeatable parameter.
    pub fn many(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The client's credentials, as presented. Its `Debug` shows neither secret nor assertion.
#[derive(Clone, Default)]
pub struct ClientAuth {
    pub client_id: String,
    pub client_secret: String,
    /// RFC 7521 section 4.2: `private_key_jwt` (RFC 7523 section 2.2).
    pub client_assertion_type: String,
    pub client_assertion: String,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("ClientAuth")
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("client_assertion_type", &self.client_assertion_type)
            .field("client_assertion", &redacted(&self.client_assertion))
            .finish()
    }
}

/// `client_secret_basic`, `client_secret_post` or a client assertion (`private_key_jwt`);
/// using more than one is an error (RFC 6749 section 2.3).
pub fn client_auth(headers: &HeaderMap, form: &Form) -> Result<ClientAuth, FormError> {
    // An `Authorization` header that cannot be read, or names Basic without credentials, is
    // refused, never ignored in favour of the body's credentials (found by fuzzing). Another
    // readable scheme is not client authentication.
    // Two `Authorization` headers are refused too: which one counts would be a guess.
    let mut presented = headers.get_all(header::AUTHORIZATION).iter();
    let basic = match (presented.next(), presented.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(FormError::InvalidRequest(
                "the Authorization header is repeated",
            ));
        }
        (Some(v), None) => {
            let v = v.to_str().map_err(|_| FormError::InvalidClient)?.trim();
            let (scheme, rest) = v
                .split_once(|c: char| c.is_ascii_whitespace())
                .unwrap_or((v, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                None
            } else if rest.trim().is_empty() {
                return Err(FormError::InvalidClient);
            } else {
                Some(rest.trim().to_owned())
            }
        }
    };
    let post_id = form.one("client_id")?;
    let post_secret = form.one("client_secret")?;
    let assertion_type = form.one("client_assertion_type")?;
    let assertion = form.one("client_assertion")?;
    if !assertion_type.is_empty() || !assertion.is_empty() {
        if basic.is_some() || !post_secret.is_empty() {
            return Err(FormError::InvalidRequest(
                "use one client authentication method",
            ));
        }
        if assertion_type.is_empty() || assertion.is_empty() {
            return Err(FormError::InvalidRequest(
                "client_assertion and client_assertion_type go together",
            ));
        }
        return Ok(ClientAuth {
            client_id: post_id,
            client_secret: String::new(),
            client_assertion_type: assertion_type,
            client_assertion: assertion,
        });
    }
    let Some(encoded) = basic else {
        return Ok(ClientAuth {
            client_id: post_id,
            client_secret: post_secret,
            ..ClientAuth::default()
        });
    };
    if !post_secret.is_empty() {
        return Err(FormError::InvalidRequest(
            "use one client authentication method",
        ));
    }
    let decoded = STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(FormError::InvalidClient)?;
    let (id, secret) = decoded.split_once(':').ok_or(FormError::InvalidClient)?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| FormError::InvalidClient)
    };
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    if !post_id.is_empty() && post_id != id {
        return Err(FormError::InvalidRequest(
            "client_id differs from the authenticated client",
        ));
    }
    Ok(ClientAuth {
        client_id: id,
        client_secret: secret,
        ..ClientAuth::default()
    })
}

/// `Cache-Control: no-store` and `Pragma: no-cache`, for every response carrying a token or an
/// error (RFC 6749 section 5.1).
pub fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// A refusal on its way out of an HTTP facade, as RFC 6749 section 5.2 JSON
/// (`writ_proto::refusal::to_http`). Handlers return `Result<Response, Refused>` and `?` any
/// domain error.
#[derive(Debug)]
pub struct Refused(pub Refusal);

impl<E: Refuse> From<E> for Refused {
    fn from(e: E) -> Self {
        Refused(writ_proto::refusal::refusal_of(&e))
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        writ_proto::refusal::to_http(&self.0).into_response()
    }
}

/// An HTTP facade's routes, refusing everything else as RFC 6749 JSON too: a path no endpoint
/// has (404) and a method an endpoint does not take (405) are `invalid_request`, never cached.
pub fn facade<S: Clone + Send + Sync + 'static>(routes: axum::Router<S>) -> axum::Router<S> {
    async fn no_endpoint() -> Refused {
        Refused(Refusal::oauth(
            Kind::NotFound,
            ErrorCode::InvalidRequest,
            "no such endpoint",
        ))
    }
    async fn wrong_method() -> Refused {
        Refused(Refusal::oauth(
            Kind::Unimplemented,
            ErrorCode::InvalidRequest,
            "the endpoint does not take this method",
        ))
    }
    routes
        .fallback(no_endpoint)
        .method_not_allowed_fallback(wrong_method)
}

/// Public documents (metadata, JWKS) may be cached briefly; an unknown `kid` makes clients
/// fetch again anyway.
pub fn cached_json(body: serde_json::Value) -> Response {
    (
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        )],
        axum::Json(body),
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(authorization: &[u8], body: &str) -> Result<ClientAuth, FormError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        if !authorization.is_empty() {
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_bytes(authorization).unwrap(),
            );
        }
        Form::parse_with_client(&headers, body.as_bytes()).map(|(_, c)| c)
    }

    #[test]
    fn a_client_assertion_is_the_one_method_and_comes_with_its_type() {
        let t = "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
        let ok = request(b"", &format!("grant_type=x&{t}&client_assertion=a.b.c")).unwrap();
        assert_eq!(
            (ok.client_id.as_str(), ok.client_assertion.as_str()),
            ("", "a.b.c")
        );
        assert!(ok.client_assertion_type.ends_with(":jwt-bearer"));
        let two_methods = [
            (
                &b""[..],
                format!("{t}&client_assertion=a.b.c&client_secret=s"),
            ),
            (
                &b"Basic b3JkZXJzOnNlY3JldA=="[..],
                format!("{t}&client_assertion=a.b.c"),
            ),
            (&b""[..], "client_assertion=a.b.c".to_owned()),
            (&b""[..], t.to_owned()),
        ];
        for (header, body) in two_methods {
            assert!(
                matches!(request(header, &body), Err(FormError::InvalidRequest(_))),
                "{body}"
            );
        }
    }

    /// Found by fuzzing (`tools/fuzz`, target `form`): a Basic header with bytes that are not
    /// visible ASCII was ignored and the body's credentials used instead.
    #[test]
    fn an_unreadable_or_empty_basic_header_is_refused_not_ignored() {
        let body = "grant_type=client_credentials&client_id=orders&client_secret=s";
        assert_eq!(
            request(b"Basic b3JkZXJz\xff\xffOnNlY3JldA==", body).unwrap_err(),
            FormError::InvalidClient
        );
        assert_eq!(
            request(b"Basic", body).unwrap_err(),
            FormError::InvalidClient
        );
        // Another scheme is not client authentication: the body's credentials apply.
        assert_eq!(request(b"Bearer x", body).unwrap().client_id, "orders");
        let basic = request(b"Basic b3JkZXJzOnNlY3JldA==", "grant_type=x").unwrap();
        assert_eq!(
            (basic.client_id.as_str(), basic.client_secret.as_str()),
            ("orders", "secret")
        );
        assert_eq!(
            request(b"Basic  ", body).unwrap_err(),
            FormError::InvalidClient
        );
        // Any whitespace separates the scheme (a tab included).
        let tab = request(b"Basic\tb3JkZXJzOnNlY3JldA==", "grant_type=x").unwrap();
        assert_eq!(tab.client_secret, "secret");
    }

    #[test]
    fn a_repeated_authorization_header_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        headers.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic b3JkZXJzOnNlY3JldA=="),
        );
        let body = b"grant_type=x&client_id=orders&client_secret=s";
        assert!(matches!(
            Form::parse_with_client(&headers, body),
            Err(FormError::InvalidRequest(_))
        ));
    }
}
