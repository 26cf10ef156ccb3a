//! How a gateway process jails itself after exec, before it serves.
//!
//! Gateways are airlock's own code (`airlock __gateway NAME`): each first reads its spec and
//! opens its sockets, then enters the jail its [`SelfJail`] describes while it is still
//! single-threaded, so every thread it starts later inherits all of it. The steps, in order:
//! mount jail (as root), identity (as root: its own uid with no capabilities, or root with a
//! few), `no_new_privs`, not dumpable, Landlock, seccomp allow-list.

use crate::landlock::LandlockStatus;
use crate::ns::MountJail;
use crate::syscalls::{GATEWAY_BASE, Syscall};
use crate::{JailError, engine::JAIL_UID_BASE};
use std::io;
use std::path::PathBuf;

/// Who a gateway runs as once jailed (as root; an ordinary user keeps its uid and has no
/// capabilities to drop).
#[derive(Debug, Clone)]
pub enum Identity {
    /// A uid of its own ([`JAIL_UID_BASE`] + its pid), no groups, no capabilities.
    OwnUid,
    /// Root's uid with only these capabilities (by number) in every set.
    RootWithCaps(&'static [u32]),
}

/// A gateway's jail.
#[derive(Debug, Clone)]
pub struct SelfJail {
    /// As root: the mount namespace to move into first.
    pub mount_jail: Option<MountJail>,
    /// As root: the identity to take.
    pub identity: Identity,
    /// Whether the process stays dumpable (attachable and readable through `/proc` by its uid).
    pub dumpable: bool,
    /// Landlock: the directories it may still write beneath (empty: none); `None` adds no
    /// Landlock layer here.
    pub writable: Option<Vec<PathBuf>>,
    /// Landlock: with `Some`, reads are confined too, to beneath these and `writable`.
    pub readable: Option<Vec<PathBuf>>,
    /// As root, refuse to serve where the kernel cannot enforce Landlock.
    pub landlock_required_as_root: bool,
    /// System calls allowed beyond [`GATEWAY_BASE`].
    pub syscalls: &'static [Syscall],
}

/// What a gateway's jail holds, for its log.
#[derive(Debug, Clone)]
pub struct Confined {
    /// The uid it runs as now.
    pub uid: u32,
    /// Whether it moved into a mount jail.
    pub mount_jail: bool,
    /// How much of its Landlock layer the kernel enforces, if it has one.
    pub landlock: Option<LandlockStatus>,
    /// Number of system calls on its allow-list.
    pub allowed: usize,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl SelfJail {
    /// Jails the calling process; call it while it is single-threaded.
    pub fn enter(&self) -> Result<Confined, JailError> {
        let root = nix::unistd::geteuid().is_root();
        let mount_jail = match (&self.mount_jail, root) {
            (Some(j), true) => {
                j.enter()?;
                true
            }
            _ => false,
        };
        let uid = match (&self.identity, root) {
            (Identity::OwnUid, true) => {
                let uid = JAIL_UID_BASE.wrapping_add(std::process::id());
                crate::caps::drop_bounding(0);
                // SAFETY: setgroups and set*id take integers and a pointer to an empty slice;
                // prctl takes integers.
                unsafe {
                    check(libc::setgroups(0, std::ptr::null())).map_err(JailError::Identity)?;
                    check(libc::setresgid(uid, uid, uid)).map_err(JailError::Identity)?;
                    check(libc::setresuid(uid, uid, uid)).map_err(JailError::Identity)?;
                    // The credential change cleared the parent-death signal.
                    check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))
                        .map_err(JailError::Identity)?;
                }
                uid
            }
            (Identity::RootWithCaps(keep), true) => {
                crate::caps::keep_only(keep).map_err(JailError::Identity)?;
                0
            }
            (_, false) => nix::unistd::geteuid().as_raw(),
        };
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
            .map_err(JailError::NoNewPrivs)?;
        if !self.dumpable {
            // Nobody of the same uid may attach to it or open its memory and descriptors.
            // SAFETY: prctl with integer arguments.
            check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) })
                .map_err(JailError::NoNewPrivs)?;
        }
        let landlock = match &self.writable {
            Some(writable) => {
                let dirs: Vec<&std::path::Path> = writable.iter().map(PathBuf::as_path).collect();
                let status = match &self.readable {
                    Some(readable) => {
                        let reads: Vec<&std::path::Path> =
                            readable.iter().map(PathBuf::as_path).collect();
                        crate::landlock::only_beneath(&reads, &dirs)?
                    }
                    None => crate::landlock::writes_only_beneath(&dirs)?,
                };
                if root && self.landlock_required_as_root && status == LandlockStatus::NotEnforced {
                    return Err(JailError::LandlockMissing);
                }
                Some(status)
            }
            None => None,
        };
        let filter = crate::seccomp::allow_list(self.syscalls)?;
        crate::seccomp::install_with_clone3(&filter)?;
        Ok(Confined {
            uid,
            mount_jail,
            landlock,
            allowed: GATEWAY_BASE.len() + self.syscalls.len(),
        })
    }
}
