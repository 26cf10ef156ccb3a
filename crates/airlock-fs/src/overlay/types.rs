//! The overlay's vocabulary: what an entry is, how it changed, and why an operation failed.
//! Shared by the overlay (`overlay.rs`) and its steps (`snapshot`, `manifest`, `apply`,
//! `diff`).

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The copy the guest sees, inside the overlay directory.
pub const UPPER_DIR: &str = "upper";
/// The snapshot record, inside the overlay directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The manifest format this build writes and reads.
pub(crate) const VERSION: u32 = 1;

/// Permission bits, set-ID and sticky bits of a mode.
pub(super) const PERMISSION_BITS: u32 = 0o7777;

/// Why an overlay operation failed. A conflict or a policy denial during `apply` is not an
/// error: it is reported in [`ApplyReport`](super::ApplyReport).
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// A filesystem call failed on `path`.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What we were doing (`copy`, `read the manifest`, ...).
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The host directory cannot be resolved.
    #[error("host directory {}", path.display())]
    HostDir {
        /// As given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A path that must be a directory is not one.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The host directory's path is not UTF-8 (the gateway and the manifest need text).
    #[error("host directory {} is not valid UTF-8", .0.display())]
    NonUtf8(PathBuf),
    /// The overlay directory would be inside the host directory (so the guest would see it
    /// and the copy would copy itself), or the other way round.
    #[error("overlay directory {} and host directory {} must not contain each other", overlay.display(), host.display())]
    Nested {
        /// The host directory.
        host: PathBuf,
        /// The overlay directory.
        overlay: PathBuf,
    },
    /// The overlay directory exists and holds something.
    #[error("overlay directory {} already exists and is not empty", .0.display())]
    NotEmpty(PathBuf),
    /// The manifest is not valid JSON of the expected shape.
    #[error("invalid overlay manifest {}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest was written by an incompatible version.
    #[error("overlay manifest {} has version {found}, expected {}", path.display(), VERSION)]
    ManifestVersion {
        /// The manifest file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// A manifest entry names something outside the tree (`..`, absolute, empty).
    #[error("overlay manifest {}: entry {entry:?} is not a relative path inside the tree", path.display())]
    ManifestPath {
        /// The manifest file.
        path: PathBuf,
        /// The bad entry.
        entry: String,
    },
    /// A share of mode `overlay` whose host directory is not an overlay's `upper` directory.
    #[error("{} is not the `{UPPER_DIR}` directory of an overlay", .0.display())]
    NotAnUpper(PathBuf),
    /// The policy has no mount at this guest path.
    #[error("the policy has no mount at guest path {0:?}")]
    UnknownMount(String),
    /// The policy's mount shares another host directory than the one the overlay copied.
    #[error(
        "mount {guest:?}: the policy shares {} but the overlay is a copy of {}",
        policy.display(),
        overlay.display()
    )]
    HostMismatch {
        /// Guest mount point.
        guest: String,
        /// Host directory in the policy.
        policy: PathBuf,
        /// Host directory the overlay copied.
        overlay: PathBuf,
    },
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
}

impl EntryKind {
    /// `file`, `dir` or `symlink`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "dir",
            Self::Symlink => "symlink",
        }
    }
}

/// What happened to a path in the copy, relative to the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// Not in the snapshot, in the copy now.
    Added,
    /// In both, with other contents, permission bits or symlink target.
    Modified,
    /// In the snapshot, not in the copy now.
    Deleted,
}

impl ChangeKind {
    /// `added`, `modified` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Modified => "modified",
            Self::Deleted => "deleted",
        }
    }
}

/// An entry's state at one time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryState {
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Permission bits (`mode & 0o7777`); meaningless for symlinks.
    pub mode: u32,
    /// Size in bytes (files), target length (symlinks), 0 (directories).
    pub size: u64,
    /// SHA-256 of the contents, lower-case hex. Always set in the snapshot; for the copy, set
    /// when it was needed to tell whether the contents changed (`None` for added files and
    /// for files whose size changed).
    pub sha256: Option<String>,
    /// Link target (symlinks only).
    pub target: Option<String>,
}

/// One change in the copy. A path whose kind changed (a file replaced by a directory) is two
/// changes: `Deleted` of the old kind, then `Added` of the new. A deleted directory is one
/// `Deleted` change for it and one for everything that was in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Path relative to the share root, `/`-separated.
    pub path: String,
    /// Added, modified or deleted.
    pub kind: ChangeKind,
    /// The kind of entry (the old one for `Deleted`, the new one otherwise).
    pub entry: EntryKind,
    /// The state in the snapshot (`None` for `Added`).
    pub before: Option<EntryState>,
    /// The state in the copy (`None` for `Deleted`).
    pub after: Option<EntryState>,
}
