//! Spawning helper processes (QEMU, the vsock backend) so that none outlives airlock.

use std::io;

/// Makes `cmd` die with its parent and keeps it out of the terminal's process group, so a Ctrl-C
/// reaches airlock (which forwards it to the guest) instead of killing the VM under it.
pub fn contain(cmd: &mut tokio::process::Command) {
    cmd.process_group(0).kill_on_drop(true);
    // SAFETY: runs in the child between fork and exec; prctl and getppid are async-signal-safe and
    // the closure touches no shared memory.
    // JUSTIFICATION: nix's prctl module lacks PR_SET_PDEATHSIG on all supported versions we use.
    unsafe {
        cmd.pre_exec(|| {
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

/// Takes from the engine what it does not need, between fork and exec: new network, IPC and UTS
/// namespaces (the network one is empty; vhost-user sockets are pathname unix sockets, which work
/// across network namespaces), every capability (bounding, ambient, effective, permitted,
/// inheritable), and `no_new_privs`. QEMU's own `-sandbox` filter comes on top.
///
/// Namespaces need privilege: without it (airlock run by an ordinary user) they are skipped and
/// the engine still loses its capabilities (it has none then anyway) and gets `no_new_privs`.
pub fn jail_engine(cmd: &mut tokio::process::Command) {
    // SAFETY: runs in the child between fork and exec; it only makes raw syscalls (unshare,
    // prctl, capset) on stack values, all async-signal-safe, and touches no shared memory.
    // JUSTIFICATION: must run between fork and exec, where only raw syscalls are allowed.
    unsafe {
        cmd.pre_exec(|| {
            let ns = libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
            if libc::unshare(ns) != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EPERM) {
                    return Err(err);
                }
            }
            // Clearing the bounding set needs CAP_SETPCAP; without it there is nothing to drop.
            for cap in 0..64 {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            );
            let mut header = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let data = [CapData::default(); 2];
            if libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two `CapData` words.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
