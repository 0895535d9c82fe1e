//! The in-memory revocation set a consumer checks tokens against, without waiting on anything.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use writ_proto::revocation::{WatchResponse, watch_response};
use writ_token::RevocationKind;
pub use writ_token::TokenFacts;

/// The keys are already keyed hashes: use them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// An entry in 8 bytes: its expiry (seconds, u32 until 2106) and, in 31 bits, how long before
/// the expiry its cut-off lies (`not_before = expires_at - span`), plus the snapshot generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Packed {
    expires_at: u32,
    span_and_generation: u32,
}

const GENERATION_BIT: u32 = 1 << 31;

impl Packed {
    fn new(expires_at: i64, not_before: i64, generation: bool) -> Self {
        let expires = expires_at.clamp(0, u32::MAX as i64);
        let span = (expires - not_before.clamp(0, expires)).min((GENERATION_BIT - 1) as i64) as u32;
        Packed {
            expires_at: expires as u32,
            span_and_generation: span | if generation { GENERATION_BIT } else { 0 },
        }
    }

    fn not_before(self) -> i64 {
        self.expires_at as i64 - (self.span_and_generation & !GENERATION_BIT) as i64
    }

    fn generation(self) -> bool {
        self.span_and_generation & GENERATION_BIT != 0
    }

    fn merge(self, other: Packed, generation: bool) -> Packed {
        let expires = self.expires_at.max(other.expires_at) as i64;
        let not_before = self.not_before().max(other.not_before());
        Packed::new(expires, not_before, generation)
    }
}

type Map = HashMap<u64, Packed, BuildHasherDefault<Identity>>;

struct State {
    entries: Map,
    cursor: u64,
    /// The generation entries carry now; a snapshot inserts with the other one and, at its end,
    /// drops whatever it did not confirm.
    generation: bool,
    /// Inside a snapshot: the sequence it reflects.
    snapshot: Option<u64>,
}

/// A protocol violation by the server (gap, checkpoint ahead, unbalanced snapshot): the
/// client must resume from its cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfOrder(pub &'static str);

/// The revocations a consumer knows, kept current by the watch client.
pub struct RevocationSet {
    state: RwLock<State>,
    hasher: RandomState,
    /// Milliseconds since the epoch of the last event or checkpoint; 0 before the first sync.
    last_contact_ms: AtomicI64,
    synced: AtomicBool,
    /// Whether any entry scoped to one issuer was ever applied.
    scoped: AtomicBool,
    applied: AtomicU64,
}

impl std::fmt::Debug for RevocationSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationSet")
            .field("len", &self.len())
            .field("cursor", &self.cursor())
            .finish_non_exhaustive()
    }
}

impl Default for RevocationSet {
    fn default() -> Self {
        Self::new()
    }
}

/// Most entries a snapshot's announced count reserves room for in advance.
const MAX_RESERVE: usize = 1 << 20;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl RevocationSet {
    pub fn new() -> Self {
        RevocationSet {
            state: RwLock::new(State {
                entries: Map::default(),
                cursor: 0,
                generation: false,
                snapshot: None,
            }),
            hasher: RandomState::new(),
            last_contact_ms: AtomicI64::new(0),
            synced: AtomicBool::new(false),
            scoped: AtomicBool::new(false),
            applied: AtomicU64::new(0),
        }
    }

    /// An entry's key: its kind and value for an entry of every issuer; its kind (high bit
    /// set), issuer and value for one scoped to an issuer.
    fn key(&self, kind: RevocationKind, issuer: &str, value: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        if issuer.is_empty() {
            h.write_u8(kind as u8);
        } else {
            h.write_u8(kind as u8 | 0x80);
            h.write(issuer.as_bytes());
            h.write_u8(0xff);
        }
        h.write(value.as_bytes());
        h.finish()
    }

    /// Which revocation, if any, applies to a token. Never waits on the network.
    pub fn check(&self, t: &TokenFacts<'_>) -> Option<RevocationKind> {
        let state = self.state.read();
        let revokes = |kind: RevocationKind, issuer: &str, value: &str| {
            state
                .entries
                .get(&self.key(kind, issuer, value))
                .is_some_and(|p| t.cut_off_by(kind, p.not_before()))
        };
        // Entries scoped to the token's issuer cost a second lookup only once the feed has
        // carried one.
        let scoped = self.scoped.load(Ordering::Relaxed);
        t.targets()
            .find(|(kind, value)| {
                revokes(*kind, "", value) || (scoped && revokes(*kind, t.iss, value))
            })
            .map(|(kind, _)| kind)
    }

    /// Applies one message of the watch stream. Idempotent: an event at or before the cursor
    /// changes nothing.
    pub fn apply(&self, message: &WatchResponse) -> Result<(), OutOfOrder> {
        use watch_response::Event;
        let Some(event) = &message.event else {
            return Err(OutOfOrder("empty message"));
        };
        let mut state = self.state.write();
        match event {
            Event::Revocation(ev) => {
                let entry = ev.entry.as_ref().ok_or(OutOfOrder("event without entry"))?;
                let kind =
                    RevocationKind::from_i32(entry.kind).ok_or(OutOfOrder("unknown kind"))?;
                match state.snapshot {
                    // A snapshot carries every live entry in its newest version, which may be
                    // newer than the snapshot's sequence (updated while it was read): the
                    // cursor stays, and the delta delivering that version again changes nothing.
                    Some(_) => {}
                    None if ev.sequence <= state.cursor => return Ok(()),
                    None if ev.sequence != state.cursor + 1 => {
                        return Err(OutOfOrder("gap in the event stream"));
                    }
                    None => state.cursor = ev.sequence,
                }
                let generation = if state.snapshot.is_some() {
                    !state.generation
                } else {
                    state.generation
                };
                let packed = Packed::new(entry.expires_at, entry.not_before, generation);
                if !entry.issuer.is_empty() {
                    self.scoped.store(true, Ordering::Relaxed);
                }
                let key = self.key(kind, &entry.issuer, &entry.value);
                let merged = match state.entries.get(&key) {
                    Some(old) => old.merge(packed, generation),
                    None => packed,
                };
                state.entries.insert(key, merged);
                self.applied.fetch_add(1, Ordering::Relaxed);
            }
            Event::SnapshotBegin(b) => {
                if state.snapshot.is_some() {
                    return Err(OutOfOrder("nested snapshot"));
                }
                // A snapshot older than what was applied would retract acknowledged
                // revocations (its end drops what it did not confirm): a server that lost
                // history is not followed; the feed goes stale and guards fail closed.
                if b.sequence < state.cursor {
                    return Err(OutOfOrder("snapshot behind the cursor"));
                }
                state.snapshot = Some(b.sequence);
                // The count is the server's word, not a size to trust: room for at most
                // MAX_RESERVE more up front, the rest grows as entries arrive.
                let have = state.entries.len();
                let wanted = usize::try_from(b.entry_count).unwrap_or(usize::MAX);
                if wanted > have {
                    state.entries.reserve((wanted - have).min(MAX_RESERVE));
                }
            }
            Event::SnapshotEnd(e) => {
                if state.snapshot != Some(e.sequence) {
                    return Err(OutOfOrder("snapshot end without its beginning"));
                }
                // Entries the snapshot did not confirm are gone from the server: drop them now,
                // not before (until then they still protect).
                let confirmed = !state.generation;
                state.entries.retain(|_, p| p.generation() == confirmed);
                state.generation = confirmed;
                state.snapshot = None;
                state.cursor = e.sequence;
                self.synced.store(true, Ordering::Release);
            }
            Event::Checkpoint(c) => {
                if state.snapshot.is_some() || c.sequence > state.cursor {
                    return Err(OutOfOrder("checkpoint ahead of the delivered events"));
                }
                if c.sequence == state.cursor {
                    self.synced.store(true, Ordering::Release);
                }
            }
        }
        drop(state);
        self.last_contact_ms.store(now_ms(), Ordering::Release);
        Ok(())
    }

    /// Forgets a snapshot cut short by a reconnect (its confirmed entries stay, harmlessly).
    pub fn abandon_snapshot(&self) {
        let mut state = self.state.write();
        if state.snapshot.take().is_some() {
            // Entries the partial snapshot re-marked keep protecting; flip them back to the
            // current generation so the next snapshot judges them afresh.
            let current = state.generation;
            for p in state.entries.values_mut() {
                *p = Packed::new(p.expires_at as i64, p.not_before(), current);
            }
        }
    }

    /// The last sequence applied: where a reconnect resumes.
    pub fn cursor(&self) -> u64 {
        self.state.read().cursor
    }

    /// Time since the last event or checkpoint; `None` until the first complete sync. A guard
    /// compares it with its bound and fails closed beyond it.
    pub fn staleness(&self) -> Option<Duration> {
        if !self.synced.load(Ordering::Acquire) {
            return None;
        }
        let last = self.last_contact_ms.load(Ordering::Acquire);
        Some(Duration::from_millis((now_ms() - last).max(0) as u64))
    }

    pub fn len(&self) -> usize {
        self.state.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events applied since start (duplicates excluded).
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Forgets entries whose revoked tokens have all expired (`expires_at + margin < now`).
    pub fn prune(&self, now: i64, margin: i64) -> usize {
        let mut state = self.state.write();
        let before = state.entries.len();
        state
            .entries
            .retain(|_, p| p.expires_at as i64 + margin >= now);
        before - state.entries.len()
    }

    /// Bytes the entry table occupies (buckets and control bytes).
    pub fn table_bytes(&self) -> usize {
        let cap = self.state.read().entries.capacity();
        // hashbrown keeps one control byte per bucket and at most 7/8 of the buckets full.
        let buckets = (cap * 8 / 7).next_power_of_two();
        buckets * (std::mem::size_of::<(u64, Packed)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use writ_proto::revocation::{
        Checkpoint, RevocationEntry, RevocationEvent, SnapshotBegin, SnapshotEnd,
    };

    fn ev(seq: u64, kind: RevocationKind, value: &str, not_before: i64) -> WatchResponse {
        WatchResponse {
            event: Some(watch_response::Event::Revocation(RevocationEvent {
                sequence: seq,
                entry: Some(RevocationEntry {
                    kind: kind as i32,
                    value: value.into(),
                    expires_at: 2_000_000_000,
                    reason: String::new(),
                    not_before,
                    issuer: String::new(),
                }),
            })),
        }
    }

    fn msg(e: watch_response::Event) -> WatchResponse {
        WatchResponse { event: Some(e) }
    }

    fn facts<'a>(jti: &'a str, sub: &'a str, iat: i64) -> TokenFacts<'a> {
        TokenFacts {
            iss: "https://as.example",
            jti,
            gid: Some("g"),
            sub,
            client_id: "c",
            iat,
            key_id: "k",
            biscuit_revocation_ids: &[],
        }
    }

    #[test]
    fn events_apply_in_order_and_duplicates_change_nothing() {
        let set = RevocationSet::new();
        set.apply(&ev(1, RevocationKind::TokenId, "j1", 0)).unwrap();
        set.apply(&ev(2, RevocationKind::TokenId, "j2", 0)).unwrap();
        set.apply(&ev(1, RevocationKind::TokenId, "j1", 0)).unwrap();
        assert_eq!(set.cursor(), 2);
        assert_eq!(set.len(), 2);
        assert_eq!(set.applied(), 2);
        assert_eq!(
            set.check(&facts("j1", "s", 0)),
            Some(RevocationKind::TokenId)
        );
        assert_eq!(set.check(&facts("j3", "s", 0)), None);
        assert_eq!(
            set.apply(&ev(4, RevocationKind::TokenId, "j4", 0)),
            Err(OutOfOrder("gap in the event stream"))
        );
        assert_eq!(set.cursor(), 2);
    }

    #[test]
    fn a_subject_cut_revokes_tokens_issued_at_or_before_it() {
        let set = RevocationSet::new();
        set.apply(&ev(1, RevocationKind::Subject, "alice", 1000))
            .unwrap();
        assert_eq!(
            set.check(&facts("j", "alice", 999)),
            Some(RevocationKind::Subject)
        );
        assert_eq!(
            set.check(&facts("j", "alice", 1000)),
            Some(RevocationKind::Subject)
        );
        assert_eq!(set.check(&facts("j", "alice", 1001)), None);
        assert_eq!(set.check(&facts("j", "bob", 999)), None);
    }

    #[test]
    fn grant_key_client_and_biscuit_ids_are_checked() {
        let set = RevocationSet::new();
        set.apply(&ev(1, RevocationKind::GrantId, "g", 0)).unwrap();
        assert_eq!(
            set.check(&facts("j", "s", 0)),
            Some(RevocationKind::GrantId)
        );
        let set = RevocationSet::new();
        set.apply(&ev(1, RevocationKind::BiscuitRevocationId, "ab12", 0))
            .unwrap();
        let ids = vec!["ff00".to_owned(), "ab12".to_owned()];
        let f = TokenFacts {
            biscuit_revocation_ids: &ids,
            ..facts("j", "s", 0)
        };
        assert_eq!(set.check(&f), Some(RevocationKind::BiscuitRevocationId));
        set.apply(&ev(2, RevocationKind::KeyId, "k", 0)).unwrap();
        assert_eq!(set.check(&facts("j", "s", 0)), Some(RevocationKind::KeyId));
    }

    /// Found by fuzzing (`tools/fuzz`, target `revocation_entry`): a snapshot older than the
    /// cursor would have retracted what was applied after it.
    #[test]
    fn a_snapshot_behind_the_cursor_is_refused_and_changes_nothing() {
        let set = RevocationSet::new();
        set.apply(&ev(1, RevocationKind::TokenId, "j1", 0)).unwrap();
        set.apply(&ev(2, RevocationKind::TokenId, "j2", 0)).unwrap();
        let begin = msg(watch_response::Event::SnapshotBegin(SnapshotBegin {
            sequence: 1,
            entry_count: 1,
        }));
        assert_eq!(
            set.apply(&begin),
            Err(OutOfOrder("snapshot behind the cursor"))
        );
        let end = msg(watch_response::Event::SnapshotEnd(SnapshotEnd {
            sequence: 1,
        }));
        assert!(set.apply(&end).is_err());
        assert_eq!(set.cursor(), 2);
        assert_eq!(
            set.check(&facts("j2", "s", 0)),
            Some(RevocationKind::TokenId)
        );
    }

    /// A snapshot's announced size reserves bounded room, whatever it says.
    #[test]
    fn an_absurd_snapshot_count_allocates_nothing_absurd() {
        let set = RevocationSet::new();
        let begin = msg(watch_response::Event::SnapshotBegin(SnapshotBegin {
            sequence: 0,
            entry_count: u64::MAX,
        }));
        set.apply(&begin).unwrap();
        assert!(set.table_bytes() < 64 << 20, "{}", set.table_bytes());
    }

    #[test]
    fn a_snapshot_replaces_the_set_only_when_it_ends() {
        let set = RevocationSet::new();
        set.apply(&ev(1, RevocationKind::TokenId, "gone", 0))
            .unwrap();
        set.apply(&ev(2, RevocationKind::TokenId, "kept", 0))
            .unwrap();
        set.apply(&msg(watch_response::Event::SnapshotBegin(SnapshotBegin {
            sequence: 10,
            entry_count: 2,
        })))
        .unwrap();
        set.apply(&ev(2, RevocationKind::TokenId, "kept", 0))
            .unwrap();
        set.apply(&ev(7, RevocationKind::TokenId, "new", 0))
            .unwrap();
        // Updated while the snapshot was read: newer than its sequence, accepted.
        set.apply(&ev(12, RevocationKind::TokenId, "newer", 0))
            .unwrap();
        // Mid-snapshot, everything known still protects.
        assert!(set.check(&facts("gone", "s", 0)).is_some());
        set.apply(&msg(watch_response::Event::SnapshotEnd(SnapshotEnd {
            sequence: 10,
        })))
        .unwrap();
        assert!(
            set.check(&facts("gone", "s", 0)).is_none(),
            "not in the snapshot: pruned server-side"
        );
        assert!(set.check(&facts("kept", "s", 0)).is_some());
        assert!(set.check(&facts("new", "s", 0)).is_some());
        assert!(set.check(&facts("newer", "s", 0)).is_some());
        assert_eq!(set.cursor(), 10);
        set.apply(&ev(11, RevocationKind::TokenId, "after", 0))
            .unwrap();
        // Its delta comes again in order and changes nothing.
        set.apply(&ev(12, RevocationKind::TokenId, "newer", 0))
            .unwrap();
        assert_eq!(set.len(), 4);
    }

    #[test]
    fn staleness_is_unknown_until_synced_and_checkpoints_cannot_run_ahead() {
        let set = RevocationSet::new();
        assert_eq!(set.staleness(), None);
        set.apply(&ev(1, RevocationKind::TokenId, "j", 0)).unwrap();
        let ahead = msg(watch_response::Event::Checkpoint(Checkpoint {
            sequence: 5,
            server_time: None,
        }));
        assert!(set.apply(&ahead).is_err());
        let caught_up = msg(watch_response::Event::Checkpoint(Checkpoint {
            sequence: 1,
            server_time: None,
        }));
        set.apply(&caught_up).unwrap();
        assert!(set.staleness().unwrap() < Duration::from_secs(1));
    }

    #[test]
    fn expired_entries_are_pruned() {
        let set = RevocationSet::new();
        let mut e = ev(1, RevocationKind::TokenId, "old", 0);
        if let Some(watch_response::Event::Revocation(r)) = &mut e.event {
            r.entry.as_mut().unwrap().expires_at = 1000;
        }
        set.apply(&e).unwrap();
        set.apply(&ev(2, RevocationKind::TokenId, "new", 0))
            .unwrap();
        assert_eq!(set.prune(1500, 60), 1);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn packing_keeps_the_cut_off_exact() {
        let p = Packed::new(2_000_000_000, 1_999_000_000, true);
        assert_eq!(p.not_before(), 1_999_000_000);
        assert!(p.generation());
        assert_eq!(
            p.merge(Packed::new(1_999_900_000, 1_999_500_000, false), false)
                .not_before(),
            1_999_500_000
        );
    }

    #[test]
    fn an_entry_costs_well_under_64_bytes() {
        let set = RevocationSet::new();
        for i in 1..=50_000u64 {
            set.apply(&ev(i, RevocationKind::TokenId, &format!("token-{i}"), 0))
                .unwrap();
        }
        let per_entry = set.table_bytes() / set.len();
        assert!(per_entry <= 40, "{per_entry} bytes per entry");
    }
}
