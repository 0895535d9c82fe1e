//! The real `writ` binary as a separate process: `writ up`, the client commands, exit codes,
//! signals, and durability across `kill -9`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::authz::{IntrospectRequest, RevokeRequest};
use writ_tests::{Finished, http_get, run_bounded, wait_bounded};

const WRIT: &str = env!("CARGO_BIN_EXE_writ-under-test");
/// Bound on `writ up` becoming ready, and on any single CLI command.
const READY: Duration = Duration::from_secs(30);
const COMMAND: Duration = Duration::from_secs(30);

/// A `writ` command with no WRIT_* settings inherited from the environment.
fn writ_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(WRIT);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WRIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("WRIT_LOG", "warn").args(args);
    cmd
}

/// `writ up` on `data_dir`, every port picked free.
fn up_command(data_dir: &Path) -> Command {
    let mut cmd = writ_command(&["up"]);
    for port in [
        "--authz-port",
        "--authz-http-port",
        "--admin-port",
        "--gateway-port",
        "--gateway-http-port",
        "--authz-mtls-port",
        "--revocation-port",
        "--sts-port",
        "--sts-http-port",
    ] {
        cmd.args([port, "0"]);
    }
    cmd.args(["--ops-listen", "127.0.0.1:0"]);
    cmd.arg("--data-dir").arg(data_dir);
    cmd
}

/// Runs `writ <args>` with no server settings.
fn writ(args: &[&str]) -> Finished {
    run_bounded(&mut writ_command(args), None, COMMAND)
}

/// `writ up` as a child process on ephemeral loopback ports. Killed on drop; its output goes to
/// log files that are printed if the test fails.
struct WritUp {
    child: Child,
    data_dir: PathBuf,
    logs: tempfile::TempDir,
    grpc: String,
    /// The STS's gRPC URL.
    sts: String,
    http: String,
    admin: String,
    issuer: String,
    /// The operations endpoint (`/metrics`, `/livez`, `/readyz`), plain HTTP.
    ops: String,
}

impl WritUp {
    /// Starts `writ up` on `data_dir` and waits (bounded) for its endpoints.json.
    fn start(data_dir: &Path) -> WritUp {
        Self::start_with(data_dir, &[])
    }

    /// Starts `writ up` with extra flags.
    fn start_with(data_dir: &Path, flags: &[&str]) -> WritUp {
        let logs = tempfile::tempdir().unwrap();
        let child = up_command(data_dir)
            .args(flags)
            .env("WRIT_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(File::create(logs.path().join("stdout")).unwrap())
            .stderr(File::create(logs.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut up = WritUp {
            child,
            data_dir: data_dir.to_path_buf(),
            logs,
            grpc: String::new(),
            sts: String::new(),
            http: String::new(),
            admin: String::new(),
            issuer: String::new(),
            ops: String::new(),
        };
        // A previous process on this directory left its own endpoints.json: wait for ours.
        let pid = u64::from(up.child.id());
        let path = data_dir.join(writ::platform::ENDPOINTS_FILE);
        let deadline = Instant::now() + READY;
        loop {
            if let Some(status) = up.child.try_wait().unwrap() {
                panic!("writ up exited early with {status}\n{}", up.logs());
            }
            let endpoints = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .filter(|e| e["pid"].as_u64() == Some(pid));
            if let Some(e) = endpoints {
                assert_eq!(e["tls"], true, "TLS is on by default");
                up.grpc = e["authz_grpc"].as_str().unwrap().to_owned();
                up.sts = e["sts_grpc"].as_str().unwrap_or_default().to_owned();
                up.http = e["authz_http"].as_str().unwrap().to_owned();
                up.admin = e["authz_admin"].as_str().unwrap().to_owned();
                up.issuer = e["issuer"].as_str().unwrap().to_owned();
                up.ops = e["ops"].as_str().unwrap_or_default().to_owned();
                assert!(up.grpc.starts_with("https://127.0.0.1:"), "{e}");
                assert!(up.http.starts_with("https://127.0.0.1:"), "{e}");
                return up;
            }
            assert!(
                Instant::now() < deadline,
                "writ up not ready within {READY:?}\n{}",
                up.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.logs.path().join(name)).unwrap();
        format!(
            "--- writ up stdout ---\n{}\n--- writ up stderr ---\n{}",
            read("stdout"),
            read("stderr")
        )
    }

    /// `writ <args>` against this server (WRIT_SERVER and WRIT_DATA_DIR set).
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Finished {
        let mut cmd = writ_command(args);
        cmd.env("WRIT_SERVER", &self.grpc)
            .env("WRIT_ADMIN_SERVER", &self.admin)
            .env("WRIT_DATA_DIR", &self.data_dir);
        run_bounded(&mut cmd, stdin, COMMAND)
    }

    /// `writ <args>` that must succeed and print JSON.
    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        self.run(args, None).ok().json()
    }

    fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.data_dir.join(writ_tls::CA_CERT_FILE)).unwrap()
    }

    async fn authz(&self) -> AuthorizationServiceClient<tonic::transport::Channel> {
        AuthorizationServiceClient::new(writ_tests::connect(&self.grpc, Some(&self.ca_pem())).await)
    }

    /// SIGKILL, and wait until the process is gone (its store lock released).
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM (with the system `kill`), then waits at most 10 s for the exit.
    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let kill = run_bounded(Command::new("kill").args(["-TERM", &pid]), None, COMMAND);
        assert!(kill.status.success(), "{kill}");
        wait_bounded(&mut self.child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no exit within 10 s of SIGTERM\n{}", self.logs()))
    }
}

impl Drop for WritUp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The secret printed by `writ admin client create`.
fn secret(created: &Value) -> String {
    created["client_secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no client_secret in {created}"))
        .to_owned()
}

/// Registers the client "svc" (scope "read", audience "api") through the CLI; returns its secret.
fn create_svc(up: &WritUp) -> String {
    secret(&up.json(&[
        "admin",
        "client",
        "create",
        "--id",
        "svc",
        "--scope",
        "read",
        "--audience",
        "api",
    ]))
}

/// `writ admin workload`: trust a cluster, allow its prod service accounts a client, and a
/// workload's `writ token --grant jwt-bearer` gets a token from its projected token file alone.
#[test]
fn an_administrator_trusts_a_cluster_and_a_workload_gets_tokens_from_its_token_file() {
    use crate::workloads::{CLUSTER, CLUSTER_JWKS, sa_token};
    let dir = tempfile::tempdir().unwrap();
    let up = WritUp::start(&dir.path().join("writ-data"));
    let files = tempfile::tempdir().unwrap();
    let jwks_file = files.path().join("cluster.jwks");
    std::fs::write(&jwks_file, CLUSTER_JWKS).unwrap();
    up.json(&[
        "admin",
        "client",
        "create",
        "--id",
        "orders",
        "--public",
        "--grant",
        "jwt-bearer",
        "--scope",
        "inventory.read",
        "--audience",
        "inventory",
    ]);
    let trusted = up.json(&[
        "admin",
        "workload",
        "create",
        "--issuer",
        CLUSTER,
        "--jwks-file",
        jwks_file.to_str().unwrap(),
        "--audience",
        "writ",
        "--single-use",
    ]);
    assert_eq!(trusted["kids"], serde_json::json!(["k8s-1"]), "{trusted}");
    assert_eq!(trusted["single_use"], true);
    // An update changes what it names and keeps the rest.
    let updated = up.json(&[
        "admin",
        "workload",
        "update",
        "--issuer",
        CLUSTER,
        "--single-use",
        "false",
    ]);
    assert_eq!(updated["single_use"], false, "{updated}");
    assert_eq!(updated["audience"], "writ", "kept: {updated}");
    assert_eq!(
        updated["kids"],
        serde_json::json!(["k8s-1"]),
        "kept: {updated}"
    );
    let r = up.run(&["admin", "workload", "update", "--issuer", CLUSTER], None);
    assert_ne!(r.code(), Some(0), "{r}");
    assert!(r.stderr.contains("nothing to update"), "{r}");
    let policy = up.json(&[
        "admin",
        "workload",
        "allow",
        CLUSTER,
        "--subject",
        "system:serviceaccount:prod:*",
        "--client-id",
        "orders",
        "--scope",
        "inventory.read",
        // Generated ids are base64url and may start with '-' (one in 64): the CLI takes them.
        "--id",
        "-k8s-prod",
    ]);
    assert_eq!(policy["policy_id"], "-k8s-prod", "{policy}");
    let listed = up.json(&["admin", "workload", "list"]);
    assert_eq!(listed[0]["policies"][0]["policy_id"], policy["policy_id"]);

    let token_file = files.path().join("token");
    std::fs::write(&token_file, sa_token(serde_json::json!({}))).unwrap();
    let bearer = [
        "token",
        "--grant",
        "jwt-bearer",
        "--client-id",
        "orders",
        "--assertion-file",
        token_file.to_str().unwrap(),
    ];
    let token = up.json(&bearer);
    let claims = writ_token::decode_unverified(token["access_token"].as_str().unwrap())
        .unwrap()
        .claims
        .unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:prod:orders");
    assert_eq!(claims["client_id"], "orders");

    up.json(&[
        "admin",
        "workload",
        "disallow",
        CLUSTER,
        policy["policy_id"].as_str().unwrap(),
    ]);
    let r = up.run(&bearer, None);
    assert_eq!(r.code(), Some(1), "no policy names it any more: {r}");
    assert!(r.stderr.contains("invalid_grant"), "{r}");
    let r = up.run(
        &["token", "--grant", "jwt-bearer", "--client-id", "orders"],
        None,
    );
    assert_eq!(r.code(), Some(1), "the token file is required: {r}");
    assert!(r.stderr.contains("--assertion-file"), "{r}");

    // RFC 9449's dpop_bound_access_tokens, from the CLI (what it enforces: tests/it/signin.rs).
    let bound = up.json(&[
        "admin",
        "client",
        "create",
        "--id",
        "bound-app",
        "--public",
        "--grant",
        "jwt-bearer",
        "--dpop-bound",
    ]);
    assert_eq!(bound["dpop_bound_access_tokens"], true, "{bound}");
    let got = up.json(&["admin", "client", "get", "orders"]);
    assert_eq!(got["dpop_bound_access_tokens"], false, "{got}");
}

/// The example services (`examples/demo`, what `writ-demo` runs) against a real `writ up`:
/// orders authenticates with a key pair and holds no secret, exchanges its caller's token at the
/// STS to reserve stock at inventory, and the caller's token is refused (`UNAUTHENTICATED`) once
/// revoked (the walkthrough fails with the step otherwise).
#[test]
fn the_demo_services_walk_through_against_writ_up_without_a_secret_for_orders() {
    let dir = tempfile::tempdir().unwrap();
    let up = WritUp::start(&dir.path().join("writ-data"));
    let cli = writ_demo::walkthrough::Cli {
        data_dir: up.data_dir.clone(),
        inventory_port: 0,
        orders_port: 0,
        serve: false,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), writ_demo::walkthrough::run(&cli)).await
        })
        .expect("the walkthrough ends within 60 s")
        .unwrap_or_else(|e| panic!("{e:#}\n{}", up.logs()));
    let orders = up.json(&["admin", "client", "get", writ_demo::ORDERS]);
    assert_eq!(
        orders["token_endpoint_auth_method"], "private_key_jwt",
        "{orders}"
    );
}

/// A service that holds no shared secret (`private_key_jwt`), through the CLI alone: a key pair
/// generated locally, the public half registered, tokens signed for, the key rotated.
#[test]
fn a_client_registered_with_its_public_key_gets_tokens_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let up = WritUp::start(&dir.path().join("writ-data"));
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("svc.key");
    let key_arg = key.to_str().unwrap();
    let jwks = up.json(&["admin", "client", "keygen", "--kid", "k1", "--out", key_arg]);
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600, "the private key is its owner's alone");
    assert_eq!(jwks["keys"][0]["kid"], "k1");
    assert!(jwks["keys"][0].get("d").is_none(), "public only: {jwks}");
    // The same public set again from the PEM file (as for a key made with openssl).
    assert_eq!(
        up.json(&[
            "admin",
            "client",
            "jwks",
            "--kid",
            "k1",
            "--key-file",
            key_arg
        ]),
        jwks
    );
    let r = up.run(
        &["admin", "client", "keygen", "--kid", "k1", "--out", key_arg],
        None,
    );
    assert_eq!(
        r.code(),
        Some(1),
        "an existing key file is never overwritten: {r}"
    );
    let jwks_file = keys.path().join("svc.jwks");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();

    let created = up.json(&[
        "admin",
        "client",
        "create",
        "--id",
        "keyed",
        "--scope",
        "read",
        "--audience",
        "api",
        "--jwks-file",
        jwks_file.to_str().unwrap(),
    ]);
    assert!(created.get("client_secret").is_none(), "{created}");
    assert_eq!(created["token_endpoint_auth_method"], "private_key_jwt");
    let signed = [
        "token",
        "--client-id",
        "keyed",
        "--private-key",
        key_arg,
        "--kid",
        "k1",
    ];
    let token = up.json(&signed);
    let claims = writ_token::decode_unverified(token["access_token"].as_str().unwrap())
        .unwrap()
        .claims
        .unwrap();
    assert_eq!(claims["client_id"], "keyed");
    let r = up.run(
        &["token", "--client-id", "keyed", "--client-secret", "guess"],
        None,
    );
    assert_eq!(r.code(), Some(4), "no secret authenticates it: {r}");
    // At the STS too: the token it was issued, narrowed under a policy, signed for the STS.
    up.json(&[
        "admin",
        "policy",
        "create",
        "--client-id",
        "keyed",
        "--audience",
        "api",
        "--scope",
        "read",
    ]);
    let exchange = [
        "exchange",
        "--sts",
        &up.sts,
        "--client-id",
        "keyed",
        "--private-key",
        key_arg,
        "--kid",
        "k1",
        "--subject-token",
        "-",
        "--audience",
        "api",
    ];
    let subject = token["access_token"].as_str().unwrap();
    let exchanged = up.run(&exchange, Some(subject)).ok().json();
    let claims = writ_token::decode_unverified(exchanged["access_token"].as_str().unwrap())
        .unwrap()
        .claims
        .unwrap();
    assert_eq!(claims["client_id"], "keyed");
    assert_eq!(claims["aud"], "api");

    // Rotation: a new key registered, the old one refused at once.
    let new_key = keys.path().join("new.key");
    let new_jwks = up.json(&[
        "admin",
        "client",
        "keygen",
        "--kid",
        "k2",
        "--alg",
        "es256",
        "--out",
        new_key.to_str().unwrap(),
    ]);
    let new_jwks_file = keys.path().join("new.jwks");
    std::fs::write(&new_jwks_file, new_jwks.to_string()).unwrap();
    up.json(&[
        "admin",
        "client",
        "set-keys",
        "keyed",
        "--jwks-file",
        new_jwks_file.to_str().unwrap(),
    ]);
    let r = up.run(&signed, None);
    assert_eq!(r.code(), Some(4), "the old key is refused: {r}");
    up.json(&[
        "token",
        "--client-id",
        "keyed",
        "--private-key",
        new_key.to_str().unwrap(),
        "--kid",
        "k2",
    ]);
}

#[test]
fn writ_up_then_the_readme_walkthrough_works() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("writ-data");
    let up = WritUp::start(&data);
    let banner = std::fs::read_to_string(up.logs.path().join("stdout")).unwrap();
    assert!(banner.contains("Writ is up"), "{}", up.logs());
    // SECURITY.md item 36: no documented command puts a secret on the command line (where every
    // user of the machine can read it), neither in what `writ up` prints nor in the docs.
    let root = writ_tests::workspace_root();
    for (name, text) in [
        ("the banner", banner.clone()),
        (
            "README.md",
            std::fs::read_to_string(root.join("README.md")).unwrap(),
        ),
        (
            "ARCHITECTURE.md",
            std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap(),
        ),
    ] {
        let found = secrets_on_command_lines(&text);
        assert!(
            found.is_empty(),
            "{name} puts secrets on command lines: {found:?}"
        );
    }
    assert_eq!(up.issuer, up.http, "the default issuer is the HTTP facade");

    #[cfg(unix)]
    {
        assert_eq!(mode(&data), 0o700, "the data directory is private");
        assert_eq!(mode(&data.join("admin.token")), 0o600);
        assert_eq!(mode(&data.join("ca-key.pem")), 0o600);
        assert_eq!(mode(&data.join("server-key.pem")), 0o600);
    }

    let created = up.json(&[
        "admin",
        "client",
        "create",
        "--id",
        "demo",
        "--scope",
        "demo.read demo.write",
        "--audience",
        "demo",
        "--format",
        "jwt",
        "--format",
        "biscuit",
    ]);
    assert_eq!(created["client_id"], "demo");
    assert_eq!(created["client_type"], "confidential");
    let secret = secret(&created);
    let listed = up.json(&["admin", "client", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(
        listed[0].get("client_secret").is_none(),
        "a secret is shown once"
    );

    let token = up.json(&["token", "--client-id", "demo", "--client-secret", &secret]);
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["scope"], "demo.read demo.write");
    let jwt = token["access_token"].as_str().unwrap();

    let inspected = up.json(&["inspect", jwt, "--audience", "demo"]);
    assert_eq!(inspected["verified"], true, "{inspected}");
    assert_eq!(inspected["format"], "jwt");
    assert_eq!(inspected["header"]["typ"], "at+jwt");
    assert_eq!(inspected["claims"]["client_id"], "demo");
    assert_eq!(inspected["claims"]["iss"], up.issuer.as_str());
    assert_eq!(inspected["effective_scope"], "demo.read demo.write");

    let token = up.json(&[
        "token",
        "--client-id",
        "demo",
        "--client-secret",
        &secret,
        "--format",
        "biscuit",
    ]);
    let biscuit = token["access_token"].as_str().unwrap();
    let inspected = up.json(&["inspect", biscuit]);
    assert_eq!(inspected["verified"], true, "{inspected}");
    assert_eq!(inspected["format"], "biscuit");
    assert_eq!(inspected["effective_scope"], "demo.read demo.write");

    // Attenuation is offline: no server settings at all.
    let narrowed = writ(&["attenuate", biscuit, "--scope", "demo.read"]).ok();
    let narrowed = narrowed.stdout.trim();
    assert_ne!(narrowed, biscuit);
    let inspected = up.json(&["inspect", narrowed]);
    assert_eq!(inspected["verified"], true, "{inspected}");
    assert_eq!(inspected["effective_scope"], "demo.read");

    let offline = writ(&["inspect", "--offline", jwt]).ok().json();
    assert_eq!(offline["verified"], false, "--offline only decodes");
    assert_eq!(offline["claims"]["client_id"], "demo");

    // A client behind a gateway: its only format, reference, is its default.
    let created = up.json(&[
        "admin",
        "client",
        "create",
        "--id",
        "shop",
        "--scope",
        "demo.read",
        "--audience",
        "demo",
        "--format",
        "reference",
    ]);
    assert_eq!(created["token_formats"], serde_json::json!(["reference"]));
    let token = up.json(&[
        "token",
        "--client-id",
        "shop",
        "--client-secret",
        &self::secret(&created),
    ]);
    let reference = token["access_token"].as_str().unwrap();
    assert!(
        reference.starts_with(writ_oauth::REFERENCE_PREFIX),
        "{token}"
    );
}

#[test]
fn writ_up_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = WritUp::start(dir.path());
    // Serving, then asked to stop.
    up.json(&["admin", "key", "list"]);
    let status = up.terminate();
    assert!(status.success(), "{status}\n{}", up.logs());
    assert!(up.logs().contains("shutting down"), "{}", up.logs());
    // Also when the signal comes as soon as endpoints.json appears (the handler is installed
    // before it is written), and each time the store is released for the next process.
    for _ in 0..3 {
        let mut again = WritUp::start(dir.path());
        let status = again.terminate();
        assert!(status.success(), "{status}\n{}", again.logs());
    }
    WritUp::start(dir.path()).json(&["admin", "key", "list"]);
}

#[test]
fn exit_codes_follow_the_documentation() {
    let dir = tempfile::tempdir().unwrap();
    let up = WritUp::start(dir.path());
    let secret = create_svc(&up);
    let token = up.json(&["token", "--client-id", "svc", "--client-secret", &secret]);
    let jwt = token["access_token"].as_str().unwrap();

    // 0: success, and --help on every command.
    let help: &[&[&str]] = &[
        &[],
        &["up"],
        &["serve"],
        &["token"],
        &["inspect"],
        &["attenuate"],
        &["admin"],
        &["admin", "client"],
        &["admin", "client", "create"],
        &["admin", "client", "get"],
        &["admin", "client", "list"],
        &["admin", "client", "delete"],
        &["admin", "client", "rotate-secret"],
        &["admin", "client", "set-disabled"],
        &["admin", "client", "set-keys"],
        &["admin", "client", "keygen"],
        &["admin", "client", "jwks"],
        &["admin", "user"],
        &["admin", "user", "create"],
        &["admin", "user", "delete"],
        &["admin", "user", "set-password"],
        &["admin", "user", "sessions"],
        &["admin", "user", "end-sessions"],
        &["admin", "key"],
        &["admin", "key", "list"],
        &["admin", "key", "rotate"],
    ];
    for args in help {
        let mut args = args.to_vec();
        args.push("--help");
        let r = writ(&args).ok();
        assert!(r.stdout.contains("Usage:"), "{r}");
    }
    assert!(writ(&["--help"]).ok().stdout.contains("Exit codes:"));
    writ(&["--version"]).ok();

    // 1: refused, or the token is invalid.
    let r = up.run(
        &[
            "token",
            "--client-id",
            "svc",
            "--client-secret",
            &secret,
            "--scope",
            "write",
        ],
        None,
    );
    assert_eq!(r.code(), Some(1), "a scope the client may not get: {r}");
    assert!(r.stderr.contains("invalid_scope"), "{r}");
    let r = up.run(&["inspect", "not-a-token"], None);
    assert_eq!(r.code(), Some(1), "{r}");
    let mut tampered = jwt.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let r = up.run(&["inspect", &tampered], None);
    assert_eq!(r.code(), Some(1), "a bad signature: {r}");
    assert_eq!(r.json()["verified"], false, "{r}");
    let r = up.run(&["inspect", jwt, "--audience", "another-service"], None);
    assert_eq!(r.code(), Some(1), "another audience: {r}");
    let r = writ(&["attenuate", "not-a-biscuit", "--scope", "read"]);
    assert_eq!(r.code(), Some(1), "{r}");

    // 2: usage.
    for args in [
        &["token"][..],
        &["frobnicate"],
        &["token", "--client-id", "svc", "--grant", "implicit"],
        &["admin", "client", "set-disabled", "svc", "maybe"],
    ] {
        let r = writ(args);
        assert_eq!(r.code(), Some(2), "{r}");
    }

    // 3: nothing listens on the port (bound, then closed).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", l.local_addr().unwrap())
    };
    for args in [
        &["token", "--client-id", "svc", "--client-secret", &secret][..],
        &["inspect", jwt],
        &["admin", "client", "list"],
    ] {
        let mut cmd = writ_command(args);
        cmd.env("WRIT_SERVER", &closed)
            .env("WRIT_ADMIN_SERVER", &closed)
            .env("WRIT_DATA_DIR", dir.path());
        let r = run_bounded(&mut cmd, None, COMMAND);
        assert_eq!(r.code(), Some(3), "{r}");
    }

    // 4: authentication failed.
    let r = up.run(
        &["token", "--client-id", "svc", "--client-secret", "wrong"],
        None,
    );
    assert_eq!(r.code(), Some(4), "wrong client secret: {r}");
    assert!(r.stderr.contains("invalid_client"), "{r}");
    let r = up.run(
        &["token", "--client-id", "nobody", "--client-secret", &secret],
        None,
    );
    assert_eq!(r.code(), Some(4), "unknown client: {r}");
    let r = up.run(
        &[
            "admin",
            "--admin-token",
            "not-the-credential",
            "client",
            "list",
        ],
        None,
    );
    assert_eq!(r.code(), Some(4), "wrong admin credential: {r}");

    // Generated secrets and refresh tokens are base64url, so one in 64 starts with '-': such a
    // value is still a value, never taken for a flag (that would be a usage error, 2).
    let r = up.run(
        &[
            "token",
            "--client-id",
            "svc",
            "--client-secret",
            "-nwfJuZ-kg",
        ],
        None,
    );
    assert_eq!(r.code(), Some(4), "{r}");
    let r = up.run(&["admin", "--admin-token", "-x", "client", "list"], None);
    assert_eq!(r.code(), Some(4), "{r}");
    let r = up.run(
        &[
            "token",
            "--grant",
            "refresh_token",
            "--client-id",
            "svc",
            "--client-secret",
            &secret,
            "--refresh-token",
            "-Tq3b",
        ],
        None,
    );
    assert_eq!(r.code(), Some(1), "svc may not refresh: {r}");
    assert!(r.stderr.contains("unauthorized_client"), "{r}");
}

/// A client allowed the password and refresh grants, and a user, through the CLI.
fn gateway_and_alice(up: &WritUp) -> String {
    let secret = secret(&up.json(&[
        "admin",
        "client",
        "create",
        "--id",
        "gateway",
        "--grant",
        "password",
        "--grant",
        "refresh_token",
        "--scope",
        "orders.read orders.write",
        "--audience",
        "orders",
    ]));
    let user = up
        .run(
            &["admin", "user", "create", "alice", "--scope", "orders.read"],
            Some("correct horse battery\n"),
        )
        .ok()
        .json();
    assert_eq!(user["username"], "alice");
    secret
}

/// `writ token --grant refresh_token` against `up`.
fn refresh_with_cli(up: &WritUp, secret: &str, token: &str) -> Finished {
    up.run(
        &[
            "token",
            "--grant",
            "refresh_token",
            "--client-id",
            "gateway",
            "--client-secret",
            secret,
            "--refresh-token",
            token,
        ],
        None,
    )
}

/// Starts `writ up` with `flags`, signs alice in, rotates her refresh token once and kills the
/// process with SIGKILL right after the acknowledgement; then starts it again. Returns the
/// restarted process, the client's secret, and the used and the new refresh token.
fn rotate_then_kill_9(dir: &Path, flags: &[&str]) -> (WritUp, String, String, String) {
    let up = WritUp::start_with(dir, flags);
    let secret = gateway_and_alice(&up);
    let login = up
        .run(
            &[
                "token",
                "--grant",
                "password",
                "--client-id",
                "gateway",
                "--client-secret",
                &secret,
                "--username",
                "alice",
                "--password-stdin",
            ],
            Some("correct horse battery\n"),
        )
        .ok()
        .json();
    assert_eq!(login["scope"], "orders.read");
    let old = login["refresh_token"].as_str().unwrap().to_owned();
    // The CLI exiting 0 means the server acknowledged the rotation.
    let rotated = refresh_with_cli(&up, &secret, &old).ok().json();
    let new = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    up.kill_9();
    (WritUp::start_with(dir, flags), secret, old, new)
}

#[test]
fn an_acknowledged_refresh_rotation_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // No rotation grace period: a replay of the used token is reuse however soon it comes.
    let (up, secret, old, new) = rotate_then_kill_9(dir.path(), &["--refresh-rotation-grace", "0"]);
    // Had the rotation been lost, the old token would still be active and this would succeed.
    let r = refresh_with_cli(&up, &secret, &old);
    assert_eq!(
        r.code(),
        Some(1),
        "replaying the used token is refused: {r}"
    );
    assert!(r.stderr.contains("invalid_grant"), "{r}");
    let r = refresh_with_cli(&up, &secret, &new);
    assert_eq!(r.code(), Some(1), "the reuse revoked the family: {r}");
    assert!(r.stderr.contains("invalid_grant"), "{r}");
}

/// Issue 15: a rotation whose reply was lost to a crash. Within the grace period the client
/// presenting the token it still holds gets a new successor instead of losing its sign-in; the
/// successor nobody received no longer works (presenting it ends the family).
#[test]
fn a_refresh_retried_after_a_crash_within_the_grace_period_keeps_the_family() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough for a restart on a loaded machine.
    let (up, secret, old, lost) =
        rotate_then_kill_9(dir.path(), &["--refresh-rotation-grace", "120"]);
    let retried = refresh_with_cli(&up, &secret, &old).ok().json();
    let next = retried["refresh_token"].as_str().unwrap().to_owned();
    assert!(next != old && next != lost);
    let rotated = refresh_with_cli(&up, &secret, &next).ok().json();
    let newest = rotated["refresh_token"].as_str().unwrap().to_owned();
    let r = refresh_with_cli(&up, &secret, &lost);
    assert_eq!(r.code(), Some(1), "the replaced successor is refused: {r}");
    assert!(r.stderr.contains("invalid_grant"), "{r}");
    let r = refresh_with_cli(&up, &secret, &newest);
    assert_eq!(r.code(), Some(1), "and presenting it ended the family: {r}");
}

/// The default issuer is the HTTP facade's URL, which changes with every ephemeral port: tokens
/// that must still verify after a restart need a fixed one.
const FIXED_ISSUER: [&str; 2] = ["--issuer", "https://writ.test"];

#[tokio::test]
async fn an_acknowledged_revocation_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let up = WritUp::start_with(dir.path(), &FIXED_ISSUER);
    let secret = create_svc(&up);
    let get = |up: &WritUp| {
        up.json(&["token", "--client-id", "svc", "--client-secret", &secret])["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (revoked, kept) = (get(&up), get(&up));
    up.authz()
        .await
        .revoke(RevokeRequest {
            token: revoked.clone(),
            client_id: "svc".into(),
            client_secret: secret.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    up.kill_9();

    let up = WritUp::start_with(dir.path(), &FIXED_ISSUER);
    let mut authz = up.authz().await;
    let mut active = async |token: &str| -> bool {
        let request = IntrospectRequest {
            token: token.into(),
            client_id: "svc".into(),
            client_secret: secret.clone(),
            ..Default::default()
        };
        authz.introspect(request).await.unwrap().into_inner().active
    };
    assert!(!active(&revoked).await, "the revocation was durable");
    assert!(active(&kept).await, "only that token was revoked");
}

/// Issue 10, item 10: a client id or username with line breaks (or terminal escapes) in it
/// cannot forge an audit line: each event stays one line, its values escaped.
#[tokio::test]
async fn a_line_break_in_a_client_id_or_username_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let up = WritUp::start(dir.path());
    let forged = "\r\nINFO writ::audit: event=\"token_issued\"\u{1b}[2K";
    let gateway_secret = gateway_and_alice(&up);
    let mut authz = up.authz().await;
    for (client_id, secret, username) in [
        (forged, "wrong", ""),
        ("gateway", gateway_secret.as_str(), forged),
    ] {
        let r = authz
            .token(writ_proto::authz::TokenRequest {
                grant_type: if username.is_empty() {
                    "client_credentials".into()
                } else {
                    "password".into()
                },
                client_id: client_id.into(),
                client_secret: secret.into(),
                username: username.into(),
                password: "wrong".into(),
                ..Default::default()
            })
            .await;
        assert!(r.is_err());
    }
    // And over HTTP, percent-encoded.
    let http = writ_tests::http_client::HttpClient::new(&up.http, Some(&up.ca_pem()));
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret=x",
        writ_tests::http_client::form_encode(forged)
    );
    let r = http.post_form("/oauth2/token", &[], &body).await;
    assert_eq!(r.status, http::StatusCode::UNAUTHORIZED);

    let stderr = std::fs::read_to_string(up.logs.path().join("stderr")).unwrap();
    assert!(
        !stderr.lines().any(|l| l.starts_with("INFO writ::audit")),
        "a forged line: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "a raw terminal escape: {stderr}"
    );
    // Each refusal is one line (the audit log's, `token_refused`), the values in it escaped.
    let refused: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("token_refused"))
        .collect();
    assert!(refused.len() >= 3, "{stderr}");
    for (what, escaped) in [
        ("the client id", "client_id=\"\\r\\nINFO writ::audit"),
        ("the username", "\"username\": \"\\r\\nINFO writ::audit"),
    ] {
        assert!(
            refused.iter().any(|l| l.contains(escaped)),
            "{what} is kept, escaped: {refused:?}"
        );
    }
}

/// Issue 10, item 10: signing keys are sealed under a key-encryption key kept outside the store
/// (by default `<data-dir>/key-encryption.key`, mode 0600). Another key cannot open them: the
/// platform refuses to start rather than mint new keys over them.
#[test]
fn signing_keys_are_sealed_under_a_key_outside_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = WritUp::start(dir.path());
    let kids = |up: &WritUp| {
        let mut kids: Vec<String> = up
            .json(&["admin", "key", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        kids.sort();
        kids
    };
    let before = kids(&up);
    assert!(up.terminate().success());
    let kek = dir.path().join(writ::platform::KEY_ENCRYPTION_KEY_FILE);
    #[cfg(unix)]
    assert_eq!(mode(&kek), 0o600);

    // Another key: refused, nothing started, nothing overwritten.
    let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let refused = run_bounded(
        up_command(dir.path()).env("WRIT_KEY_ENCRYPTION_KEY", other),
        None,
        COMMAND,
    );
    assert!(!refused.status.success(), "{refused}");
    assert!(
        refused.stderr.contains("key-encryption key"),
        "says why: {refused}"
    );
    // The same key, from a file named on the command line: the same signing key.
    let moved = tempfile::tempdir().unwrap().keep().join("kek");
    std::fs::copy(&kek, &moved).unwrap();
    std::fs::remove_file(&kek).unwrap();
    let up = WritUp::start_with(
        dir.path(),
        &["--key-encryption-key-file", moved.to_str().unwrap()],
    );
    assert_eq!(kids(&up), before, "the same signing keys");
    assert!(!kek.exists(), "no new key was made in the data directory");
}

/// Secret-bearing flags followed by a value in `text`.
fn secrets_on_command_lines(text: &str) -> Vec<String> {
    const FLAGS: [&str; 6] = [
        "--client-secret",
        "--password",
        "--admin-token",
        "--sts-client-secret",
        "--key-encryption-key",
        "--subject-token",
    ];
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut found = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let w = w.trim_matches(|c| c == '`' || c == '(' || c == ')');
        for flag in FLAGS {
            let valued = match w.strip_prefix(flag) {
                Some(rest) if rest.starts_with('=') => true,
                Some("") => words
                    .get(i + 1)
                    .is_some_and(|next| !next.starts_with('-') && !next.starts_with('`')),
                _ => false,
            };
            if valued {
                found.push(words[i..(i + 2).min(words.len())].join(" "));
            }
        }
        // curl's `-u user:password`.
        if w == "-u" && words.get(i + 1).is_some_and(|next| next.contains(':')) {
            found.push(words[i..i + 2].join(" "));
        }
    }
    found
}

#[test]
fn the_secret_flag_check_finds_what_it_should() {
    assert_eq!(
        secrets_on_command_lines("writ token --client-id demo --client-secret s3cret"),
        vec!["--client-secret s3cret"]
    );
    assert_eq!(secrets_on_command_lines("--admin-token=x").len(), 1);
    assert_eq!(
        secrets_on_command_lines("curl -u orders:$SECRET https://x").len(),
        1
    );
    assert!(secrets_on_command_lines("`--key-encryption-key-file PATH` or WRIT_X").is_empty());
    assert!(secrets_on_command_lines("export WRIT_CLIENT_SECRET=...").is_empty());
}

/// A plain HTTP/1.1 GET (the operations endpoint has no TLS): status and body, bounded.
/// Issue 11: `writ up` serves `/livez`, `/readyz` (ready once every service is: its stores
/// answer) and `/metrics`, where a token issued and one refused
/// through the CLI are counted, with the grant type and the RFC error code as labels.
#[test]
fn writ_up_serves_metrics_liveness_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let up = WritUp::start(&dir.path().join("writ-data"));
    assert!(up.ops.starts_with("http://127.0.0.1:"), "{}", up.ops);
    assert_eq!(http_get(&format!("{}/livez", up.ops)).0, 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http_get(&format!("{}/readyz", up.ops));
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "never ready: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let created = up.json(&[
        "admin",
        "client",
        "create",
        "--id",
        "metered",
        "--scope",
        "m.read",
        "--audience",
        "m",
    ]);
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    let before = http_get(&format!("{}/metrics", up.ops)).1;
    let mut good = writ_command(&["token", "--client-id", "metered"]);
    good.env("WRIT_SERVER", &up.grpc)
        .env("WRIT_DATA_DIR", &up.data_dir)
        .env("WRIT_CLIENT_SECRET", &secret);
    run_bounded(&mut good, None, COMMAND).ok();
    let mut bad = writ_command(&["token", "--client-id", "metered"]);
    bad.env("WRIT_SERVER", &up.grpc)
        .env("WRIT_DATA_DIR", &up.data_dir)
        .env("WRIT_CLIENT_SECRET", "wrong");
    let refused = run_bounded(&mut bad, None, COMMAND);
    assert_ne!(refused.code(), Some(0));
    let (status, after) = http_get(&format!("{}/metrics", up.ops));
    assert_eq!(status, 200);
    let count = |text: &str, series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let issued = r#"writ_tokens_issued_total{grant_type="client_credentials"}"#;
    let refused = r#"writ_tokens_refused_total{error="invalid_client"}"#;
    assert_eq!(count(&after, issued), count(&before, issued) + 1, "{after}");
    assert_eq!(
        count(&after, refused),
        count(&before, refused) + 1,
        "{after}"
    );
    assert!(
        after.contains("writ_store_operation_seconds_bucket"),
        "{after}"
    );
    // Under `writ up` no service follows a feed (introspection and the STS read the log in the
    // process), so what the log holds is what is reported.
    assert!(
        after.contains(r#"writ_state{name="revocation_log_head"}"#),
        "{after}"
    );
    assert!(
        !after.contains("writ_revocation_feed_staleness_seconds{"),
        "{after}"
    );
    assert!(after.ends_with("# EOF\n"));
}

/// Issue 16: `writ audit verify` checks the log a stopped `writ up` left, signed to its end; an
/// edited or a deleted record is reported with its position, in the store and in an export.
#[tokio::test]
async fn writ_audit_verify_reports_an_edited_or_deleted_record_where_it_is() {
    use writ_store::Tree;
    let dir = tempfile::tempdir().unwrap();
    let mut up = WritUp::start(dir.path());
    let secret = create_svc(&up);
    for _ in 0..5 {
        up.json(&["token", "--client-id", "svc", "--client-secret", &secret]);
    }
    let listed = up
        .run(&["audit", "list", "--type", "token_issued"], None)
        .ok();
    let lines: Vec<Value> = listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{listed}");
    assert!(lines.iter().all(|l| l["client_id"] == "svc"), "{listed}");
    assert!(up.terminate().success());

    let data_dir = dir.path().to_str().unwrap().to_owned();
    let verify = |more: &[&str]| {
        let mut args = vec!["audit", "verify", "--data-dir", &data_dir];
        args.extend_from_slice(more);
        writ(&args)
    };
    let report = verify(&[]).ok().json();
    assert_eq!(report["intact"], true, "{report}");
    let records = report["records"].as_u64().unwrap();
    assert!(
        records >= 6,
        "the client and five tokens at least: {report}"
    );
    assert_eq!(
        report["signed_to"], records,
        "a clean stop signs the tail: {report}"
    );
    let export = writ(&["audit", "export", "--data-dir", &data_dir]).ok();
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, &export.stdout).unwrap();
    let file = file.to_str().unwrap().to_owned();
    assert_eq!(verify(&["--file", &file]).ok().json()["intact"], true);

    // The export with one field of record 2 changed.
    let edited: String = export
        .stdout
        .lines()
        .map(|l| {
            if l.contains("\"seq\":2,") {
                l.replacen("\"outcome\":\"success\"", "\"outcome\":\"refused\"", 1)
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    assert_ne!(edited, export.stdout);
    let edited_file = dir.path().join("edited.jsonl");
    std::fs::write(&edited_file, edited).unwrap();
    let r = verify(&["--file", edited_file.to_str().unwrap()]);
    assert_eq!(r.code(), Some(1), "{r}");
    assert_eq!(r.json()["problems"][0]["at"], 2, "{r}");

    // The store: record 3 edited, record 5 deleted.
    {
        let sled = writ_store::SledStore::open(&dir.path().join("store")).unwrap();
        let store = writ_audit::open_store(std::sync::Arc::new(writ_store::Ready(
            std::sync::Arc::new(sled),
        )))
        .await
        .unwrap();
        let key = writ_audit::record::record_key(3);
        let mut r: writ_audit::AuditRecord =
            writ_store::decode(&store.get(Tree::Audit, &key).await.unwrap().unwrap()).unwrap();
        r.client_id = "someone-else".into();
        store
            .insert(Tree::Audit, &key, writ_store::encode(&r))
            .await
            .unwrap();
        store
            .remove(Tree::Audit, &writ_audit::record::record_key(5))
            .await
            .unwrap();
        store.durable().await.unwrap();
    }
    let r = verify(&[]);
    assert_eq!(r.code(), Some(1), "{r}");
    let at: Vec<u64> = r.json()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["at"].as_u64().unwrap())
        .collect();
    assert_eq!(at, [3, 5], "{r}");
}

/// Issue 16: kill -9 during load loses no record of an acknowledged operation: every token a
/// client received is in the trail after the restart, exactly once, and the log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_record_of_an_acknowledged_token() {
    let dir = tempfile::tempdir().unwrap();
    let up = WritUp::start(dir.path());
    let secret = create_svc(&up);
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (mut authz, secret, acknowledged) =
            (up.authz().await, secret.clone(), acknowledged.clone());
        workers.push(tokio::spawn(async move {
            // Until the process is gone (bounded by the test's own wait below).
            for _ in 0..100_000 {
                match authz.token(writ_tests::cc("svc", &secret)).await {
                    Ok(r) => acknowledged
                        .lock()
                        .unwrap()
                        .push(writ_tests::jti_of(&r.into_inner().access_token)),
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "no load within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    up.kill_9();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("the workers see the process gone")
            .unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let mut up = WritUp::start(dir.path());
    let listed = up
        .run(
            &[
                "audit",
                "list",
                "--type",
                "token_issued",
                "--limit",
                "1000000",
            ],
            None,
        )
        .ok();
    let mut recorded = std::collections::HashMap::<String, usize>::new();
    for line in listed.stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        *recorded
            .entry(v["details"]["jti"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|j| !recorded.contains_key(*j))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged tokens have no record",
        lost.len(),
        acknowledged.len()
    );
    assert!(recorded.values().all(|n| *n == 1), "a record twice");
    assert!(up.terminate().success());
    let report = writ(&[
        "audit",
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ])
    .ok()
    .json();
    assert_eq!(report["intact"], true, "{report}");
}
