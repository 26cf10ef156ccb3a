//! Guest images: the kernel and the `tiny` initramfs, built on first use and cached by content
//! hash outside the repository (`$AIRLOCK_CACHE`, else `$XDG_CACHE_HOME/airlock`, else
//! `~/.cache/airlock`). Nothing cached is ever rebuilt; a new input gives a new key.

mod builds;
mod checked;
mod cpio;
pub mod debian;
pub mod kernel;
pub mod kit;
pub mod layer;
pub mod oci;
mod steps;
pub mod tiny;

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Why an image could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No cache directory could be determined.
    #[error("no cache directory: set AIRLOCK_CACHE or HOME")]
    NoCacheDir,
    /// Tools or sources needed to build are missing.
    #[error("cannot build {what}: missing {missing}; install with: apt-get install {packages}")]
    MissingDeps {
        /// What was being built.
        what: &'static str,
        /// The missing files or tools.
        missing: String,
        /// Debian packages that provide them.
        packages: String,
    },
    /// A build step failed.
    #[error("{step} failed (log: {log})\n{tail}")]
    BuildFailed {
        /// The step.
        step: String,
        /// Full log file.
        log: PathBuf,
        /// The last lines of output.
        tail: String,
    },
    /// The fragment asked for options the kernel config dropped.
    #[error("kernel config dropped required options (unmet dependencies?): {0}")]
    ConfigDropped(String),
    /// Input file problem.
    #[error("{path}: {message}")]
    BadInput {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An image name that is not usable as a cache directory name.
    #[error(
        "invalid image name {name:?}: use lowercase letters, digits, '-', '_' and '.', starting \
         with a letter or digit (`tiny` is built in)"
    )]
    BadName {
        /// The rejected name.
        name: String,
    },
    /// The image has never been built.
    #[error(
        "image {name} is not built; build it with `airlock image build --kind debian --name {name}`"
    )]
    NotBuilt {
        /// Image name.
        name: String,
    },
    /// An agent kit has never been installed.
    #[error("agent kit {name} is not installed; install it with `airlock agent install {name}`")]
    KitNotInstalled {
        /// Kit name.
        name: String,
    },
    /// A built image's root filesystem does not match its manifest.
    #[error(
        "image {name} (build {build_id}) is corrupt: {path} should have sha256 {expected}, \
         found {actual}; rebuild it with `airlock image build --kind debian --name {name}`"
    )]
    Integrity {
        /// Image name.
        name: String,
        /// Build id.
        build_id: String,
        /// The file that failed the check.
        path: PathBuf,
        /// Hash (and size) recorded in the manifest.
        expected: String,
        /// What the file has now.
        actual: String,
    },
    /// A cached kernel or built-in image no longer matches what was recorded when it was built.
    #[error("{0}")]
    Tampered(Box<Tampered>),
    /// Building needs root (debootstrap, chroot and mount).
    #[error(
        "building {what} needs root (debootstrap, chroot and mount); run it as root or with sudo"
    )]
    NotRoot {
        /// What was being built.
        what: &'static str,
    },
    /// Downloading from a mirror failed.
    #[error("fetching {url}: {message}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// I/O on a cache path.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What [`ImageError::Tampered`] reports.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} is corrupt: {} should have sha256 {expected}, found {actual}; remove {} and airlock \
     builds it again",
    .path.display(),
    .remove.display()
)]
pub struct Tampered {
    /// Which artefact (`kernel 77b5…`, `image tiny`).
    pub what: String,
    /// The file.
    pub path: PathBuf,
    /// Recorded hash.
    pub expected: String,
    /// Hash now.
    pub actual: String,
    /// What to delete to rebuild.
    pub remove: PathBuf,
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Io { context, source }
}

/// The image cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache chosen by the environment.
    pub fn from_env() -> Result<Cache, ImageError> {
        let root = if let Some(dir) = std::env::var_os("AIRLOCK_CACHE") {
            PathBuf::from(dir)
        } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            PathBuf::from(dir).join("airlock")
        } else if let Some(home) = std::env::var_os("HOME") {
            PathBuf::from(home).join(".cache/airlock")
        } else {
            return Err(ImageError::NoCacheDir);
        };
        Ok(Cache { root })
    }

    /// A cache at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn dir(&self, kind: &str) -> Result<PathBuf, ImageError> {
        let dir = self.root.join(kind);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(dir)
    }
}

/// An exclusive lock on a cache entry, so parallel runs build it once.
pub(crate) struct EntryLock {
    _lock: nix::fcntl::Flock<File>,
}

impl EntryLock {
    pub(crate) fn acquire(path: &Path) -> Result<EntryLock, ImageError> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(format!("opening lock {}", path.display())))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(
            |(_, e)| ImageError::Io {
                context: format!("locking {}", path.display()),
                source: e.into(),
            },
        )?;
        Ok(EntryLock { _lock: lock })
    }
}

/// Finds `tool` in PATH or sbin (root's tools live there, which a user's PATH may lack).
pub(crate) fn tool_path(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(tool))
}

/// Hex SHA-256 of the parts, each length-prefixed so boundaries cannot shift.
pub(crate) fn hash_parts(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut f = File::open(path).map_err(io_err(format!("reading {}", path.display())))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).map_err(io_err(format!("reading {}", path.display())))?;
    Ok(hex::encode(h.finalize()))
}

/// Writes `value` to `path` as pretty JSON, atomically.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), ImageError> {
    let json = serde_json::to_string_pretty(value).map_err(|e| ImageError::BadInput {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, json.as_bytes())
}

/// Writes `bytes` to `path` atomically (temp file in the same dir, then rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io_err(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("renaming to {}", path.display())))
}
