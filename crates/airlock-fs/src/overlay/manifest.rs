//! `manifest.json`: what the host directory held when the overlay was created. One entry per
//! file, directory and symlink (path, kind, permission bits, size, SHA-256 or link target),
//! the entries that were not copied and why, the host directory and the creation time.
//! Written once by `Overlay::create`, read by `Overlay::open`; `changes` and `apply` compare
//! against it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use airlock_audit::Timestamp;
use serde::{Deserialize, Serialize};

use super::tree;
use super::types::{EntryKind, EntryState, OverlayError, VERSION};

/// The manifest file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The canonical host directory the overlay was copied from.
    pub host_dir: PathBuf,
    /// When the copy was made.
    pub created_at: Timestamp,
    /// Every copied entry, sorted by path.
    pub entries: Vec<Entry>,
    /// Entries of the host directory that were not copied.
    pub skipped: Vec<Skipped>,
}

/// One copied entry, as it was at snapshot time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    /// Path relative to the host directory, `/`-separated.
    pub path: String,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Size in bytes (files; the target's length for symlinks; 0 for directories).
    pub size: u64,
    /// SHA-256 of the contents, lower-case hex (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Link target (symlinks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The copy's inode stamp right after copying (files only): when the copy still has it,
    /// its contents are unchanged and need not be hashed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<Stamp>,
}

impl Entry {
    /// The entry's state, as `Change::before`.
    pub fn state(&self) -> EntryState {
        EntryState {
            kind: self.kind,
            mode: self.mode,
            size: self.size,
            sha256: self.sha256.clone(),
            target: self.target.clone(),
        }
    }
}

/// Inode number, size and change/modification times of a file. The guest can set a file's
/// mtime but not its ctime, and any write or `utimes` moves the ctime, so an equal stamp
/// means equal contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Stamp {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: i64,
    /// Status change time, seconds.
    pub ctime: i64,
    /// Status change time, nanoseconds.
    pub ctime_nsec: i64,
}

impl Stamp {
    /// The stamp of `st`.
    pub fn of(st: &nix::sys::stat::FileStat) -> Self {
        Self {
            ino: st.st_ino,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
            ctime: st.st_ctime,
            ctime_nsec: st.st_ctime_nsec,
        }
    }
}

/// An entry of the host directory that was not copied; the guest does not see it, and
/// `apply` never touches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    /// Path relative to the host directory (non-UTF-8 bytes escaped as `\xNN`).
    pub path: String,
    /// Why: `fifo`, `socket`, `char_device`, `block_device`, `unknown_type`, `unreadable`,
    /// `non_utf8_name`, `non_utf8_target`.
    pub reason: String,
}

impl Manifest {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Manifest, OverlayError> {
        let bytes = std::fs::read(path).map_err(|source| OverlayError::Io {
            op: "read the manifest",
            path: path.to_owned(),
            source,
        })?;
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| OverlayError::Manifest {
                path: path.to_owned(),
                source,
            })?;
        if m.version != VERSION {
            return Err(OverlayError::ManifestVersion {
                path: path.to_owned(),
                found: m.version,
            });
        }
        for e in &m.entries {
            // A recorded path must name something inside the tree, never `..` or absolute.
            if tree::components(&e.path).map_or(true, |c| c.is_empty()) {
                return Err(OverlayError::ManifestPath {
                    path: path.to_owned(),
                    entry: e.path.clone(),
                });
            }
        }
        Ok(m)
    }

    /// Writes to `path` atomically (a temporary file beside it, then a rename), mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), OverlayError> {
        let io_err = |op, p: &Path| {
            let p = p.to_owned();
            move |source| OverlayError::Io {
                op,
                path: p,
                source,
            }
        };
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| OverlayError::Manifest {
            path: path.to_owned(),
            source,
        })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("write the manifest", &tmp))?;
        f.write_all(&bytes)
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(io_err("write the manifest", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err("write the manifest", path))
    }
}
