//! Issue 17's figures: the resident memory of `writ up` (this binary re-executed as `writ`, a
//! process of its own, so its memory is its own) empty, at rest with a million live
//! revocations, while ten new subscribers catch up on the feed at once, and after a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use writ_proto::revocation::WatchRequest;
use writ_proto::revocation::revocation_service_client::RevocationServiceClient;
use writ_revocation_client::RevocationSet;

use crate::crash::{
    PATIENCE, Writ, channel, create_watcher, drained, head, revoke, up_args, watch_token,
    with_bearer,
};

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
}

/// How long the process is left alone before "at rest" is read.
const SETTLE: Duration = Duration::from_secs(5);

/// `VmRSS` of process `pid`, in bytes.
fn rss_of(pid: u32) -> anyhow::Result<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    let kb: i64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Samples `pid`'s resident memory every 10 ms while `work` runs; the peak and `work`'s outcome.
fn peak_while<T>(pid: u32, work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(i64, T)> {
    let peak = Arc::new(AtomicI64::new(rss_of(pid)?));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(now) = rss_of(pid) {
                    peak.fetch_max(now, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let outcome = work();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    Ok((peak.load(Ordering::Relaxed), outcome?))
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
            let set = RevocationSet::new();
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while set.staleness().is_none() || set.len() < live {
                let message = tokio::time::timeout_at(deadline, stream.message())
                    .await
                    .context("a new subscriber did not catch up in time")??
                    .context("the Watch stream ended")?;
                set.apply(&message)
                    .map_err(|e| anyhow::anyhow!("out of order: {e:?}"))?;
            }
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
    let ca = std::fs::read_to_string(dir.join(writ_tls::CA_CERT_FILE))?;
    let admin = std::fs::read_to_string(dir.join(writ::platform::ADMIN_TOKEN_FILE))?
        .trim()
        .to_owned();
    std::thread::sleep(SETTLE);
    let empty = rss_of(writ.child.id())?;
    let started = Instant::now();
    let (filling_peak, watcher) = peak_while(writ.child.id(), || {
        load.block_on(async {
            let watcher = create_watcher(&writ, &ca, &admin).await?;
            revoke(&writ.url("authz_admin")?, &ca, &admin, 0, live).await?;
            drained(&writ, &ca, &watcher, live as u64).await?;
            anyhow::Ok(watcher)
        })
    })?;
    let filled = started.elapsed();
    std::thread::sleep(SETTLE);
    let at_rest = rss_of(writ.child.id())?;
    let (catching_up, took) = peak_while(writ.child.id(), || {
        load.block_on(subscribers(
            &writ,
            &ca,
            &watcher,
            args.memory_subscribers,
            live,
        ))
    })?;
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
