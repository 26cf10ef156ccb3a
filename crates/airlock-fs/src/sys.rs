//! The few host calls the gateway makes itself, each wrapped in a small safe function:
//! sizing the descriptor budget, cutting the
//! vhost-user connection when the gateway is stopped with the frontend still attached, and,
//! for overlay copies, opening a file relative to a directory descriptor and cloning a file's
//! data blocks.
//!
//! Called by `serve.rs` (gateway and worker threads), `overlay` and by tests.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{getsockopt, sockopt};
use nix::sys::stat::Mode;

/// Descriptors kept back from the guest for our own use (virtiofsd keeps back one per memory
/// slot plus 100; QEMU can hand over up to 509 memory regions).
const FD_RESERVE: u64 = 509 + 100;
/// The guest never gets fewer than this many descriptors, even under a tiny limit.
const MIN_GUEST_FDS: u64 = 64;

/// How many descriptors one gateway may hold for the guest: half of what remains of the
/// process's descriptor limit (raised first, see [`airlock_jail::rlimit::raise_nofile`]) after
/// a reserve, so that a guest opening files cannot starve the supervisor.
pub fn guest_fd_budget() -> u64 {
    guest_fd_budget_for(airlock_jail::rlimit::raise_nofile())
}

/// The budget [`guest_fd_budget`] gives under descriptor limit `limit`.
pub fn guest_fd_budget_for(limit: u64) -> u64 {
    (limit.saturating_sub(FD_RESERVE) / 2).max(MIN_GUEST_FDS)
}

/// Shuts down every accepted connection of the unix listener bound at `socket` in this
/// process, so that a serve loop blocked reading from it returns.
///
/// The connection belongs to vhost-user-backend's request thread, which does not expose it;
/// we find it through `/proc/self/fd`. Each candidate is first duplicated, and only the
/// duplicate is inspected and shut down, so a descriptor number that is closed and reused
/// meanwhile is never acted on unless it, too, is a connection accepted on `socket`.
/// Listening sockets are skipped.
pub fn shutdown_connections(socket: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut count = 0;
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        let Some(dup) = duplicate(fd) else {
            continue;
        };
        if getsockopt(&dup, sockopt::AcceptConn).unwrap_or(true) {
            continue;
        }
        let stream = UnixStream::from(dup);
        let bound_here = stream
            .local_addr()
            .ok()
            .is_some_and(|a| a.as_pathname() == Some(socket));
        if bound_here && stream.shutdown(std::net::Shutdown::Both).is_ok() {
            count += 1;
        }
    }
    count
}

/// A close-on-exec duplicate of `fd`, if it is open.
fn duplicate(fd: RawFd) -> Option<OwnedFd> {
    let new = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(0)).ok()?;
    // JUSTIFICATION: nix 0.29's `fcntl` returns a bare `RawFd`; taking ownership of it has no
    // safe constructor.
    // SAFETY: `F_DUPFD_CLOEXEC` succeeded, so `new` is a freshly allocated descriptor that
    // nothing else in the process refers to; the `OwnedFd` becomes its only owner and closes
    // it exactly once.
    Some(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `openat(dir, name, flags, mode)`, returning an owned descriptor. `name` is one path
/// component or a relative path; the caller chooses `O_NOFOLLOW` and friends.
pub fn openat<P: ?Sized + nix::NixPath>(
    dir: BorrowedFd<'_>,
    name: &P,
    flags: OFlag,
    mode: Mode,
) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::openat(Some(dir.as_raw_fd()), name, flags | OFlag::O_CLOEXEC, mode)?;
    // JUSTIFICATION: nix 0.29's `openat` returns a bare `RawFd`; taking ownership of it has no
    // safe constructor.
    // SAFETY: `openat` succeeded, so `fd` is a freshly allocated descriptor that nothing else
    // in the process refers to; the `OwnedFd` becomes its only owner and closes it once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `dst` share `src`'s data blocks (`ioctl(FICLONE)`), replacing `dst`'s contents: an
/// instant copy on filesystems with reflinks (btrfs, XFS, bcachefs). Fails with
/// `EOPNOTSUPP`, `EXDEV` or `EINVAL` where the filesystems cannot; callers then copy.
pub fn ficlone(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> io::Result<()> {
    // JUSTIFICATION: nix has no wrapper for FICLONE, and its ioctl macros are unsafe too.
    // SAFETY: FICLONE takes the source descriptor as its integer argument and reads or writes
    // no memory of ours; both descriptors are borrowed, so they stay open during the call. A
    // wrong descriptor type only makes the kernel return an error.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn shutdown_reaches_only_accepted_connections_on_that_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let other_path = dir.path().join("other");
        let listener = UnixListener::bind(&path).unwrap();
        let other_listener = UnixListener::bind(&other_path).unwrap();
        let mut client = UnixStream::connect(&path).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let _other_client = UnixStream::connect(&other_path).unwrap();
        let (other_accepted, _) = other_listener.accept().unwrap();

        assert_eq!(shutdown_connections(&path), 1);
        // the peer sees end of file; the other connection is untouched
        use std::io::Read;
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        other_accepted.set_nonblocking(true).unwrap();
        let mut o = &other_accepted;
        assert_eq!(
            o.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(accepted);
    }

    #[test]
    fn budget_is_positive() {
        assert!(guest_fd_budget() >= MIN_GUEST_FDS);
    }
}
