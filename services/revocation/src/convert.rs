//! Protobuf messages to and from the log's types.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use writ_proto::revocation as pb;
use writ_revocation_client::convert::{entry_from_pb, entry_to_pb};
use writ_revocation_log::{Event, LogError};
use writ_token::RevocationEntry;

/// `google.rpc.ErrorInfo.domain` of revocation service errors.
pub const ERROR_DOMAIN: &str = "revocation.writ.dev";

pub fn status(code: Code, reason: &str, message: impl Into<String>) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new()),
    )
}

/// The one place log errors become statuses.
pub fn log_status(e: LogError) -> Status {
    match e {
        LogError::Invalid(e) => status(Code::InvalidArgument, "invalid_entry", e.to_string()),
        LogError::InvalidRequest(m) => status(Code::InvalidArgument, "invalid_request", m),
        LogError::CursorAhead => status(
            Code::OutOfRange,
            "cursor_ahead",
            "the cursor is ahead of the log",
        ),
        LogError::Truncated => status(
            Code::OutOfRange,
            "cursor_truncated",
            "the cursor is older than the log",
        ),
        LogError::Store(e) => {
            tracing::error!(error = %e, "revocation log storage failure");
            status(
                Code::Unavailable,
                "storage",
                "the revocation log is unavailable",
            )
        }
    }
}

/// An entry from a request. `not_before` defaults to `now` for subject and client entries.
pub fn entry(e: pb::RevocationEntry, now: i64) -> Result<RevocationEntry, Status> {
    entry_from_pb(e, now).ok_or_else(|| {
        status(
            Code::InvalidArgument,
            "invalid_entry",
            "unknown revocation kind",
        )
    })
}

pub fn event(ev: &Event) -> pb::WatchResponse {
    pb::WatchResponse {
        event: Some(pb::watch_response::Event::Revocation(pb::RevocationEvent {
            sequence: ev.sequence,
            entry: Some(entry_to_pb(&ev.entry)),
        })),
    }
}
