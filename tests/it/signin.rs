//! People signing in through a browser: the authorization code grant with PKCE, the login and
//! consent pages, single sign-on, OpenID Connect (ID tokens, UserInfo, discovery) and signing
//! out, over HTTPS against the real servers. Each bad input has its own test.

use http::StatusCode;
use writ_proto::admin as pb_admin;
use writ_tests::browser::{Browser, assert_hardened_page, pkce, query_of};
use writ_tests::http_client::{basic, form_encode};
use writ_tests::*;

const RP: &str = "https://rp.example/callback";
const RP_LOGOUT: &str = "https://rp.example/signed-out";
const USER: &str = "ada";
const PASSWORD: &str = "correct horse battery";

/// A public client using the authorization code grant (and refresh tokens), redirecting to
/// [`RP`].
fn web_client(id: &str) -> pb_admin::Client {
    pb_admin::Client {
        client_id: id.into(),
        client_name: format!("The {id} app"),
        client_type: pb_admin::ClientType::Public as i32,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scope: "orders.read orders.write".into(),
        audience: vec!["orders".into()],
        redirect_uris: vec![RP.into(), "http://127.0.0.1:9/cb".into()],
        post_logout_redirect_uris: vec![RP_LOGOUT.into()],
        ..Default::default()
    }
}

/// A server with the user [`USER`] (scope `orders.read`) and the public client `web`.
async fn setup() -> TestServer {
    let server = TestServer::start().await;
    server.create_user(USER, PASSWORD, "orders.read").await;
    server.create_client(web_client("web")).await;
    server
}

struct Flow {
    client_id: String,
    verifier: String,
    challenge: String,
    state: String,
    nonce: String,
    scope: String,
}

impl Flow {
    fn new(client_id: &str) -> Flow {
        let (verifier, challenge) = pkce();
        Flow {
            client_id: client_id.into(),
            verifier,
            challenge,
            state: "st&te=1/?x".into(),
            nonce: "n-0S6_WzA2Mj".into(),
            scope: "openid profile orders.read".into(),
        }
    }

    fn url(&self) -> String {
        self.url_with(&[])
    }

    /// The authorization URL, with `over` replacing (or, with an empty value, removing) its
    /// parameters.
    fn url_with(&self, over: &[(&str, &str)]) -> String {
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", RP),
            ("scope", self.scope.as_str()),
            ("state", self.state.as_str()),
            ("nonce", self.nonce.as_str()),
            ("code_challenge", self.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        for (k, v) in over {
            params.retain(|(p, _)| p != k);
            if !v.is_empty() {
                params.push((k, v));
            }
        }
        format!(
            "/oauth2/authorize?{}",
            writ_tests::browser::encode_form(&params)
        )
    }

    /// The token request redeeming `code`.
    fn redeem(&self, code: &str) -> String {
        format!(
            "grant_type=authorization_code&client_id={}&code={}&redirect_uri={}&code_verifier={}",
            form_encode(&self.client_id),
            form_encode(code),
            form_encode(RP),
            form_encode(&self.verifier)
        )
    }
}

/// Signs in through the login page and allows the consent page; returns where the browser was
/// sent (the client's redirect URI with a code).
async fn sign_in_and_consent(browser: &mut Browser, flow: &Flow) -> String {
    let login = browser.get(&flow.url()).await.page();
    assert_hardened_page(&login, StatusCode::OK);
    let consent = browser
        .submit(&login, &[("username", USER), ("password", PASSWORD)])
        .await
        .page();
    assert_hardened_page(&consent, StatusCode::OK);
    let html = String::from_utf8_lossy(&consent.body);
    assert!(html.contains("orders.read"), "{html}");
    browser
        .submit(&consent, &[("decision", "allow")])
        .await
        .away()
}

/// The tokens the code of a redirect to [`RP`] gets at the token endpoint.
async fn redeemed(server: &TestServer, flow: &Flow, to: &str) -> serde_json::Value {
    let code = code_of(server, flow, to);
    server
        .http()
        .post_form("/oauth2/token", &[], &flow.redeem(&code))
        .await
        .token_json()
}

/// The code of a redirect to [`RP`], after checking `state` and `iss` came back with it.
#[track_caller]
fn code_of(server: &TestServer, flow: &Flow, to: &str) -> String {
    assert!(to.starts_with(&format!("{RP}?")), "{to}");
    let q = query_of(to);
    assert_eq!(q["state"], flow.state, "state comes back exactly");
    assert_eq!(q["iss"], server.issuer, "RFC 9207");
    q.get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code: {to}"))
}

fn browser(server: &TestServer) -> Browser {
    Browser::new(server.http())
}

#[tokio::test]
async fn a_person_signs_in_consents_and_the_client_redeems_the_code_with_pkce() {
    let server = setup().await;
    let mut b = browser(&server);
    let flow = Flow::new("web");
    let to = sign_in_and_consent(&mut b, &flow).await;
    let code = code_of(&server, &flow, &to);

    let http = server.http();
    let r = http
        .post_form("/oauth2/token", &[], &flow.redeem(&code))
        .await;
    let body = r.token_json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "openid orders.read profile");
    let access = body["access_token"].as_str().unwrap();
    let claims = crate::grants::verifier_for(&server, "orders")
        .await
        .verify(access)
        .unwrap()
        .claims;
    assert_eq!(claims.client_id, "web");
    let subject = claims.sub.clone();

    // The ID token: this server's signature, for the client, with the request's nonce and the
    // access token's hash.
    let id_token = body["id_token"].as_str().unwrap();
    let keys = (*server.engine.public_keys()).clone();
    let verifier = writ_token::TokenVerifier::new(
        writ_token::VerifierConfig::new(vec![server.issuer.clone()], None),
        keys,
        writ_token::system_clock(),
    );
    let jws = verifier.verify_jws(id_token).unwrap();
    assert_eq!(jws.header.typ.as_deref(), Some("JWT"));
    let id: writ_token::IdTokenClaims = serde_json::from_slice(&jws.payload).unwrap();
    assert_eq!(id.iss, server.issuer);
    assert_eq!(id.aud, "web");
    assert_eq!(id.sub, subject);
    assert_eq!(id.nonce.as_deref(), Some(flow.nonce.as_str()));
    assert_eq!(
        id.at_hash.as_deref(),
        Some(writ_token::token_hash(server.engine.key_state().jwt.alg(), access).as_str())
    );
    assert_eq!(id.amr, vec!["pwd".to_owned()]);
    assert_eq!(id.preferred_username.as_deref(), Some(USER));
    assert!(!id.sid.is_empty());
    assert!(id.auth_time <= id.iat && id.iat < id.exp);

    // UserInfo with the access token.
    let r = http.get_bearer("/oauth2/userinfo", access).await;
    assert_eq!(r.status, StatusCode::OK);
    let info = r.json();
    assert_eq!(info["sub"], subject.as_str());
    assert_eq!(info["preferred_username"], USER);
    // RFC 6750 section 3.1: no bearer token is a bare challenge; two headers, or a malformed
    // token, are invalid_request.
    let bearer = format!("Bearer {access}");
    for (headers, status, challenge) in [
        (vec![], StatusCode::UNAUTHORIZED, "Bearer"),
        (
            vec![("authorization", "Basic d2ViOng=")],
            StatusCode::UNAUTHORIZED,
            "Bearer",
        ),
        (
            vec![
                ("authorization", bearer.as_str()),
                ("authorization", bearer.as_str()),
            ],
            StatusCode::BAD_REQUEST,
            "Bearer error=\"invalid_request\", error_description=\"one Authorization header\"",
        ),
        (
            vec![("authorization", "Bearer two words")],
            StatusCode::BAD_REQUEST,
            "Bearer error=\"invalid_request\", error_description=\"a malformed bearer token\"",
        ),
    ] {
        let r = http
            .send(http::Method::GET, "/oauth2/userinfo", &headers, Vec::new())
            .await;
        assert_eq!(r.status, status, "{headers:?}");
        assert_eq!(r.headers["www-authenticate"], challenge, "{headers:?}");
    }

    // The refresh token works like any other.
    let refresh = body["refresh_token"].as_str().unwrap();
    let r = refresh_at(&http, refresh).await;
    r.token_json();

    // Single sign-on: the same browser, a second client, no password asked; consent only.
    server.create_client(web_client("other")).await;
    let second = Flow::new("other");
    let consent = b.get(&second.url()).await.page();
    let html = String::from_utf8_lossy(&consent.body).into_owned();
    assert!(
        html.contains("The other app") && html.contains("Allow"),
        "{html}"
    );
    let to = b.submit(&consent, &[("decision", "allow")]).await.away();
    code_of(&server, &second, &to);
    // Consent remembered: straight back to the client.
    let third = Flow::new("other");
    let to = b.get(&third.url()).await.away();
    code_of(&server, &third, &to);
}

/// A page that is an error and not a redirect: nothing was sent to any redirect URI.
#[track_caller]
fn assert_not_redirected(landed: writ_tests::browser::Landed) {
    let page = landed.page();
    assert_hardened_page(&page, StatusCode::BAD_REQUEST);
    assert!(page.headers.get("location").is_none());
}

#[tokio::test]
async fn wrong_unregistered_or_disguised_redirect_uris_are_never_redirected_to() {
    let server = setup().await;
    let mut b = browser(&server);
    let flow = Flow::new("web");
    for bad in [
        "https://evil.example/callback",
        "https://rp.example/callback/../evil",
        "https://rp.example/callback?x=1",
        "https://rp.example/callbackx",
        "https://rp.example.evil.example/callback",
        "https://rp.example@evil.example/callback",
        "//evil.example/callback",
        "HTTPS://RP.EXAMPLE/callback",
        "https://rp.example/callback#frag",
        "javascript:alert(1)",
    ] {
        assert_not_redirected(b.get(&flow.url_with(&[("redirect_uri", bad)])).await);
    }
    // Missing, unknown client, disabled client: shown, never redirected.
    assert_not_redirected(b.get(&flow.url_with(&[("redirect_uri", "")])).await);
    assert_not_redirected(b.get(&flow.url_with(&[("client_id", "nobody")])).await);
    // A repeated parameter is refused too (the client is otherwise good: the login page).
    assert_not_redirected(
        b.get(&format!("{}&redirect_uri={}", flow.url(), form_encode(RP)))
            .await,
    );
    assert_hardened_page(&b.get(&flow.url()).await.page(), StatusCode::OK);
    server.set_disabled("web", true).await;
    assert_not_redirected(b.get(&flow.url()).await);
}

#[tokio::test]
async fn a_loopback_redirect_uri_matches_on_any_port_rfc_8252() {
    let server = setup().await;
    let flow = Flow::new("web");
    let mut b = browser(&server);
    // Registered as http://127.0.0.1:9/cb; a native app listening on another port.
    let native = "http://127.0.0.1:51004/cb";
    let login = b
        .get(&flow.url_with(&[("redirect_uri", native)]))
        .await
        .page();
    let consent = b
        .submit(&login, &[("username", USER), ("password", PASSWORD)])
        .await
        .page();
    let to = b.submit(&consent, &[("decision", "allow")]).await.away();
    assert!(to.starts_with(&format!("{native}?")), "{to}");
    let code = query_of(&to)["code"].clone();
    let form = flow
        .redeem(&code)
        .replace(&form_encode(RP), &form_encode(native));
    server
        .http()
        .post_form("/oauth2/token", &[], &form)
        .await
        .token_json();
    // Not another path, nor localhost by name.
    for bad in ["http://127.0.0.1:51004/other", "http://localhost:9/cb"] {
        assert_not_redirected(b.get(&flow.url_with(&[("redirect_uri", bad)])).await);
    }
}

#[tokio::test]
async fn a_consent_does_not_carry_over_to_a_client_registered_again_under_the_same_id() {
    let server = setup().await;
    let flow = Flow::new("web");
    let mut b = browser(&server);
    sign_in_and_consent(&mut b, &flow).await;
    let to = b.get(&flow.url()).await.away();
    let old = code_of(&server, &flow, &to);
    server
        .admin()
        .await
        .delete_client(pb_admin::DeleteClientRequest {
            client_id: "web".into(),
        })
        .await
        .unwrap();
    server.create_client(web_client("web")).await;
    let page = b.get(&flow.url()).await.page();
    assert!(String::from_utf8_lossy(&page.body).contains("Allow access?"));
    // Consented to again, the new registration still does not redeem the old one's code (it
    // names the registration it was issued to; the engine test
    // `a_code_of_a_client_registered_again_is_refused` checks which refusal).
    let to = b.submit(&page, &[("decision", "allow")]).await.away();
    code_of(&server, &flow, &to);
    let r = server
        .http()
        .post_form("/oauth2/token", &[], &flow.redeem(&old))
        .await;
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn pushed_requests_and_device_authorizations_are_limited_per_source() {
    let server = setup().await;
    let flow = Flow::new("web");
    let mut statuses = Vec::new();
    for _ in 0..61 {
        statuses.push(push(&server, &flow, &[]).await.status);
    }
    assert!(statuses[..60].iter().all(|s| *s == StatusCode::CREATED));
    assert_eq!(statuses[60], StatusCode::TOO_MANY_REQUESTS);
}

/// An error the client may learn of: a redirect to it with `error`, `state` and `iss`.
#[track_caller]
fn assert_error_redirect(server: &TestServer, flow: &Flow, to: &str, error: &str) {
    assert!(to.starts_with(&format!("{RP}?")), "{to}");
    let q = query_of(to);
    assert_eq!(q["error"], error, "{to}");
    assert_eq!(q["state"], flow.state);
    assert_eq!(q["iss"], server.issuer);
    assert!(!q.contains_key("code"));
}

#[tokio::test]
async fn pkce_is_required_s256_only_and_checked_at_the_token_endpoint() {
    let server = setup().await;
    let mut b = browser(&server);
    let flow = Flow::new("web");
    for over in [
        vec![("code_challenge", "")],
        vec![("code_challenge_method", "")],
        vec![("code_challenge_method", "plain")],
        vec![("code_challenge", "short")],
        vec![("response_type", "token")],
        vec![("response_mode", "fragment")],
        vec![("prompt", "sometimes")],
        vec![("request", "eyJhbGciOiJub25lIn0.e30.")],
    ] {
        let to = b.get(&flow.url_with(&over)).await.away();
        let expected = match over[0] {
            ("response_type", _) => "unsupported_response_type",
            ("request", _) => "request_not_supported",
            _ => "invalid_request",
        };
        assert_error_redirect(&server, &flow, &to, expected);
    }
    let to = b
        .get(&flow.url_with(&[("scope", "openid admin")]))
        .await
        .away();
    assert_error_redirect(&server, &flow, &to, "invalid_scope");

    let to = sign_in_and_consent(&mut b, &flow).await;
    let code = code_of(&server, &flow, &to);
    let http = server.http();
    let wrong = Flow {
        verifier: pkce().0,
        ..Flow::new("web")
    };
    for (form, error) in [
        (wrong.redeem(&code), "invalid_grant"),
        (
            flow.redeem(&code).replace("&code_verifier=", "&x="),
            "invalid_request",
        ),
        (
            flow.redeem(&code)
                .replace(&form_encode(RP), &form_encode("http://127.0.0.1:9/cb")),
            "invalid_grant",
        ),
    ] {
        let r = http.post_form("/oauth2/token", &[], &form).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.json()["error"], error, "{form}");
    }
    // None of those burned the code: the right verifier still redeems it.
    http.post_form("/oauth2/token", &[], &flow.redeem(&code))
        .await
        .token_json();
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_it_issued() {
    let server = setup().await;
    let mut b = browser(&server);
    let flow = Flow::new("web");
    let to = sign_in_and_consent(&mut b, &flow).await;
    let code = code_of(&server, &flow, &to);
    let http = server.http();
    let body = http
        .post_form("/oauth2/token", &[], &flow.redeem(&code))
        .await
        .token_json();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let access = body["access_token"].as_str().unwrap().to_owned();

    let r = http
        .post_form("/oauth2/token", &[], &flow.redeem(&code))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = refresh_at(&http, &refresh).await;
    assert_eq!(
        r.json()["error"],
        "invalid_grant",
        "the code's refresh token is dead"
    );
    let r = http.get_bearer("/oauth2/userinfo", &access).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the code's access token is revoked"
    );
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn a_code_presented_by_another_client_is_refused_without_burning_it() {
    let server = setup().await;
    server.create_client(web_client("other")).await;
    let mut b = browser(&server);
    let flow = Flow::new("web");
    let to = sign_in_and_consent(&mut b, &flow).await;
    let code = code_of(&server, &flow, &to);
    let http = server.http();
    let thief = Flow {
        client_id: "other".into(),
        ..Flow::new("web")
    };
    let thief = Flow {
        verifier: flow.verifier.clone(),
        ..thief
    };
    let r = http
        .post_form("/oauth2/token", &[], &thief.redeem(&code))
        .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    http.post_form("/oauth2/token", &[], &flow.redeem(&code))
        .await
        .token_json();
}

#[tokio::test]
async fn the_login_and_consent_forms_refuse_a_missing_or_foreign_csrf_token() {
    let server = setup().await;
    let flow = Flow::new("web");
    let mut b = browser(&server);
    let login = b.get(&flow.url()).await.page();
    let before = server.state();

    // Another site posting the form: no CSRF cookie, or a token that is not the browser's.
    let mut attacker = browser(&server);
    let r = attacker
        .submit(&login, &[("username", USER), ("password", PASSWORD)])
        .await
        .page();
    assert_hardened_page(&r, StatusCode::FORBIDDEN);
    let r = b
        .submit(
            &login,
            &[
                ("username", USER),
                ("password", PASSWORD),
                ("csrf", "x".repeat(43).as_str()),
            ],
        )
        .await
        .page();
    assert_hardened_page(&r, StatusCode::FORBIDDEN);
    assert_eq!(server.state(), before, "no session was opened");

    let consent = b
        .submit(&login, &[("username", USER), ("password", PASSWORD)])
        .await
        .page();
    let before = server.state();
    let forged = attacker
        .submit(&consent, &[("decision", "allow")])
        .await
        .page();
    assert_hardened_page(&forged, StatusCode::FORBIDDEN);
    assert_eq!(server.state(), before, "no consent was recorded");
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_throttled() {
    let server = setup().await;
    let flow = Flow::new("web");
    let mut b = browser(&server);
    let login = b.get(&flow.url()).await.page();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = b
            .submit(
                &login,
                &[("username", USER), ("password", "wrong password")],
            )
            .await
            .page();
        statuses.push(r.status);
        assert!(String::from_utf8_lossy(&r.body).contains("role=\"alert\""));
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // While locked, even the right password is refused (nothing is checked).
    let r = b
        .submit(&login, &[("username", USER), ("password", PASSWORD)])
        .await
        .page();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!b.jar.keys().any(|k| k.contains("session")));
}

#[tokio::test]
async fn prompt_none_max_age_and_prompt_login_follow_openid_connect() {
    let server = setup().await;
    let flow = Flow::new("web");
    let mut b = browser(&server);
    let to = b.get(&flow.url_with(&[("prompt", "none")])).await.away();
    assert_error_redirect(&server, &flow, &to, "login_required");

    let login = b.get(&flow.url()).await.page();
    let consent = b
        .submit(&login, &[("username", USER), ("password", PASSWORD)])
        .await
        .page();
    assert_hardened_page(&consent, StatusCode::OK);
    // Signed in, not consented: prompt=none cannot ask.
    let to = b.get(&flow.url_with(&[("prompt", "none")])).await.away();
    assert_error_redirect(&server, &flow, &to, "consent_required");
    b.submit(&consent, &[("decision", "allow")]).await.away();
    let to = b.get(&flow.url_with(&[("prompt", "none")])).await.away();
    code_of(&server, &flow, &to);
    // prompt=login asks for the password again, then goes on (no loop).
    let again = b.get(&flow.url_with(&[("prompt", "login")])).await.page();
    assert!(String::from_utf8_lossy(&again.body).contains("type=\"password\""));
    let to = b
        .submit(&again, &[("username", USER), ("password", PASSWORD)])
        .await
        .away();
    code_of(&server, &flow, &to);
    // So does max_age=0; a max_age the session is within does not.
    let again = b.get(&flow.url_with(&[("max_age", "0")])).await.page();
    assert!(String::from_utf8_lossy(&again.body).contains("type=\"password\""));
    let to = b
        .submit(&again, &[("username", USER), ("password", PASSWORD)])
        .await
        .away();
    code_of(&server, &flow, &to);
    let to = b.get(&flow.url_with(&[("max_age", "3600")])).await.away();
    code_of(&server, &flow, &to);
    // Denying consent tells the client access_denied.
    let fresh = b.get(&flow.url_with(&[("prompt", "consent")])).await.page();
    let to = b.submit(&fresh, &[("decision", "deny")]).await.away();
    assert_error_redirect(&server, &flow, &to, "access_denied");
}

#[tokio::test]
async fn signing_out_revokes_the_sessions_grants_and_its_cookie_stops_working() {
    let server = setup().await;
    let flow = Flow::new("web");
    let mut b = browser(&server);
    let to = sign_in_and_consent(&mut b, &flow).await;
    let code = code_of(&server, &flow, &to);
    let http = server.http();
    let body = http
        .post_form("/oauth2/token", &[], &flow.redeem(&code))
        .await
        .token_json();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let id_token = body["id_token"].as_str().unwrap().to_owned();
    let stolen_cookies = b.jar.clone();
    // A second code, issued before the sign-out and presented after it.
    let pending = match b.get(&flow.url()).await {
        writ_tests::browser::Landed::Away(to) => code_of(&server, &flow, &to),
        writ_tests::browser::Landed::Page(p) => panic!("not signed in: {}", p.status),
    };
    let set = std::sync::Arc::new(writ_revocation_client::RevocationSet::new());
    let _watcher = server.watcher(set.clone()).await;

    // RP-initiated logout: a confirmation form, then back to the registered URI with state.
    let confirm = b
        .get(&format!(
            "/oauth2/logout?client_id=web&post_logout_redirect_uri={}&state=bye",
            form_encode(RP_LOGOUT)
        ))
        .await
        .page();
    assert_hardened_page(&confirm, StatusCode::OK);
    let to = b.submit(&confirm, &[]).await.away();
    assert_eq!(to, format!("{RP_LOGOUT}?state=bye"));
    assert!(
        !b.jar.keys().any(|k| k.contains("session")),
        "the cookie is cleared"
    );

    let r = refresh_at(&http, &refresh).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = http
        .post_form("/oauth2/token", &[], &flow.redeem(&pending))
        .await;
    assert_eq!(
        r.json()["error"],
        "invalid_grant",
        "the code's session ended"
    );
    let r = http.get_bearer("/oauth2/userinfo", &access).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The revocation reached the feed every guard follows.
    let verified = crate::grants::verifier_for(&server, "orders")
        .await
        .verify(&access)
        .unwrap();
    eventually(
        std::time::Duration::from_secs(10),
        "a guard's set revokes the grant",
        || {
            set.check(&writ_revocation_client::TokenFacts::of(&verified))
                == Some(writ_token::RevocationKind::GrantId)
        },
    )
    .await;

    // The old cookie, replayed from another browser, opens nothing.
    let mut other = browser(&server);
    other.jar = stolen_cookies;
    let page = other.get(&flow.url()).await.page();
    assert!(String::from_utf8_lossy(&page.body).contains("type=\"password\""));

    // A hint of another client than the one named: not followed either.
    let confirm = b
        .get(&format!(
            "/oauth2/logout?client_id=other&id_token_hint={}&post_logout_redirect_uri={}",
            form_encode(&id_token),
            form_encode(RP_LOGOUT)
        ))
        .await
        .page();
    let page = b.submit(&confirm, &[]).await.page();
    assert_hardened_page(&page, StatusCode::OK);
    // An unregistered post-logout URI is not followed.
    let confirm = b
        .get(&format!(
            "/oauth2/logout?client_id=web&post_logout_redirect_uri={}",
            form_encode("https://evil.example/")
        ))
        .await
        .page();
    let page = b.submit(&confirm, &[]).await.page();
    assert_hardened_page(&page, StatusCode::OK);
}

#[tokio::test]
async fn discovery_advertises_what_sign_in_supports() {
    let server = setup().await;
    let r = server.http().get("/.well-known/openid-configuration").await;
    let m = r.json();
    let base = server.issuer.trim_end_matches('/');
    assert_eq!(
        m["authorization_endpoint"],
        format!("{base}/oauth2/authorize")
    );
    assert_eq!(m["userinfo_endpoint"], format!("{base}/oauth2/userinfo"));
    assert_eq!(m["end_session_endpoint"], format!("{base}/oauth2/logout"));
    assert_eq!(m["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        m["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(m["request_uri_parameter_supported"], false);
    assert!(
        m["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&"authorization_code".into())
    );
    assert!(
        m["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&"openid".into())
    );
}

#[tokio::test]
async fn a_session_survives_a_restart_and_ends_with_its_lifetime() {
    let clock = writ_token::ManualClock::starting_now();
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    server.create_user(USER, PASSWORD, "orders.read").await;
    server.create_client(web_client("web")).await;
    let flow = Flow::new("web");
    let mut b = browser(&server);
    sign_in_and_consent(&mut b, &flow).await;

    // Restarted (new ports, same store): the browser is still signed in.
    let jar = b.jar.clone();
    let server = server.restart().await;
    let mut b = browser(&server);
    b.jar = jar;
    let to = b.get(&flow.url()).await.away();
    redeemed(&server, &flow, &to).await;

    // A code lives a minute: an hour later it is refused.
    let to = b.get(&flow.url()).await.away();
    let late = code_of(&server, &flow, &to);
    clock.advance(3600);
    let r = server
        .http()
        .post_form("/oauth2/token", &[], &flow.redeem(&late))
        .await;
    assert_eq!(r.json()["error"], "invalid_grant");

    // Past the session's lifetime (12 hours) the password is asked again, and pruning removes
    // the session, its index entry, its listed grant and the redeemed code's mark.
    clock.advance(12 * 3600);
    let page = b.get(&flow.url()).await.page();
    assert!(String::from_utf8_lossy(&page.body).contains("type=\"password\""));
    assert!(server.engine.prune_expired().await.unwrap() >= 3);
    let left: Vec<_> = server
        .state()
        .into_keys()
        .filter(|(tree, key)| *tree == "sign_in" && !key.starts_with(b"k/"))
        .collect();
    assert!(
        left.is_empty(),
        "only consents outlive their session: {left:?}"
    );
}

/// Pushes `flow`'s request (RFC 9126) as the public client; returns the response.
async fn push(
    server: &TestServer,
    flow: &Flow,
    over: &[(&str, &str)],
) -> writ_tests::http_client::HttpResponse {
    let url = flow.url_with(over);
    let form = url.split_once('?').unwrap().1;
    server.http().post_form("/oauth2/par", &[], form).await
}

fn request_uri_url(client_id: &str, request_uri: &str) -> String {
    format!(
        "/oauth2/authorize?client_id={}&request_uri={}",
        form_encode(client_id),
        form_encode(request_uri)
    )
}

#[tokio::test]
async fn a_pushed_request_signs_in_and_is_spent_by_its_code() {
    let server = setup().await;
    let flow = Flow::new("web");
    // Signed in and consented already: the pushed prompt must ask for both again, once.
    let mut b = browser(&server);
    sign_in_and_consent(&mut b, &flow).await;
    let r = push(&server, &flow, &[("prompt", "login consent")]).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    let pushed = r.json();
    let request_uri = pushed["request_uri"].as_str().unwrap().to_owned();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    assert_eq!(pushed["expires_in"], 300);

    // Parameters beside request_uri are not the pushed request's: ignored.
    let url = format!(
        "{}&redirect_uri={}&scope=openid",
        request_uri_url("web", &request_uri),
        form_encode("https://evil.example/")
    );
    let login = b.get(&url).await.page();
    assert!(String::from_utf8_lossy(&login.body).contains("type=\"password\""));
    let consent = b
        .submit(&login, &[("username", USER), ("password", PASSWORD)])
        .await
        .page();
    assert!(String::from_utf8_lossy(&consent.body).contains("Allow access?"));
    // prompt=login consent was answered by the sign-in and the consent since the push: no loop.
    let to = b.submit(&consent, &[("decision", "allow")]).await.away();
    redeemed(&server, &flow, &to).await;

    // Spent: the same request_uri again is refused, and shown, not redirected.
    assert_not_redirected(b.get(&request_uri_url("web", &request_uri)).await);
    // Another client's, or a made-up one: the same.
    let r = push(&server, &flow, &[]).await;
    let other = r.json()["request_uri"].as_str().unwrap().to_owned();
    server.create_client(web_client("other")).await;
    assert_not_redirected(b.get(&request_uri_url("other", &other)).await);
    assert_not_redirected(
        b.get(&request_uri_url(
            "web",
            "urn:ietf:params:oauth:request_uri:nope",
        ))
        .await,
    );
    // Still the client's own, unspent.
    let to = b.get(&request_uri_url("web", &other)).await.away();
    code_of(&server, &flow, &to);
}

#[tokio::test]
async fn a_client_required_to_push_is_refused_a_plain_request() {
    let server = setup().await;
    let mut spec = web_client("strict");
    spec.require_pushed_authorization_requests = true;
    server.create_client(spec).await;
    let flow = Flow::new("strict");
    let mut b = browser(&server);
    let to = b.get(&flow.url()).await.away();
    assert_error_redirect(&server, &flow, &to, "invalid_request");
    let r = push(&server, &flow, &[]).await;
    let request_uri = r.json()["request_uri"].as_str().unwrap().to_owned();
    let login = b.get(&request_uri_url("strict", &request_uri)).await.page();
    assert_hardened_page(&login, StatusCode::OK);
}

#[tokio::test]
async fn bad_pushed_requests_are_refused_as_rfc_json_and_store_nothing() {
    let server = setup().await;
    let (id, secret) = server
        .create_client({
            let mut c = web_client("confidential");
            c.client_type = pb_admin::ClientType::Confidential as i32;
            c
        })
        .await;
    let flow = Flow::new("web");
    let before = server.state();
    for (over, status, error) in [
        (
            vec![("redirect_uri", "https://evil.example/")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("code_challenge_method", "plain")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("request_uri", "urn:ietf:params:oauth:request_uri:x")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("response_type", "token")],
            StatusCode::BAD_REQUEST,
            "unsupported_response_type",
        ),
        (
            vec![("client_id", "nobody")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
    ] {
        let r = push(&server, &flow, &over).await;
        assert_eq!(
            r.status,
            status,
            "{over:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["error"], error, "{over:?}");
    }
    // A confidential client authenticates; a wrong secret is invalid_client.
    let conf = Flow::new(&id);
    let form = conf.url().split_once('?').unwrap().1.to_owned();
    let r = server
        .http()
        .post_form(
            "/oauth2/par",
            &[("authorization", &basic(&id, "wrong"))],
            &form,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.state(), before, "nothing was stored");
    let r = server
        .http()
        .post_form(
            "/oauth2/par",
            &[("authorization", &basic(&id, &secret))],
            &form,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_person_revokes_a_consent_on_the_account_page_and_its_grants_end() {
    let server = setup().await;
    let flow = Flow::new("web");
    let mut b = browser(&server);
    let to = sign_in_and_consent(&mut b, &flow).await;
    let body = redeemed(&server, &flow, &to).await;
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    let account = b.get("/oauth2/account").await.page();
    assert_hardened_page(&account, StatusCode::OK);
    let html = String::from_utf8_lossy(&account.body).into_owned();
    assert!(
        html.contains("The web app") && html.contains("orders.read"),
        "{html}"
    );

    // Another site cannot revoke it.
    let before = server.state();
    let forged = browser(&server).submit(&account, &[]).await.page();
    assert_hardened_page(&forged, StatusCode::FORBIDDEN);
    assert_eq!(server.state(), before);

    let after = b.submit(&account, &[]).await.page();
    assert!(String::from_utf8_lossy(&after.body).contains("None."));
    let r = refresh_at(&server.http(), &refresh).await;
    assert_eq!(
        r.json()["error"],
        "invalid_grant",
        "the consent's grant ended"
    );
    // The client must ask again.
    let page = b.get(&flow.url()).await.page();
    assert!(String::from_utf8_lossy(&page.body).contains("Allow access?"));
    // Without a session, the account page asks to sign in first, and comes back.
    let mut fresh = browser(&server);
    let login = fresh.get("/oauth2/account").await.page();
    let account = fresh
        .submit(&login, &[("username", USER), ("password", PASSWORD)])
        .await
        .page();
    assert!(String::from_utf8_lossy(&account.body).contains("Your account"));
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A relying party on loopback keeping what is POSTed to each of its back-channel `paths`;
/// serves until the handle is aborted or the test ends.
async fn back_channels(
    paths: &[&str],
) -> (
    std::net::SocketAddr,
    Vec<Received>,
    tokio::task::JoinHandle<()>,
) {
    let mut app = axum::Router::new();
    let mut kept = Vec::new();
    for path in paths {
        let into = Received::default();
        kept.push(into.clone());
        app = app.route(
            path,
            axum::routing::post(move |body: String| {
                let into = into.clone();
                async move {
                    into.lock().unwrap().push(body);
                    StatusCode::OK
                }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, kept, serving)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_posts_a_logout_token_to_each_client_with_a_back_channel() {
    let server = setup().await;
    let (addr, kept, rp) = back_channels(&["/backchannel", "/other"]).await;
    let (received, elsewhere) = (kept[0].clone(), kept[1].clone());
    let mut spec = web_client("bc");
    spec.backchannel_logout_uri = format!("http://{addr}/backchannel");
    server.create_client(spec).await;
    // A client with a back channel that this session never signed in to.
    let mut spec = web_client("bystander");
    spec.backchannel_logout_uri = format!("http://{addr}/other");
    server.create_client(spec).await;

    // Signed in to `bc` and to `web` (which has no back channel) in one session.
    let mut b = browser(&server);
    let flow = Flow::new("bc");
    let to = sign_in_and_consent(&mut b, &flow).await;
    let body = redeemed(&server, &flow, &to).await;
    let id = writ_token::decode_unverified(body["id_token"].as_str().unwrap())
        .unwrap()
        .claims
        .unwrap();
    let web = Flow::new("web");
    let consent = b.get(&web.url()).await.page();
    b.submit(&consent, &[("decision", "allow")]).await.away();

    let confirm = b.get("/oauth2/logout").await.page();
    b.submit(&confirm, &[]).await.page();
    eventually(
        std::time::Duration::from_secs(10),
        "the back channel is called",
        || !received.lock().unwrap().is_empty(),
    )
    .await;
    let form = received.lock().unwrap()[0].clone();
    let token = writ_tests::browser::query_of(&format!("?{form}"))["logout_token"].clone();
    let verifier = writ_token::TokenVerifier::new(
        writ_token::VerifierConfig::new(vec![server.issuer.clone()], None),
        (*server.engine.public_keys()).clone(),
        writ_token::system_clock(),
    );
    let jws = verifier.verify_jws(&token).unwrap();
    assert_eq!(jws.header.typ.as_deref(), Some("logout+jwt"));
    let claims: serde_json::Value = serde_json::from_slice(&jws.payload).unwrap();
    assert_eq!(claims["iss"], server.issuer.as_str());
    assert_eq!(claims["aud"], "bc");
    assert_eq!(claims["sid"], id["sid"], "the session its ID token named");
    assert_eq!(claims["sub"], id["sub"]);
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(
        claims.get("nonce").is_none(),
        "Back-Channel Logout section 2.4"
    );
    assert!(claims["jti"].is_string());
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(iat <= exp && exp - iat <= 120);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(received.lock().unwrap().len(), 1, "one token, once");
    assert!(
        elsewhere.lock().unwrap().is_empty(),
        "only the session's clients"
    );

    // Another user signing in in the same browser ends the first one's session: `bc` hears.
    server.create_user("bob", PASSWORD, "orders.read").await;
    let mut b = browser(&server);
    let login = b.get(&flow.url()).await.page();
    let to = b
        .submit(&login, &[("username", USER), ("password", PASSWORD)])
        .await
        .away();
    // Redeemed: a client hears of a session once it holds an ID token naming it.
    redeemed(&server, &flow, &to).await;
    let again = b.get(&flow.url_with(&[("prompt", "login")])).await.page();
    b.submit(&again, &[("username", "bob"), ("password", PASSWORD)])
        .await
        .page();
    eventually(
        std::time::Duration::from_secs(10),
        "the back channel hears of the ended session",
        || received.lock().unwrap().len() == 2,
    )
    .await;
    rp.abort();
    // Discovery says so.
    let m = server
        .http()
        .get("/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(m["backchannel_logout_supported"], true);
    assert_eq!(m["backchannel_logout_session_supported"], true);
}

/// A refresh of the public client `web`.
/// A fresh DPoP proof by `key` for a POST to the token endpoint (a proof is good once).
fn token_endpoint_proof(server: &TestServer, key: &writ_token::SigningKey) -> String {
    writ_token::sign_proof(
        key,
        &writ_token::ProofClaimsOut {
            htm: "POST",
            htu: &format!("{}/oauth2/token", server.issuer),
            iat: writ_token::system_clock().now(),
            access_token: None,
            nonce: None,
        },
    )
}

async fn refresh_at(
    http: &writ_tests::http_client::HttpClient,
    refresh: &str,
) -> writ_tests::http_client::HttpResponse {
    http.post_form(
        "/oauth2/token",
        &[],
        &format!(
            "grant_type=refresh_token&client_id=web&refresh_token={}",
            form_encode(refresh)
        ),
    )
    .await
}

/// [`USER`]'s live sessions, as the admin API lists them.
async fn sessions_of(server: &TestServer) -> Vec<pb_admin::Session> {
    server
        .admin()
        .await
        .list_user_sessions(pb_admin::ListUserSessionsRequest {
            username: USER.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sessions
}

/// A redirect straight back to the client: the session is live and needs no interaction.
async fn signs_in_silently(server: &TestServer, b: &mut Browser, flow: &Flow) -> bool {
    match b.get(&flow.url()).await {
        writ_tests::browser::Landed::Away(to) => {
            code_of(server, flow, &to);
            true
        }
        writ_tests::browser::Landed::Page(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_lists_and_ends_a_persons_sessions() {
    let server = setup().await;
    let mut admin = server.admin().await;
    let flow = Flow::new("web");
    // Two browsers, two sessions; the first redeems its code.
    let mut first = browser(&server);
    let to = sign_in_and_consent(&mut first, &flow).await;
    let tokens = server
        .http()
        .post_form(
            "/oauth2/token",
            &[],
            &flow.redeem(&code_of(&server, &flow, &to)),
        )
        .await
        .token_json();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let sid = writ_token::decode_unverified(tokens["id_token"].as_str().unwrap())
        .unwrap()
        .claims
        .unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut second = browser(&server);
    let login = second.get(&flow.url()).await.page();
    let to = second
        .submit(&login, &[("username", USER), ("password", PASSWORD)])
        .await
        .away();
    // A session lists a client once the client redeemed a code of it.
    assert!(
        sessions_of(&server)
            .await
            .iter()
            .any(|s| s.client_ids.is_empty()),
        "not before"
    );
    redeemed(&server, &flow, &to).await;

    let sessions = sessions_of(&server).await;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert!(sessions.iter().any(|s| s.sid == sid));
    for s in &sessions {
        assert_eq!(s.client_ids, vec!["web".to_owned()]);
        assert_eq!(s.amr, vec!["pwd".to_owned()]);
        assert!(s.expire_time.unwrap().seconds > s.auth_time.unwrap().seconds);
    }

    // Bad inputs: clear statuses, nothing ended.
    let end = |username: &str, sid: &str| pb_admin::EndUserSessionsRequest {
        username: username.into(),
        sid: sid.into(),
    };
    for (req, code) in [
        (end("nobody", ""), tonic::Code::NotFound),
        (end(USER, "no-such-sid"), tonic::Code::NotFound),
        (end(USER, "bad sid"), tonic::Code::InvalidArgument),
        (end("", ""), tonic::Code::InvalidArgument),
    ] {
        let e = admin.end_user_sessions(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
    }
    assert_eq!(sessions_of(&server).await.len(), 2);

    // One session, by its sid: its refresh token stops working; the other browser stays in.
    let r = admin
        .end_user_sessions(end(USER, &sid))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.ended, 1);
    let refreshed = refresh_at(&server.http(), &refresh).await;
    assert_eq!(refreshed.json()["error"], "invalid_grant");
    assert!(!signs_in_silently(&server, &mut first, &flow).await);
    assert!(signs_in_silently(&server, &mut second, &flow).await);
    let records = server.settled_audit_records().await;
    let ended: Vec<_> = records
        .iter()
        .filter(|r| r.kind == "session_ended")
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].actor, "admin", "the administrator, not the person");

    // Every session: the second browser is signed out too.
    let r = admin.end_user_sessions(end(USER, "")).await.unwrap();
    assert_eq!(r.into_inner().ended, 1);
    assert!(sessions_of(&server).await.is_empty());
    assert!(!signs_in_silently(&server, &mut second, &flow).await);

    // A password reset ends the sessions it cut off, and their clients hear of it.
    let (addr, kept, _rp) = back_channels(&["/backchannel"]).await;
    let received = kept[0].clone();
    let mut spec = web_client("bc");
    spec.backchannel_logout_uri = format!("http://{addr}/backchannel");
    server.create_client(spec).await;
    let bc = Flow::new("bc");
    let mut third = browser(&server);
    let to = sign_in_and_consent(&mut third, &bc).await;
    redeemed(&server, &bc, &to).await;
    assert_eq!(sessions_of(&server).await.len(), 1);
    admin
        .set_user_password(pb_admin::SetUserPasswordRequest {
            username: USER.into(),
            password: "another correct horse".into(),
        })
        .await
        .unwrap();
    // Removed from the store, not only refused: no session, index entry or grant listing left.
    let left: Vec<_> = server
        .state()
        .into_keys()
        .filter(|(tree, key)| {
            *tree == "sign_in"
                && [&b"s/"[..], b"v/", b"q/"]
                    .iter()
                    .any(|p| key.starts_with(p))
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
    eventually(
        std::time::Duration::from_secs(10),
        "the back channel hears of the password reset",
        || received.lock().unwrap().len() == 1,
    )
    .await;
    assert!(received.lock().unwrap()[0].starts_with("logout_token="));
    assert!(!signs_in_silently(&server, &mut third, &bc).await);
}

/// RFC 9449 section 5.2: a public client registered with `dpop_bound_access_tokens` gets no
/// token without a proof (its refresh tokens are never bearer ones); the refusal spends
/// nothing, so the same code still redeems with a proof.
#[tokio::test]
async fn a_client_registered_dpop_bound_gets_no_token_without_a_proof() {
    use writ_token::{Algorithm, SigningKey};
    let server = setup().await;
    server
        .create_client(pb_admin::Client {
            dpop_bound_access_tokens: true,
            ..web_client("bound-web")
        })
        .await;
    let mut b = browser(&server);
    let flow = Flow::new("bound-web");
    let to = sign_in_and_consent(&mut b, &flow).await;
    let code = code_of(&server, &flow, &to);
    let http = server.http();
    let r = http
        .post_form("/oauth2/token", &[], &flow.redeem(&code))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let refused = r.json();
    assert_eq!(refused["error"], "invalid_request", "{refused}");
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .contains("DPoP"),
        "{refused}"
    );
    let key = SigningKey::generate(Algorithm::ES256, "app").unwrap();
    let proof = token_endpoint_proof(&server, &key);
    let body = http
        .post_form("/oauth2/token", &[("dpop", &proof)], &flow.redeem(&code))
        .await
        .token_json();
    assert_eq!(body["token_type"], "DPoP");
    let refresh = body["refresh_token"].as_str().unwrap();
    let form = format!(
        "grant_type=refresh_token&client_id=bound-web&refresh_token={}",
        form_encode(refresh)
    );
    let r = http.post_form("/oauth2/token", &[], &form).await;
    assert_eq!(
        r.json()["error"],
        "invalid_dpop_proof",
        "bound, like the token"
    );
    // The registration says so through the admin API.
    let got = server
        .admin()
        .await
        .get_client(pb_admin::GetClientRequest {
            client_id: "bound-web".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap();
    assert!(got.dpop_bound_access_tokens);

    // A confidential client so registered: no bearer token by client_credentials, nor by
    // token exchange (which carries no proof).
    let (svc, secret) = server
        .create_client(pb_admin::Client {
            dpop_bound_access_tokens: true,
            ..service_spec("bound-svc", "orders.read", &["orders"])
        })
        .await;
    server
        .assert_token_refused_unchanged(
            cc(&svc, &secret),
            tonic::Code::InvalidArgument,
            "invalid_request",
        )
        .await;
    let refused = server
        .admin()
        .await
        .authenticate_client(pb_admin::AuthenticateClientRequest {
            client_id: svc.clone(),
            client_secret: secret.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
}

/// Issue 13, part 2: a public client's refresh token, issued with a DPoP proof, is bound to the
/// proof's key (RFC 9449 section 5): a thief with the token but not the key gets nothing, and
/// its attempts do not count as reuse (the family lives on for its client).
#[tokio::test]
async fn a_public_clients_refresh_token_is_bound_to_its_dpop_key() {
    use writ_token::{Algorithm, SigningKey};
    let server = setup().await;
    let mut b = browser(&server);
    let flow = Flow::new("web");
    let to = sign_in_and_consent(&mut b, &flow).await;
    let code = code_of(&server, &flow, &to);
    let key = SigningKey::generate(Algorithm::ES256, "app").unwrap();
    let thief = SigningKey::generate(Algorithm::ES256, "thief").unwrap();
    let proof = |k: &SigningKey| token_endpoint_proof(&server, k);
    let http = server.http();
    let body = http
        .post_form(
            "/oauth2/token",
            &[("dpop", &proof(&key))],
            &flow.redeem(&code),
        )
        .await
        .token_json();
    assert_eq!(body["token_type"], "DPoP");
    // UserInfo checks no proof (yet): a bound token is refused there, not taken as a bearer.
    let access = body["access_token"].as_str().unwrap();
    let r = http.get_bearer("/oauth2/userinfo", access).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let form = format!(
        "grant_type=refresh_token&client_id=web&refresh_token={}",
        form_encode(&refresh)
    );
    // Without a proof, or with another key's: refused, nothing spent.
    let r = refresh_at(&http, &refresh).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_dpop_proof");
    let r = http
        .post_form("/oauth2/token", &[("dpop", &proof(&thief))], &form)
        .await;
    assert_eq!(r.json()["error"], "invalid_dpop_proof");
    // With its key: rotated, and the successor is bound to the same key.
    let body = http
        .post_form("/oauth2/token", &[("dpop", &proof(&key))], &form)
        .await
        .token_json();
    assert_eq!(body["token_type"], "DPoP");
    let next = body["refresh_token"].as_str().unwrap();
    let r = refresh_at(&http, next).await;
    assert_eq!(r.json()["error"], "invalid_dpop_proof");
    let next_form = format!(
        "grant_type=refresh_token&client_id=web&refresh_token={}",
        form_encode(next)
    );
    http.post_form("/oauth2/token", &[("dpop", &proof(&key))], &next_form)
        .await
        .token_json();
}
