//! The one place engine errors become gRPC statuses (and HTTP statuses, for the facade).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use writ_oauth::Error;

/// `google.rpc.ErrorInfo.domain` of every Writ OAuth error; `reason` is the RFC error code.
pub const ERROR_DOMAIN: &str = "oauth2.writ.dev";

pub fn grpc_code(e: &Error) -> Code {
    match e {
        Error::InvalidRequest(_) | Error::UnsupportedGrantType => Code::InvalidArgument,
        Error::InvalidClient | Error::AdminUnauthenticated => Code::Unauthenticated,
        Error::InvalidGrant(_)
        | Error::UnauthorizedClient(_)
        | Error::InvalidScope(_)
        | Error::InvalidTarget(_)
        | Error::AccessDenied(_) => Code::PermissionDenied,
        Error::NotFound(_) => Code::NotFound,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::Conflict(_) => Code::Aborted,
        Error::Storage(_) => Code::Unavailable,
        Error::Token(_) | Error::Internal(_) => Code::Internal,
    }
}

pub fn http_status(e: &Error) -> http::StatusCode {
    match grpc_code(e) {
        Code::Unauthenticated => http::StatusCode::UNAUTHORIZED,
        Code::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
        Code::Internal => http::StatusCode::INTERNAL_SERVER_ERROR,
        // RFC 6749 section 5.2: every other error is a 400.
        _ => http::StatusCode::BAD_REQUEST,
    }
}

/// Logs server-side failures (with their detail) and builds the status (without it).
pub fn to_status(e: Error) -> Status {
    if matches!(e, Error::Storage(_) | Error::Token(_) | Error::Internal(_)) {
        tracing::error!(error = %e, "request failed");
    }
    Status::with_error_details(
        grpc_code(&e),
        e.description(),
        ErrorDetails::with_error_info(e.oauth_code(), ERROR_DOMAIN, HashMap::new()),
    )
}
