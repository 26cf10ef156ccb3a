//! `overlay` mounts: the guest works on a private copy of the host directory, and the host
//! tree stays byte-identical until the user applies the changes.
//!
//! [`Overlay::create`] copies the host directory into `<dir>/upper` (reflinks where the
//! filesystem has them) and records every entry in `<dir>/manifest.json`. The supervisor
//! then serves `upper` through an ordinary [`FsGateway`](crate::FsGateway) with a
//! [`Share`](crate::Share) of mode `overlay`: the guest sees its own writes, and every one of
//! them is still decided by the policy, exactly as on an `rw` share. Afterwards,
//! [`Overlay::changes`] compares `upper` with the manifest, [`Overlay::unified_diff`] shows a
//! text file's change, [`Overlay::apply`] writes the changes to the host (refusing what the
//! policy forbids, and skipping files that changed on the host since the snapshot), and
//! [`Overlay::discard`] deletes the overlay.
//!
//! No overlayfs, no root: it works wherever the copy can be made. Called by the CLI
//! (`airlock diff/apply/discard`) and the supervisor (create at start).
//! `docs/filesystem.md` (section "Overlay mode") describes guarantees and limits.

mod apply;
mod copy;
mod diff;
mod manifest;
mod snapshot;
mod tree;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use airlock_audit::Timestamp;
use serde::{Deserialize, Serialize};

pub use apply::{ApplyGuard, ApplyReport, Conflict, ConflictReason, Denied};
pub use diff::MAX_DIFF_BYTES;
pub use manifest::Skipped;

use manifest::{Entry, Manifest};
use tree::{Kind, Tree, Visit};

/// The copy the guest sees, inside the overlay directory.
pub const UPPER_DIR: &str = "upper";
/// The snapshot record, inside the overlay directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Permission bits, set-ID and sticky bits of a mode.
const PERMISSION_BITS: u32 = 0o7777;

/// Why an overlay operation failed. A conflict or a policy denial during `apply` is not an
/// error: it is reported in [`ApplyReport`].
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
    #[error("overlay manifest {} has version {found}, expected {}", path.display(), manifest::VERSION)]
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

/// An overlay: a private copy of a host directory plus the record of what it held.
#[derive(Debug)]
pub struct Overlay {
    dir: PathBuf,
    upper: PathBuf,
    manifest: Manifest,
}

impl Overlay {
    /// Copies `host_dir` into `<dir>/upper` and writes `<dir>/manifest.json`.
    ///
    /// Regular files, directories and symlinks are copied (files as reflinks where the
    /// filesystem can, else with `copy_file_range` or plain copies), with their permission
    /// bits, times and, where we may chown, owners. Symlinks are copied as symlinks and never
    /// followed; FIFOs, sockets, device nodes, unreadable entries and non-UTF-8 names are
    /// skipped and listed in the manifest ([`skipped`](Self::skipped)). `dir` is created
    /// (mode 0700) and must not exist or be empty; it must not be inside `host_dir`, nor
    /// `host_dir` inside it. `progress` is called after each file with the running totals of
    /// files and bytes copied. On error, what was created is removed again.
    pub fn create(
        host_dir: &Path,
        dir: &Path,
        progress: Option<&mut dyn FnMut(u64, u64)>,
    ) -> Result<Overlay, OverlayError> {
        let host = std::fs::canonicalize(host_dir).map_err(|source| OverlayError::HostDir {
            path: host_dir.to_owned(),
            source,
        })?;
        if !host.is_dir() {
            return Err(OverlayError::NotADirectory(host));
        }
        if host.to_str().is_none() {
            return Err(OverlayError::NonUtf8(host));
        }
        // Before creating anything: an overlay inside the host directory would change it.
        let planned = resolve_planned(dir);
        if planned.starts_with(&host) || host.starts_with(&planned) {
            return Err(OverlayError::Nested {
                host,
                overlay: planned,
            });
        }
        let created = make_overlay_dir(dir)?;
        let dir = match std::fs::canonicalize(dir) {
            Ok(d) => d,
            Err(source) => {
                return Err(OverlayError::Io {
                    op: "open",
                    path: dir.to_owned(),
                    source,
                });
            }
        };
        let cleanup = |dir: &Path| {
            if created {
                let _ = remove_tree(dir);
            } else {
                let _ = remove_tree(&dir.join(UPPER_DIR));
                let _ = std::fs::remove_file(dir.join(MANIFEST_FILE));
            }
        };
        if dir.starts_with(&host) || host.starts_with(&dir) {
            cleanup(&dir);
            return Err(OverlayError::Nested { host, overlay: dir });
        }
        let result = Self::fill(host, &dir, progress);
        if result.is_err() {
            cleanup(&dir);
        }
        result
    }

    fn fill(
        host: PathBuf,
        dir: &Path,
        progress: Option<&mut dyn FnMut(u64, u64)>,
    ) -> Result<Overlay, OverlayError> {
        let upper = dir.join(UPPER_DIR);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&upper)
            .map_err(|source| OverlayError::Io {
                op: "create",
                path: upper.clone(),
                source,
            })?;
        let created_at = Timestamp::now();
        let tree = Tree::open(&host).map_err(|source| OverlayError::HostDir {
            path: host.clone(),
            source,
        })?;
        let (entries, skipped) = snapshot::copy_tree(&tree, &upper, progress)?;
        let manifest = Manifest {
            version: manifest::VERSION,
            host_dir: host,
            created_at,
            entries,
            skipped,
        };
        manifest.save(&dir.join(MANIFEST_FILE))?;
        Ok(Overlay {
            dir: dir.to_owned(),
            upper,
            manifest,
        })
    }

    /// Opens the overlay in `dir`, made earlier by [`create`](Self::create).
    pub fn open(dir: &Path) -> Result<Overlay, OverlayError> {
        let dir = std::fs::canonicalize(dir).map_err(|source| OverlayError::Io {
            op: "open the overlay",
            path: dir.to_owned(),
            source,
        })?;
        let manifest = Manifest::load(&dir.join(MANIFEST_FILE))?;
        let upper = dir.join(UPPER_DIR);
        match std::fs::symlink_metadata(&upper) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(OverlayError::NotADirectory(upper)),
            Err(source) => {
                return Err(OverlayError::Io {
                    op: "open",
                    path: upper,
                    source,
                });
            }
        }
        Ok(Overlay {
            dir,
            upper,
            manifest,
        })
    }

    /// Opens the overlay whose `upper` directory is `upper` (as a share names it).
    pub fn open_upper(upper: &Path) -> Result<Overlay, OverlayError> {
        let canonical = std::fs::canonicalize(upper).map_err(|source| OverlayError::Io {
            op: "open",
            path: upper.to_owned(),
            source,
        })?;
        let Some(dir) = canonical.parent() else {
            return Err(OverlayError::NotAnUpper(canonical));
        };
        if canonical.file_name() != Some(std::ffi::OsStr::new(UPPER_DIR)) {
            return Err(OverlayError::NotAnUpper(canonical));
        }
        let overlay = Self::open(dir)?;
        if overlay.upper != canonical {
            return Err(OverlayError::NotAnUpper(canonical));
        }
        Ok(overlay)
    }

    /// The overlay's own directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The copy: the directory the gateway shares with the guest.
    pub fn upper(&self) -> &Path {
        &self.upper
    }

    /// The (canonical) host directory the copy was made from.
    pub fn host_dir(&self) -> &Path {
        &self.manifest.host_dir
    }

    /// When the copy was made.
    pub fn created_at(&self) -> Timestamp {
        self.manifest.created_at
    }

    /// Entries of the host directory that were not copied, and why.
    pub fn skipped(&self) -> &[Skipped] {
        &self.manifest.skipped
    }

    /// The changes in the copy relative to the snapshot, sorted by path: added, modified
    /// (contents, permission bits or symlink target) and deleted files, directories and
    /// symlinks. Times and owners are not compared. FIFOs and sockets the guest made are not
    /// changes (they are never applied). Reads the copy without following symlinks; a file
    /// whose inode stamp is unchanged since the snapshot is not hashed again.
    pub fn changes(&self) -> Result<Vec<Change>, OverlayError> {
        let before: BTreeMap<&str, &Entry> = self
            .manifest
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e))
            .collect();
        let now = self.scan(&before)?;
        Ok(compare(&before, &now))
    }

    /// The current state of everything in the copy.
    fn scan(
        &self,
        before: &BTreeMap<&str, &Entry>,
    ) -> Result<BTreeMap<String, EntryState>, OverlayError> {
        let tree = Tree::open(&self.upper).map_err(|source| OverlayError::Io {
            op: "open",
            path: self.upper.clone(),
            source,
        })?;
        let mut now = BTreeMap::new();
        let fail = |op, rel: &str, source| OverlayError::Io {
            op,
            path: tree.display(rel),
            source,
        };
        tree::walk(
            &tree,
            |v: Visit<'_>| {
                // The gateway never lets the guest make a non-UTF-8 name.
                let Ok(name) = std::str::from_utf8(v.name) else {
                    return Ok(false);
                };
                let rel = tree::join(v.parent, name);
                let mode = v.stat.st_mode & PERMISSION_BITS;
                let state = match tree::kind_of(&v.stat) {
                    Kind::Dir => EntryState {
                        kind: EntryKind::Dir,
                        mode,
                        size: 0,
                        sha256: None,
                        target: None,
                    },
                    Kind::File => {
                        let size = u64::try_from(v.stat.st_size).unwrap_or(0);
                        let sha256 = match before.get(rel.as_str()) {
                            Some(e) if e.kind == EntryKind::File && e.size == size => {
                                if e.copy == Some(manifest::Stamp::of(&v.stat)) {
                                    e.sha256.clone()
                                } else {
                                    let f = tree::open_file_at(v.dir, name)
                                        .map_err(|e| fail("read", &rel, e))?;
                                    let (sha, _) =
                                        copy::hash_file(&f).map_err(|e| fail("read", &rel, e))?;
                                    Some(sha)
                                }
                            }
                            _ => None,
                        };
                        EntryState {
                            kind: EntryKind::File,
                            mode,
                            size,
                            sha256,
                            target: None,
                        }
                    }
                    Kind::Symlink => {
                        let target = tree::read_link_at(v.dir, name)
                            .map_err(|e| fail("read the link", &rel, e))?;
                        let target = String::from_utf8_lossy(&target).into_owned();
                        EntryState {
                            kind: EntryKind::Symlink,
                            mode,
                            size: target.len() as u64,
                            sha256: None,
                            target: Some(target),
                        }
                    }
                    Kind::Special(_) => return Ok(false),
                };
                let descend = state.kind == EntryKind::Dir;
                now.insert(rel, state);
                Ok(descend)
            },
            fail,
        )?;
        Ok(now)
    }

    /// A unified diff (`--- a/PATH`, `+++ b/PATH`, 3 lines of context) for a changed regular
    /// file: from the host's current contents (empty for an added file) to the copy's (empty
    /// for a deleted file). `None` when either side is not text (not UTF-8, or holds a NUL),
    /// is larger than [`MAX_DIFF_BYTES`], or the change is not about a regular file. An empty
    /// string when the contents are equal (a change of permission bits only).
    pub fn unified_diff(&self, change: &Change) -> Result<Option<String>, OverlayError> {
        diff::unified_diff(self, change)
    }

    /// Applies the changes to the host directory; see [`ApplyGuard`] for the policy check
    /// and [`ApplyReport`] for what is reported.
    ///
    /// Before touching a host path, its current state is compared with the snapshot: if it
    /// changed since (edited, created, deleted on the host), the change is not applied but
    /// reported as a conflict, unless `force`. A path whose host state already equals the
    /// copy's counts as applied. `force` never removes a non-empty host directory and never
    /// goes through a symlink. Every host path is reached descriptor by descriptor with
    /// `O_NOFOLLOW`: a host directory replaced by a symlink is a conflict, never followed.
    /// Files and symlinks are written to a temporary name in the same directory and renamed
    /// into place (atomic per file); new files get the owner of the directory they are
    /// created in, replaced files keep theirs; set-user-ID and set-group-ID bits are dropped
    /// from files. Deletions run first (deepest first), then the rest in path order.
    ///
    /// Run it after the sandbox has stopped: the copy is read as it is at that moment.
    pub fn apply(&self, guard: &ApplyGuard, force: bool) -> Result<ApplyReport, OverlayError> {
        apply::apply(self, guard, force)
    }

    /// Deletes the overlay directory and everything in it (without following symlinks).
    pub fn discard(self) -> Result<(), OverlayError> {
        remove_tree(&self.dir).map_err(|source| OverlayError::Io {
            op: "remove",
            path: self.dir.clone(),
            source,
        })
    }
}

/// Changes from `before` (the manifest) to `now` (the copy), in path order.
fn compare(before: &BTreeMap<&str, &Entry>, now: &BTreeMap<String, EntryState>) -> Vec<Change> {
    let mut paths: Vec<&str> = before
        .keys()
        .copied()
        .chain(now.keys().map(String::as_str))
        .collect();
    paths.sort_unstable();
    paths.dedup();
    let mut out = Vec::new();
    for path in paths {
        let old = before.get(path).map(|e| e.state());
        let new = now.get(path).cloned();
        match (old, new) {
            (Some(old), None) => out.push(deleted(path, old)),
            (None, Some(new)) => out.push(added(path, new)),
            (Some(old), Some(new)) if old.kind != new.kind => {
                out.push(deleted(path, old));
                out.push(added(path, new));
            }
            (Some(old), Some(new)) => {
                let changed = match new.kind {
                    EntryKind::Dir => old.mode != new.mode,
                    EntryKind::Symlink => old.target != new.target,
                    EntryKind::File => {
                        old.mode != new.mode || old.size != new.size || old.sha256 != new.sha256
                    }
                };
                if changed {
                    out.push(Change {
                        path: path.to_owned(),
                        kind: ChangeKind::Modified,
                        entry: new.kind,
                        before: Some(old),
                        after: Some(new),
                    });
                }
            }
            (None, None) => {}
        }
    }
    out
}

fn deleted(path: &str, old: EntryState) -> Change {
    Change {
        path: path.to_owned(),
        kind: ChangeKind::Deleted,
        entry: old.kind,
        before: Some(old),
        after: None,
    }
}

fn added(path: &str, new: EntryState) -> Change {
    Change {
        path: path.to_owned(),
        kind: ChangeKind::Added,
        entry: new.kind,
        before: None,
        after: Some(new),
    }
}

/// Where `dir` will be once created: its longest existing ancestor canonicalised, with the
/// rest appended (`..` taken lexically).
fn resolve_planned(dir: &Path) -> PathBuf {
    let absolute = if dir.is_absolute() {
        dir.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(dir)
    };
    let mut base = absolute.as_path();
    let mut rest = Vec::new();
    let canonical = loop {
        if let Ok(c) = std::fs::canonicalize(base) {
            break c;
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                base = parent;
            }
            _ => break base.to_owned(),
        }
    };
    let mut out = canonical;
    for name in rest.iter().rev() {
        out.push(name);
    }
    // `..` after a missing component: resolve lexically.
    let mut normal = PathBuf::new();
    for c in out.components() {
        match c {
            std::path::Component::ParentDir => {
                normal.pop();
            }
            std::path::Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal
}

/// Creates the overlay directory (mode 0700, parents as needed). Returns whether it was
/// created; an existing one must be an empty directory.
fn make_overlay_dir(dir: &Path) -> Result<bool, OverlayError> {
    let io_err = |op, source| OverlayError::Io {
        op,
        path: dir.to_owned(),
        source,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| OverlayError::Io {
            op: "create",
            path: parent.to_owned(),
            source,
        })?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(dir).map_err(|e| io_err("open", e))?;
            if !meta.is_dir() {
                return Err(OverlayError::NotADirectory(dir.to_owned()));
            }
            let mut entries = std::fs::read_dir(dir).map_err(|e| io_err("list", e))?;
            if entries.next().is_some() {
                return Err(OverlayError::NotEmpty(dir.to_owned()));
            }
            Ok(false)
        }
        Err(e) => Err(io_err("create", e)),
    }
}

/// Removes `path` and everything below it without following symlinks. Directories the guest
/// made unwritable or unlistable are given `u+rwx` first (`fchmodat` without following
/// symlinks), since we are their owner but not necessarily root.
fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            open_up(path)?;
            std::fs::remove_dir_all(path)
        }
        other => other,
    }
}

/// Adds `u+rwx` to `root` and every directory below it.
fn open_up(root: &Path) -> io::Result<()> {
    use nix::sys::stat::{FchmodatFlags, Mode, fchmodat};
    let meta = std::fs::symlink_metadata(root)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let add = |dir: Option<&std::os::fd::OwnedFd>, name: &[u8], mode: u32| -> io::Result<()> {
        let mode = Mode::from_bits_truncate((mode & PERMISSION_BITS) | 0o700);
        let fd = dir.map(std::os::fd::AsRawFd::as_raw_fd);
        fchmodat(fd, name, mode, FchmodatFlags::NoFollowSymlink)?;
        Ok(())
    };
    add(
        None,
        std::os::unix::ffi::OsStrExt::as_bytes(root.as_os_str()),
        std::os::unix::fs::MetadataExt::mode(&meta),
    )?;
    let tree = Tree::open(root)?;
    tree::walk(
        &tree,
        |v: Visit<'_>| {
            if tree::kind_of(&v.stat) != Kind::Dir {
                return Ok(false);
            }
            add(Some(v.dir), v.name, v.stat.st_mode)?;
            Ok(true)
        },
        |_, _, e| e,
    )
}

#[cfg(test)]
mod tests;
