//! Replicas of the revocation log over one PostgreSQL schema, each with its own connection pool
//! (as separate processes would have): one gap-free sequence in commit order, and every replica
//! woken by the database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use writ_revocation_log::{LogConfig, RevocationLog};
use writ_store::AsyncStore;
use writ_store_postgres::{PgConfig, PgStore, testing};
use writ_token::{RevocationEntry, RevocationKind};

const NOW: i64 = 1_800_000_000;

fn entry(value: String) -> RevocationEntry {
    RevocationEntry {
        kind: RevocationKind::TokenId,
        value,
        issuer: String::new(),
        expires_at: NOW + 3600,
        not_before: 0,
        reason: "test".into(),
    }
}

/// A replica that only learns of others' appends from the database's notifications: its own
/// polling is too slow to matter within these tests.
async fn replica(config: &PgConfig) -> Arc<RevocationLog> {
    let store: Arc<dyn AsyncStore> = PgStore::open(config).await.unwrap();
    let config = LogConfig {
        poll: Duration::from_secs(600),
        ..LogConfig::default()
    };
    RevocationLog::open(store, config).await.unwrap()
}

async fn everything(log: &RevocationLog) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut cursor = 0;
    while cursor < log.head() {
        let events = log.read(cursor, 1000).await.unwrap();
        assert!(!events.is_empty(), "a gap after {cursor}");
        for e in events {
            assert_eq!(e.sequence, cursor + 1, "gap-free, in order");
            cursor = e.sequence;
            out.push((e.sequence, e.entry.value.clone()));
        }
    }
    out
}

async fn wait_for_head(log: &RevocationLog, head: u64) {
    let mut heads = log.subscribe();
    tokio::time::timeout(Duration::from_secs(5), heads.wait_for(|h| *h >= head))
        .await
        .expect("woken by the database within 5 s")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_append_one_gap_free_sequence_and_wake_each_other() {
    let Some(config) = testing::fresh().await else {
        return;
    };
    let (a, b) = (replica(&config).await, replica(&config).await);
    // Eight appenders on each replica at once, 25 appends each.
    let mut tasks = Vec::new();
    for (name, log) in [("a", a.clone()), ("b", b.clone())] {
        for t in 0..8 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0..25 {
                    let value = format!("{name}-{t}-{i}");
                    let seq = log.append(&[entry(value.clone())], NOW).await.unwrap();
                    acknowledged.push((seq, value));
                }
                acknowledged
            }));
        }
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    let sequences: BTreeSet<u64> = acknowledged.iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences.len(), 400, "every append its own sequence");
    assert_eq!(sequences.last(), Some(&400));
    // Each replica hears of the other's appends from the database, and both read one log.
    wait_for_head(&a, 400).await;
    wait_for_head(&b, 400).await;
    let (from_a, from_b) = (everything(&a).await, everything(&b).await);
    assert_eq!(from_a, from_b, "the same events under the same sequences");
    let mut expected = acknowledged.clone();
    expected.sort();
    assert_eq!(
        from_a, expected,
        "each acknowledged where it was acknowledged"
    );
    assert_eq!((a.live_count(), b.live_count()), (400, 400));

    // A subscriber's cursor from one replica resumes on the other with no gap, no duplicate.
    let seq = a.append(&[entry("late".into())], NOW).await.unwrap();
    assert_eq!(seq, 401);
    wait_for_head(&b, 401).await;
    let next = b.read(400, 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(
        (next[0].sequence, next[0].entry.value.as_str()),
        (401, "late")
    );
    // An entry already covered appends nothing, whichever replica is asked.
    assert_eq!(b.append(&[entry("a-0-0".into())], NOW).await.unwrap(), {
        acknowledged.iter().find(|(_, v)| v == "a-0-0").unwrap().0
    });
    assert_eq!(b.refresh().await.unwrap(), 401);
    testing::drop_schema(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reopened_finds_the_head_and_a_snapshot_lists_every_live_entry() {
    let Some(config) = testing::fresh().await else {
        return;
    };
    {
        let a = replica(&config).await;
        let entries: Vec<_> = (0..30).map(|i| entry(format!("t{i}"))).collect();
        assert_eq!(a.append(&entries, NOW).await.unwrap(), 30);
    }
    let b = replica(&config).await;
    assert_eq!((b.head(), b.live_count()), (30, 30));
    let mut listed = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (page, next) = b.snapshot_page(after.as_deref(), 7).await.unwrap();
        listed += page.len();
        match next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    assert_eq!(listed, 30);
    assert_eq!(b.append(&[entry("t30".into())], NOW).await.unwrap(), 31);
    testing::drop_schema(&config).await;
}
