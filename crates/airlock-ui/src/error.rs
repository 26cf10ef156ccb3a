//! Failures of the page's endpoints, rendered as `{"error": "..."}` with a status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// No such sandbox, log or overlay.
    #[error("{0}")]
    NotFound(String),
    /// A malformed parameter, named.
    #[error("{0}")]
    BadRequest(String),
    /// The request conflicts with the sandbox's state (still running, busy).
    #[error("{0}")]
    Conflict(String),
    /// Reading a log or an overlay failed.
    #[error("{0}")]
    Internal(String),
}

impl UiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<airlock_supervisor::review::ReviewError> for UiError {
    fn from(e: airlock_supervisor::review::ReviewError) -> Self {
        use airlock_supervisor::review::ReviewError as R;
        let text = error_chain(&e);
        match e {
            R::BadId(_) => Self::BadRequest(text),
            R::NoOverlay { .. } => Self::NotFound(text),
            R::Running(_) | R::Busy(_) => Self::Conflict(text),
            _ => Self::Internal(text),
        }
    }
}

pub use airlock_jail::error_chain;

/// A JSON error body with `status`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        json_error(self.status(), &self.to_string())
    }
}
