//! The revocation feed end to end: every producer at the authorization server reaches the feed
//! and a watcher's set; the revocation service refuses bad input and writes nothing; and the
//! stream's guarantees (SECURITY.md 25-31): order, idempotency, snapshots, slow subscribers,
//! checkpoints, pruning and restarts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::Code;
use writ_proto::admin as pb_admin;
use writ_proto::revocation::revocation_service_client::RevocationServiceClient;
use writ_proto::revocation::watch_response::Event;
use writ_proto::revocation::{
    self as pb, GetStatusRequest, GetStatusResponse, RevokeRequest, WatchRequest,
};
use writ_revocation_client::{RevocationSet, TokenFacts};
use writ_tests::*;
use writ_token::{Clock, ManualClock, RevocationKind, VerifiedToken};

use crate::grants::{gateway_and_user, password_request, verifier_for};

/// Bound on anything reaching the feed or a watcher.
const FEED: Duration = Duration::from_secs(10);

use writ_tests::revocation_entry as entry;

fn now() -> i64 {
    writ_token::system_clock().now()
}

/// Whether `set` holds exactly this entry for tokens of `iss` (see [`revokes_exactly`]).
fn holds(set: &RevocationSet, e: &pb::RevocationEntry, iss: &str) -> bool {
    revokes_exactly(
        set,
        RevocationKind::from_i32(e.kind).unwrap(),
        &e.value,
        e.not_before,
        iss,
    )
}

async fn status(client: &mut RevocationClient) -> GetStatusResponse {
    client
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn revoke(client: &mut RevocationClient, entries: Vec<pb::RevocationEntry>) -> u64 {
    client
        .revoke(RevokeRequest { entries })
        .await
        .unwrap()
        .into_inner()
        .sequence
}

async fn admin_revoke(server: &TestServer, entries: Vec<pb::RevocationEntry>) {
    server
        .admin()
        .await
        .revoke(pb_admin::RevokeRequest { entries })
        .await
        .unwrap();
}

/// A raw Watch stream; every read is bounded.
struct Feed(tonic::Streaming<pb::WatchResponse>);

impl Feed {
    async fn open(client: &mut RevocationClient, from: u64) -> Feed {
        Feed(
            client
                .watch(WatchRequest {
                    from_sequence: from,
                })
                .await
                .unwrap()
                .into_inner(),
        )
    }

    async fn next(&mut self) -> Event {
        tokio::time::timeout(FEED, self.0.message())
            .await
            .expect("a message within the bound")
            .expect("the stream is healthy")
            .expect("the stream is open")
            .event
            .expect("a message carries an event")
    }

    /// The next revocation event, skipping checkpoints.
    async fn revocation(&mut self) -> pb::RevocationEvent {
        let deadline = tokio::time::Instant::now() + FEED;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a revocation within {FEED:?}"
            );
            match self.next().await {
                Event::Revocation(ev) => return ev,
                Event::Checkpoint(_) => continue,
                other => panic!("expected a revocation, got {other:?}"),
            }
        }
    }
}

/// A server with a watcher following its feed from the start, and a raw stream on it.
struct Watched {
    server: TestServer,
    set: Arc<RevocationSet>,
    _watcher: writ_revocation_client::Watcher,
    feed: Feed,
}

impl Watched {
    async fn start_with(opts: Options) -> Watched {
        let server = TestServer::start_with(opts).await;
        let set = Arc::new(RevocationSet::new());
        let watcher = server.watcher(set.clone()).await;
        let mut client = server.revocation(&server.watch_token().await).await;
        let feed = Feed::open(&mut client, 0).await;
        Watched {
            server,
            set,
            _watcher: watcher,
            feed,
        }
    }

    async fn start() -> Watched {
        Self::start_with(Options::default()).await
    }

    /// The next entry on the feed must be this one; returns it.
    async fn expect_on_feed(&mut self, kind: RevocationKind, value: &str) -> pb::RevocationEntry {
        let ev = self.feed.revocation().await;
        let e = ev.entry.unwrap();
        assert_eq!(
            (RevocationKind::from_i32(e.kind), e.value.as_str()),
            (Some(kind), value),
            "the feed carries exactly the producer's entry: {e:?}"
        );
        e
    }

    /// Waits until the watcher's set revokes the token for `kind`.
    async fn expect_revoked(&self, facts: &TokenFacts<'_>, kind: RevocationKind) {
        eventually(FEED, "the watcher's set revokes the token", || {
            self.set.check(facts) == Some(kind)
        })
        .await;
    }
}

/// A client that may introspect every token.
async fn introspector(server: &TestServer) -> (String, String) {
    server
        .create_client(pb_admin::Client {
            client_id: "introspector".into(),
            client_type: pb_admin::ClientType::Confidential as i32,
            grant_types: vec!["client_credentials".into()],
            scope: "none".into(),
            audience: vec!["nothing".into()],
            may_introspect: true,
            ..Default::default()
        })
        .await
}

// --- Producers reach the feed -------------------------------------------------------------

#[tokio::test]
async fn an_access_token_revoked_by_its_client_reaches_the_feed_as_its_token_id() {
    let mut w = Watched::start().await;
    let (id, secret) = w.server.service_client("app", "read", &["orders"]).await;
    let token = w.server.cc_token(&id, &secret).await;
    let t = verifier_for(&w.server, "orders")
        .await
        .verify(&token)
        .unwrap();
    assert_eq!(w.set.check(&TokenFacts::of(&t)), None);

    w.server.revoke_token(&token, &id, &secret).await;
    let e = w
        .expect_on_feed(RevocationKind::TokenId, &t.claims.jti)
        .await;
    assert_eq!(
        e.expires_at,
        t.claims.exp + w.server.engine.config().leeway,
        "kept until the token has expired, leeway included"
    );
    w.expect_revoked(&TokenFacts::of(&t), RevocationKind::TokenId)
        .await;
    assert!(!w.server.introspect(&token, &id, &secret).await.active);
}

/// A user signed in through the gateway (password grant): the gateway's credentials, the
/// response, and its access token verified.
async fn signed_in(
    server: &TestServer,
) -> (
    String,
    String,
    writ_proto::authz::TokenResponse,
    VerifiedToken,
) {
    let (id, secret) = gateway_and_user(server).await;
    let r = server
        .issue(password_request(&id, &secret, "correct horse battery"))
        .await;
    let t = verifier_for(server, "orders")
        .await
        .verify(&r.access_token)
        .unwrap();
    (id, secret, r, t)
}

#[tokio::test]
async fn a_refresh_token_revoked_by_its_client_reaches_the_feed_as_its_grant() {
    let mut w = Watched::start().await;
    let (id, secret, r, t) = signed_in(&w.server).await;
    let gid = t.claims.gid.clone().unwrap();

    w.server.revoke_token(&r.refresh_token, &id, &secret).await;
    w.expect_on_feed(RevocationKind::GrantId, &gid).await;
    w.expect_revoked(&TokenFacts::of(&t), RevocationKind::GrantId)
        .await;
    w.server
        .assert_inactive(&[&r.access_token, &r.refresh_token], &id, &secret)
        .await;
}

#[tokio::test]
async fn refresh_token_reuse_reaches_the_feed_as_the_grant() {
    // No rotation grace period: the replay below is reuse however soon it comes.
    let mut w = Watched::start_with(Options::without_refresh_grace()).await;
    let (id, secret) = gateway_and_user(&w.server).await;
    let first = w
        .server
        .issue(password_request(&id, &secret, "correct horse battery"))
        .await;
    let second = w
        .server
        .issue(refresh_request(&id, &secret, &first.refresh_token))
        .await;
    let t = verifier_for(&w.server, "orders")
        .await
        .verify(&second.access_token)
        .unwrap();
    assert_eq!(w.set.check(&TokenFacts::of(&t)), None);

    assert_refused(
        w.server
            .token(refresh_request(&id, &secret, &first.refresh_token))
            .await,
        Code::PermissionDenied,
        "invalid_grant",
    );
    w.expect_on_feed(RevocationKind::GrantId, t.claims.gid.as_deref().unwrap())
        .await;
    w.expect_revoked(&TokenFacts::of(&t), RevocationKind::GrantId)
        .await;
    w.server
        .assert_inactive(&[&second.access_token, &second.refresh_token], &id, &secret)
        .await;
}

#[tokio::test]
async fn an_admin_revocation_of_a_client_reaches_the_feed_and_cuts_its_earlier_tokens() {
    let clock = ManualClock::starting_now();
    let mut w = Watched::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let (id, secret) = w.server.service_client("app", "read", &["orders"]).await;
    let before = w.server.cc_token(&id, &secret).await;
    let verifier = verifier_for(&w.server, "orders").await;
    let t = verifier.verify(&before).unwrap();

    let cut = clock.now();
    admin_revoke(
        &w.server,
        vec![entry(RevocationKind::Client, "app", cut + 3600)],
    )
    .await;
    let e = w.expect_on_feed(RevocationKind::Client, "app").await;
    assert_eq!(e.not_before, cut, "a zero not_before means now");
    w.expect_revoked(&TokenFacts::of(&t), RevocationKind::Client)
        .await;
    assert!(!w.server.introspect(&before, &id, &secret).await.active);

    // A token issued after the cut-off is not revoked, here or there.
    clock.advance(1);
    let after = w.server.cc_token(&id, &secret).await;
    let t2 = verifier.verify(&after).unwrap();
    assert_eq!(w.set.check(&TokenFacts::of(&t2)), None);
    assert!(w.server.introspect(&after, &id, &secret).await.active);
}

#[tokio::test]
async fn an_admin_revocation_of_a_subject_reaches_the_feed_and_cuts_its_tokens() {
    let mut w = Watched::start().await;
    let (id, secret, r, t) = signed_in(&w.server).await;
    let sub = t.claims.sub.clone();
    admin_revoke(
        &w.server,
        vec![entry(RevocationKind::Subject, &sub, now() + 3600)],
    )
    .await;
    let e = w.expect_on_feed(RevocationKind::Subject, &sub).await;
    assert!(e.not_before >= t.claims.iat);
    w.expect_revoked(&TokenFacts::of(&t), RevocationKind::Subject)
        .await;
    assert!(
        !w.server
            .introspect(&r.access_token, &id, &secret)
            .await
            .active
    );
}

#[tokio::test]
async fn an_admin_revocation_of_the_active_key_rotates_it_and_reaches_the_feed() {
    let mut w = Watched::start().await;
    let (id, secret) = w.server.service_client("app", "read", &["orders"]).await;
    let token = w.server.cc_token(&id, &secret).await;
    let t: VerifiedToken = verifier_for(&w.server, "orders")
        .await
        .verify(&token)
        .unwrap();
    let kid = t.key_id.clone();
    let publish_before = w.server.publish_token().await;
    // Something published before: the authorization server's publisher holds a token signed by
    // the key about to be revoked.
    let other = w.server.cc_token(&id, &secret).await;
    let other_jti = verifier_for(&w.server, "orders")
        .await
        .verify(&other)
        .unwrap()
        .claims
        .jti;
    w.server.revoke_token(&other, &id, &secret).await;
    w.expect_on_feed(RevocationKind::TokenId, &other_jti).await;

    admin_revoke(
        &w.server,
        vec![entry(RevocationKind::KeyId, &kid, now() + 3600)],
    )
    .await;
    w.expect_on_feed(RevocationKind::KeyId, &kid).await;
    w.expect_revoked(&TokenFacts::of(&t), RevocationKind::KeyId)
        .await;
    assert!(!w.server.introspect(&token, &id, &secret).await.active);

    // The key is gone from the JWKS (gRPC and HTTP) and a new one signs.
    let jwks = w.server.jwks().await;
    assert!(jwks.keys.iter().all(|k| k.kid != kid), "{jwks:?}");
    assert_eq!(jwks.keys.len(), 1);
    let http = w.server.http().get("/.well-known/jwks.json").await.json();
    assert!(
        http["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kid"] != kid.as_str()),
        "{http}"
    );
    let fresh = w.server.cc_token(&id, &secret).await;
    let t2 = verifier_for(&w.server, "orders")
        .await
        .verify(&fresh)
        .unwrap();
    assert_ne!(t2.key_id, kid);
    assert_eq!(w.set.check(&TokenFacts::of(&t2)), None);
    assert!(w.server.introspect(&fresh, &id, &secret).await.active);

    // The revocation service, in the same process, no longer trusts the revoked key either.
    let mut client = w.server.revocation(&publish_before).await;
    assert_guard_refused(
        client.get_status(GetStatusRequest {}).await,
        Code::Unauthenticated,
        "invalid_token",
    );
}

#[tokio::test]
async fn deleting_or_disabling_a_client_reaches_the_feed_as_a_client_cut_off() {
    let mut w = Watched::start().await;
    let (iid, isecret) = introspector(&w.server).await;
    for (name, delete) in [("to-disable", false), ("to-delete", true)] {
        let (id, secret) = w.server.service_client(name, "read", &["orders"]).await;
        let token = w.server.cc_token(&id, &secret).await;
        let t = verifier_for(&w.server, "orders")
            .await
            .verify(&token)
            .unwrap();
        assert!(w.server.introspect(&token, &iid, &isecret).await.active);
        if delete {
            w.server
                .admin()
                .await
                .delete_client(pb_admin::DeleteClientRequest {
                    client_id: id.clone(),
                })
                .await
                .unwrap();
        } else {
            w.server.set_disabled(&id, true).await;
        }
        let e = w.expect_on_feed(RevocationKind::Client, name).await;
        assert!(e.not_before >= t.claims.iat, "{e:?}");
        w.expect_revoked(&TokenFacts::of(&t), RevocationKind::Client)
            .await;
        assert!(
            !w.server.introspect(&token, &iid, &isecret).await.active,
            "{name}"
        );
    }
}

// --- Bad input changes nothing ---------------------------------------------------------------

#[tokio::test]
async fn bad_revoke_requests_are_refused_clearly_and_write_nothing() {
    let server = TestServer::start().await;
    let publish = server.publish_token().await;
    let mut client = server.revocation(&publish).await;
    revoke(
        &mut client,
        vec![entry(RevocationKind::TokenId, "first", now() + 600)],
    )
    .await;
    let before = status(&mut client).await;
    let head = server.revocation_log.head();
    assert_eq!(head, 1);

    let good = entry(RevocationKind::TokenId, "good", now() + 600);
    let mut unknown = good.clone();
    unknown.kind = 99;
    let mut unspecified = good.clone();
    unspecified.kind = 0;
    let mut empty = good.clone();
    empty.value = String::new();
    let mut long = good.clone();
    long.value = "x".repeat(writ_token::MAX_REVOCATION_VALUE_LEN + 1);
    let mut control = good.clone();
    control.value = "a\nb".into();
    let mut past = good.clone();
    past.expires_at = now() - 1;
    let mut far = good.clone();
    far.expires_at = now() + 400 * 24 * 3600;
    let mut not_hex = good.clone();
    not_hex.kind = RevocationKind::BiscuitRevocationId as i32;
    not_hex.value = "XYZ".into();
    let cases: Vec<(&str, Vec<pb::RevocationEntry>, &str)> = vec![
        ("unknown kind", vec![unknown], "invalid_entry"),
        ("unspecified kind", vec![unspecified], "invalid_entry"),
        ("empty value", vec![empty.clone()], "invalid_entry"),
        ("oversized value", vec![long], "invalid_entry"),
        ("control characters", vec![control], "invalid_entry"),
        ("expiry in the past", vec![past], "invalid_entry"),
        ("expiry beyond a year", vec![far], "invalid_entry"),
        ("Biscuit id not hex", vec![not_hex], "invalid_entry"),
        ("no entries", vec![], "invalid_request"),
        (
            "more than 1000 entries",
            (0..1001)
                .map(|i| entry(RevocationKind::TokenId, &format!("j{i}"), now() + 600))
                .collect(),
            "invalid_request",
        ),
        (
            "one bad entry among good ones",
            vec![good.clone(), empty],
            "invalid_entry",
        ),
    ];
    for (what, entries, why) in cases {
        let r = client.revoke(RevokeRequest { entries }).await;
        let s = assert_revocation_refused(r, Code::InvalidArgument, why);
        assert!(!s.message().is_empty(), "{what}: a clear message");
        assert_eq!(status(&mut client).await, before, "{what}: nothing written");
        assert_eq!(server.revocation_log.head(), head, "{what}");
    }

    // Callers: no token, garbage, another audience, the watch scope only.
    let (other_id, other_secret) = server
        .service_client(
            "other",
            writ_vocabulary::names::REVOCATION_PUBLISH_SCOPE,
            &["orders"],
        )
        .await;
    let other_audience = server.cc_token(&other_id, &other_secret).await;
    let watch_only = server.watch_token().await;
    let request = || RevokeRequest {
        entries: vec![good.clone()],
    };
    let mut anonymous =
        writ_proto::revocation::revocation_service_client::RevocationServiceClient::new(
            server.revocation_channel().await,
        );
    assert_guard_refused(
        anonymous.revoke(request()).await,
        Code::Unauthenticated,
        "invalid_request",
    );
    for (what, token, code, why) in [
        (
            "garbage",
            "not-a-token",
            Code::Unauthenticated,
            "invalid_token",
        ),
        (
            "another audience",
            other_audience.as_str(),
            Code::Unauthenticated,
            "invalid_token",
        ),
        (
            "the watch scope",
            watch_only.as_str(),
            Code::PermissionDenied,
            "insufficient_scope",
        ),
    ] {
        let mut c = server.revocation(token).await;
        let s = assert_guard_refused(c.revoke(request()).await, code, why);
        assert!(!s.message().is_empty(), "{what}");
        assert_eq!(status(&mut client).await, before, "{what}: nothing written");
    }
    assert_eq!(server.revocation_log.head(), head);
    assert_eq!(
        revoke(&mut client, vec![good]).await,
        2,
        "no sequence was used"
    );
}

#[tokio::test]
async fn watch_refuses_a_cursor_from_the_future_and_needs_a_token() {
    let server = TestServer::start().await;
    let mut publisher = server.revocation(&server.publish_token().await).await;
    revoke(
        &mut publisher,
        vec![entry(RevocationKind::TokenId, "j", now() + 600)],
    )
    .await;
    let mut watcher = server.revocation(&server.watch_token().await).await;
    assert_revocation_refused(
        watcher.watch(WatchRequest { from_sequence: 2 }).await,
        Code::OutOfRange,
        "cursor_ahead",
    );
    // At the head is fine.
    Feed::open(&mut watcher, 1).await;

    let mut anonymous =
        writ_proto::revocation::revocation_service_client::RevocationServiceClient::new(
            server.revocation_channel().await,
        );
    assert_guard_refused(
        anonymous.watch(WatchRequest { from_sequence: 0 }).await,
        Code::Unauthenticated,
        "invalid_request",
    );
    assert_guard_refused(
        anonymous.get_status(GetStatusRequest {}).await,
        Code::Unauthenticated,
        "invalid_request",
    );
    let mut garbage = server.revocation("garbage").await;
    assert_guard_refused(
        garbage.watch(WatchRequest { from_sequence: 0 }).await,
        Code::Unauthenticated,
        "invalid_token",
    );
    // A token for the authorization server's other audiences is not one for this service.
    let (id, secret) = server
        .service_client(
            "elsewhere",
            writ_vocabulary::names::REVOCATION_WATCH_SCOPE,
            &["orders"],
        )
        .await;
    let mut elsewhere = server
        .revocation(&server.cc_token(&id, &secret).await)
        .await;
    assert_guard_refused(
        elsewhere.get_status(GetStatusRequest {}).await,
        Code::Unauthenticated,
        "invalid_token",
    );
}

#[tokio::test]
async fn the_service_refuses_callers_whose_tokens_its_own_log_revokes() {
    let server = TestServer::start().await;
    let publish = server.publish_token().await;
    let mut publisher = server.revocation(&publish).await;
    let watch = server.watch_token().await;
    let mut watcher = server.revocation(&watch).await;
    status(&mut watcher).await;
    let claims = writ_token::decode_unverified(&watch)
        .unwrap()
        .claims
        .unwrap();
    let jti = claims["jti"].as_str().unwrap();
    revoke(
        &mut publisher,
        vec![entry(RevocationKind::TokenId, jti, now() + 600)],
    )
    .await;
    // At once: the service checks its own index, it does not wait for a feed.
    assert_guard_refused(
        watcher.get_status(GetStatusRequest {}).await,
        Code::Unauthenticated,
        "invalid_token",
    );
    assert_guard_refused(
        watcher.watch(WatchRequest { from_sequence: 0 }).await,
        Code::Unauthenticated,
        "invalid_token",
    );
    // A producer whose client is cut off cannot revoke (or write anything) after that.
    let claims = writ_token::decode_unverified(&publish)
        .unwrap()
        .claims
        .unwrap();
    let mut cut = entry(
        RevocationKind::Client,
        claims["client_id"].as_str().unwrap(),
        now() + 600,
    );
    cut.not_before = claims["iat"].as_i64().unwrap();
    let head = revoke(&mut publisher, vec![cut]).await;
    assert_guard_refused(
        publisher
            .revoke(RevokeRequest {
                entries: vec![entry(RevocationKind::TokenId, "late", now() + 600)],
            })
            .await,
        Code::Unauthenticated,
        "invalid_token",
    );
    let mut fresh = server.revocation(&server.watch_token().await).await;
    assert_eq!(
        status(&mut fresh).await.head_sequence,
        head,
        "nothing written"
    );
}

// --- Stream guarantees -------------------------------------------------------------------------

#[tokio::test]
async fn revoking_the_same_entry_twice_returns_its_sequence_and_appends_nothing() {
    let server = TestServer::start().await;
    let mut client = server.revocation(&server.publish_token().await).await;
    let exp = now() + 600;
    let a = entry(RevocationKind::TokenId, "j1", exp);
    let b = entry(RevocationKind::GrantId, "g1", exp);
    assert_eq!(revoke(&mut client, vec![a.clone(), b.clone()]).await, 2);
    let before = status(&mut client).await;
    assert_eq!(revoke(&mut client, vec![a.clone()]).await, 1);
    assert_eq!(revoke(&mut client, vec![b.clone()]).await, 2);
    assert_eq!(revoke(&mut client, vec![b.clone(), a.clone()]).await, 2);
    // An earlier expiry adds nothing either; the same entry twice in one batch counts once.
    let mut shorter = a.clone();
    shorter.expires_at = exp - 60;
    assert_eq!(revoke(&mut client, vec![shorter]).await, 1);
    assert_eq!(status(&mut client).await, before);
    let c = entry(RevocationKind::TokenId, "j2", exp);
    assert_eq!(revoke(&mut client, vec![c.clone(), c.clone()]).await, 3);

    let mut watcher = server.revocation(&server.watch_token().await).await;
    let mut feed = Feed::open(&mut watcher, 0).await;
    let seqs: Vec<(u64, String)> = [
        feed.revocation().await,
        feed.revocation().await,
        feed.revocation().await,
    ]
    .into_iter()
    .map(|ev| (ev.sequence, ev.entry.unwrap().value))
    .collect();
    assert_eq!(seqs, [(1, "j1".into()), (2, "g1".into()), (3, "j2".into())]);
    assert!(
        matches!(feed.next().await, Event::Checkpoint(c) if c.sequence == 3),
        "nothing more"
    );
}

/// Entries of every kind, for the snapshot and restart tests.
fn assorted(prefix: &str, n: usize, exp: i64) -> Vec<pb::RevocationEntry> {
    (0..n)
        .map(|i| {
            let kind = RevocationKind::ALL[i % RevocationKind::ALL.len()];
            let value = match kind {
                RevocationKind::BiscuitRevocationId => format!("{:08x}{i:04}", prefix.len()),
                _ => format!("{prefix}-{i}"),
            };
            let mut e = entry(kind, &value, exp);
            if kind.uses_not_before() {
                e.not_before = exp - 7200 + i as i64;
            }
            e
        })
        .collect()
}

#[tokio::test]
async fn a_cursor_older_than_the_log_retains_gets_a_snapshot_then_deltas() {
    let server = TestServer::start_with(Options {
        log: writ_revocation_log::LogConfig {
            max_retained: 10,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let live = Arc::new(RevocationSet::new());
    let _watcher = server.watcher(live.clone()).await;
    let mut publisher = server.revocation(&server.publish_token().await).await;
    let exp = now() + 3600;
    let mut expected = assorted("snap", 30, exp);
    for chunk in expected.chunks(10) {
        revoke(&mut publisher, chunk.to_vec()).await;
    }
    // A later cut-off for a subject: a new event, merged into the live entry.
    let mut later = expected[2].clone();
    assert_eq!(later.kind, RevocationKind::Subject as i32);
    later.not_before += 100;
    assert_eq!(revoke(&mut publisher, vec![later.clone()]).await, 31);
    expected[2] = later;
    eventually(FEED, "the live watcher is at the head", || {
        live.cursor() == 31
    })
    .await;

    let (_, truncated) = server.revocation_log.prune(now()).await.unwrap();
    assert_eq!(truncated, 21, "only the last 10 events are retained");
    let mut watcher = server.revocation(&server.watch_token().await).await;
    let s = status(&mut watcher).await;
    assert_eq!(
        (s.head_sequence, s.oldest_sequence, s.live_entries),
        (31, 22, 30)
    );

    // Within the retained log: plain deltas.
    let mut feed = Feed::open(&mut watcher, 21).await;
    assert_eq!(feed.revocation().await.sequence, 22);

    let mut streams = Vec::new();
    for cursor in [0, 5, 20] {
        let mut feed = Feed::open(&mut watcher, cursor).await;
        let set = RevocationSet::new();
        let Event::SnapshotBegin(begin) = feed.next().await else {
            panic!("a snapshot first (cursor {cursor})")
        };
        assert_eq!((begin.sequence, begin.entry_count), (31, 30));
        set.apply(&msg(Event::SnapshotBegin(begin))).unwrap();
        let mut n = 0;
        loop {
            match feed.next().await {
                Event::Revocation(ev) => {
                    assert!(ev.sequence <= 31);
                    set.apply(&msg(Event::Revocation(ev))).unwrap();
                    n += 1;
                }
                Event::SnapshotEnd(end) => {
                    assert_eq!(end.sequence, 31);
                    set.apply(&msg(Event::SnapshotEnd(end))).unwrap();
                    break;
                }
                other => panic!("inside a snapshot: {other:?}"),
            }
        }
        assert_eq!(n, 30, "every live entry, once, merged");
        assert_eq!(set.cursor(), 31);
        for e in &expected {
            assert!(
                holds(&set, e, &server.issuer),
                "snapshot from {cursor}: {e:?}"
            );
        }
        assert_eq!(set.len(), expected.len());
        streams.push((feed, set));
    }

    // Then deltas, on every one of those streams.
    let more = vec![
        entry(RevocationKind::TokenId, "after-1", exp),
        entry(RevocationKind::GrantId, "after-2", exp),
    ];
    assert_eq!(revoke(&mut publisher, more.clone()).await, 33);
    expected.extend(more);
    for (feed, set) in &mut streams {
        for seq in [32, 33] {
            let ev = feed.revocation().await;
            assert_eq!(ev.sequence, seq);
            set.apply(&msg(Event::Revocation(ev))).unwrap();
        }
    }
    eventually(FEED, "the live watcher is at the head", || {
        live.cursor() == 33
    })
    .await;
    // Fed from a snapshot or live from the start: the same set.
    for set in streams.iter().map(|(_, s)| s).chain([&*live]) {
        assert_eq!(set.len(), expected.len());
        for e in &expected {
            assert!(holds(set, e, &server.issuer), "{e:?}");
        }
    }
}

fn msg(e: Event) -> pb::WatchResponse {
    pb::WatchResponse { event: Some(e) }
}

/// A channel whose HTTP/2 stream window is small, so a stream it does not read backs up to
/// the server after a few kilobytes instead of megabytes.
async fn narrow_channel(server: &TestServer) -> tonic::transport::Channel {
    writ_server::endpoint(&server.revocation_url, server.ca_pem.as_deref())
        .unwrap()
        .initial_stream_window_size(Some(8 * 1024))
        .initial_connection_window_size(Some(64 * 1024))
        .connect()
        .await
        .unwrap()
}

/// A value long enough that a few hundred events fill the transport's buffers.
fn long_value(i: usize) -> String {
    format!("slow-{i:05}-{}", "x".repeat(180))
}

async fn wait_for_subscribers(client: &mut RevocationClient, n: u32) {
    let deadline = tokio::time::Instant::now() + FEED;
    loop {
        if status(client).await.subscribers == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} subscribers within {FEED:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_off_without_stalling_others_and_resumes_to_the_full_set() {
    let mut revocation = writ_tests::revocation_config();
    revocation.subscriber.buffer = 16;
    revocation.subscriber.slow_timeout = Duration::from_secs(2);
    let server = TestServer::start_with(Options {
        revocation,
        ..Options::default()
    })
    .await;
    let watch = server.watch_token().await;
    let mut publisher = server.revocation(&server.publish_token().await).await;
    let reader = Arc::new(RevocationSet::new());
    let _reader = server.watcher(reader.clone()).await;
    let mut slow =
        RevocationServiceClient::with_interceptor(narrow_channel(&server).await, bearer(&watch));
    // Opened, never read until it has been cut off.
    let mut stalled = slow
        .watch(WatchRequest { from_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut observer = server.revocation(&watch).await;
    wait_for_subscribers(&mut observer, 2).await;

    let exp = now() + 3600;
    let mut expected = Vec::new();
    for batch in 0..30 {
        let entries: Vec<_> = (0..100)
            .map(|i| entry(RevocationKind::TokenId, &long_value(batch * 100 + i), exp))
            .collect();
        expected.extend(entries.clone());
        let seq = revoke(&mut publisher, entries).await;
        // The reading subscriber keeps up while the other one is stuck.
        let acked = Instant::now();
        eventually(Duration::from_secs(1), "the reader keeps up", || {
            reader.cursor() >= seq
        })
        .await;
        assert!(acked.elapsed() < Duration::from_secs(1));
    }
    let head = 3000;
    assert_eq!(reader.cursor(), head);

    // The unread subscriber is cut off server-side (and no longer counted).
    wait_for_subscribers(&mut observer, 1).await;
    let set = RevocationSet::new();
    let mut last = 0;
    let cut = loop {
        match tokio::time::timeout(FEED, stalled.message()).await.unwrap() {
            Ok(Some(m)) => {
                if let Some(Event::Revocation(ev)) = &m.event {
                    assert_eq!(ev.sequence, last + 1, "in order, without gaps");
                    last = ev.sequence;
                }
                set.apply(&m).unwrap();
            }
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(cut.code(), Code::ResourceExhausted, "{cut:?}");
    assert_eq!(revocation_reason(&cut), "subscriber_too_slow");
    assert!(last < head, "cut off before the end ({last})");
    assert_eq!(set.cursor(), last);

    // It resumes from its cursor and ends with the complete set, nothing applied twice.
    let set = Arc::new(set);
    let _resumed = server.watcher(set.clone()).await;
    eventually(FEED, "the cut-off subscriber catches up", || {
        set.cursor() == head
    })
    .await;
    assert_eq!(set.applied(), head);
    assert_eq!(set.len(), expected.len());
    assert_eq!(reader.len(), expected.len());
    for e in &expected {
        assert!(
            holds(&set, e, &server.issuer) && holds(&reader, e, &server.issuer),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn idle_streams_get_checkpoints_at_the_interval_never_ahead_of_delivered_events() {
    let mut revocation = writ_tests::revocation_config();
    let interval = Duration::from_millis(200);
    revocation.subscriber.checkpoint_interval = interval;
    let server = TestServer::start_with(Options {
        revocation,
        ..Options::default()
    })
    .await;
    let mut publisher = server.revocation(&server.publish_token().await).await;
    let mut watcher = server.revocation(&server.watch_token().await).await;
    let exp = now() + 600;

    // An empty log: checkpoints at 0.
    let mut feed = Feed::open(&mut watcher, 0).await;
    assert!(matches!(feed.next().await, Event::Checkpoint(c) if c.sequence == 0));

    revoke(
        &mut publisher,
        (0..3)
            .map(|i| entry(RevocationKind::TokenId, &format!("j{i}"), exp))
            .collect(),
    )
    .await;
    let set = RevocationSet::new();
    let mut delivered = 0;
    let mut checkpoints = Vec::new();
    let mut published = 3;
    // Read for a while; publish one more entry midway.
    let start = Instant::now();
    while checkpoints.len() < 12 {
        let e = feed.next().await;
        set.apply(&msg(e.clone()))
            .expect("the set accepts the stream as it comes");
        match e {
            Event::Revocation(ev) => {
                assert_eq!(ev.sequence, delivered + 1);
                delivered = ev.sequence;
            }
            Event::Checkpoint(c) => {
                assert_eq!(
                    c.sequence, delivered,
                    "a checkpoint names the last delivered event, never one ahead"
                );
                assert!(c.server_time.unwrap().seconds >= now() - 5);
                checkpoints.push((Instant::now(), c.sequence));
                if checkpoints.len() == 6 {
                    published = revoke(
                        &mut publisher,
                        vec![entry(RevocationKind::TokenId, "later", exp)],
                    )
                    .await;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((published, delivered), (4, 4));
    assert!(set.staleness().unwrap() < Duration::from_secs(1));
    // About the configured interval apart (generous bounds for a loaded CI machine).
    let gaps: Vec<Duration> = checkpoints.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let total = checkpoints.last().unwrap().0 - checkpoints[0].0;
    let mean = total / gaps.len() as u32;
    assert!(
        mean >= interval * 3 / 4 && mean <= interval * 3,
        "mean gap {mean:?}, gaps {gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| *g >= interval / 2),
        "never faster than the interval: {gaps:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn expired_entries_are_pruned_from_the_log_and_the_set_only_after_expiry_and_margin() {
    let clock = ManualClock::starting_now();
    let revocation = writ_revocation::Config {
        producers: writ_tests::revocation_config().producers,
        prune_interval: Duration::from_millis(50),
        // Pruning is under test: entries keep the expiry they were given.
        min_entry_lifetime: Duration::ZERO,
        ..Default::default()
    };
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        revocation,
        ..Options::default()
    })
    .await;
    let t0 = clock.now();
    let set = Arc::new(RevocationSet::new());
    let _watcher = server.watcher(set.clone()).await;
    let mut publisher = server.revocation(&server.publish_token().await).await;
    let mut watcher = server.revocation(&server.watch_token().await).await;
    let short: Vec<_> = (0..3)
        .map(|i| entry(RevocationKind::TokenId, &format!("short-{i}"), t0 + 100))
        .collect();
    let long: Vec<_> = (0..2)
        .map(|i| entry(RevocationKind::GrantId, &format!("long-{i}"), t0 + 3000))
        .collect();
    revoke(&mut publisher, short.clone()).await;
    assert_eq!(revoke(&mut publisher, long.clone()).await, 5);
    eventually(FEED, "the watcher has everything", || set.cursor() == 5).await;
    let s = status(&mut watcher).await;
    assert_eq!((s.live_entries, s.oldest_sequence), (5, 1));

    // At expiry plus the margin, not yet: something could still be revoked by it (skew).
    let margin = writ_revocation_log::LogConfig::default().prune_margin;
    clock.set(t0 + 100 + margin);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = status(&mut watcher).await;
    assert_eq!((s.live_entries, s.oldest_sequence), (5, 1));
    assert_eq!(set.prune(clock.now(), margin), 0);

    // Once their expiry bucket has passed too (the live index's expiry order is kept by the
    // minute), the service forgets them: from the live index and the log's front.
    clock.advance(writ_store::EXPIRY_BUCKET_SECONDS);
    let deadline = tokio::time::Instant::now() + FEED;
    let s = loop {
        let s = status(&mut watcher).await;
        if s.live_entries < 5 {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pruned within {FEED:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (s.head_sequence, s.live_entries, s.oldest_sequence),
        (5, 2, 4)
    );
    assert_eq!(set.prune(clock.now(), margin), 3);
    assert_eq!(set.len(), 2);
    for e in &short {
        assert!(!holds(&set, e, &server.issuer), "{e:?}");
    }
    for e in &long {
        assert!(holds(&set, e, &server.issuer), "{e:?}");
    }

    // A subscriber from before the pruned range gets the survivors as a snapshot.
    let mut feed = Feed::open(&mut watcher, 0).await;
    let fresh = RevocationSet::new();
    loop {
        let e = feed.next().await;
        let end = matches!(e, Event::SnapshotEnd(_));
        if let Event::SnapshotBegin(b) = &e {
            assert_eq!((b.sequence, b.entry_count), (5, 2));
        }
        fresh.apply(&msg(e)).unwrap();
        if end {
            break;
        }
    }
    assert_eq!(fresh.len(), 2);
    for e in &long {
        assert!(holds(&fresh, e, &server.issuer), "{e:?}");
    }
}

#[tokio::test]
async fn an_acknowledged_revocation_survives_a_restart_and_watchers_resume_without_gaps() {
    let server = TestServer::start().await;
    // The producer's namespace is the issuer when it published (a restart binds new ports).
    let issuer = server.issuer.clone();
    let set = Arc::new(RevocationSet::new());
    let watcher = server.watcher(set.clone()).await;
    let mut publisher = server.revocation(&server.publish_token().await).await;
    let exp = now() + 3600;
    let first = assorted("before", 5, exp);
    assert_eq!(revoke(&mut publisher, first.clone()).await, 5);
    eventually(FEED, "the watcher has the first batch", || {
        set.cursor() == 5
    })
    .await;
    // Acknowledged while the watcher is away.
    watcher.stop();
    let second = assorted("away", 3, exp);
    assert_eq!(revoke(&mut publisher, second.clone()).await, 8);
    // A subscriber still connected must not hold the restart up.
    let mut still = server.revocation(&server.watch_token().await).await;
    let mut open = Feed::open(&mut still, 0).await;
    assert_eq!(open.revocation().await.sequence, 1);

    let server = server.restart().await;
    let mut observer = server.revocation(&server.watch_token().await).await;
    let s = status(&mut observer).await;
    assert_eq!((s.head_sequence, s.live_entries), (8, 8));
    // The watcher resumes from its cursor (on the new address, with a new token).
    let _watcher = server.watcher(set.clone()).await;
    eventually(FEED, "the watcher resumes", || set.cursor() == 8).await;
    let mut publisher = server.revocation(&server.publish_token().await).await;
    let third = assorted("after", 2, exp);
    assert_eq!(
        revoke(&mut publisher, third.clone()).await,
        10,
        "sequences continue"
    );
    eventually(FEED, "the watcher follows", || set.cursor() == 10).await;
    assert_eq!(set.applied(), 10, "every event once: no gap, no duplicate");
    let all: Vec<_> = first.into_iter().chain(second).chain(third).collect();
    assert_eq!(set.len(), all.len());
    for (i, e) in all.iter().enumerate() {
        let published_by = if i < 8 { &issuer } else { &server.issuer };
        assert!(holds(&set, e, published_by), "{e:?}");
    }
    // The log itself, in order.
    let mut feed = Feed::open(&mut observer, 0).await;
    for (seq, e) in (1..).zip(&all) {
        let ev = feed.revocation().await;
        assert_eq!(ev.sequence, seq);
        assert_eq!(ev.entry.unwrap().value, e.value);
    }
}

#[tokio::test]
async fn sequences_continue_after_a_restart_even_when_everything_was_pruned() {
    let clock = ManualClock::starting_now();
    let mut revocation = writ_tests::revocation_config();
    // Pruning is under test: entries keep the expiry they were given.
    revocation.min_entry_lifetime = Duration::ZERO;
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        revocation,
        ..Options::default()
    })
    .await;
    let t0 = clock.now();
    let set = Arc::new(RevocationSet::new());
    let watcher = server.watcher(set.clone()).await;
    let mut publisher = server.revocation(&server.publish_token().await).await;
    let short: Vec<_> = (0..3)
        .map(|i| entry(RevocationKind::TokenId, &format!("short-{i}"), t0 + 100))
        .collect();
    assert_eq!(revoke(&mut publisher, short).await, 3);
    eventually(FEED, "the watcher has everything", || set.cursor() == 3).await;
    watcher.stop();
    clock.advance(500);
    assert_eq!(
        server.revocation_log.prune(clock.now()).await.unwrap(),
        (3, 3)
    );
    assert_eq!(set.prune(clock.now(), 60), 3);

    let server = server.restart().await;
    let mut observer = server.revocation(&server.watch_token().await).await;
    let s = status(&mut observer).await;
    assert_eq!(
        (s.head_sequence, s.live_entries, s.oldest_sequence),
        (3, 0, 4),
        "the head is not forgotten with the events"
    );
    let _watcher = server.watcher(set.clone()).await;
    let mut publisher = server.revocation(&server.publish_token().await).await;
    let next = entry(RevocationKind::TokenId, "after-restart", clock.now() + 100);
    assert_eq!(
        revoke(&mut publisher, vec![next.clone()]).await,
        4,
        "a sequence is never reused"
    );
    eventually(FEED, "the watcher gets the new entry", || set.cursor() == 4).await;
    assert!(holds(&set, &next, &server.issuer));
}

#[tokio::test]
async fn a_watcher_pruning_often_keeps_its_stream_and_stays_fresh() {
    let mut revocation = writ_tests::revocation_config();
    revocation.subscriber.checkpoint_interval = Duration::from_millis(300);
    let server = TestServer::start_with(Options {
        revocation,
        ..Options::default()
    })
    .await;
    let mut publisher = server.revocation(&server.publish_token().await).await;
    let e = entry(RevocationKind::TokenId, "j", now() + 600);
    revoke(&mut publisher, vec![e.clone()]).await;
    let set = Arc::new(RevocationSet::new());
    let channel = writ_server::endpoint(&server.revocation_url, server.ca_pem.as_deref())
        .unwrap()
        .connect_lazy();
    let _watcher = writ_revocation_client::Watcher::spawn(
        channel,
        Arc::new(bearer(&server.watch_token().await)),
        set.clone(),
        writ_revocation_client::WatchConfig {
            // Pruning more often than checkpoints come must not cut the stream each time.
            prune_every: Duration::from_millis(20),
            ..Default::default()
        },
    );
    eventually(FEED, "the watcher has the entry", || set.cursor() == 1).await;
    eventually(
        Duration::from_secs(3),
        "an idle feed's checkpoints reach the set",
        || set.staleness().is_some(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let staleness = set.staleness().unwrap();
    assert!(
        staleness < Duration::from_millis(600),
        "checkpoints keep arriving: {staleness:?}"
    );
    assert!(holds(&set, &e, &server.issuer));
}

/// A watch-token source whose token is refused until the watcher says so.
struct RefusedUntilTold {
    good: String,
    told: std::sync::atomic::AtomicBool,
}

impl writ_client::BearerSource for RefusedUntilTold {
    fn bearer(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Arc<str>, tonic::Status>> + Send + '_>,
    > {
        let token = if self.told.load(std::sync::atomic::Ordering::Acquire) {
            self.good.as_str()
        } else {
            "a-token-the-service-refuses"
        };
        let token = Arc::from(token);
        Box::pin(async move { Ok(token) })
    }

    fn refused(&self) {
        self.told.store(true, std::sync::atomic::Ordering::Release);
    }
}

#[tokio::test]
async fn a_watcher_whose_token_is_refused_tells_its_source_and_gets_another() {
    let server = TestServer::start().await;
    let source = Arc::new(RefusedUntilTold {
        good: server.watch_token().await,
        told: std::sync::atomic::AtomicBool::new(false),
    });
    let set = Arc::new(RevocationSet::new());
    let _watcher = writ_revocation_client::Watcher::spawn(
        server.revocation_channel().await,
        source.clone(),
        set.clone(),
        writ_revocation_client::WatchConfig {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ..writ_revocation_client::WatchConfig::default()
        },
    );
    // Without being told, the source would present the refused token forever and the feed
    // would never sync.
    eventually(Duration::from_secs(10), "the watcher syncs", || {
        set.staleness().is_some()
    })
    .await;
    assert!(source.told.load(std::sync::atomic::Ordering::Acquire));
}

#[tokio::test]
async fn a_token_source_told_its_token_was_refused_fetches_another() {
    use writ_client::BearerSource;
    let server = TestServer::start().await;
    let (id, secret) = server.service_client("refetch", "x", &["somewhere"]).await;
    let source = writ_client::TokenSource::new(
        server.channel().await,
        writ_client::ClientCredentials::new(id, secret),
    );
    let first = source.bearer().await.unwrap();
    assert_eq!(source.bearer().await.unwrap(), first, "cached while fresh");
    source.refused();
    assert_ne!(source.bearer().await.unwrap(), first, "fetched afresh");
}

/// Issue 10, item 3: a producer publishes only in its namespace (the issuer it is registered
/// for), never about Writ's own identities, never a cut-off in the future; a client with the
/// publish scope but no namespace publishes nothing. Each refusal appends nothing.
#[tokio::test]
async fn producers_publish_only_in_their_namespace_and_never_about_writ_itself() {
    let mut revocation = writ_tests::revocation_config();
    revocation
        .producers
        .insert("idp-producer".into(), "https://idp.example".into());
    let server = TestServer::start_with(Options {
        revocation,
        ..Options::default()
    })
    .await;
    let mut observer = server.revocation(&server.watch_token().await).await;
    let head = |s: GetStatusResponse| s.head_sequence;
    let mut producer = server.revocation(&server.publish_token().await).await;
    let exp = now() + 600;

    // Not registered: the publish scope alone publishes nothing.
    let mut stranger = server
        .revocation(
            &server
                .revocation_token(writ_vocabulary::names::REVOCATION_PUBLISH_SCOPE)
                .await,
        )
        .await;
    assert_revocation_refused(
        stranger
            .revoke(RevokeRequest {
                entries: vec![entry(RevocationKind::TokenId, "j", exp)],
            })
            .await,
        Code::PermissionDenied,
        "not_a_producer",
    );
    // Another issuer's tokens, or every issuer's: outside its namespace.
    for issuer in ["https://idp.example", "https://other.example"] {
        let mut e = entry(RevocationKind::Subject, "alice", exp);
        e.issuer = issuer.into();
        assert_revocation_refused(
            producer.revoke(RevokeRequest { entries: vec![e] }).await,
            Code::PermissionDenied,
            "outside_namespace",
        );
    }
    // Writ itself, or a cut-off reaching into the future (year 9999), from anyone.
    let mut refused = Vec::new();
    for id in writ_vocabulary::names::RESERVED_IDENTITIES {
        refused.push(entry(RevocationKind::Client, id, exp));
        refused.push(entry(RevocationKind::Subject, id, exp));
    }
    let mut forever = entry(RevocationKind::Subject, "alice", exp);
    forever.not_before = 253_402_300_799;
    refused.push(forever);
    for e in refused {
        assert_revocation_refused(
            producer
                .revoke(RevokeRequest {
                    entries: vec![e.clone()],
                })
                .await,
            Code::InvalidArgument,
            "invalid_entry",
        );
        let admin = server
            .admin()
            .await
            .revoke(pb_admin::RevokeRequest { entries: vec![e] })
            .await;
        assert_refused(admin, Code::InvalidArgument, "invalid_request");
    }
    assert_eq!(head(status(&mut observer).await), 0, "nothing was appended");

    // In its namespace: stamped with its issuer, revoking that issuer's tokens only.
    let watch = server.watch_token().await;
    let jti = jti_of(&watch);
    let mut idp = server.revocation(&idp_token(&server).await).await;
    assert_eq!(
        revoke(&mut idp, vec![entry(RevocationKind::TokenId, &jti, exp)]).await,
        1
    );
    let mut feed = Feed::open(&mut observer, 0).await;
    let published = feed.revocation().await.entry.unwrap();
    assert_eq!(published.issuer, "https://idp.example");
    // The idp's entry does not touch Writ's token of the same id...
    server
        .revocation(&watch)
        .await
        .get_status(GetStatusRequest {})
        .await
        .expect("another issuer's revocation leaves Writ's token alone");
    // ...Writ's own producer's does.
    revoke(
        &mut producer,
        vec![entry(RevocationKind::TokenId, &jti, exp)],
    )
    .await;
    assert_guard_refused(
        server
            .revocation(&watch)
            .await
            .get_status(GetStatusRequest {})
            .await,
        Code::Unauthenticated,
        "invalid_token",
    );

    // Writ's own identities cannot be registered as clients either.
    for id in writ_vocabulary::names::RESERVED_IDENTITIES {
        let r = server
            .admin()
            .await
            .create_client(pb_admin::CreateClientRequest {
                client: Some(pb_admin::Client {
                    client_id: id.into(),
                    grant_types: vec!["client_credentials".into()],
                    ..Default::default()
                }),
            })
            .await;
        assert_refused(r, Code::InvalidArgument, "invalid_request");
    }
}

/// A token of `idp-producer` (registered for `https://idp.example`).
async fn idp_token(server: &TestServer) -> String {
    let (id, secret) = server
        .service_client(
            "idp-producer",
            writ_vocabulary::names::REVOCATION_PUBLISH_SCOPE,
            &[writ_vocabulary::names::REVOCATION_AUDIENCE],
        )
        .await;
    server.revocation_token_of(&id, &secret).await
}

/// Reads `feed` until it ends; the status it ended with (bounded wait).
async fn ended(feed: &mut Feed) -> tonic::Status {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = tokio::time::timeout_at(deadline, feed.0.message())
            .await
            .expect("the stream ends within 10 s");
        match m {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => return status,
        }
    }
}

/// Issue 10, item 9: a Watch stream re-checks its caller and ends once the caller's token is
/// revoked, its client disabled, or its token expired; and no entry expires before the tokens
/// it can match (a shorter `expires_at` is raised to the longest token lifetime).
#[tokio::test]
async fn a_watch_ends_when_its_caller_lapses_and_entries_outlive_their_tokens() {
    let clock = ManualClock::starting_now();
    let mut revocation = writ_tests::revocation_config();
    revocation.subscriber.checkpoint_interval = Duration::from_millis(100);
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        revocation,
        ..Options::default()
    })
    .await;
    let mut publisher = server.revocation(&server.publish_token().await).await;
    let now = writ_token::Clock::now(&clock);

    // Revoked.
    let revoked = server.watch_token().await;
    let mut first = Feed::open(&mut server.revocation(&revoked).await, 0).await;
    let jti = jti_of(&revoked);
    revoke(
        &mut publisher,
        vec![entry(RevocationKind::TokenId, &jti, now + 5)],
    )
    .await;
    let s = ended(&mut first).await;
    assert_revocation_refused::<()>(Err(s), Code::Unauthenticated, "caller_lapsed");
    // The entry asked for 5 s; it lives as long as the longest token it can match.
    let mut observer = server.revocation(&server.watch_token().await).await;
    let mut feed = Feed::open(&mut observer, 0).await;
    let published = feed.revocation().await.entry.unwrap();
    assert!(published.expires_at >= now + 3600 + 30, "{published:?}");

    // Its client disabled.
    let (id, secret) = server
        .service_client(
            "watcher",
            writ_vocabulary::names::REVOCATION_WATCH_SCOPE,
            &[writ_vocabulary::names::REVOCATION_AUDIENCE],
        )
        .await;
    let token = server.revocation_token_of(&id, &secret).await;
    let mut second = Feed::open(&mut server.revocation(&token).await, 0).await;
    server.set_disabled(&id, true).await;
    let s = ended(&mut second).await;
    assert_revocation_refused::<()>(Err(s), Code::Unauthenticated, "caller_lapsed");

    // Expired.
    let mut third = Feed::open(&mut server.revocation(&server.watch_token().await).await, 0).await;
    clock.advance(300 + 31);
    let s = ended(&mut third).await;
    assert_revocation_refused::<()>(Err(s), Code::Unauthenticated, "caller_lapsed");
}

/// The authorization server's publisher cuts its outbox into calls the revocation service
/// accepts: 500 entries of the largest size do not fit in one message, and such a call, refused
/// for its size, used to be retried forever, holding up every revocation behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_of_the_largest_entries_reaches_the_feed() {
    let w = Watched::start().await;
    let now = writ_token::system_clock().now();
    let largest = |n: usize| {
        let mut e = entry(
            RevocationKind::TokenId,
            &format!("{n:0>width$}", width = writ_token::MAX_REVOCATION_VALUE_LEN),
            now + 600,
        );
        e.reason = "r".repeat(writ_token::MAX_REVOCATION_REASON_LEN);
        e
    };
    // Three admin calls at once (each under the message limit itself), so the outbox holds more
    // than one call's worth when the publisher reads it.
    let batch = |k: usize| (k * 400..(k + 1) * 400).map(largest).collect::<Vec<_>>();
    tokio::join!(
        admin_revoke(&w.server, batch(0)),
        admin_revoke(&w.server, batch(1)),
        admin_revoke(&w.server, batch(2)),
    );
    eventually(FEED, "every revocation on the feed", || w.set.len() >= 1200).await;
    assert_eq!(w.set.len(), 1200);
}

/// Issue 15: publishing is idempotent end to end. A producer that publishes an entry again (it
/// retried, or crashed before it saw the answer) gets the sequence it had, even later, when the
/// raise to the longest token's lifetime would have ended later: the log's head does not move.
#[tokio::test]
async fn a_producer_publishing_an_entry_again_later_appends_nothing() {
    let clock = ManualClock::starting_now();
    let server = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        revocation: writ_tests::revocation_config(),
        ..Options::default()
    })
    .await;
    let mut publisher = server.revocation(&server.publish_token().await).await;
    let now = writ_token::Clock::now(&clock);
    let entries = vec![
        entry(RevocationKind::TokenId, "retried-1", now + 60),
        entry(RevocationKind::GrantId, "retried-2", now + 600),
    ];
    let first = revoke(&mut publisher, entries.clone()).await;
    assert_eq!(first, 2);
    clock.advance(30);
    assert_eq!(revoke(&mut publisher, entries.clone()).await, first);
    assert_eq!(revoke(&mut publisher, entries[..1].to_vec()).await, 1);
    let s = status(&mut publisher).await;
    assert_eq!((s.head_sequence, s.live_entries), (2, 2));
}

/// Issue 10, item 8: Watch streams are capped per caller (and in all): past the cap a Watch is
/// RESOURCE_EXHAUSTED, and closing one frees its place. A bearer header larger than the server
/// takes is refused on its own stream, and the shared HTTP/2 connection carries on.
#[tokio::test]
async fn watch_streams_are_capped_per_caller_and_a_huge_header_leaves_the_connection_up() {
    let mut revocation = writ_tests::revocation_config();
    revocation.subscriber.max_subscribers_per_caller = 2;
    let server = TestServer::start_with(Options {
        revocation,
        ..Options::default()
    })
    .await;
    let token = server.watch_token().await;
    let mut client = server.revocation(&token).await;
    let first = Feed::open(&mut client, 0).await;
    let _second = Feed::open(&mut client, 0).await;
    assert_revocation_refused(
        client.watch(WatchRequest { from_sequence: 0 }).await,
        Code::ResourceExhausted,
        "too_many_subscribers",
    );
    // Another caller has places of its own.
    let mut other = server.revocation(&server.watch_token().await).await;
    let _third = Feed::open(&mut other, 0).await;
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.watch(WatchRequest { from_sequence: 0 }).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(s) => panic!("a closed stream's place is not freed: {s:?}"),
        }
    }

    // One channel (one HTTP/2 connection): a 100 KiB header, then a normal call.
    let channel = server.revocation_channel().await;
    let huge = format!("Bearer {}", "a".repeat(100 * 1024));
    let mut request = tonic::Request::new(GetStatusRequest {});
    request
        .metadata_mut()
        .insert("authorization", huge.parse().unwrap());
    let mut raw = RevocationServiceClient::new(channel.clone());
    assert!(raw.get_status(request).await.is_err());
    let mut fine = RevocationServiceClient::with_interceptor(channel, bearer(&token));
    fine.get_status(GetStatusRequest {})
        .await
        .expect("the connection survived");
}

/// Issue 11: a watcher given several replicas of one revocation log fails over when the one it
/// follows dies, resuming from its cursor on another: within a second, with no gap and no
/// duplicate, while revocations keep being written.
#[tokio::test]
async fn a_watcher_fails_over_between_replicas_without_gap_or_duplicate() {
    let server = TestServer::start().await;
    let log = server.revocation_log.clone();
    let engine = server.engine.clone();
    let issuer = writ_token::TrustedIssuer::new(
        engine.config().issuer.clone(),
        Arc::new(writ_trust::LocalKeys(move || engine.trusted_keys())),
    );
    // Two replicas of the same log (plain TCP), each with its own switch.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let (stop, signal) = writ_server::Shutdown::new();
        let listener = writ_server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let running = writ_revocation::start(
            log.clone(),
            vec![issuer.clone()],
            writ_token::system_clock(),
            revocation_config(),
            listener,
            None,
            signal,
        )
        .await
        .unwrap();
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", running.grpc_addr))
                .unwrap()
                .connect_lazy();
        replicas.push((stop, running, channel));
    }
    let token = server.watch_token().await;
    let set = Arc::new(RevocationSet::new());
    let _watcher = writ_revocation_client::Watcher::spawn_failover(
        replicas.iter().map(|r| r.2.clone()).collect(),
        Arc::new(writ_client::StaticBearer::new(&token).unwrap()),
        set.clone(),
        writ_revocation_client::WatchConfig {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            ..Default::default()
        },
    );

    // A writer appends one revocation every 5 ms until told to stop.
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let (log, written) = (log.clone(), written.clone());
        tokio::spawn(async move {
            let now = writ_token::system_clock().now();
            for i in 0..10_000u64 {
                if done_rx.try_recv().is_ok() {
                    break;
                }
                let e = entry(
                    RevocationKind::TokenId,
                    &format!("failover-{i}"),
                    now + 3600,
                );
                let e = writ_proto::convert::revocation_entry(e, now).unwrap();
                log.append(&[e], now).await.unwrap();
                written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    eventually(
        Duration::from_secs(10),
        "the watcher follows the first replica",
        || set.len() >= 20,
    )
    .await;

    // The first replica dies; events must flow from the second within a second.
    let (stop, running, _) = replicas.remove(0);
    let before = set.cursor();
    let killed = Instant::now();
    stop.trigger();
    drop(running);
    eventually(
        Duration::from_secs(5),
        "events flow from the other replica",
        || set.cursor() > before + 5,
    )
    .await;
    let failover = killed.elapsed();
    eprintln!("failover: {failover:?}");
    assert!(
        failover < Duration::from_secs(1),
        "failover took {failover:?}"
    );

    // Stop writing; the watcher ends with exactly what was written, each applied once.
    let _ = done_tx.send(());
    writer.await.unwrap();
    let head = log.head();
    eventually(Duration::from_secs(10), "the watcher catches up", || {
        set.cursor() == head
    })
    .await;
    let n = written.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(set.len() as u64, n, "every revocation, once");
    assert_eq!(set.applied(), n, "no event applied twice");
    replicas[0].0.trigger();
}

/// Issue 11: a replica that accepts connections but never answers (hung, not dead) is left
/// after the watcher's silence bound, for one that answers.
#[tokio::test]
async fn a_watcher_leaves_a_silent_replica() {
    let server = TestServer::start().await;
    // Accepts TCP, says nothing, ever.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            open.push(s);
        }
    });
    let silent = tonic::transport::Endpoint::from_shared(format!("http://{hung_addr}"))
        .unwrap()
        .connect_lazy();
    let token = server.watch_token().await;
    let set = Arc::new(RevocationSet::new());
    let started = Instant::now();
    let _watcher = writ_revocation_client::Watcher::spawn_failover(
        vec![silent, server.revocation_channel().await],
        Arc::new(writ_client::StaticBearer::new(&token).unwrap()),
        set.clone(),
        writ_revocation_client::WatchConfig {
            backoff_min: Duration::from_millis(20),
            // Above the service's checkpoint interval (1 s), or a live stream reads as silent.
            silence: Duration::from_millis(1500),
            ..Default::default()
        },
    );
    eventually(
        Duration::from_secs(10),
        "the watcher syncs from the live replica",
        || set.staleness().is_some(),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "{took:?}"
    );
}
