use super::*;
use writ_store::SledStore;

use crate::record::index_key;

fn entry(kind: RevocationKind, value: &str, expires_at: i64) -> RevocationEntry {
    RevocationEntry {
        kind,
        value: value.into(),
        issuer: String::new(),
        expires_at,
        not_before: 0,
        reason: "test".into(),
    }
}

async fn open(dir: &std::path::Path, config: LogConfig) -> Arc<RevocationLog> {
    let store: Arc<dyn writ_store::Store> = Arc::new(SledStore::open(dir).unwrap());
    RevocationLog::open(Arc::new(writ_store::Ready(store)), config)
        .await
        .unwrap()
}

const NOW: i64 = 1_800_000_000;

#[tokio::test]
async fn appends_get_gap_free_sequences_and_are_readable_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    let a = log
        .append(&[entry(RevocationKind::TokenId, "j1", NOW + 60)], NOW)
        .await
        .unwrap();
    let b = log
        .append(
            &[
                entry(RevocationKind::TokenId, "j2", NOW + 60),
                entry(RevocationKind::GrantId, "g1", NOW + 60),
            ],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!((a, b), (1, 3));
    assert_eq!(log.head(), 3);
    let events = log.read(0, 10).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(log.read(1, 1).await.unwrap()[0].entry.value, "j2");
    assert!(log.read(3, 10).await.unwrap().is_empty());
    assert!(matches!(log.read(4, 10).await, Err(LogError::CursorAhead)));
    assert_eq!(log.live_count(), 3);
}

#[tokio::test]
async fn a_raised_entry_published_again_later_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    // A producer's entry, raised to an hour past the time it was appended.
    let e = entry(RevocationKind::TokenId, "j1", NOW + 60);
    let first = log
        .append_raised(&[(e.clone(), NOW + 3600)], NOW)
        .await
        .unwrap();
    assert_eq!(
        log.read(0, 1).await.unwrap()[0].entry.expires_at,
        NOW + 3600
    );
    // The same entry again, ten seconds later (a retry): its raise would be later, but what
    // was asked is covered, so nothing is appended.
    let again = log
        .append_raised(&[(e.clone(), NOW + 3610)], NOW + 10)
        .await
        .unwrap();
    assert_eq!((first, again, log.head()), (1, 1, 1));
    // Asking for more than the live entry covers is news, raised as before.
    let longer = entry(RevocationKind::TokenId, "j1", NOW + 4000);
    let seq = log
        .append_raised(&[(longer, NOW + 3620)], NOW + 20)
        .await
        .unwrap();
    assert_eq!(seq, 2);
    assert_eq!(
        log.read(1, 1).await.unwrap()[0].entry.expires_at,
        NOW + 4000
    );
    // A raise past what an entry may ask is refused like the entry itself.
    assert!(
        log.append_raised(
            &[(
                entry(RevocationKind::TokenId, "j2", NOW + 60),
                NOW + 400 * 24 * 3600
            )],
            NOW
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn an_entry_already_covered_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    let first = log
        .append(&[entry(RevocationKind::TokenId, "j1", NOW + 60)], NOW)
        .await
        .unwrap();
    let again = log
        .append(&[entry(RevocationKind::TokenId, "j1", NOW + 30)], NOW)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(log.head(), 1);
    // A later cut-off is news: it is appended, merged with what was there.
    let mut s1 = entry(RevocationKind::Subject, "alice", NOW + 600);
    s1.not_before = NOW;
    let mut s2 = entry(RevocationKind::Subject, "alice", NOW + 60);
    s2.not_before = NOW + 10;
    log.append(&[s1], NOW).await.unwrap();
    let seq = log.append(&[s2], NOW).await.unwrap();
    let ev = log.read(seq - 1, 1).await.unwrap();
    assert_eq!(ev[0].entry.not_before, NOW + 10);
    assert_eq!(
        ev[0].entry.expires_at,
        NOW + 600,
        "the longer expiry is kept"
    );
    assert_eq!(log.live_count(), 2);
}

#[tokio::test]
async fn an_invalid_entry_refuses_the_whole_batch_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    let bad = [
        entry(RevocationKind::TokenId, "ok", NOW + 60),
        entry(RevocationKind::TokenId, "", NOW + 60),
    ];
    assert!(matches!(
        log.append(&bad, NOW).await,
        Err(LogError::Invalid(_))
    ));
    assert!(matches!(
        log.append(&[], NOW).await,
        Err(LogError::InvalidRequest(_))
    ));
    let many: Vec<_> = (0..=MAX_BATCH)
        .map(|i| entry(RevocationKind::TokenId, &format!("j{i}"), NOW + 60))
        .collect();
    assert!(matches!(
        log.append(&many, NOW).await,
        Err(LogError::InvalidRequest(_))
    ));
    assert_eq!(log.head(), 0);
    assert_eq!(log.live_count(), 0);
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), LogConfig::default()).await;
        for i in 0..10 {
            log.append(
                &[entry(RevocationKind::TokenId, &format!("j{i}"), NOW + 60)],
                NOW,
            )
            .await
            .unwrap();
        }
    }
    let log = open(dir.path(), LogConfig::default()).await;
    assert_eq!(log.head(), 10);
    assert_eq!(log.live_count(), 10);
    assert_eq!(
        log.read(5, 100).await.unwrap().len(),
        5,
        "served from the store after a restart"
    );
    assert_eq!(
        log.append(&[entry(RevocationKind::TokenId, "next", NOW + 60)], NOW)
            .await
            .unwrap(),
        11
    );
}

#[tokio::test]
async fn reads_beyond_the_ring_come_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            ring: 4,
            ..LogConfig::default()
        },
    )
    .await;
    for i in 0..20 {
        log.append(
            &[entry(RevocationKind::TokenId, &format!("j{i}"), NOW + 60)],
            NOW,
        )
        .await
        .unwrap();
    }
    let all: Vec<u64> = log
        .read(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(all, (1..=20).collect::<Vec<_>>());
    let tail: Vec<u64> = log
        .read(17, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(tail, [18, 19, 20]);
}

#[tokio::test]
async fn snapshots_list_every_live_entry_in_its_newest_version_and_only_committed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    for i in 0..5 {
        log.append(
            &[entry(RevocationKind::Client, &format!("c{i}"), NOW + 60)],
            NOW,
        )
        .await
        .unwrap();
    }
    // An update of c0 written but not yet committed (its appender is between write and flush).
    let (reply, answer) = tokio::sync::oneshot::channel();
    log.write(vec![Queued {
        entries: vec![(entry(RevocationKind::Client, "c0", NOW + 120), 0)],
        reply,
    }])
    .await;
    assert_eq!(answer.await.unwrap().unwrap(), 6);
    assert_eq!(log.head(), 5, "written, not committed");
    let (page, next) = log.snapshot_page(None, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    let (rest, end) = log.snapshot_page(next.as_deref(), 10).await.unwrap();
    assert!(end.is_none());
    let mut seqs: Vec<u64> = page.iter().chain(&rest).map(|e| e.sequence).collect();
    seqs.sort();
    assert_eq!(
        seqs,
        [2, 3, 4, 5, 6],
        "c0 in its newest version, sequence 6"
    );
    assert_eq!(
        log.head(),
        6,
        "the snapshot made the entry it sends durable and committed first"
    );
}

#[tokio::test]
async fn pruning_forgets_expired_entries_and_truncates_the_front_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            prune_margin: 0,
            ..LogConfig::default()
        },
    )
    .await;
    log.append(&[entry(RevocationKind::TokenId, "short1", NOW + 10)], NOW)
        .await
        .unwrap();
    log.append(&[entry(RevocationKind::TokenId, "short2", NOW + 10)], NOW)
        .await
        .unwrap();
    log.append(&[entry(RevocationKind::TokenId, "long", NOW + 1000)], NOW)
        .await
        .unwrap();
    log.append(&[entry(RevocationKind::TokenId, "short3", NOW + 10)], NOW)
        .await
        .unwrap();

    assert_eq!(
        log.prune(NOW + 5).await.unwrap(),
        (0, 0),
        "nothing has expired yet"
    );
    // The expiry order lists entries by bucket: the index forgets them once the bucket ends.
    let (index, events) = log
        .prune(NOW + 10 + writ_store::EXPIRY_BUCKET_SECONDS)
        .await
        .unwrap();
    assert_eq!(index, 3);
    assert_eq!(
        events, 2,
        "only the expired prefix goes: the live 'long' keeps event 3 and after"
    );
    assert_eq!(log.low(), 3);
    assert_eq!(log.live_count(), 1);
    assert!(matches!(log.read(1, 10).await, Err(LogError::Truncated)));
    assert_eq!(log.read(2, 10).await.unwrap().len(), 2);

    drop(log);
    let log = open(dir.path(), LogConfig::default()).await;
    assert_eq!(log.low(), 3, "the retained range survives a restart");
    assert_eq!(log.live_count(), 1);
}

#[tokio::test]
async fn pruning_follows_renewals_and_reads_only_what_expired() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let log = RevocationLog::open(
        Arc::new(writ_store::Ready(store.clone())),
        LogConfig {
            prune_margin: 0,
            ..LogConfig::default()
        },
    )
    .await
    .unwrap();
    // 2,500 entries (more than a page) expiring early, one renewed to later in the same batch as
    // its first version and one renewed by a later append; 10 expiring late.
    let early: Vec<_> = (0..2500)
        .map(|i| entry(RevocationKind::TokenId, &format!("early{i}"), NOW + 10))
        .collect();
    for chunk in early.chunks(1000) {
        log.append(chunk, NOW).await.unwrap();
    }
    log.append(
        &[
            entry(RevocationKind::TokenId, "renewed-in-batch", NOW + 10),
            entry(RevocationKind::TokenId, "renewed-in-batch", NOW + 500),
        ],
        NOW,
    )
    .await
    .unwrap();
    log.append(&[entry(RevocationKind::TokenId, "early7", NOW + 500)], NOW)
        .await
        .unwrap();
    let late: Vec<_> = (0..10)
        .map(|i| entry(RevocationKind::GrantId, &format!("late{i}"), NOW + 1000))
        .collect();
    log.append(&late, NOW).await.unwrap();
    let expiry_keys = || async {
        writ_store::Store::scan(
            &*store,
            Tree::RevocationLog,
            crate::EXPIRY.chunks,
            None,
            100_000,
        )
        .unwrap()
        .len()
    };
    assert_eq!(
        expiry_keys().await,
        6,
        "one chunk per batch and expiry bucket: three early, two renewals, one late"
    );

    let (index, _) = log
        .prune(NOW + 20 + writ_store::EXPIRY_BUCKET_SECONDS)
        .await
        .unwrap();
    assert_eq!(index, 2499, "every early entry but the renewed one");
    assert_eq!(log.live_count(), 12);
    assert_eq!(expiry_keys().await, 3);
    let revoked = |value: &'static str| {
        let log = log.clone();
        async move {
            let facts = writ_token::TokenFacts {
                iss: "https://as.test",
                jti: value,
                gid: None,
                sub: "s",
                client_id: "c",
                iat: NOW,
                key_id: "k",
                biscuit_revocation_ids: &[],
            };
            log.revokes(&facts).await.unwrap()
        }
    };
    assert!(revoked("early7").await.is_some(), "renewed: still live");
    assert!(revoked("renewed-in-batch").await.is_some());
    assert!(revoked("early8").await.is_none());

    assert_eq!(log.prune(NOW + 600).await.unwrap().0, 2);
    assert_eq!(log.prune(NOW + 2000).await.unwrap().0, 10);
    assert_eq!((log.live_count(), expiry_keys().await), (0, 0));
}

#[tokio::test]
async fn a_log_written_before_the_expiry_order_is_indexed_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let config = LogConfig {
        prune_margin: 0,
        ..LogConfig::default()
    };
    let log = RevocationLog::open(Arc::new(writ_store::Ready(store.clone())), config)
        .await
        .unwrap();
    log.append(&[entry(RevocationKind::TokenId, "old", NOW + 10)], NOW)
        .await
        .unwrap();
    log.append(&[entry(RevocationKind::TokenId, "new", NOW + 100)], NOW)
        .await
        .unwrap();
    drop(log);
    // As an older build left it: no expiry keys, no marker.
    let mut batch = writ_store::Batch::new().remove(crate::EXPIRY_INDEXED);
    for (k, _) in writ_store::Store::scan(
        &*store,
        Tree::RevocationLog,
        crate::EXPIRY.chunks,
        None,
        100,
    )
    .unwrap()
    {
        batch = batch.remove(k);
    }
    assert!(writ_store::Store::commit(&*store, Tree::RevocationLog, batch).unwrap());

    let log = RevocationLog::open(Arc::new(writ_store::Ready(store.clone())), config)
        .await
        .unwrap();
    assert_eq!(
        log.prune(NOW + 20 + writ_store::EXPIRY_BUCKET_SECONDS)
            .await
            .unwrap()
            .0,
        1
    );
    assert_eq!(log.live_count(), 1);
}

#[tokio::test]
async fn the_log_is_truncated_to_its_retention_bound_even_if_live() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            max_retained: 3,
            ..LogConfig::default()
        },
    )
    .await;
    for i in 0..10 {
        log.append(
            &[entry(RevocationKind::TokenId, &format!("j{i}"), NOW + 1000)],
            NOW,
        )
        .await
        .unwrap();
    }
    log.prune(NOW).await.unwrap();
    assert_eq!(log.low(), 8);
    assert_eq!(
        log.live_count(),
        10,
        "live entries stay in the index for snapshots"
    );
    assert!(matches!(log.read(6, 10).await, Err(LogError::Truncated)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_commit_a_gap_free_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    let mut head = log.subscribe();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                log.append(
                    &[entry(
                        RevocationKind::TokenId,
                        &format!("t{t}-{i}"),
                        NOW + 60,
                    )],
                    NOW,
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    head.wait_for(|h| *h == 320).await.unwrap();
    let seqs: Vec<u64> = log
        .read(0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(seqs, (1..=320).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_queued_together_share_one_batch_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn writ_store::Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    // An unreadable index record: the append that names it fails, the others with it do not.
    store
        .insert(
            Tree::RevocationLog,
            &index_key(RevocationKind::TokenId, "", "corrupt"),
            vec![0xff, 0xff],
        )
        .unwrap();
    let log = RevocationLog::open(Arc::new(writ_store::Ready(store)), LogConfig::default())
        .await
        .unwrap();
    // Hold the writer lock so the four appends queue up and are written together.
    let held = log.writer.lock().await;
    let mut tasks = Vec::new();
    for value in ["a", "corrupt", "a", "b"] {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.append(&[entry(RevocationKind::TokenId, value, NOW + 60)], NOW)
                .await
        }));
    }
    while log.queue.lock().len() < 4 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    drop(held);
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert!(
        matches!(results[1], Err(LogError::Store(StoreError::Corrupt))),
        "{:?}",
        results[1]
    );
    let (a1, a2, b) = (
        *results[0].as_ref().unwrap(),
        *results[2].as_ref().unwrap(),
        *results[3].as_ref().unwrap(),
    );
    assert_eq!(
        a1, a2,
        "the second `a` is covered by the first, in the same batch"
    );
    let mut seqs = [a1, b];
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2], "no sequence is lost to the failed append");
    assert_eq!(log.head(), 2);
    let values: Vec<String> = log
        .read(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.entry.value.clone())
        .collect();
    assert_eq!(values.len(), 2);
    assert!(values.contains(&"a".to_owned()) && values.contains(&"b".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_of_one_target_append_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.append(&[entry(RevocationKind::GrantId, "g", NOW + 60)], NOW)
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 1);
    }
    assert_eq!(log.head(), 1);
    assert_eq!(log.live_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_never_carries_more_than_max_batch_entries() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    let held = log.writer.lock().await;
    let mut tasks = Vec::new();
    for t in 0..3 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let entries: Vec<_> = (0..MAX_BATCH)
                .map(|i| entry(RevocationKind::TokenId, &format!("t{t}-{i}"), NOW + 60))
                .collect();
            log.append(&entries, NOW).await.unwrap()
        }));
    }
    while log.queue.lock().len() < 3 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // Three full appends queued: a batch takes one of them (put back as it was).
    let taken = log.take_queued();
    assert_eq!(taken.len(), 1);
    log.queue.lock().splice(0..0, taken);
    drop(held);
    let mut lasts = Vec::new();
    for t in tasks {
        lasts.push(t.await.unwrap());
    }
    lasts.sort_unstable();
    let m = MAX_BATCH as u64;
    assert_eq!(lasts, [m, 2 * m, 3 * m]);
    assert_eq!(log.head(), 3 * m);
}

#[tokio::test]
async fn truncation_cuts_a_stored_batch_at_its_first_live_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let config = LogConfig {
        ring: 2,
        prune_margin: 0,
        ..LogConfig::default()
    };
    let log = RevocationLog::open(Arc::new(writ_store::Ready(store.clone())), config)
        .await
        .unwrap();
    // One batch: three short-lived entries, a long-lived one, two more short-lived ones.
    let batch = [
        entry(RevocationKind::TokenId, "s1", NOW + 10),
        entry(RevocationKind::TokenId, "s2", NOW + 10),
        entry(RevocationKind::TokenId, "s3", NOW + 10),
        entry(RevocationKind::TokenId, "long", NOW + 1000),
        entry(RevocationKind::TokenId, "s4", NOW + 10),
    ];
    log.append(&batch, NOW).await.unwrap();
    log.append(&[entry(RevocationKind::TokenId, "s5", NOW + 10)], NOW)
        .await
        .unwrap();
    let stored = || {
        writ_store::Store::scan(&*store, Tree::RevocationLog, crate::EVENTS, None, 100)
            .unwrap()
            .len()
    };
    assert_eq!(stored(), 2, "one key per committed batch");
    let (_, events) = log.prune(NOW + 20).await.unwrap();
    assert_eq!(events, 3, "the expired front of the first batch");
    assert_eq!(log.low(), 4);
    assert_eq!(
        stored(),
        2,
        "the first batch rewritten from its first live event"
    );
    assert!(matches!(log.read(2, 10).await, Err(LogError::Truncated)));
    let seqs: Vec<u64> = log
        .read(3, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(
        seqs,
        [4, 5, 6],
        "from the store, across batches (the ring holds two)"
    );
    assert_eq!(
        log.read(4, 1).await.unwrap()[0].entry.value,
        "s4",
        "a read starting inside a batch"
    );

    // Once the long-lived entry expires, everything up to the head goes, batch by batch.
    let (_, events) = log.prune(NOW + 2000).await.unwrap();
    assert_eq!((events, log.low(), stored()), (3, 7, 0));
    drop(log);
    let log = RevocationLog::open(Arc::new(writ_store::Ready(store.clone())), config)
        .await
        .unwrap();
    assert_eq!(
        (log.head(), log.low()),
        (6, 7),
        "the empty log keeps its place"
    );
}

#[tokio::test]
async fn a_log_written_one_key_per_event_is_packed_when_opened_and_fences_older_builds() {
    use writ_store::{Batch, Store, encode};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    // As a build before batches left it: 2,500 events one key each, the head in two words, the
    // expiry order one key per entry, and an expired event pruned from the front.
    let mut batch = Batch::new()
        .put(crate::EXPIRY_INDEXED, Vec::new())
        .put(crate::LOW_KEY, 2u64.to_be_bytes().to_vec());
    let mut head = 2500u64.to_be_bytes().to_vec();
    head.extend_from_slice(&2499u64.to_be_bytes());
    batch = batch.put(crate::HEAD_KEY, head);
    for seq in 2..=2500u64 {
        let e = entry(RevocationKind::TokenId, &format!("j{seq}"), NOW + 1000);
        let record = encode(&crate::record::EntryRecord::new(&e, seq));
        let index = index_key(e.kind, "", &e.value);
        batch = batch
            .put(crate::record::log_key(seq), record.clone())
            .put(crate::EXPIRY.key(e.expires_at, &index), Vec::new())
            .put(index, record);
    }
    assert!(store.commit(Tree::RevocationLog, batch).unwrap());

    let config = LogConfig {
        ring: 16,
        prune_margin: 0,
        ..LogConfig::default()
    };
    let log = RevocationLog::open(Arc::new(writ_store::Ready(store.clone())), config)
        .await
        .unwrap();
    let keys = |prefix: &[u8]| {
        store
            .scan(Tree::RevocationLog, prefix, None, 100_000)
            .unwrap()
            .len()
    };
    assert_eq!(keys(crate::LOG), 0, "every event moved");
    assert_eq!(keys(crate::EVENTS), 3, "a thousand events per key");
    assert_eq!(
        (keys(crate::EXPIRY.prefix), keys(crate::EXPIRY.chunks)),
        (0, 3)
    );
    assert_eq!(
        store
            .get(Tree::RevocationLog, crate::HEAD_KEY)
            .unwrap()
            .map(|v| v.len()),
        Some(24),
        "the head in the current format: an older build reads it as corrupt"
    );
    assert_eq!((log.head(), log.low(), log.live_count()), (2500, 2, 2499));
    let all: Vec<u64> = log
        .read(1, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(all, (2..=2500).collect::<Vec<_>>());
    assert!(matches!(log.read(0, 10).await, Err(LogError::Truncated)));

    // Appends go on from the head, and the old events and new ones read as one log.
    let next = log
        .append(&[entry(RevocationKind::TokenId, "new", NOW + 10)], NOW)
        .await
        .unwrap();
    assert_eq!(next, 2501);
    let seqs: Vec<u64> = log
        .read(999, 3)
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(seqs, [1000, 1001, 1002], "across a packed page's end");
    // Everything expires: the packed listings prune as the new ones do.
    assert_eq!(
        log.prune(NOW + 2000).await.unwrap(),
        (2500, 2500),
        "every entry, and every event"
    );
    assert_eq!(keys(crate::EXPIRY.chunks), 0);
    drop(log);
    // Opening again is a no-op.
    let log = RevocationLog::open(Arc::new(writ_store::Ready(store.clone())), config)
        .await
        .unwrap();
    assert_eq!((log.head(), log.low(), log.live_count()), (2501, 2502, 0));
}
