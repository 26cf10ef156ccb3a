//! Why a jail could not be built or entered.

use std::io;
use std::path::PathBuf;

/// Why a jail could not be built or entered; every variant keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// A path to pass to the kernel holds a NUL byte.
    #[error("path {} contains NUL", .0.display())]
    Nul(PathBuf),
    /// Preparing the jail's files failed.
    #[error("preparing {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A mount failed.
    #[error("mount on {}", target.display())]
    Mount {
        /// Where.
        target: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// New namespaces were refused.
    #[error("entering new namespaces")]
    Namespaces(#[source] io::Error),
    /// Pivoting into the jail's root failed.
    #[error("pivoting into the jail's root")]
    Pivot(#[source] io::Error),
    /// A share could not be mounted into a gateway's jail.
    #[error("{what}")]
    Attach {
        /// The step that failed.
        what: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A share mount was refused before anything was done.
    #[error("{0}")]
    AttachRefused(String),
    /// Changing uid, groups or capabilities failed.
    #[error("changing identity")]
    Identity(#[source] io::Error),
    /// `no_new_privs` or `PR_SET_DUMPABLE` failed.
    #[error("setting process flags")]
    NoNewPrivs(#[source] io::Error),
    /// Landlock failed.
    #[error("Landlock")]
    Landlock(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// As root, a gateway refuses to serve without Landlock.
    #[error("Landlock is not available: refusing to serve a share as root without it")]
    LandlockMissing,
    /// A seccomp filter could not be built or installed.
    #[error("seccomp filter")]
    Seccomp(#[source] seccompiler::Error),
    /// The process could not be started.
    #[error("starting {}", program.display())]
    Spawn {
        /// The binary.
        program: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}
