//! The one place exchange errors become gRPC statuses (and HTTP statuses, for the facade).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use writ_exchange::ExchangeError;

/// `google.rpc.ErrorInfo.domain` of every Writ OAuth error; `reason` is the RFC error code.
pub const ERROR_DOMAIN: &str = "oauth2.writ.dev";

pub fn grpc_code(e: &ExchangeError) -> Code {
    match e {
        ExchangeError::InvalidRequest(_)
        | ExchangeError::Rejected { .. }
        | ExchangeError::UnsupportedGrantType => Code::InvalidArgument,
        ExchangeError::InvalidClient => Code::Unauthenticated,
        ExchangeError::UnauthorizedClient(_)
        | ExchangeError::InvalidScope(_)
        | ExchangeError::InvalidTarget(_) => Code::PermissionDenied,
        ExchangeError::Unavailable(_) => Code::Unavailable,
        ExchangeError::Keys(_) | ExchangeError::Token(_) | ExchangeError::Internal(_) => {
            Code::Internal
        }
    }
}

pub fn http_status(e: &ExchangeError) -> http::StatusCode {
    match grpc_code(e) {
        Code::Unauthenticated => http::StatusCode::UNAUTHORIZED,
        Code::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
        Code::Internal => http::StatusCode::INTERNAL_SERVER_ERROR,
        // RFC 6749 section 5.2: every other error is a 400.
        _ => http::StatusCode::BAD_REQUEST,
    }
}

/// The status for `e`: the RFC error code as `ErrorInfo.reason` and, for a refused subject or
/// actor token, the rule that refused it as `ErrorInfo.metadata["cause"]`. Server failures are
/// logged (by the engine) and described without detail.
pub fn to_status(e: ExchangeError) -> Status {
    let mut metadata = HashMap::new();
    if let Some(cause) = e.cause() {
        metadata.insert("cause".to_owned(), cause.to_owned());
    }
    Status::with_error_details(
        grpc_code(&e),
        e.description(),
        ErrorDetails::with_error_info(e.oauth_code(), ERROR_DOMAIN, metadata),
    )
}
