//! The process's metrics, in one Prometheus registry ([`global`]), encoded as OpenMetrics text
//! for `/metrics` ([`encode`]). Engines record through the typed helpers below, never raw names,
//! so every label value comes from a closed set (no caller-supplied string becomes a label: a
//! client id would make the series unbounded and could carry anything).
//!
//! Gauges that are a state rather than an event (a feed's staleness, a pool's connections) are
//! sampled when `/metrics` is read: whoever owns the state registers a [`sampler`].

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Label = [(&'static str, &'static str); 1];
type Sampler = Box<dyn Fn(&Metrics) + Send + Sync>;

/// Every metric Writ exports.
pub struct Metrics {
    registry: Registry,
    tokens_issued: Family<Label, Counter>,
    tokens_refused: Family<Label, Counter>,
    exchanges: Family<Label, Counter>,
    verify_seconds: Family<Label, Histogram>,
    guard_decisions: Family<Label, Counter>,
    store_seconds: Family<Label, Histogram>,
    feed_staleness: Family<Label, Gauge<f64, AtomicU64>>,
    samplers: Mutex<Vec<Sampler>>,
    gauges: Family<Label, Gauge<i64>>,
    pool_open: Family<Label, Gauge<i64>>,
    pool_idle: Family<Label, Gauge<i64>>,
    subscriber_lag: Histogram,
    /// The hot series, resolved once: a family lookup (a lock and a hash of the labels) per
    /// call cost the guard's cached path a quarter of its time.
    hot: Hot,
}

struct Hot {
    allowed: Counter,
    /// By the token's form: jwt, biscuit, none.
    verify: [Histogram; 3],
    /// client_credentials, refresh_token, password.
    issued: [Counter; 3],
    /// get, commit, scan, durable.
    store: [Histogram; 4],
}

const FORMATS: [&str; 3] = ["jwt", "biscuit", "none"];
const GRANTS: [&str; 3] = ["client_credentials", "refresh_token", "password"];
const STORE_OPS: [&str; 4] = ["get", "commit", "scan", "durable"];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 10 µs to ~5 s.
    Histogram::new(exponential_buckets(0.000_01, 2.5, 15))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("writ");
        let tokens_issued = Family::<Label, Counter>::default();
        registry.register(
            "tokens_issued",
            "Access tokens issued by the authorization server, by grant type",
            tokens_issued.clone(),
        );
        let tokens_refused = Family::<Label, Counter>::default();
        registry.register(
            "tokens_refused",
            "Token requests refused, by RFC 6749 error code",
            tokens_refused.clone(),
        );
        let exchanges = Family::<Label, Counter>::default();
        registry.register(
            "exchanges",
            "RFC 8693 exchanges at the STS, by outcome (issued, or the error code)",
            exchanges.clone(),
        );
        let verify_seconds =
            Family::<Label, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "token_verification_seconds",
            "Time to decide on a presented token in a guard (cache hits included; one decision in 16 is timed), by format",
            verify_seconds.clone(),
        );
        let guard_decisions = Family::<Label, Counter>::default();
        registry.register(
            "guard_decisions",
            "Calls a guard decided, by outcome (allowed, or the refusal's reason)",
            guard_decisions.clone(),
        );
        let store_seconds =
            Family::<Label, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "store_operation_seconds",
            "Storage operation latency, by operation",
            store_seconds.clone(),
        );
        let feed_staleness = Family::<Label, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "revocation_feed_staleness_seconds",
            "Seconds since a revocation feed last heard from the revocation service (-1: never), by follower",
            feed_staleness.clone(),
        );
        let gauges = Family::<Label, Gauge<i64>>::default();
        registry.register(
            "state",
            "Sampled state: revocation log head and live entries, subscribers, open connections",
            gauges.clone(),
        );
        let pool_open = Family::<Label, Gauge<i64>>::default();
        registry.register(
            "store_pool_connections",
            "Connections open to the database, by service",
            pool_open.clone(),
        );
        let pool_idle = Family::<Label, Gauge<i64>>::default();
        registry.register(
            "store_pool_idle_connections",
            "Connections open to the database and idle, by service",
            pool_idle.clone(),
        );
        let subscriber_lag = Histogram::new(exponential_buckets(1.0, 4.0, 10));
        registry.register(
            "revocation_subscriber_lag_events",
            "Events a Watch subscriber was behind the log's head, sampled each time the revocation service delivered to it",
            subscriber_lag.clone(),
        );
        let hot = Hot {
            allowed: guard_decisions
                .get_or_create(&[("outcome", "allowed")])
                .clone(),
            verify: FORMATS.map(|f| verify_seconds.get_or_create(&[("format", f)]).clone()),
            issued: GRANTS.map(|g| tokens_issued.get_or_create(&[("grant_type", g)]).clone()),
            store: STORE_OPS.map(|op| store_seconds.get_or_create(&[("op", op)]).clone()),
        };
        Metrics {
            hot,
            registry,
            tokens_issued,
            tokens_refused,
            exchanges,
            verify_seconds,
            guard_decisions,
            store_seconds,
            feed_staleness,
            samplers: Mutex::new(Vec::new()),
            gauges,
            pool_open,
            pool_idle,
            subscriber_lag,
        }
    }

    pub fn token_issued(&self, grant_type: &'static str) {
        match GRANTS.iter().position(|g| *g == grant_type) {
            Some(i) => self.hot.issued[i].inc(),
            None => self
                .tokens_issued
                .get_or_create(&[("grant_type", grant_type)])
                .inc(),
        };
    }

    pub fn token_refused(&self, error_code: &'static str) {
        self.tokens_refused
            .get_or_create(&[("error", error_code)])
            .inc();
    }

    pub fn exchange(&self, outcome: &'static str) {
        self.exchanges.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// A guard's decision, counted; `took` when this one was timed (the guard samples).
    pub fn guard_decided(
        &self,
        outcome: &'static str,
        format: &'static str,
        took: Option<Duration>,
    ) {
        if outcome == "allowed" {
            self.hot.allowed.inc();
        } else {
            self.guard_decisions
                .get_or_create(&[("outcome", outcome)])
                .inc();
        }
        let Some(took) = took else { return };
        match FORMATS.iter().position(|f| *f == format) {
            Some(i) => self.hot.verify[i].observe(took.as_secs_f64()),
            None => self
                .verify_seconds
                .get_or_create(&[("format", format)])
                .observe(took.as_secs_f64()),
        }
    }

    pub fn store_operation(&self, op: &'static str, took: Duration) {
        match STORE_OPS.iter().position(|o| *o == op) {
            Some(i) => self.hot.store[i].observe(took.as_secs_f64()),
            None => self
                .store_seconds
                .get_or_create(&[("op", op)])
                .observe(took.as_secs_f64()),
        }
    }

    /// For samplers: a feed's staleness (`None`: never synced).
    pub fn set_feed_staleness(&self, follower: &'static str, staleness: Option<Duration>) {
        self.feed_staleness
            .get_or_create(&[("follower", follower)])
            .set(staleness.map_or(-1.0, |d| d.as_secs_f64()));
    }

    /// How far behind the head a Watch subscriber was after a delivery (events).
    pub fn subscriber_lag(&self, events: u64) {
        self.subscriber_lag.observe(events as f64);
    }

    /// For samplers: a database pool's use.
    pub fn set_store_pool(&self, service: &'static str, open: usize, idle: usize) {
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.pool_open
            .get_or_create(&[("service", service)])
            .set(n(open));
        self.pool_idle
            .get_or_create(&[("service", service)])
            .set(n(idle));
    }

    /// For samplers: one named state value.
    pub fn set_state(&self, name: &'static str, value: i64) {
        self.gauges.get_or_create(&[("name", name)]).set(value);
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Registers `sample`, run each time the metrics are encoded, to set state gauges. Keep it
/// cheap and non-blocking; it must not hold what it samples alive forever (take a `Weak`).
pub fn sampler(sample: impl Fn(&Metrics) + Send + Sync + 'static) {
    global().samplers.lock().push(Box::new(sample));
}

/// The metrics as OpenMetrics text (what Prometheus scrapes), samplers run first.
pub fn encode() -> String {
    let m = global();
    for sample in m.samplers.lock().iter() {
        sample(m);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &m.registry);
    out
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_events_appear_in_the_text() {
        global().token_issued("client_credentials");
        global().token_refused("invalid_client");
        global().guard_decided("allowed", "jwt", Some(Duration::from_micros(40)));
        sampler(|m| m.set_state("revocation_head", 42));
        let text = encode();
        assert!(
            text.contains(r#"writ_tokens_issued_total{grant_type="client_credentials"}"#),
            "{text}"
        );
        assert!(text.contains(r#"writ_tokens_refused_total{error="invalid_client"}"#));
        assert!(text.contains(r#"writ_token_verification_seconds_bucket{le="#));
        assert!(text.contains(r#"writ_state{name="revocation_head"} 42"#));
        assert!(text.ends_with("# EOF\n"));
    }
}
