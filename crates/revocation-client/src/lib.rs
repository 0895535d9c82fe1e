//! Writ's revocation client: a [`RevocationSet`] kept current from the revocation service's
//! `Watch` stream, and [`RevocationFeed`], the set as a revocation check that fails closed when
//! the feed is too old.
//!
//! The watcher runs in the background: it resumes from the set's cursor, applies events
//! idempotently, reconnects with jittered exponential backoff, and forgets entries once what
//! they revoke has expired. Lookups ([`RevocationSet::check`]) never wait on the network.

mod feed;
mod set;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use writ_client::{BearerSource, bearer_value};
use writ_proto::revocation::WatchRequest;
use writ_proto::revocation::revocation_service_client::RevocationServiceClient;

pub use feed::{DEFAULT_MAX_STALENESS, RevocationFeed};
pub use set::{OutOfOrder, RevocationSet, TokenFacts};

#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often expired entries are forgotten.
    pub prune_every: Duration,
    /// Seconds past `expires_at` an entry is kept (clock skew).
    pub prune_margin: i64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            prune_every: Duration::from_secs(60),
            prune_margin: 60,
        }
    }
}

/// The background watcher; dropping it (or calling [`Watcher::stop`]) stops it.
#[derive(Debug)]
pub struct Watcher {
    set: Arc<RevocationSet>,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts watching on `channel` (a lazily connecting channel reconnects by itself).
    pub fn spawn(
        channel: Channel,
        tokens: Arc<dyn BearerSource>,
        set: Arc<RevocationSet>,
        config: WatchConfig,
    ) -> Watcher {
        let task = tokio::spawn(run(channel, tokens, set.clone(), config));
        Watcher { set, task }
    }

    pub fn set(&self) -> &Arc<RevocationSet> {
        &self.set
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    // 50% to 100% of the delay, so many watchers do not reconnect in lockstep.
    let f = 0.5 + (u16::from_le_bytes(b) as f64 / u16::MAX as f64) / 2.0;
    d.mul_f64(f)
}

async fn run(
    channel: Channel,
    tokens: Arc<dyn BearerSource>,
    set: Arc<RevocationSet>,
    config: WatchConfig,
) {
    let mut client = RevocationServiceClient::new(channel);
    let mut backoff = config.backoff_min;
    let mut prune = tokio::time::interval(config.prune_every);
    prune.tick().await;
    loop {
        // Fix: the stream is polled across prune ticks. Selecting on a fresh `watch_once` each
        // time dropped the stream at every tick: a feed pruned more often than checkpoints came
        // never synced, a snapshot longer than the interval never completed, and the dropped
        // snapshot was not abandoned.
        let once = watch_once(&mut client, &*tokens, &set);
        tokio::pin!(once);
        let outcome = loop {
            tokio::select! {
                r = &mut once => break r,
                _ = prune.tick() => {
                    let now = writ_token::system_clock().now();
                    let n = set.prune(now, config.prune_margin);
                    if n > 0 {
                        tracing::debug!(pruned = n, "forgot expired revocations");
                    }
                }
            }
        };
        set.abandon_snapshot();
        match outcome {
            // A stream that delivered something was healthy: start the backoff afresh.
            Ok(true) => backoff = config.backoff_min,
            Ok(false) => {}
            // Our credential was refused (its key or client revoked, say): fetch another rather
            // than present the same one until the feed goes stale.
            Err(e) if matches!(e.code(), Code::Unauthenticated | Code::PermissionDenied) => {
                tracing::warn!(error = %e, cursor = set.cursor(), "the revocation service refused the watch token");
                tokens.refused();
            }
            Err(e) => {
                tracing::debug!(error = %e, cursor = set.cursor(), "revocation watch interrupted")
            }
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

/// One stream, until it ends. Returns whether anything was received.
async fn watch_once(
    client: &mut RevocationServiceClient<Channel>,
    tokens: &dyn BearerSource,
    set: &RevocationSet,
) -> Result<bool, Status> {
    let token = tokens.bearer().await?;
    let mut request = Request::new(WatchRequest {
        from_sequence: set.cursor(),
    });
    request
        .metadata_mut()
        .insert("authorization", bearer_value(&token)?);
    let mut stream = client.watch(request).await?.into_inner();
    let mut received = false;
    while let Some(message) = stream.message().await? {
        received = true;
        if let Err(OutOfOrder(why)) = set.apply(&message) {
            tracing::warn!(
                why,
                cursor = set.cursor(),
                "revocation stream out of order; resuming"
            );
            return Ok(received);
        }
    }
    Ok(received)
}
