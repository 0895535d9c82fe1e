//! How a refusal looks on the wire: the one mapping of a [`Refusal`] to a `tonic::Status`
//! (with its `google.rpc.ErrorInfo`) and to an RFC 6749 section 5.2 JSON response. Every
//! service and both HTTP facades answer through here.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use writ_vocabulary::{Kind, Refusal, Refuse};

/// The gRPC code of a kind of refusal.
pub fn grpc_code(kind: Kind) -> Code {
    match kind {
        Kind::InvalidArgument => Code::InvalidArgument,
        Kind::Unauthenticated => Code::Unauthenticated,
        Kind::PermissionDenied => Code::PermissionDenied,
        Kind::NotFound => Code::NotFound,
        Kind::Unimplemented => Code::Unimplemented,
        Kind::AlreadyExists => Code::AlreadyExists,
        Kind::Conflict => Code::Aborted,
        Kind::OutOfRange => Code::OutOfRange,
        Kind::TooLarge | Kind::Exhausted => Code::ResourceExhausted,
        Kind::Unavailable => Code::Unavailable,
        Kind::Internal => Code::Internal,
        Kind::Pending => Code::FailedPrecondition,
    }
}

/// The HTTP status of a kind of refusal at an OAuth endpoint: RFC 6749 section 5.2 makes every
/// refusal a 400 but for client authentication (401); server failures are 500 and 503, a body
/// over the limit 413, a path no endpoint has 404, a method an endpoint does not take 405.
pub fn http_status(kind: Kind) -> http::StatusCode {
    match kind {
        Kind::Unauthenticated => http::StatusCode::UNAUTHORIZED,
        Kind::NotFound => http::StatusCode::NOT_FOUND,
        Kind::Unimplemented => http::StatusCode::METHOD_NOT_ALLOWED,
        Kind::TooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
        Kind::Exhausted => http::StatusCode::TOO_MANY_REQUESTS,
        Kind::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
        Kind::Internal => http::StatusCode::INTERNAL_SERVER_ERROR,
        _ => http::StatusCode::BAD_REQUEST,
    }
}

/// The refusal of `error`, its detail logged when the server (or what it depends on) failed:
/// the caller sees only the fixed description.
pub fn refusal_of(error: &(impl Refuse + ?Sized)) -> Refusal {
    let refusal = error.refusal();
    if refusal.log_detail {
        tracing::error!(error = %error, reason = refusal.reason, "request failed");
    }
    refusal
}

/// The status for `error` (see [`refusal_of`]); `.map_err(status)` in a gRPC handler.
pub fn status(error: impl Refuse) -> Status {
    to_status(refusal_of(&error))
}

/// A refusal as a gRPC status: its code, its description as the message, and an `ErrorInfo`
/// with its domain, reason and metadata.
pub fn to_status(r: Refusal) -> Status {
    let metadata: HashMap<String, String> = r
        .metadata
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    Status::with_error_details(
        grpc_code(r.kind),
        r.description,
        ErrorDetails::with_error_info(r.reason, r.domain, metadata),
    )
}

/// The realm of the `Basic` challenge a 401 carries.
pub const REALM: &str = "writ";

/// A refusal as an RFC 6749 section 5.2 response: `{"error", "error_description"}` JSON, never
/// cached (`Cache-Control: no-store`, `Pragma: no-cache`), and on a 401 a `WWW-Authenticate`
/// challenge for client authentication.
pub fn to_http(r: &Refusal) -> http::Response<String> {
    let status = http_status(r.kind);
    let body = serde_json::json!({ "error": r.reason, "error_description": r.description });
    let mut builder = http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-store")
        .header(http::header::PRAGMA, "no-cache");
    if status == http::StatusCode::UNAUTHORIZED {
        builder = builder.header(
            http::header::WWW_AUTHENTICATE,
            format!("Basic realm=\"{REALM}\""),
        );
    }
    builder.body(body.to_string()).unwrap_or_else(|_| {
        // Every header above is a static, valid value: this cannot happen.
        let mut fallback = http::Response::new(String::new());
        *fallback.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use writ_vocabulary::ErrorCode;

    #[test]
    fn one_refusal_two_wire_forms() {
        let r = Refusal::oauth(
            Kind::Unauthenticated,
            ErrorCode::InvalidClient,
            "client authentication failed",
        )
        .with("cause", "secret");
        let status = to_status(r.clone());
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "client authentication failed");
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, "invalid_client");
        assert_eq!(info.domain, "oauth2.writ.dev");
        assert_eq!(info.metadata["cause"], "secret");

        let http = to_http(&r);
        assert_eq!(http.status(), 401);
        assert_eq!(http.headers()["cache-control"], "no-store");
        assert_eq!(http.headers()["www-authenticate"], "Basic realm=\"writ\"");
        let body: serde_json::Value = serde_json::from_str(http.body()).unwrap();
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_description"], "client authentication failed");
    }

    #[test]
    fn oauth_refusals_are_400_over_http_but_for_the_server_and_the_body_size() {
        for (kind, code) in [
            (Kind::InvalidArgument, 400),
            (Kind::PermissionDenied, 400),
            (Kind::TooLarge, 413),
            (Kind::Unavailable, 503),
            (Kind::Internal, 500),
        ] {
            assert_eq!(http_status(kind), code, "{kind:?}");
        }
    }
}
