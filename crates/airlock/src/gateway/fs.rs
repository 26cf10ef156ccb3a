//! The filesystem gateway process: `airlock __gateway fs`, one per share.
//!
//! Reads an [`FsSpec`] (JSON) from stdin. As root it then moves into a mount namespace whose
//! root is an empty tmpfs holding only its share (read-only for `ro` shares), the directory of
//! its vhost-user socket and a `/proc`; it keeps only the capabilities file serving needs (no
//! `CAP_DAC_READ_SEARCH`, so no `open_by_handle_at` to reach files outside the share), and on
//! every host Landlock limits its writes to the share and the socket directory, and a seccomp
//! allow-list its syscalls. Then it serves the share with [`airlock_fs::FsGateway`] until
//! SIGTERM, writing one [`FsLine`] per decision to stdout.

use airlock_audit::{Decision, Event, FsInfo, Source};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the supervisor tells a filesystem gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsSpec {
    /// The policy to load.
    pub policy: super::PolicyText,
    /// The directory served.
    pub host_dir: PathBuf,
    /// Its guest mount point.
    pub guest_path: String,
    /// `ro`, `rw` or `overlay`.
    pub mode: airlock_policy::MountMode,
    /// The vhost-user socket to create.
    pub socket: PathBuf,
    /// An empty directory to build the jail's root on.
    pub jail_root: PathBuf,
    /// Guest uid/gid ↔ host uid/gid of the share's owner.
    pub owner_map: Option<[u32; 4]>,
}

/// One filesystem decision as it crosses the process boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsLine {
    /// `fs.write`, `fs.create`, ...
    pub op: String,
    /// Guest mount point.
    pub mount: String,
    /// Path relative to the share.
    pub path: String,
    /// Second path (rename destination, link name, symlink target).
    pub path2: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// The deciding rule.
    pub rule: String,
    /// Why.
    pub reason: String,
}

const KINDS: &[&str] = &[
    airlock_fs::kind::WRITE,
    airlock_fs::kind::CREATE,
    airlock_fs::kind::UNLINK,
    airlock_fs::kind::RENAME,
    airlock_fs::kind::SETATTR,
    airlock_fs::kind::MKDIR,
    airlock_fs::kind::SYMLINK,
    airlock_fs::kind::LINK,
    airlock_fs::kind::OPEN,
    airlock_fs::kind::LOOKUP,
];

/// Longest string field accepted from a gateway line.
const MAX_FIELD: usize = 8192;

impl From<&airlock_fs::FsEvent> for FsLine {
    fn from(e: &airlock_fs::FsEvent) -> Self {
        FsLine {
            op: e.op.to_string(),
            mount: e.mount.clone(),
            path: e.path.clone(),
            path2: e.path2.clone(),
            decision: match e.decision {
                airlock_policy::Verdict::Allow => "allow",
                airlock_policy::Verdict::Deny => "deny",
            }
            .to_string(),
            rule: e.rule.clone(),
            reason: e.reason.to_string(),
        }
    }
}

impl FsLine {
    /// Parses a line from the gateway; refuses unknown ops and decisions and overlong fields.
    pub fn parse(line: &[u8]) -> Option<FsLine> {
        let l: FsLine = serde_json::from_slice(line).ok()?;
        let short = [&l.mount, &l.path, &l.rule, &l.reason]
            .into_iter()
            .chain(l.path2.as_ref())
            .all(|s| s.len() <= MAX_FIELD);
        (KINDS.contains(&l.op.as_str())
            && ["allow", "deny"].contains(&l.decision.as_str())
            && short)
            .then_some(l)
    }

    /// The audit event for this decision.
    pub fn to_event(&self) -> Event {
        let decision = if self.decision == "allow" {
            Decision::Allow
        } else {
            Decision::Deny
        };
        let op = self.op.strip_prefix("fs.").unwrap_or(&self.op).to_string();
        Event::new(Source::Host, self.op.clone())
            .with_decision(decision)
            .with_rule(self.rule.clone())
            .with_reason(self.reason.clone())
            .with_fs(FsInfo {
                op,
                path: self.path.clone(),
                to: self.path2.clone(),
                mount: Some(self.mount.clone()),
            })
    }
}

impl airlock_fs::FsEvents for super::JsonLines {
    fn record(&self, e: &airlock_fs::FsEvent) {
        self.send(&FsLine::from(e));
    }
}

/// Syscalls of file serving beyond [`super::confine::BASE`]; `name_to_handle_at` probes handles, `open_by_handle_at` stays refused.
pub const ALLOWED: &[libc::c_long] = &[
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_close_range,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_openat2,
    libc::SYS_fstatfs,
    libc::SYS_statfs,
    libc::SYS_getdents64,
    libc::SYS_readlinkat,
    libc::SYS_readlink,
    libc::SYS_getcwd,
    libc::SYS_unlink,
    libc::SYS_chmod,
    libc::SYS_mkdir,
    libc::SYS_rmdir,
    libc::SYS_rename,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_name_to_handle_at,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_symlinkat,
    libc::SYS_linkat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_utimensat,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_copy_file_range,
    libc::SYS_flock,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_syncfs,
    libc::SYS_fchdir,
    libc::SYS_fgetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_flistxattr,
    libc::SYS_fremovexattr,
    libc::SYS_umask,
    libc::SYS_membarrier,
    libc::SYS_unshare,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_setgroups,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_prlimit64,
    libc::SYS_listen,
];

/// Capabilities file serving keeps as root: acting as the share's owner and the guest's
/// users (chown, DAC override, fowner, fsetid, setuid/setgid for per-request credentials). Not
/// `CAP_MKNOD` (FIFOs and sockets need none; device nodes are refused) nor
/// `CAP_DAC_READ_SEARCH` (that would allow `open_by_handle_at` outside the share).
const KEEP_CAPS: &[u32] = &[0, 1, 3, 4, 6, 7];

/// `airlock __gateway fs`: returns the process exit code.
pub fn child_main() -> u8 {
    super::child_main("fs", run)
}

fn run() -> anyhow::Result<()> {
    use anyhow::Context;
    let spec: FsSpec = super::read_spec()?;
    let policy = spec.policy.clone().load()?;
    let host_dir = std::fs::canonicalize(&spec.host_dir)
        .with_context(|| format!("share {}", spec.host_dir.display()))?;
    // An overlay share opens its overlay's metadata beside the copy: bind the overlay dir.
    let bind_dir = match spec.mode {
        airlock_policy::MountMode::Overlay => host_dir
            .parent()
            .map(Path::to_path_buf)
            .context("overlay copy without a parent")?,
        _ => host_dir.clone(),
    };
    let socket_dir = spec
        .socket
        .parent()
        .map(Path::to_path_buf)
        .context("socket without a directory")?;
    let read_only = spec.mode == airlock_policy::MountMode::Ro;
    let root = nix::unistd::geteuid().is_root();
    if root {
        enter_mount_jail(&spec.jail_root, &bind_dir, read_only, &socket_dir)
            .context("building the gateway's mount jail")?;
        keep_only_caps(KEEP_CAPS).context("dropping capabilities")?;
    }
    // Writes only to what is served (not the overlay's metadata beside a copy; nothing of a
    // read-only share) and the socket's directory.
    let writable: Vec<&Path> = if read_only {
        vec![&socket_dir]
    } else {
        vec![&host_dir, &socket_dir]
    };
    let landlock = writes_only_beneath(&writable).context("Landlock")?;
    if root && landlock == "not enforced" {
        anyhow::bail!("Landlock is not available: refusing to serve a share as root without it");
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error()).context("no_new_privs");
    }
    let filter = super::confine::allow_list(ALLOWED)?;
    super::confine::apply(&filter)?;
    eprintln!(
        "airlock fs gateway: {} {}; mount jail {}, Landlock {landlock}, seccomp allow-list of {} \
         syscalls",
        spec.guest_path,
        spec.mode.as_str(),
        if root { "on" } else { "off (not root)" },
        super::confine::BASE.len() + ALLOWED.len()
    );

    // SIGTERM is waited for, not handled: block it here so every thread inherits the mask.
    let mut term = nix::sys::signal::SigSet::empty();
    term.add(nix::sys::signal::Signal::SIGTERM);
    term.thread_block()?;
    let options = airlock_fs::GatewayOptions {
        owner_map: spec.owner_map.map(|[gu, gg, hu, hg]| airlock_fs::OwnerMap {
            guest_uid: gu,
            guest_gid: gg,
            host_uid: hu,
            host_gid: hg,
        }),
        ..airlock_fs::GatewayOptions::default()
    };
    let gateway = airlock_fs::FsGateway::start_with(
        &spec.socket,
        airlock_fs::Share {
            host_dir,
            guest_path: spec.guest_path.clone(),
            mode: spec.mode,
        },
        Arc::new(policy),
        Arc::new(super::JsonLines::default()),
        options,
    )
    .map_err(anyhow::Error::from)?;
    // Tells the supervisor the socket is served (it boots the engine only then).
    std::fs::write(ready_marker(&spec.socket), b"").context("writing the ready marker")?;
    term.wait()?;
    gateway.stop();
    Ok(())
}

/// The file a gateway creates once it serves `socket`.
pub fn ready_marker(socket: &Path) -> PathBuf {
    socket.with_extension("ready")
}

fn c(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::other("path contains NUL"))
}

fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    nix::mount::mount(
        source,
        target,
        fstype,
        nix::mount::MsFlags::from_bits_truncate(flags),
        data,
    )
    .map_err(|e| io::Error::other(format!("mount on {}: {e}", target.display())))
}

/// Inside `root` (an empty directory): a tmpfs holding the share at its own path, the socket
/// directory and a fresh `/proc`; then pivots into it. Same absolute paths inside, so nothing
/// else needs to know.
fn enter_mount_jail(
    root: &Path,
    share: &Path,
    read_only: bool,
    socket_dir: &Path,
) -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=0755,size=1m"),
    )?;
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    for (dir, ro) in [(share, read_only), (socket_dir, false)] {
        let target = inside(dir);
        std::fs::create_dir_all(&target)?;
        mount(
            Some(&dir.to_string_lossy()),
            &target,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        if ro {
            mount(
                None,
                &target,
                None,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID,
                None,
            )?;
        }
    }
    let proc_dir = root.join("proc");
    std::fs::create_dir_all(&proc_dir)?;
    // Read-only: the gateway needs /proc/self/fd, never to write to /proc/sys or sysrq.
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
        None,
    )?;
    let root_c = c(root)?;
    // SAFETY: chdir, pivot_root and umount2 read NUL-terminated strings that outlive the calls.
    unsafe {
        if libc::chdir(root_c.as_ptr()) != 0
            || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
            || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Drops every capability not in `keep` from the bounding, effective, permitted and inheritable
/// sets.
fn keep_only_caps(keep: &[u32]) -> io::Result<()> {
    let mask: u64 = keep.iter().fold(0, |m, c| m | (1u64 << c));
    for cap in 0..64u32 {
        if mask & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        }
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let low = (mask & 0xffff_ffff) as u32;
    let high = (mask >> 32) as u32;
    let data = [
        Data {
            effective: low,
            permitted: low,
            inheritable: 0,
        },
        Data {
            effective: high,
            permitted: high,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads a header and two data words from live locals.
    if unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Landlock: writes only beneath `dirs`; reads unrestricted (the mount jail already limits them
/// as root).
fn writes_only_beneath(dirs: &[&Path]) -> io::Result<&'static str> {
    use landlock::{
        ABI, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreatedAttr,
    };
    let fail = |e: &dyn std::fmt::Display| io::Error::other(format!("{e}"));
    let abi = ABI::V3;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_write(abi))
        .map_err(|e| fail(&e))?
        .create()
        .map_err(|e| fail(&e))?;
    for dir in dirs {
        let fd = PathFd::new(dir).map_err(|e| fail(&e))?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, AccessFs::from_write(abi)))
            .map_err(|e| fail(&e))?;
    }
    let status = ruleset.restrict_self().map_err(|e| fail(&e))?;
    Ok(super::confine::status_name(status.ruleset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> FsLine {
        FsLine {
            op: "fs.write".into(),
            mount: "/workspace".into(),
            path: ".git/hooks/pre-commit".into(),
            path2: None,
            decision: "deny".into(),
            rule: "filesystem.protected \".git/hooks/**\"".into(),
            reason: "protected_path".into(),
        }
    }

    #[test]
    fn lines_round_trip_and_bad_ones_are_refused() {
        let json = serde_json::to_vec(&line()).unwrap();
        assert_eq!(FsLine::parse(&json), Some(line()));
        let mut bad = line();
        bad.op = "net.connect".into();
        assert_eq!(FsLine::parse(&serde_json::to_vec(&bad).unwrap()), None);
        let mut bad = line();
        bad.decision = "error".into();
        assert_eq!(FsLine::parse(&serde_json::to_vec(&bad).unwrap()), None);
        let mut bad = line();
        bad.path = "a/".repeat(MAX_FIELD);
        assert_eq!(FsLine::parse(&serde_json::to_vec(&bad).unwrap()), None);
        assert_eq!(FsLine::parse(b"[]"), None);
    }

    #[test]
    fn the_event_matches_the_line() {
        let e = line().to_event();
        assert_eq!(e.kind, "fs.write");
        let fs = e.fs.unwrap();
        assert_eq!(fs.op, "write");
        assert_eq!(fs.mount.as_deref(), Some("/workspace"));
    }

    #[test]
    fn the_allow_list_compiles() {
        assert!(
            !super::super::confine::allow_list(ALLOWED)
                .unwrap()
                .is_empty()
        );
    }
}
