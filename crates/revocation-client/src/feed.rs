//! The feed as a revocation check: a [`RevocationSet`] trusted only while it is fresh.

use std::sync::Arc;
use std::time::Duration;

use writ_token::{RevocationCheck, RevocationKind, TokenFacts, Unvouched};

use crate::RevocationSet;

/// Default bound on a feed's staleness: past it, its answers are not trusted.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(30);

/// A [`RevocationSet`] kept current by a [`crate::Watcher`], vouching for its answers only
/// while it has heard from the revocation service within `max_staleness` (and has synced once):
/// otherwise every check fails, and the caller fails closed.
#[derive(Debug, Clone)]
pub struct RevocationFeed {
    set: Arc<RevocationSet>,
    max_staleness: Duration,
}

impl RevocationFeed {
    pub fn new(set: Arc<RevocationSet>, max_staleness: Duration) -> Self {
        RevocationFeed { set, max_staleness }
    }

    pub fn set(&self) -> &Arc<RevocationSet> {
        &self.set
    }

    pub fn max_staleness(&self) -> Duration {
        self.max_staleness
    }
}

impl RevocationCheck for RevocationFeed {
    fn revoked(&self, token: &TokenFacts<'_>) -> Result<Option<RevocationKind>, Unvouched> {
        match self.set.staleness() {
            None => Err(Unvouched("the revocation feed has not synced yet")),
            Some(s) if s > self.max_staleness => Err(Unvouched(
                "the revocation feed is too stale to vouch for the token",
            )),
            Some(_) => Ok(self.set.check(token)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use writ_proto::revocation::{
        Checkpoint, RevocationEntry, RevocationEvent, WatchResponse, watch_response::Event,
    };

    fn facts() -> TokenFacts<'static> {
        TokenFacts {
            iss: "https://as.example",
            jti: "j1",
            gid: Some("g1"),
            sub: "alice",
            client_id: "orders",
            iat: 100,
            key_id: "k1",
            biscuit_revocation_ids: &[],
        }
    }

    fn message(event: Event) -> WatchResponse {
        WatchResponse { event: Some(event) }
    }

    #[test]
    fn a_feed_that_never_synced_or_went_stale_cannot_vouch() {
        let set = Arc::new(RevocationSet::new());
        let feed = RevocationFeed::new(set.clone(), Duration::from_millis(50));
        assert!(feed.revoked(&facts()).is_err());
        set.apply(&message(Event::Checkpoint(Checkpoint {
            sequence: 0,
            ..Default::default()
        })))
        .unwrap();
        assert_eq!(feed.revoked(&facts()).unwrap(), None);
        std::thread::sleep(Duration::from_millis(80));
        assert!(feed.revoked(&facts()).is_err());
    }

    #[test]
    fn an_entry_in_the_feed_revokes_the_token() {
        let set = Arc::new(RevocationSet::new());
        let feed = RevocationFeed::new(set.clone(), Duration::from_secs(60));
        set.apply(&message(Event::Revocation(RevocationEvent {
            sequence: 1,
            entry: Some(RevocationEntry {
                kind: RevocationKind::GrantId as i32,
                value: "g1".into(),
                expires_at: i64::from(u32::MAX),
                reason: String::new(),
                not_before: 0,
                issuer: String::new(),
            }),
        })))
        .unwrap();
        set.apply(&message(Event::Checkpoint(Checkpoint {
            sequence: 1,
            ..Default::default()
        })))
        .unwrap();
        assert_eq!(
            feed.revoked(&facts()).unwrap(),
            Some(RevocationKind::GrantId)
        );
    }
}
