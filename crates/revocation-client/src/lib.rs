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
    /// A stream that carries nothing (not even a checkpoint) this long is given up, and the
    /// next endpoint tried: a replica that hangs without closing is left like one that died.
    /// Keep it well above the service's checkpoint interval (1 s by default).
    pub silence: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            prune_every: Duration::from_secs(60),
            prune_margin: 60,
            // The service checkpoints every second by default.
            silence: Duration::from_secs(10),
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
        Self::spawn_failover(vec![channel], tokens, set, config)
    }

    /// Starts watching the first of `channels` (replicas of one revocation log: they serve the
    /// same sequences), moving to the next whenever a stream fails, ends or falls silent, and
    /// resuming there from the set's cursor: no gap, no duplicate. With no channel, it only
    /// ever fails (the feed stays stale and guards fail closed).
    pub fn spawn_failover(
        channels: Vec<Channel>,
        tokens: Arc<dyn BearerSource>,
        set: Arc<RevocationSet>,
        config: WatchConfig,
    ) -> Watcher {
        let task = tokio::spawn(run(channels, tokens, set.clone(), config));
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
    channels: Vec<Channel>,
    tokens: Arc<dyn BearerSource>,
    set: Arc<RevocationSet>,
    config: WatchConfig,
) {
    let mut clients: Vec<_> = channels
        .into_iter()
        .map(RevocationServiceClient::new)
        .collect();
    if clients.is_empty() {
        tracing::error!("no revocation service endpoint: the feed stays stale");
        return;
    }
    let n = clients.len();
    let mut at = 0;
    // Failures in a row: once every endpoint has failed, the backoff grows.
    let mut failures = 0;
    let mut backoff = config.backoff_min;
    let mut prune = tokio::time::interval(config.prune_every);
    prune.tick().await;
    loop {
        // Fix: the stream is polled across prune ticks. Selecting on a fresh `watch_once` each
        // time dropped the stream at every tick: a feed pruned more often than checkpoints came
        // never synced, a snapshot longer than the interval never completed, and the dropped
        // snapshot was not abandoned.
        let once = watch_once(&mut clients[at], &*tokens, &set, config.silence);
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
        let (received, ended) = outcome;
        if received {
            // The stream was healthy for a while: whatever ended it, start the backoff afresh.
            backoff = config.backoff_min;
            failures = 0;
        }
        match ended {
            Ok(()) if received => {}
            Ok(()) => failures += 1,
            // Our credential was refused (its key or client revoked, say): fetch another rather
            // than present the same one until the feed goes stale.
            Err(e) if matches!(e.code(), Code::Unauthenticated | Code::PermissionDenied) => {
                tracing::warn!(error = %e, cursor = set.cursor(), "the revocation service refused the watch token");
                tokens.refused();
                failures += 1;
            }
            Err(e) => {
                if e.code() == Code::DataLoss {
                    tracing::warn!(
                        why = e.message(),
                        cursor = set.cursor(),
                        endpoint = at,
                        "revocation stream out of order; trying the next endpoint"
                    );
                } else {
                    tracing::debug!(error = %e, cursor = set.cursor(), endpoint = at, "revocation watch interrupted");
                }
                // Ended in error: a failure, even after a healthy run.
                failures += 1;
            }
        }
        // The next replica, from the same cursor.
        at = (at + 1) % n;
        if failures >= n {
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(config.backoff_max);
        } else if failures > 0 || n == 1 {
            tokio::time::sleep(jitter(config.backoff_min)).await;
        }
    }
}

/// One stream, until it ends: whether anything was received, and how it ended.
async fn watch_once(
    client: &mut RevocationServiceClient<Channel>,
    tokens: &dyn BearerSource,
    set: &RevocationSet,
    silence: Duration,
) -> (bool, Result<(), Status>) {
    let mut received = false;
    let r = async {
        let token = tokens.bearer().await?;
        let mut request = Request::new(WatchRequest {
            from_sequence: set.cursor(),
        });
        request
            .metadata_mut()
            .insert("authorization", bearer_value(&token)?);
        let mut stream = tokio::time::timeout(silence, client.watch(request))
            .await
            .map_err(|_| Status::deadline_exceeded("the revocation service did not answer"))??
            .into_inner();
        loop {
            let Some(message) = tokio::time::timeout(silence, stream.message())
                .await
                .map_err(|_| Status::deadline_exceeded("the revocation feed fell silent"))??
            else {
                return Ok(());
            };
            received = true;
            // A server out of order (a gap, a snapshot behind the cursor) is a failure, not a
            // healthy stream: the next endpoint is tried, and the backoff grows if all fail.
            set.apply(&message)
                .map_err(|OutOfOrder(why)| Status::data_loss(why))?;
        }
    }
    .await;
    (received, r)
}
