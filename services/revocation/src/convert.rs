//! Log events as messages, and the service's own refusals. (Entries are converted by
//! `writ_proto::convert`; log errors become statuses through `writ_proto::refusal`.)

use tonic::Status;
use writ_proto::revocation as pb;
use writ_revocation_log::{ERROR_DOMAIN, Event};
use writ_vocabulary::{Kind, Refusal};

/// A refusal of the service itself (not of the log), as a status.
pub fn refused(kind: Kind, reason: &'static str, message: impl Into<String>) -> Status {
    writ_proto::refusal::to_status(Refusal::new(kind, ERROR_DOMAIN, reason, message))
}

pub fn event(ev: &Event) -> pb::WatchResponse {
    pb::WatchResponse {
        event: Some(pb::watch_response::Event::Revocation(pb::RevocationEvent {
            sequence: ev.sequence,
            entry: Some(writ_proto::convert::revocation_message(&ev.entry)),
        })),
    }
}
