//! The cost of a revocation lookup: `RevocationSet::check` against a set of 1,000,000 entries,
//! the size the client set is specified for (the goal: a few hundred nanoseconds).
//!
//! ```text
//! cargo bench -p writ-revocation-client --bench check
//! ```
//!
//! The set holds 1,000,000 token-id revocations with 22-character ids (the length of Writ's
//! `jti`s). Each iteration checks a different token, cycling through 1,000,000 of them, so
//! lookups land on buckets all over the 34 MiB table as they would under real traffic, not on
//! the few cache lines one repeated token touches (`set_check_miss_1m_same_token` shows that
//! best case for contrast). A token not revoked costs one lookup per fact it carries: jti, sub,
//! client_id, key id and gid here (five); a revoked jti is found by the first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use writ_proto::revocation::{RevocationEntry, RevocationEvent, WatchResponse, watch_response};
use writ_revocation_client::{RevocationSet, TokenFacts};
use writ_token::RevocationKind;

const ENTRIES: usize = 1_000_000;
const NOW: i64 = 1_800_000_000;

/// A 22-character id, distinct for every `n` (splitmix64 is a bijection).
fn id(n: u64) -> String {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    format!("{z:016x}{:06x}", n & 0xff_ffff)
}

fn facts<'a>(jti: &'a str, gid: &'a str) -> TokenFacts<'a> {
    TokenFacts {
        iss: "https://as.example",
        jti,
        gid: Some(gid),
        sub: "alice",
        client_id: "orders",
        iat: NOW - 10,
        key_id: "k-ed-2026",
        biscuit_revocation_ids: &[],
    }
}

fn check(c: &mut Criterion) {
    let set = RevocationSet::new();
    let revoked: Vec<String> = (0..ENTRIES as u64).map(id).collect();
    for (i, value) in revoked.iter().enumerate() {
        set.apply(&WatchResponse {
            event: Some(watch_response::Event::Revocation(RevocationEvent {
                sequence: i as u64 + 1,
                entry: Some(RevocationEntry {
                    kind: RevocationKind::TokenId as i32,
                    value: value.clone(),
                    expires_at: NOW + 3600,
                    reason: String::new(),
                    not_before: 0,
                    issuer: String::new(),
                }),
            })),
        })
        .unwrap();
    }
    assert_eq!(set.len(), ENTRIES);
    // Ids never revoked: jtis and gids of live tokens.
    let live: Vec<String> = (ENTRIES as u64..3 * ENTRIES as u64).map(id).collect();
    for i in [0, ENTRIES / 2, ENTRIES - 1] {
        assert_eq!(set.check(&facts(&live[i], &live[ENTRIES + i])), None);
        assert_eq!(
            set.check(&facts(&revoked[i], &live[i])),
            Some(RevocationKind::TokenId)
        );
    }

    c.bench_function("set_check_miss_1m", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            set.check(black_box(&facts(&live[i], &live[ENTRIES + i])))
        })
    });
    c.bench_function("set_check_hit_1m", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            set.check(black_box(&facts(&revoked[i], &live[i])))
        })
    });
    c.bench_function("set_check_miss_1m_same_token", |b| {
        let f = facts(&live[0], &live[ENTRIES]);
        b.iter(|| set.check(black_box(&f)))
    });
}

criterion_group!(benches, check);
criterion_main!(benches);
