//! Landlock layers: which directories a process may still write beneath.
//!
//! Reads stay open in every layer here: the mount jail limits what the gateways can see, and
//! the resolver reads `/etc/resolv.conf` and NSS modules. Best effort on kernels without
//! Landlock; callers that must have it check the returned [`LandlockStatus`].

use crate::JailError;
use landlock::{
    ABI, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus,
};
use std::os::fd::OwnedFd;
use std::path::Path;

/// The ABI whose write rights are handled (truncate included).
const WRITE_ABI: ABI = ABI::V3;

/// The Landlock ABI version this kernel offers; `None` without Landlock (or when disabled).
pub fn abi_version() -> Option<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag, the call reads no
    // memory and only returns the ABI version (or -1 with errno); no descriptor is created.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v)
}

/// How much of a Landlock layer the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockStatus {
    /// Every handled right is enforced.
    FullyEnforced,
    /// The kernel knows Landlock, but not every right asked for.
    PartiallyEnforced,
    /// No Landlock on this kernel.
    NotEnforced,
}

impl std::fmt::Display for LandlockStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LandlockStatus::FullyEnforced => "fully enforced",
            LandlockStatus::PartiallyEnforced => "partially enforced",
            LandlockStatus::NotEnforced => "not enforced",
        })
    }
}

impl From<RulesetStatus> for LandlockStatus {
    fn from(s: RulesetStatus) -> Self {
        match s {
            RulesetStatus::FullyEnforced => LandlockStatus::FullyEnforced,
            RulesetStatus::PartiallyEnforced => LandlockStatus::PartiallyEnforced,
            RulesetStatus::NotEnforced => LandlockStatus::NotEnforced,
        }
    }
}

fn fail(e: impl std::error::Error + Send + Sync + 'static) -> JailError {
    JailError::Landlock(Box::new(e))
}

fn ruleset(dirs: &[&Path]) -> Result<landlock::RulesetCreated, JailError> {
    ruleset_with(None, dirs)
}

/// Write rights handled and allowed beneath `writes`; with `reads`, read rights handled too and
/// allowed beneath `reads` and `writes`.
fn ruleset_with(
    reads: Option<&[&Path]>,
    writes: &[&Path],
) -> Result<landlock::RulesetCreated, JailError> {
    let write = AccessFs::from_write(WRITE_ABI);
    let read = AccessFs::from_read(WRITE_ABI);
    let handled = if reads.is_some() { write | read } else { write };
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(handled)
        .map_err(fail)?
        .create()
        .map_err(fail)?;
    for dir in writes {
        let fd = PathFd::new(dir).map_err(fail)?;
        let rights = if reads.is_some() { write | read } else { write };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .map_err(fail)?;
    }
    for dir in reads.unwrap_or_default() {
        let fd = PathFd::new(dir).map_err(fail)?;
        ruleset = ruleset.add_rule(PathBeneath::new(fd, read)).map_err(fail)?;
    }
    Ok(ruleset)
}

/// Restricts the calling thread (and the threads it starts later) to writing only beneath
/// `dirs`; an empty list forbids every write.
pub fn writes_only_beneath(dirs: &[&Path]) -> Result<LandlockStatus, JailError> {
    let status = ruleset(dirs)?.restrict_self().map_err(fail)?;
    Ok(status.ruleset.into())
}

/// Restricts the calling thread (and the threads it starts later) to reading only beneath
/// `reads` and `writes`, and writing only beneath `writes`. (An `O_PATH` open reads nothing
/// and is not checked; neither is a file outside a bind mount's subtree reached through it, so
/// this is no substitute for keeping such files out of reach.)
pub fn only_beneath(reads: &[&Path], writes: &[&Path]) -> Result<LandlockStatus, JailError> {
    let status = ruleset_with(Some(reads), writes)?
        .restrict_self()
        .map_err(fail)?;
    Ok(status.ruleset.into())
}

/// A ruleset letting a process write only beneath `dir`, made before fork so that the child
/// only has to call `landlock_restrict_self` on it ([`restrict_in_child`]). `None` where the
/// kernel has no Landlock.
pub fn prepare_writes_beneath(dir: &Path) -> Result<Option<OwnedFd>, JailError> {
    Ok(ruleset(&[dir])?.into())
}

/// Between fork and exec: applies a ruleset made by [`prepare_writes_beneath`]. Needs
/// `no_new_privs` (or `CAP_SYS_ADMIN`). Async-signal-safe.
pub fn restrict_in_child(ruleset: &OwnedFd) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: landlock_restrict_self takes a ruleset descriptor that `ruleset` keeps open and a
    // flags word.
    // JUSTIFICATION: the landlock crate's restrict_self allocates; this runs after fork.
    let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_are_confined_beneath_the_given_trees() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&share).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(share.join("in"), b"in").unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        let (share2, outside2) = (share.clone(), outside.clone());
        // Landlock confines the calling thread: do it on a thread of its own.
        let (status, inside, out_read, out_write, in_write) = std::thread::spawn(move || {
            let status = only_beneath(&[], &[share2.as_path()]).unwrap();
            (
                status,
                std::fs::read(share2.join("in")),
                std::fs::read(outside2.join("secret")),
                std::fs::write(outside2.join("new"), b"x"),
                std::fs::write(share2.join("new"), b"x"),
            )
        })
        .join()
        .unwrap();
        if status == LandlockStatus::NotEnforced {
            return;
        }
        assert_eq!(inside.unwrap(), b"in");
        assert_eq!(out_read.unwrap_err().raw_os_error(), Some(libc::EACCES));
        assert_eq!(out_write.unwrap_err().raw_os_error(), Some(libc::EACCES));
        assert!(in_write.is_ok());
        // This thread (not confined) still reads it.
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
    }
}
