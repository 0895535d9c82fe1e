//! Issue 15's figures: `writ up` (this binary re-executed as `writ`, a process of its own, so it
//! can be killed with SIGKILL) with 1,000,000 revocations in the log and 100,000 more queued in
//! the authorization server's outbox, killed and restarted. How long until it serves again, how
//! long until the outbox is drained, and how much the feed's head grew: exactly the 100,000 new
//! revocations, however many crashes (re-publication appends nothing).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use tonic::transport::Channel;
use writ_proto::admin::admin_service_client::AdminServiceClient;
use writ_proto::admin::{self as pb_admin, RevokeRequest};
use writ_proto::authz::authorization_service_client::AuthorizationServiceClient;
use writ_proto::revocation::revocation_service_client::RevocationServiceClient;
use writ_proto::revocation::{GetStatusRequest, RevocationEntry};
use writ_token::RevocationKind;
use writ_vocabulary::names::{REVOCATION_AUDIENCE, REVOCATION_WATCH_SCOPE};

use crate::revocation::unix_now;

/// The environment variable that makes this binary run as `writ`.
pub const AS_WRIT: &str = "WRIT_BENCH_AS_WRIT";

/// Every wait gives up after this long.
pub(crate) const PATIENCE: Duration = Duration::from_secs(600);
/// The authorization server's ports: any free ones (endpoints.json says which).
pub(crate) const AUTHZ_PORTS: [&str; 12] = [
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
/// AdminService.Revoke's most entries per call.
const BATCH: usize = 1000;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Revocations in the log before the crashes.
    #[arg(long, default_value_t = 1_000_000)]
    pub crash_log: usize,
    /// Revocations queued in the outbox (the revocation service away) when the process is
    /// killed.
    #[arg(long, default_value_t = 100_000)]
    pub crash_outbox: usize,
}

/// A `writ` process on a data directory.
pub(crate) struct Writ {
    pub(crate) child: Child,
    dir: PathBuf,
}

impl Writ {
    /// Starts `writ <args>` and waits for its endpoints.json; returns it and how long it took.
    pub(crate) fn start(dir: &Path, args: &[&str]) -> anyhow::Result<(Writ, Duration)> {
        let endpoints = dir.join(writ::platform::ENDPOINTS_FILE);
        let _ = std::fs::remove_file(&endpoints);
        let started = Instant::now();
        let mut cmd = Command::new(std::env::current_exe()?);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WRIT_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .env(AS_WRIT, "1")
            .env("WRIT_LOG", "error")
            .args(args)
            .arg("--data-dir")
            .arg(dir)
            .args(["--ops-listen", "off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        let mut writ = Writ {
            child,
            dir: dir.to_owned(),
        };
        let pid = u64::from(writ.child.id());
        loop {
            if let Some(status) = writ.child.try_wait()? {
                anyhow::bail!("writ {args:?} exited: {status}");
            }
            if writ.endpoints().ok().and_then(|e| e["pid"].as_u64()) == Some(pid) {
                return Ok((writ, started.elapsed()));
            }
            anyhow::ensure!(started.elapsed() < PATIENCE, "writ {args:?} never came up");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn endpoints(&self) -> anyhow::Result<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join(writ::platform::ENDPOINTS_FILE))?;
        Ok(serde_json::from_str(&text)?)
    }

    pub(crate) fn url(&self, name: &str) -> anyhow::Result<String> {
        self.endpoints()?[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {name} in endpoints.json"))
    }

    fn kill_9(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    pub(crate) fn terminate(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let asked = Instant::now();
        while self.child.try_wait()?.is_none() {
            // Dropped, so killed: a shutdown that hangs fails the run instead of stalling it.
            anyhow::ensure!(
                asked.elapsed() < PATIENCE,
                "writ never stopped after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Writ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn channel(url: &str, ca: &str) -> anyhow::Result<Channel> {
    Ok(writ_server::endpoint(url, Some(ca))?.connect().await?)
}

pub(crate) fn with_bearer<T>(request: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(request);
    request
        .metadata_mut()
        .insert("authorization", writ_client::bearer_value(token)?);
    Ok(request)
}

/// Revokes token ids `from..to` through the admin API, eight calls in flight.
pub(crate) async fn revoke(
    admin_url: &str,
    ca: &str,
    admin: &str,
    from: usize,
    to: usize,
) -> anyhow::Result<()> {
    let channel = channel(admin_url, ca).await?;
    let expires_at = unix_now() + 6 * 3600;
    let mut calls = tokio::task::JoinSet::new();
    for start in (from..to).step_by(BATCH) {
        if calls.len() >= 8 {
            calls.join_next().await.context("a call")???;
        }
        let entries = (start..(start + BATCH).min(to))
            .map(|i| RevocationEntry {
                kind: RevocationKind::TokenId as i32,
                value: crate::revocation::token_id(i as u64),
                expires_at,
                ..Default::default()
            })
            .collect();
        let request = with_bearer(RevokeRequest { entries }, admin)?;
        let mut client = AdminServiceClient::new(channel.clone());
        calls.spawn(async move { client.revoke(request).await.map(|_| ()) });
    }
    while let Some(r) = calls.join_next().await {
        r??;
    }
    Ok(())
}

/// The revocation service's head and live count, asked with a watcher's token.
pub(crate) async fn head(
    writ: &Writ,
    ca: &str,
    watcher: &(String, String),
) -> anyhow::Result<(u64, u64)> {
    let token = watch_token(writ, ca, watcher).await?;
    let status = RevocationServiceClient::new(channel(&writ.url("revocation_grpc")?, ca).await?)
        .get_status(with_bearer(GetStatusRequest {}, &token)?)
        .await?
        .into_inner();
    Ok((status.head_sequence, status.live_entries))
}

/// Waits until the head reaches `target`; how long it took.
pub(crate) async fn drained(
    writ: &Writ,
    ca: &str,
    watcher: &(String, String),
    target: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Ok((h, _)) = head(writ, ca, watcher).await
            && h >= target
        {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < PATIENCE, "the outbox never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `writ up` with every port chosen by the system.
pub(crate) fn up_args() -> Vec<&'static str> {
    ["up"]
        .into_iter()
        .chain(AUTHZ_PORTS)
        .chain([
            "--revocation-port",
            "0",
            "--sts-port",
            "0",
            "--sts-http-port",
            "0",
        ])
        .collect()
}

/// Registers `bench-watcher`, a client that may watch the revocation feed; its id and secret.
pub(crate) async fn create_watcher(
    writ: &Writ,
    ca: &str,
    admin: &str,
) -> anyhow::Result<(String, String)> {
    let mut client = AdminServiceClient::new(channel(&writ.url("authz_admin")?, ca).await?);
    let created = client
        .create_client(with_bearer(
            pb_admin::CreateClientRequest {
                client: Some(pb_admin::Client {
                    client_id: "bench-watcher".into(),
                    client_type: pb_admin::ClientType::Confidential as i32,
                    grant_types: vec!["client_credentials".into()],
                    scope: REVOCATION_WATCH_SCOPE.into(),
                    audience: vec![REVOCATION_AUDIENCE.into()],
                    ..Default::default()
                }),
            },
            admin,
        )?)
        .await?
        .into_inner();
    Ok(("bench-watcher".to_owned(), created.client_secret))
}

/// A token of `watcher`'s for the revocation service.
pub(crate) async fn watch_token(
    writ: &Writ,
    ca: &str,
    watcher: &(String, String),
) -> anyhow::Result<String> {
    Ok(
        AuthorizationServiceClient::new(channel(&writ.url("authz_grpc")?, ca).await?)
            .token(writ_proto::authz::TokenRequest {
                grant_type: "client_credentials".into(),
                client_id: watcher.0.clone(),
                client_secret: watcher.1.clone(),
                audience: vec![REVOCATION_AUDIENCE.into()],
                ..Default::default()
            })
            .await?
            .into_inner()
            .access_token,
    )
}

pub fn run(args: &Args, load: &tokio::runtime::Runtime) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("writ-data");
    let up = up_args();
    let (writ, _) = Writ::start(&dir, &up)?;
    let ca = std::fs::read_to_string(dir.join(writ_tls::CA_CERT_FILE))?;
    let admin = std::fs::read_to_string(dir.join(writ::platform::ADMIN_TOKEN_FILE))?
        .trim()
        .to_owned();
    let (log_n, outbox_n) = (args.crash_log, args.crash_outbox);
    let watcher = load.block_on(async {
        let watcher = create_watcher(&writ, &ca, &admin).await?;
        let started = Instant::now();
        revoke(&writ.url("authz_admin")?, &ca, &admin, 0, log_n).await?;
        drained(&writ, &ca, &watcher, log_n as u64).await?;
        eprintln!(
            "crash: {log_n} revocations in the log after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        anyhow::Ok(watcher)
    })?;
    let (log_head, _) = load.block_on(head(&writ, &ca, &watcher))?;
    writ.terminate()?;

    // The authorization server alone, its revocation service away: revocations pile up in the
    // outbox. Then SIGKILL.
    let away = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let away = format!("https://{away}");
    let (authz, _) = Writ::start(
        &dir,
        &[
            &["serve", "authz"][..],
            &AUTHZ_PORTS,
            &["--revocation-url", &away],
        ]
        .concat(),
    )?;
    load.block_on(revoke(
        &authz.url("authz_admin")?,
        &ca,
        &admin,
        log_n,
        log_n + outbox_n,
    ))?;
    authz.kill_9()?;
    notes.push(format!(
        "crash: {log_n} revocations in the log (head {log_head}), then {outbox_n} more recorded by the authorization server alone (its revocation service away, so all in its outbox), then kill -9"
    ));

    // `writ up` again: serving, then the outbox drained. Killed once more while it drains,
    // and started again.
    let (writ, serving) = Writ::start(&dir, &up)?;
    let first_token = load.block_on(head(&writ, &ca, &watcher)).map(|_| ());
    first_token?;
    let part = load.block_on(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        head(&writ, &ca, &watcher).await
    })?;
    writ.kill_9()?;
    let (writ, serving_again) = Writ::start(&dir, &up)?;
    let drain = load.block_on(drained(&writ, &ca, &watcher, log_head + outbox_n as u64))?;
    // Settled: nothing more arrives.
    let (final_head, live) = load.block_on(async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        head(&writ, &ca, &watcher).await
    })?;
    writ.terminate()?;
    notes.push(format!(
        "crash: restarted after kill -9 with {outbox_n} in the outbox: serving (endpoints written, every store open) after {:.2} s; killed again 0.3 s later with the head at {} (of {}); restarted: serving after {:.2} s, outbox drained {:.2} s later",
        serving.as_secs_f64(),
        part.0,
        log_head + outbox_n as u64,
        serving_again.as_secs_f64(),
        drain.as_secs_f64()
    ));
    let growth = final_head - log_head;
    notes.push(format!(
        "crash: the head grew by {growth} over two crashes for {outbox_n} new revocations ({} beyond them); {live} live",
        growth as i64 - outbox_n as i64
    ));
    anyhow::ensure!(
        growth == outbox_n as u64 && live == final_head,
        "re-publication appended again: head {final_head}, live {live}, expected {}",
        log_head + outbox_n as u64
    );
    Ok(notes)
}
