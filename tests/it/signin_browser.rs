//! Sign-in in a real browser: headless Chromium (Debian's, driven over WebDriver, JavaScript
//! off) opens a test relying party's authorization URL, signs in on Writ's login page, allows
//! the consent page, and lands back on the relying party with a code, which the relying party
//! redeems with its PKCE verifier. With `WRIT_SCREENSHOTS=<dir>` the login and consent pages
//! are saved there as PNGs (the docs' screenshots come from this test).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use writ_proto::admin as pb_admin;
use writ_tests::browser::{encode_form, pkce, query_of};
use writ_tests::http_client::form_encode;
use writ_tests::webdriver::Browser;
use writ_tests::*;

/// A relying party on loopback: its callback keeps the query it was sent to.
async fn relying_party() -> (
    String,
    Arc<Mutex<Option<String>>>,
    tokio::task::JoinHandle<()>,
) {
    let landed: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = landed.clone();
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(move |axum::extract::RawQuery(q): axum::extract::RawQuery| {
            let seen = seen.clone();
            async move {
                *seen.lock().unwrap() = q;
                axum::response::Html(
                    "<!doctype html><title>Relying party</title><p>Back at the relying party.",
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/callback"), landed, task)
}

fn save_screenshot(name: &str, png: &[u8]) {
    if let Ok(dir) = std::env::var("WRIT_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_consents_and_lands_on_the_relying_party_with_a_code() {
    let server = TestServer::start().await;
    let subject = server
        .create_user("ada", "correct horse battery", "orders.read")
        .await;
    let (callback, landed, rp) = relying_party().await;
    server
        .create_client(pb_admin::Client {
            client_id: "web".into(),
            client_name: "Orders".into(),
            client_type: pb_admin::ClientType::Public as i32,
            grant_types: vec!["authorization_code".into()],
            scope: "orders.read".into(),
            audience: vec!["orders".into()],
            redirect_uris: vec![callback.clone()],
            ..Default::default()
        })
        .await;
    let (verifier, challenge) = pkce();
    let url = format!(
        "{}/oauth2/authorize?{}",
        server.http_url,
        encode_form(&[
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", &callback),
            ("scope", "openid orders.read"),
            ("state", "from-the-browser"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
    );

    let browser = Browser::start().await;
    browser.goto(&url).await;
    assert!(browser.title().await.starts_with("Sign in to Orders"));
    save_screenshot("login.png", &browser.screenshot().await);
    browser.type_into("#username", "ada").await;
    browser
        .type_into("#password", "correct horse battery")
        .await;
    browser.click("button[type=submit]").await;
    // The consent page is served at the same address as the login page: wait for its title.
    browser
        .wait_for_title(Duration::from_secs(10), |t| t.starts_with("Allow Orders"))
        .await;
    assert!(browser.url().await.contains("/oauth2/authorize"));
    save_screenshot("consent.png", &browser.screenshot().await);

    // The session cookie as the browser holds it: host-only, HttpOnly, Secure, SameSite=Lax.
    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "__Host-writ-session")
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["secure"], true);
    assert_eq!(session["sameSite"], "Lax");

    browser.click("button[value=allow]").await;
    let at = browser
        .wait_for_url(Duration::from_secs(10), |u| u.starts_with(&callback))
        .await;
    let q = query_of(&at);
    assert_eq!(q["state"], "from-the-browser");
    assert_eq!(q["iss"], server.issuer);
    let reached = landed
        .lock()
        .unwrap()
        .clone()
        .expect("the relying party was reached");
    assert_eq!(query_of(&format!("?{reached}")), q);
    drop(browser);

    // The relying party redeems the code.
    let r = server
        .http()
        .post_form(
            "/oauth2/token",
            &[],
            &format!(
                "grant_type=authorization_code&client_id=web&code={}&redirect_uri={}&code_verifier={}",
                form_encode(&q["code"]),
                form_encode(&callback),
                form_encode(&verifier)
            ),
        )
        .await;
    let body = r.token_json();
    let claims = crate::grants::verifier_for(&server, "orders")
        .await
        .verify(body["access_token"].as_str().unwrap())
        .unwrap()
        .claims;
    assert_eq!(claims.sub, subject);
    assert!(body["id_token"].is_string());
    rp.abort();
}
