//! The share's limit of files open at once (`filesystem.max_open`): an open beyond it fails
//! with `ENFILE`, and the first refusal is recorded (`fs.limit`, with the limit as its count);
//! later ones are not. Also [`identity_beneath`], how the gateway resolves a share path to the
//! host file it names without following any link (used by `nodes.rs`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::events::{FsEvent, FsEvents};
use crate::reason;
use airlock_audit::kind;
use airlock_policy::Verdict;

/// The open-file limit and whether reaching it was recorded.
#[derive(Debug)]
pub(super) struct Guard {
    pub(super) max_open: u64,
    limit_reported: AtomicBool,
}

impl Guard {
    pub(super) fn new(max_open: u64) -> Guard {
        Guard {
            max_open,
            limit_reported: AtomicBool::new(false),
        }
    }
}

impl Guard {
    /// Before an open of share path `path` on `mount`, with `open` files open now: refuses it
    /// with `ENFILE` once the guest holds `max_open`, recording the first refusal.
    pub(super) fn admit(
        &self,
        open: usize,
        mount: &str,
        path: &str,
        events: &dyn FsEvents,
    ) -> io::Result<()> {
        let open = u64::try_from(open).unwrap_or(u64::MAX);
        if open < self.max_open {
            return Ok(());
        }
        if !self.limit_reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max_open = self.max_open,
                "the guest reached the share's limit of open files"
            );
            events.record(&FsEvent {
                op: kind::FS_LIMIT,
                mount: mount.to_owned(),
                path: path.to_owned(),
                path2: None,
                decision: Verdict::Deny,
                rule: reason::rule::MAX_OPEN.to_owned(),
                reason: reason::MAX_OPEN,
                count: Some(self.max_open),
            });
        }
        Err(io::Error::from_raw_os_error(libc::ENFILE))
    }
}

/// Device and inode of `rel` beneath `root`, resolved without following any link and without
/// leaving `root`.
pub(crate) fn identity_beneath(root: &Path, rel: &str) -> io::Result<(u64, u64)> {
    identity_beneath_fd(&open_root(root)?, rel)
}

/// `root` as an `O_PATH` directory descriptor, for [`identity_beneath_fd`].
pub(crate) fn open_root(root: &Path) -> io::Result<OwnedFd> {
    let root_c = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open reads a NUL-terminated path that outlives the call; the result is a new
    // descriptor owned below.
    let dir = unsafe {
        libc::open(
            root_c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by open, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(dir) })
}

/// [`identity_beneath`] from an open root directory.
pub(crate) fn identity_beneath_fd(dir: &OwnedFd, rel: &str) -> io::Result<(u64, u64)> {
    let rel_c = CString::new(if rel.is_empty() { "." } else { rel })
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain integers; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads a NUL-terminated path and `how` (a live local of the size passed).
    // JUSTIFICATION: nix 0.29 has no openat2.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rel_c.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a fresh descriptor returned by openat2, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)?;
    Ok((st.st_dev, st.st_ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_by_inode_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        std::fs::create_dir_all(share.join("d")).unwrap();
        std::fs::write(share.join("d/f"), b"x").unwrap();
        let meta = std::fs::metadata(share.join("d/f")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            identity_beneath(&share, "d/f").unwrap(),
            (meta.dev(), meta.ino())
        );
        // Swapped for a link to a directory elsewhere: the name no longer leads to it.
        let outside = dir.path().join("outside");
        std::fs::rename(share.join("d"), &outside).unwrap();
        std::os::unix::fs::symlink(&outside, share.join("d")).unwrap();
        assert!(identity_beneath(&share, "d/f").is_err());
        assert!(identity_beneath(&share, "../outside/f").is_err());
        assert!(identity_beneath(&share, "").is_ok());
    }
}
