//! The one test suite every backend passes ([`check`]): what the engines rely on a store for,
//! stated as assertions. A backend's tests call it with a fresh, empty store; it panics on the
//! first broken promise.

// A test suite: a failed operation is a failed check.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use crate::{AsyncStore, Batch, Tree};

/// Runs every check on `store`, which must be empty.
pub async fn check(store: Arc<dyn AsyncStore>) {
    reads_what_was_written(&*store).await;
    reads_many_at_once_in_order(&*store).await;
    the_last_write_of_a_key_in_a_batch_wins(&*store).await;
    binary_keys_and_values_round_trip(&*store).await;
    trees_are_apart(&*store).await;
    commit_applies_only_when_every_expectation_holds(&*store).await;
    audit_writes_commit_with_their_batch(&*store).await;
    scans_are_in_byte_order_within_the_prefix(&*store).await;
    concurrent_conditional_writes_have_one_winner(store.clone()).await;
    concurrent_increments_lose_nothing(store.clone()).await;
}

async fn reads_many_at_once_in_order(s: &dyn AsyncStore) {
    s.insert(Tree::Users, b"m1", b"1".to_vec()).await.unwrap();
    s.insert(Tree::Users, b"m3", b"3".to_vec()).await.unwrap();
    s.insert(Tree::Clients, b"m2", b"other tree".to_vec())
        .await
        .unwrap();
    let keys = [
        b"m3".to_vec(),
        b"m2".to_vec(),
        b"m1".to_vec(),
        b"m3".to_vec(),
    ];
    let got = s.get_many(Tree::Users, &keys).await.unwrap();
    assert_eq!(
        got,
        [
            Some(b"3".to_vec()),
            None,
            Some(b"1".to_vec()),
            Some(b"3".to_vec())
        ],
        "in the keys' order, absent as None, a key asked twice answered twice"
    );
    assert!(s.get_many(Tree::Users, &[]).await.unwrap().is_empty());
    for (tree, key) in [
        (Tree::Users, &b"m1"[..]),
        (Tree::Users, b"m3"),
        (Tree::Clients, b"m2"),
    ] {
        s.remove(tree, key).await.unwrap();
    }
}

async fn the_last_write_of_a_key_in_a_batch_wins(s: &dyn AsyncStore) {
    let batch = Batch::new()
        .put(b"w1".to_vec(), b"first".to_vec())
        .put(b"w1".to_vec(), b"second".to_vec())
        .put(b"w2".to_vec(), b"kept?".to_vec())
        .remove(b"w2".to_vec());
    assert!(s.commit(Tree::Grants, batch).await.unwrap());
    assert_eq!(
        s.get(Tree::Grants, b"w1").await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(s.get(Tree::Grants, b"w2").await.unwrap(), None);
    s.remove(Tree::Grants, b"w1").await.unwrap();
}

async fn reads_what_was_written(s: &dyn AsyncStore) {
    assert_eq!(s.get(Tree::Clients, b"a").await.unwrap(), None);
    s.insert(Tree::Clients, b"a", b"1".to_vec()).await.unwrap();
    assert_eq!(
        s.get(Tree::Clients, b"a").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    s.insert(Tree::Clients, b"a", b"2".to_vec()).await.unwrap();
    assert_eq!(
        s.get(Tree::Clients, b"a").await.unwrap().as_deref(),
        Some(&b"2"[..]),
        "insert replaces"
    );
    s.durable().await.unwrap();
    s.remove(Tree::Clients, b"a").await.unwrap();
    assert_eq!(s.get(Tree::Clients, b"a").await.unwrap(), None);
    // Removing what is not there is not an error.
    s.remove(Tree::Clients, b"a").await.unwrap();
    assert_eq!(s.len(Tree::Clients).await.unwrap(), 0);
}

async fn binary_keys_and_values_round_trip(s: &dyn AsyncStore) {
    let keys: [&[u8]; 5] = [b"", b"\x00", b"\x00\x00", b"\xff\xfe", b"\xff\xff\xff"];
    for (i, k) in keys.iter().enumerate() {
        let value = vec![0, 0xff, i as u8, 0];
        s.insert(Tree::Users, k, value.clone()).await.unwrap();
        assert_eq!(s.get(Tree::Users, k).await.unwrap(), Some(value));
    }
    s.insert(Tree::Users, b"empty", Vec::new()).await.unwrap();
    assert_eq!(
        s.get(Tree::Users, b"empty").await.unwrap(),
        Some(Vec::new())
    );
    assert_eq!(s.len(Tree::Users).await.unwrap(), keys.len() + 1);
    // A prefix of 0xff bytes has no successor: the scan runs to the end.
    let tail = s.scan(Tree::Users, b"\xff", None, 10).await.unwrap();
    let tail: Vec<_> = tail.into_iter().map(|(k, _)| k).collect();
    assert_eq!(tail, vec![b"\xff\xfe".to_vec(), b"\xff\xff\xff".to_vec()]);
    let all = s.scan(Tree::Users, b"", None, 100).await.unwrap();
    assert_eq!(all.len(), keys.len() + 1);
    assert_eq!(all[0].0, Vec::<u8>::new(), "the empty key sorts first");
}

async fn trees_are_apart(s: &dyn AsyncStore) {
    s.insert(Tree::Grants, b"same", b"grant".to_vec())
        .await
        .unwrap();
    s.insert(Tree::RefreshTokens, b"same", b"refresh".to_vec())
        .await
        .unwrap();
    assert_eq!(
        s.get(Tree::Grants, b"same").await.unwrap().as_deref(),
        Some(&b"grant"[..])
    );
    s.remove(Tree::RefreshTokens, b"same").await.unwrap();
    assert!(s.get(Tree::Grants, b"same").await.unwrap().is_some());
    s.remove(Tree::Grants, b"same").await.unwrap();
}

async fn commit_applies_only_when_every_expectation_holds(s: &dyn AsyncStore) {
    let t = Tree::Grants;
    assert!(
        s.commit(t, Batch::new().expect("k", None).put("k", b"v1".to_vec()))
            .await
            .unwrap()
    );
    // One failed expectation among several: nothing of the batch is written.
    let refused = s
        .commit(
            t,
            Batch::new()
                .expect("k", Some(b"v1".to_vec()))
                .expect("other", Some(b"x".to_vec()))
                .put("k", b"v2".to_vec())
                .put("third", b"y".to_vec()),
        )
        .await
        .unwrap();
    assert!(!refused);
    assert_eq!(s.get(t, b"k").await.unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(s.get(t, b"third").await.unwrap(), None);
    // Expecting a value, then removing and writing in one batch.
    assert!(
        s.commit(
            t,
            Batch::new()
                .expect("k", Some(b"v1".to_vec()))
                .remove("k")
                .put("moved", b"v1".to_vec()),
        )
        .await
        .unwrap()
    );
    assert_eq!(s.get(t, b"k").await.unwrap(), None);
    assert_eq!(
        s.get(t, b"moved").await.unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    // Expecting absence of a key the batch does not write.
    assert!(
        !s.commit(
            t,
            Batch::new().expect("moved", None).put("z", b"1".to_vec())
        )
        .await
        .unwrap()
    );
    assert_eq!(s.get(t, b"z").await.unwrap(), None);
    // An empty batch applies and changes nothing.
    assert!(s.commit(t, Batch::new()).await.unwrap());
    s.remove(t, b"moved").await.unwrap();
    assert_eq!(s.len(t).await.unwrap(), 0);
}

async fn audit_writes_commit_with_their_batch(s: &dyn AsyncStore) {
    // Refused: neither the state change nor its audit intent.
    let refused = Batch::new()
        .expect(b"a1".to_vec(), Some(b"not there".to_vec()))
        .put(b"a1".to_vec(), b"v".to_vec())
        .audit(b"p/1".to_vec(), b"intent 1".to_vec());
    assert!(!s.commit(Tree::Clients, refused).await.unwrap());
    assert_eq!(s.get(Tree::Clients, b"a1").await.unwrap(), None);
    assert_eq!(s.get(Tree::Audit, b"p/1").await.unwrap(), None);
    // Applied: both, each in its tree.
    for (i, expect_absent) in [(2u8, true), (3, false)] {
        let key = format!("p/{i}").into_bytes();
        let mut batch = Batch::new()
            .put(b"a1".to_vec(), vec![i])
            .audit(key.clone(), vec![i, i]);
        if expect_absent {
            batch = batch.expect(b"a1".to_vec(), None);
        } else {
            batch = batch.expect(b"a1".to_vec(), Some(vec![2]));
        }
        assert!(s.commit(Tree::Clients, batch).await.unwrap());
        assert_eq!(s.get(Tree::Audit, &key).await.unwrap(), Some(vec![i, i]));
        assert_eq!(s.get(Tree::Clients, &key).await.unwrap(), None);
    }
    // A batch removing a key it expects nothing of takes the other path on some backends.
    let removing = Batch::new()
        .remove(b"a1".to_vec())
        .audit(b"p/4".to_vec(), b"intent 4".to_vec());
    assert!(s.commit(Tree::Clients, removing).await.unwrap());
    assert_eq!(s.get(Tree::Clients, b"a1").await.unwrap(), None);
    assert_eq!(
        s.get(Tree::Audit, b"p/4").await.unwrap(),
        Some(b"intent 4".to_vec())
    );
    // On the audit tree itself, they are puts of the batch.
    let own = Batch::new()
        .put(b"p/5".to_vec(), b"5".to_vec())
        .audit(b"p/6".to_vec(), b"6".to_vec());
    assert!(s.commit(Tree::Audit, own).await.unwrap());
    assert_eq!(s.len(Tree::Audit).await.unwrap(), 5);
    for key in ["p/2", "p/3", "p/4", "p/5", "p/6"] {
        s.remove(Tree::Audit, key.as_bytes()).await.unwrap();
    }
}

async fn scans_are_in_byte_order_within_the_prefix(s: &dyn AsyncStore) {
    let t = Tree::ExchangePolicies;
    for k in ["b1", "a3", "a1", "a10", "a2", "c"] {
        s.insert(t, k.as_bytes(), k.as_bytes().to_vec())
            .await
            .unwrap();
    }
    let keys = |page: crate::Entries| {
        page.into_iter()
            .map(|(k, v)| {
                assert_eq!(k, v, "the value is the key's");
                String::from_utf8(k).unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(s.scan(t, b"a", None, 100).await.unwrap()),
        ["a1", "a10", "a2", "a3"]
    );
    assert_eq!(keys(s.scan(t, b"a", None, 2).await.unwrap()), ["a1", "a10"]);
    assert_eq!(
        keys(s.scan(t, b"a", Some(b"a10"), 100).await.unwrap()),
        ["a2", "a3"]
    );
    // A cursor before the prefix starts at the prefix; one past it yields nothing.
    assert_eq!(keys(s.scan(t, b"a", Some(b"0"), 1).await.unwrap()), ["a1"]);
    assert!(s.scan(t, b"a", Some(b"b"), 10).await.unwrap().is_empty());
    assert_eq!(
        keys(s.scan(t, b"", Some(b"a3"), 100).await.unwrap()),
        ["b1", "c"]
    );
    assert!(s.scan(t, b"a", None, 0).await.unwrap().is_empty());
    assert!(s.scan(t, b"d", None, 10).await.unwrap().is_empty());
    assert_eq!(s.len(t).await.unwrap(), 6);
}

/// Refresh rotation and unique registration rest on this: of many batches expecting the same
/// state, exactly one applies.
async fn concurrent_conditional_writes_have_one_winner(s: Arc<dyn AsyncStore>) {
    let t = Tree::RefreshTokens;
    s.insert(t, b"token", b"active".to_vec()).await.unwrap();
    let mut tasks = Vec::new();
    // Every registration starts together: the race is on the key's absence.
    let together = Arc::new(tokio::sync::Barrier::new(16));
    for i in 0..16u8 {
        let (s, together) = (s.clone(), together.clone());
        tasks.push(tokio::spawn(async move {
            let rotated = s
                .commit(
                    t,
                    Batch::new()
                        .expect("token", Some(b"active".to_vec()))
                        .put("token", vec![b'u', i])
                        .put(vec![b's', i], b"successor".to_vec()),
                )
                .await
                .unwrap();
            together.wait().await;
            let registered = s
                .commit(
                    Tree::Clients,
                    Batch::new()
                        .expect("new-client", None)
                        .put("new-client", vec![i]),
                )
                .await
                .unwrap();
            (rotated, registered)
        }));
    }
    let mut rotated = 0;
    let mut registered = 0;
    for task in tasks {
        let (r, c) = task.await.unwrap();
        rotated += usize::from(r);
        registered += usize::from(c);
    }
    assert_eq!(rotated, 1, "exactly one rotation wins");
    assert_eq!(registered, 1, "exactly one registration wins");
    assert_eq!(
        s.scan(t, b"s", None, 100).await.unwrap().len(),
        1,
        "only the winner's successor exists"
    );
}

async fn concurrent_increments_lose_nothing(s: Arc<dyn AsyncStore>) {
    let t = Tree::Meta;
    s.insert(t, b"counter", 0u64.to_be_bytes().to_vec())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                // Compare and swap until it applies (bounded).
                let mut applied = false;
                for _ in 0..1000 {
                    let now = s.get(t, b"counter").await.unwrap().unwrap();
                    let n = u64::from_be_bytes(now.as_slice().try_into().unwrap());
                    let batch = Batch::new()
                        .expect("counter", Some(now))
                        .put("counter", (n + 1).to_be_bytes().to_vec());
                    if s.commit(t, batch).await.unwrap() {
                        applied = true;
                        break;
                    }
                }
                assert!(applied, "an increment never applied");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let end = s.get(t, b"counter").await.unwrap().unwrap();
    assert_eq!(u64::from_be_bytes(end.as_slice().try_into().unwrap()), 80);
}
