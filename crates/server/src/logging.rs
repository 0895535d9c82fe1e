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
/// parse), text or JSON lines on stderr.
pub fn init(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.fmt_fields(escaped_fields()).try_init()
    };
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
