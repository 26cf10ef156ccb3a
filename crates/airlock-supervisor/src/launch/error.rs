//! Why a sandbox cannot be launched: the caller's mistakes ([`LaunchError::Invalid`], naming
//! the request field) apart from what the host could not do.

use airlock_fs::OverlayError;
use airlock_image::ImageError;
use std::path::PathBuf;

/// Why a sandbox cannot be launched.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The request is wrong: `field` names the request field (API spelling) at fault.
    #[error("{message}")]
    Invalid {
        /// The request field, e.g. `policy`, `profile`, `image`, `workspace`.
        field: &'static str,
        /// What is wrong, with the value.
        message: String,
    },
    /// A policy file could not be read.
    #[error("reading policy file {}", path.display())]
    PolicyFile {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The image could not be opened or checked.
    #[error("{what}")]
    Image {
        /// Which image, as the request named it.
        what: String,
        /// Cause.
        #[source]
        source: Box<ImageError>,
    },
    /// An environment variable airlock reads has a value it cannot use.
    #[error("{var}={value:?}: {expected}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// No directory for something airlock keeps.
    #[error("no directory for {what}: set {vars}")]
    NoDir {
        /// What it is for.
        what: &'static str,
        /// The variables that name it.
        vars: &'static str,
    },
    /// The agent's home could not be made.
    #[error("preparing the agent home")]
    Home(#[source] crate::homes::HomeError),
    /// TLS or a credential could not be prepared.
    #[error("preparing credentials and TLS for the egress gateway")]
    Credentials(#[source] crate::credentials::CredentialError),
    /// The policy's `audit.redact` did not compile.
    #[error("compiling audit.redact")]
    Redact(#[source] regex::Error),
    /// A sandbox id could not be chosen.
    #[error("choosing a sandbox id")]
    Id(#[source] std::io::Error),
    /// A mount names the workspace, but none is bound.
    #[error("mount {0} has no workspace bound")]
    NoWorkspace(String),
    /// An overlay copy could not be made.
    #[error("creating the overlay copy of {} in {}", host.display(), copy.display())]
    Overlay {
        /// The host directory.
        host: PathBuf,
        /// Where the copy goes.
        copy: PathBuf,
        /// Cause.
        #[source]
        source: OverlayError,
    },
    /// A file or directory could not be written.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A background task failed.
    #[error("{0}")]
    Task(&'static str),
}

impl LaunchError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> LaunchError {
        LaunchError::Invalid {
            field,
            message: message.into(),
        }
    }
}
