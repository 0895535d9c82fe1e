//! Interoperability of sign-in: a certified OpenID Connect relying party Writ did not write
//! (panva's `openid-client`, on Node) completes discovery, the authorization code flow with PKCE,
//! ID token validation, UserInfo, refresh, single sign-on and RP-initiated logout against the
//! real server over HTTPS, trusting only the development CA. The RP is
//! tests/interop/oidc-rp/rp.mjs, installed from its lockfile with `npm ci` into the cargo target
//! directory by this test. No Node or npm, or a failed install, is a failure, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use writ_proto::admin as pb_admin;
use writ_tests::*;

use crate::interop::run;

const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn rp_dir() -> PathBuf {
    workspace_root().join("tests/interop/oidc-rp")
}

/// A directory with the RP and its dependencies installed from the lockfile, reused while its
/// stamp (a copy of the lockfile it was installed from) matches.
async fn installed() -> PathBuf {
    let lock = std::fs::read_to_string(rp_dir().join("package-lock.json")).unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oidc-rp");
    let stamp = dir.join("writ-package-lock.json");
    for f in ["package.json", "package-lock.json", "rp.mjs"] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(rp_dir().join(f), dir.join(f)).unwrap();
    }
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(&lock)
        && dir.join("node_modules/openid-client").exists()
    {
        return dir;
    }
    let _ = std::fs::remove_dir_all(dir.join("node_modules"));
    let mut cmd = Command::new("npm");
    cmd.args([
        "ci",
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
        "--loglevel=error",
    ])
    .current_dir(&dir);
    let npm = run(cmd, None, INSTALL_TIMEOUT).await;
    assert!(
        npm.status.success(),
        "npm ci could not install the relying party (it needs Node 20 and the npm registry): {npm}"
    );
    std::fs::write(&stamp, lock).unwrap();
    dir
}

#[tokio::test]
async fn openid_client_signs_in_with_pkce_validates_the_id_token_and_signs_out() {
    let dir = installed().await;
    let server = TestServer::start().await;
    let subject = server
        .create_user("grace", "a long enough password", "orders.read")
        .await;
    let redirect_uri = "https://rp.example/cb";
    let post_logout = "https://rp.example/bye";
    server
        .create_client(pb_admin::Client {
            client_id: "node-rp".into(),
            client_name: "Node RP".into(),
            client_type: pb_admin::ClientType::Public as i32,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scope: "orders.read".into(),
            audience: vec!["orders".into()],
            redirect_uris: vec![redirect_uri.into()],
            post_logout_redirect_uris: vec![post_logout.into()],
            ..Default::default()
        })
        .await;
    let scratch = tempfile::tempdir().unwrap();
    let ca = scratch.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem.as_deref().unwrap()).unwrap();
    let config = json!({
        "issuer": server.issuer,
        "client_id": "node-rp",
        "redirect_uri": redirect_uri,
        "post_logout_redirect_uri": post_logout,
        "scope": "openid profile orders.read",
        "username": "grace",
        "password": "a long enough password",
    });
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("rp.mjs"))
        .current_dir(&dir)
        .env("NODE_EXTRA_CA_CERTS", &ca)
        .env("NO_PROXY", "127.0.0.1,localhost");
    for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        cmd.env_remove(proxy);
    }
    let out: Value = run(cmd, Some(config.to_string()), SCRIPT_TIMEOUT)
        .await
        .ok()
        .json();

    assert_eq!(out["metadata"]["issuer"], server.issuer.as_str());
    assert_eq!(out["id_token_alg"], "EdDSA");
    let claims = &out["claims"];
    assert_eq!(claims["iss"], server.issuer.as_str());
    assert_eq!(claims["sub"], subject.as_str());
    assert_eq!(claims["aud"], "node-rp");
    assert_eq!(claims["preferred_username"], "grace");
    assert_eq!(out["userinfo"]["sub"], subject.as_str());
    assert_eq!(out["userinfo"]["preferred_username"], "grace");
    assert_eq!(out["scope"], "openid orders.read profile");
    assert_eq!(out["refreshed"]["has_access_token"], true);
    assert_eq!(out["refreshed"]["rotated"], true);
    assert_eq!(out["after_logout"], format!("{post_logout}?state=bye"));
    assert_eq!(
        out["refresh_after_logout"], "invalid_grant",
        "signing out ended the session's refresh tokens: {out}"
    );
}
