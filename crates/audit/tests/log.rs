//! The audit log on a real store: chaining, durability of both ways in, tamper detection with
//! positions, queries, export round trips, pruning that keeps the chain checkable.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use writ_audit::query::{Filter, list};
use writ_audit::record::{AuditRecord, record_key};
use writ_audit::verify::verify;
use writ_audit::{Auditor, Event, Outcome, Settings, export};
use writ_keyring::KeyEncryptionKey;
use writ_store::{AsyncStore, Batch, Ready, SledStore, Tree, decode, encode};

fn kek() -> KeyEncryptionKey {
    KeyEncryptionKey::from_bytes(&[7; 32]).unwrap()
}

/// A sled store as the audit log sees it (its records in segment files beside the database).
async fn sled(dir: &std::path::Path) -> Arc<dyn AsyncStore> {
    writ_audit::open_store(Arc::new(Ready(Arc::new(SledStore::open(dir).unwrap()))))
        .await
        .unwrap()
}

fn settings() -> Settings {
    Settings {
        checkpoint_every: 10,
        ..Settings::default()
    }
}

fn issued(i: usize) -> Event {
    Event::new("token_issued", Outcome::Success)
        .client(&format!("client-{}", i % 3))
        .subject(&format!("sub-{}", i % 5))
        .gid(&format!("gid-{i}"))
        .detail("jti", format!("jti-{i}"))
}

async fn all(store: &dyn AsyncStore, filter: &Filter) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    let mut after = 0;
    for _ in 0..1000 {
        let page = list(store, filter, after, 7).await.unwrap();
        out.extend(page.records);
        match page.next {
            Some(n) => after = n,
            None => return out,
        }
    }
    panic!("the pages never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_intents_chain_in_one_log_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = sled(dir.path()).await;
        let audit = Auditor::open(store.clone(), &kek(), settings(), "authz")
            .await
            .unwrap();
        // Recorded concurrently: each answered once durable.
        let mut tasks = Vec::new();
        for i in 0..40 {
            let audit = audit.clone();
            tasks.push(tokio::spawn(async move { audit.record(issued(i)).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // A state change and its intent, in one batch; a refused batch leaves no intent.
        let intent = audit.intent(
            Event::new("client_created", Outcome::Success)
                .actor("admin")
                .client("new-client"),
        );
        let batch = intent.attach(
            Batch::new()
                .expect(b"new-client".to_vec(), None)
                .put(b"new-client".to_vec(), b"record".to_vec()),
        );
        assert!(store.commit(Tree::Clients, batch).await.unwrap());
        audit.written(intent);
        let refused = audit.intent(Event::new("client_created", Outcome::Success).client("x"));
        let batch = refused.attach(
            Batch::new()
                .expect(b"new-client".to_vec(), None)
                .put(b"new-client".to_vec(), b"again".to_vec()),
        );
        assert!(!store.commit(Tree::Clients, batch).await.unwrap());
        audit.close().await;
        assert!(audit.record(issued(99)).await.is_err(), "closed is closed");
    }
    // Reopened: the chain goes on from where it was.
    let store = sled(dir.path()).await;
    let audit = Auditor::open(store.clone(), &kek(), settings(), "sts")
        .await
        .unwrap();
    audit.record(issued(40)).await.unwrap();
    audit.close().await;
    let records = all(&*store, &Filter::default()).await;
    assert_eq!(
        records.len(),
        42,
        "40 recorded, one intent, one after the restart"
    );
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=42).collect::<Vec<_>>()
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r.kind == "client_created")
            .map(|r| (r.client_id.as_str(), r.actor.as_str(), r.service.as_str()))
            .collect::<Vec<_>>(),
        [("new-client", "admin", "authz")],
        "exactly the committed intent"
    );
    assert_eq!(records[41].service, "sts");
    let report = verify(&*store, None).await.unwrap();
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.records, 42);
    assert_eq!(report.signed_to, 42, "closing signs the tail");
    assert_eq!(report.keys.len(), 1, "one key across the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_use_the_indexes_and_every_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = sled(dir.path()).await;
    let audit = Auditor::open(store.clone(), &kek(), settings(), "authz")
        .await
        .unwrap();
    for i in 0..30 {
        audit.record(issued(i)).await.unwrap();
    }
    audit
        .record(
            Event::new("token_refused", Outcome::Refused)
                .client("client-1")
                .reason("invalid_client"),
        )
        .await
        .unwrap();
    audit.close().await;
    let by = |f: Filter| {
        let store = store.clone();
        async move { all(&*store, &f).await }
    };
    let c1 = by(Filter {
        client_id: Some("client-1".into()),
        ..Filter::default()
    })
    .await;
    assert_eq!(c1.len(), 11);
    assert!(c1.windows(2).all(|w| w[0].seq < w[1].seq), "in order");
    let refused = by(Filter {
        client_id: Some("client-1".into()),
        outcome: Some("refused".into()),
        ..Filter::default()
    })
    .await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].reason, "invalid_client");
    let g = by(Filter {
        gid: Some("gid-7".into()),
        ..Filter::default()
    })
    .await;
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].details["jti"], "jti-7");
    let s = by(Filter {
        subject: Some("sub-2".into()),
        kind: Some("token_issued".into()),
        ..Filter::default()
    })
    .await;
    assert_eq!(s.len(), 6);
    // A client id that is a prefix of another finds only its own.
    assert!(
        by(Filter {
            client_id: Some("client-".into()),
            ..Filter::default()
        })
        .await
        .is_empty()
    );
    let now = writ_now();
    assert_eq!(
        by(Filter {
            since_ms: Some(now - 600_000),
            ..Filter::default()
        })
        .await
        .len(),
        31
    );
    assert!(
        by(Filter {
            until_ms: Some(now - 600_000),
            ..Filter::default()
        })
        .await
        .is_empty()
    );
}

fn writ_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A log of 12 records, closed (so a checkpoint covers all of it).
async fn twelve(dir: &std::path::Path) -> Arc<dyn AsyncStore> {
    let store = sled(dir).await;
    let audit = Auditor::open(
        store.clone(),
        &kek(),
        Settings {
            checkpoint_every: 1_000,
            ..Settings::default()
        },
        "authz",
    )
    .await
    .unwrap();
    for i in 0..12 {
        audit.record(issued(i)).await.unwrap();
    }
    audit.close().await;
    store
}

async fn problems(store: &dyn AsyncStore) -> Vec<(u64, String)> {
    verify(store, None)
        .await
        .unwrap()
        .problems
        .into_iter()
        .map(|p| (p.seq, p.what))
        .collect()
}

#[tokio::test]
async fn verify_reports_an_edited_record_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = twelve(dir.path()).await;
    let key = record_key(5);
    let mut r: AuditRecord = decode(&store.get(Tree::Audit, &key).await.unwrap().unwrap()).unwrap();
    r.client_id = "someone-else".into();
    store.insert(Tree::Audit, &key, encode(&r)).await.unwrap();
    let found = problems(&*store).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, 5, "{found:?}");
    assert!(found[0].1.contains("altered"), "{found:?}");
}

#[tokio::test]
async fn verify_reports_a_deleted_record_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = twelve(dir.path()).await;
    store.remove(Tree::Audit, &record_key(7)).await.unwrap();
    let found = problems(&*store).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, 7);
    assert!(found[0].1.contains("missing"), "{found:?}");
}

#[tokio::test]
async fn verify_reports_reordered_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = twelve(dir.path()).await;
    let (a, b) = (record_key(3), record_key(4));
    let va = store.get(Tree::Audit, &a).await.unwrap().unwrap();
    let vb = store.get(Tree::Audit, &b).await.unwrap().unwrap();
    store.insert(Tree::Audit, &a, vb).await.unwrap();
    store.insert(Tree::Audit, &b, va).await.unwrap();
    let found = problems(&*store).await;
    assert!(
        found.iter().any(|(s, w)| *s == 3 && w.contains("moved")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|(s, w)| *s == 4 && w.contains("moved")),
        "{found:?}"
    );
}

#[tokio::test]
async fn verify_reports_a_truncated_tail_and_a_rewritten_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = twelve(dir.path()).await;
    // The last record rewritten, chain and head included: the signed checkpoint still knows.
    let key = record_key(12);
    let mut r: AuditRecord = decode(&store.get(Tree::Audit, &key).await.unwrap().unwrap()).unwrap();
    r.reason = "nothing to see".into();
    store.insert(Tree::Audit, &key, encode(&r)).await.unwrap();
    let found = problems(&*store).await;
    assert!(
        found
            .iter()
            .any(|(s, w)| *s == 12 && w.contains("checkpoint")),
        "{found:?}"
    );
    // The tail cut off (head left as it was).
    let dir = tempfile::tempdir().unwrap();
    let store = twelve(dir.path()).await;
    for seq in [11, 12] {
        store.remove(Tree::Audit, &record_key(seq)).await.unwrap();
    }
    let found = problems(&*store).await;
    assert!(
        found
            .iter()
            .any(|(s, w)| *s == 11 && w.contains("truncated")),
        "{found:?}"
    );
}

#[tokio::test]
async fn an_export_verifies_and_an_edited_line_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = twelve(dir.path()).await;
    let mut out = Vec::new();
    assert_eq!(export::export(&*store, &mut out).await.unwrap(), 12);
    let text = String::from_utf8(out).unwrap();
    let report = export::verify_export(|| Ok(text.as_bytes()), None).unwrap();
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!((report.records, report.signed_to), (12, 12));
    // A readable field edited in the file (the stored bytes left alone).
    let edited = text.replacen(
        "\"client_id\":\"client-2\"",
        "\"client_id\":\"client-0\"",
        1,
    );
    assert_ne!(edited, text);
    let report = export::verify_export(|| Ok(edited.as_bytes()), None).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].seq, 3);
    // A line removed.
    let without: String = text
        .lines()
        .filter(|l| !l.contains("\"seq\":6,"))
        .map(|l| format!("{l}\n"))
        .collect();
    let report = export::verify_export(|| Ok(without.as_bytes()), None).unwrap();
    assert!(
        report.problems.iter().any(|p| p.seq == 6),
        "{:?}",
        report.problems
    );
    // Signed by a key the verifier does not trust.
    let report = export::verify_export(|| Ok(text.as_bytes()), Some(vec![vec![1; 32]])).unwrap();
    assert!(!report.intact());
}

#[tokio::test]
async fn untrusted_strings_stay_in_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = sled(dir.path()).await;
    let audit = Auditor::open(store.clone(), &kek(), settings(), "authz")
        .await
        .unwrap();
    let forged = "evil\n{\"type\":\"record\",\"seq\":1}\r\n2026 INFO event=token_issued";
    audit
        .record(
            Event::new("client_authentication_failed", Outcome::Refused)
                .client(forged)
                .reason(&"x".repeat(10_000)),
        )
        .await
        .unwrap();
    audit.close().await;
    let records = all(&*store, &Filter::default()).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].client_id, forged, "stored as it came");
    assert_eq!(records[0].reason.len(), writ_audit::MAX_FIELD, "bounded");
    let mut out = Vec::new();
    export::export(&*store, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let records_lines = text
        .lines()
        .filter(|l| l.contains("\"type\":\"record\""))
        .count();
    assert_eq!(
        records_lines, 1,
        "one line per record, whatever the strings: {text}"
    );
}

#[tokio::test]
async fn the_log_line_escapes_untrusted_strings() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buf(Arc<parking_lot::Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let sink = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    Auditor::disabled("authz")
        .record(
            Event::new("client_authentication_failed", Outcome::Refused)
                .client("evil\nWARN writ::audit: event=admin_call"),
        )
        .await
        .unwrap();
    let text = String::from_utf8(buf.0.lock().clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(r#"client_id="evil\nWARN"#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_the_chain_checkable_from_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = sled(dir.path()).await;
    let audit = Auditor::open(
        store.clone(),
        &kek(),
        Settings {
            checkpoint_every: 10,
            max_events: 25,
            ..Settings::default()
        },
        "authz",
    )
    .await
    .unwrap();
    for i in 0..57 {
        audit.record(issued(i)).await.unwrap();
        // Let a checkpoint follow each tenth record.
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    audit.close().await;
    let bounds = Settings {
        max_events: 25,
        ..Settings::default()
    };
    let pruned = writ_audit::verify::prune(&*store, &bounds, writ_now())
        .await
        .unwrap();
    let report = verify(&*store, None).await.unwrap();
    assert!(report.intact(), "{:?}", report.problems);
    let first = report.first.unwrap();
    assert_eq!(pruned, first - 1);
    assert!(
        pruned >= 20,
        "pruned up to the checkpoint at or below 32: {pruned}"
    );
    assert!(
        report.records >= 25,
        "never below the bound: {}",
        report.records
    );
    // The pruned records' index entries went with them.
    let gone = all(
        &*store,
        &Filter {
            gid: Some("gid-0".into()),
            ..Filter::default()
        },
    )
    .await;
    assert!(gone.is_empty());
    let scanned = store
        .scan(Tree::Audit, b"i/g", None, 1000)
        .await
        .unwrap()
        .len() as u64;
    assert_eq!(scanned, report.records);
    // Pruned by age: everything made before now is old with no retention.
    let pruned = writ_audit::verify::prune(
        &*store,
        &Settings {
            retention: Duration::ZERO,
            ..Settings::default()
        },
        writ_now() + 1,
    )
    .await
    .unwrap();
    assert!(pruned > 0);
    let report = verify(&*store, None).await.unwrap();
    assert!(report.intact(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgresql_extend_one_chain() {
    let Some(config) = writ_store_postgres::testing::fresh().await else {
        return;
    };
    let store: Arc<dyn AsyncStore> = writ_store_postgres::PgStore::open(&config).await.unwrap();
    let other: Arc<dyn AsyncStore> = writ_store_postgres::PgStore::open(&config).await.unwrap();
    let a = Auditor::open(store.clone(), &kek(), settings(), "authz")
        .await
        .unwrap();
    let b = Auditor::open(other, &kek(), settings(), "authz")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let audit = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { audit.record(issued(i)).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let intent = a.intent(Event::new("client_deleted", Outcome::Success).client("gone"));
    assert!(
        store
            .commit(
                Tree::Clients,
                intent.attach(Batch::new().remove(b"gone".to_vec()))
            )
            .await
            .unwrap()
    );
    // Chained by whichever appender looks first (the other replica's, on its tick).
    b.written(intent);
    a.close().await;
    b.close().await;
    let records = all(&*store, &Filter::default()).await;
    assert_eq!(records.len(), 61);
    let report = verify(&*store, None).await.unwrap();
    assert!(report.intact(), "{:?}", report.problems);
    writ_store_postgres::testing::drop_schema(&config).await;
}

#[tokio::test]
async fn the_checkpoint_key_is_proven_by_the_key_encryption_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = twelve(dir.path()).await;
    let key = writ_audit::proven_key(&*store, &kek())
        .await
        .unwrap()
        .unwrap();
    assert!(verify(&*store, Some(vec![key])).await.unwrap().intact());
    // Another key encryption key does not open it.
    let other = KeyEncryptionKey::from_bytes(&[9; 32]).unwrap();
    assert!(writ_audit::proven_key(&*store, &other).await.is_err());
    // A public half swapped in (to re-sign a rewritten log with the attacker's key) is caught.
    let mut rec: writ_audit::record::KeyRecord =
        decode(&store.get(Tree::Audit, b"k").await.unwrap().unwrap()).unwrap();
    rec.public_key = vec![1; 32];
    store.insert(Tree::Audit, b"k", encode(&rec)).await.unwrap();
    assert!(writ_audit::proven_key(&*store, &kek()).await.is_err());
}

/// The layout before segment files kept every record in the store: the first start moves
/// them into the files, queries and verify see the same log, and the store keeps none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_kept_in_the_store_moves_into_segment_files() {
    use writ_audit::record::{HEAD_KEY, HeadRecord, index_keys};
    let dir = tempfile::tempdir().unwrap();
    {
        let raw: Arc<dyn AsyncStore> =
            Arc::new(Ready(Arc::new(SledStore::open(dir.path()).unwrap())));
        let mut prev = vec![0u8; 32];
        let mut batch = Batch::new();
        for seq in 1..=5u64 {
            let mut r = issued(seq as usize).record().clone();
            r.seq = seq;
            r.prev = prev;
            r.service = "authz".into();
            let bytes = encode(&r);
            prev = writ_audit::record_hash(&r);
            for k in index_keys(&r) {
                batch = batch.put(k, Vec::new());
            }
            batch = batch.put(record_key(seq), bytes);
        }
        batch = batch.put(HEAD_KEY, encode(&HeadRecord { seq: 5, hash: prev }));
        assert!(raw.commit(Tree::Audit, batch).await.unwrap());
        raw.durable().await.unwrap();
    }
    let store = sled(dir.path()).await;
    let report = verify(&*store, None).await.unwrap();
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!((report.records, report.last), (5, Some(5)));
    let found = all(
        &*store,
        &Filter {
            gid: Some("gid-3".into()),
            ..Filter::default()
        },
    )
    .await;
    assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), [3]);
    // The chain goes on in the files; the store holds none of it any more.
    let audit = Auditor::open(store.clone(), &kek(), settings(), "authz")
        .await
        .unwrap();
    audit.record(issued(6)).await.unwrap();
    audit.close().await;
    drop(audit);
    drop(store);
    let raw = SledStore::open(dir.path()).unwrap();
    use writ_store::Store;
    for prefix in [&b"r/"[..], b"i/", b"h"] {
        assert!(
            raw.scan(Tree::Audit, prefix, None, 10).unwrap().is_empty(),
            "{prefix:?}"
        );
    }
    drop(raw);
    let store = sled(dir.path()).await;
    let report = verify(&*store, None).await.unwrap();
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.records, 6);
}

/// Intents leave the store once their records are durable: while the log runs, and at close
/// those nobody told the appender of (as another replica or a crash leaves them). Each is
/// chained once, beside the records their callers chained in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_intents_leave_the_store_while_running_and_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = sled(dir.path()).await;
    let audit = Auditor::open(store.clone(), &kek(), settings(), "authz")
        .await
        .unwrap();
    let intents = |store: Arc<dyn AsyncStore>| async move {
        store
            .scan(Tree::Audit, writ_audit::record::INTENT_PREFIX, None, 1000)
            .await
            .unwrap()
            .len()
    };
    let commit = |i: usize, tell: bool| {
        let (store, audit) = (store.clone(), audit.clone());
        async move {
            let intent = audit
                .intent(Event::new("client_created", Outcome::Success).client(&format!("c{i}")));
            let key = format!("c{i}").into_bytes();
            let batch = intent.attach(
                Batch::new()
                    .expect(key.clone(), None)
                    .put(key, b"r".to_vec()),
            );
            assert!(store.commit(Tree::Clients, batch).await.unwrap());
            if tell {
                audit.written(intent);
            }
        }
    };
    for i in 0..30 {
        commit(i, true).await;
        // A record between them, chained by its caller.
        audit.record(issued(i)).await.unwrap();
    }
    let mut left = intents(store.clone()).await;
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = intents(store.clone()).await;
    }
    assert_eq!(
        left, 0,
        "chained intents left the store within 5 s, the log open"
    );
    for i in 30..40 {
        commit(i, false).await;
    }
    audit.close().await;
    assert_eq!(
        intents(store.clone()).await,
        0,
        "closing looks for intents, chains them and removes them"
    );
    let records = all(&*store, &Filter::default()).await;
    // Intents chain in key order (their time, to the millisecond): compared as sets.
    let mut created: Vec<String> = records
        .iter()
        .filter(|r| r.kind == "client_created")
        .map(|r| r.client_id.clone())
        .collect();
    created.sort();
    let mut expected: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
    expected.sort();
    assert_eq!(created, expected);
    assert_eq!(records.len(), 70, "each once");
    assert!(verify(&*store, None).await.unwrap().intact());
}

/// A crash after an intent's record was written to the files but before the intent left the
/// store: the next start sees the frame named it, and it is not chained a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_chained_before_a_crash_is_not_chained_twice() {
    let dir = tempfile::tempdir().unwrap();
    let key = writ_audit::record::intent_key(writ_now());
    let mut record = Event::new("client_created", Outcome::Success)
        .client("c")
        .record()
        .clone();
    {
        let raw = Arc::new(SledStore::open(dir.path()).unwrap());
        use writ_store::Store;
        raw.insert(Tree::Audit, &key, encode(&record)).unwrap();
        raw.durable().await.unwrap();
        // What the appender wrote before the crash: the record, naming its intent.
        let files =
            writ_audit::files::Segments::open(&writ_audit::files::dir_of(dir.path())).unwrap();
        let ticket = files
            .chain(
                std::slice::from_mut(&mut record),
                std::slice::from_ref(&key),
            )
            .unwrap();
        files.synced(ticket).await.unwrap();
    }
    let store = sled(dir.path()).await;
    assert_eq!(
        store.get(Tree::Audit, &key).await.unwrap(),
        None,
        "forgotten at start"
    );
    let audit = Auditor::open(store.clone(), &kek(), settings(), "authz")
        .await
        .unwrap();
    audit.record(issued(1)).await.unwrap();
    audit.close().await;
    let records = all(&*store, &Filter::default()).await;
    assert_eq!(
        records.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
        ["client_created", "token_issued"]
    );
    assert!(verify(&*store, None).await.unwrap().intact());
}

/// A flood of refusals past the budget is counted, not recorded one by one (it cannot push
/// older records out of the size bound at its own pace): each count is one
/// `refusals_unrecorded` record with examples of who tried. Each kind has its own budget, and
/// successes are never counted away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_past_the_budget_are_counted_in_one_record() {
    let dir = tempfile::tempdir().unwrap();
    a_flood_is_counted(sled(dir.path()).await).await;
}

/// The same on PostgreSQL, where records go through the appender's queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_past_the_budget_are_counted_on_postgresql_too() {
    let Some(config) = writ_store_postgres::testing::fresh().await else {
        return;
    };
    a_flood_is_counted(writ_store_postgres::PgStore::open(&config).await.unwrap()).await;
    writ_store_postgres::testing::drop_schema(&config).await;
}

async fn a_flood_is_counted(store: Arc<dyn AsyncStore>) {
    let budget = Settings {
        max_refusals_per_second: 3,
        ..settings()
    };
    let audit = Auditor::open(store.clone(), &kek(), budget, "authz")
        .await
        .unwrap();
    let flood = 20;
    for i in 0..flood {
        let refused = Event::new("token_refused", Outcome::Refused)
            .client(&format!("bot-{i}"))
            .reason("invalid_client");
        audit.record(refused).await.unwrap();
    }
    // Another kind has its budget still.
    audit
        .record(Event::new("admin_authentication_failed", Outcome::Refused).actor("someone"))
        .await
        .unwrap();
    for i in 0..10 {
        audit.record(issued(i)).await.unwrap();
    }
    // A close records what is counted.
    audit.close().await;
    let of = |kind: &str| Filter {
        kind: Some(kind.into()),
        ..Filter::default()
    };
    let summaries = all(&*store, &of("refusals_unrecorded")).await;
    let one_by_one = all(&*store, &of("token_refused")).await.len();
    // Three a second (the flood may straddle a second or two, never seven).
    assert!((3..flood).contains(&one_by_one), "{one_by_one}");
    let number = |r: &AuditRecord, k: &str| r.details[k].parse::<i64>().unwrap();
    let counted: i64 = summaries.iter().map(|r| number(r, "count")).sum();
    assert_eq!(one_by_one as i64 + counted, flood as i64, "{summaries:#?}");
    for r in &summaries {
        assert_eq!(
            (
                r.outcome.as_str(),
                r.actor.as_str(),
                r.service.as_str(),
                r.reason.as_str(),
                r.details["kind"].as_str(),
                r.details["per_second"].as_str()
            ),
            (
                "refused",
                "system",
                "authz",
                "invalid_client",
                "token_refused",
                "3"
            )
        );
        assert!(number(r, "first_ms") <= number(r, "last_ms"));
        assert!(r.details["client_0"].starts_with("bot-"), "{r:?}");
    }
    assert_eq!(
        all(&*store, &of("admin_authentication_failed")).await.len(),
        1
    );
    assert_eq!(all(&*store, &of("token_issued")).await.len(), 10);
    let report = verify(&*store, None).await.unwrap();
    assert!(report.intact(), "{:?}", report.problems);
}
