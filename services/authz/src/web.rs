//! Sign-in in a browser: the authorization endpoint, the login and consent pages, UserInfo and
//! RP-initiated logout, over the engine's [`writ_oauth::signin`].
//!
//! Pages are rendered on the server (askama, HTML-escaped) and work without JavaScript. Every
//! page is sent with `Cache-Control: no-store`, a Content-Security-Policy that allows only this
//! server's stylesheet and no framing (`frame-ancestors 'none'`, `X-Frame-Options: DENY`), and
//! no referrer. Every form carries a CSRF token that must equal the browser's CSRF cookie
//! (`SameSite=Strict`; `__Host-` prefixed when the issuer is https, so no other origin, not
//! even a subdomain, can set it). The session cookie is `HttpOnly`, `Secure` (https),
//! `SameSite=Lax` (it must come along when a client sends the browser here).
//!
//! An interaction carries the authorization request it interrupts in a hidden field (the
//! request's own parameters, at most 8 KiB); once the user has signed in or consented, the
//! browser goes back to the authorization endpoint with it, and the request is checked again
//! from the start. Nothing about an interrupted request is stored.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use writ_oauth::{
    AuthorizationRequest, AuthorizationServer, Authorize, DevicePage, Error, Interaction,
};
use writ_server::form::{Form, FormBody, FormError};

type Shared = Arc<AuthorizationServer>;

/// Longest authorization request carried through an interaction.
const MAX_CARRIED: usize = 8 * 1024;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/oauth2/authorize", get(authorize_get).post(authorize_post))
        .route("/oauth2/login", axum::routing::post(login))
        .route("/oauth2/consent", axum::routing::post(consent))
        .route("/oauth2/userinfo", get(userinfo).post(userinfo))
        .route("/oauth2/logout", get(logout_get).post(logout_post))
        .route("/oauth2/device", get(device_get).post(device_post))
        .route("/oauth2/account", get(account_get).post(account_post))
        .route("/oauth2/assets/writ.css", get(stylesheet))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    /// Where the browser goes back after signing in: `authorize` or `device`.
    flow: &'a str,
    client_name: &'a str,
    error: &'a str,
    csrf: &'a str,
    request: &'a str,
    username: &'a str,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    client_name: &'a str,
    client_id: &'a str,
    username: &'a str,
    scopes: &'a [String],
    audience: &'a str,
    csrf: &'a str,
    request: &'a str,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePageHtml<'a> {
    /// Empty: ask for the code.
    user_code: &'a str,
    error: &'a str,
    client_name: &'a str,
    username: &'a str,
    scopes: &'a [String],
    csrf: &'a str,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    username: &'a str,
    consents: &'a [writ_oauth::Consent],
    csrf: &'a str,
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    csrf: &'a str,
    client_id: &'a str,
    post_logout_redirect_uri: &'a str,
    state: &'a str,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    heading: &'a str,
    message: &'a str,
    is_error: bool,
}

/// The browser's cookies this module reads and writes.
struct Cookies {
    secure: bool,
    session: Option<String>,
    csrf: Option<String>,
}

impl Cookies {
    fn read(engine: &AuthorizationServer, headers: &HeaderMap) -> Self {
        let secure = engine.config().issuer.starts_with("https://");
        let (session_name, csrf_name) = names(secure);
        let mut session = None;
        let mut csrf = None;
        for value in headers.get_all(header::COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for c in cookie::Cookie::split_parse(value).flatten() {
                if c.name() == session_name && session.is_none() {
                    session = Some(c.value().to_owned());
                } else if c.name() == csrf_name && csrf.is_none() {
                    csrf = Some(c.value().to_owned());
                }
            }
        }
        Cookies {
            secure,
            session,
            csrf,
        }
    }

    /// Whether a form's CSRF token is the browser's (constant-time).
    fn csrf_ok(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        match &self.csrf {
            Some(c) if c.len() >= 32 => c.as_bytes().ct_eq(presented.as_bytes()).into(),
            _ => false,
        }
    }

    fn set(
        &self,
        name: &'static str,
        value: String,
        max_age: i64,
        same_site: cookie::SameSite,
    ) -> HeaderValue {
        let c = cookie::Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(same_site)
            .max_age(cookie::time::Duration::seconds(max_age.max(0)))
            .build();
        HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn set_session(&self, value: String, max_age: i64) -> HeaderValue {
        self.set(names(self.secure).0, value, max_age, cookie::SameSite::Lax)
    }

    fn clear_session(&self) -> HeaderValue {
        self.set(
            names(self.secure).0,
            String::new(),
            0,
            cookie::SameSite::Lax,
        )
    }

    /// The CSRF token for a form, and the cookie to set when the browser has none yet.
    fn csrf_for_form(&self) -> (String, Option<HeaderValue>) {
        match &self.csrf {
            Some(c) if c.len() >= 32 && c.len() <= 64 => (c.clone(), None),
            _ => {
                let token = writ_token::random_secret();
                let cookie = self.set(
                    names(self.secure).1,
                    token.clone(),
                    24 * 3600,
                    cookie::SameSite::Strict,
                );
                (token, Some(cookie))
            }
        }
    }
}

fn names(secure: bool) -> (&'static str, &'static str) {
    if secure {
        ("__Host-writ-session", "__Host-writ-csrf")
    } else {
        ("writ-session", "writ-csrf")
    }
}

/// An HTML page with the headers every page carries.
fn page(
    status: StatusCode,
    html: Result<String, askama::Error>,
    cookies: Vec<HeaderValue>,
) -> Response {
    let Ok(html) = html else {
        tracing::error!("a page could not be rendered");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = (status, html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    for c in cookies {
        h.append(header::SET_COOKIE, c);
    }
    response
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// A 303 to `location` (never cached), with `cookies` set.
fn see_other(location: &str, cookies: Vec<HeaderValue>) -> Response {
    let Ok(location) = HeaderValue::from_str(location) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Error",
            "The request is malformed.",
            true,
        );
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, location);
    secure_headers(h);
    for c in cookies {
        h.append(header::SET_COOKIE, c);
    }
    response
}

fn message(status: StatusCode, heading: &str, message: &str, is_error: bool) -> Response {
    page(
        status,
        MessagePage {
            heading,
            message,
            is_error,
        }
        .render(),
        Vec::new(),
    )
}

fn refused(e: &FormError) -> Response {
    let text = e.to_string();
    let text = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
    message(StatusCode::BAD_REQUEST, "Error", text, true)
}

/// A form one of Writ's pages posted: parsed, its CSRF token the browser's own; else the
/// answer to send instead.
fn posted(
    engine: &AuthorizationServer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Form, Cookies), Box<Response>> {
    let form = Form::parse(headers, body).map_err(|e| Box::new(refused(&e)))?;
    let cookies = Cookies::read(engine, headers);
    let csrf = form.one("csrf").map_err(|e| Box::new(refused(&e)))?;
    if !cookies.csrf_ok(&csrf) {
        return Err(Box::new(message(
            StatusCode::FORBIDDEN,
            "Error",
            "The form has expired or was not sent from this site. Go back and try again.",
            true,
        )));
    }
    Ok((form, cookies))
}

/// The authorization request in `form` (a query or a body).
pub(crate) fn authorization_request(form: &Form) -> Result<AuthorizationRequest, FormError> {
    Ok(AuthorizationRequest {
        response_type: form.one("response_type")?,
        client_id: form.one("client_id")?,
        redirect_uri: form.one("redirect_uri")?,
        scope: form.one("scope")?,
        state: form.one("state")?,
        code_challenge: form.one("code_challenge")?,
        code_challenge_method: form.one("code_challenge_method")?,
        nonce: form.one("nonce")?,
        prompt: form.one("prompt")?,
        max_age: form.one("max_age")?,
        response_mode: form.one("response_mode")?,
        request: form.one("request")?,
        request_uri: form.one("request_uri")?,
        audience: form.many("audience"),
        resource: form.many("resource"),
    })
}

/// The request's parameters re-encoded, to carry through an interaction; `done` is dropped
/// from `prompt` (the interaction it asked for has happened), and after a sign-in `max_age`
/// too (the sign-in it asked for has just happened: a slow redirect must not ask again).
fn carried(form: &Form, done: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form.pairs() {
        if k == "max_age" && done == "login" {
            continue;
        }
        if k == "prompt" {
            let rest: Vec<&str> = v
                .split(' ')
                .filter(|p| !p.is_empty() && *p != done)
                .collect();
            if !rest.is_empty() {
                out.append_pair(k, &rest.join(" "));
            }
        } else {
            out.append_pair(k, v);
        }
    }
    out.finish()
}

async fn authorize_get(
    State(engine): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if query.len() > MAX_CARRIED {
        return refused(&FormError::TooLarge);
    }
    match Form::from_query(query.as_bytes()) {
        Ok(form) => authorize(&engine, &headers, form).await,
        Err(e) => refused(&e),
    }
}

async fn authorize_post(
    State(engine): State<Shared>,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Response {
    if body.len() > MAX_CARRIED {
        return refused(&FormError::TooLarge);
    }
    match Form::parse(&headers, &body) {
        Ok(form) => authorize(&engine, &headers, form).await,
        Err(e) => refused(&e),
    }
}

async fn authorize(engine: &AuthorizationServer, headers: &HeaderMap, form: Form) -> Response {
    let req = match authorization_request(&form) {
        Ok(r) => r,
        Err(e) => return refused(&e),
    };
    let cookies = Cookies::read(engine, headers);
    match engine.authorize(req, cookies.session.as_deref()).await {
        Authorize::Redirect(uri) => see_other(&uri, Vec::new()),
        Authorize::Refuse(e) => refusal_page(&e),
        Authorize::Login(i) => login_page(
            &cookies,
            "authorize",
            &i,
            &carried(&form, ""),
            "",
            "",
            StatusCode::OK,
        ),
        Authorize::Consent(i) => {
            let (csrf, set) = cookies.csrf_for_form();
            let audience = i.audience.join(", ");
            page(
                StatusCode::OK,
                ConsentPage {
                    client_name: &i.client_name,
                    client_id: &i.client_id,
                    username: &i.username,
                    scopes: &i.scopes,
                    audience: &audience,
                    csrf: &csrf,
                    request: &carried(&form, ""),
                }
                .render(),
                set.into_iter().collect(),
            )
        }
    }
}

fn refusal_page(e: &Error) -> Response {
    let status = match e {
        Error::Storage(_) | Error::Unavailable(_) | Error::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    message(
        status,
        "This sign-in request cannot be completed",
        &e.description(),
        true,
    )
}

fn login_page(
    cookies: &Cookies,
    flow: &str,
    i: &Interaction,
    request: &str,
    error: &str,
    username: &str,
    status: StatusCode,
) -> Response {
    let (csrf, set) = cookies.csrf_for_form();
    page(
        status,
        LoginPage {
            flow,
            client_name: &i.client_name,
            error,
            csrf: &csrf,
            request,
            username,
        }
        .render(),
        set.into_iter().collect(),
    )
}

/// The carried request, checked for size and re-encoded (with `done` dropped from `prompt`).
fn resume(request: &str, done: &str) -> Result<(Form, String), FormError> {
    if request.len() > MAX_CARRIED {
        return Err(FormError::TooLarge);
    }
    let form = Form::from_query(request.as_bytes())?;
    let query = carried(&form, done);
    Ok((form, query))
}

async fn login(
    State(engine): State<Shared>,
    peer: Option<axum::Extension<writ_server::Peer>>,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Response {
    let (form, cookies) = match posted(&engine, &headers, &body) {
        Ok(p) => p,
        Err(answer) => return *answer,
    };
    let fields = (|| -> Result<_, FormError> {
        Ok((
            form.one("request")?,
            form.one("username")?,
            form.one("password")?,
            form.one("flow")?,
        ))
    })();
    let (request, username, password, flow) = match fields {
        Ok(f) => f,
        Err(e) => return refused(&e),
    };
    let (carried_form, resumed) = match resume(&request, "login") {
        Ok(r) => r,
        Err(e) => return refused(&e),
    };
    let source = peer.map(|p| p.0.0.ip());
    // Back to the page that asked for the sign-in: only these two, never a URL from the form.
    let (flow, back) = match flow.as_str() {
        "account" => ("account", "/oauth2/account".to_owned()),
        "device" => (
            "device",
            format!("/oauth2/device?{}", carried(&carried_form, "")),
        ),
        _ => ("authorize", format!("/oauth2/authorize?{resumed}")),
    };
    match engine
        .sign_in(&username, &password, cookies.session.as_deref(), source)
        .await
    {
        Ok(mut session) => {
            // Another user's session this sign-in ended: its clients hear of it.
            crate::backchannel::deliver(std::mem::take(&mut session.logout_notices));
            // A pushed request is resumed as pushed: it learns here that its sign-in happened.
            let request_uri = carried_form.one("request_uri").unwrap_or_default();
            if flow == "authorize" && !request_uri.is_empty() {
                let client_id = carried_form.one("client_id").unwrap_or_default();
                if let Err(e) = engine
                    .pushed_sign_in_answered(&session.cookie, &client_id, &request_uri)
                    .await
                {
                    return refusal_page(&e);
                }
            }
            let max_age = session.expires_at - engine.now();
            see_other(&back, vec![cookies.set_session(session.cookie, max_age)])
        }
        Err(e) => {
            let client_id = carried_form.one("client_id").unwrap_or_default();
            let i = Interaction {
                client_name: engine.client_display_name(&client_id).await,
                client_id,
                scopes: Vec::new(),
                audience: Vec::new(),
                username: String::new(),
            };
            let (status, text) = match &e {
                Error::Throttled(_) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed attempts. Wait a while, then try again.".to_owned(),
                ),
                Error::InvalidGrant(_) | Error::InvalidRequest(_) => (
                    StatusCode::UNAUTHORIZED,
                    "The username or password is wrong.".to_owned(),
                ),
                other => (StatusCode::SERVICE_UNAVAILABLE, other.description()),
            };
            // The carried request as it came (a retry resumes it the same way).
            login_page(
                &cookies,
                flow,
                &i,
                &carried(&carried_form, ""),
                &text,
                &username,
                status,
            )
        }
    }
}

async fn consent(
    State(engine): State<Shared>,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Response {
    let (form, cookies) = match posted(&engine, &headers, &body) {
        Ok(p) => p,
        Err(answer) => return *answer,
    };
    let fields = (|| -> Result<_, FormError> {
        Ok((
            form.one("request")?,
            form.one("client_id")?,
            form.one("decision")?,
        ))
    })();
    let (request, client_id, decision) = match fields {
        Ok(f) => f,
        Err(e) => return refused(&e),
    };
    let (carried_form, resumed) = match resume(&request, "consent") {
        Ok(r) => r,
        Err(e) => return refused(&e),
    };
    let req = match authorization_request(&carried_form) {
        Ok(r) => r,
        Err(e) => return refused(&e),
    };
    if req.client_id != client_id {
        return refused(&FormError::InvalidRequest(
            "the consent is for another client than the request",
        ));
    }
    match decision.as_str() {
        "allow" => {}
        "deny" => {
            return match engine.deny(req).await {
                Authorize::Redirect(uri) => see_other(&uri, Vec::new()),
                Authorize::Refuse(e) => refusal_page(&e),
                _ => refused(&FormError::InvalidRequest("unexpected answer")),
            };
        }
        _ => return refused(&FormError::InvalidRequest("decision is allow or deny")),
    }
    let Some(session) = cookies.session.as_deref() else {
        return see_other(&format!("/oauth2/authorize?{resumed}"), Vec::new());
    };
    match engine.grant_consent(session, req).await {
        // Signed out meanwhile: the resumed request asks to sign in again.
        Ok(()) | Err(Error::LoginRequired) => {
            see_other(&format!("/oauth2/authorize?{resumed}"), Vec::new())
        }
        Err(e) => refusal_page(&e),
    }
}

/// OpenID Connect Core section 5.3, with RFC 6750 section 3 challenges.
async fn userinfo(State(engine): State<Shared>, headers: HeaderMap) -> Response {
    // The gateway check's reading of the header (RFC 6750 section 2.1 and 3.1).
    let presented: Vec<&str> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    let token = match crate::gateway::presented_bearer(&presented) {
        Ok(token) => token,
        Err((status, value)) => return challenge(status, value),
    };
    match engine.userinfo(token).await {
        Ok(info) => {
            let mut body = serde_json::json!({ "sub": info.sub });
            if let Some(u) = info.preferred_username {
                body["preferred_username"] = serde_json::Value::String(u);
            }
            (writ_server::form::no_store(), axum::Json(body)).into_response()
        }
        Err(e @ (Error::InvalidToken(_) | Error::InsufficientScope(_))) => {
            let status = if matches!(e, Error::InvalidToken(_)) {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            let value = format!(
                "Bearer error=\"{}\", error_description=\"{}\"",
                e.oauth_code(),
                e.description().replace(['"', '\\'], "")
            );
            challenge(status, value)
        }
        Err(e) => writ_server::form::Refused::from(e).into_response(),
    }
}

fn challenge(status: StatusCode, value: String) -> Response {
    let mut response = (status, writ_server::form::no_store()).into_response();
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

/// OpenID Connect RP-Initiated Logout: a confirmation page (a form, so no other site can sign
/// the user out), then the form's POST.
async fn logout_get(
    State(engine): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if query.len() > MAX_CARRIED {
        return refused(&FormError::TooLarge);
    }
    let form = match Form::from_query(query.as_bytes()) {
        Ok(f) => f,
        Err(e) => return refused(&e),
    };
    let fields = (|| -> Result<_, FormError> {
        Ok((
            form.one("client_id")?,
            form.one("id_token_hint")?,
            form.one("post_logout_redirect_uri")?,
            form.one("state")?,
        ))
    })();
    let (client_id, hint, uri, state) = match fields {
        Ok(f) => f,
        Err(e) => return refused(&e),
    };
    let cookies = Cookies::read(&engine, &headers);
    // The client the hint names, so the POST needs no token.
    // The client the hint names (so the POST needs no token); a hint of another client than
    // `client_id`, or one this server did not sign, sends the browser nowhere.
    let client_id = if hint.is_empty() {
        client_id
    } else {
        match engine.id_token_client(&hint) {
            Some(h) if client_id.is_empty() || client_id == h => h,
            _ => String::new(),
        }
    };
    let (csrf, set) = cookies.csrf_for_form();
    page(
        StatusCode::OK,
        LogoutPage {
            csrf: &csrf,
            client_id: &client_id,
            post_logout_redirect_uri: &uri,
            state: &state,
        }
        .render(),
        set.into_iter().collect(),
    )
}

async fn logout_post(
    State(engine): State<Shared>,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Response {
    let (form, cookies) = match posted(&engine, &headers, &body) {
        Ok(p) => p,
        Err(answer) => return *answer,
    };
    let fields = (|| -> Result<_, FormError> {
        Ok((
            form.one("client_id")?,
            form.one("post_logout_redirect_uri")?,
            form.one("state")?,
        ))
    })();
    let (client_id, uri, state) = match fields {
        Ok(f) => f,
        Err(e) => return refused(&e),
    };
    if let Some(session) = cookies.session.as_deref() {
        match engine.end_session(session, "signed out").await {
            Ok(notices) => crate::backchannel::deliver(notices),
            Err(e) => return refusal_page(&e),
        }
    }
    let clear = vec![cookies.clear_session()];
    match engine
        .post_logout_redirect(&client_id, "", &uri, &state)
        .await
    {
        Some(back) => see_other(&back, clear),
        None => page(
            StatusCode::OK,
            MessagePage {
                heading: "Signed out",
                message: "You are signed out.",
                is_error: false,
            }
            .render(),
            clear,
        ),
    }
}

/// RFC 8628 section 3.3: the verification page. Signing in comes first; then the code (from
/// the link, or typed) is shown with what the device asks for.
async fn device_get(
    State(engine): State<Shared>,
    peer: Option<axum::Extension<writ_server::Peer>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if query.len() > MAX_CARRIED {
        return refused(&FormError::TooLarge);
    }
    let user_code = match Form::from_query(query.as_bytes()).and_then(|f| f.one("user_code")) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    let cookies = Cookies::read(&engine, &headers);
    let source = peer.map(|p| p.0.0.ip());
    match engine
        .device_page(cookies.session.as_deref(), &user_code, source)
        .await
    {
        Ok(DevicePage::Login(i)) => {
            let mut request = form_urlencoded::Serializer::new(String::new());
            if !user_code.is_empty() {
                request.append_pair("user_code", &user_code);
            }
            login_page(
                &cookies,
                "device",
                &i,
                &request.finish(),
                "",
                "",
                StatusCode::OK,
            )
        }
        Ok(DevicePage::EnterCode { error }) => device_html(&cookies, "", error, None),
        Ok(DevicePage::Confirm {
            interaction,
            user_code,
        }) => device_html(&cookies, &user_code, "", Some(&interaction)),
        Err(Error::Throttled(_)) => message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many wrong codes. Wait a while, then try again.",
            true,
        ),
        Err(e) => refusal_page(&e),
    }
}

fn device_html(
    cookies: &Cookies,
    user_code: &str,
    error: &str,
    i: Option<&Interaction>,
) -> Response {
    let (csrf, set) = cookies.csrf_for_form();
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    page(
        status,
        DevicePageHtml {
            user_code,
            error,
            client_name: i.map_or("", |i| i.client_name.as_str()),
            username: i.map_or("", |i| i.username.as_str()),
            scopes: i.map_or(&[], |i| i.scopes.as_slice()),
            csrf: &csrf,
        }
        .render(),
        set.into_iter().collect(),
    )
}

async fn device_post(
    State(engine): State<Shared>,
    peer: Option<axum::Extension<writ_server::Peer>>,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Response {
    let (form, cookies) = match posted(&engine, &headers, &body) {
        Ok(p) => p,
        Err(answer) => return *answer,
    };
    let fields =
        (|| -> Result<_, FormError> { Ok((form.one("user_code")?, form.one("decision")?)) })();
    let (user_code, decision) = match fields {
        Ok(f) => f,
        Err(e) => return refused(&e),
    };
    let allow = match decision.as_str() {
        "allow" => true,
        "deny" => false,
        _ => return refused(&FormError::InvalidRequest("decision is allow or deny")),
    };
    let again = || {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("user_code", &user_code);
        see_other(&format!("/oauth2/device?{}", q.finish()), Vec::new())
    };
    let Some(session) = cookies.session.as_deref() else {
        return again();
    };
    match engine
        .device_decide(session, &user_code, allow, peer.map(|p| p.0.0.ip()))
        .await
    {
        Ok(()) if allow => message(
            StatusCode::OK,
            "Device connected",
            "Your device is connected. You may close this page.",
            false,
        ),
        Ok(()) => message(
            StatusCode::OK,
            "Device denied",
            "The device was not connected.",
            false,
        ),
        Err(Error::LoginRequired) => again(),
        Err(Error::InvalidRequest(m)) => device_html(&cookies, "", m, None),
        Err(Error::Throttled(_)) => message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many wrong codes. Wait a while, then try again.",
            true,
        ),
        Err(e) => refusal_page(&e),
    }
}

/// The signed-in person's consents, each revocable (the client asks again; the grants this
/// session made for it are revoked).
async fn account_get(State(engine): State<Shared>, headers: HeaderMap) -> Response {
    let cookies = Cookies::read(&engine, &headers);
    let listed = match cookies.session.as_deref() {
        Some(s) => engine.consents(s).await,
        None => Ok(None),
    };
    match listed {
        Ok(Some((username, consents))) => {
            let (csrf, set) = cookies.csrf_for_form();
            page(
                StatusCode::OK,
                AccountPage {
                    username: &username,
                    consents: &consents,
                    csrf: &csrf,
                }
                .render(),
                set.into_iter().collect(),
            )
        }
        Ok(None) => login_page(
            &cookies,
            "account",
            &Interaction {
                client_id: String::new(),
                client_name: "your account".to_owned(),
                scopes: Vec::new(),
                audience: Vec::new(),
                username: String::new(),
            },
            "",
            "",
            "",
            StatusCode::OK,
        ),
        Err(e) => refusal_page(&e),
    }
}

async fn account_post(
    State(engine): State<Shared>,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Response {
    let (form, cookies) = match posted(&engine, &headers, &body) {
        Ok(p) => p,
        Err(answer) => return *answer,
    };
    let client_id = match form.one("client_id") {
        Ok(f) => f,
        Err(e) => return refused(&e),
    };
    let Some(session) = cookies.session.as_deref() else {
        return see_other("/oauth2/account", Vec::new());
    };
    match engine.revoke_consent(session, &client_id).await {
        Ok(notices) => {
            crate::backchannel::deliver(notices);
            see_other("/oauth2/account", Vec::new())
        }
        Err(Error::LoginRequired) => see_other("/oauth2/account", Vec::new()),
        Err(e) => refusal_page(&e),
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../assets/writ.css"),
    )
        .into_response()
}
