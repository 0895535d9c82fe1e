//! The STS's OAuth HTTP facade: RFC 8693 at `POST /oauth2/token`
//! (`grant_type=urn:ietf:params:oauth:grant-type:token-exchange`, `client_secret_basic` or
//! `client_secret_post`), the JWKS at `GET /.well-known/jwks.json` and RFC 8414 metadata at
//! `GET /.well-known/oauth-authorization-server`. The same engine as the gRPC service; the form
//! parsing is the authorization server facade's (`writ_server::form`). Errors are RFC 6749
//! section 5.2 JSON bodies.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::HeaderMap;
use serde_json::json;
use writ_exchange::{ExchangeError, ExchangeRequest, TokenExchange};
use writ_server::form::{self, Form, FormError, cached_json, no_store};

use crate::status::http_status;

/// Largest form body accepted (two tokens of up to 16 KiB fit with room to spare).
pub const MAX_BODY: usize = 64 * 1024;

type Shared = Arc<TokenExchange>;

pub fn router(engine: Shared) -> Router {
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/jwks.json", get(jwks))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(engine)
}

/// An RFC 6749 section 5.2 error response.
struct OAuthError(ExchangeError);

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let e = self.0;
        form::error_response(
            http_status(&e),
            e.oauth_code(),
            e.description(),
            "Basic realm=\"writ-sts\"",
        )
    }
}

impl From<ExchangeError> for OAuthError {
    fn from(e: ExchangeError) -> Self {
        OAuthError(e)
    }
}

impl From<FormError> for OAuthError {
    fn from(e: FormError) -> Self {
        OAuthError(match e {
            FormError::InvalidRequest(m) => ExchangeError::InvalidRequest(m),
            FormError::InvalidClient => ExchangeError::InvalidClient,
        })
    }
}

async fn token(
    State(engine): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let (form, client) = Form::parse_with_client(&headers, &body)?;
    let req = ExchangeRequest {
        grant_type: form.one("grant_type")?,
        client_id: client.client_id,
        client_secret: client.client_secret,
        audience: form.many("audience"),
        resource: form.many("resource"),
        scope: form.one("scope")?,
        requested_token_type: form.one("requested_token_type")?,
        subject_token: form.one("subject_token")?,
        subject_token_type: form.one("subject_token_type")?,
        actor_token: form.one("actor_token")?,
        actor_token_type: form.one("actor_token_type")?,
    };
    let r = engine.exchange(req).await?;
    let body = json!({
        "access_token": r.access_token,
        "issued_token_type": r.issued_token_type,
        "token_type": r.token_type,
        "expires_in": r.expires_in,
        "scope": r.scope,
    });
    Ok((no_store(), axum::Json(body)).into_response())
}

async fn metadata(State(engine): State<Shared>) -> Response {
    let m = engine.metadata();
    cached_json(json!({
        "issuer": m.issuer,
        "token_endpoint": m.token_endpoint,
        "jwks_uri": m.jwks_uri,
        "grant_types_supported": m.grant_types_supported,
        "token_endpoint_auth_methods_supported": m.token_endpoint_auth_methods_supported,
        "token_types_supported": m.token_types_supported,
        "response_types_supported": [],
        "access_token_signing_alg_values_supported": ["EdDSA", "ES256"],
    }))
}

async fn jwks(State(engine): State<Shared>) -> Response {
    let (jwt, _) = engine.published_keys();
    let keys: Vec<_> = jwt.iter().map(|k| k.to_jwk()).collect();
    cached_json(json!({ "keys": keys }))
}
