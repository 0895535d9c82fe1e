//! Issue 17's figures: the resident memory of `writ up` (this binary re-executed as `writ`, a
//! process of its own, so its memory is its own) empty, at rest with a million live
//! revocations, while ten new subscribers catch up on the feed at once, and after a restart.

use std::time::{Duration, Instant};

use writ_proto::revocation::WatchRequest;
use writ_proto::revocation::revocation_service_client::RevocationServiceClient;
use writ_revocation_client::RevocationSet;

use crate::crash::{
    PATIENCE, Writ, channel, create_watcher, drained, head, revoke, up_args, watch_token,
    with_bearer,
};
use crate::revocation::{catch_up, peak_while, proc_status};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Live token-id revocations made through the admin API.
    #[arg(long, default_value_t = 1_000_000)]
    pub memory_revocations: usize,
    /// New subscribers that catch up on the feed at once.
    #[arg(long, default_value_t = 10)]
    pub memory_subscribers: usize,
    /// Extra `writ up` arguments (cache sizes, say), space-separated.
    #[arg(long, default_value = "")]
    pub memory_writ_args: String,
    /// Keeps the run's directory here (the data directory is `DIR/writ-data`) to profile a
    /// restart on it; on the same filesystem as the system's temporary directory.
    #[arg(long)]
    pub memory_keep_dir: Option<std::path::PathBuf>,
}

/// How long the process is left alone before "at rest" is read.
const SETTLE: Duration = Duration::from_secs(5);

/// `VmRSS` of process `pid`, in bytes.
fn rss_of(pid: u32) -> anyhow::Result<i64> {
    Ok(proc_status(&pid.to_string(), &["VmRSS:"])?[0])
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `n` new subscribers from nothing at once, each on its own connection, until every one holds
/// `live` revocations and knows it is current; how long the last took.
async fn subscribers(
    writ: &Writ,
    ca: &str,
    watcher: &(String, String),
    n: usize,
    live: usize,
) -> anyhow::Result<Duration> {
    let token = watch_token(writ, ca, watcher).await?;
    let url = writ.url("revocation_grpc")?;
    let started = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (url, ca, token) = (url.clone(), ca.to_owned(), token.clone());
        all.spawn(async move {
            let mut client = RevocationServiceClient::new(channel(&url, &ca).await?);
            let request = with_bearer(WatchRequest { from_sequence: 0 }, &token)?;
            let mut stream = client.watch(request).await?.into_inner();
            let deadline = tokio::time::Instant::now() + PATIENCE;
            catch_up(&mut stream, &RevocationSet::new(), live, deadline).await?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = all.join_next().await {
        r??;
    }
    Ok(started.elapsed())
}

pub fn run(args: &Args, load: &tokio::runtime::Runtime) -> anyhow::Result<Vec<String>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("writ-data");
    let mut up = up_args();
    up.extend(args.memory_writ_args.split_whitespace());
    let live = args.memory_revocations;
    let (writ, _) = Writ::start(&dir, &up)?;
    let pid = writ.child.id();
    let ca = std::fs::read_to_string(dir.join(writ_tls::CA_CERT_FILE))?;
    let admin = std::fs::read_to_string(dir.join(writ::platform::ADMIN_TOKEN_FILE))?
        .trim()
        .to_owned();
    std::thread::sleep(SETTLE);
    let empty = rss_of(writ.child.id())?;
    let started = Instant::now();
    let (filling_peak, watcher) = peak_while(
        move || rss_of(pid),
        || {
            load.block_on(async {
                let watcher = create_watcher(&writ, &ca, &admin).await?;
                revoke(&writ.url("authz_admin")?, &ca, &admin, 0, live).await?;
                drained(&writ, &ca, &watcher, live as u64).await?;
                anyhow::Ok(watcher)
            })
        },
    )?;
    let filled = started.elapsed();
    std::thread::sleep(SETTLE);
    let at_rest = rss_of(writ.child.id())?;
    let (catching_up, took) = peak_while(
        move || rss_of(pid),
        || {
            load.block_on(subscribers(
                &writ,
                &ca,
                &watcher,
                args.memory_subscribers,
                live,
            ))
        },
    )?;
    std::thread::sleep(SETTLE);
    let after_subscribers = rss_of(writ.child.id())?;
    let (_, count) = load.block_on(head(&writ, &ca, &watcher))?;
    anyhow::ensure!(count as usize == live, "{count} live, not {live}");
    writ.terminate()?;
    let (writ, serving) = Writ::start(&dir, &up)?;
    let restarted = rss_of(writ.child.id())?;
    std::thread::sleep(SETTLE);
    let restarted_rest = rss_of(writ.child.id())?;
    writ.terminate()?;
    if let Some(path) = &args.memory_keep_dir {
        std::fs::rename(tmp.keep(), path)?;
    }
    let extra = if args.memory_writ_args.is_empty() {
        String::new()
    } else {
        format!(" ({})", args.memory_writ_args)
    };
    Ok(vec![format!(
        "memory: `writ up`{extra}, resident: empty {:.0} MiB; {live} live revocations made in \
         {:.0} s (peak {:.0} MiB meanwhile); at rest {:.0} MiB; {} new subscribers caught up at \
         once in {:.1} s, peak {:.0} MiB, {:.0} MiB {} s after; restarted (serving after {:.1} \
         s) {:.0} MiB, {:.0} MiB {} s later",
        mib(empty),
        filled.as_secs_f64(),
        mib(filling_peak),
        mib(at_rest),
        args.memory_subscribers,
        took.as_secs_f64(),
        mib(catching_up),
        mib(after_subscribers),
        SETTLE.as_secs(),
        serving.as_secs_f64(),
        mib(restarted),
        mib(restarted_rest),
        SETTLE.as_secs(),
    )])
}
