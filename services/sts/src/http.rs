//! The STS's OAuth HTTP facade: RFC 8693 at `POST /oauth2/token`
//! (`grant_type=urn:ietf:params:oauth:grant-type:token-exchange`, `client_secret_basic`,
//! `client_secret_post` or `private_key_jwt`), the JWKS at `GET /.well-known/jwks.json` and RFC 8414 metadata at
//! `GET /.well-known/oauth-authorization-server`. The same engine as the gRPC service; the form
//! parsing is the authorization server facade's (`writ_server::form`). Errors are RFC 6749
//! section 5.2 JSON bodies.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::HeaderMap;
use serde_json::json;
use writ_exchange::ExchangeRequest;
use writ_server::form::{self, Form, FormBody, Refused, cached_json, no_store};

use crate::Sts;

type Shared = Arc<Sts>;

pub fn router(sts: Shared) -> Router {
    let routes = Router::new()
        .route("/oauth2/token", post(token))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/biscuit-keys.json", get(biscuit_keys));
    form::facade(routes).with_state(sts)
}

async fn token(
    State(sts): State<Shared>,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Result<Response, Refused> {
    let (form, client) = Form::parse_with_client(&headers, &body)?;
    let req = ExchangeRequest {
        grant_type: form.one("grant_type")?,
        client_id: client.client_id,
        client_secret: client.client_secret,
        client_assertion_type: client.client_assertion_type,
        client_assertion: client.client_assertion,
        audience: form.many("audience"),
        resource: form.many("resource"),
        scope: form.one("scope")?,
        requested_token_type: form.one("requested_token_type")?,
        subject_token: form.one("subject_token")?,
        subject_token_type: form.one("subject_token_type")?,
        actor_token: form.one("actor_token")?,
        actor_token_type: form.one("actor_token_type")?,
    };
    let r = sts.exchange(req).await?;
    let body = json!({
        "access_token": r.access_token,
        "issued_token_type": r.issued_token_type,
        "token_type": r.token_type,
        "expires_in": r.expires_in,
        "scope": r.scope,
    });
    Ok((no_store(), axum::Json(body)).into_response())
}

async fn metadata(State(sts): State<Shared>) -> Response {
    let m = sts.engine.metadata();
    cached_json(json!({
        "issuer": m.issuer,
        "token_endpoint": m.token_endpoint,
        "jwks_uri": m.jwks_uri,
        "biscuit_keys_uri": m.biscuit_keys_uri,
        "grant_types_supported": m.grant_types_supported,
        "token_endpoint_auth_methods_supported": m.token_endpoint_auth_methods_supported,
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256"],
        "token_types_supported": m.token_types_supported,
        "response_types_supported": [],
        "access_token_signing_alg_values_supported": ["EdDSA", "ES256"],
    }))
}

/// The Biscuit root keys, as `writ_token::BiscuitKeySet` (the authorization server's form).
async fn biscuit_keys(State(sts): State<Shared>) -> Response {
    let now = sts.clock.now();
    let keys = sts.keys.state().published_biscuit_keys(now);
    cached_json(json!(writ_token::BiscuitKeySet::new(&keys)))
}

async fn jwks(State(sts): State<Shared>) -> Response {
    let now = sts.clock.now();
    let keys: Vec<_> = sts
        .keys
        .state()
        .published_jwt_keys(now)
        .iter()
        .map(|k| k.to_jwk())
        .collect();
    cached_json(json!({ "keys": keys }))
}
