//! Whether a subject or actor token is revoked: the authorization server's own revocation index
//! when it runs in the same process, which knows a revocation the moment it is acknowledged;
//! then the revocation feed (a `RevocationSet` kept current by a `Watcher`, failing closed when
//! it is staler than its bound) or, under `writ up`, the revocation log itself.

use std::sync::Arc;

use writ_token::{AsyncRevocationCheck, BoxFuture, RevocationKind, TokenFacts, Unvouched};

/// Any other index the STS may consult (under `writ up`, the authorization server's own, which
/// knows a revocation the moment it is acknowledged), then the revocation feed (failing closed
/// when stale) or the log.
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
            // The authorization server's index first: an entry it leaves to the log (under
            // `writ up`) is answered by it only until the log holds it. Asked the other way
            // round, an entry delivered between the two questions would be missed by both.
            if let Some(index) = &self.also
                && let Some(kind) = index.revoked_async(token).await?
            {
                return Ok(Some(kind));
            }
            self.feed.revoked_async(token).await
        })
    }
}
