//! Applying image layers to a directory, the way the OCI image spec describes: entries in
//! order, `.wh.NAME` removes `NAME` from the layers below, `.wh..wh..opq` empties its directory
//! of what the layers below put there.
//!
//! A layer is untrusted input. Every path is resolved below the root with `openat2` and
//! `RESOLVE_IN_ROOT`, so `..`, absolute names and symlinks (absolute or relative) can never lead
//! out of the tree: a symlink in the tree resolves as it would inside the image, never on the
//! host. The last component is never followed: an existing entry is removed before a new one
//! is made with `O_EXCL`/`O_NOFOLLOW`. Hard links must name an entry already in the tree.
//! Device nodes are skipped (the guest has its own `/dev`) and counted.

use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag, mkdirat, mknodat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream is malformed.
    #[error("layer {layer}: reading the tar stream")]
    Tar {
        /// Which layer (1-based).
        layer: usize,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An entry could not be written.
    #[error("layer {layer}: {path:?}: {what}")]
    Entry {
        /// Which layer (1-based).
        layer: usize,
        /// The entry's path as in the tar.
        path: String,
        /// What went wrong.
        what: String,
    },
}

/// What applying layers kept and left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Entries written.
    pub entries: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Whiteouts applied.
    pub whiteouts: u64,
    /// Device nodes skipped.
    pub devices_skipped: u64,
    /// Entries whose owner could not be set (not running as root).
    pub owners_not_kept: u64,
}

/// The tree layers are applied to.
#[derive(Debug)]
pub struct Tree {
    root: OwnedFd,
    as_root: bool,
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

impl Tree {
    /// Opens `dir` (which must exist) as the root of the image being built.
    pub fn open(dir: &Path) -> io::Result<Tree> {
        let fd = owned(nix::fcntl::open(
            dir,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )?);
        Ok(Tree {
            root: fd,
            as_root: nix::unistd::geteuid().is_root(),
        })
    }

    /// Applies one uncompressed layer (layer `n`, 1-based, for messages).
    pub fn apply(
        &self,
        n: usize,
        reader: impl Read,
        stats: &mut UnpackStats,
    ) -> Result<(), UnpackError> {
        let tar_err = |source| UnpackError::Tar { layer: n, source };
        let mut archive = tar::Archive::new(reader);
        let mut created: HashSet<PathBuf> = HashSet::new();
        for entry in archive.entries().map_err(tar_err)? {
            let mut entry = entry.map_err(tar_err)?;
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let bad = |what: String| UnpackError::Entry {
                layer: n,
                path: shown.clone(),
                what,
            };
            let Some(rel) = normalize(&raw) else {
                // The root itself (`./`): its attributes are not the image's business.
                continue;
            };
            let name = rel.file_name().map(OsStr::to_os_string).unwrap_or_default();
            let parent_rel = rel.parent().unwrap_or(Path::new(""));
            let name_bytes = name.as_bytes();
            if name_bytes == OPAQUE.as_bytes() {
                let dir = self.dir(parent_rel, true).map_err(|e| bad(e.to_string()))?;
                clear_except(&dir, parent_rel, &created).map_err(|e| bad(e.to_string()))?;
                stats.whiteouts += 1;
                continue;
            }
            if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT.as_bytes()) {
                if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/')
                {
                    return Err(bad("a whiteout with no name".into()));
                }
                if let Ok(dir) = self.dir(parent_rel, false) {
                    remove_at(&dir, OsStr::from_bytes(hidden)).map_err(|e| bad(e.to_string()))?;
                }
                stats.whiteouts += 1;
                continue;
            }
            let header = entry.header().clone();
            let kind = header.entry_type();
            let mode = header.mode().map_err(|e| bad(e.to_string()))? & 0o7777;
            let uid = header.uid().map_err(|e| bad(e.to_string()))?;
            let gid = header.gid().map_err(|e| bad(e.to_string()))?;
            if kind.is_character_special() || kind.is_block_special() {
                stats.devices_skipped += 1;
                continue;
            }
            if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
                continue;
            }
            let parent = self.dir(parent_rel, true).map_err(|e| bad(e.to_string()))?;
            let existing = lstat_at(&parent, &name);
            if kind.is_dir() {
                match existing {
                    Some(st)
                        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
                            == SFlag::S_IFDIR => {}
                    Some(_) => {
                        remove_at(&parent, &name).map_err(|e| bad(e.to_string()))?;
                        mkdirat(
                            at(&parent),
                            name.as_os_str(),
                            Mode::from_bits_truncate(0o700),
                        )
                        .map_err(|e| bad(format!("mkdir: {e}")))?;
                    }
                    None => mkdirat(
                        at(&parent),
                        name.as_os_str(),
                        Mode::from_bits_truncate(0o700),
                    )
                    .map_err(|e| bad(format!("mkdir: {e}")))?,
                }
                self.own(&parent, &name, uid, gid, stats)
                    .map_err(|e| bad(e.to_string()))?;
                chmod_at(&parent, &name, mode).map_err(|e| bad(e.to_string()))?;
            } else {
                if existing.is_some() {
                    remove_at(&parent, &name).map_err(|e| bad(e.to_string()))?;
                }
                if kind.is_symlink() {
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| bad("a symlink without a target".into()))?
                        .into_owned();
                    symlinkat(OsStr::from_bytes(&target), at(&parent), name.as_os_str())
                        .map_err(|e| bad(format!("symlink: {e}")))?;
                    self.own(&parent, &name, uid, gid, stats)
                        .map_err(|e| bad(e.to_string()))?;
                } else if kind.is_hard_link() {
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| bad("a hard link without a target".into()))?
                        .into_owned();
                    let target =
                        normalize(&target).ok_or_else(|| bad("a hard link to the root".into()))?;
                    let tdir = self
                        .dir(target.parent().unwrap_or(Path::new("")), false)
                        .map_err(|e| bad(format!("link target: {e}")))?;
                    let tname = target.file_name().unwrap_or_default();
                    linkat(
                        at(&tdir),
                        tname,
                        at(&parent),
                        name.as_os_str(),
                        AtFlags::empty(),
                    )
                    .map_err(|e| bad(format!("link to {}: {e}", target.display())))?;
                } else if kind.is_fifo() {
                    mknodat(
                        at(&parent),
                        name.as_os_str(),
                        SFlag::S_IFIFO,
                        Mode::from_bits_truncate(0o600),
                        0,
                    )
                    .map_err(|e| bad(format!("mkfifo: {e}")))?;
                    self.own(&parent, &name, uid, gid, stats)
                        .map_err(|e| bad(e.to_string()))?;
                    chmod_at(&parent, &name, mode).map_err(|e| bad(e.to_string()))?;
                } else if kind.is_file() || kind.is_contiguous() {
                    let fd = owned(
                        nix::fcntl::openat(
                            at(&parent),
                            name.as_os_str(),
                            OFlag::O_CREAT
                                | OFlag::O_EXCL
                                | OFlag::O_WRONLY
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_CLOEXEC,
                            Mode::from_bits_truncate(0o600),
                        )
                        .map_err(|e| bad(format!("create: {e}")))?,
                    );
                    let mut file = std::fs::File::from(fd);
                    stats.bytes +=
                        io::copy(&mut entry, &mut file).map_err(|e| bad(format!("write: {e}")))?;
                    self.own(&parent, &name, uid, gid, stats)
                        .map_err(|e| bad(e.to_string()))?;
                    // After chown, which clears set-id bits.
                    nix::sys::stat::fchmod(file.as_raw_fd(), Mode::from_bits_truncate(mode))
                        .map_err(|e| bad(format!("chmod: {e}")))?;
                } else {
                    return Err(bad(format!("unsupported entry type {:?}", kind)));
                }
            }
            created.insert(rel);
            stats.entries += 1;
        }
        Ok(())
    }

    /// The directory at `rel` below the root, resolved inside the tree; missing components are
    /// created (0755, root's) when `create`.
    fn dir(&self, rel: &Path, create: bool) -> io::Result<OwnedFd> {
        let how = || {
            OpenHow::new()
                .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
        };
        let target = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        match openat2(self.root.as_raw_fd(), target, how()) {
            Ok(fd) => return Ok(owned(fd)),
            Err(nix::errno::Errno::ENOENT) if create => {}
            Err(e) => return Err(io::Error::other(format!("{}: {e}", rel.display()))),
        }
        let mut cur = owned(openat2(self.root.as_raw_fd(), Path::new("."), how())?);
        for c in rel.components() {
            let Component::Normal(c) = c else { continue };
            match mkdirat(at(&cur), c, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "mkdir {}: {e}",
                        c.to_string_lossy()
                    )));
                }
            }
            cur = owned(
                openat2(cur.as_raw_fd(), c, how())
                    .map_err(|e| io::Error::other(format!("{}: {e}", rel.display())))?,
            );
        }
        Ok(cur)
    }

    fn own(
        &self,
        dir: &OwnedFd,
        name: &OsString,
        uid: u64,
        gid: u64,
        stats: &mut UnpackStats,
    ) -> io::Result<()> {
        let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Err(io::Error::other("owner out of range"));
        };
        match fchownat(
            at(dir),
            name.as_os_str(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EPERM) if !self.as_root => {
                stats.owners_not_kept += 1;
                Ok(())
            }
            Err(e) => Err(io::Error::other(format!("chown: {e}"))),
        }
    }
}

/// The tar path as a relative path inside the tree: leading `/` and `./` dropped; `None` for
/// the root itself. `..` components are kept out by resolving below the root, but a name made
/// only of them is treated as the root.
fn normalize(raw: &[u8]) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn lstat_at(dir: &OwnedFd, name: &OsStr) -> Option<nix::sys::stat::FileStat> {
    nix::sys::stat::fstatat(at(dir), name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()
}

fn chmod_at(dir: &OwnedFd, name: &OsStr, mode: u32) -> io::Result<()> {
    nix::sys::stat::fchmodat(
        at(dir),
        name,
        Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| io::Error::other(format!("chmod: {e}")))
}

/// Removes `name` in `dir`, recursively for a directory, never following a link.
fn remove_at(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name) else {
        return Ok(());
    };
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        let sub = owned(nix::fcntl::openat(
            at(dir),
            name,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?);
        for child in children(&sub)? {
            remove_at(&sub, &child)?;
        }
        unlinkat(at(dir), name, UnlinkatFlags::RemoveDir)?;
    } else {
        unlinkat(at(dir), name, UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(())
}

/// Names in `dir` other than `.` and `..`.
fn children(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    // A second descriptor: `Dir` owns and closes the one it is given.
    let dup = nix::unistd::dup(dir.as_raw_fd())?;
    let mut d = nix::dir::Dir::from_fd(dup)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(out)
}

/// Empties `dir` (at `rel`) of everything not `created` by the current layer.
fn clear_except(dir: &OwnedFd, rel: &Path, created: &HashSet<PathBuf>) -> io::Result<()> {
    for child in children(dir)? {
        if !created.contains(&rel.join(&child)) {
            remove_at(dir, &child)?;
        }
    }
    Ok(())
}

/// Takes ownership of a descriptor a successful open call just returned.
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was returned by a successful open/openat2/dup and nothing else owns or will
    // close it, so `OwnedFd` becomes its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `fd` as nix's "relative to this directory" argument.
fn at(fd: &OwnedFd) -> Option<RawFd> {
    Some(fd.as_raw_fd())
}

#[cfg(test)]
mod tests;
