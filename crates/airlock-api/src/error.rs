//! API errors as responses: each [`DaemonError`] becomes its status and a JSON
//! [`ErrorBody`] with a stable code and a precise message.

use crate::daemon::DaemonError;
use crate::types::ErrorBody;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The status and body of an error.
pub fn parts(e: &DaemonError) -> (StatusCode, ErrorBody) {
    let (status, code) = match e {
        DaemonError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        DaemonError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
        DaemonError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        DaemonError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        DaemonError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        DaemonError::BootFailed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "boot_failed"),
        DaemonError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    (
        status,
        ErrorBody {
            error: code.into(),
            detail: e.to_string(),
        },
    )
}

/// An error response with an explicit status and code.
pub fn response(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    (
        status,
        axum::Json(ErrorBody {
            error: code.into(),
            detail: detail.into(),
        }),
    )
        .into_response()
}

impl IntoResponse for DaemonError {
    fn into_response(self) -> Response {
        let (status, body) = parts(&self);
        if status.is_server_error() {
            tracing::warn!(error = %body.detail, "request failed");
        }
        (status, axum::Json(body)).into_response()
    }
}
