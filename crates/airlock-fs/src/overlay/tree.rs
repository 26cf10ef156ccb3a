//! Descriptor-relative access to a directory tree that never follows a symlink.
//!
//! A [`Tree`] holds a descriptor of its root. A relative path is reached by opening each
//! directory on the way with `openat(.., O_DIRECTORY | O_NOFOLLOW)` relative to the one
//! before, and the last component is acted on relative to its parent's descriptor, so a
//! symlink (or a directory swapped for one while we work) anywhere on the way makes the
//! call fail with `ELOOP`/`ENOTDIR` instead of leading somewhere else. Files are opened with
//! `O_NOFOLLOW | O_NONBLOCK` and checked to be regular before they are read, so a FIFO cannot
//! block us and a device cannot be read.
//!
//! Used by the overlay for the host directory (which the user may change while we work) and
//! for the overlay's own copy (which the guest may change while `airlock diff` runs).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use crate::sys;

/// Flags for every directory opened on the way down.
const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW);
/// Flags for files opened to read.
const READ_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_NOCTTY);

/// A directory tree reached through a descriptor of its root.
#[derive(Debug)]
pub(crate) struct Tree {
    root: OwnedFd,
    path: PathBuf,
}

impl Tree {
    /// Opens the directory at `path` (which is trusted: a canonical path we chose or
    /// recorded).
    pub(crate) fn open(path: &Path) -> io::Result<Tree> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)?;
        Ok(Tree {
            root: file.into(),
            path: path.to_owned(),
        })
    }

    /// `rel` under the root, for messages.
    pub(crate) fn display(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.path.clone()
        } else {
            self.path.join(rel)
        }
    }

    /// The directory at `rel` (`""` is the root), never through a symlink.
    pub(crate) fn dir(&self, rel: &str) -> io::Result<OwnedFd> {
        let mut cur = sys::openat(self.root.as_fd(), ".", DIR_FLAGS, Mode::empty())?;
        for comp in components(rel)? {
            cur = sys::openat(cur.as_fd(), comp, DIR_FLAGS, Mode::empty())?;
        }
        Ok(cur)
    }

    /// The parent directory of `rel` (not the root) and `rel`'s last component.
    pub(crate) fn parent<'r>(&self, rel: &'r str) -> io::Result<(OwnedFd, &'r str)> {
        let (parent, name) = split(rel)?;
        Ok((self.dir(parent)?, name))
    }

    /// Opens the regular file at `rel` for reading.
    pub(crate) fn open_file(&self, rel: &str) -> io::Result<File> {
        let (dir, name) = self.parent(rel)?;
        open_file_at(&dir, name)
    }
}

/// The components of a relative path; refuses empty, `.` and `..` components, NUL, and
/// absolute paths, so a recorded path can never climb out of the tree.
pub(crate) fn components(rel: &str) -> io::Result<Vec<&str>> {
    if rel.is_empty() {
        return Ok(Vec::new());
    }
    rel.split('/')
        .map(|c| {
            if c.is_empty() || c == "." || c == ".." || c.contains('\0') {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("not a plain relative path: {rel:?}"),
                ))
            } else {
                Ok(c)
            }
        })
        .collect()
}

/// Splits a non-empty relative path into its parent (`""` for the root) and last component.
pub(crate) fn split(rel: &str) -> io::Result<(&str, &str)> {
    let comps = components(rel)?;
    if comps.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the tree's root has no parent",
        ));
    }
    Ok(rel.rsplit_once('/').unwrap_or(("", rel)))
}

/// `parent/name`, or `name` at the root.
pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else, named for the manifest's skip list.
    Special(&'static str),
}

/// The kind of the inode `st` describes.
pub(crate) fn kind_of(st: &FileStat) -> Kind {
    let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if fmt == SFlag::S_IFREG {
        Kind::File
    } else if fmt == SFlag::S_IFDIR {
        Kind::Dir
    } else if fmt == SFlag::S_IFLNK {
        Kind::Symlink
    } else if fmt == SFlag::S_IFIFO {
        Kind::Special("fifo")
    } else if fmt == SFlag::S_IFSOCK {
        Kind::Special("socket")
    } else if fmt == SFlag::S_IFCHR {
        Kind::Special("char_device")
    } else if fmt == SFlag::S_IFBLK {
        Kind::Special("block_device")
    } else {
        Kind::Special("unknown_type")
    }
}

/// `lstat` of `name` in `dir`; `None` if it does not exist.
pub(crate) fn lstat_at<P: ?Sized + nix::NixPath>(
    dir: &OwnedFd,
    name: &P,
) -> io::Result<Option<FileStat>> {
    match nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `fstat` of an open descriptor.
pub(crate) fn fstat(fd: &impl AsRawFd) -> io::Result<FileStat> {
    nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)
}

/// Opens `name` in `dir` for reading, refusing anything but a regular file.
pub(crate) fn open_file_at(dir: &OwnedFd, name: &str) -> io::Result<File> {
    let fd = sys::openat(dir.as_fd(), name, READ_FLAGS, Mode::empty())?;
    let st = fstat(&fd)?;
    if kind_of(&st) != Kind::File {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    Ok(File::from(fd))
}

/// Opens the directory `name` in `dir`, never through a symlink.
pub(crate) fn open_dir_at(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    sys::openat(dir.as_fd(), name, DIR_FLAGS, Mode::empty())
}

/// The target of the symlink `name` in `dir`, as bytes.
pub(crate) fn read_link_at(dir: &OwnedFd, name: &str) -> io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    nix::fcntl::readlinkat(Some(dir.as_raw_fd()), name)
        .map(std::ffi::OsString::into_vec)
        .map_err(io::Error::from)
}

/// One entry met by [`walk`].
pub(crate) struct Visit<'a> {
    /// The directory holding the entry.
    pub dir: &'a OwnedFd,
    /// The directory's path relative to the root (`""` for the root).
    pub parent: &'a str,
    /// The entry's name, as bytes.
    pub name: &'a [u8],
    /// The entry's `lstat`.
    pub stat: FileStat,
}

/// Visits every entry below the root of `tree`, depth first, a directory before its
/// contents, names in byte order. `visit` says whether to go into a directory entry; entries
/// that vanish meanwhile are passed over. `fail` turns an I/O error and the relative path it
/// happened at into the caller's error.
pub(crate) fn walk<E>(
    tree: &Tree,
    mut visit: impl FnMut(Visit<'_>) -> Result<bool, E>,
    fail: impl Fn(&'static str, &str, io::Error) -> E,
) -> Result<(), E> {
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = match tree.dir(&rel) {
            Ok(d) => d,
            // Gone, or no longer a directory, since its parent was listed: passed over.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) =>
            {
                continue;
            }
            Err(e) => return Err(fail("open the directory", &rel, e)),
        };
        let names = list(&dir).map_err(|e| fail("list the directory", &rel, e))?;
        let mut subdirs = Vec::new();
        for name in &names {
            let stat = match lstat_at(&dir, name.as_slice()) {
                Ok(Some(st)) => st,
                Ok(None) => continue,
                Err(e) => {
                    let path = join(&rel, &String::from_utf8_lossy(name));
                    return Err(fail("inspect", &path, e));
                }
            };
            let descend = visit(Visit {
                dir: &dir,
                parent: &rel,
                name,
                stat,
            })?;
            if descend
                && kind_of(&stat) == Kind::Dir
                && let Ok(name) = std::str::from_utf8(name)
            {
                subdirs.push(join(&rel, name));
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// The names in `dir` (without `.` and `..`), sorted bytewise.
pub(crate) fn list(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut d = Dir::from(dir.try_clone()?)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_escapes() {
        assert_eq!(components("").unwrap(), Vec::<&str>::new());
        assert_eq!(components("a/b").unwrap(), vec!["a", "b"]);
        for bad in ["/a", "a/", "a//b", "..", "a/../b", "./a", "a\0b"] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
        assert_eq!(split("a/b/c").unwrap(), ("a/b", "c"));
        assert_eq!(split("c").unwrap(), ("", "c"));
        assert!(split("").is_err());
    }

    #[test]
    fn never_walks_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("f")).unwrap();
        let tree = Tree::open(dir.path()).unwrap();
        let e = tree.dir("link").unwrap_err();
        // ELOOP, or ENOTDIR when O_DIRECTORY meets the link first
        assert!(
            matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
            "{e}"
        );
        assert!(tree.open_file("link/secret").is_err());
        assert!(tree.open_file("f").is_err());
        let root = tree.dir("").unwrap();
        assert_eq!(list(&root).unwrap(), vec![b"f".to_vec(), b"link".to_vec()]);
        assert_eq!(
            kind_of(&lstat_at(&root, "link").unwrap().unwrap()),
            Kind::Symlink
        );
        assert!(lstat_at(&root, "missing").unwrap().is_none());
    }
}
