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
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_write(WRITE_ABI))
        .map_err(fail)?
        .create()
        .map_err(fail)?;
    for dir in dirs {
        let fd = PathFd::new(dir).map_err(fail)?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, AccessFs::from_write(WRITE_ABI)))
            .map_err(fail)?;
    }
    Ok(ruleset)
}

/// Restricts the calling thread (and the threads it starts later) to writing only beneath
/// `dirs`; an empty list forbids every write.
pub fn writes_only_beneath(dirs: &[&Path]) -> Result<LandlockStatus, JailError> {
    let status = ruleset(dirs)?.restrict_self().map_err(fail)?;
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
