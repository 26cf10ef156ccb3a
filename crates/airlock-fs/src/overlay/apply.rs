//! Writing an overlay's changes to the host directory: the policy re-check
//! ([`ApplyGuard`]), conflict detection against the snapshot, and descriptor-relative,
//! atomic-per-file writes that never follow a symlink on the host side.
//!
//! Called by `Overlay::apply` (the CLI's `airlock apply`).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use airlock_policy::{Decision, MountHost, MountMode, Policy};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{FileStat, Mode};
use nix::unistd::{Gid, Uid, UnlinkatFlags};
use virtiofsd::filesystem::SetattrValid;

use super::copy::{copy_data, hash_file};
use super::tree::{self, Kind, Tree};
use super::types::{Change, ChangeKind, EntryKind, EntryState, OverlayError, PERMISSION_BITS};
use crate::gate::{Gate, Request};
use crate::sys;

/// How many temporary names to try before giving up.
const TEMP_ATTEMPTS: u32 = 100;

/// Decides, as defence in depth, whether `apply` may write a change to the host: the same
/// policy decisions the gateway made when the guest wrote the copy (protected paths,
/// `deny_write`, set-ID bits, symlinks whose target is a protected path), so a copy changed
/// behind the gateway's back still cannot plant a hook on the host.
#[derive(Debug, Clone)]
pub struct ApplyGuard {
    gate: Option<Gate>,
}

impl ApplyGuard {
    /// Decides with `policy`'s mount at `guest_path` (the overlay mount). Fails if the policy
    /// has no mount there, or if that mount names a host directory other than `host_dir`, the
    /// one the overlay copied ([`Overlay::host_dir`](super::Overlay::host_dir); a workspace
    /// mount not yet bound is taken as the overlay's).
    pub fn new(
        policy: Arc<Policy>,
        guest_path: &str,
        host_dir: &Path,
    ) -> Result<ApplyGuard, OverlayError> {
        let wanted = guest_path.trim_end_matches('/');
        let mount = policy
            .mounts()
            .iter()
            .find(|m| m.guest == wanted)
            .ok_or_else(|| OverlayError::UnknownMount(guest_path.to_owned()))?;
        if let MountHost::Path(expected) = &mount.host {
            let expected = std::fs::canonicalize(expected).unwrap_or_else(|_| expected.clone());
            if expected != host_dir {
                return Err(OverlayError::HostMismatch {
                    guest: mount.guest.clone(),
                    policy: expected,
                    overlay: host_dir.to_owned(),
                });
            }
        }
        let guest = mount.guest.clone();
        let host = host_dir.to_str().map(str::to_owned);
        Ok(ApplyGuard {
            gate: Some(Gate::new(
                policy,
                &guest,
                MountMode::Overlay,
                host.as_deref(),
            )),
        })
    }

    /// A guard that allows every change: for overlays without a policy, and tests.
    pub fn allow_all() -> ApplyGuard {
        ApplyGuard { gate: None }
    }

    /// The denial for `change`, if the policy refuses any operation it amounts to: `Unlink`
    /// for deletions; `Create` + `Write` for a new file, `Mkdir` for a new directory,
    /// `Symlink` (and `Link` of a target inside the share) for a new symlink; `Write` for
    /// changed contents, `Setattr` for changed permission bits, `Unlink` + `Symlink` for a
    /// changed link target.
    pub fn check(&self, change: &Change) -> Option<Decision> {
        let gate = self.gate.as_ref()?;
        let paths = std::slice::from_ref(&change.path);
        let write_flags = (libc::O_WRONLY | libc::O_TRUNC) as u32;
        let mut requests = Vec::new();
        match (change.kind, &change.before, &change.after) {
            (ChangeKind::Deleted, _, _) => requests.push(Request::Unlink { paths }),
            (ChangeKind::Added, _, Some(after)) => match after.kind {
                EntryKind::File => {
                    requests.push(Request::Create {
                        paths,
                        flags: (libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL) as u32,
                        mode: after.mode,
                    });
                    requests.push(Request::Open {
                        paths,
                        flags: write_flags,
                    });
                }
                EntryKind::Dir => requests.push(Request::Mkdir {
                    paths,
                    mode: after.mode,
                }),
                EntryKind::Symlink => requests.push(Request::Symlink {
                    paths,
                    target: after.target.as_deref().unwrap_or_default().as_bytes(),
                }),
            },
            (ChangeKind::Modified, Some(before), Some(after)) => match after.kind {
                EntryKind::File | EntryKind::Dir => {
                    let is_dir = after.kind == EntryKind::Dir;
                    if !is_dir && (before.size != after.size || before.sha256 != after.sha256) {
                        requests.push(Request::Open {
                            paths,
                            flags: write_flags,
                        });
                    }
                    if before.mode != after.mode {
                        requests.push(Request::Setattr {
                            paths,
                            valid: SetattrValid::MODE.bits(),
                            mode: after.mode,
                            is_dir,
                        });
                    }
                }
                EntryKind::Symlink => {
                    requests.push(Request::Unlink { paths });
                    requests.push(Request::Symlink {
                        paths,
                        target: after.target.as_deref().unwrap_or_default().as_bytes(),
                    });
                }
            },
            // An added or modified change always has an `after`; refuse what cannot be judged.
            _ => requests.push(Request::Unlink { paths: &[] }),
        }
        requests
            .iter()
            .map(|r| gate.check(r))
            .find(|o| !o.is_allowed())
            .map(|o| o.decision)
    }
}

/// What [`Overlay::apply`](super::Overlay::apply) did. Each list is sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Paths now as in the copy (written, removed, or already equal).
    pub applied: Vec<String>,
    /// Paths left alone because the host changed since the snapshot, or could not be
    /// reached safely.
    pub conflicts: Vec<Conflict>,
    /// Paths left alone because the policy refuses writing them.
    pub denied: Vec<Denied>,
}

/// A change `apply` did not make because of the host's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Path relative to the host directory.
    pub path: String,
    /// Why.
    pub reason: ConflictReason,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Why a change conflicts with the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum ConflictReason {
    /// The host entry differs from the snapshot (contents, mode, target or kind). `force`
    /// overrides.
    #[error("changed on the host since the snapshot")]
    ChangedOnHost,
    /// Something was created on the host where the snapshot had nothing. `force` overrides.
    #[error("created on the host since the snapshot")]
    CreatedOnHost,
    /// The host entry was deleted since the snapshot. `force` overrides.
    #[error("deleted on the host since the snapshot")]
    DeletedOnHost,
    /// A directory on the way does not exist on the host.
    #[error("a parent directory is missing on the host")]
    ParentMissing,
    /// A directory on the way is a symlink or not a directory on the host (never followed).
    #[error("a parent on the host is a symlink or not a directory")]
    ParentNotDirectory,
    /// A host directory to remove or replace holds entries (not in the copy's view).
    #[error("the host directory is not empty")]
    DirectoryNotEmpty,
}

/// A change `apply` did not make because the policy refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Path relative to the host directory.
    pub path: String,
    /// The policy's decision (rule and reason).
    pub decision: Decision,
}

/// See [`Overlay::apply`](super::Overlay::apply): writes `changes` from the copy at
/// `upper_dir` to `host_dir`.
pub(super) fn apply(
    host_dir: &Path,
    upper_dir: &Path,
    changes: Vec<Change>,
    guard: &ApplyGuard,
    force: bool,
) -> Result<ApplyReport, OverlayError> {
    let host = Tree::open(host_dir).map_err(|source| OverlayError::HostDir {
        path: host_dir.to_owned(),
        source,
    })?;
    let upper = Tree::open(upper_dir).map_err(|source| OverlayError::Io {
        op: "open",
        path: upper_dir.to_owned(),
        source,
    })?;
    let mut writer = Writer {
        host,
        upper,
        force,
        temp_seq: 0,
    };
    let (deletions, others): (Vec<&Change>, Vec<&Change>) =
        changes.iter().partition(|c| c.kind == ChangeKind::Deleted);
    let mut report = ApplyReport::default();
    // Children before parents for removals; parents before children for the rest.
    for change in deletions.into_iter().rev().chain(others) {
        if let Some(decision) = guard.check(change) {
            report.denied.push(Denied {
                path: change.path.clone(),
                decision,
            });
            continue;
        }
        match writer.apply_one(change)? {
            Ok(()) => report.applied.push(change.path.clone()),
            Err(reason) => report.conflicts.push(Conflict {
                path: change.path.clone(),
                reason,
            }),
        }
    }
    report.applied.sort();
    report.applied.dedup();
    report.conflicts.sort_by(|a, b| a.path.cmp(&b.path));
    report.denied.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

/// One apply run's state.
struct Writer {
    host: Tree,
    upper: Tree,
    force: bool,
    temp_seq: u64,
}

type Step = Result<(), ConflictReason>;

impl Writer {
    fn fail(&self, op: &'static str, rel: &str) -> impl FnOnce(io::Error) -> OverlayError {
        let path = self.host.display(rel);
        move |source| OverlayError::Io { op, path, source }
    }

    fn apply_one(&mut self, change: &Change) -> Result<Step, OverlayError> {
        let rel = change.path.as_str();
        let (parent, name) = match self.host.parent(rel) {
            Ok(v) => v,
            Err(e) => {
                let absent_is_fine = change.after.is_none();
                return match self.blocked_parent(rel) {
                    // Nothing to delete where the parent is gone or a plain file.
                    Some(Blocked::Missing | Blocked::NotDir) if absent_is_fine => Ok(Ok(())),
                    Some(Blocked::Missing) => Ok(Err(ConflictReason::ParentMissing)),
                    Some(Blocked::NotDir | Blocked::Symlink) => {
                        Ok(Err(ConflictReason::ParentNotDirectory))
                    }
                    None => Err(self.fail("open the parent directory of", rel)(e)),
                };
            }
        };
        let cur = tree::lstat_at(&parent, name).map_err(self.fail("inspect", rel))?;
        let want = change.after.as_ref().map(sanitized);
        if self.matches(&parent, name, cur.as_ref(), want.as_ref(), Some(rel))? {
            return Ok(Ok(()));
        }
        if !self.force
            && !self.matches(&parent, name, cur.as_ref(), change.before.as_ref(), None)?
        {
            return Ok(Err(match (&change.before, &cur) {
                (None, _) => ConflictReason::CreatedOnHost,
                (_, None) => ConflictReason::DeletedOnHost,
                _ => ConflictReason::ChangedOnHost,
            }));
        }
        match want {
            None => self.remove(&parent, name, cur.as_ref(), rel),
            Some(want) => self.write(&parent, name, cur.as_ref(), &want, rel),
        }
    }

    /// Why the parent directory of `rel` cannot be opened, found by walking down to it:
    /// the first component on the way that is missing, a symlink, or not a directory.
    /// `None` if every component is a directory (the failure was something else).
    fn blocked_parent(&self, rel: &str) -> Option<Blocked> {
        let (parent, _) = tree::split(rel).ok()?;
        let mut dir = self.host.dir("").ok()?;
        for comp in tree::components(parent).ok()? {
            let st = match tree::lstat_at(&dir, comp) {
                Ok(Some(st)) => st,
                Ok(None) => return Some(Blocked::Missing),
                Err(_) => return None,
            };
            match tree::kind_of(&st) {
                Kind::Dir => dir = tree::open_dir_at(&dir, comp).ok()?,
                Kind::Symlink => return Some(Blocked::Symlink),
                _ => return Some(Blocked::NotDir),
            }
        }
        None
    }

    /// Whether the host entry (`cur`) is in state `want` (`None`: absent). A regular file's
    /// contents are hashed only when kind, mode and size already agree; `upper_rel` says
    /// where to hash the copy when `want` has no hash yet.
    fn matches(
        &self,
        parent: &OwnedFd,
        name: &str,
        cur: Option<&FileStat>,
        want: Option<&EntryState>,
        upper_rel: Option<&str>,
    ) -> Result<bool, OverlayError> {
        let (cur, want) = match (cur, want) {
            (None, None) => return Ok(true),
            (Some(c), Some(w)) => (c, w),
            _ => return Ok(false),
        };
        let rel = upper_rel.unwrap_or(name);
        let mode = cur.st_mode & PERMISSION_BITS;
        Ok(match (tree::kind_of(cur), want.kind) {
            (Kind::Dir, EntryKind::Dir) => mode == want.mode,
            (Kind::Symlink, EntryKind::Symlink) => {
                let target = tree::read_link_at(parent, name).map_err(self.fail("read", rel))?;
                Some(target.as_slice()) == want.target.as_deref().map(str::as_bytes)
            }
            (Kind::File, EntryKind::File) => {
                if mode != want.mode || u64::try_from(cur.st_size).ok() != Some(want.size) {
                    return Ok(false);
                }
                let want_sha = match (&want.sha256, upper_rel) {
                    (Some(sha), _) => sha.clone(),
                    (None, Some(rel)) => {
                        let f = self
                            .upper
                            .open_file(rel)
                            .map_err(|source| OverlayError::Io {
                                op: "read",
                                path: self.upper.display(rel),
                                source,
                            })?;
                        hash_file(&f)
                            .map_err(|source| OverlayError::Io {
                                op: "read",
                                path: self.upper.display(rel),
                                source,
                            })?
                            .0
                    }
                    (None, None) => return Ok(false),
                };
                let f = tree::open_file_at(parent, name).map_err(self.fail("read", rel))?;
                hash_file(&f).map_err(self.fail("read", rel))?.0 == want_sha
            }
            _ => false,
        })
    }

    /// Removes the host entry.
    fn remove(
        &self,
        parent: &OwnedFd,
        name: &str,
        cur: Option<&FileStat>,
        rel: &str,
    ) -> Result<Step, OverlayError> {
        let Some(cur) = cur else {
            return Ok(Ok(()));
        };
        if tree::kind_of(cur) == Kind::Dir {
            return rmdir(parent, name).map_err(self.fail("remove", rel));
        }
        nix::unistd::unlinkat(Some(parent.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| self.fail("remove", rel)(e.into()))?;
        Ok(Ok(()))
    }

    /// Makes the host entry `want`, replacing `cur`.
    fn write(
        &mut self,
        parent: &OwnedFd,
        name: &str,
        cur: Option<&FileStat>,
        want: &EntryState,
        rel: &str,
    ) -> Result<Step, OverlayError> {
        let mut cur = cur.copied();
        // Clear the way when the kind changes.
        if let Some(st) = cur {
            let is_dir = tree::kind_of(&st) == Kind::Dir;
            if is_dir && want.kind != EntryKind::Dir {
                if let Err(reason) = rmdir(parent, name).map_err(self.fail("remove", rel))? {
                    return Ok(Err(reason));
                }
                cur = None;
            } else if !is_dir && want.kind == EntryKind::Dir {
                nix::unistd::unlinkat(Some(parent.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| self.fail("remove", rel)(e.into()))?;
                cur = None;
            }
        }
        // New entries belong to the directory's owner, replaced ones keep theirs: the guest
        // never chooses a host owner.
        let owner = match cur {
            Some(st) => (st.st_uid, st.st_gid),
            None => {
                let st = tree::fstat(parent).map_err(self.fail("inspect the parent of", rel))?;
                (st.st_uid, st.st_gid)
            }
        };
        let mode = Mode::from_bits_truncate(want.mode);
        match want.kind {
            EntryKind::Dir => {
                if cur.is_none() {
                    match nix::sys::stat::mkdirat(
                        Some(parent.as_raw_fd()),
                        name,
                        Mode::from_bits_truncate(0o700),
                    ) {
                        Ok(()) => {}
                        Err(Errno::EEXIST) => return Ok(Err(ConflictReason::CreatedOnHost)),
                        Err(e) => return Err(self.fail("create", rel)(e.into())),
                    }
                }
                let dir = tree::open_dir_at(parent, name).map_err(self.fail("open", rel))?;
                if cur.is_none() {
                    chown(&dir, owner).map_err(self.fail("chown", rel))?;
                }
                nix::sys::stat::fchmod(dir.as_raw_fd(), mode)
                    .map_err(|e| self.fail("chmod", rel)(e.into()))?;
                Ok(Ok(()))
            }
            EntryKind::File => {
                // Same contents, other mode: change the mode in place.
                if let Some(st) = cur.filter(|st| tree::kind_of(st) == Kind::File) {
                    let same = EntryState {
                        mode: st.st_mode & PERMISSION_BITS,
                        ..want.clone()
                    };
                    if self.matches(parent, name, Some(&st), Some(&same), Some(rel))? {
                        let f = tree::open_file_at(parent, name).map_err(self.fail("open", rel))?;
                        nix::sys::stat::fchmod(f.as_raw_fd(), mode)
                            .map_err(|e| self.fail("chmod", rel)(e.into()))?;
                        return Ok(Ok(()));
                    }
                }
                let src = self
                    .upper
                    .open_file(rel)
                    .map_err(|source| OverlayError::Io {
                        op: "read",
                        path: self.upper.display(rel),
                        source,
                    })?;
                let (tmp, tmp_name) = self.temp_file(parent, rel)?;
                let temp = TempName {
                    parent,
                    name: Some(tmp_name.clone()),
                };
                let src_stat = tree::fstat(&src).map_err(self.fail("read", rel))?;
                let written = copy_data(&src, &tmp)
                    .and_then(|_| chown(&tmp, owner))
                    .and_then(|()| Ok(nix::sys::stat::fchmod(tmp.as_raw_fd(), mode)?))
                    .and_then(|()| {
                        let mtime = nix::sys::time::TimeSpec::new(
                            src_stat.st_mtime,
                            src_stat.st_mtime_nsec,
                        );
                        Ok(nix::sys::stat::futimens(tmp.as_raw_fd(), &mtime, &mtime)?)
                    })
                    .and_then(|()| tmp.sync_all());
                written.map_err(self.fail("write", rel))?;
                self.place(temp, name, cur.is_some(), rel)
            }
            EntryKind::Symlink => {
                let target = want.target.as_deref().unwrap_or_default();
                let tmp_name = self.temp_symlink(parent, target, rel)?;
                let temp = TempName {
                    parent,
                    name: Some(tmp_name.clone()),
                };
                match nix::unistd::fchownat(
                    Some(parent.as_raw_fd()),
                    tmp_name.as_str(),
                    Some(Uid::from_raw(owner.0)),
                    Some(Gid::from_raw(owner.1)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(()) | Err(Errno::EPERM) => {}
                    Err(e) => return Err(self.fail("chown", rel)(e.into())),
                }
                self.place(temp, name, cur.is_some(), rel)
            }
        }
    }

    /// Renames the temporary entry to `name`: over the existing entry when `replace`, else
    /// only if `name` is still free (a conflict otherwise).
    fn place(
        &self,
        mut temp: TempName<'_>,
        name: &str,
        replace: bool,
        rel: &str,
    ) -> Result<Step, OverlayError> {
        let parent = temp.parent.as_raw_fd();
        let tmp = temp.name.clone().unwrap_or_default();
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::RENAME_NOREPLACE
        };
        match nix::fcntl::renameat2(Some(parent), tmp.as_str(), Some(parent), name, flags) {
            Ok(()) => {}
            Err(Errno::EEXIST) => return Ok(Err(ConflictReason::CreatedOnHost)),
            // A filesystem without RENAME_NOREPLACE: a hard link never replaces either.
            Err(Errno::EINVAL) if !replace => {
                match nix::unistd::linkat(
                    Some(parent),
                    tmp.as_str(),
                    Some(parent),
                    name,
                    AtFlags::empty(),
                ) {
                    Ok(()) => {}
                    Err(Errno::EEXIST) => return Ok(Err(ConflictReason::CreatedOnHost)),
                    Err(e) => return Err(self.fail("write", rel)(e.into())),
                }
                return Ok(Ok(()));
            }
            Err(e) => return Err(self.fail("write", rel)(e.into())),
        }
        temp.name = None;
        Ok(Ok(()))
    }

    fn next_temp_name(&mut self) -> String {
        self.temp_seq += 1;
        format!(".airlock-apply.{}.{}", std::process::id(), self.temp_seq)
    }

    /// A new, empty file with a temporary name in `parent`.
    fn temp_file(&mut self, parent: &OwnedFd, rel: &str) -> Result<(File, String), OverlayError> {
        for _ in 0..TEMP_ATTEMPTS {
            let name = self.next_temp_name();
            let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
            use std::os::fd::AsFd;
            match sys::openat(
                parent.as_fd(),
                name.as_str(),
                flags,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => return Ok((File::from(fd), name)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(self.fail("write", rel)(e)),
            }
        }
        Err(self.fail("write", rel)(io::Error::from(
            io::ErrorKind::AlreadyExists,
        )))
    }

    /// A new symlink to `target` with a temporary name in `parent`.
    fn temp_symlink(
        &mut self,
        parent: &OwnedFd,
        target: &str,
        rel: &str,
    ) -> Result<String, OverlayError> {
        for _ in 0..TEMP_ATTEMPTS {
            let name = self.next_temp_name();
            match nix::unistd::symlinkat(target, Some(parent.as_raw_fd()), name.as_str()) {
                Ok(()) => return Ok(name),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(self.fail("write", rel)(e.into())),
            }
        }
        Err(self.fail("write", rel)(io::Error::from(
            io::ErrorKind::AlreadyExists,
        )))
    }
}

/// What stops us from reaching a path's parent on the host.
enum Blocked {
    /// A directory on the way does not exist.
    Missing,
    /// A component on the way is a symlink (never followed).
    Symlink,
    /// A component on the way is a file or other non-directory.
    NotDir,
}

/// A temporary entry that is removed again unless it was renamed into place.
struct TempName<'a> {
    parent: &'a OwnedFd,
    name: Option<String>,
}

impl Drop for TempName<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = nix::unistd::unlinkat(
                Some(self.parent.as_raw_fd()),
                name.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// Removes the empty directory `name`; a non-empty one is a conflict.
fn rmdir(parent: &OwnedFd, name: &str) -> io::Result<Step> {
    match nix::unistd::unlinkat(Some(parent.as_raw_fd()), name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(Ok(())),
        Err(Errno::ENOTEMPTY | Errno::EEXIST) => Ok(Err(ConflictReason::DirectoryNotEmpty)),
        Err(e) => Err(e.into()),
    }
}

/// `fchown`, where we may: not being allowed to give a file away (not root) is fine, the file
/// is then ours.
fn chown(fd: &impl AsRawFd, (uid, gid): (u32, u32)) -> io::Result<()> {
    match nix::unistd::fchown(
        fd.as_raw_fd(),
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    ) {
        Ok(()) | Err(Errno::EPERM) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The state `apply` gives the host: no set-user-ID bits anywhere, no set-group-ID bits on
/// files (the gateway refuses the guest both; the snapshot may have carried them).
fn sanitized(state: &EntryState) -> EntryState {
    let strip = if state.kind == EntryKind::Dir {
        libc::S_ISUID
    } else {
        libc::S_ISUID | libc::S_ISGID
    };
    EntryState {
        mode: state.mode & !strip,
        ..state.clone()
    }
}
