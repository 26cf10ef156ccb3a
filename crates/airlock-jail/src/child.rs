//! Spawning helper processes (QEMU, the vsock backend) so that none outlives airlock.

use std::io;

/// Makes `cmd` die with its parent and puts it in a session of its own, without a controlling
/// terminal: a Ctrl-C reaches airlock (which forwards it to the guest) instead of killing the VM
/// under it, and a compromised helper cannot open `/dev/tty` to inject keystrokes.
pub fn contain(cmd: &mut tokio::process::Command) {
    cmd.kill_on_drop(true);
    // SAFETY: runs in the child between fork and exec; setsid, prctl and getppid are
    // async-signal-safe and the closure touches no shared memory.
    // JUSTIFICATION: nix's prctl module lacks PR_SET_PDEATHSIG on all supported versions we use.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() == 1 {
                return Err(io::Error::other("parent exited"));
            }
            Ok(())
        });
    }
}

/// For build steps run with std's `Command`: die with airlock rather than build on unattended.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the child between fork and exec; prctl is async-signal-safe and the closure
    // touches no shared memory.
    // JUSTIFICATION: as in `contain`.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
