//! SECURITY.md items 12 and 18, on the engine itself: client authentication does the same work
//! (and takes similar time) whatever is wrong, and a storage failure during RFC 7009 revocation
//! is an error, never a success.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use writ_store::{Batch, Durable, Entries, SledStore, Store, StoreError, Tree};

use crate::secrets::HASHES;
use crate::*;
use writ_token::Clock;

/// A store that works until told to fail, then fails every write and every flush; it counts
/// reads of the revocation index, and claims to be its process's alone if `exclusive`.
#[derive(Debug)]
struct Failing {
    inner: SledStore,
    failing: AtomicBool,
    exclusive: bool,
    revocation_reads: std::sync::atomic::AtomicUsize,
}

impl Failing {
    fn new(exclusive: bool) -> Self {
        Failing {
            inner: SledStore::temporary().unwrap(),
            failing: AtomicBool::new(false),
            exclusive,
            revocation_reads: Default::default(),
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::Io("disk on fire (test)".into()))
        } else {
            Ok(())
        }
    }
}

impl Store for Failing {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if tree == Tree::Revocations {
            self.revocation_reads.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get(tree, key)
    }
    fn insert(&self, tree: Tree, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert(tree, key, value)
    }
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.remove(tree, key)
    }
    fn commit(&self, tree: Tree, batch: Batch) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.commit(tree, batch)
    }
    fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.inner.scan(tree, prefix, start_after, limit)
    }
    fn len(&self, tree: Tree) -> Result<usize, StoreError> {
        self.inner.len(tree)
    }
    fn durable(&self) -> Durable<'_> {
        match self.check() {
            Ok(()) => self.inner.durable(),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
    fn exclusive(&self) -> bool {
        self.exclusive
    }
}

async fn engine(store: Arc<dyn Store>) -> AuthorizationServer {
    let mut config = Config::new("https://as.test");
    // The throttle would stop checking after a few failures: it has tests of its own.
    config.throttle.free_failures = u32::MAX;
    let kek = Arc::new(writ_keyring::KeyEncryptionKey::generate().unwrap().0);
    AuthorizationServer::open(
        Arc::new(writ_store::Ready(store)),
        config,
        writ_token::system_clock(),
        kek,
    )
    .await
    .unwrap()
    .0
}

async fn confidential(engine: &AuthorizationServer, id: &str) -> String {
    let (_, secret) = engine
        .create_client(Client {
            client_id: id.into(),
            grant_types: vec!["client_credentials".into()],
            scope: "read".into(),
            audience: vec!["x".into()],
            ..Client::default()
        })
        .await
        .unwrap();
    secret.unwrap()
}

#[tokio::test]
async fn every_wrong_client_credential_takes_the_same_path_and_similar_time() {
    let engine = engine(Arc::new(SledStore::temporary().unwrap())).await;
    let secret = confidential(&engine, "svc").await;
    let other = confidential(&engine, "other").await;
    engine
        .create_client(Client {
            client_id: "spa".into(),
            client_type: ClientType::Public,
            grant_types: vec!["refresh_token".into()],
            ..Client::default()
        })
        .await
        .unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("svc", "wrong".into()),
        ("svc", other.clone()),
        ("svc", String::new()),
        ("svc", format!("{secret} ")),
        ("svc", format!("{secret}\0")),
        ("nobody", secret.clone()),
        ("spa", "a secret".into()),
    ];
    // The same work: as many keyed hashes on every path, the right secret included.
    async fn hashes(engine: &AuthorizationServer, id: &str, s: &str) -> (bool, u64) {
        let before = HASHES.with(|h| h.get());
        let ok = engine
            .authenticate_client(crate::client_auth::Presented::secret(id, s))
            .await
            .is_ok();
        (ok, HASHES.with(|h| h.get()) - before)
    }
    let (ok, baseline) = hashes(&engine, "svc", &secret).await;
    assert!(ok);
    for (id, s) in &cases {
        assert_eq!(
            hashes(&engine, id, s).await,
            (false, baseline),
            "{id} with {s:?}"
        );
    }
    // Similar time: medians of many tries, each case against the right secret's.
    async fn median(engine: &AuthorizationServer, id: &str, s: &str) -> Duration {
        let mut times = Vec::with_capacity(301);
        for _ in 0..301 {
            let start = Instant::now();
            let _ = std::hint::black_box(
                engine
                    .authenticate_client(crate::client_auth::Presented::secret(id, s))
                    .await,
            );
            times.push(start.elapsed());
        }
        times.sort();
        times[150]
    }
    let reference = median(&engine, "svc", &secret).await;
    for (id, s) in &cases {
        let m = median(&engine, id, s).await;
        let ratio = m.as_secs_f64() / reference.as_secs_f64();
        assert!(
            (1.0 / 3.0..3.0).contains(&ratio),
            "{id}: {m:?} against {reference:?}"
        );
    }
}

#[tokio::test]
async fn a_storage_failure_during_revocation_is_an_error_never_a_success() {
    let store = Arc::new(Failing::new(false));
    let engine = engine(store.clone()).await;
    let secret = confidential(&engine, "svc").await;
    let token = engine
        .token(TokenRequest {
            grant_type: "client_credentials".into(),
            client_id: "svc".into(),
            client_secret: secret.clone(),
            ..TokenRequest::default()
        })
        .await
        .unwrap()
        .access_token;
    store.failing.store(true, Ordering::SeqCst);
    let op = TokenOperation {
        token: token.clone(),
        token_type_hint: String::new(),
        client: ClientCredentials::secret("svc", secret.clone()),
    };
    let e = engine.revoke(op.clone()).await.expect_err("not a success");
    assert!(matches!(e, Error::Storage(_)), "{e:?}");
    assert_eq!(e.oauth_code(), "server_error");
    // Once the store works again, the same request succeeds, and the token is inactive.
    store.failing.store(false, Ordering::SeqCst);
    engine.revoke(op.clone()).await.unwrap();
    assert!(!engine.introspect(op).await.unwrap().active);
}

/// Opens an engine over one store again and again, with the same clock and key-encryption key
/// (what a restart keeps).
struct Restarts {
    store: Arc<dyn Store>,
    clock: writ_token::ManualClock,
    kek: Arc<writ_keyring::KeyEncryptionKey>,
}

impl Restarts {
    fn new(store: Arc<dyn Store>, clock: &writ_token::ManualClock) -> Self {
        Restarts {
            store,
            clock: clock.clone(),
            kek: Arc::new(writ_keyring::KeyEncryptionKey::generate().unwrap().0),
        }
    }

    async fn open(&self) -> AuthorizationServer {
        AuthorizationServer::open(
            Arc::new(writ_store::Ready(self.store.clone())),
            Config::new("https://as.test"),
            Arc::new(self.clock.clone()),
            self.kek.clone(),
        )
        .await
        .unwrap()
        .0
    }
}

async fn local(engine: &AuthorizationServer, value: &str) -> bool {
    engine
        .is_revoked(writ_token::RevocationKind::TokenId, value, 0)
        .await
        .unwrap()
}

/// The local revocation index is pruned in expiry order: expired entries go, one revoked again
/// with a later expiry stays until then, and a store written before the expiry order is indexed
/// when opened.
#[tokio::test]
async fn the_local_revocation_index_is_pruned_in_expiry_order() {
    let store = Arc::new(SledStore::temporary().unwrap());
    let clock = writ_token::ManualClock::starting_now();
    let restarts = Restarts::new(store.clone(), &clock);
    let engine = restarts.open().await;
    let now = clock.now();
    let entry = |value: String, expires_at: i64| writ_token::RevocationEntry {
        kind: writ_token::RevocationKind::TokenId,
        value,
        issuer: String::new(),
        expires_at,
        not_before: 0,
        reason: String::new(),
    };
    // 1,500 entries (more than a page), each kept the access-token horizon past now.
    for chunk in (0..1500).collect::<Vec<_>>().chunks(500) {
        engine
            .admin_revoke(
                chunk
                    .iter()
                    .map(|i| entry(format!("t{i}"), now + 1))
                    .collect(),
            )
            .await
            .unwrap();
    }
    // One of them revoked again, for longer.
    let later = now + 100_000;
    engine
        .admin_revoke(vec![entry("t7".into(), later)])
        .await
        .unwrap();
    assert!(local(&engine, "t8").await);

    clock.advance(50_000);
    let removed = engine.prune_revocations(clock.now(), 0).await.unwrap();
    // No publisher here: the outbox still holds all 1,501 entries, and prunes the expired.
    assert_eq!(
        removed,
        1499 + 1500,
        "every local entry but the one revoked again, and their outbox entries"
    );
    assert!(!local(&engine, "t8").await);
    let expiry_keys = || {
        store
            .scan(Tree::Revocations, b"e/", None, 10_000)
            .unwrap()
            .len()
    };
    assert_eq!(expiry_keys(), 1, "the chunk listing the one revoked again");

    // As a store from before the expiry order: its key and marker gone.
    store
        .commit(
            Tree::Revocations,
            store
                .scan(Tree::Revocations, b"e/", None, 10)
                .unwrap()
                .into_iter()
                .fold(Batch::new(), |b, (k, _)| b.remove(k)),
        )
        .unwrap();
    store
        .remove(Tree::Meta, b"revocations_expiry_indexed")
        .unwrap();
    drop(engine);
    let engine = restarts.open().await;
    assert_eq!(expiry_keys(), 1, "indexed when opened");

    // As a store an earlier build listed one key per entry: packed into a chunk when opened.
    let mut legacy_key = b"x/".to_vec();
    legacy_key.extend_from_slice(&((later as u64) ^ (1 << 63)).to_be_bytes());
    legacy_key.push(writ_token::RevocationKind::TokenId as u8);
    legacy_key.extend_from_slice(b"t7");
    let chunks = store.scan(Tree::Revocations, b"e/", None, 10).unwrap();
    store
        .commit(
            Tree::Revocations,
            chunks
                .into_iter()
                .fold(Batch::new(), |b, (k, _)| b.remove(k))
                .put(legacy_key, Vec::new()),
        )
        .unwrap();
    drop(engine);
    let engine = restarts.open().await;
    assert_eq!(expiry_keys(), 1, "packed when opened");
    assert!(
        store
            .scan(Tree::Revocations, b"x/", None, 10)
            .unwrap()
            .is_empty()
    );
    // Listed by expiry bucket: forgotten once its bucket has passed.
    clock.set(later + 1 + writ_store::EXPIRY_BUCKET_SECONDS);
    assert_eq!(engine.prune_revocations(clock.now(), 0).await.unwrap(), 2);
    assert!(!local(&engine, "t7").await);
}

/// On a store only this process writes, checking a token against the local revocation index
/// reads the store only when an entry could apply: entries present when the engine opened
/// (loaded in the background, more than a page of them), recorded since, and pruned are all
/// answered right, and a token nothing revokes costs no read.
#[tokio::test]
async fn a_check_reads_the_revocation_index_only_when_an_entry_may_apply() {
    let store = Arc::new(Failing::new(true));
    let clock = writ_token::ManualClock::starting_now();
    let restarts = Restarts::new(store.clone(), &clock);
    let now = clock.now();
    let entry = |value: String, expires_at: i64| writ_token::RevocationEntry {
        kind: writ_token::RevocationKind::TokenId,
        value,
        issuer: String::new(),
        expires_at,
        not_before: 0,
        reason: String::new(),
    };
    let engine = restarts.open().await;
    for chunk in (0..5000).collect::<Vec<_>>().chunks(1000) {
        engine
            .admin_revoke(
                chunk
                    .iter()
                    .map(|i| entry(format!("t{i}"), now + 1))
                    .collect(),
            )
            .await
            .unwrap();
    }
    drop(engine);

    let engine = restarts.open().await;
    let filter = engine
        .revocation_filter
        .clone()
        .expect("an exclusive store");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !filter.is_complete() {
        assert!(
            Instant::now() < deadline,
            "the filter never finished loading"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reads = || store.revocation_reads.load(Ordering::SeqCst);
    for i in [0, 1, 4095, 4096, 4999] {
        assert!(local(&engine, &format!("t{i}")).await, "t{i} loaded");
    }
    let before = reads();
    for i in 5000..5100 {
        assert!(!local(&engine, &format!("t{i}")).await);
    }
    assert!(
        reads() - before <= 1,
        "100 unrevoked ids (a fingerprint may collide) cost {} reads",
        reads() - before
    );

    engine
        .admin_revoke(vec![entry("later".into(), now + 100_000)])
        .await
        .unwrap();
    assert!(local(&engine, "later").await, "recorded after loading");

    clock.advance(50_000);
    engine.prune_revocations(clock.now(), 0).await.unwrap();
    let before = reads();
    for i in [0, 1, 4095, 4096, 4999] {
        assert!(!local(&engine, &format!("t{i}")).await, "t{i} pruned");
    }
    assert!(reads() - before <= 1, "pruned entries are forgotten");
    assert!(local(&engine, "later").await);
    assert_eq!(filter.len(), 1);
}

/// A revocation log that holds nothing (the test delivers by hand).
#[derive(Debug)]
struct EmptyLog;

impl writ_token::RevocationCheck for EmptyLog {
    fn revoked(
        &self,
        _: &writ_token::TokenFacts<'_>,
    ) -> std::result::Result<Option<writ_token::RevocationKind>, writ_token::Unvouched> {
        Ok(None)
    }
}

/// With the revocation log in this process, token-id revocations are recorded in the outbox
/// alone: answered from memory from the moment they are acknowledged, across a restart, until
/// delivered; never written to the local index. Cut-offs stay in the index, and so does
/// whatever was recorded before the log was followed.
#[tokio::test]
async fn with_the_log_in_this_process_token_revocations_are_left_to_it() {
    let store = Arc::new(Failing::new(true));
    let clock = writ_token::ManualClock::starting_now();
    let restarts = Restarts::new(store.clone(), &clock);
    let now = clock.now();
    let entry = |kind, value: &str| writ_token::RevocationEntry {
        kind,
        value: value.to_owned(),
        issuer: String::new(),
        expires_at: now + 600,
        not_before: if kind == writ_token::RevocationKind::Subject {
            now
        } else {
            0
        },
        reason: String::new(),
    };
    use writ_token::RevocationKind::{Subject, TokenId};
    let index_keys = || {
        store
            .scan(Tree::Revocations, b"r/", None, 100)
            .unwrap()
            .len()
    };

    let engine = restarts.open().await;
    engine
        .admin_revoke(vec![entry(TokenId, "before")])
        .await
        .unwrap();
    assert_eq!(index_keys(), 1, "before the log is followed: in the index");
    engine.follow_log(Arc::new(EmptyLog)).await.unwrap();
    engine
        .admin_revoke(vec![
            entry(TokenId, "t1"),
            entry(TokenId, "t2"),
            entry(Subject, "alice"),
        ])
        .await
        .unwrap();
    assert_eq!(
        index_keys(),
        2,
        "the cut-off is indexed, the token ids are not"
    );
    assert!(local(&engine, "t1").await && local(&engine, "t2").await);
    assert!(
        engine.is_revoked(Subject, "alice", now - 1).await.unwrap(),
        "the cut-off applies"
    );
    assert_eq!(engine.undelivered.as_ref().unwrap().len(), 2);

    // A restart: the outbox still holds them, and they are answered before the log is wired.
    drop(engine);
    let engine = restarts.open().await;
    assert!(local(&engine, "t1").await && local(&engine, "t2").await);
    assert_eq!(
        engine.undelivered.as_ref().unwrap().len(),
        3,
        "every queued token id, indexed or not"
    );
    // Entries delivered in an earlier run live only in the log: until it is followed again,
    // this server's index cannot vouch for a token.
    let facts = writ_token::TokenFacts {
        iss: "https://as.test",
        jti: "delivered-earlier",
        gid: None,
        sub: "s",
        client_id: "c",
        iat: now,
        key_id: "k",
        biscuit_revocation_ids: &[],
    };
    use writ_token::AsyncRevocationCheck;
    assert!(
        engine.revoked_async(&facts).await.is_err(),
        "fails closed until the log is followed"
    );
    engine.follow_log(Arc::new(EmptyLog)).await.unwrap();
    assert_eq!(engine.revoked_async(&facts).await.unwrap(), None);

    // Delivered: the log answers for them from now on (this one holds nothing).
    let queued = engine.outbox(100).await.unwrap();
    assert_eq!(queued.len(), 4, "every entry is published, indexed or not");
    let keys: Vec<Vec<u8>> = queued.into_iter().map(|(k, _)| k).collect();
    engine.outbox_done(&keys).await.unwrap();
    assert!(!local(&engine, "t1").await && !local(&engine, "t2").await);
    assert!(
        local(&engine, "before").await,
        "the index keeps what it holds"
    );
    assert_eq!(engine.undelivered.as_ref().unwrap().len(), 0);

    // One the revocation service refuses stays in force here, in the index.
    engine
        .admin_revoke(vec![entry(TokenId, "refused")])
        .await
        .unwrap();
    let queued: Vec<Vec<u8>> = engine
        .outbox(100)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(queued.len(), 1);
    engine.outbox_refused(&queued).await.unwrap();
    assert!(engine.outbox(100).await.unwrap().is_empty());
    assert_eq!(engine.undelivered.as_ref().unwrap().len(), 0);
    assert!(local(&engine, "refused").await, "kept in the local index");
    assert_eq!(index_keys(), 3);
}

/// A public client `web` (PKCE, scope `read`), and `ada` signed in and consenting to it: the
/// session, and the request that gets a code at once.
async fn signed_in_to_web(
    engine: &AuthorizationServer,
) -> (signin::NewSession, AuthorizationRequest) {
    engine
        .create_client(Client {
            client_id: "web".into(),
            client_type: ClientType::Public,
            grant_types: vec!["authorization_code".into()],
            scope: "read".into(),
            audience: vec!["x".into()],
            redirect_uris: vec!["https://rp.test/cb".into()],
            ..Client::default()
        })
        .await
        .unwrap();
    engine
        .create_user("ada", "correct horse battery", "read")
        .await
        .unwrap();
    let session = engine
        .sign_in("ada", "correct horse battery", None, None)
        .await
        .unwrap();
    let request = AuthorizationRequest {
        response_type: "code".into(),
        client_id: "web".into(),
        redirect_uri: "https://rp.test/cb".into(),
        scope: "read".into(),
        // RFC 7636 appendix B.
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        code_challenge_method: "S256".into(),
        ..Default::default()
    };
    engine
        .grant_consent(&session.cookie, request.clone())
        .await
        .unwrap();
    (session, request)
}

/// The code the authorization endpoint answers `request` with, in the session `cookie`.
async fn code_for(
    engine: &AuthorizationServer,
    request: &AuthorizationRequest,
    cookie: &str,
) -> String {
    let answer = engine.authorize(request.clone(), Some(cookie)).await;
    let Authorize::Redirect(to) = answer else {
        panic!("{answer:?}")
    };
    let query = to.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned()
}

/// Redeems a code of [`signed_in_to_web`]'s request.
async fn redeem(engine: &AuthorizationServer, code: String) -> Result<TokenResponse> {
    engine
        .token(TokenRequest {
            grant_type: "authorization_code".into(),
            client_id: "web".into(),
            code,
            redirect_uri: "https://rp.test/cb".into(),
            code_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
            ..TokenRequest::default()
        })
        .await
}

#[tokio::test]
async fn a_code_joins_its_session_when_redeemed_even_after_a_renewal_not_after_a_revocation() {
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    let engine = engine(store.clone()).await;
    let (session, request) = signed_in_to_web(&engine).await;
    let listed = async |cookie: &str| {
        let (_, _, record, _) = engine.live_session(cookie).await.unwrap().unwrap();
        engine.session_grants(&record).await.unwrap()
    };
    // Issuing a code stores nothing in the session.
    let code = code_for(&engine, &request, &session.cookie).await;
    assert!(listed(&session.cookie).await.is_empty());
    // The same person signs in again in the browser: the session moves under a new cookie,
    // and the code, redeemed after, joins it there.
    let renewed = engine
        .sign_in("ada", "correct horse battery", Some(&session.cookie), None)
        .await
        .unwrap();
    assert_ne!(renewed.cookie, session.cookie);
    let tokens = redeem(&engine, code.clone()).await.unwrap();
    assert!(!tokens.access_token.is_empty());
    let grants = listed(&renewed.cookie).await;
    assert_eq!(grants.len(), 1);
    // Redeemed twice: a replay, which revokes what it issued.
    let replay = redeem(&engine, code).await.unwrap_err();
    assert!(matches!(replay, Error::InvalidGrant(_)), "{replay:?}");
    assert!(
        engine
            .is_revoked(writ_token::RevocationKind::GrantId, &grants[0].gid, 0)
            .await
            .unwrap()
    );

    // A code whose consent was revoked before it was redeemed issues nothing.
    let code = code_for(&engine, &request, &renewed.cookie).await;
    engine.revoke_consent(&renewed.cookie, "web").await.unwrap();
    let refused = redeem(&engine, code).await.unwrap_err();
    assert!(matches!(refused, Error::InvalidGrant(_)), "{refused:?}");
    assert!(listed(&renewed.cookie).await.is_empty());
    engine
        .grant_consent(&renewed.cookie, request.clone())
        .await
        .unwrap();

    // A code whose session ended before it was redeemed issues nothing.
    let code = code_for(&engine, &request, &renewed.cookie).await;
    engine
        .end_session(&renewed.cookie, "signed out")
        .await
        .unwrap();
    let grants_before = store.len(Tree::Grants).unwrap();
    let refused = redeem(&engine, code).await.unwrap_err();
    assert!(matches!(refused, Error::InvalidGrant(_)), "{refused:?}");
    assert!(store.scan(Tree::SignIn, b"q/", None, 1).unwrap().is_empty());
    assert_eq!(
        store.len(Tree::Grants).unwrap(),
        grants_before,
        "no grant written"
    );
}

#[tokio::test]
async fn a_code_of_a_client_registered_again_is_refused() {
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    let engine = engine(store).await;
    let (session, request) = signed_in_to_web(&engine).await;
    let old = code_for(&engine, &request, &session.cookie).await;
    let spec = engine.get_client("web").await.unwrap();
    engine.delete_client("web").await.unwrap();
    engine.create_client(spec).await.unwrap();
    engine
        .grant_consent(&session.cookie, request.clone())
        .await
        .unwrap();
    let refused = redeem(&engine, old).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        Error::InvalidGrant("the code was issued to another client").to_string()
    );
}

#[tokio::test]
/// A session lists each grant it issues under a key of its own, at most
/// [`signin::MAX_SESSION_GRANTS`]: past that the oldest is revoked first; signing out revokes
/// the rest and leaves no listing behind.
async fn a_session_revokes_its_oldest_grant_past_its_bound_and_all_on_sign_out() {
    use writ_token::RevocationKind;
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    let engine = engine(store.clone()).await;
    let (session, request) = signed_in_to_web(&engine).await;
    let listed = async || {
        let (_, _, record, _) = engine.live_session(&session.cookie).await.unwrap().unwrap();
        engine.session_grants(&record).await.unwrap()
    };
    // A grant joins its session when its code is redeemed.
    let code = async || {
        let code = code_for(&engine, &request, &session.cookie).await;
        redeem(&engine, code).await.unwrap();
    };
    code().await;
    let first = listed().await[0].gid.clone();
    for _ in 0..signin::MAX_SESSION_GRANTS {
        code().await;
    }
    let grants = listed().await;
    assert_eq!(grants.len(), signin::MAX_SESSION_GRANTS);
    assert!(grants.iter().all(|g| g.gid != first && g.key.is_some()));
    assert!(
        engine
            .is_revoked(RevocationKind::GrantId, &first, 0)
            .await
            .unwrap()
    );
    let newest = grants.last().unwrap().gid.clone();
    assert!(
        !engine
            .is_revoked(RevocationKind::GrantId, &newest, 0)
            .await
            .unwrap()
    );

    engine
        .end_session(&session.cookie, "signed out")
        .await
        .unwrap();
    assert!(
        engine
            .is_revoked(RevocationKind::GrantId, &newest, 0)
            .await
            .unwrap()
    );
    assert!(store.scan(Tree::SignIn, b"q/", None, 1).unwrap().is_empty());
}

/// A session opened before the per-subject index existed has no entry: the first pruning pass
/// gives it one, so an administrator sees and ends it.
#[tokio::test]
async fn a_session_without_an_index_entry_gets_one_from_the_first_pruning_pass() {
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    let engine = engine(store.clone()).await;
    engine
        .create_user("ada", "correct horse battery", "read")
        .await
        .unwrap();
    engine
        .sign_in("ada", "correct horse battery", None, None)
        .await
        .unwrap();
    let index = store.scan(Tree::SignIn, b"v/", None, 10).unwrap();
    assert_eq!(index.len(), 1);
    store.remove(Tree::SignIn, &index[0].0).unwrap();
    assert!(engine.user_sessions("ada").await.unwrap().is_empty());

    engine.prune_expired().await.unwrap();
    assert_eq!(engine.user_sessions("ada").await.unwrap().len(), 1);
    let ended = engine.end_user_sessions("ada", "").await.unwrap();
    assert_eq!(ended.ended, 1);
    assert!(store.scan(Tree::SignIn, b"s/", None, 1).unwrap().is_empty());
}
