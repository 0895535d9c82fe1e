//! One Watch subscriber: its own task reading the shared log, so a slow subscriber never stalls
//! the others. It sends into a bounded buffer; if the buffer stays full for longer than the
//! configured time the subscriber is cut off with RESOURCE_EXHAUSTED and resumes by cursor.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tonic::Status;
use writ_proto::revocation::{
    Checkpoint, SnapshotBegin, SnapshotEnd, WatchResponse, watch_response,
};
use writ_revocation_log::{LogError, RevocationLog};
use writ_server::ShutdownSignal;
use writ_vocabulary::Kind;

use crate::convert;

#[derive(Debug, Clone, Copy)]
pub struct SubscriberConfig {
    pub checkpoint_interval: Duration,
    pub buffer: usize,
    pub slow_timeout: Duration,
    /// Watch streams open at once, in all and per caller (client id).
    pub max_subscribers: u32,
    pub max_subscribers_per_caller: u32,
}

/// The response stream: the buffered messages, unless the subscriber was cut off, in which case
/// the cut-off status comes first and ends it.
#[derive(Debug)]
pub struct SubscriberStream {
    messages: mpsc::Receiver<WatchResponse>,
    cut: Option<oneshot::Receiver<Status>>,
}

impl futures::Stream for SubscriberStream {
    type Item = Result<WatchResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(cut) = self.cut.as_mut()
            && let Poll::Ready(r) = Pin::new(cut).poll(cx)
        {
            self.cut = None;
            if let Ok(status) = r {
                self.messages.close();
                return Poll::Ready(Some(Err(status)));
            }
        }
        self.messages.poll_recv(cx).map(|m| m.map(Ok))
    }
}

/// A subscriber's place among the live ones (counted for GetStatus and the caps), given up
/// when its task ends.
pub struct Registration {
    total: Arc<AtomicU32>,
    per_caller: Arc<parking_lot::Mutex<HashMap<String, u32>>>,
    caller: String,
}

impl Registration {
    /// A place for `caller`, unless the service already has `max_total` subscribers or the
    /// caller `max_per_caller`.
    pub fn take(
        total: &Arc<AtomicU32>,
        per_caller: &Arc<parking_lot::Mutex<HashMap<String, u32>>>,
        caller: &str,
        max_total: u32,
        max_per_caller: u32,
    ) -> Result<Registration, Status> {
        let mut callers = per_caller.lock();
        let mine = callers.get(caller).copied().unwrap_or(0);
        if mine >= max_per_caller || total.load(Ordering::Relaxed) >= max_total {
            return Err(convert::refused(
                Kind::Exhausted,
                "too_many_subscribers",
                "too many Watch streams open (for this caller, or in all); close one or retry later",
            ));
        }
        callers.insert(caller.to_owned(), mine + 1);
        total.fetch_add(1, Ordering::Relaxed);
        Ok(Registration {
            total: total.clone(),
            per_caller: per_caller.clone(),
            caller: caller.to_owned(),
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        let mut callers = self.per_caller.lock();
        if let Some(n) = callers.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                callers.remove(&self.caller);
            }
        }
    }
}

/// Whether the caller may still watch: checked again every checkpoint interval, so a stream
/// ends once its caller's token expires or is revoked (a disabled or deleted client is cut off,
/// which revokes its tokens).
pub type CallerCheck =
    Box<dyn Fn() -> writ_token::BoxFuture<'static, Result<(), Status>> + Send + Sync>;

/// Starts a subscriber after `cursor` (the last sequence it applied).
pub fn spawn(
    log: Arc<RevocationLog>,
    cursor: u64,
    config: SubscriberConfig,
    registered: Registration,
    now: impl Fn() -> i64 + Send + Sync + 'static,
    caller: CallerCheck,
    shutdown: ShutdownSignal,
) -> SubscriberStream {
    let (tx, rx) = mpsc::channel(config.buffer.max(1));
    let (cut_tx, cut_rx) = oneshot::channel();
    tokio::spawn(async move {
        let _registered = registered;
        let mut sub = Subscriber {
            log,
            tx,
            config,
            cursor,
            now,
        };
        // Fix: a Watch stream never ends by itself, and the server's graceful shutdown waits
        // for every open stream, so stopping the service hung while anyone was subscribed. On
        // shutdown the stream now ends with UNAVAILABLE; the subscriber resumes by cursor.
        let recheck = config.checkpoint_interval;
        let outcome = tokio::select! {
            r = sub.run() => r,
            status = async {
                loop {
                    tokio::time::sleep(recheck).await;
                    if let Err(status) = caller().await {
                        break status;
                    }
                }
            } => Err(status),
            _ = shutdown.wait() => Err(convert::refused(
                Kind::Unavailable,
                "shutting_down",
                "the revocation service is stopping; resume from your cursor",
            )),
        };
        if let Err(status) = outcome {
            let _ = cut_tx.send(status);
        }
    });
    SubscriberStream {
        messages: rx,
        cut: Some(cut_rx),
    }
}

struct Subscriber<F> {
    log: Arc<RevocationLog>,
    tx: mpsc::Sender<WatchResponse>,
    config: SubscriberConfig,
    cursor: u64,
    now: F,
}

impl<F: Fn() -> i64> Subscriber<F> {
    async fn run(&mut self) -> Result<(), Status> {
        let mut head = self.log.subscribe();
        // Whether this stream has said it is current yet: the first time it catches up it says
        // so at once (a checkpoint), so a new subscriber need not wait an idle interval to know.
        let mut announced = false;
        loop {
            if self.cursor + 1 < self.log.low() {
                self.snapshot().await?;
            }
            let events = match self.log.read(self.cursor, 512).await {
                Ok(events) => events,
                Err(LogError::Truncated) => {
                    // Pruned under the cursor (by another replica, perhaps, which this one has
                    // not heard of yet): a snapshot brings the subscriber to the head.
                    self.log
                        .refresh()
                        .await
                        .map_err(writ_proto::refusal::status)?;
                    self.snapshot().await?;
                    continue;
                }
                Err(e) => return Err(writ_proto::refusal::status(e)),
            };
            if !events.is_empty() {
                for ev in events {
                    self.send(convert::event(&ev)).await?;
                    self.cursor = ev.sequence;
                }
                writ_metrics::global().subscriber_lag(self.log.head().saturating_sub(self.cursor));
                continue;
            }
            if !announced {
                announced = true;
                self.checkpoint().await?;
                continue;
            }
            let cursor = self.cursor;
            tokio::select! {
                // The guard `wait_for` returns is dropped at once: it must not live across awaits.
                changed = async { head.wait_for(|h| *h > cursor).await.map(|_| ()) } => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                _ = tokio::time::sleep(self.config.checkpoint_interval) => self.checkpoint().await?,
                _ = self.tx.closed() => return Ok(()),
            }
        }
    }

    /// Caught up: everything up to the cursor has been delivered on this stream.
    async fn checkpoint(&self) -> Result<(), Status> {
        let secs = (self.now)();
        self.send(WatchResponse {
            event: Some(watch_response::Event::Checkpoint(Checkpoint {
                sequence: self.cursor,
                server_time: Some(prost_types::Timestamp {
                    seconds: secs,
                    nanos: 0,
                }),
            })),
        })
        .await
    }

    /// Every live entry as of the head, bracketed, then the cursor moves to that head.
    async fn snapshot(&mut self) -> Result<(), Status> {
        let as_of = self.log.head();
        self.send(WatchResponse {
            event: Some(watch_response::Event::SnapshotBegin(SnapshotBegin {
                sequence: as_of,
                entry_count: self.log.live_count(),
            })),
        })
        .await?;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (page, next) = self
                .log
                .snapshot_page(after.as_deref(), 512)
                .await
                .map_err(writ_proto::refusal::status)?;
            for ev in &page {
                self.send(convert::event(ev)).await?;
            }
            match next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        self.send(WatchResponse {
            event: Some(watch_response::Event::SnapshotEnd(SnapshotEnd {
                sequence: as_of,
            })),
        })
        .await?;
        self.cursor = as_of;
        tracing::debug!(as_of, "sent a snapshot");
        Ok(())
    }

    async fn send(&self, msg: WatchResponse) -> Result<(), Status> {
        // Room in the buffer (the usual case, and every message of a catch-up the subscriber
        // keeps up with): no timer to arm.
        let msg = match self.tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Status::cancelled(GONE)),
            Err(mpsc::error::TrySendError::Full(msg)) => msg,
        };
        match self.tx.send_timeout(msg, self.config.slow_timeout).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                tracing::warn!(cursor = self.cursor, "cut off a slow revocation subscriber");
                Err(convert::refused(
                    Kind::Exhausted,
                    "subscriber_too_slow",
                    format!(
                        "the subscriber fell behind; resume from sequence {}",
                        self.cursor
                    ),
                ))
            }
            // The client went away.
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(Status::cancelled(GONE)),
        }
    }
}

const GONE: &str = "the subscriber went away";
