//! Pseudo-terminal helpers for `-t` sessions: allocate, resize, make controlling terminal.

use airlock_proto::WindowSize;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::pty::{OpenptyResult, Winsize, openpty};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// A new PTY pair of `size`; the master is close-on-exec so the workload never inherits it.
pub fn open(size: WindowSize) -> io::Result<(OwnedFd, OwnedFd)> {
    let OpenptyResult { master, slave } = openpty(Some(&winsize(size)), None)?;
    fcntl(master.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok((master, slave))
}

/// Sets the terminal size; the kernel sends SIGWINCH to the foreground process group.
pub fn resize(master: BorrowedFd<'_>, size: WindowSize) -> io::Result<()> {
    let ws = winsize(size);
    // SAFETY: TIOCSWINSZ reads one `struct winsize` through the pointer, which points at a live
    // value for the duration of the call; `master` is an open fd borrowed for the call.
    // JUSTIFICATION: nix exposes no safe wrapper for TIOCSWINSZ.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// In the child, after `setsid`: makes stdin (the PTY slave) the controlling terminal.
///
/// Runs between fork and exec, so it only makes one async-signal-safe syscall.
pub fn make_controlling_terminal() -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal); fd 0 is the PTY slave that
    // the parent installed as stdin; ioctl is async-signal-safe, as required after fork.
    // JUSTIFICATION: must run between fork and exec, where only raw syscalls are allowed.
    let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn winsize(size: WindowSize) -> Winsize {
    Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}
