//! [`FsGateway`]: one vhost-user-fs backend serving one share on its own thread.
//!
//! `start` checks the share, binds the vhost-user socket (so it exists before QEMU starts and
//! connects to it), then starts the gateway thread, which gives itself private filesystem
//! attributes, opens the share with `PassthroughFs`, wraps it in [`GatedFs`], and waits for
//! the one frontend connection. `start` returns once all of that has worked. The thread serves
//! until the frontend disconnects (QEMU exited) or [`FsGateway::stop`] is called.
//!
//! Called by the supervisor, one gateway per share per sandbox.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use airlock_policy::{MountHost, MountMode, Policy};
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use virtiofsd::passthrough::{self, CachePolicy, InodeFileHandlesMode, PassthroughFs};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use crate::backend::GatedFs;
use crate::device::{Confine, DeviceError, FsDevice};
use crate::events::FsEvents;
use crate::gate::Gate;
use crate::overlay::{Overlay, OverlayError};
use crate::share::Share;
use crate::sys;

/// Worker threads per gateway: the host has 2 cores, and one request queue.
pub const DEFAULT_THREADS: usize = 2;
/// How long the guest may cache names and attributes (virtiofsd's value for `cache=auto`).
const CACHE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often `stop` cuts a connection that is still open.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The policy mounts this guest path in `overlay` mode, but the share is not an overlay
    /// copy: serving the host directory itself would send the guest's writes to the host.
    #[error(
        "share {guest:?}: the policy mounts it in `overlay` mode, but the share is `{}`; serve an overlay copy (mode `overlay`, host_dir = Overlay::upper())",
        mode.as_str()
    )]
    OverlayNeedsCopy {
        /// Guest mount point.
        guest: String,
        /// The share's mode.
        mode: MountMode,
    },
    /// A share of mode `overlay` whose host directory is not a usable overlay copy.
    #[error("share {guest:?}: not an overlay copy")]
    Overlay {
        /// Guest mount point.
        guest: String,
        /// Why.
        #[source]
        source: OverlayError,
    },
    /// The policy's mount at this guest path names another host directory than the one the
    /// overlay copied.
    #[error(
        "share {guest:?}: the policy shares {} but the overlay is a copy of {}",
        policy.display(),
        overlay.display()
    )]
    OverlayHostMismatch {
        /// Guest mount point.
        guest: String,
        /// Host directory in the policy.
        policy: PathBuf,
        /// Host directory the overlay copied.
        overlay: PathBuf,
    },
    /// The host directory cannot be resolved.
    #[error("shared directory {}", path.display())]
    HostDir {
        /// As given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The host path is not a directory.
    #[error("shared directory {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// `PassthroughFs` takes its root as a string.
    #[error("shared directory {} is not valid UTF-8", .0.display())]
    NonUtf8HostDir(PathBuf),
    /// The policy has no mount at the share's guest path, so it would deny everything.
    #[error("the policy has no mount at guest path {0:?}")]
    UnknownMount(String),
    /// The policy's mount at this guest path names another host directory.
    #[error(
        "share {guest:?}: the policy shares {} but the gateway was given {}",
        policy.display(),
        share.display()
    )]
    HostMismatch {
        /// Guest mount point.
        guest: String,
        /// Host directory in the policy.
        policy: PathBuf,
        /// Host directory given to the gateway.
        share: PathBuf,
    },
    /// The vhost-user socket could not be bound.
    #[error("cannot listen on {}: {reason}", path.display())]
    Listen {
        /// Socket path.
        path: PathBuf,
        /// The vhost error, as text (it is not a `std::error::Error`).
        reason: String,
    },
    /// The socket's mode could not be set.
    #[error("cannot restrict {}", path.display())]
    SocketMode {
        /// Socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The gateway thread could not be started.
    #[error("cannot start the gateway thread")]
    Thread(#[source] io::Error),
    /// The gateway thread could not get private filesystem attributes.
    #[error("cannot unshare CLONE_FS on the gateway thread")]
    Unshare(#[source] io::Error),
    /// `PassthroughFs` could not open the share.
    #[error("cannot open shared directory {}", path.display())]
    Passthrough {
        /// Host directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The vhost-user device could not be built.
    #[error("cannot build the vhost-user-fs device")]
    Device(#[source] DeviceError),
    /// `vhost-user-backend` refused to create the daemon.
    #[error("cannot create the vhost-user daemon: {0}")]
    Daemon(String),
    /// The gateway thread ended before reporting.
    #[error("the gateway thread exited during start")]
    Died,
}

/// Tuning for [`FsGateway::start_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayOptions {
    /// Worker threads serving requests; 0 serves them on the vring thread.
    pub threads: usize,
    /// Show files owned by a host user as owned by a guest user, and create the guest user's
    /// files as that host user (e.g. the guest's `agent` ↔ the owner of the workspace).
    pub owner_map: Option<OwnerMap>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            threads: DEFAULT_THREADS,
            owner_map: None,
        }
    }
}

/// One guest user and group mapped onto one host user and group, both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerMap {
    /// Guest uid.
    pub guest_uid: u32,
    /// Guest gid.
    pub guest_gid: u32,
    /// Host uid.
    pub host_uid: u32,
    /// Host gid.
    pub host_gid: u32,
}

impl OwnerMap {
    fn apply(&self, cfg: &mut passthrough::Config) {
        use virtiofsd::soft_idmap::cmdline::IdMap;
        let both = |guest: u32, host: u32| {
            vec![
                IdMap::Guest {
                    from_guest: guest,
                    to_host: host,
                    count: 1,
                },
                IdMap::Host {
                    from_host: host,
                    to_guest: guest,
                    count: 1,
                },
            ]
        };
        cfg.uid_map = Some(both(self.guest_uid, self.host_uid));
        cfg.gid_map = Some(both(self.guest_gid, self.host_gid));
    }
}

/// A running filesystem gateway for one share.
#[derive(Debug)]
pub struct FsGateway {
    socket: PathBuf,
    thread: Option<JoinHandle<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl FsGateway {
    /// Starts serving `share` on the vhost-user socket `socket` with default options. Returns
    /// once the socket is listening and the share is open; QEMU may connect from then on.
    pub fn start(
        socket: &Path,
        share: Share,
        policy: Arc<Policy>,
        events: Arc<dyn FsEvents>,
    ) -> Result<FsGateway, FsError> {
        Self::start_with(socket, share, policy, events, GatewayOptions::default())
    }

    /// [`start`](Self::start) with explicit options.
    pub fn start_with(
        socket: &Path,
        share: Share,
        policy: Arc<Policy>,
        events: Arc<dyn FsEvents>,
        options: GatewayOptions,
    ) -> Result<FsGateway, FsError> {
        // Checked before listening, so a bad share never leaves a socket behind.
        let prepared = prepare(&share, &policy, None)?;
        let (gateway, binder) = Self::start_unbound(socket, options.threads)?;
        // In-process: no thread here takes on a Landlock domain, so the vring thread needs none.
        binder.bind_prepared(
            prepared,
            policy,
            share.mode,
            events,
            options.owner_map,
            None,
        )?;
        Ok(gateway)
    }

    /// Listens on `socket` and serves the vhost-user connection with no share yet: QEMU can
    /// connect and the guest can boot, while every FUSE request is answered `ENODEV` until the
    /// returned [`Binder`] binds a share. `threads` workers start at binding.
    pub fn start_unbound(socket: &Path, threads: usize) -> Result<(FsGateway, Binder), FsError> {
        let listener = Listener::new(socket, true).map_err(|e| FsError::Listen {
            path: socket.to_owned(),
            reason: e.to_string(),
        })?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| FsError::SocketMode {
                path: socket.to_owned(),
                source,
            },
        )?;
        let span = tracing::info_span!("fs_gateway", socket = %socket.display());
        let device = Arc::new(FsDevice::unbound(threads, span.clone()).map_err(FsError::Device)?);
        let (ready_tx, ready_rx) = sync_channel::<Result<(), FsError>>(1);
        let (done_tx, done_rx) = sync_channel::<()>(1);
        let serving = Arc::clone(&device);
        let thread_span = span.clone();
        let thread = std::thread::Builder::new()
            .name("airlock-fs".to_owned())
            .spawn(move || {
                let _enter = thread_span.enter();
                serve(listener, serving, &ready_tx);
                drop(done_tx);
            })
            .map_err(FsError::Thread)?;
        let gateway = match ready_rx.recv() {
            Ok(Ok(())) => FsGateway {
                socket: socket.to_owned(),
                thread: Some(thread),
                done: done_rx,
            },
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(FsError::Died);
            }
        };
        Ok((gateway, Binder { device, span }))
    }

    /// The vhost-user socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether serving has ended (the frontend disconnected, or the gateway failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits until the frontend disconnects, then cleans up. Blocks forever if no frontend
    /// ever connects; use [`stop`](Self::stop) to end serving.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Ends serving and joins every gateway thread. Wakes a listener still waiting for QEMU,
    /// and shuts down a connection QEMU still holds, so it never waits for the guest.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // A connection of our own ends a pending accept; the request loop then reads EOF.
        drop(UnixStream::connect(&self.socket));
        loop {
            match self.done.recv_timeout(STOP_POLL) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let n = sys::shutdown_connections(&self.socket);
                    tracing::debug!(connections = n, "fs gateway stop: connections shut down");
                    drop(UnixStream::connect(&self.socket));
                }
            }
        }
        let _ = thread.join();
    }
}

impl Drop for FsGateway {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A share checked against the host and the policy.
struct Prepared {
    /// Where this process opens the share (the host directory, or where a jail mounted it).
    served: String,
    /// Canonical host directory served (for an overlay share, the copy).
    root: String,
    /// Guest mount point as the policy spells it.
    guest: String,
    /// For an overlay share: the host directory the copy was made from.
    origin: Option<String>,
}

/// Checks `share` against the host and the policy.
///
/// A share of mode `rw` or `ro` must name the policy mount's host directory, and the policy
/// mount must not be `overlay`. A share of mode `overlay` must name an overlay's `upper`
/// directory (checked by opening the overlay: `<upper>/../manifest.json`), and the policy
/// mount's host directory must be the one that overlay copied; the copy is then served
/// read-write, with every request decided by the policy exactly as for `rw` (the policy's own
/// mount mode still applies, so a policy mount of mode `ro` stays read-only).
fn prepare(share: &Share, policy: &Policy, served: Option<&Path>) -> Result<Prepared, FsError> {
    let root = match served {
        // Checked by whoever mounted it there; the host path may not be visible here.
        Some(_) => share.host_dir.clone(),
        None => std::fs::canonicalize(&share.host_dir).map_err(|source| FsError::HostDir {
            path: share.host_dir.clone(),
            source,
        })?,
    };
    let served = served.map_or_else(|| root.clone(), Path::to_path_buf);
    if !served.is_dir() {
        return Err(FsError::NotADirectory(served));
    }
    let root = root
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| FsError::NonUtf8HostDir(root.clone()))?;
    let served = served
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| FsError::NonUtf8HostDir(served.clone()))?;
    let wanted = share.guest_path.trim_end_matches('/');
    let mount = policy
        .mounts()
        .iter()
        .find(|m| m.guest == wanted)
        .ok_or_else(|| FsError::UnknownMount(share.guest_path.clone()))?;
    let expected = match &mount.host {
        MountHost::Path(p) => Some(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
        MountHost::Workspace => None,
    };
    if share.mode == MountMode::Overlay {
        let overlay =
            Overlay::open_upper(Path::new(&served)).map_err(|source| FsError::Overlay {
                guest: mount.guest.clone(),
                source,
            })?;
        if let Some(expected) = expected
            && expected != overlay.host_dir()
        {
            return Err(FsError::OverlayHostMismatch {
                guest: mount.guest.clone(),
                policy: expected,
                overlay: overlay.host_dir().to_owned(),
            });
        }
        return Ok(Prepared {
            served,
            root,
            guest: mount.guest.clone(),
            origin: overlay.host_dir().to_str().map(str::to_owned),
        });
    }
    // The policy decides with its own mount's mode: an `overlay` mount would be allowed
    // writes, which this share would send to the host.
    if mount.mode == MountMode::Overlay {
        return Err(FsError::OverlayNeedsCopy {
            guest: mount.guest.clone(),
            mode: share.mode,
        });
    }
    if let Some(expected) = expected
        && expected.as_os_str() != root.as_str()
    {
        return Err(FsError::HostMismatch {
            guest: mount.guest.clone(),
            policy: expected,
            share: PathBuf::from(root),
        });
    }
    Ok(Prepared {
        served,
        root,
        guest: mount.guest.clone(),
        origin: None,
    })
}

/// The `PassthroughFs` configuration: the share is the root and nothing outside it is
/// reachable; file handles where the process may use them (see the comment below); no
/// submount announcements (the guest learns nothing of the host's mount layout); no xattrs
/// (no `fchdir` through `/proc/self/fd`, no security labels from the guest); `cache=auto`
/// with 1 s timeouts and no writeback cache, so host and guest see each other's writes at
/// once (close-to-open).
pub fn passthrough_config(root: &str, guest_fd_limit: u64) -> passthrough::Config {
    passthrough::Config {
        root_dir: root.to_owned(),
        cache_policy: CachePolicy::Auto,
        entry_timeout: CACHE_TIMEOUT,
        attr_timeout: CACHE_TIMEOUT,
        writeback: false,
        xattr: false,
        announce_submounts: false,
        // File handles instead of one O_PATH descriptor per inode the guest has seen: a large
        // repository would otherwise exhaust RLIMIT_NOFILE. Handles are made by the gateway
        // from names inside the share, never taken from the guest, and the gateway's Landlock
        // layers confine opens by handle to the share. Without CAP_DAC_READ_SEARCH (not root),
        // or on a filesystem without handles, virtiofsd falls back to descriptors.
        inode_file_handles: InodeFileHandlesMode::Prefer,
        readdirplus: true,
        allow_direct_io: false,
        killpriv_v2: false,
        allow_mmap: false,
        clean_noatime: true,
        guest_fd_limit,
        ..passthrough::Config::default()
    }
}

/// Body of the gateway thread: accepts the one frontend and serves it until it goes away.
fn serve(
    mut listener: Listener,
    device: Arc<Device>,
    ready: &std::sync::mpsc::SyncSender<Result<(), FsError>>,
) {
    let mut daemon = match VhostUserDaemon::new(
        "airlock-fs".to_owned(),
        Arc::clone(&device),
        GuestMemoryAtomic::new(GuestMemoryMmap::new()),
    ) {
        Ok(d) => d,
        Err(e) => {
            let _ = ready.send(Err(FsError::Daemon(e.to_string())));
            return;
        }
    };
    let _ = ready.send(Ok(()));

    tracing::debug!("waiting for the vhost-user frontend");
    match daemon.start(&mut listener) {
        Ok(()) => {
            tracing::debug!("vhost-user frontend connected");
            match daemon.wait() {
                Ok(()) => tracing::debug!("vhost-user frontend disconnected"),
                Err(vhost_user_backend::Error::HandleRequest(
                    vhost::vhost_user::Error::Disconnected
                    | vhost::vhost_user::Error::PartialMessage,
                )) => tracing::debug!("vhost-user frontend disconnected"),
                Err(e) => tracing::warn!(error = %e, "vhost-user connection ended"),
            }
        }
        Err(e) => tracing::warn!(error = %e, "vhost-user accept failed"),
    }
    // Dropping the daemon stops and joins the vring thread; then the workers.
    drop(daemon);
    device.shutdown();
    drop(listener);
}

type Device = FsDevice<GatedFs<PassthroughFs>>;

/// Binds a share to a gateway started with [`FsGateway::start_unbound`].
pub struct Binder {
    device: Arc<Device>,
    span: tracing::Span,
}

impl std::fmt::Debug for Binder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binder")
            .field("bound", &self.device.is_bound())
            .finish()
    }
}

impl Binder {
    /// Checks `share` against the host and `policy`, opens it, and serves it from now on.
    /// `served` is where this process sees the share, if not at its host path (a jail that
    /// mounted it elsewhere; `share.host_dir` is then taken as canonical). The workers start on
    /// a thread spawned here, so they inherit the caller's credentials and Landlock domain:
    /// confine the calling thread first, and pass in `confine` what does that, so the vring
    /// thread (started before) can take on the same domain and serve requests itself.
    pub fn bind(
        self,
        share: Share,
        served: Option<&Path>,
        policy: Arc<Policy>,
        events: Arc<dyn FsEvents>,
        owner_map: Option<OwnerMap>,
        confine: Confine,
    ) -> Result<(), FsError> {
        let prepared = prepare(&share, &policy, served)?;
        self.bind_prepared(
            prepared,
            policy,
            share.mode,
            events,
            owner_map,
            Some(confine),
        )
    }

    fn bind_prepared(
        self,
        prepared: Prepared,
        policy: Arc<Policy>,
        mode: MountMode,
        events: Arc<dyn FsEvents>,
        owner_map: Option<OwnerMap>,
        confine: Option<Confine>,
    ) -> Result<(), FsError> {
        let max_open = u64::from(policy.max_open());
        let quota = (mode != MountMode::Ro).then(|| policy.quota());
        let mut gate = Gate::new(policy, &prepared.guest, mode, Some(prepared.root.as_str()));
        if let Some(origin) = &prepared.origin {
            gate = gate.with_host_alias(origin);
        }
        let span = tracing::info_span!(parent: &self.span, "bind", mount = %prepared.guest);
        let device = self.device;
        let thread = std::thread::Builder::new()
            .name("airlock-fs-bind".to_owned())
            .spawn(move || -> Result<(), FsError> {
                let _enter = span.enter();
                // PassthroughFs::new sets the umask to 0: keep that to this thread and its
                // workers.
                airlock_jail::ns::unshare_fs().map_err(FsError::Unshare)?;
                // What this process may hold for the guest: open files up to the policy's limit
                // (at most half of it), the rest for the inodes the guest knows.
                let budget = sys::guest_fd_budget();
                let max_open = max_open.min(budget / 2).max(1);
                let max_resident = usize::try_from(budget - max_open)
                    .unwrap_or(usize::MAX)
                    .clamp(16, crate::backend::DEFAULT_MAX_RESIDENT);
                tracing::info!(budget, max_open, max_resident, "descriptor budget");
                let mut cfg = passthrough_config(&prepared.served, budget);
                if let Some(map) = &owner_map {
                    map.apply(&mut cfg);
                }
                let fs = PassthroughFs::new(cfg).map_err(|source| FsError::Passthrough {
                    path: PathBuf::from(&prepared.served),
                    source,
                })?;
                let served = PathBuf::from(&prepared.served);
                let fs =
                    GatedFs::new(fs, gate, events, &served).with_limits(max_open, max_resident);
                let fs = match quota {
                    Some(bytes) => fs.with_quota(bytes),
                    None => fs,
                };
                device.bind_confined(fs, confine).map_err(FsError::Device)
            })
            .map_err(FsError::Thread)?;
        thread.join().map_err(|_| FsError::Died)?
    }
}

#[cfg(test)]
mod tests;
