//! Revocation entries to and from `writ.revocation.v1` messages.

use writ_proto::revocation as pb;
use writ_token::{RevocationEntry, RevocationKind};

/// An entry from a request. Unknown kinds are refused; `not_before` only means something for
/// subject and client entries, where zero means `now`.
pub fn entry_from_pb(e: pb::RevocationEntry, now: i64) -> Option<RevocationEntry> {
    let kind = RevocationKind::from_i32(e.kind)?;
    let not_before = match (kind.uses_not_before(), e.not_before) {
        (true, 0) => now,
        (true, n) => n,
        (false, _) => 0,
    };
    Some(RevocationEntry {
        kind,
        value: e.value,
        expires_at: e.expires_at,
        not_before,
        reason: e.reason,
    })
}

pub fn entry_to_pb(e: &RevocationEntry) -> pb::RevocationEntry {
    pb::RevocationEntry {
        kind: e.kind as i32,
        value: e.value.clone(),
        expires_at: e.expires_at,
        reason: e.reason.clone(),
        not_before: e.not_before,
    }
}
