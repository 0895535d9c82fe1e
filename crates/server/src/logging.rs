//! The process's log: `tracing` events as text lines (or JSON lines) on stderr, where no field
//! can forge a line.
//!
//! Audit events carry what callers sent (a client id that failed to authenticate, a username, a
//! grant type), and a value with a line break in it would otherwise print as a second, forged
//! event. Every field value is written with its control characters escaped (`\n`, `\r`,
//! `\u{1b}`...), so one event is always one line. (JSON lines escape them already.)

use std::fmt::Write as _;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{FormatFields, Writer, debug_fn};

/// Installs the process's subscriber: `filter` (an `EnvFilter` directive; `info` if it does not
/// parse), text or JSON lines on stderr, and spans into OpenTelemetry through `traces` (see
/// `writ_telemetry`), if given.
pub fn init(filter: &str, json: bool, traces: Option<&writ_telemetry::Tracing>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let env_filter = || {
        tracing_subscriber::EnvFilter::try_new(filter)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    // Spans reach OpenTelemetry whatever the log level (a trace must not break because logs
    // are quiet), Writ's and its dependencies' down to INFO.
    let spans = tracing_subscriber::filter::filter_fn(|m| {
        m.is_span() && *m.level() <= tracing::Level::INFO
    });
    let _ = tracing_subscriber::registry()
        .with(traces.map(|t| t.layer().with_filter(spans)))
        .with(json.then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .json()
                .with_filter(env_filter())
        }))
        .with((!json).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .fmt_fields(escaped_fields())
                .with_filter(env_filter())
        }))
        .try_init();
}

/// Text fields, `name=value` separated by spaces (the message bare), control characters escaped.
pub fn escaped_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    debug_fn(
        |writer: &mut Writer<'_>, field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
            let mut rendered = String::new();
            let _ = write!(rendered, "{value:?}");
            let rendered = escape_controls(&rendered);
            if field.name() == "message" {
                write!(writer, "{rendered}")
            } else {
                write!(writer, "{}={rendered}", field.name())
            }
        },
    )
    .delimited(" ")
}

/// `s` with every control character written as its Rust escape.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_nothing_else_changes() {
        assert_eq!(escape_controls("orders"), "orders");
        assert_eq!(
            escape_controls("x\r\n2026 WARN writ::audit: event=\"token_issued\"\u{1b}[0m"),
            "x\\r\\n2026 WARN writ::audit: event=\"token_issued\"\\u{1b}[0m"
        );
    }
}
