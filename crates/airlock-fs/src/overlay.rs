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
pub(crate) mod tree;
mod types;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use airlock_audit::Timestamp;

pub use apply::{ApplyGuard, ApplyReport, Conflict, ConflictReason, Denied};
pub use diff::MAX_DIFF_BYTES;
pub use manifest::Skipped;

pub use types::{
    Change, ChangeKind, EntryKind, EntryState, MANIFEST_FILE, OverlayError, UPPER_DIR,
};

use manifest::{Entry, Manifest};
use tree::{Kind, Tree, Visit};
use types::PERMISSION_BITS;

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
            version: types::VERSION,
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
        diff::unified_diff(self.host_dir(), self.upper(), change)
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
        apply::apply(self.host_dir(), self.upper(), self.changes()?, guard, force)
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
#[cfg(test)]
mod tests_apply;
