//! Writ as replicas over PostgreSQL, each service a separate `writ serve` process on loopback:
//! three authorization servers, two revocation services and an STS sharing one database (a
//! fresh set of schemas per test). Killed with SIGKILL, failed over, and refreshed at once
//! across replicas.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use writ_proto::admin::admin_service_client::AdminServiceClient;
use writ_proto::admin::{self as pb_admin, CreateClientRequest, CreateUserRequest};
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::authz::{IntrospectRequest, TokenRequest};
use writ_proto::revocation::revocation_service_client::RevocationServiceClient;
use writ_proto::revocation::{WatchRequest, watch_response};
use writ_store_postgres::{PgConfig, testing};
use writ_tests::{bearer, connect, free_port, run_bounded};

const WRIT: &str = env!("CARGO_BIN_EXE_writ-under-test");
const READY: Duration = Duration::from_secs(30);
const ISSUER: &str = "https://authz.writ.test";
/// An authorization server's ports, each picked free.
const AUTHZ_PORTS: [&str; 12] = [
    "--authz-port",
    "0",
    "--authz-http-port",
    "0",
    "--admin-port",
    "0",
    "--gateway-port",
    "0",
    "--gateway-http-port",
    "0",
    "--authz-mtls-port",
    "0",
];

/// A fresh schema prefix on the test database, or `None` (skipped) without PostgreSQL.
async fn database() -> Option<PgConfig> {
    testing::fresh().await
}

/// Drops every schema a cluster made (`<prefix>_authz`, `_revocation`, `_sts`).
async fn drop_cluster(config: &PgConfig) {
    for service in ["authz", "revocation", "sts"] {
        let mut c = config.clone();
        c.schema = Some(format!("{}_{service}", config.schema.as_deref().unwrap()));
        testing::drop_schema(&c).await;
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One `writ serve` process. Killed on drop; its output goes to files printed if a test fails.
struct Served {
    name: String,
    child: Child,
    data_dir: tempfile::TempDir,
    endpoints: Value,
}

impl Served {
    fn logs(&self) -> String {
        let read =
            |f: &str| std::fs::read_to_string(self.data_dir.path().join(f)).unwrap_or_default();
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            read("stdout.log"),
            self.name,
            read("stderr.log")
        )
    }

    fn url(&self, key: &str) -> String {
        self.endpoints[key]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no {key}: {}", self.name, self.endpoints))
            .to_owned()
    }

    /// Waits (bounded) until `/readyz` answers 200: its stores answer, its feed has synced.
    async fn ready(&self) {
        let url = format!("{}/readyz", self.url("ops"));
        let deadline = Instant::now() + READY;
        loop {
            let url = url.clone();
            let (status, body) = tokio::task::spawn_blocking(move || writ_tests::http_get(&url))
                .await
                .unwrap();
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {READY:?}: {body}\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, and wait until the process is gone.
    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What every replica shares: the database, the certificate its peers trust, the key its
/// signing keys are sealed under.
struct Cluster {
    db: PgConfig,
    shared: tempfile::TempDir,
    ca_pem: String,
}

impl Cluster {
    async fn new() -> Option<Cluster> {
        Some(Self::on(database().await?))
    }

    /// On the database `db` (its `schema` the prefix of the services' schemas).
    fn on(db: PgConfig) -> Cluster {
        let shared = tempfile::tempdir().unwrap();
        let init = run_bounded(
            Command::new(WRIT)
                .args(["cluster-init", "--dir"])
                .arg(shared.path()),
            None,
            READY,
        )
        .ok();
        let paths = init.json();
        let ca_pem = std::fs::read_to_string(paths["peer_ca"].as_str().unwrap()).unwrap();
        Cluster { db, shared, ca_pem }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.shared.path().join(name)
    }

    /// `writ serve <service>` with the cluster's settings and `flags`; waits (bounded) for its
    /// endpoints.json. `Err` with its output if it exits first.
    fn try_start(
        &self,
        name: &str,
        service: &str,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Served, String> {
        let data_dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(WRIT);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WRIT_") {
                cmd.env_remove(key);
            }
        }
        match service {
            "up" => cmd.arg("up"),
            service => cmd.args(["serve", service]),
        };
        cmd.env("WRIT_LOG", "info")
            .env("NO_COLOR", "1")
            .env("WRIT_STORE", &self.db.url)
            .args(["--store-schema", self.db.schema.as_deref().unwrap()])
            .arg("--tls-cert")
            .arg(self.file(writ_tls::SERVER_CERT_FILE))
            .arg("--tls-key")
            .arg(self.file(writ_tls::SERVER_KEY_FILE))
            .arg("--peer-ca")
            .arg(self.file(writ_tls::CA_CERT_FILE))
            .arg("--key-encryption-key-file")
            .arg(self.file(writ::platform::KEY_ENCRYPTION_KEY_FILE))
            .args(["--ops-listen", "127.0.0.1:0", "--issuer", ISSUER])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(flags)
            .stdin(Stdio::null())
            .stdout(File::create(data_dir.path().join("stdout.log")).unwrap())
            .stderr(File::create(data_dir.path().join("stderr.log")).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut served = Served {
            name: name.to_owned(),
            child,
            data_dir,
            endpoints: Value::Null,
        };
        let path = served.data_dir.path().join(writ::platform::ENDPOINTS_FILE);
        let deadline = Instant::now() + READY;
        loop {
            if let Some(status) = served.child.try_wait().unwrap() {
                return Err(format!("{name} exited with {status}\n{}", served.logs()));
            }
            if let Some(e) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            {
                served.endpoints = e;
                return Ok(served);
            }
            assert!(
                Instant::now() < deadline,
                "{name} not ready within {READY:?}\n{}",
                served.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start(&self, name: &str, service: &str, flags: &[&str], env: &[(&str, &str)]) -> Served {
        self.try_start(name, service, flags, env)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// An authorization server publishing to the revocation replicas at `revocation`.
    fn authz(&self, name: &str, revocation: &str) -> Served {
        self.start(
            name,
            "authz",
            &[AUTHZ_PORTS.as_slice(), &["--revocation-url", revocation]].concat(),
            &[],
        )
    }

    /// A revocation service replica on `port`, trusting the tokens of the authorization server
    /// at `authz`.
    fn revocation(&self, name: &str, port: u16, authz: &str) -> Served {
        self.start(
            name,
            "revocation",
            &["--revocation-port", &port.to_string(), "--authz-url", authz],
            &[],
        )
    }

    /// The admin API of `authz`, with the master credential the first replica (which
    /// bootstrapped the store) wrote.
    async fn admin(&self, first: &Served, authz: &Served) -> Admin {
        let credential =
            std::fs::read_to_string(first.data_dir.path().join(writ::platform::ADMIN_TOKEN_FILE))
                .expect("the first authorization server wrote the admin credential");
        AdminServiceClient::with_interceptor(
            connect(&authz.url("authz_admin"), Some(&self.ca_pem)).await,
            bearer(credential.trim()),
        )
    }

    async fn token_client(
        &self,
        authz: &Served,
    ) -> AuthorizationServiceClient<tonic::transport::Channel> {
        AuthorizationServiceClient::new(connect(&authz.url("authz_grpc"), Some(&self.ca_pem)).await)
    }
}

type Admin = AdminServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        writ_client::StaticBearer,
    >,
>;

/// Whether `token` is active, as the client `client_id` introspects it at `authz`.
async fn active(
    authz: &mut AuthorizationServiceClient<tonic::transport::Channel>,
    token: &str,
    client_id: &str,
    secret: &str,
) -> bool {
    authz
        .introspect(IntrospectRequest {
            token: token.into(),
            client_id: client_id.into(),
            client_secret: secret.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .active
}

/// An admin revocation of one token id, for an hour.
fn revoke_token_id(jti: &str) -> pb_admin::RevokeRequest {
    pb_admin::RevokeRequest {
        entries: vec![writ_tests::revocation_entry(
            writ_token::RevocationKind::TokenId,
            jti,
            unix_now() + 3600,
        )],
    }
}

/// Registers `client`; returns its secret.
async fn create_client(admin: &mut Admin, client: pb_admin::Client) -> String {
    admin
        .create_client(CreateClientRequest {
            client: Some(client),
        })
        .await
        .unwrap()
        .into_inner()
        .client_secret
}

/// Three authorization servers (the first started alone: it bootstraps the store) and two
/// revocation replicas, on the shared test database.
async fn cluster() -> Option<(Cluster, Vec<Served>, Vec<(u16, Served)>)> {
    let cluster = Cluster::new().await?;
    let (authz, revocation) = cluster.start_replicas().await;
    Some((cluster, authz, revocation))
}

impl Cluster {
    /// Three authorization servers and two revocation replicas, every one ready.
    async fn start_replicas(&self) -> (Vec<Served>, Vec<(u16, Served)>) {
        let ports = [free_port(), free_port()];
        let revocation_urls = ports.map(|p| format!("https://127.0.0.1:{p}")).join(",");
        let first = self.authz("authz-1", &revocation_urls);
        let mut authz = vec![first];
        for i in 2..=3 {
            authz.push(self.authz(&format!("authz-{i}"), &revocation_urls));
        }
        let authz_url = authz[0].url("authz_grpc");
        let revocation = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let name = format!("revocation-{}", i + 1);
                (*p, self.revocation(&name, *p, &authz_url))
            })
            .collect::<Vec<_>>();
        // Every replica ready: its store answers, its revocation feed has synced.
        for s in authz.iter().chain(revocation.iter().map(|(_, r)| r)) {
            s.ready().await;
        }
        (authz, revocation)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_refreshes_over_three_authz_processes_at_most_one_successor_stays_usable() {
    let Some((cluster, authz, _revocation)) = cluster().await else {
        return;
    };
    let mut admin = cluster.admin(&authz[0], &authz[0]).await;
    let secret = create_client(
        &mut admin,
        pb_admin::Client {
            grant_types: vec!["password".into(), "refresh_token".into()],
            ..writ_tests::service_spec("gateway", "orders.read", &["orders"])
        },
    )
    .await;
    admin
        .create_user(CreateUserRequest {
            username: "alice".into(),
            password: "correct horse battery".into(),
            scope: "orders.read".into(),
        })
        .await
        .unwrap();
    let mut clients = Vec::new();
    for a in &authz {
        clients.push(cluster.token_client(a).await);
    }
    let password = || TokenRequest {
        grant_type: "password".into(),
        client_id: "gateway".into(),
        client_secret: secret.clone(),
        username: "alice".into(),
        password: "correct horse battery".into(),
        ..Default::default()
    };
    // Signed in on the second replica (created on the first).
    let login = clients[1]
        .clone()
        .token(password())
        .await
        .unwrap()
        .into_inner();
    let refresh = |token: &str| TokenRequest {
        grant_type: "refresh_token".into(),
        client_id: "gateway".into(),
        client_secret: secret.clone(),
        refresh_token: token.into(),
        ..Default::default()
    };
    // Nine uses of one refresh token at once, three on each process.
    let mut tasks = Vec::new();
    for i in 0..9 {
        let mut client = clients[i % 3].clone();
        let request = refresh(&login.refresh_token);
        tasks.push(tokio::spawn(async move { client.token(request).await }));
    }
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => won.push(r.into_inner()),
            Err(status) => assert_eq!(writ_tests::reason(&status), "invalid_grant", "{status:?}"),
        }
    }
    // Within the rotation grace period a use that follows another may pass for a retry and
    // replace the successor; overlapping uses are reuse and revoke the family on every replica.
    // Either way at most one successor handed out works, on whichever replica.
    assert!(!won.is_empty(), "the first use wins");
    let mut usable = 0;
    for (i, w) in won.iter().enumerate() {
        let mut client = clients[i % 3].clone();
        if client.token(refresh(&w.refresh_token)).await.is_ok() {
            usable += 1;
        }
    }
    assert!(usable <= 1, "{usable} of {} successors usable", won.len());
    // An access token issued by one replica is introspected as active by another.
    let access = clients[0]
        .clone()
        .token(password())
        .await
        .unwrap()
        .into_inner()
        .access_token;
    assert!(active(&mut clients[2].clone(), &access, "gateway", &secret).await);
    // Each replica's /metrics shows its pool and its store's latency.
    let metrics = format!("{}/metrics", authz[1].url("ops"));
    let (status, body) = tokio::task::spawn_blocking(move || writ_tests::http_get(&metrics))
        .await
        .unwrap();
    assert_eq!(status, 200);
    for series in [
        "writ_store_pool_connections{service=\"authz\"}",
        "writ_store_pool_idle_connections{service=\"authz\"}",
        "writ_store_operation_seconds_count{op=\"commit\"}",
        "writ_tokens_issued_total{grant_type=\"refresh_token\"}",
    ] {
        assert!(body.contains(series), "{series} in\n{body}");
    }
    drop_cluster(&cluster.db).await;
}

/// Follows the feed on `url` from `cursor`, collecting (sequence, value) until `stop` says so
/// or the stream ends; returns what it got and why it stopped.
async fn follow(
    url: &str,
    ca_pem: &str,
    token: &str,
    cursor: u64,
    got: &mut Vec<(u64, String)>,
    stop: impl Fn(&[(u64, String)]) -> bool,
) -> Result<(), tonic::Status> {
    let channel = connect(url, Some(ca_pem)).await;
    let mut client = RevocationServiceClient::with_interceptor(channel, bearer(token));
    let mut stream = client
        .watch(WatchRequest {
            from_sequence: cursor,
        })
        .await?
        .into_inner();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no message for 20 s"))?
    {
        match message?.event {
            Some(watch_response::Event::Revocation(e)) => {
                got.push((e.sequence, e.entry.unwrap().value));
                if stop(got) {
                    return Ok(());
                }
            }
            Some(_) => {}
            None => {}
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_fails_over_between_revocation_replicas_without_gap_or_duplicate() {
    let Some((cluster, authz, mut revocation)) = cluster().await else {
        return;
    };
    let mut admin = cluster.admin(&authz[0], &authz[0]).await;
    // A subscriber's client, and its watch token.
    let watcher_secret = create_client(
        &mut admin,
        writ_tests::service_spec("watcher", "writ.revocation.watch", &["writ-revocation"]),
    )
    .await;
    let token = cluster
        .token_client(&authz[0])
        .await
        .token(writ_tests::cc("watcher", &watcher_secret))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    // Revocations written through two different authorization servers, in the background.
    let mut writers = Vec::new();
    for (i, a) in authz.iter().take(2).enumerate() {
        let mut admin = cluster.admin(&authz[0], a).await;
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..60 {
                let value = format!("via-{i}-{n}");
                let request = revoke_token_id(&value);
                if admin.revoke(request).await.is_ok() {
                    acknowledged.push(value);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acknowledged
        }));
    }
    // Follow the first replica until 30 entries arrived, kill it, and resume on the second.
    let mut got = Vec::new();
    let (first_url, second_url) = (
        format!("https://127.0.0.1:{}", revocation[0].0),
        format!("https://127.0.0.1:{}", revocation[1].0),
    );
    follow(&first_url, &cluster.ca_pem, &token, 0, &mut got, |g| {
        g.len() >= 30
    })
    .await
    .unwrap();
    revocation[0].1.kill_9();
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert_eq!(acknowledged.len(), 120, "every revocation acknowledged");
    let cursor = got.last().unwrap().0;
    let expected: BTreeSet<String> = acknowledged.iter().cloned().collect();
    follow(
        &second_url,
        &cluster.ca_pem,
        &token,
        cursor,
        &mut got,
        |g| g.iter().map(|(_, v)| v).collect::<BTreeSet<_>>().len() >= expected.len(),
    )
    .await
    .unwrap();
    let sequences: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        sequences,
        (1..=got.len() as u64).collect::<Vec<_>>(),
        "one gap-free sequence, no duplicate, across the failover"
    );
    let values: BTreeSet<String> = got.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(values.len(), got.len(), "no entry delivered twice");
    assert!(
        values.is_superset(&expected),
        "every acknowledged revocation delivered"
    );
    // The replica that served the rest measured how far behind its subscriber was.
    let metrics = format!("{}/metrics", revocation[1].1.url("ops"));
    let (_, body) = tokio::task::spawn_blocking(move || writ_tests::http_get(&metrics))
        .await
        .unwrap();
    assert!(
        body.contains("writ_revocation_subscriber_lag_events_count"),
        "{body}"
    );
    drop_cluster(&cluster.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_an_authz_replica_under_load_loses_no_acknowledged_write() {
    let Some((cluster, mut authz, _revocation)) = cluster().await else {
        return;
    };
    // Clients created through the third replica as fast as it answers; it is killed mid-way.
    let mut victim = cluster.admin(&authz[0], &authz[2]).await;
    let load = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for n in 0..10_000 {
            let id = format!("svc-{n}");
            let request = CreateClientRequest {
                client: Some(writ_tests::service_spec(&id, "orders.read", &["orders"])),
            };
            match victim.create_client(request).await {
                Ok(_) => acknowledged.push(id),
                Err(_) => break,
            }
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    authz[2].kill_9();
    let acknowledged = tokio::time::timeout(Duration::from_secs(30), load)
        .await
        .expect("the load ends once its server is gone")
        .unwrap();
    assert!(
        acknowledged.len() > 10,
        "the load ran: {}",
        acknowledged.len()
    );
    // Every acknowledged client is there, on a surviving replica.
    let mut admin = cluster.admin(&authz[0], &authz[0]).await;
    for id in &acknowledged {
        admin
            .get_client(pb_admin::GetClientRequest {
                client_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{id} was acknowledged, then lost: {e:?}"));
    }
    drop_cluster(&cluster.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_migrates_an_older_schema_and_refuses_a_newer_one() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let schema = format!("{}_authz", cluster.db.schema.as_deref().unwrap());
    // A database an earlier build left at version 1.
    let (client, connection) = tokio_postgres::connect(&cluster.db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.writ_schema (id smallint PRIMARY KEY CHECK (id = 1), version integer NOT NULL);
             INSERT INTO {schema}.writ_schema VALUES (1, 1);
             CREATE TABLE {schema}.writ_kv (tree smallint NOT NULL, key bytea NOT NULL, value bytea NOT NULL, PRIMARY KEY (tree, key));"
        ))
        .await
        .unwrap();
    let flags = AUTHZ_PORTS;
    let mut authz = cluster.start("authz-old-schema", "authz", &flags, &[]);
    let version: i32 = client
        .query_one(&format!("SELECT version FROM {schema}.writ_schema"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        version,
        writ_store_postgres::SCHEMA_VERSION,
        "migrated at start"
    );
    authz.kill_9();
    // A newer build moved it on: this one refuses to start, saying why.
    client
        .batch_execute(&format!(
            "UPDATE {schema}.writ_schema SET version = {}",
            writ_store_postgres::SCHEMA_VERSION + 1
        ))
        .await
        .unwrap();
    let refused = cluster
        .try_start("authz-new-schema", "authz", &flags, &[])
        .err()
        .expect("a replica refuses a newer schema");
    assert!(refused.contains("this build supports up to"), "{refused}");
    drop_cluster(&cluster.db).await;
}

/// The database stops (connections cut) and comes back while revocations are written and
/// tokens issued: calls in between fail at once with a clear UNAVAILABLE
/// (`temporarily_unavailable`), readiness says so, the replicas recover by themselves (no
/// restart of Writ), and every revocation acknowledged reaches the feed. On a PostgreSQL of
/// the test's own: the shared one must not go down under the other tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_restarting_under_load_loses_nothing_acknowledged() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use writ_tests::private_postgres::PrivatePostgres;

    let Some(pg) = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap()
    else {
        return;
    };
    let pg = Arc::new(pg);
    let mut db = PgConfig::new(pg.url());
    db.schema = Some("writ".into());
    let cluster = Cluster::on(db);
    let (authz, revocation) = cluster.start_replicas().await;
    let mut admin = cluster.admin(&authz[0], &authz[1]).await;
    let secret = create_client(
        &mut admin,
        writ_tests::service_spec("svc", "orders.read", &["orders"]),
    )
    .await;
    let watcher_secret = create_client(
        &mut admin,
        writ_tests::service_spec("watcher", "writ.revocation.watch", &["writ-revocation"]),
    )
    .await;
    let mut tokens = cluster.token_client(&authz[0]).await;
    let watch_token = tokens
        .token(writ_tests::cc("watcher", &watcher_secret))
        .await
        .unwrap()
        .into_inner()
        .access_token;

    // Load: revocations through the second replica, tokens from the first; every call bounded.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                let value = format!("r-{n}");
                n += 1;
                let request = revoke_token_id(&value);
                match tokio::time::timeout(Duration::from_secs(15), admin.revoke(request)).await {
                    Ok(Ok(_)) => acknowledged.push((Instant::now(), value)),
                    Ok(Err(status)) => refused.push(status),
                    Err(_) => panic!("a call during the restart hung for 15 s"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acknowledged, refused)
        })
    };
    let reader = {
        let (stop, secret, mut tokens) = (stop.clone(), secret.clone(), tokens.clone());
        tokio::spawn(async move {
            let mut refused = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let call = tokens.token(writ_tests::cc("svc", &secret));
                match tokio::time::timeout(Duration::from_secs(15), call).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(status)) => refused.push(status),
                    Err(_) => panic!("a token request during the restart hung for 15 s"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            refused
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let down = {
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || pg.stop())
            .await
            .unwrap();
        Instant::now()
    };
    // While it is down, readiness says so (liveness is another matter).
    let ready = format!("{}/readyz", authz[1].url("ops"));
    let (status, body) = tokio::task::spawn_blocking(move || writ_tests::http_get(&ready))
        .await
        .unwrap();
    assert_eq!(status, 503, "not ready while the database is down: {body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || pg.start_again())
            .await
            .unwrap();
    }
    let up = Instant::now();
    // Writ recovers by itself: readiness, then writes acknowledged again, within a bound.
    authz[1].ready().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Release);
    let (acknowledged, refused) = writer.await.unwrap();
    let read_refused = reader.await.unwrap();
    assert!(
        acknowledged.iter().any(|(at, _)| *at > up),
        "revocations are acknowledged again after the restart"
    );
    assert!(
        acknowledged.iter().any(|(at, _)| *at < down),
        "the load ran before the restart"
    );
    for status in refused.iter().chain(read_refused.iter()) {
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "a clear error while the database was down: {status:?}"
        );
    }
    assert!(
        !refused.is_empty(),
        "writes were refused while the database was down"
    );

    // Nothing acknowledged was lost: every one reaches the feed.
    let expected: BTreeSet<String> = acknowledged.into_iter().map(|(_, v)| v).collect();
    let mut got = Vec::new();
    let url = format!("https://127.0.0.1:{}", revocation[0].0);
    follow(&url, &cluster.ca_pem, &watch_token, 0, &mut got, |g| {
        let seen: BTreeSet<&String> = g.iter().map(|(_, v)| v).collect();
        expected.iter().all(|v| seen.contains(v))
    })
    .await
    .unwrap();
    let sequences: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences, (1..=got.len() as u64).collect::<Vec<_>>());
}

/// `deploy/replicas.sh stop` on drop, so a failed test leaves no process behind.
struct Deployed<'a> {
    script: PathBuf,
    env: Vec<(&'a str, String)>,
}

impl Deployed<'_> {
    fn run(&self, action: &str) -> writ_tests::Finished {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script).arg(action);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        run_bounded(&mut cmd, None, Duration::from_secs(180))
    }
}

impl Drop for Deployed<'_> {
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}

/// The documented deployment, as its script runs it: three authorization servers, two
/// revocation services and an STS as separate processes against PostgreSQL, each ready; a token
/// issued by one replica is active at another, revoked through a third; then all stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_script_starts_three_authz_two_revocation_and_an_sts() {
    let Some(db) = database().await else { return };
    let base = tempfile::tempdir().unwrap();
    let triple = || format!("{},{},{}", free_port(), free_port(), free_port());
    let deployed = Deployed {
        script: writ_tests::workspace_root().join("deploy/replicas.sh"),
        env: vec![
            ("WRIT", WRIT.to_owned()),
            ("WRIT_STORE", db.url.clone()),
            ("WRIT_STORE_SCHEMA", db.schema.clone().unwrap()),
            ("BASE", base.path().display().to_string()),
            (
                "AUTHZ_PORTS",
                format!("{} {} {}", triple(), triple(), triple()),
            ),
            (
                "REVOCATION_PORTS",
                format!("{} {}", free_port(), free_port()),
            ),
            ("STS_PORTS", format!("{},{}", free_port(), free_port())),
        ],
    };
    let started = deployed.run("start");
    assert!(started.status.success(), "{started}");
    for name in [
        "authz-1",
        "authz-2",
        "authz-3",
        "revocation-1",
        "revocation-2",
        "sts",
    ] {
        assert!(
            started.stdout.contains(&format!("{name} ready")),
            "{started}"
        );
    }
    let endpoints = |name: &str| -> Value {
        let path = base.path().join(name).join(writ::platform::ENDPOINTS_FILE);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let ca_pem = std::fs::read_to_string(base.path().join("shared/ca.pem")).unwrap();
    let url = |name: &str, key: &str| endpoints(name)[key].as_str().unwrap().to_owned();
    let credential = std::fs::read_to_string(
        base.path()
            .join("authz-1")
            .join(writ::platform::ADMIN_TOKEN_FILE),
    )
    .unwrap();
    let admin_at = |name: &str| {
        let (url, ca_pem, credential) =
            (url(name, "authz_admin"), ca_pem.clone(), credential.clone());
        async move {
            AdminServiceClient::with_interceptor(
                connect(&url, Some(&ca_pem)).await,
                bearer(credential.trim()),
            )
        }
    };
    let secret = create_client(
        &mut admin_at("authz-1").await,
        writ_tests::service_spec("svc", "orders.read", &["orders"]),
    )
    .await;
    let token_at = |name: &str| {
        let (url, ca_pem) = (url(name, "authz_grpc"), ca_pem.clone());
        async move { AuthorizationServiceClient::new(connect(&url, Some(&ca_pem)).await) }
    };
    let access = token_at("authz-3")
        .await
        .token(writ_tests::cc("svc", &secret))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let mut at_2 = token_at("authz-2").await;
    assert!(active(&mut at_2, &access, "svc", &secret).await);
    admin_at("authz-2")
        .await
        .revoke(revoke_token_id(&writ_tests::jti_of(&access)))
        .await
        .unwrap();
    assert!(!active(&mut at_2, &access, "svc", &secret).await);
    let stopped = deployed.run("stop");
    assert!(stopped.status.success(), "{stopped}");
    drop_cluster(&db).await;
}

/// Spans an OpenTelemetry collector received: (service.name, trace id, span id, parent span id,
/// span name), ids in hex.
type Spans = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String, String, String)>>>;

/// A minimal OTLP/gRPC trace collector on loopback.
struct Collector(Spans);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Collector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for s in scope.spans {
                    spans.push((
                        service.clone(),
                        hex(&s.trace_id),
                        hex(&s.span_id),
                        hex(&s.parent_span_id),
                        s.name,
                    ));
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// One trace runs through two processes: a caller's `traceparent` on a token exchange at the
/// STS continues in the STS's span, and into the authorization server's span for the call the
/// STS makes to check its caller there, both exported over OTLP to a collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_runs_from_the_sts_into_the_authorization_server() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let Some((cluster, authz, revocation)) = cluster().await else {
        return;
    };
    let spans: Spans = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(spans.clone())))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut admin = cluster.admin(&authz[0], &authz[0]).await;
    let sts_secret = create_client(
        &mut admin,
        pb_admin::Client {
            scope: "writ.revocation.watch writ.admin.authenticate_client writ.admin.read".into(),
            audience: vec!["writ-revocation".into(), "writ-admin".into()],
            ..writ_tests::service_spec("sts", "", &[])
        },
    )
    .await;
    let caller_secret = create_client(
        &mut admin,
        writ_tests::service_spec("svc", "orders.read", &["orders"]),
    )
    .await;
    let revocation_urls = revocation
        .iter()
        .map(|(p, _)| format!("https://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    // The authorization server the STS calls exports too: a replica started with the collector.
    let traced_authz = cluster.start(
        "authz-traced",
        "authz",
        &[AUTHZ_PORTS.as_slice(), &["--otlp-endpoint", &collector]].concat(),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let sts = cluster.start(
        "sts",
        "sts",
        &[
            "--sts-port",
            "0",
            "--sts-http-port",
            "0",
            "--sts-issuer",
            "https://sts.writ.test",
            "--sts-client-id",
            "sts",
            "--authz-url",
            &traced_authz.url("authz_grpc"),
            "--authz-admin-url",
            &traced_authz.url("authz_admin"),
            "--revocation-url",
            &revocation_urls,
            "--otlp-endpoint",
            &collector,
        ],
        &[
            ("WRIT_STS_CLIENT_SECRET", &sts_secret),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    sts.ready().await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(writ_proto::sts::ExchangeRequest {
        grant_type: "urn:ietf:params:oauth:grant-type:token-exchange".into(),
        client_id: "svc".into(),
        client_secret: caller_secret,
        subject_token: "not-a-token".into(),
        subject_token_type: "urn:ietf:params:oauth:token-type:access_token".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let mut client =
        writ_proto::sts::security_token_service_client::SecurityTokenServiceClient::new(
            connect(&sts.url("sts_grpc"), Some(&cluster.ca_pem)).await,
        );
    let refused = client.exchange(request).await.expect_err("not a token");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    // Both processes export their span of this trace; the authorization server's is a child of
    // the STS's.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (sts_span, authz_span) = loop {
        let found = {
            let spans = spans.lock().unwrap();
            let of = |service: &str, name: &str| {
                spans
                    .iter()
                    .find(|s| s.0.contains(service) && s.1 == trace_id && s.4.contains(name))
                    .cloned()
            };
            (
                of("writ-sts", "Exchange"),
                of("writ-authz", "AuthenticateClient"),
            )
        };
        if let (Some(s), Some(a)) = found {
            break (s, a);
        }
        assert!(
            Instant::now() < deadline,
            "spans of trace {trace_id} not exported within 20 s: {:?}",
            spans.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        sts_span.3, "00f067aa0ba902b7",
        "the STS's span continues the caller's"
    );
    assert_eq!(
        authz_span.3, sts_span.2,
        "the authorization server's span is the STS's child"
    );
    drop_cluster(&cluster.db).await;
}

/// `writ up` (every service in one process) on PostgreSQL instead of sled: it starts, issues,
/// and a revocation reaches its introspection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writ_up_runs_on_postgres() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let up = cluster.start(
        "up",
        "up",
        &[
            AUTHZ_PORTS.as_slice(),
            &[
                "--revocation-port",
                "0",
                "--sts-port",
                "0",
                "--sts-http-port",
                "0",
                "--sts-issuer",
                "https://sts.writ.test",
            ],
        ]
        .concat(),
        &[],
    );
    up.ready().await;
    let mut admin = cluster.admin(&up, &up).await;
    let secret = create_client(
        &mut admin,
        writ_tests::service_spec("svc", "orders.read", &["orders"]),
    )
    .await;
    let mut tokens = cluster.token_client(&up).await;
    let access = tokens
        .token(writ_tests::cc("svc", &secret))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    admin
        .revoke(revoke_token_id(&writ_tests::jti_of(&access)))
        .await
        .unwrap();
    assert!(!active(&mut tokens, &access, "svc", &secret).await);
    drop_cluster(&cluster.db).await;
}

/// Signing in across replicas: sessions, consents and codes live in the shared store, so a
/// browser signs in at one authorization server, consents at another, the client redeems the
/// code at a third, and a sign-out at any of them ends it everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_at_one_replica_and_the_code_is_redeemed_at_another() {
    use writ_tests::browser::{Browser, encode_form, pkce, query_of};
    use writ_tests::http_client::{HttpClient, form_encode};
    let Some((cluster, authz, _revocation)) = cluster().await else {
        return;
    };
    let mut admin = cluster.admin(&authz[0], &authz[0]).await;
    admin
        .create_user(CreateUserRequest {
            username: "ada".into(),
            password: "correct horse battery".into(),
            scope: "orders.read".into(),
        })
        .await
        .unwrap();
    let callback = "https://rp.example/callback";
    create_client(
        &mut admin,
        pb_admin::Client {
            client_id: "web".into(),
            client_type: pb_admin::ClientType::Public as i32,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scope: "orders.read".into(),
            audience: vec!["orders".into()],
            redirect_uris: vec![callback.into()],
            ..Default::default()
        },
    )
    .await;
    let http = |s: &Served| HttpClient::new(&s.url("authz_http"), Some(&cluster.ca_pem));
    let (verifier, challenge) = pkce();
    let url = format!(
        "/oauth2/authorize?{}",
        encode_form(&[
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", callback),
            ("scope", "openid orders.read"),
            ("state", "s"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
    );
    let mut b = Browser::new(http(&authz[0]));
    let login = b.get(&url).await.page();
    let consent = b
        .submit(
            &login,
            &[("username", "ada"), ("password", "correct horse battery")],
        )
        .await
        .page();
    // The same browser, its next request answered by another replica.
    b.http = http(&authz[1]);
    let to = b.submit(&consent, &[("decision", "allow")]).await.away();
    let q = query_of(&to);
    assert_eq!(q["iss"], ISSUER);
    let redeem = format!(
        "grant_type=authorization_code&client_id=web&code={}&redirect_uri={}&code_verifier={}",
        form_encode(&q["code"]),
        form_encode(callback),
        form_encode(&verifier)
    );
    let body = http(&authz[2])
        .post_form("/oauth2/token", &[], &redeem)
        .await
        .token_json();
    assert!(body["id_token"].is_string());
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let refresh_at = |s: &Served, token: &str| {
        let form = format!(
            "grant_type=refresh_token&client_id=web&refresh_token={}",
            form_encode(token)
        );
        let http = http(s);
        async move { http.post_form("/oauth2/token", &[], &form).await }
    };
    // The refresh token works at another replica (and rotates).
    let rotated = refresh_at(&authz[0], &refresh).await.token_json();
    let refresh = rotated["refresh_token"].as_str().unwrap().to_owned();

    // Signed out at a third replica: the refresh token stops working at every one.
    b.http = http(&authz[2]);
    let confirm = b.get("/oauth2/logout").await.page();
    b.submit(&confirm, &[]).await.page();
    let r = refresh_at(&authz[1], &refresh).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    // The code was spent for every replica.
    let r = http(&authz[0])
        .post_form("/oauth2/token", &[], &redeem)
        .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    drop_cluster(&cluster.db).await;
}
