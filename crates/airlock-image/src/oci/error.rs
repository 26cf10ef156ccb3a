//! Why an import failed.

use crate::ImageError;
use std::path::{Path, PathBuf};

/// Why an import failed (converted to [`ImageError::BadInput`] for the CLI).
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A file could not be read.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The input is not a usable image.
    #[error("{}: {message}", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl OciError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> OciError {
        OciError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn bad(path: &Path, message: impl Into<String>) -> OciError {
        OciError::Bad {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl From<OciError> for ImageError {
    fn from(e: OciError) -> Self {
        match e {
            OciError::Io { what, path, source } => ImageError::BadInput {
                message: format!("{what}: {source}"),
                path,
            },
            OciError::Bad { path, message } => ImageError::BadInput { path, message },
        }
    }
}
