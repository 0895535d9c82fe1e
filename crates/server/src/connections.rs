//! Bounds on open connections, per source address and in all, for both listeners of a service.
//! A connection past either bound is closed as soon as it is accepted: one source cannot take
//! every connection slot (nor every file descriptor) of a service.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How many connections a service keeps open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From one source address (default 512).
    pub per_source: usize,
    /// In all, per listener (default 10,000).
    pub total: usize,
    /// How long an HTTP connection (HTTP/1.1 keep-alive or HTTP/2) may stay open with no
    /// request in flight before it is closed (default 60 s).
    pub http_idle: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            per_source: 512,
            total: 10_000,
            http_idle: Duration::from_secs(60),
        }
    }
}

/// Whether a connection is busy, and since when it has not been.
#[derive(Debug)]
pub(crate) struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `started` when the last request finished.
    idle_since_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Resolves once the connection has had no request in flight for `limit`.
    pub(crate) async fn idle_for(&self, limit: Duration) {
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        loop {
            // In flight first: a request ending between the two reads then reads as busy (its
            // end is stored before the count drops), never as idle since long ago.
            let busy = self.in_flight.load(Ordering::Acquire) > 0;
            let idle_ms = self
                .now_ms()
                .saturating_sub(self.idle_since_ms.load(Ordering::Acquire));
            if !busy && idle_ms >= limit_ms {
                return;
            }
            let wait = if busy {
                limit_ms.min(1000)
            } else {
                limit_ms - idle_ms
            };
            tokio::time::sleep(Duration::from_millis(wait.max(50))).await;
        }
    }
}

/// A service that keeps its connection's [`Activity`]: a request is in flight from its call
/// until its response (head) is ready.
#[derive(Debug, Clone)]
pub(crate) struct Tracked<S> {
    pub(crate) inner: S,
    pub(crate) activity: Arc<Activity>,
}

impl<S, R> tower::Service<R> for Tracked<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        let done = InFlight(self.activity.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let r = response.await;
            drop(done);
            r
        })
    }
}

/// Ends a request's time in flight, however its future ends (completed or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .idle_since_ms
            .store(self.0.now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub(crate) struct Connections {
    limits: ConnectionLimits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Connections {
    pub(crate) fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Connections {
            limits,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// How many connections are open now.
    pub(crate) fn open(&self) -> usize {
        self.open.lock().0
    }

    /// A slot for a connection from `peer`, or `None` past a bound.
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Slot> {
        let ip = peer.ip();
        let mut open = self.open.lock();
        let from = open.1.get(&ip).copied().unwrap_or(0);
        if open.0 >= self.limits.total || from >= self.limits.per_source {
            tracing::warn!(target: "writ::audit", event = "connection_refused", %peer, why = if from >= self.limits.per_source { "per_source" } else { "total" });
            return None;
        }
        open.0 += 1;
        open.1.insert(ip, from + 1);
        Some(Slot {
            connections: self.clone(),
            ip,
        })
    }
}

/// An admitted connection's place, given back when it closes.
#[derive(Debug)]
pub(crate) struct Slot {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.connections.open.lock();
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// A TCP stream holding its slot for as long as it is open (the gRPC listener's connections).
#[derive(Debug)]
pub(crate) struct Admitted {
    stream: TcpStream,
    _slot: Slot,
}

impl Admitted {
    pub(crate) fn new(stream: TcpStream, slot: Slot) -> Self {
        Admitted {
            stream,
            _slot: slot,
        }
    }
}

impl tonic::transport::server::Connected for Admitted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// How long a client has to finish its TLS handshake.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS handshakes of `incoming`'s connections, each in a task of its own (at most
/// [`TLS_HANDSHAKE_TIMEOUT`]), so a slow or silent client holds up no other; the streams in the
/// order their handshakes finish. Stops accepting once the stream it returns is dropped.
pub(crate) fn tls_handshakes<S>(
    incoming: S,
    acceptor: tokio_rustls::TlsAcceptor,
) -> impl futures::Stream<Item = Result<tokio_rustls::server::TlsStream<Admitted>, std::io::Error>>
where
    S: futures::Stream<Item = Result<Admitted, std::io::Error>> + Send + 'static,
{
    use futures::StreamExt as _;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let next = tokio::select! {
                _ = tx.closed() => break,
                next = incoming.next() => next,
            };
            match next {
                None => break,
                Some(Err(e)) => tracing::debug!(error = %e, "accept failed"),
                Some(Ok(conn)) => {
                    let (tx, acceptor) = (tx.clone(), acceptor.clone());
                    tokio::spawn(async move {
                        let handshake =
                            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(conn));
                        // A server that stops drops its half-open connections at once.
                        let done = tokio::select! {
                            _ = tx.closed() => return,
                            done = handshake => done,
                        };
                        match done {
                            Ok(Ok(tls)) => {
                                let _ = tx.send(Ok(tls)).await;
                            }
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    });
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_source_and_in_all_and_given_back() {
        let c = Connections::new(ConnectionLimits {
            per_source: 2,
            total: 3,
            ..ConnectionLimits::default()
        });
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap_or_else(|_| unreachable!());
        let b: SocketAddr = "10.0.0.2:1".parse().unwrap_or_else(|_| unreachable!());
        let a1 = c.admit(a);
        let a2 = c.admit(a);
        assert!(a1.is_some() && a2.is_some());
        assert!(c.admit(a).is_none(), "per source");
        let b1 = c.admit(b);
        assert!(b1.is_some());
        assert!(c.admit(b).is_none(), "in all");
        drop(a1);
        assert!(c.admit(a).is_some(), "given back");
    }
}
