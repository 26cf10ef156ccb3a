//! Answers the seccomp notifications of commands' filters: every refused syscall gets EPERM
//! and is reported to the host as a denial. One thread serves all filters.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;

/// A refused syscall, as the listener saw it.
#[derive(Debug, Clone, Copy)]
pub struct Denial {
    /// The calling process (guest pid).
    pub pid: u32,
    /// The syscall number.
    pub nr: i64,
}

/// What one readable listener gave.
enum Answered {
    /// A refused syscall, answered with EPERM.
    Denial(Denial),
    /// Nothing to report (the caller died or was interrupted first).
    Nothing,
    /// The listener is unusable; stop serving it.
    Gone,
}

/// Receives one notification from `listener`, answers it with EPERM and returns it.
fn answer_one(listener: &OwnedFd) -> Answered {
    // SAFETY: seccomp_notif is plain old data; the kernel requires it zeroed.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one seccomp_notif into the local.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &raw mut notif,
        )
    };
    if rc < 0 {
        return match io::Error::last_os_error().raw_os_error() {
            // The caller died or was interrupted before we read it.
            Some(libc::ENOENT | libc::EINTR) => Answered::Nothing,
            _ => Answered::Gone,
        };
    }
    let resp = libc::seccomp_notif_resp {
        id: notif.id,
        val: 0,
        error: -libc::EPERM,
        flags: 0,
    };
    // SAFETY: the ioctl reads one seccomp_notif_resp from the local.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &raw const resp,
        );
    }
    Answered::Denial(Denial {
        pid: notif.pid,
        nr: i64::from(notif.data.nr),
    })
}

/// One thread answers the denials of every command's filter, started with the first: a thread
/// per command costs milliseconds per exec under emulation.
pub struct DenialServer {
    listeners: std::sync::Mutex<Vec<OwnedFd>>,
    /// Read end (polled by the thread) and write end (a byte per new listener), non-blocking.
    wake: (OwnedFd, OwnedFd),
}

impl DenialServer {
    /// The agent's server; its thread starts on first use and calls `report` for each denial.
    pub fn get(report: fn(Denial)) -> io::Result<&'static DenialServer> {
        static SERVER: OnceLock<DenialServer> = OnceLock::new();
        if let Some(s) = SERVER.get() {
            return Ok(s);
        }
        let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
        let wake = nix::unistd::pipe2(flags)?;
        let mut fresh = false;
        let server = SERVER.get_or_init(|| {
            fresh = true;
            DenialServer {
                listeners: std::sync::Mutex::default(),
                wake,
            }
        });
        if fresh {
            std::thread::Builder::new()
                .name("seccomp-notify".into())
                .spawn(move || server.run(report))?;
        }
        Ok(server)
    }

    /// Serves `listener` until every process under its filter is gone.
    pub fn add(&self, listener: OwnedFd) {
        self.listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(listener);
        // A full pipe already holds a wake-up.
        let _ = nix::unistd::write(&self.wake.1, &[1]);
    }

    fn run(&self, report: fn(Denial)) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let mut serving: Vec<OwnedFd> = Vec::new();
        loop {
            serving.append(
                &mut self
                    .listeners
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            let mut fds: Vec<PollFd<'_>> = std::iter::once(&self.wake.0)
                .chain(serving.iter())
                .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("airlock-guest: seccomp notifications: poll: {e}");
                    return;
                }
            }
            let ready: Vec<Option<PollFlags>> = fds.iter().map(|f| f.revents()).collect();
            drop(fds);
            let mut sink = [0u8; 64];
            while matches!(nix::unistd::read(self.wake.0.as_raw_fd(), &mut sink), Ok(n) if n > 0) {}
            let mut gone = vec![false; serving.len()];
            for ((listener, revents), gone) in serving
                .iter()
                .zip(ready.iter().skip(1))
                .zip(gone.iter_mut())
            {
                let Some(revents) = revents else { continue };
                if revents.contains(PollFlags::POLLIN) {
                    match answer_one(listener) {
                        Answered::Denial(d) => report(d),
                        Answered::Nothing => {}
                        Answered::Gone => *gone = true,
                    }
                } else if !revents.is_empty() {
                    // POLLHUP: every process under the filter is gone.
                    *gone = true;
                }
            }
            let mut gone = gone.into_iter();
            serving.retain(|_| !gone.next().unwrap_or(false));
        }
    }
}
