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

/// Syscalls every gateway makes: threads, memory, signals, polling, sockets, logging.
pub const BASE: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_pread64,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_ioctl,
    libc::SYS_fcntl,
    libc::SYS_futex,
    // Only without namespace flags (see `allow_list`); clone3 answers ENOSYS.
    libc::SYS_clone,
    // Installing the clone3 filter after this one (filters only ever restrict further).
    libc::SYS_seccomp,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_yield,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_eventfd2,
    libc::SYS_pipe2,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_accept4,
    libc::SYS_bind,
    libc::SYS_getsockname,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_shutdown,
    libc::SYS_prctl,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_tgkill,
    libc::SYS_access,
];

/// Jails the calling (single-threaded) process; the seccomp allow-list is [`BASE`] plus
/// `allowed`.
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
    apply(&filter)?;
    Ok(Confined {
        uid,
        landlock,
        allowed: BASE.len() + allowed.len(),
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
    Ok(status_name(status.ruleset))
}

/// How Landlock's status reads in a gateway's log.
pub fn status_name(status: landlock::RulesetStatus) -> &'static str {
    match status {
        landlock::RulesetStatus::FullyEnforced => "fully enforced",
        landlock::RulesetStatus::PartiallyEnforced => "partially enforced",
        landlock::RulesetStatus::NotEnforced => "not enforced",
    }
}

/// Installs `filter`, then one that answers `clone3` with ENOSYS (installed last, so its errno
/// wins), so threads are made with `clone`, whose flags the allow-list checks.
pub fn apply(filter: &BpfProgram) -> io::Result<()> {
    let clone3 = airlock_vm::jail::clone3_enosys()?;
    for f in [filter, &clone3] {
        seccompiler::apply_filter(f).map_err(|e| io::Error::other(format!("seccomp: {e}")))?;
    }
    Ok(())
}

fn arg0(op: seccompiler::SeccompCmpOp, value: u64) -> io::Result<SeccompRule> {
    let c = seccompiler::SeccompCondition::new(0, seccompiler::SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| io::Error::other(format!("seccomp rule: {e}")))?;
    SeccompRule::new(vec![c]).map_err(|e| io::Error::other(format!("seccomp rule: {e}")))
}

/// A filter that allows exactly [`BASE`] and `allowed` and answers everything else with EPERM.
/// `clone` is allowed only without namespace flags, `unshare` only for `CLONE_FS` (the fs
/// gateway's threads keep their own umask and cwd).
pub fn allow_list(allowed: &[libc::c_long]) -> io::Result<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in BASE.iter().chain(allowed) {
        let conditions = match nr {
            libc::SYS_clone => vec![arg0(
                seccompiler::SeccompCmpOp::MaskedEq(airlock_vm::jail::CLONE_NS_FLAGS),
                0,
            )?],
            libc::SYS_unshare => vec![arg0(seccompiler::SeccompCmpOp::Eq, libc::CLONE_FS as u64)?],
            _ => Vec::new(),
        };
        rules.insert(nr, conditions);
    }
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
