//! The gateway check on its own listeners, for the API gateways people already run: an HTTP
//! endpoint for nginx's `auth_request` (and any gateway that forwards a request's headers and
//! reads the answer's: Traefik's ForwardAuth, Caddy's forward_auth), and Envoy's
//! `envoy.service.auth.v3.Authorization/Check` for its `ext_authz` filter. Both ask the engine's
//! [`AuthorizationServer::gateway_check`] and answer through one [`Verdict`]: 200 with the
//! `Authorization` header the services inside are to be sent (`Bearer` and the JWT behind a
//! reference token), or 401/403 with the RFC 6750 `WWW-Authenticate` challenge.
//!
//! What a route needs comes from the gateway's configuration: the query of the check URL
//! (`/check?audience=orders&scope=orders.read`) for HTTP, the route's `context_extensions`
//! (`audience`, `scope`) for Envoy.
//!
//! The check trades a reference token for the JWT it stands for, so these listeners are for
//! gateways only: bound to loopback by default, like the admin API.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use writ_oauth::{AuthorizationServer, Error, GatewayNeeds};
use writ_proto::envoy_api::auth::authorization_server::{
    Authorization, AuthorizationServer as EnvoyServer,
};
use writ_proto::envoy_api::auth::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response,
};
use writ_proto::envoy_api::envoy::config::core::v3 as core;
use writ_proto::envoy_api::envoy::r#type::v3::HttpStatus;
use writ_proto::envoy_api::google::rpc;
use writ_server::ServiceSpec;
use writ_server::form::{Form, Refused};

type Shared = Arc<AuthorizationServer>;

/// The HTTP check's path.
pub const CHECK_PATH: &str = "/check";

/// The gateway's listeners: Envoy's `Authorization` over gRPC, the HTTP check beside it.
pub fn spec(engine: Shared) -> ServiceSpec {
    ServiceSpec::new("gateway check")
        .grpc(EnvoyServer::new(EnvoyCheck(engine.clone())))
        .descriptors(writ_proto::envoy_api::FILE_DESCRIPTOR_SET)
        .http(router(engine))
}

/// The HTTP check: any method (a gateway's subrequest keeps the request's), the request's
/// body ignored.
pub fn router(engine: Shared) -> Router {
    writ_server::form::facade(Router::new().route(CHECK_PATH, any(http_check))).with_state(engine)
}

/// The answer to a gateway, whatever its protocol.
#[derive(Debug)]
pub struct Verdict {
    pub status: StatusCode,
    /// For the request inside (200), or the caller (otherwise).
    pub headers: Vec<(header::HeaderName, String)>,
    /// RFC 6749 section 5.2 JSON for a refusal that is no challenge; empty otherwise.
    pub body: String,
}

impl Verdict {
    fn challenge(status: StatusCode, value: String) -> Verdict {
        Verdict {
            status,
            headers: vec![(header::WWW_AUTHENTICATE, value)],
            body: String::new(),
        }
    }
}

/// What an `Authorization` header value holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// A bearer token (RFC 6750 section 2.1: the scheme, one space, a `b64token`).
    Bearer(&'a str),
    /// The `Bearer` scheme without a well-formed token: `invalid_request`.
    Malformed,
    /// Another scheme: no bearer token.
    Other,
}

pub fn credentials_of(value: &str) -> Credentials<'_> {
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Other;
    }
    let b64 = |c: char| c.is_ascii_alphanumeric() || "-._~+/".contains(c);
    let body = token.trim_end_matches('=');
    if !body.is_empty() && body.chars().all(b64) {
        Credentials::Bearer(token)
    } else {
        Credentials::Malformed
    }
}

/// The one bearer token of a request whose `Authorization` headers are `presented`, or the
/// status and RFC 6750 challenge to answer without it: none (or another scheme) is a 401 with
/// no error code (section 3.1), several headers or a malformed token `invalid_request`.
pub fn presented_bearer<'a>(presented: &[&'a str]) -> Result<&'a str, (StatusCode, String)> {
    let invalid_request = |description: &str| {
        (
            StatusCode::BAD_REQUEST,
            format!("Bearer error=\"invalid_request\", error_description=\"{description}\""),
        )
    };
    let credentials = match presented {
        [] => Credentials::Other,
        [one] => credentials_of(one),
        _ => return Err(invalid_request("one Authorization header")),
    };
    match credentials {
        Credentials::Bearer(token) => Ok(token),
        Credentials::Malformed => Err(invalid_request("a malformed bearer token")),
        Credentials::Other => Err((StatusCode::UNAUTHORIZED, "Bearer".to_owned())),
    }
}

/// A route configured wrongly (no audience, a malformed scope, a repeated parameter): the
/// gateway's fault, not the caller's, so a server error.
fn misconfigured(description: &str) -> Verdict {
    Verdict {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        headers: vec![(header::CONTENT_TYPE, "application/json".to_owned())],
        body: serde_json::json!({
            "error": "server_error",
            "error_description": format!("the gateway's route is misconfigured: {description}"),
        })
        .to_string(),
    }
}

/// The verdict on a request whose `Authorization` headers are `presented`.
pub async fn verdict(
    engine: &AuthorizationServer,
    presented: &[&str],
    needs: GatewayNeeds<'_>,
) -> Verdict {
    let token = match presented_bearer(presented) {
        Ok(token) => token,
        Err((status, value)) => return Verdict::challenge(status, value),
    };
    match engine.gateway_check(token, needs).await {
        Ok(pass) => Verdict {
            status: StatusCode::OK,
            headers: vec![(header::AUTHORIZATION, format!("Bearer {}", pass.forward))],
            body: String::new(),
        },
        Err(e @ (Error::InvalidToken(_) | Error::InsufficientScope(_))) => {
            let (status, scope) = match e {
                Error::InsufficientScope(_) => (StatusCode::FORBIDDEN, needs.scope),
                _ => (StatusCode::UNAUTHORIZED, ""),
            };
            let mut value = format!(
                "Bearer error=\"{}\", error_description=\"{}\"",
                e.oauth_code(),
                e.description().replace(['"', '\\'], "")
            );
            if !scope.is_empty() {
                // Scope tokens hold neither quote nor backslash (RFC 6749 section 3.3).
                value.push_str(&format!(", scope=\"{scope}\""));
            }
            Verdict::challenge(status, value)
        }
        Err(Error::InvalidRequest(description)) => misconfigured(description),
        Err(e) => {
            let http = writ_proto::refusal::to_http(&writ_proto::refusal::refusal_of(&e));
            Verdict {
                status: http.status(),
                headers: vec![(header::CONTENT_TYPE, "application/json".to_owned())],
                body: http.into_body(),
            }
        }
    }
}

async fn http_check(
    State(engine): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Refused> {
    let route = Form::from_query(query.unwrap_or_default().as_bytes())
        .and_then(|form| Ok((form.one("audience")?, form.one("scope")?)));
    let Ok((audience, scope)) = route else {
        return Ok(render(misconfigured(
            "its query is malformed or repeats a parameter",
        )));
    };
    let presented: Vec<&str> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        // A value that is not text holds no bearer token.
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    let v = verdict(
        &engine,
        &presented,
        GatewayNeeds {
            audience: &audience,
            scope: &scope,
        },
    )
    .await;
    Ok(render(v))
}

fn render(v: Verdict) -> Response {
    let mut response = (v.status, writ_server::form::no_store(), v.body).into_response();
    for (name, value) in v.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Envoy's `ext_authz` over gRPC.
#[derive(Debug, Clone)]
pub struct EnvoyCheck(pub Shared);

#[tonic::async_trait]
impl Authorization for EnvoyCheck {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let attributes = request.into_inner().attributes.unwrap_or_default();
        let http = attributes.request.and_then(|r| r.http).unwrap_or_default();
        // `headers` (lower-cased, repeated ones merged with commas, which no bearer token
        // holds: split, they count as the several headers they were), or `header_map` when
        // Envoy is told to send raw headers (each one apart).
        let mut presented: Vec<String> = http
            .headers
            .get("authorization")
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        if let Some(map) = &http.header_map {
            presented.extend(
                map.headers
                    .iter()
                    .filter(|h| h.key.eq_ignore_ascii_case("authorization"))
                    .map(|h| String::from_utf8_lossy(&h.raw_value).into_owned()),
            );
        }
        let ext = &attributes.context_extensions;
        let needs = GatewayNeeds {
            audience: ext.get("audience").map_or("", String::as_str),
            scope: ext.get("scope").map_or("", String::as_str),
        };
        let presented: Vec<&str> = presented.iter().map(String::as_str).collect();
        let v = verdict(&self.0, &presented, needs).await;
        Ok(tonic::Response::new(check_response_of(v)))
    }
}

/// A verdict as Envoy's `CheckResponse`: OK with the headers to set on the request inside, or
/// denied with the status, headers and body the caller gets.
pub fn check_response_of(v: Verdict) -> CheckResponse {
    let headers = v
        .headers
        .into_iter()
        .map(|(name, value)| core::HeaderValueOption {
            header: Some(core::HeaderValue {
                key: name.as_str().to_owned(),
                value,
                ..Default::default()
            }),
            append_action: core::header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd
                as i32,
            ..Default::default()
        })
        .collect();
    if v.status == StatusCode::OK {
        return CheckResponse {
            status: Some(rpc::Status::default()),
            http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
                headers,
                ..Default::default()
            })),
            ..Default::default()
        };
    }
    let code = match v.status {
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
        StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: code as i32,
            ..Default::default()
        }),
        http_response: Some(check_response::HttpResponse::DeniedResponse(
            DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: i32::from(v.status.as_u16()),
                }),
                headers,
                body: v.body,
            },
        )),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_one_b64token_after_the_scheme() {
        use Credentials::*;
        assert_eq!(
            credentials_of("Bearer abc.def-_~+/=="),
            Bearer("abc.def-_~+/==")
        );
        assert_eq!(credentials_of("bearer abc"), Bearer("abc"));
        assert_eq!(credentials_of("Basic abc"), Other);
        assert_eq!(credentials_of("Basic"), Other);
        assert_eq!(credentials_of(""), Other);
        for malformed in [
            "Bearer ",
            "Bearer ==",
            "Bearer a,Bearer b",
            "Bearer a b",
            "Bearer",
        ] {
            assert_eq!(credentials_of(malformed), Malformed, "{malformed}");
        }
    }
}
