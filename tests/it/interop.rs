//! Interoperability: an OAuth client (authlib + requests) and a JWT library (PyJWT) that Writ did
//! not write get, introspect, revoke and verify tokens through the HTTPS facade, trusting only the
//! development CA. The Python side is tests/interop/oauth_client.py, installed from pinned
//! requirements into a venv under the cargo target directory. No Python, no venv or a failed pip
//! install is a test failure, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use writ_proto::admin::KeyPurpose;
use writ_tests::*;

use crate::grants::verifier_for;

const VENV_TIMEOUT: Duration = Duration::from_secs(120);
const PIP_TIMEOUT: Duration = Duration::from_secs(300);
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn interop_dir() -> PathBuf {
    workspace_root().join("tests/interop")
}

/// Runs a blocking command off the async runtime, so the in-process server keeps serving.
pub(crate) async fn run(mut cmd: Command, stdin: Option<String>, timeout: Duration) -> Finished {
    tokio::task::spawn_blocking(move || run_bounded(&mut cmd, stdin.as_deref(), timeout))
        .await
        .unwrap()
}

/// The venv's python, with requirements.txt installed. Reused while its stamp (a copy of the
/// requirements it was built from) matches; rebuilt otherwise. Built once per test process: the
/// tests here run in parallel, and on a fresh clone two of them building the venv at once would
/// delete it under each other.
async fn python() -> PathBuf {
    static VENV: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    VENV.get_or_init(venv_python).await.clone()
}

async fn venv_python() -> PathBuf {
    let requirements = interop_dir().join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("writ-requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    if let Err(e) = Command::new("python3").arg("--version").output() {
        panic!("the interop test needs python3 (3.9 or later, with venv) on PATH: {e}");
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "venv"]).arg(&venv);
    let created = run(cmd, None, VENV_TIMEOUT).await;
    assert!(
        created.status.success(),
        "`python3 -m venv` failed (on Debian/Ubuntu: apt-get install python3-venv): {created}"
    );
    let mut cmd = Command::new(&python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--only-binary=:all:",
        "-r",
    ])
    .arg(&requirements);
    let pip = run(cmd, None, PIP_TIMEOUT).await;
    assert!(
        pip.status.success(),
        "pip could not install {} (it needs access to PyPI): {pip}",
        requirements.display()
    );
    std::fs::write(&stamp, wanted).unwrap();
    python
}

/// Runs oauth_client.py with `config` on its standard input; returns its JSON summary.
async fn script(python: &Path, config: Value) -> Value {
    let mut cmd = Command::new(python);
    cmd.arg(interop_dir().join("oauth_client.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost");
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ] {
        cmd.env_remove(proxy);
    }
    run(cmd, Some(config.to_string()), SCRIPT_TIMEOUT)
        .await
        .ok()
        .json()
}

/// What Writ's own verifier sees in `token`, as JSON claims.
async fn writ_claims(server: &TestServer, token: &str) -> Value {
    let verified = verifier_for(server, "orders").await.verify(token).unwrap();
    serde_json::to_value(verified.claims).unwrap()
}

/// RFC 7523 client authentication by a library Writ did not write: authlib signs the
/// assertions (EdDSA and ES256, its defaults: no kid, an hour of life, the token endpoint as
/// audience) with keys Writ generated and the client registered; a replayed assertion and one
/// for another server are refused with RFC 6749's `invalid_client`.
#[tokio::test]
async fn authlib_authenticates_with_private_key_jwt_and_cannot_replay_an_assertion() {
    let python = python().await;
    let server = TestServer::start().await;
    let ca = server.data_dir().join(writ_tls::CA_CERT_FILE);
    for alg in writ_token::Algorithm::ALL {
        let id = format!("python-keys-{}", alg.name().to_lowercase());
        let key = writ_token::SigningKey::generate(alg, "k1").unwrap();
        let (_, secret) = server
            .create_client(writ_proto::admin::Client {
                token_endpoint_auth_method: "private_key_jwt".into(),
                jwks: json!({ "keys": [key.verification_key().to_jwk()] }).to_string(),
                ..service_spec(&id, "orders.read", &["orders"])
            })
            .await;
        assert_eq!(secret, "", "no secret is issued");
        let out = script(
            &python,
            json!({
                "mode": "private-key-jwt",
                "issuer": server.issuer,
                "ca": ca,
                "client_id": id,
                "alg": alg.name(),
                "private_key": key.to_pkcs8_pem().unwrap().as_str(),
                "scope": "orders.read",
                "audience": "orders",
            }),
        )
        .await;
        let tokens = out["tokens"].as_array().unwrap();
        assert_eq!(tokens.len(), 2, "{out}");
        for t in tokens {
            assert_eq!(t["claims"]["client_id"], id.as_str());
            assert_eq!(
                t["claims"],
                writ_claims(&server, t["access_token"].as_str().unwrap()).await
            );
        }
        assert_eq!(out["first"]["status"], 200, "{out}");
        for refused in ["replayed", "elsewhere"] {
            assert_eq!(out[refused]["status"], 401, "{refused}: {out}");
            assert_eq!(out[refused]["body"]["error"], "invalid_client", "{refused}");
        }
    }
}

/// RFC 7523 section 2.1 by a library Writ did not write: authlib's `AssertionSession` signs a
/// workload token (RS256, the made-up cluster's vendored key) and gets Writ tokens with the
/// JWT-bearer grant, no client authentication; a replayed assertion (the issuer is single-use)
/// and one for another audience are refused with RFC 6749's `invalid_grant`.
#[tokio::test]
async fn authlib_gets_tokens_with_the_jwt_bearer_grant_and_cannot_replay_an_assertion() {
    use crate::workloads::{CLUSTER, CLUSTER_JWKS, CLUSTER_KEY};
    let python = python().await;
    let server = TestServer::start().await;
    let ca = server.data_dir().join(writ_tls::CA_CERT_FILE);
    server
        .create_client(writ_proto::admin::Client {
            client_type: writ_proto::admin::ClientType::Public as i32,
            grant_types: vec![writ_vocabulary::grant_type::JWT_BEARER.into()],
            ..service_spec("python-workload", "orders.read", &["orders"])
        })
        .await;
    server
        .admin()
        .await
        .create_workload_issuer(writ_proto::admin::CreateWorkloadIssuerRequest {
            issuer: Some(writ_proto::admin::WorkloadIssuer {
                issuer: CLUSTER.into(),
                jwks: CLUSTER_JWKS.into(),
                audience: "writ".into(),
                single_use: true,
                policies: vec![writ_proto::admin::WorkloadPolicy {
                    subject: "system:serviceaccount:prod:*".into(),
                    client_id: "python-workload".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let out = script(
        &python,
        json!({
            "mode": "jwt-bearer",
            "issuer": server.issuer,
            "ca": ca,
            "client_id": "python-workload",
            "scope": "orders.read",
            "audience": "orders",
            "workload_issuer": CLUSTER,
            "workload_audience": "writ",
            "subject": "system:serviceaccount:prod:reports",
            "kid": "k8s-1",
            "private_key": CLUSTER_KEY,
        }),
    )
    .await;
    let tokens = out["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{out}");
    for t in tokens {
        assert_eq!(t["claims"]["sub"], "system:serviceaccount:prod:reports");
        assert_eq!(t["claims"]["client_id"], "python-workload");
        assert_eq!(
            t["claims"],
            writ_claims(&server, t["access_token"].as_str().unwrap()).await
        );
    }
    assert_eq!(out["first"]["status"], 200, "{out}");
    for refused in ["replayed", "elsewhere"] {
        assert_eq!(out[refused]["status"], 400, "{refused}: {out}");
        assert_eq!(out[refused]["body"]["error"], "invalid_grant", "{refused}");
    }
}

#[tokio::test]
async fn authlib_and_pyjwt_get_introspect_revoke_and_verify_tokens_before_and_after_es256_rotation()
{
    let python = python().await;
    let server = TestServer::start().await;
    let (id, secret) = server
        .service_client("python-app", "orders.read orders.write", &["orders"])
        .await;
    let ca = server.data_dir().join(writ_tls::CA_CERT_FILE);
    assert!(ca.exists());
    let config = |mode: &str| {
        json!({
            "mode": mode,
            "issuer": server.issuer,
            "ca": ca,
            "client_id": id,
            "client_secret": secret,
            "scope": "orders.read",
            "audience": "orders",
        })
    };

    let out = script(&python, config("issue")).await;
    assert_eq!(out["metadata"]["issuer"], server.issuer.as_str());
    assert_eq!(
        out["metadata"]["jwks_uri"],
        format!("{}/.well-known/jwks.json", server.issuer)
    );
    for method in ["client_secret_basic", "client_secret_post"] {
        let t = &out["tokens"][method];
        assert_eq!(t["header"]["typ"], "at+jwt", "{method}");
        assert_eq!(t["header"]["alg"], "EdDSA", "{method}");
        let token = t["access_token"].as_str().unwrap();
        assert_eq!(
            t["claims"],
            writ_claims(&server, token).await,
            "{method}: PyJWT and Writ's verifier see the same claims"
        );
        assert_eq!(t["claims"]["client_id"], "python-app");
        assert_eq!(t["claims"]["scope"], "orders.read");
    }
    for (case, error) in [
        ("audience", "InvalidAudienceError"),
        ("issuer", "InvalidIssuerError"),
        ("signature", "InvalidSignatureError"),
    ] {
        assert_eq!(out["refusals"][case], error, "{case}: {}", out["refusals"]);
    }
    assert_ne!(out["refusals"]["algorithm"], "accepted");

    // authlib introspected and revoked the client_secret_post token over HTTP; the gRPC
    // service agrees it is gone, and the other token is untouched.
    let i = &out["introspection"];
    assert_eq!(i["before_revoke"]["active"], true, "{i}");
    assert_eq!(i["before_revoke"]["client_id"], "python-app", "{i}");
    assert_eq!(i["after_revoke"], json!({ "active": false }), "{i}");
    let active = async |token: &Value| {
        server
            .introspect(token.as_str().unwrap(), &id, &secret)
            .await
            .active
    };
    assert!(!active(&out["tokens"]["client_secret_post"]["access_token"]).await);
    let earlier = &out["tokens"]["client_secret_basic"]["access_token"];
    assert!(active(earlier).await);

    let rotated = server.rotate_key(KeyPurpose::Jwt, "ES256").await;
    let mut config = config("after-rotation");
    config["earlier_token"] = earlier.clone();
    let out = script(&python, config).await;
    assert_eq!(out["jwks_algs"], json!(["ES256", "EdDSA"]), "both keys");
    let new = &out["new"];
    assert_eq!(new["header"]["alg"], "ES256");
    assert_eq!(new["header"]["kid"], rotated.kid.as_str());
    assert_eq!(
        new["claims"],
        writ_claims(&server, new["access_token"].as_str().unwrap()).await
    );
    assert_eq!(
        out["earlier"]["header"]["alg"], "EdDSA",
        "a token signed before the rotation still verifies"
    );
}

/// Issue 13, part 2: DPoP with a client library Writ did not write (requests-oauth2client: its
/// own keys and proofs), against a server that requires nonces (the library answers
/// `use_dpop_nonce` with the nonce it was handed) and one that does not.
#[tokio::test]
async fn requests_oauth2client_gets_dpop_bound_tokens_with_and_without_server_nonces() {
    let python = python().await;
    for nonces in [false, true] {
        let server = TestServer::start_with(Options {
            config: Box::new(move |c| c.dpop_nonce_required = nonces),
            ..Options::default()
        })
        .await;
        let (id, secret) = server
            .service_client("python-dpop", "orders.read", &["orders"])
            .await;
        let ca = server.data_dir().join(writ_tls::CA_CERT_FILE);
        let out = script(
            &python,
            json!({
                "mode": "dpop",
                "issuer": server.issuer,
                "ca": ca,
                "client_id": id,
                "client_secret": secret,
                "scope": "orders.read",
            }),
        )
        .await;
        let tokens = out["tokens"].as_array().unwrap();
        assert_eq!(tokens.len(), 2, "{out}");
        for t in tokens {
            let claims = verifier_for(&server, "orders")
                .await
                .verify(t["access_token"].as_str().unwrap())
                .unwrap()
                .claims;
            assert_eq!(
                claims.cnf.and_then(|c| c.jkt).as_deref(),
                t["jkt"].as_str(),
                "bound to the library's key (nonces: {nonces})"
            );
        }
    }
}
