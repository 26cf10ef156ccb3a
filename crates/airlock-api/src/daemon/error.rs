//! How the daemon fails a request: a status class and a precise message, shared by every
//! handler (`crate::error` turns it into the HTTP reply).

use airlock_supervisor::launch::LaunchError;

/// An API-level failure: the status class and a precise message.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No such sandbox or exec.
    #[error("{0}")]
    NotFound(String),
    /// The request is wrong; `field` names the request field.
    #[error("{field}: {message}")]
    BadRequest {
        /// Request field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The request conflicts with the sandbox's state or the daemon's limits.
    #[error("{0}")]
    Conflict(String),
    /// The guest refused a file operation for lack of permission.
    #[error("{0}")]
    Forbidden(String),
    /// The content is too large.
    #[error("{0}")]
    TooLarge(String),
    /// The sandbox did not boot.
    #[error("{0}")]
    BootFailed(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl DaemonError {
    /// A 400 naming `field`.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> DaemonError {
        DaemonError::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<LaunchError> for DaemonError {
    fn from(e: LaunchError) -> Self {
        match e {
            LaunchError::Invalid { field, message } => DaemonError::bad(field, message),
            e => DaemonError::Internal(airlock_jail::error_chain(&e)),
        }
    }
}
