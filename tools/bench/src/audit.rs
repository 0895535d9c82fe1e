//! The durable audit log's cost: the same scenarios with it off and on, alternating in one run
//! (these machines are noisy), and what a million records take on disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use writ_audit::{Auditor, Event, Outcome as AuditOutcome, Settings};
use writ_store::{AsyncStore, Ready, SledStore, Tree};

use crate::{Backend, Cli, Outcome, client_credentials_on, exchange};

/// Whether the servers the scenarios start keep the durable audit log (as `writ up` does by
/// default).
static ENABLED: AtomicBool = AtomicBool::new(true);

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `--audit-sync-interval-us`, when given (`u64::MAX`: not given).
static SYNC_INTERVAL_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

pub fn set_sync_interval_us(us: Option<u64>) {
    SYNC_INTERVAL_US.store(us.unwrap_or(u64::MAX), Ordering::Relaxed);
}

pub fn sync_interval_us() -> Option<u64> {
    Some(SYNC_INTERVAL_US.load(Ordering::Relaxed)).filter(|&us| us != u64::MAX)
}

/// Records in flight while sizing.
const IN_FLIGHT: usize = 256;

pub fn run(
    cli: &Cli,
    load: &tokio::runtime::Runtime,
) -> anyhow::Result<(Vec<Outcome>, Vec<String>)> {
    let mut outcomes = Vec::new();
    for _round in 0..cli.audit_rounds {
        for on in [false, true] {
            ENABLED.store(on, Ordering::Relaxed);
            let suffix = if on { ", audit on" } else { ", audit off" };
            outcomes.push(client_credentials_on(
                cli,
                load,
                &Backend::Sled,
                false,
                suffix,
            )?);
            outcomes.extend(exchange::run_named(cli, load, true, suffix)?);
        }
    }
    ENABLED.store(true, Ordering::Relaxed);
    let notes = match cli.audit_size_records {
        0 => Vec::new(),
        n => vec![size(load, n)?],
    };
    Ok((outcomes, notes))
}

/// `sized` `token_issued` records as the authorization server writes them (queued from 256
/// callers at once, group-committed), then the tree's bytes, the directory's size, and a full
/// `verify`.
fn size(load: &tokio::runtime::Runtime, sized: u64) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let sled = Arc::new(SledStore::open(dir.path())?);
    let store: Arc<dyn AsyncStore> = Arc::new(Ready(sled.clone()));
    let (kek, _) = writ_keyring::KeyEncryptionKey::generate()?;
    load.block_on(async {
        let store = writ_audit::open_store(store.clone()).await?;
        let audit = Auditor::open(store.clone(), &kek, Settings::default(), "authz").await?;
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..IN_FLIGHT {
            let (audit, next) = (audit.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= sized {
                        return anyhow::Ok(());
                    }
                    audit.record(issued(n)).await?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        let written = started.elapsed();
        audit.close().await;
        let stored: u64 = store
            .scan(Tree::Audit, b"", None, usize::MAX)
            .await?
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        store.durable().await?;
        let started = Instant::now();
        let report = writ_audit::verify::verify(&*store, None).await?;
        let verified = started.elapsed();
        anyhow::ensure!(report.intact(), "the log verifies: {:?}", report.problems);
        let on_disk = dir_size(dir.path())?;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        anyhow::Ok(format!(
            "audit log size: {} token_issued records ({} in flight) written in {:.1} s ({:.0}/s); \
             keys and values {:.0} MiB ({:.0} bytes per record, the indexes and checkpoints \
             included), on disk {:.0} MiB (segment files and sled); verify read and checked them \
             in {:.1} s ({:.0}/s)",
            report.records,
            IN_FLIGHT,
            written.as_secs_f64(),
            sized as f64 / written.as_secs_f64(),
            mib(stored),
            stored as f64 / sized as f64,
            mib(on_disk),
            verified.as_secs_f64(),
            report.records as f64 / verified.as_secs_f64(),
        ))
    })
}

/// A record like the authorization server's for a client_credentials token.
fn issued(n: u64) -> Event {
    let gid = format!("{:022x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    Event::new("token_issued", AuditOutcome::Success)
        .actor("inventory-client")
        .client("inventory-client")
        .subject("inventory-client")
        .gid(&gid)
        .audience(["inventory"])
        .detail("grant_type", "client_credentials")
        .detail(
            "jti",
            format!("{:022x}", n.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)),
        )
        .detail("scope", "inventory.read")
        .detail("exp", 1_800_000_000 + n)
        .detail("format", "Jwt")
}

fn dir_size(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
