//! How a gateway process jails itself before it serves: Landlock with no writable path, its own
//! unprivileged uid (as root), no capabilities, `no_new_privs`, and a seccomp allow-list.
//! Called while the process is still single-threaded, so every thread it starts inherits all
//! of it.

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};
use std::collections::BTreeMap;
use std::io;

/// What the jail holds, for the gateway's log.
#[derive(Debug, Clone)]
pub struct Confined {
    /// The uid the gateway runs as now.
    pub uid: u32,
    /// Landlock's status (`fully enforced`, `partially enforced`, `not enforced`).
    pub landlock: &'static str,
    /// Syscalls on the allow-list.
    pub allowed: usize,
}

/// Jails the calling (single-threaded) process; `allowed` is the seccomp allow-list.
pub fn confine(allowed: &[libc::c_long]) -> io::Result<Confined> {
    let landlock = no_writes()?;
    let uid = if nix::unistd::geteuid().is_root() {
        let uid = airlock_vm::jail::JAIL_UID_BASE.wrapping_add(std::process::id());
        // SAFETY: prctl, setgroups and set*id take integers and a pointer to an empty slice.
        unsafe {
            for cap in 0..64 {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(uid, uid, uid))?;
            check(libc::setresuid(uid, uid, uid))?;
            // The credential change cleared the parent-death signal.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        }
        uid
    } else {
        nix::unistd::geteuid().as_raw()
    };
    let filter = allow_list(allowed)?;
    seccompiler::apply_filter(&filter).map_err(|e| io::Error::other(format!("seccomp: {e}")))?;
    Ok(Confined {
        uid,
        landlock,
        allowed: allowed.len(),
    })
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Landlock: every write access right handled, none granted (reads stay open: the resolver reads
/// `/etc/resolv.conf` and NSS modules). Best effort on kernels without Landlock.
fn no_writes() -> io::Result<&'static str> {
    use landlock::{
        ABI, AccessFs, CompatLevel, Compatible, RestrictionStatus, Ruleset, RulesetAttr,
        RulesetStatus,
    };
    let fail = |e: &dyn std::fmt::Display| io::Error::other(format!("landlock: {e}"));
    let status: RestrictionStatus = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_write(ABI::V3))
        .map_err(|e| fail(&e))?
        .create()
        .map_err(|e| fail(&e))?
        .restrict_self()
        .map_err(|e| fail(&e))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partially enforced",
        RulesetStatus::NotEnforced => "not enforced",
    })
}

/// A filter that allows exactly `allowed` and answers everything else with EPERM.
pub fn allow_list(allowed: &[libc::c_long]) -> io::Result<BpfProgram> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> =
        allowed.iter().map(|nr| (*nr, Vec::new())).collect();
    SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| io::Error::other(format!("seccomp filter: {e}")))?
    .try_into()
    .map_err(|e: seccompiler::BackendError| io::Error::other(format!("seccomp filter: {e}")))
}
