//! How the E2B API fails a request: E2B's error shape `{"code": <HTTP status>, "message": ...}`
//! (what the SDK's control-plane client and its envd HTTP client read), and Connect's error
//! codes for RPCs.

use airlock_api::daemon::DaemonError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A failed E2B request.
#[derive(Debug, thiserror::Error)]
pub enum E2bError {
    /// No `X-API-Key` header, or not the daemon's token.
    #[error("{0}")]
    BadApiKey(&'static str),
    /// No `X-Access-Token` header, or not the sandbox's access token.
    #[error("{0}")]
    BadAccessToken(String),
    /// No `E2b-Sandbox-Id` header, or not a sandbox created through this API.
    #[error("{0}")]
    UnknownSandbox(String),
    /// The request is malformed (`what` names the part).
    #[error("{what}: {message}")]
    BadRequest {
        /// The part of the request (`body`, `path`, a header...).
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// This part of the E2B API is not implemented by airlock (see docs/e2b.md).
    #[error("{0} is not supported by airlock's E2B API (see docs/e2b.md)")]
    Unsupported(String),
    /// The daemon refused or failed the operation (policy, guest, limits).
    #[error("{0}")]
    Daemon(#[from] DaemonError),
}

impl E2bError {
    /// A malformed request.
    pub fn bad(what: &'static str, message: impl Into<String>) -> E2bError {
        E2bError::BadRequest {
            what,
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            E2bError::BadApiKey(_) | E2bError::BadAccessToken(_) => StatusCode::UNAUTHORIZED,
            E2bError::UnknownSandbox(_) => StatusCode::NOT_FOUND,
            E2bError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            E2bError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            E2bError::Daemon(e) => airlock_api::error::parts(e).0,
        }
    }

    /// The Connect error code of this error.
    pub fn connect_code(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "unauthenticated",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::BAD_REQUEST => "invalid_argument",
            StatusCode::FORBIDDEN => "permission_denied",
            StatusCode::CONFLICT => "failed_precondition",
            StatusCode::PAYLOAD_TOO_LARGE => "resource_exhausted",
            StatusCode::NOT_IMPLEMENTED => "unimplemented",
            _ => "internal",
        }
    }

    /// Connect's error JSON: `{"code": "...", "message": "..."}`.
    pub fn connect_json(&self) -> serde_json::Value {
        serde_json::json!({"code": self.connect_code(), "message": self.to_string()})
    }
}

/// E2B's error body with `status`.
pub fn response(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"code": status.as_u16(), "message": message})),
    )
        .into_response()
}

impl IntoResponse for E2bError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
            tracing::warn!(error = %self, "E2B request failed");
        }
        response(status, &self.to_string())
    }
}
