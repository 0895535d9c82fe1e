//! The device authorization grant (RFC 8628): a command-line tool gets a device code and a user
//! code, a person confirms the code on the verification page in a browser, and the tool's polls
//! turn into tokens. Also `writ login`, the real binary, against a running server.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use writ_proto::admin as pb_admin;
use writ_tests::browser::{Browser, assert_hardened_page};
use writ_tests::http_client::form_encode;
use writ_tests::*;

const USER: &str = "ada";
const PASSWORD: &str = "correct horse battery";

fn cli_client(id: &str) -> pb_admin::Client {
    pb_admin::Client {
        client_id: id.into(),
        client_name: "Writ CLI".into(),
        client_type: pb_admin::ClientType::Public as i32,
        grant_types: vec![
            "urn:ietf:params:oauth:grant-type:device_code".into(),
            "refresh_token".into(),
        ],
        scope: "orders.read orders.write".into(),
        audience: vec!["orders".into()],
        ..Default::default()
    }
}

async fn setup(clock: Option<writ_token::ManualClock>) -> TestServer {
    let server = TestServer::start_with(Options {
        clock,
        ..Options::default()
    })
    .await;
    server.create_user(USER, PASSWORD, "orders.read").await;
    server.create_client(cli_client("cli")).await;
    server
}

async fn start(server: &TestServer, client_id: &str, scope: &str) -> Value {
    let r = server
        .http()
        .post_form(
            "/oauth2/device_authorization",
            &[],
            &format!("client_id={client_id}&scope={}", form_encode(scope)),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    r.json()
}

async fn poll(server: &TestServer, client_id: &str, device_code: &str) -> (StatusCode, Value) {
    let r = server
        .http()
        .post_form(
            "/oauth2/token",
            &[],
            &format!(
                "grant_type={}&client_id={client_id}&device_code={}",
                form_encode("urn:ietf:params:oauth:grant-type:device_code"),
                form_encode(device_code)
            ),
        )
        .await;
    (r.status, r.json())
}

/// Signs in through the verification link and answers `decision` on the confirmation page.
async fn confirm(
    server: &TestServer,
    link: &str,
    decision: &str,
) -> writ_tests::http_client::HttpResponse {
    let path = link
        .strip_prefix(server.issuer.trim_end_matches('/'))
        .unwrap();
    let mut b = Browser::new(server.http());
    let login = b.get(path).await.page();
    assert_hardened_page(&login, StatusCode::OK);
    let confirm = b
        .submit(&login, &[("username", USER), ("password", PASSWORD)])
        .await
        .page();
    assert_hardened_page(&confirm, StatusCode::OK);
    b.submit(&confirm, &[("decision", decision)]).await.page()
}

#[tokio::test]
async fn a_device_polls_while_a_person_confirms_its_code_then_gets_tokens_once() {
    let clock = writ_token::ManualClock::starting_now();
    let server = setup(Some(clock.clone())).await;
    let d = start(&server, "cli", "openid orders.read").await;
    let user_code = d["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9, "XXXX-XXXX");
    assert_eq!(
        d["verification_uri"],
        format!("{}/oauth2/device", server.issuer)
    );
    assert_eq!(d["interval"], 5);
    assert_eq!(d["expires_in"], 600);
    let device_code = d["device_code"].as_str().unwrap();

    let (status, body) = poll(&server, "cli", device_code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("authorization_pending"))
    );
    // Again at once: too soon.
    let (_, body) = poll(&server, "cli", device_code).await;
    assert_eq!(body["error"], "slow_down");

    // The interval grew by 5 s at the slow_down: 6 s later is still too soon.
    clock.advance(6);
    let (_, body) = poll(&server, "cli", device_code).await;
    assert_eq!(body["error"], "slow_down");
    let link = d["verification_uri_complete"].as_str().unwrap();
    let page = confirm(&server, link, "allow").await;
    assert_hardened_page(&page, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.body).contains("Your device is connected"));

    clock.advance(16);
    let (status, body) = poll(&server, "cli", device_code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "openid orders.read");
    assert!(body["id_token"].is_string() && body["refresh_token"].is_string());
    let access = body["access_token"].as_str().unwrap().to_owned();

    // A second poll with the spent code is refused and revokes what it issued.
    clock.advance(6);
    let (_, body) = poll(&server, "cli", device_code).await;
    assert_eq!(body["error"], "invalid_grant");
    let r = server.http().get_bearer("/oauth2/userinfo", &access).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn denied_expired_foreign_and_wrong_codes_get_their_own_answers() {
    let clock = writ_token::ManualClock::starting_now();
    let server = setup(Some(clock.clone())).await;
    server.create_client(cli_client("other")).await;

    let d = start(&server, "cli", "orders.read").await;
    confirm(
        &server,
        d["verification_uri_complete"].as_str().unwrap(),
        "deny",
    )
    .await;
    let (_, body) = poll(&server, "cli", d["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "access_denied");

    let d = start(&server, "cli", "orders.read").await;
    let device_code = d["device_code"].as_str().unwrap();
    let (_, body) = poll(&server, "other", device_code).await;
    assert_eq!(
        body["error"], "invalid_grant",
        "another client's device code"
    );
    clock.advance(601);
    let (_, body) = poll(&server, "cli", device_code).await;
    assert_eq!(body["error"], "expired_token");

    // More than the client may have; a client not registered for the grant.
    let r = server
        .http()
        .post_form(
            "/oauth2/device_authorization",
            &[],
            "client_id=cli&scope=admin",
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_scope");
    let (id, _) = server
        .service_client("svc", "orders.read", &["orders"])
        .await;
    let r = server
        .http()
        .post_form(
            "/oauth2/device_authorization",
            &[],
            &format!("client_id={id}"),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a confidential client without its secret"
    );

    // A wrong code typed on the page: asked again, not shown anything.
    let mut b = Browser::new(server.http());
    let login = b.get("/oauth2/device?user_code=BCDF-GHJK").await.page();
    let page = b
        .submit(&login, &[("username", USER), ("password", PASSWORD)])
        .await
        .page();
    assert_hardened_page(&page, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&page.body).contains("not valid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writ_login_prints_a_link_waits_for_the_person_and_prints_the_tokens() {
    let server = setup(None).await;
    let scratch = tempfile::tempdir().unwrap();
    let ca = scratch.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem.as_deref().unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_writ-under-test"))
        .args(["login", "--server", &server.grpc_url, "--client-id", "cli"])
        .args(["--scope", "openid orders.read"])
        .arg("--ca")
        .arg(&ca)
        .env("WRIT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The link, from standard error (bounded: the child is killed below on any failure).
    // Standard error is read to its end on its own thread (closing it early would make the
    // CLI's next line fail); the link is passed on as soon as it appears.
    let stderr = child.stderr.take().unwrap();
    let (link_tx, link_rx) = tokio::sync::oneshot::channel();
    let stderr_text = std::thread::spawn(move || {
        let mut link_tx = Some(link_tx);
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(link) = line
                .split_whitespace()
                .find(|w| w.contains("/oauth2/device?"))
                && let Some(tx) = link_tx.take()
            {
                let _ = tx.send(link.to_owned());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let link = tokio::time::timeout(Duration::from_secs(30), link_rx)
        .await
        .expect("writ login prints a link within 30 s")
        .expect("a verification link");
    confirm(&server, &link, "allow").await;
    let stdout = child.stdout.take().unwrap();
    let finished = tokio::task::spawn_blocking(move || {
        let status = writ_tests::wait_bounded(&mut child, Duration::from_secs(30));
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut out = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut out).unwrap();
        (status, out)
    });
    let (status, out) = tokio::time::timeout(Duration::from_secs(40), finished)
        .await
        .unwrap()
        .unwrap();
    let errors = stderr_text.join().unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "writ login: {status:?} {out} {errors}"
    );
    let tokens: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(tokens["scope"], "openid orders.read");
    let claims = crate::grants::verifier_for(&server, "orders")
        .await
        .verify(tokens["access_token"].as_str().unwrap())
        .unwrap()
        .claims;
    assert_eq!(claims.client_id, "cli");
    assert!(tokens["id_token"].is_string());

    // The session that confirmed the code, as an administrator sees and ends it with the CLI.
    let admin = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_writ-under-test"))
            .args(["admin", "--server", &server.grpc_url])
            .args(["--admin-server", &server.admin_url])
            .arg("--ca")
            .arg(&ca)
            .args(["user"])
            .args(args)
            .env("WRIT_ADMIN_TOKEN", &server.admin_credential)
            .env("WRIT_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "writ admin user {args:?}: {out:?}");
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let sessions = admin(&["sessions", USER]);
    let sessions = sessions["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["client_ids"], serde_json::json!(["cli"]));
    let sid = sessions[0]["sid"].as_str().unwrap();
    assert_eq!(admin(&["end-sessions", USER, "--sid", sid])["ended"], 1);
    assert_eq!(
        admin(&["sessions", USER])["sessions"],
        serde_json::json!([])
    );
    // Ending every session is said explicitly: neither an empty --sid nor nothing will do.
    for args in [
        &["end-sessions", USER][..],
        &["end-sessions", USER, "--sid", ""],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_writ-under-test"))
            .args(["admin", "user"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "a usage error: {out:?}");
    }
    assert_eq!(admin(&["end-sessions", USER, "--all"])["ended"], 0);
}
