//! The engine interface: the only part of airlock that depends on a particular hypervisor.
//!
//! An engine boots a VM from a [`BootSpec`] and hands back a [`Vm`] handle. QEMU microvm
//! ([`crate::qemu`]) is the first engine; pause/resume and snapshot/restore join the interface
//! when the warm pool needs them.

use crate::accel::Accel;
use std::path::PathBuf;
use std::time::Duration;

/// Everything needed to boot one sandbox VM.
#[derive(Debug, Clone)]
pub struct BootSpec {
    /// Uncompressed guest kernel (booted through its PVH note).
    pub kernel: PathBuf,
    /// Initramfs.
    pub initrd: PathBuf,
    /// Extra kernel command line, appended to airlock's defaults.
    pub cmdline: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// The sandbox's state dir: the engine's jail root is made inside it, and it is the only
    /// host directory the engine may write to.
    pub state_dir: PathBuf,
    /// Accelerator.
    pub accel: Accel,
    /// File receiving the serial console.
    pub console_log: PathBuf,
    /// File receiving the engine's own stderr.
    pub engine_log: PathBuf,
    /// vhost-user socket of the vsock backend.
    pub vsock_socket: PathBuf,
    /// vhost-user-fs devices: (socket of the fs gateway, virtio-fs tag).
    pub fs_devices: Vec<(PathBuf, String)>,
    /// virtio-blk drives, found in the guest by their serial.
    pub drives: Vec<Drive>,
    /// Host cgroup limits for the engine: `(sandbox id, limits, required)`. When `required` and
    /// the host cannot apply them, the boot fails instead of running unlimited.
    pub host_limits: Option<(String, airlock_jail::cgroup::Limits, bool)>,
}

/// A raw image attached as a virtio-blk device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    /// The image file.
    pub path: PathBuf,
    /// Attach read-only (the guest cannot write, nor can the engine).
    pub read_only: bool,
    /// The serial the guest finds it by (at most 20 bytes of `[A-Za-z0-9_-]`).
    pub serial: String,
}

/// Why a VM could not be booted or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine binary is not installed.
    #[error("{binary} not found in PATH; install it with: apt-get install {package}")]
    NotInstalled {
        /// Binary name.
        binary: &'static str,
        /// Debian package.
        package: &'static str,
    },
    /// The engine process could not be started.
    #[error("starting {binary}")]
    Spawn {
        /// Binary path.
        binary: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for or signalling the engine failed.
    #[error("controlling the VM process")]
    Control(#[source] std::io::Error),
    /// The engine's jail could not be set up.
    #[error("preparing the engine jail")]
    Jail(#[source] airlock_jail::JailError),
    /// The host cgroup limits the spec requires could not be set up.
    #[error("host cgroup limits")]
    HostLimits(#[source] airlock_jail::cgroup::CgroupError),
    /// The spec is unusable.
    #[error("invalid boot spec: {0}")]
    InvalidSpec(String),
}

/// A hypervisor that can boot sandboxes.
pub trait Engine {
    /// Its VM handle.
    type Vm: Vm;
    /// Starts a VM; returns once the engine process runs (not when the guest is ready).
    fn boot(&self, spec: &BootSpec) -> Result<Self::Vm, EngineError>;
}

/// A running VM.
pub trait Vm {
    /// Host pid of the engine process, while it runs.
    fn pid(&self) -> Option<u32>;
    /// Waits for the engine process to exit.
    fn wait(
        &mut self,
    ) -> impl Future<Output = Result<std::process::ExitStatus, EngineError>> + Send;
    /// Stops the VM: waits up to `grace` for it to exit on its own, then kills it.
    fn stop(&mut self, grace: Duration) -> impl Future<Output = Result<(), EngineError>> + Send;
}
