//! The OAuth HTTP facade: the endpoints off-the-shelf OAuth clients and JWT libraries expect,
//! over the same engine as the gRPC service (no second copy of grant logic).
//!
//! `POST /oauth2/token`, `POST /oauth2/introspect`, `POST /oauth2/revoke` take
//! `application/x-www-form-urlencoded` bodies and authenticate clients with
//! `client_secret_basic` or `client_secret_post` (never both). Errors are RFC 6749 section 5.2
//! JSON bodies.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use writ_oauth::{AuthorizationServer, ClientCredentials, Error, FormatChoice, TokenOperation};
use writ_server::form::{
    self, Form, FormBody, FormError, Refused, cached_json as cached, no_store,
};

type Shared = Arc<AuthorizationServer>;

/// The mTLS endpoint aliases (RFC 8705 section 5): the endpoints where a client authenticates,
/// served on a listener whose TLS asks for client certificates. The sign-in pages are not
/// (a browser there would offer its user's certificates).
pub fn mtls_router(engine: Shared) -> Router {
    let routes = client_endpoints().layer(axum::Extension(MtlsAlias));
    form::facade(routes).with_state(engine)
}

/// The endpoints where a client authenticates.
fn client_endpoints() -> Router<Shared> {
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/oauth2/introspect", post(introspect))
        .route("/oauth2/revoke", post(revoke))
        .route("/oauth2/par", post(par))
        .route("/oauth2/device_authorization", post(device_authorization))
}

/// Marks a request served at the mTLS aliases.
#[derive(Debug, Clone, Copy)]
struct MtlsAlias;

/// The TLS client certificate a request's connection presented, if any.
type Certificate = Option<axum::Extension<writ_server::ClientCertificate>>;

fn certificate_of(c: Certificate) -> Option<Vec<u8>> {
    c.map(|c| c.0.0.to_vec())
}

pub fn router(engine: Shared) -> Router {
    let routes = client_endpoints()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(metadata))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/biscuit-keys.json", get(biscuit_keys))
        .merge(crate::web::routes());
    form::facade(routes).with_state(engine)
}

/// The form and its client's credentials, as the engine takes them.
fn parse(
    headers: &HeaderMap,
    body: &[u8],
    certificate: Certificate,
) -> Result<(Form, ClientCredentials), FormError> {
    let (form, c) = Form::parse_with_client(headers, body)?;
    let client = ClientCredentials {
        client_id: c.client_id,
        client_secret: c.client_secret,
        client_assertion_type: c.client_assertion_type,
        client_assertion: c.client_assertion,
        client_certificate: certificate_of(certificate),
    };
    Ok((form, client))
}

/// `token_format`: space-delimited like `scope`, so `jwt biscuit` (or `jwt+biscuit` before form
/// decoding) asks for both; `reference` stands alone.
fn format_param(v: &str) -> Result<FormatChoice, Error> {
    let mut jwt = false;
    let mut biscuit = false;
    let mut reference = false;
    for f in v.split(' ').filter(|f| !f.is_empty()) {
        match f {
            "jwt" => jwt = true,
            "biscuit" => biscuit = true,
            "reference" => reference = true,
            _ => {
                return Err(Error::InvalidRequest(
                    "token_format lists jwt and/or biscuit, or reference",
                ));
            }
        }
    }
    Ok(match (jwt, biscuit, reference) {
        (false, false, false) => FormatChoice::Default,
        (true, false, false) => FormatChoice::Jwt,
        (false, true, false) => FormatChoice::Biscuit,
        (true, true, false) => FormatChoice::JwtAndBiscuit,
        (false, false, true) => FormatChoice::Reference,
        _ => {
            return Err(Error::InvalidRequest(
                "a reference token comes alone: token_format reference",
            ));
        }
    })
}

async fn token(
    State(engine): State<Shared>,
    peer: Option<axum::Extension<writ_server::Peer>>,
    certificate: Certificate,
    alias: Option<axum::Extension<MtlsAlias>>,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Result<Response, Refused> {
    let (form, client) = parse(&headers, &body, certificate)?;
    // RFC 9449 section 4.3: one proof, over this endpoint's URL. Several headers are joined
    // with commas, which no proof holds: the engine refuses (and records) them.
    let proofs: Vec<&str> = headers
        .get_all("dpop")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    let dpop = (!proofs.is_empty()).then(|| writ_oauth::DpopRequest {
        proof: proofs.join(","),
        htm: "POST".to_owned(),
        // At the mTLS alias, its own URL (unknown, no proof can name it: refused).
        htu: match alias {
            Some(_) => engine.mtls_token_endpoint().unwrap_or_default(),
            None => engine.metadata_token_endpoint(),
        },
    });
    let req = writ_oauth::TokenRequest {
        dpop,
        dpop_jkt: String::new(),
        dpop_jti: String::new(),
        client_certificate: client.client_certificate,
        cert_x5t: String::new(),
        grant_type: form.one("grant_type")?,
        client_id: client.client_id,
        client_secret: client.client_secret,
        client_assertion_type: client.client_assertion_type,
        client_assertion: client.client_assertion,
        scope: form.one("scope")?,
        refresh_token: form.one("refresh_token")?,
        username: form.one("username")?,
        password: form.one("password")?,
        audience: form.many("audience"),
        resource: form.many("resource"),
        token_format: format_param(&form.one("token_format")?)?,
        code: form.one("code")?,
        redirect_uri: form.one("redirect_uri")?,
        code_verifier: form.one("code_verifier")?,
        device_code: form.one("device_code")?,
        assertion: form.one("assertion")?,
        source: peer.map(|p| p.0.0.ip()),
    };
    let r = match engine.token(req).await {
        Ok(r) => r,
        // RFC 9449 section 8: the refusal carries the nonce to use.
        Err(e @ Error::UseDpopNonce) => {
            let mut response = Refused::from(e).into_response();
            if let Ok(nonce) = axum::http::HeaderValue::from_str(&engine.dpop_nonce()) {
                response.headers_mut().insert("dpop-nonce", nonce);
            }
            return Ok(response);
        }
        Err(e) => return Err(e.into()),
    };
    let mut body = json!({
        "access_token": r.access_token,
        "token_type": r.token_type,
        "expires_in": r.expires_in,
        "scope": r.scope,
        "issued_token_type": r.issued_token_type,
    });
    if let Some(rt) = r.refresh_token {
        body["refresh_token"] = Value::String(rt);
    }
    if let Some(b) = r.biscuit {
        body["biscuit"] = Value::String(b);
    }
    if let Some(t) = r.id_token {
        body["id_token"] = Value::String(t);
    }
    Ok((no_store(), axum::Json(body)).into_response())
}

fn operation(
    headers: &HeaderMap,
    body: &[u8],
    certificate: Certificate,
) -> Result<TokenOperation, Refused> {
    let (form, client) = parse(headers, body, certificate)?;
    Ok(TokenOperation {
        client,
        token: form.one("token")?,
        token_type_hint: form.one("token_type_hint")?,
    })
}

async fn introspect(
    State(engine): State<Shared>,
    certificate: Certificate,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Result<Response, Refused> {
    let i = engine
        .introspect(operation(&headers, &body, certificate)?)
        .await?;
    if !i.active {
        return Ok((no_store(), axum::Json(json!({ "active": false }))).into_response());
    }
    let mut body = json!({
        "active": true,
        "scope": i.scope,
        "client_id": i.client_id,
        "token_type": i.token_type,
        "exp": i.exp,
        "iat": i.iat,
        "nbf": i.nbf,
        "sub": i.sub,
        "iss": i.iss,
    });
    if !i.aud.is_empty() {
        body["aud"] = json!(i.aud);
    }
    for (k, v) in [("username", i.username), ("jti", i.jti), ("gid", i.gid)] {
        if !v.is_empty() {
            body[k] = Value::String(v);
        }
    }
    if let Some(act) = i.act {
        body["act"] = serde_json::to_value(act).unwrap_or(Value::Null);
    }
    let mut cnf = serde_json::Map::new();
    if !i.cnf_jkt.is_empty() {
        cnf.insert("jkt".into(), i.cnf_jkt.into());
    }
    if !i.cnf_x5t_s256.is_empty() {
        cnf.insert("x5t#S256".into(), i.cnf_x5t_s256.into());
    }
    if !cnf.is_empty() {
        body["cnf"] = Value::Object(cnf);
    }
    Ok((no_store(), axum::Json(body)).into_response())
}

/// RFC 8628 section 3.1 and 3.2.
async fn device_authorization(
    State(engine): State<Shared>,
    peer: Option<axum::Extension<writ_server::Peer>>,
    certificate: Certificate,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Result<Response, Refused> {
    let (form, client) = parse(&headers, &body, certificate)?;
    let d = engine
        .device_authorization(
            &client,
            &form.one("scope")?,
            form.many("audience"),
            form.many("resource"),
            peer.map(|p| p.0.0.ip()),
        )
        .await?;
    let body = json!({
        "device_code": d.device_code,
        "user_code": d.user_code,
        "verification_uri": d.verification_uri,
        "verification_uri_complete": d.verification_uri_complete,
        "expires_in": d.expires_in,
        "interval": d.interval,
    });
    Ok((no_store(), axum::Json(body)).into_response())
}

/// RFC 9126: a pushed authorization request, answered 201 with its `request_uri`.
async fn par(
    State(engine): State<Shared>,
    peer: Option<axum::Extension<writ_server::Peer>>,
    certificate: Certificate,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Result<Response, Refused> {
    let (form, client) = parse(&headers, &body, certificate)?;
    let mut req = crate::web::authorization_request(&form)?;
    if req.client_id.is_empty() {
        req.client_id = writ_oauth::named_client(&client.client_id, &client.client_assertion);
    }
    let (request_uri, expires_in) = engine
        .push_authorization_request(&client, req, peer.map(|p| p.0.0.ip()))
        .await?;
    let body = json!({ "request_uri": request_uri, "expires_in": expires_in });
    Ok((StatusCode::CREATED, no_store(), axum::Json(body)).into_response())
}

async fn revoke(
    State(engine): State<Shared>,
    certificate: Certificate,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Result<Response, Refused> {
    engine
        .revoke(operation(&headers, &body, certificate)?)
        .await?;
    Ok((StatusCode::OK, no_store()).into_response())
}

async fn metadata(State(engine): State<Shared>) -> Response {
    let m = engine.metadata();
    let body = json!({
        "issuer": m.issuer,
        "token_endpoint": m.token_endpoint,
        "jwks_uri": m.jwks_uri,
        "biscuit_keys_uri": m.biscuit_keys_uri,
        "introspection_endpoint": m.introspection_endpoint,
        "revocation_endpoint": m.revocation_endpoint,
        "grant_types_supported": m.grant_types_supported,
        "token_endpoint_auth_methods_supported": m.token_endpoint_auth_methods_supported,
        "token_endpoint_auth_signing_alg_values_supported": m.token_endpoint_auth_signing_alg_values_supported,
        "introspection_endpoint_auth_methods_supported": m.introspection_endpoint_auth_methods_supported,
        "revocation_endpoint_auth_methods_supported": m.revocation_endpoint_auth_methods_supported,
        "response_types_supported": m.response_types_supported,
        "scopes_supported": m.scopes_supported,
        "access_token_signing_alg_values_supported": m.access_token_signing_alg_values_supported,
        "authorization_endpoint": m.authorization_endpoint,
        "pushed_authorization_request_endpoint": format!("{}/oauth2/par", m.issuer.trim_end_matches('/')),
        "require_pushed_authorization_requests": false,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "device_authorization_endpoint": format!("{}/oauth2/device_authorization", m.issuer.trim_end_matches('/')),
        "userinfo_endpoint": m.userinfo_endpoint,
        "end_session_endpoint": m.end_session_endpoint,
        "code_challenge_methods_supported": m.code_challenge_methods_supported,
        "id_token_signing_alg_values_supported": m.id_token_signing_alg_values_supported,
        "subject_types_supported": ["public"],
        "response_modes_supported": ["query"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "azp", "at_hash", "preferred_username"],
        "acr_values_supported": [writ_oauth::signin::ACR_PASSWORD],
        "prompt_values_supported": ["none", "login", "consent"],
        "authorization_response_iss_parameter_supported": true,
        // RFC 9449 section 5.1: DPoP at the token endpoint (HTTP).
        "dpop_signing_alg_values_supported": writ_token::DPOP_ALGORITHMS.map(|a| a.name()),
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
    });
    let mut body = body;
    // RFC 8705 sections 3.3 and 5: the aliases where certificates are taken, and that tokens
    // are bound to them for clients registered so.
    if !m.mtls_endpoint.is_empty() {
        let alias = |path: &str| format!("{}{path}", m.mtls_endpoint);
        body["mtls_endpoint_aliases"] = json!({
            "token_endpoint": alias("/oauth2/token"),
            "introspection_endpoint": alias("/oauth2/introspect"),
            "revocation_endpoint": alias("/oauth2/revoke"),
            "pushed_authorization_request_endpoint": alias("/oauth2/par"),
            "device_authorization_endpoint": alias("/oauth2/device_authorization"),
        });
        body["tls_client_certificate_bound_access_tokens"] = json!(true);
    }
    cached(body)
}

/// The Biscuit root keys over HTTP (a Writ extension, `biscuit_keys_uri` in the metadata), as
/// `writ_token::BiscuitKeySet`: the fields of `writ.common.v1.BiscuitRootKey`.
async fn biscuit_keys(State(engine): State<Shared>) -> Result<Response, Refused> {
    let (_, biscuit) = engine.published_keys().await?;
    Ok(cached(json!(writ_token::BiscuitKeySet::new(&biscuit))))
}

async fn jwks(State(engine): State<Shared>) -> Result<Response, Refused> {
    let (jwt, _) = engine.published_keys().await?;
    let keys: Vec<_> = jwt.iter().map(|k| k.to_jwk()).collect();
    Ok(cached(json!({ "keys": keys })))
}
