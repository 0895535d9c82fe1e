//! Whether a subject or actor token is revoked: the revocation feed (a `RevocationSet` kept
//! current by a `Watcher`, failing closed when it is staler than its bound) or, under `writ up`,
//! the revocation log itself; and then the authorization server's own revocation index when it
//! runs in the same process, which knows a revocation the moment it is acknowledged.

use std::sync::Arc;

use writ_token::{AsyncRevocationCheck, BoxFuture, RevocationKind, TokenFacts, Unvouched};

/// The revocation feed (failing closed when stale) or the log, then any other index the STS may
/// consult (under `writ up`, the authorization server's own, which knows a revocation the moment
/// it is acknowledged).
#[derive(Debug)]
pub struct FeedCheck {
    feed: Arc<dyn AsyncRevocationCheck>,
    also: Option<Arc<dyn AsyncRevocationCheck>>,
}

impl FeedCheck {
    pub fn new(
        feed: Arc<dyn AsyncRevocationCheck>,
        also: Option<Arc<dyn AsyncRevocationCheck>>,
    ) -> Self {
        FeedCheck { feed, also }
    }
}

impl AsyncRevocationCheck for FeedCheck {
    fn revoked_async<'a>(
        &'a self,
        token: &'a TokenFacts<'a>,
    ) -> BoxFuture<'a, Result<Option<RevocationKind>, Unvouched>> {
        Box::pin(async move {
            if let Some(kind) = self.feed.revoked_async(token).await? {
                return Ok(Some(kind));
            }
            match &self.also {
                Some(index) => index.revoked_async(token).await,
                None => Ok(None),
            }
        })
    }
}
