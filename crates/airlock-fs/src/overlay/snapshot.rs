//! Copying the host directory into the overlay's `upper` directory, and recording what was
//! copied. Called once, by `Overlay::create`, before the guest exists.
//!
//! The host side is read through [`Tree`]: every directory is opened with `O_NOFOLLOW`
//! relative to its parent, every file with `O_NOFOLLOW | O_NONBLOCK` and checked to be a
//! regular file, so neither a symlink in the tree nor one swapped in while we copy leads
//! outside it. Symlinks are recreated as symlinks with the same target text. FIFOs, sockets
//! and device nodes are not copied (opening a FIFO could block, a device could be anything)
//! but listed in the manifest as skipped, as are entries we cannot read and names that are
//! not UTF-8 (the gateway could not show them to the guest anyway).
//!
//! The copy side is a fresh private directory, written through plain paths. Each copy gets
//! the source's permission bits, owner (when we may chown) and times; directories get theirs
//! after their contents are in place. Names of one host file (hard links) stay names of one
//! copy.

use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use nix::sys::stat::{FileStat, UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::copy::{copy_data, hash_file};
use super::manifest::{Entry, Skipped, Stamp};
use super::tree::{self, Kind, Tree, Visit};
use super::types::{EntryKind, OverlayError, PERMISSION_BITS};

/// Progress callback: files copied so far, bytes copied so far.
pub(crate) type Progress<'a> = Option<&'a mut dyn FnMut(u64, u64)>;

/// Copies everything below `host`'s root into the existing, empty directory `upper`.
/// Returns the manifest entries (sorted by path) and the skipped entries.
pub(crate) fn copy_tree(
    host: &Tree,
    upper: &Path,
    mut progress: Progress<'_>,
) -> Result<(Vec<Entry>, Vec<Skipped>), OverlayError> {
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    let mut dirs: Vec<(String, FileStat)> = Vec::new();
    // Host files with more than one name → the index of the entry of the first name copied.
    let mut linked: HashMap<(u64, u64), usize> = HashMap::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    let fail = |op, rel: &str, source| OverlayError::Io {
        op,
        path: host.display(rel),
        source,
    };

    tree::walk(
        host,
        |v: Visit<'_>| {
            let Ok(name) = std::str::from_utf8(v.name) else {
                skipped.push(Skipped {
                    path: tree::join(v.parent, &escape(v.name)),
                    reason: "non_utf8_name".to_owned(),
                });
                return Ok(false);
            };
            let rel = tree::join(v.parent, name);
            let dst = upper.join(&rel);
            let to_copy = |source| OverlayError::Io {
                op: "copy",
                path: dst.clone(),
                source,
            };
            match tree::kind_of(&v.stat) {
                Kind::Dir => {
                    // Only what we can list is copied; an unreadable directory is skipped
                    // whole rather than shown empty.
                    match tree::open_dir_at(v.dir, name) {
                        Ok(_) => {}
                        Err(e) if is_unreadable(&e) => {
                            skipped.push(unreadable(rel));
                            return Ok(false);
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
                        Err(e) => return Err(fail("open the directory", &rel, e)),
                    }
                    DirBuilder::new()
                        .mode(0o700)
                        .create(&dst)
                        .map_err(to_copy)?;
                    entries.push(Entry {
                        path: rel.clone(),
                        kind: EntryKind::Dir,
                        mode: v.stat.st_mode & PERMISSION_BITS,
                        size: 0,
                        sha256: None,
                        target: None,
                        copy: None,
                    });
                    dirs.push((rel, v.stat));
                    Ok(true)
                }
                Kind::File => {
                    // Another name of a file already copied: link it, so the copy keeps the
                    // host's hard links (the gateway refuses every name of a file `deny_read`
                    // names, by identity) and costs no second copy.
                    let id = (v.stat.st_dev, v.stat.st_ino);
                    if v.stat.st_nlink > 1
                        && let Some(&first) = linked.get(&id)
                        && let Some(e) = entries.get(first).cloned()
                    {
                        std::fs::hard_link(upper.join(&e.path), &dst).map_err(to_copy)?;
                        let stamp = nix::sys::stat::lstat(&dst)
                            .map_err(|e| to_copy(e.into()))
                            .map(|st| Stamp::of(&st))?;
                        // Linking changed the shared inode's ctime: both names get the new stamp.
                        if let Some(f) = entries.get_mut(first) {
                            f.copy = Some(stamp);
                        }
                        entries.push(Entry {
                            path: rel,
                            copy: Some(stamp),
                            ..e
                        });
                        return Ok(false);
                    }
                    let src = match tree::open_file_at(v.dir, name) {
                        Ok(f) => f,
                        Err(e) if is_unreadable(&e) => {
                            skipped.push(unreadable(rel));
                            return Ok(false);
                        }
                        // Gone, or swapped for something else since we listed it.
                        Err(e)
                            if e.raw_os_error() == Some(libc::ENOENT)
                                || e.raw_os_error() == Some(libc::ELOOP)
                                || e.kind() == io::ErrorKind::InvalidData =>
                        {
                            return Ok(false);
                        }
                        Err(e) => return Err(fail("open", &rel, e)),
                    };
                    let st = tree::fstat(&src).map_err(|e| fail("inspect", &rel, e))?;
                    let (sha256, size) = copy_file(&src, &dst, &st).map_err(to_copy)?;
                    let copied = nix::sys::stat::lstat(&dst).map_err(|e| to_copy(e.into()))?;
                    if st.st_nlink > 1 {
                        linked.insert((st.st_dev, st.st_ino), entries.len());
                    }
                    entries.push(Entry {
                        path: rel,
                        kind: EntryKind::File,
                        mode: st.st_mode & PERMISSION_BITS,
                        size,
                        sha256: Some(sha256),
                        target: None,
                        copy: Some(Stamp::of(&copied)),
                    });
                    files += 1;
                    bytes = bytes.saturating_add(size);
                    if let Some(p) = progress.as_mut() {
                        p(files, bytes);
                    }
                    Ok(false)
                }
                Kind::Symlink => {
                    let target = match tree::read_link_at(v.dir, name) {
                        Ok(t) => t,
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
                        Err(e) => return Err(fail("read the link", &rel, e)),
                    };
                    let Ok(target) = String::from_utf8(target) else {
                        skipped.push(Skipped {
                            path: rel,
                            reason: "non_utf8_target".to_owned(),
                        });
                        return Ok(false);
                    };
                    std::os::unix::fs::symlink(&target, &dst).map_err(to_copy)?;
                    let _ =
                        std::os::unix::fs::lchown(&dst, Some(v.stat.st_uid), Some(v.stat.st_gid));
                    set_times(&dst, &v.stat).map_err(to_copy)?;
                    entries.push(Entry {
                        path: rel,
                        kind: EntryKind::Symlink,
                        mode: v.stat.st_mode & PERMISSION_BITS,
                        size: target.len() as u64,
                        sha256: None,
                        target: Some(target),
                        copy: None,
                    });
                    Ok(false)
                }
                Kind::Special(reason) => {
                    skipped.push(Skipped {
                        path: rel,
                        reason: reason.to_owned(),
                    });
                    Ok(false)
                }
            }
        },
        fail,
    )?;

    // Directory modes last (a read-only directory must be filled first), deepest first so
    // that setting a parent's times comes after its children changed it.
    for (rel, st) in dirs.iter().rev() {
        let dst = upper.join(rel);
        finish_dir(&dst, st).map_err(|source| OverlayError::Io {
            op: "copy",
            path: dst.clone(),
            source,
        })?;
    }
    let root = tree::fstat(
        &host
            .dir("")
            .map_err(|e| fail("open the directory", "", e))?,
    )
    .map_err(|e| fail("inspect", "", e))?;
    finish_dir(upper, &root).map_err(|source| OverlayError::Io {
        op: "copy",
        path: upper.to_owned(),
        source,
    })?;

    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((entries, skipped))
}

/// Copies the open regular file `src` to the new file `dst` with `st`'s owner, permission
/// bits and times; returns the copy's SHA-256 and length.
fn copy_file(src: &File, dst: &Path, st: &FileStat) -> io::Result<(String, u64)> {
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dst)?;
    copy_data(src, &out)?;
    // Hash what the copy holds: that is the baseline the guest starts from, even if the
    // host file changed while we copied (then `apply` sees a conflict, as it should).
    let hashed = hash_file(&out)?;
    // Owner before mode: chown clears set-ID bits.
    let _ = std::os::unix::fs::fchown(&out, Some(st.st_uid), Some(st.st_gid));
    nix::sys::stat::fchmod(
        std::os::fd::AsRawFd::as_raw_fd(&out),
        nix::sys::stat::Mode::from_bits_truncate(st.st_mode & PERMISSION_BITS),
    )?;
    drop(out);
    set_times(dst, st)?;
    Ok(hashed)
}

/// Gives the copied directory `dst` the owner, permission bits and times of `st`.
fn finish_dir(dst: &Path, st: &FileStat) -> io::Result<()> {
    let _ = std::os::unix::fs::lchown(dst, Some(st.st_uid), Some(st.st_gid));
    nix::sys::stat::fchmodat(
        None,
        dst,
        nix::sys::stat::Mode::from_bits_truncate(st.st_mode & PERMISSION_BITS),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )?;
    set_times(dst, st)
}

/// Sets `path`'s access and modification times to `st`'s, without following a symlink.
fn set_times(path: &Path, st: &FileStat) -> io::Result<()> {
    let atime = TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let mtime = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    utimensat(None, path, &atime, &mtime, UtimensatFlags::NoFollowSymlink)?;
    Ok(())
}

fn is_unreadable(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EPERM)
}

fn unreadable(path: String) -> Skipped {
    Skipped {
        path,
        reason: "unreadable".to_owned(),
    }
}

/// A name with non-UTF-8 bytes shown as `\xNN`.
fn escape(name: &[u8]) -> String {
    let mut out = String::new();
    for chunk in name.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}
