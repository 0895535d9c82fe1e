//! The operations listener: `/metrics` (Prometheus, OpenMetrics text), `/livez` (the process
//! serves) and `/readyz` (every readiness check passes: its store answers, its revocation feed is
//! fresh...). Plain HTTP, meant for loopback or a scrape network: it carries no secret and takes
//! no input.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::{ConnectionLimits, ShutdownSignal};

type Check =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Longest a readiness check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What must hold for the process to take traffic. Services add their checks as they start.
#[derive(Clone, Default)]
pub struct Readiness(Arc<Mutex<Vec<Named>>>);

/// A readiness check and its name.
type Named = (&'static str, Arc<Check>);

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.0.lock().iter().map(|(n, _)| *n).collect();
        f.debug_tuple("Readiness").field(&names).finish()
    }
}

impl Readiness {
    /// Adds a check named `name` (`Err(why)`: not ready).
    pub fn add<F, Fut>(&self, name: &'static str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: Check = Box::new(move || Box::pin(check()));
        self.0.lock().push((name, Arc::new(check)));
    }

    /// Runs every check (each bounded by [`CHECK_TIMEOUT`]): the failures, by name.
    pub async fn failures(&self) -> Vec<(&'static str, String)> {
        let checks: Vec<_> = self.0.lock().clone();
        let mut failed = Vec::new();
        for (name, check) in checks {
            match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => failed.push((name, why)),
                Err(_) => failed.push((name, "the check timed out".to_owned())),
            }
        }
        failed
    }
}

/// Serves the operations endpoints on `listener` until `shutdown`.
pub async fn serve_ops(listener: TcpListener, readiness: Readiness, shutdown: ShutdownSignal) {
    use axum::routing::get;
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(http::header::CONTENT_TYPE, writ_metrics::CONTENT_TYPE)],
                    writ_metrics::encode(),
                )
            }),
        )
        .route("/livez", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    let failed = readiness.failures().await;
                    if failed.is_empty() {
                        (http::StatusCode::OK, "ready\n".to_owned()).into_response()
                    } else {
                        let body: String = failed
                            .iter()
                            .map(|(name, why)| format!("{name}: {why}\n"))
                            .collect();
                        (http::StatusCode::SERVICE_UNAVAILABLE, body).into_response()
                    }
                }
            }),
        );
    crate::serve_http(
        listener,
        router,
        None,
        ConnectionLimits::default(),
        shutdown,
    )
    .await;
}
