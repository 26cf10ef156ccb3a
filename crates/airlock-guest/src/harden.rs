//! In-guest hardening of the workload: user switch, `no_new_privs`, Landlock, seccomp.
//!
//! Filters and the Landlock ruleset are built before fork ([`filters`], [`landlock_writes`]) and
//! installed in the child ([`apply_in_child`]) between fork and exec. This is defence in depth: the host-side gateways
//! remain the enforcement boundary.

use airlock_proto::SeccompProfile;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;

mod denials;
pub mod root;

/// A syscall refused by a profile, with why.
struct Denied {
    nr: libc::c_long,
    name: &'static str,
    reason: &'static str,
}

const fn deny(nr: libc::c_long, name: &'static str, reason: &'static str) -> Denied {
    Denied { nr, name, reason }
}

/// Refused under `default` (and `strict`) with EPERM.
const DEFAULT_DENY: &[Denied] = &[
    deny(
        libc::SYS_add_key,
        "add_key",
        "kernel keyring: shared kernel state, credential storage",
    ),
    deny(libc::SYS_request_key, "request_key", "kernel keyring"),
    deny(libc::SYS_keyctl, "keyctl", "kernel keyring"),
    deny(libc::SYS_bpf, "bpf", "eBPF: large kernel attack surface"),
    deny(
        libc::SYS_perf_event_open,
        "perf_event_open",
        "perf: side channels and kernel attack surface",
    ),
    deny(
        libc::SYS_userfaultfd,
        "userfaultfd",
        "a classic primitive for winning kernel races",
    ),
    deny(
        libc::SYS_kexec_load,
        "kexec_load",
        "replaces the running kernel",
    ),
    deny(
        libc::SYS_kexec_file_load,
        "kexec_file_load",
        "replaces the running kernel",
    ),
    deny(libc::SYS_init_module, "init_module", "kernel modules"),
    deny(libc::SYS_finit_module, "finit_module", "kernel modules"),
    deny(libc::SYS_delete_module, "delete_module", "kernel modules"),
    deny(
        libc::SYS_mount,
        "mount",
        "changes the filesystem view the policy describes",
    ),
    deny(libc::SYS_umount2, "umount2", "changes the filesystem view"),
    deny(
        libc::SYS_pivot_root,
        "pivot_root",
        "changes the filesystem view",
    ),
    deny(libc::SYS_open_tree, "open_tree", "new mount API"),
    deny(libc::SYS_move_mount, "move_mount", "new mount API"),
    deny(libc::SYS_fsopen, "fsopen", "new mount API"),
    deny(libc::SYS_fsconfig, "fsconfig", "new mount API"),
    deny(libc::SYS_fsmount, "fsmount", "new mount API"),
    deny(libc::SYS_fspick, "fspick", "new mount API"),
    deny(libc::SYS_mount_setattr, "mount_setattr", "new mount API"),
    deny(
        libc::SYS_unshare,
        "unshare",
        "namespaces: user namespaces expose root-only kernel code",
    ),
    deny(libc::SYS_setns, "setns", "namespaces"),
    deny(
        libc::SYS_io_uring_setup,
        "io_uring_setup",
        "io_uring: kernel attack surface, bypasses syscall filtering",
    ),
    deny(libc::SYS_io_uring_enter, "io_uring_enter", "io_uring"),
    deny(libc::SYS_io_uring_register, "io_uring_register", "io_uring"),
    deny(
        libc::SYS_open_by_handle_at,
        "open_by_handle_at",
        "opens files by handle, bypassing path checks",
    ),
];

/// Refused in addition under `strict`.
const STRICT_DENY: &[Denied] = &[
    deny(libc::SYS_ptrace, "ptrace", "debugging other processes"),
    deny(
        libc::SYS_process_vm_readv,
        "process_vm_readv",
        "reading other processes' memory",
    ),
    deny(
        libc::SYS_process_vm_writev,
        "process_vm_writev",
        "writing other processes' memory",
    ),
];

/// Namespace flags refused in `clone` (the `unshare` equivalent at process creation).
const CLONE_NS_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWCGROUP,
];

/// Terminal ioctls refused: TIOCSTI injects input into a terminal, TIOCLINUX reads/pastes console
/// selections.
const DENIED_IOCTLS: [libc::c_ulong; 2] = [libc::TIOCSTI, libc::TIOCLINUX as libc::c_ulong];

/// Name and reason of a syscall the profiles refuse, for the audit record of a denial.
pub fn describe(nr: i64) -> (&'static str, &'static str) {
    if let Some(d) = DEFAULT_DENY.iter().chain(STRICT_DENY).find(|d| d.nr == nr) {
        return (d.name, d.reason);
    }
    match nr {
        libc::SYS_clone => ("clone", "new namespaces"),
        libc::SYS_ioctl => ("ioctl", "terminal injection (TIOCSTI/TIOCLINUX)"),
        libc::SYS_socket => ("socket", "raw and packet sockets"),
        _ => ("unknown", "refused by the seccomp profile"),
    }
}

/// Turns the EPERM answers of `program` into user notifications, so the agent answers EPERM
/// itself and reports the denial. Other answers (ENOSYS for clone3) stay.
pub fn notify_denials(program: &mut BpfProgram) {
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let eperm = libc::SECCOMP_RET_ERRNO | u32::try_from(libc::EPERM).unwrap_or(1);
    for insn in program.iter_mut() {
        if insn.code == RET_K && insn.k == eperm {
            insn.k = libc::SECCOMP_RET_USER_NOTIF;
        }
    }
}

fn arch() -> TargetArch {
    TargetArch::x86_64
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, seccompiler::Error> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .map_err(seccompiler::Error::Backend)
}

/// [`filters`], compiled once per profile for the agent's life: the rules are constants, and
/// compiling them again for every command costs milliseconds under emulation.
pub fn filters_cached(profile: SeccompProfile) -> Result<Vec<BpfProgram>, seccompiler::Error> {
    static DEFAULT: OnceLock<Vec<BpfProgram>> = OnceLock::new();
    static STRICT: OnceLock<Vec<BpfProgram>> = OnceLock::new();
    let cell = match profile {
        SeccompProfile::Unconfined => return Ok(Vec::new()),
        SeccompProfile::Default => &DEFAULT,
        SeccompProfile::Strict => &STRICT,
    };
    if let Some(programs) = cell.get() {
        return Ok(programs.clone());
    }
    let programs = filters(profile)?;
    Ok(cell.get_or_init(|| programs).clone())
}

/// The BPF programs for `profile`, in install order; empty for `unconfined`.
pub fn filters(profile: SeccompProfile) -> Result<Vec<BpfProgram>, seccompiler::Error> {
    let strict = match profile {
        SeccompProfile::Unconfined => return Ok(Vec::new()),
        SeccompProfile::Default => false,
        SeccompProfile::Strict => true,
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let lists: &[&[Denied]] = if strict {
        &[DEFAULT_DENY, STRICT_DENY]
    } else {
        &[DEFAULT_DENY]
    };
    for d in lists.iter().flat_map(|l| l.iter()) {
        rules.insert(d.nr, Vec::new());
    }
    let ns_rules = CLONE_NS_FLAGS
        .iter()
        .map(|&f| {
            let f = u64::from(f.unsigned_abs());
            SeccompRule::new(vec![cond(0, SeccompCmpOp::MaskedEq(f), f)?])
                .map_err(seccompiler::Error::Backend)
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, ns_rules);
    let ioctl_rules = DENIED_IOCTLS
        .iter()
        .map(|&req| {
            SeccompRule::new(vec![cond(1, SeccompCmpOp::MaskedEq(0xffff_ffff), req)?])
                .map_err(seccompiler::Error::Backend)
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctl_rules);
    if strict {
        let af_packet = u64::from(libc::AF_PACKET.unsigned_abs());
        let raw = u64::from(libc::SOCK_RAW.unsigned_abs());
        rules.insert(
            libc::SYS_socket,
            vec![
                // 32 bits: the kernel reads the domain as an int, so high bits must not hide it.
                SeccompRule::new(vec![
                    SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, af_packet)
                        .map_err(seccompiler::Error::Backend)?,
                ])
                .map_err(seccompiler::Error::Backend)?,
                // The type argument carries SOCK_CLOEXEC/SOCK_NONBLOCK in its high bits.
                SeccompRule::new(vec![cond(1, SeccompCmpOp::MaskedEq(0xf), raw)?])
                    .map_err(seccompiler::Error::Backend)?,
            ],
        );
    }
    let eperm = SeccompAction::Errno(libc::EPERM.unsigned_abs());
    let deny_filter = SeccompFilter::new(rules, SeccompAction::Allow, eperm, arch())
        .map_err(seccompiler::Error::Backend)?;
    // clone3 passes its flags in memory a filter cannot read: answer ENOSYS so libc falls back to
    // clone, whose flags the filter above does check.
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, Vec::new());
    let enosys = SeccompAction::Errno(libc::ENOSYS.unsigned_abs());
    let clone3_filter = SeccompFilter::new(clone3, SeccompAction::Allow, enosys, arch())
        .map_err(seccompiler::Error::Backend)?;
    Ok(vec![deny_filter.try_into()?, clone3_filter.try_into()?])
}

/// A guest account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// Resolves a container-style user spec, `user[:group]`, where each part is a name or a
/// number (an OCI image's `User`): names through passwd- and group-format texts; a uid with no
/// account gets group 0 and home `/`, as container runtimes do.
pub fn resolve_user(passwd: &str, group: &str, spec: &str) -> Option<Account> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let mut account = match lookup_user(passwd, user) {
        Some(a) => a,
        None => {
            let uid: u32 = user.parse().ok()?;
            lookup_uid(passwd, uid).unwrap_or(Account {
                uid,
                gid: 0,
                home: "/".into(),
            })
        }
    };
    if let Some(g) = grp {
        account.gid = match g.parse() {
            Ok(gid) => gid,
            Err(_) => group.lines().find_map(|line| {
                let mut f = line.split(':');
                let (name, _pw, gid) = (f.next()?, f.next()?, f.next()?);
                (name == g).then(|| gid.parse().ok()).flatten()
            })?,
        };
    }
    Some(account)
}

fn lookup_uid(text: &str, uid: u32) -> Option<Account> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let (Some(u), Some(g), Some(home)) = (f.get(2), f.get(3), f.get(5)) else {
            return None;
        };
        (u.parse::<u32>().ok()? == uid).then_some(())?;
        Some(Account {
            uid,
            gid: g.parse().ok()?,
            home: (*home).to_string(),
        })
    })
}

/// Looks `name` up in passwd-format `text`.
pub fn lookup_user(text: &str, name: &str) -> Option<Account> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        let (user, _pw, uid, gid, _gecos, home) = (
            f.next()?,
            f.next()?,
            f.next()?,
            f.next()?,
            f.next()?,
            f.next()?,
        );
        (user == name).then_some(())?;
        Some(Account {
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
            home: home.to_string(),
        })
    })
}

/// A per-command cgroup: caps its process count and counts its OOM kills; removed on drop if it
/// is empty by then.
pub struct CommandCgroup {
    dir: std::path::PathBuf,
    procs: std::ffi::CString,
}

impl CommandCgroup {
    /// Creates `<root>/<name>` with `pids.max = max` (unlimited when `None`).
    pub fn create(root: &str, name: &str, max: Option<u32>) -> io::Result<CommandCgroup> {
        let dir = std::path::Path::new(root).join(name);
        std::fs::create_dir(&dir)?;
        if let Some(max) = max {
            std::fs::write(dir.join("pids.max"), max.to_string())?;
        }
        let path = dir
            .join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes();
        let procs = std::ffi::CString::new(path)
            .map_err(|_| io::Error::other("cgroup path contains NUL"))?;
        Ok(CommandCgroup { dir, procs })
    }

    /// Processes of the group ended by any OOM killer so far (`oom_kill` in `memory.events`).
    pub fn oom_kills(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .map(|text| parse_oom_kills(&text))
            .unwrap_or(0)
    }

    /// In the child between fork and exec: moves the calling process into the group.
    pub fn enter_in_child(&self) -> io::Result<()> {
        // SAFETY: open, write and close are async-signal-safe; `procs` is a NUL-terminated path
        // prepared before fork and only read here; writing "0" moves the writer itself.
        // JUSTIFICATION: std's file APIs allocate, which is not allowed between fork and exec.
        unsafe {
            let fd = libc::open(self.procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if n != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl Drop for CommandCgroup {
    fn drop(&mut self) {
        // Fails while background processes remain in it; they then keep the limit.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A Landlock ruleset that lets the holder write only beneath `dirs` (reads stay unrestricted).
/// `~` stands for `home`. Directories missing in this image are skipped. Built before fork;
/// [`apply_in_child`] enforces it. Fails when the kernel lacks Landlock ABI 2: the workload is
/// not started with less confinement than the host asked for.
pub fn landlock_writes(dirs: &[String], home: &str) -> io::Result<OwnedFd> {
    use landlock::{
        ABI, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreatedAttr,
    };
    let abi = ABI::V2;
    let fail = |e: &dyn std::fmt::Display| io::Error::other(format!("landlock: {e}"));
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_write(abi))
        .map_err(|e| fail(&e))?
        .create()
        .map_err(|e| fail(&e))?;
    for dir in dirs {
        let dir = if dir == "~" { home } else { dir.as_str() };
        let Ok(fd) = PathFd::new(dir) else { continue };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, AccessFs::from_write(abi)))
            .map_err(|e| fail(&e))?;
    }
    Option::<OwnedFd>::from(ruleset).ok_or_else(|| fail(&"the kernel does not support Landlock"))
}

/// In the child between fork and exec: drop to `account`, set `no_new_privs`, enforce the
/// Landlock ruleset, install `filters`.
///
/// Only raw syscalls: no allocation, no locks (the parent may have been multi-threaded).
pub fn apply_in_child(
    account: Option<&Account>,
    no_new_privs: bool,
    landlock: Option<&OwnedFd>,
    filters: &[BpfProgram],
    notify: Option<libc::c_int>,
) -> io::Result<()> {
    if let Some(a) = account {
        let gid = [a.gid];
        // SAFETY: setgroups reads `gid.len()` gids from a live local array; async-signal-safe.
        // JUSTIFICATION: nix's setgroups allocates, which is not allowed after fork.
        if unsafe { libc::setgroups(gid.len(), gid.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain syscalls taking integers; async-signal-safe.
        if unsafe { libc::setgid(a.gid) } != 0 || unsafe { libc::setuid(a.uid) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: prctl with integer arguments; async-signal-safe.
    if no_new_privs && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some(ruleset) = landlock {
        // SAFETY: landlock_restrict_self takes an fd and flags; async-signal-safe. It needs
        // no_new_privs (set above) or CAP_SYS_ADMIN.
        // JUSTIFICATION: the landlock crate's restrict_self consumes the ruleset value, which
        // the pre_exec closure (callable more than once) cannot give up.
        let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let mut filters = filters.iter();
    if let Some(sock) = notify
        && let Some(first) = filters.next()
    {
        install_with_listener(first, sock)?;
    }
    for f in filters {
        seccompiler::apply_filter(f).map_err(|_| io::Error::from_raw_os_error(libc::EPERM))?;
    }
    Ok(())
}

/// The `oom_kill` counter of a cgroup v2 `memory.events` file; 0 when absent or malformed.
fn parse_oom_kills(events: &str) -> u32 {
    events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// `sizeof(int)`, as the CMSG macros take it.
const INT_LEN: u32 = 4;

/// In the child: installs `program` with a user-notification listener and passes the listener
/// to the agent over the unix socket `sock` (SCM_RIGHTS). Raw syscalls on stack values only.
fn install_with_listener(program: &BpfProgram, sock: libc::c_int) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        filter: program.as_ptr().cast_mut().cast::<libc::sock_filter>(),
    };
    // SAFETY: seccomp(2) reads the program through `prog`, which points at a live, well-formed
    // BPF program (seccompiler's `sock_filter` has the kernel layout).
    let listener = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &raw const prog,
        )
    };
    let listener = libc::c_int::try_from(listener).map_err(|_| io::Error::last_os_error())?;
    if listener < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut control = [0u8; 64];
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE computes a size from a constant.
    let space = unsafe { libc::CMSG_SPACE(INT_LEN) } as usize;
    let msg = fd_message(&mut iov, control.get_mut(..space).unwrap_or_default());
    // SAFETY: the control buffer holds CMSG_SPACE(sizeof(int)) bytes; CMSG_FIRSTHDR and CMSG_DATA
    // point inside it; the writes are within bounds.
    let sent = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        if cmsg.is_null() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(INT_LEN) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), listener);
        let n = libc::sendmsg(sock, &raw const msg, 0);
        libc::close(listener);
        n
    };
    if sent != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A message header for the one data byte in `iov`, with `control` as its ancillary space.
/// Allocation-free (used between fork and exec).
fn fd_message(iov: &mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: `msghdr` is plain old data; all-zero is valid and the fields used are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    msg
}

/// Receives the listener fd the child sent over `sock`.
pub fn receive_listener(sock: &OwnedFd) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut control = [0u8; 64];
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut msg = fd_message(&mut iov, &mut control);
    // SAFETY: recvmsg writes at most the buffer sizes given in `msg`, which point at locals.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n != 1 {
        return Err(io::Error::other(
            "the command did not pass its seccomp listener",
        ));
    }
    // SAFETY: CMSG_FIRSTHDR/CMSG_DATA stay inside `control`, whose length the kernel set in
    // msg_controllen; the header's level, type and length are checked before the read.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
            || (*cmsg).cmsg_len < libc::CMSG_LEN(INT_LEN) as usize
        {
            return Err(io::Error::other("no fd in the seccomp listener message"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
        if fd < 0 {
            return Err(io::Error::other("bad fd in the seccomp listener message"));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

pub use denials::{Denial, DenialServer};

#[cfg(test)]
mod tests;
