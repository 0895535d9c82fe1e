//! Traces across Writ's processes, the OpenTelemetry way.
//!
//! - Every call a Writ server receives (gRPC or HTTP) runs in a `request` span whose parent is
//!   the caller's W3C Trace Context (`traceparent`, `tracestate`), read by OpenTelemetry's own
//!   propagator ([`server_span`]).
//! - Every call Writ makes to another Writ service (the STS reading clients and policies, a
//!   token source, the revocation publisher and watchers) carries the current span's context
//!   ([`inject_headers`], [`inject_metadata`]): one trace runs through the STS, the
//!   authorization server and the revocation service.
//! - Spans go to an OpenTelemetry collector over OTLP/gRPC when an endpoint is configured
//!   ([`Tracing::start`]); without one they still get ids, and every log line inside a request
//!   carries its `trace_id`, so logs of different processes can be joined.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The process's tracer provider: flushes what it holds when dropped (at shutdown).
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// A provider for `service` (the OpenTelemetry `service.name`), exporting to the OTLP/gRPC
    /// `endpoint` (`http://collector:4317`) in batches when one is given. Must be called inside
    /// a Tokio runtime when exporting (the exporter's connection lives on it).
    pub fn start(service: &str, endpoint: Option<&str>) -> Result<Tracing, String> {
        use opentelemetry_otlp::WithExportConfig as _;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service.to_owned())
            .build();
        let mut builder = SdkTracerProvider::builder().with_resource(resource);
        if let Some(endpoint) = endpoint {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(std::time::Duration::from_secs(5))
                .build()
                .map_err(|e| format!("the OTLP exporter to {endpoint}: {e}"))?;
            builder = builder.with_batch_exporter(exporter);
        }
        Ok(Tracing {
            provider: builder.build(),
        })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans of this provider.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + 'static
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("writ"))
            .with_tracked_inactivity(false)
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        // Exports what is still batched (bounded by the exporter's timeout).
        let _ = self.provider.shutdown();
    }
}

/// The span a server runs one call in: named after `method` (the gRPC path, or the HTTP
/// method and path), its parent the caller's trace context from `headers` (none: a new trace).
/// Its `trace_id` field puts the trace id on every log line written inside it.
pub fn server_span(method: &str, headers: &http::HeaderMap) -> tracing::Span {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let span = tracing::info_span!(
        "request",
        otel.name = %method,
        otel.kind = "server",
        trace_id = tracing::field::Empty,
    );
    // No OpenTelemetry layer installed (a library user, a test): nothing to attach to.
    let _ = span.set_parent(parent);
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    span
}

/// Writes the current span's trace context into outgoing HTTP (and so gRPC) headers.
pub fn inject_headers(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

/// [`inject_headers`] for a tonic request's metadata (an interceptor's).
pub fn inject_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
    }
}

/// The trace id of the current span, if it has one (for tests and diagnostics).
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let id = cx.span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn a_callers_trace_continues_in_the_server_span_and_into_the_calls_it_makes() {
        let tracing = Tracing::start("test", None).unwrap();
        let subscriber = tracing_subscriber::registry().with(tracing.layer());
        tracing::subscriber::with_default(subscriber, || {
            let mut incoming = http::HeaderMap::new();
            incoming.insert(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                    .parse()
                    .unwrap(),
            );
            let span = server_span("/writ.Test/Call", &incoming);
            let _entered = span.enter();
            assert_eq!(
                current_trace_id().as_deref(),
                Some("0af7651916cd43dd8448eb211c80319c")
            );
            let mut outgoing = tonic::metadata::MetadataMap::new();
            inject_metadata(&mut outgoing);
            let sent = outgoing.get("traceparent").unwrap().to_str().unwrap();
            assert!(
                sent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
                "{sent}"
            );
            assert!(
                !sent.contains("b7ad6b7169203331"),
                "the parent of the next hop is this span, not the caller's"
            );
        });
    }

    #[test]
    fn a_malformed_traceparent_starts_a_new_trace() {
        let tracing = Tracing::start("test", None).unwrap();
        let subscriber = tracing_subscriber::registry().with(tracing.layer());
        tracing::subscriber::with_default(subscriber, || {
            for bad in [
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "00-0af7651916cd43dd8448eb211c80319c",
                "",
            ] {
                let mut incoming = http::HeaderMap::new();
                incoming.insert("traceparent", bad.parse().unwrap());
                let span = server_span("/writ.Test/Call", &incoming);
                let _entered = span.enter();
                let id = current_trace_id().expect("a new trace");
                assert_ne!(id, "0af7651916cd43dd8448eb211c80319c", "{bad}");
            }
        });
    }
}
