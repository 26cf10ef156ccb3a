//! The filesystem gateway process: `airlock __gateway fs`, one per share.
//!
//! It starts before the guest boots and before it knows its share, so a warm guest can boot
//! with it (late binding). Its first stdin line is an [`FsSpec`]: where to listen. It then
//! jails itself ([`jail`]): as root, a mount namespace whose root is an empty tmpfs holding
//! only the directory of its vhost-user socket, the share's mount point and a read-only
//! `/proc`; only the capabilities file serving needs; not dumpable; a first Landlock layer
//! that confines reads and writes to those (as root); a seccomp allow-list
//! ([`airlock_jail::syscalls::FS_GATEWAY`]). It serves the vhost-user connection with every FUSE
//! request refused until it is bound.
//!
//! Descriptors: the gateway holds an `O_PATH` descriptor per inode it keeps for the guest, at
//! most a fixed number however large the tree (`backend/nodes.rs`); it has no
//! `CAP_DAC_READ_SEARCH`, so no file handles (`docs/filesystem.md`, "Large trees").
//!
//! Binding: the supervisor ([`crate::client`]) mounts the share into the gateway's namespace
//! (`airlock __gateway attach`, read-only for `ro` shares), then sends an [`FsBind`] line. The
//! gateway adds a second Landlock layer (writes only to what it serves and the socket
//! directory), opens the share, starts the workers under that layer, and creates its `.bound`
//! marker. It serves until SIGTERM or the end of stdin, writing one
//! [`FsLine`](crate::FsLine) per decision to stdout.

use airlock_jail::{Identity, SelfJail, ns::MountJail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The directory of the gateway's jail holding the share's mount point; the jail's first
/// Landlock layer lets it write only beneath this and its socket's directory.
pub const BIND_DIR: &str = "/bind";
/// Where the share is mounted in the gateway's jail.
pub const SHARE_AT: &str = "/bind/share";

/// Capabilities file serving keeps as root: acting as the share's owner and the guest's
/// users (chown, DAC override, fowner, fsetid, setuid/setgid for per-request credentials). Not
/// `CAP_MKNOD` (FIFOs and sockets need none; device nodes are refused) nor
/// `CAP_DAC_READ_SEARCH`: `open_by_handle_at` could open any inode of the share's filesystem,
/// and Landlock does not confine that through a bind mount (`docs/filesystem.md`, "Large
/// trees"). Descriptors stay bounded by the node table instead.
const KEEP_CAPS: &[u32] = &[0, 1, 3, 4, 6, 7];

/// Where the gateway reads what it needs besides the share: `/proc/self` (its descriptors,
/// reopened through `/proc/self/fd`, and `mountinfo` for file handles).
const PROC_DIR: &str = "/proc";

/// Why the gateway process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum FsProcessError {
    /// Setting up the signal descriptor failed.
    #[error("watching for SIGTERM")]
    Signal(#[source] nix::Error),
    /// Reading stdin failed.
    #[error("reading stdin")]
    Input(#[source] nix::Error),
    /// An input line was longer than [`airlock_jail::gateway::MAX_SPEC`].
    #[error("an input line longer than {} bytes", airlock_jail::gateway::MAX_SPEC)]
    LineTooLong,
    /// The spec or binding line is not the JSON expected.
    #[error("parsing the {what}")]
    Parse {
        /// `gateway spec` or `binding`.
        what: &'static str,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The socket path has no directory.
    #[error("socket {} has no directory", .0.display())]
    NoSocketDir(PathBuf),
    /// The jail could not be entered.
    #[error("jailing the fs gateway")]
    Jail(#[from] airlock_jail::JailError),
    /// The gateway could not start or bind.
    #[error("serving")]
    Serve(#[from] crate::FsError),
    /// The policy did not load.
    #[error("loading the policy")]
    Policy(#[source] airlock_policy::PolicyErrors),
    /// The share could not be resolved.
    #[error("share {}", path.display())]
    Share {
        /// The host directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An overlay copy's host directory has no name.
    #[error("overlay copy without a name")]
    OverlayName,
    /// A marker file could not be written.
    #[error("writing {}", .0.display())]
    Marker(PathBuf, #[source] std::io::Error),
}

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
    pub policy: airlock_policy::PolicySource,
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
pub(crate) struct Attachment {
    pub(crate) source: PathBuf,
    pub(crate) target: PathBuf,
    pub(crate) read_only: bool,
}

impl FsBind {
    /// The binding of `share` under `policy`.
    pub fn new(
        policy: &airlock_policy::Policy,
        share: &crate::Share,
        owner_map: Option<[u32; 4]>,
    ) -> FsBind {
        FsBind {
            policy: policy.source().clone(),
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
    pub(crate) fn attachments(&self) -> std::io::Result<Vec<Attachment>> {
        let host_dir = std::fs::canonicalize(&self.host_dir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("share {}: {e}", self.host_dir.display()))
        })?;
        let at = PathBuf::from(SHARE_AT);
        Ok(match self.mode {
            airlock_policy::MountMode::Overlay => {
                let (Some(dir), Some(name)) = (host_dir.parent(), host_dir.file_name()) else {
                    return Err(std::io::Error::other("overlay copy without a parent"));
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
    fn next(&mut self) -> Result<Input, FsProcessError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::{AsFd, BorrowedFd};
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).take(i).collect();
                return Ok(Input::Line(line));
            }
            if self.buf.len() > airlock_jail::gateway::MAX_SPEC {
                return Err(FsProcessError::LineTooLong);
            }
            // SAFETY: fd 0 stays open for the life of the process.
            let stdin = unsafe { BorrowedFd::borrow_raw(0) };
            let mut fds = [
                PollFd::new(stdin, PollFlags::POLLIN),
                PollFd::new(self.term.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(FsProcessError::Input(e)),
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
                Err(e) => return Err(FsProcessError::Input(e)),
            }
        }
    }
}

/// `airlock __gateway fs`: returns the process exit code.
pub fn child_main() -> u8 {
    airlock_jail::gateway::child_main("fs", run)
}

/// The gateway's jail before it knows its share (see the module comment). As root it writes
/// only beneath [`BIND_DIR`] and the socket's directory; an ordinary user gets no first
/// Landlock layer (the share's host path is not known yet).
pub fn jail(spec: &FsSpec, socket_dir: &Path) -> SelfJail {
    let root = nix::unistd::geteuid().is_root();
    SelfJail {
        mount_jail: Some(MountJail {
            root: spec.jail_root.clone(),
            rw_dirs: vec![socket_dir.to_path_buf()],
            mount_points: vec![PathBuf::from(SHARE_AT)],
        }),
        identity: Identity::RootWithCaps(KEEP_CAPS),
        dumpable: false,
        writable: root.then(|| vec![PathBuf::from(BIND_DIR), socket_dir.to_path_buf()]),
        readable: root.then(|| vec![PathBuf::from(PROC_DIR)]),
        landlock_required_as_root: true,
        syscalls: airlock_jail::syscalls::FS_GATEWAY,
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    what: &'static str,
    line: &[u8],
) -> Result<T, FsProcessError> {
    serde_json::from_slice(line).map_err(|source| FsProcessError::Parse { what, source })
}

fn run() -> Result<(), FsProcessError> {
    // SIGTERM is waited for, not handled: block it before any thread starts so all inherit it.
    let mut term = nix::sys::signal::SigSet::empty();
    term.add(nix::sys::signal::Signal::SIGTERM);
    term.thread_block().map_err(FsProcessError::Signal)?;
    let mut input = Stdin {
        buf: Vec::new(),
        term: nix::sys::signalfd::SignalFd::new(&term).map_err(FsProcessError::Signal)?,
    };
    let spec: FsSpec = match input.next()? {
        Input::Line(l) => parse("gateway spec", &l)?,
        Input::End => return Ok(()),
    };
    let socket_dir = spec
        .socket
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| FsProcessError::NoSocketDir(spec.socket.clone()))?;
    let root = nix::unistd::geteuid().is_root();
    let early = jail(&spec, &socket_dir).enter()?;
    let (gateway, binder) = crate::FsGateway::start_unbound(&spec.socket, crate::DEFAULT_THREADS)?;
    // Tells the supervisor the socket is served (it boots the engine only then).
    let ready = ready_marker(&spec.socket);
    std::fs::write(&ready, b"").map_err(|e| FsProcessError::Marker(ready, e))?;

    let bind: FsBind = match input.next()? {
        Input::Line(l) => parse("binding", &l)?,
        Input::End => {
            gateway.stop();
            return Ok(());
        }
    };
    let policy = bind
        .policy
        .load_checked_elsewhere(&bind.mount_hosts)
        .map_err(FsProcessError::Policy)?;
    let read_only = bind.mode == airlock_policy::MountMode::Ro;
    // As root the supervisor has mounted the share in the jail (see `attachments`); the host
    // path it names is canonical but not visible here.
    let (host_dir, served) = if root {
        let served = match bind.mode {
            airlock_policy::MountMode::Overlay => Path::new(SHARE_AT).join(
                bind.host_dir
                    .file_name()
                    .ok_or(FsProcessError::OverlayName)?,
            ),
            _ => PathBuf::from(SHARE_AT),
        };
        (bind.host_dir.clone(), Some(served))
    } else {
        let host_dir =
            std::fs::canonicalize(&bind.host_dir).map_err(|source| FsProcessError::Share {
                path: bind.host_dir.clone(),
                source,
            })?;
        (host_dir, None)
    };
    // A second layer for the threads that serve: writes only to what is served (not the
    // overlay's metadata beside a copy; nothing of a read-only share) and the socket's
    // directory; as root, reads only of what is attached under `/bind` and `/proc`. The
    // workers start after this, under it.
    let serving = served.clone().unwrap_or_else(|| host_dir.clone());
    let writable: Vec<PathBuf> = if read_only {
        vec![socket_dir.clone()]
    } else {
        vec![serving, socket_dir.clone()]
    };
    // Made again, alike, by the vring thread (started before this layer) when it first serves.
    let serving_layer = Arc::new(move || {
        let writable: Vec<&Path> = writable.iter().map(PathBuf::as_path).collect();
        let status = if root {
            airlock_jail::landlock::only_beneath(
                &[Path::new(BIND_DIR), Path::new(PROC_DIR)],
                &writable,
            )?
        } else {
            airlock_jail::landlock::writes_only_beneath(&writable)?
        };
        if root && status == airlock_jail::landlock::LandlockStatus::NotEnforced {
            return Err(airlock_jail::JailError::LandlockMissing);
        }
        Ok(status)
    });
    let landlock = serving_layer()?;
    let confine: crate::device::Confine = Arc::new(move || {
        serving_layer()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()))
    });
    let landlock = match early.landlock {
        Some(first) => format!(
            "{first} (all threads), then {landlock} (serving threads); reads confined to the \
             share"
        ),
        None => format!("{landlock} (serving threads)"),
    };
    binder.bind(
        crate::Share {
            host_dir,
            guest_path: bind.guest_path.clone(),
            mode: bind.mode,
        },
        served.as_deref(),
        Arc::new(policy),
        Arc::new(airlock_jail::gateway::JsonLines::default()),
        bind.owner_map.map(|[gu, gg, hu, hg]| crate::OwnerMap {
            guest_uid: gu,
            guest_gid: gg,
            host_uid: hu,
            host_gid: hg,
        }),
        confine,
    )?;
    eprintln!(
        "airlock fs gateway: {} {}; mount jail {}, Landlock {landlock}, seccomp allow-list of {} \
         syscalls",
        bind.guest_path,
        bind.mode.as_str(),
        if early.mount_jail {
            "on"
        } else {
            "off (not root)"
        },
        early.allowed
    );
    let bound = bound_marker(&spec.socket);
    std::fs::write(&bound, b"").map_err(|e| FsProcessError::Marker(bound, e))?;
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

/// `airlock __gateway attach PID TARGET SOURCE ro|rw`: mounts SOURCE on TARGET (beneath
/// [`BIND_DIR`]) in the mount namespace of process PID; see [`airlock_jail::ns::attach`].
/// Returns the process exit code.
pub fn attach_main(args: &[std::ffi::OsString]) -> u8 {
    let usage = "usage: airlock __gateway attach PID TARGET SOURCE ro|rw";
    let [pid, target, source, mode] = args else {
        eprintln!("{usage}");
        return 125;
    };
    let Some(pid) = pid.to_str().and_then(|p| p.parse::<u32>().ok()) else {
        eprintln!("PID: {usage}");
        return 125;
    };
    let read_only = match mode.to_str() {
        Some("ro") => true,
        Some("rw") => false,
        _ => {
            eprintln!("mode must be ro or rw");
            return 125;
        }
    };
    match airlock_jail::ns::attach(
        pid,
        Path::new(target),
        Path::new(source),
        read_only,
        Path::new(BIND_DIR),
    ) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}", airlock_jail::error_chain(&e));
            125
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jail_keeps_no_handle_capability_and_confines_reads() {
        // CAP_DAC_READ_SEARCH would allow open_by_handle_at to any inode of the filesystem.
        assert!(!KEEP_CAPS.contains(&2));
        let spec = FsSpec {
            socket: PathBuf::from("/run/s/fs0/sock"),
            jail_root: PathBuf::from("/run/s/fs0.jail"),
        };
        let j = jail(&spec, Path::new("/run/s/fs0"));
        assert!(j.mount_jail.is_some() && !j.dumpable && j.landlock_required_as_root);
        if nix::unistd::geteuid().is_root() {
            assert_eq!(j.readable, Some(vec![PathBuf::from(PROC_DIR)]));
        }
        assert!(airlock_jail::seccomp::allow_list(j.syscalls).is_ok());
    }
}
