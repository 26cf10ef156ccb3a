//! The filesystem gateway process: `airlock __gateway fs`, one per share.
//!
//! It starts before the guest boots and before it knows its share, so a warm guest can boot
//! with it (late binding). Its first stdin line is an [`FsSpec`]: where to listen. As root it
//! then moves into a mount namespace whose root is an empty tmpfs holding only the directory
//! of its vhost-user socket and a read-only `/proc`; it keeps only the capabilities file
//! serving needs (no `CAP_DAC_READ_SEARCH`, so no `open_by_handle_at` to reach files outside
//! the share) and a seccomp allow-list, and serves the vhost-user connection with every FUSE
//! request refused until it is bound.
//!
//! Binding: the supervisor mounts the share into the gateway's namespace at its host path
//! (`airlock __gateway attach`, read-only for `ro` shares), then sends an [`FsBind`] line. The
//! gateway applies Landlock (writes only to the share and the socket directory), opens the
//! share, starts the workers under that Landlock domain, and creates its `.bound` marker. It
//! serves until SIGTERM or the end of stdin, writing one [`FsLine`] per decision to stdout.

use airlock_audit::{Decision, Event, FsInfo, Source};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The directory of the gateway's jail holding the share's mount point; the jail's first
/// Landlock layer lets it write only beneath this and its socket's directory.
pub const BIND_DIR: &str = "/bind";
/// Where the share is mounted in the gateway's jail.
pub const SHARE_AT: &str = "/bind/share";

/// How a filesystem gateway starts (its first stdin line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsSpec {
    /// The vhost-user socket to create.
    pub socket: PathBuf,
    /// An empty directory to build the jail's root on.
    pub jail_root: PathBuf,
}

/// What a filesystem gateway serves (its second stdin line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsBind {
    /// The policy to load.
    pub policy: super::PolicyText,
    /// The directory served.
    pub host_dir: PathBuf,
    /// Its guest mount point.
    pub guest_path: String,
    /// `ro`, `rw` or `overlay`.
    pub mode: airlock_policy::MountMode,
    /// Guest uid/gid ↔ host uid/gid of the share's owner.
    pub owner_map: Option<[u32; 4]>,
    /// Every policy mount's canonical host directory, as the supervisor resolved it: the
    /// gateway cannot see them to resolve them itself.
    pub mount_hosts: Vec<Option<PathBuf>>,
}

/// One host directory mounted into a gateway's jail.
struct Attachment {
    source: PathBuf,
    target: PathBuf,
    read_only: bool,
}

impl FsBind {
    /// The binding of `share` under `policy`.
    pub fn new(
        policy: &airlock_policy::Policy,
        share: &airlock_fs::Share,
        owner_map: Option<[u32; 4]>,
    ) -> FsBind {
        FsBind {
            policy: super::PolicyText::of(policy),
            host_dir: share.host_dir.clone(),
            guest_path: share.guest_path.clone(),
            mode: share.mode,
            owner_map,
            mount_hosts: policy
                .mounts()
                .iter()
                .map(|m| match &m.host {
                    airlock_policy::MountHost::Path(p) => Some(p.clone()),
                    airlock_policy::MountHost::Workspace => None,
                })
                .collect(),
        }
    }

    /// What to mount in the gateway's jail, in order. A share goes on [`SHARE_AT`]; an overlay
    /// copy's directory goes there read-only (its metadata), with the copy itself mounted
    /// writable on top of its place.
    fn attachments(&self) -> io::Result<Vec<Attachment>> {
        let host_dir = std::fs::canonicalize(&self.host_dir).map_err(|e| {
            io::Error::new(e.kind(), format!("share {}: {e}", self.host_dir.display()))
        })?;
        let at = PathBuf::from(SHARE_AT);
        Ok(match self.mode {
            airlock_policy::MountMode::Overlay => {
                let (Some(dir), Some(name)) = (host_dir.parent(), host_dir.file_name()) else {
                    return Err(io::Error::other("overlay copy without a parent"));
                };
                let served = at.join(name);
                vec![
                    Attachment {
                        source: dir.to_path_buf(),
                        target: at,
                        read_only: true,
                    },
                    Attachment {
                        source: host_dir.clone(),
                        target: served,
                        read_only: false,
                    },
                ]
            }
            mode => vec![Attachment {
                source: host_dir,
                target: at,
                read_only: mode == airlock_policy::MountMode::Ro,
            }],
        })
    }
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
    libc::SYS_signalfd4,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_restrict_self,
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

/// What the gateway's main thread waits for.
enum Input {
    Line(Vec<u8>),
    End,
}

/// Reads stdin line by line while watching for SIGTERM (blocked, and read from a signalfd, so
/// every thread inherits the mask and none is interrupted).
struct Stdin {
    buf: Vec<u8>,
    term: nix::sys::signalfd::SignalFd,
}

impl Stdin {
    fn next(&mut self) -> anyhow::Result<Input> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::{AsFd, BorrowedFd};
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).take(i).collect();
                return Ok(Input::Line(line));
            }
            anyhow::ensure!(
                self.buf.len() <= super::MAX_SPEC,
                "an input line longer than {} bytes",
                super::MAX_SPEC
            );
            // SAFETY: fd 0 stays open for the life of the process.
            let stdin = unsafe { BorrowedFd::borrow_raw(0) };
            let mut fds = [
                PollFd::new(stdin, PollFlags::POLLIN),
                PollFd::new(self.term.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if fds[1].any().unwrap_or(false) {
                return Ok(Input::End);
            }
            let mut chunk = [0u8; 64 * 1024];
            match nix::unistd::read(0, &mut chunk) {
                Ok(0) => return Ok(Input::End),
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn run() -> anyhow::Result<()> {
    use anyhow::Context;
    // SIGTERM is waited for, not handled: block it before any thread starts so all inherit it.
    let mut term = nix::sys::signal::SigSet::empty();
    term.add(nix::sys::signal::Signal::SIGTERM);
    term.thread_block()?;
    let mut input = Stdin {
        buf: Vec::new(),
        term: nix::sys::signalfd::SignalFd::new(&term).context("signalfd")?,
    };
    let spec: FsSpec = match input.next()? {
        Input::Line(l) => serde_json::from_slice(&l).context("parsing the gateway spec")?,
        Input::End => return Ok(()),
    };
    let socket_dir = spec
        .socket
        .parent()
        .map(Path::to_path_buf)
        .context("socket without a directory")?;
    let root = nix::unistd::geteuid().is_root();
    if root {
        enter_mount_jail(&spec.jail_root, &socket_dir)
            .context("building the gateway's mount jail")?;
        keep_only_caps(KEEP_CAPS).context("dropping capabilities")?;
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error()).context("no_new_privs");
    }
    // Nobody of the same uid may attach to it or open its memory and descriptors.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error()).context("PR_SET_DUMPABLE");
    }
    // As root, a first Landlock layer before any thread exists, so every thread has it: writes
    // only to where the share will be mounted and to the socket's directory (and, being in a
    // domain, no access to other processes through /proc).
    let early = if root {
        let status =
            writes_only_beneath(&[Path::new(BIND_DIR), &socket_dir]).context("Landlock")?;
        if status == "not enforced" {
            anyhow::bail!(
                "Landlock is not available: refusing to serve a share as root without it"
            );
        }
        Some(status)
    } else {
        None
    };
    let filter = super::confine::allow_list(ALLOWED)?;
    super::confine::apply(&filter)?;
    let (gateway, binder) =
        airlock_fs::FsGateway::start_unbound(&spec.socket, airlock_fs::DEFAULT_THREADS)
            .map_err(anyhow::Error::from)?;
    // Tells the supervisor the socket is served (it boots the engine only then).
    std::fs::write(ready_marker(&spec.socket), b"").context("writing the ready marker")?;

    let bind: FsBind = match input.next()? {
        Input::Line(l) => serde_json::from_slice(&l).context("parsing the binding")?,
        Input::End => {
            gateway.stop();
            return Ok(());
        }
    };
    let policy = airlock_policy::PolicySource {
        text: bind.policy.text.clone(),
        origin: bind.policy.origin.clone(),
        workspace: bind.policy.workspace.clone(),
    }
    .load_checked_elsewhere(&bind.mount_hosts)
    .map_err(|e| anyhow::anyhow!("loading the policy: {e}"))?;
    let read_only = bind.mode == airlock_policy::MountMode::Ro;
    // As root the supervisor has mounted the share in the jail (see `attachments`); the host
    // path it names is canonical but not visible here.
    let (host_dir, served) = if root {
        let served = match bind.mode {
            airlock_policy::MountMode::Overlay => Path::new(SHARE_AT).join(
                bind.host_dir
                    .file_name()
                    .context("overlay copy without a name")?,
            ),
            _ => PathBuf::from(SHARE_AT),
        };
        (bind.host_dir.clone(), Some(served))
    } else {
        let host_dir = std::fs::canonicalize(&bind.host_dir)
            .with_context(|| format!("share {}", bind.host_dir.display()))?;
        (host_dir, None)
    };
    // A second layer for the threads that serve: writes only to what is served (not the
    // overlay's metadata beside a copy; nothing of a read-only share) and the socket's
    // directory. The workers start after this, under it.
    let serving = served.clone().unwrap_or_else(|| host_dir.clone());
    let writable: Vec<&Path> = if read_only {
        vec![&socket_dir]
    } else {
        vec![&serving, &socket_dir]
    };
    let landlock = writes_only_beneath(&writable).context("Landlock")?;
    if root && landlock == "not enforced" {
        anyhow::bail!("Landlock is not available: refusing to serve a share as root without it");
    }
    let landlock = match early {
        Some(first) => format!("{first} (all threads), then {landlock} (serving threads)"),
        None => format!("{landlock} (serving threads)"),
    };
    binder
        .bind(
            airlock_fs::Share {
                host_dir,
                guest_path: bind.guest_path.clone(),
                mode: bind.mode,
            },
            served.as_deref(),
            Arc::new(policy),
            Arc::new(super::JsonLines::default()),
            bind.owner_map.map(|[gu, gg, hu, hg]| airlock_fs::OwnerMap {
                guest_uid: gu,
                guest_gid: gg,
                host_uid: hu,
                host_gid: hg,
            }),
        )
        .map_err(anyhow::Error::from)?;
    eprintln!(
        "airlock fs gateway: {} {}; mount jail {}, Landlock {landlock}, seccomp allow-list of {} \
         syscalls",
        bind.guest_path,
        bind.mode.as_str(),
        if root { "on" } else { "off (not root)" },
        super::confine::BASE.len() + ALLOWED.len()
    );
    std::fs::write(bound_marker(&spec.socket), b"").context("writing the bound marker")?;
    // Further lines are ignored; SIGTERM or the end of stdin stops serving.
    while let Input::Line(_) = input.next()? {}
    gateway.stop();
    Ok(())
}

/// The file a gateway creates once it serves `socket`.
pub fn ready_marker(socket: &Path) -> PathBuf {
    socket.with_extension("ready")
}

/// The file a gateway creates once its share is bound.
pub fn bound_marker(socket: &Path) -> PathBuf {
    socket.with_extension("bound")
}

/// One filesystem gateway as the supervisor sees it: started unbound, bound later.
pub struct FsSlot {
    process: super::GatewayProcess,
    socket: PathBuf,
    log: PathBuf,
    bound: bool,
}

impl FsSlot {
    /// Starts the gateway for slot `index` of the sandbox whose state dir is `state`, and
    /// waits until it listens. `on_line` gets its event lines.
    pub async fn start(
        state: &Path,
        index: usize,
        on_line: impl Fn(&[u8]) + Send + 'static,
    ) -> Result<FsSlot, String> {
        let dir = state.join(format!("fs{index}"));
        let jail_root = state.join(format!("fs{index}.jail"));
        for d in [&dir, &jail_root] {
            std::fs::create_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        // The engine's uid must reach the socket inside.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("sock");
        let log = state.join(format!("fs{index}.log"));
        let spec = FsSpec {
            socket: socket.clone(),
            jail_root,
        };
        let mut process = super::GatewayProcess::spawn_kept("fs", &spec, &log, on_line)
            .await
            .map_err(|e| e.to_string())?;
        if let Err(e) = process
            .wait_for(&ready_marker(&socket), Duration::from_secs(10))
            .await
        {
            return Err(format!("{e}\n{}", crate::supervisor::tail(&log, 20)));
        }
        Ok(FsSlot {
            process,
            socket,
            log,
            bound: false,
        })
    }

    /// The vhost-user socket the engine connects to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The gateway's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether a share is bound.
    pub fn is_bound(&self) -> bool {
        self.bound
    }

    /// Binds `bind`: as root, mounts the share into the gateway's jail first; then sends the
    /// binding and waits until the gateway serves it.
    pub async fn bind(&mut self, bind: &FsBind) -> Result<(), String> {
        if self.bound {
            return Err("this gateway is already bound".into());
        }
        let pid = self.process.pid().ok_or("the fs gateway has exited")?;
        let attachments = bind.attachments().map_err(|e| e.to_string())?;
        let mut bind = bind.clone();
        // The gateway cannot resolve the host path itself: send it canonical.
        if let Some(last) = attachments.last() {
            bind.host_dir.clone_from(&last.source);
        }
        if nix::unistd::geteuid().is_root() {
            for a in &attachments {
                attach(pid, &a.target, &a.source, a.read_only).await?;
            }
        }
        self.process
            .send_line(&bind)
            .await
            .map_err(|e| format!("sending the binding: {e}"))?;
        if let Err(e) = self
            .process
            .wait_for(&bound_marker(&self.socket), Duration::from_secs(10))
            .await
        {
            return Err(format!("{e}\n{}", crate::supervisor::tail(&self.log, 20)));
        }
        self.bound = true;
        Ok(())
    }

    /// Stops the gateway; see [`super::GatewayProcess::stop`].
    pub async fn stop(self, grace: Duration) {
        self.process.stop(grace).await;
    }
}

/// Mounts `source` (read-only if asked) on `target` inside the mount namespace of process
/// `pid`, through `airlock __gateway attach`: entering a mount namespace needs a
/// single-threaded process. Gives up after 10 s.
async fn attach(pid: u32, target: &Path, source: &Path, read_only: bool) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(super::airlock_binary().map_err(|e| e.to_string())?);
    cmd.args(["__gateway", "attach", &pid.to_string()])
        .arg(target)
        .arg(source)
        .arg(if read_only { "ro" } else { "rw" })
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(10), cmd.output())
        .await
        .map_err(|_| {
            format!(
                "mounting {} into the fs gateway's jail: timed out",
                source.display()
            )
        })?
        .map_err(|e| format!("starting the share attach helper: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mounting {} into the fs gateway's jail: {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `airlock __gateway attach PID TARGET SOURCE ro|rw`: clones the mount tree at SOURCE (new
/// mount API), makes it private, nosuid, nodev and, for `ro`, read-only, enters PID's mount
/// namespace and mounts it on TARGET there, an existing directory under [`BIND_DIR`] reached
/// without following links. Refuses to mount into its own namespace.
pub fn attach_main(args: &[std::ffi::OsString]) -> u8 {
    match attach_in_child(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e:#}");
            125
        }
    }
}

fn attach_in_child(args: &[std::ffi::OsString]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::MetadataExt;
    let [pid, target, source, mode] = args else {
        anyhow::bail!("usage: airlock __gateway attach PID TARGET SOURCE ro|rw");
    };
    let pid: u32 = pid.to_str().and_then(|p| p.parse().ok()).context("PID")?;
    let (target, source) = (Path::new(target), Path::new(source));
    anyhow::ensure!(source.is_absolute(), "{} is not absolute", source.display());
    anyhow::ensure!(
        target.starts_with(BIND_DIR) && target != Path::new(BIND_DIR),
        "{} is not under {BIND_DIR}",
        target.display()
    );
    let read_only = match mode.to_str() {
        Some("ro") => true,
        Some("rw") => false,
        _ => anyhow::bail!("mode must be ro or rw"),
    };
    let source_c = c(source)?;
    let target_c = c(target)?;
    // SAFETY: open_tree reads a NUL-terminated path that outlives the call; the result is a new
    // fd we own.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source_c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
        )
    };
    if tree < 0 {
        return Err(io::Error::last_os_error()).context(format!("open_tree {}", source.display()));
    }
    // SAFETY: a fresh descriptor returned by open_tree, owned by nobody else.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as libc::c_int) };
    let mut attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID
            | MOUNT_ATTR_NODEV
            | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        // Not a peer of the host's mount: later host mounts under the share stay out.
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (a live local of the size passed) and an empty path.
    if unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &raw mut attr,
            std::mem::size_of::<MountAttr>(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error()).context("mount_setattr");
    }
    let ours = std::fs::metadata("/proc/self/ns/mnt").context("our mount namespace")?;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .with_context(|| format!("the mount namespace of process {pid}"))?;
    let theirs = ns.metadata()?;
    anyhow::ensure!(
        (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()),
        "process {pid} shares our mount namespace; refusing to mount there"
    );
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS).context("setns")?;
    // The target is opened without following any link: whatever the jail holds, the share
    // lands on that directory.
    // SAFETY: open_how is plain integers; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads a NUL-terminated path and `how` (a live local of the size passed).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            target_c.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context(format!(
            "opening {} in the jail without links",
            target.display()
        ));
    }
    // SAFETY: a fresh descriptor returned by openat2, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    // SAFETY: move_mount reads two empty NUL-terminated strings that outlive the call.
    if unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            fd.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    } != 0
    {
        return Err(io::Error::last_os_error())
            .context(format!("move_mount onto {}", target.display()));
    }
    Ok(())
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

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

/// Inside `root` (an empty directory): a tmpfs holding the socket directory at its own path and
/// a fresh `/proc`; then pivots into it. The share is mounted in later, at its own path too
/// (see [`attach_main`]), so nothing else needs to know.
fn enter_mount_jail(root: &Path, socket_dir: &Path) -> io::Result<()> {
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
    let target = root.join(socket_dir.strip_prefix("/").unwrap_or(socket_dir));
    std::fs::create_dir_all(&target)?;
    mount(
        Some(&socket_dir.to_string_lossy()),
        &target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;
    // The share's mount point, made now: the jail's root turns read-only below.
    let share_at = root.join(SHARE_AT.trim_start_matches('/'));
    std::fs::create_dir_all(&share_at)?;
    std::fs::set_permissions(
        &share_at,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
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
    // Nothing can be planted in the jail's root (the share is mounted on `SHARE_AT` later).
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REMOUNT
            | libc::MS_BIND
            | libc::MS_RDONLY
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC,
        None,
    )?;
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
