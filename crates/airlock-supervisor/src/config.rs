//! What a sandbox is made from: its [`SandboxConfig`], the [`Machine`] it boots, the
//! [`Images`] it boots from, and the start-up [`StartTimings`] it reports.

use crate::audit::{AuditConfig, Recorder};
use airlock_image::{Cache, ImageError, kernel, tiny};
use airlock_vm::{Accel, AccelChoice};
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to size and keep a sandbox.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Size of the writable layer (the sandbox disk) in bytes.
    pub disk_bytes: u64,
    /// Refuse to boot when the host cannot put the engine under cgroup limits.
    pub require_host_limits: bool,
    /// Keep the state dir (console log, sockets) after shutdown.
    pub keep: bool,
    /// How long to wait for the guest agent.
    pub boot_timeout: Duration,
    /// Accelerator choice.
    pub accel: AccelChoice,
    /// Audit log; `None` records nothing (benchmarks only).
    pub audit: Option<AuditConfig>,
    /// What to note in `sandbox.start` (policy origin, image).
    pub description: String,
    /// The policy the gateways enforce (with the workspace bound).
    pub policy: Arc<airlock_policy::Policy>,
    /// The sandbox id to use; a random one when `None`.
    pub id: Option<String>,
    /// Directories shared through the fs gateway, one device each.
    pub shares: Vec<airlock_fs::Share>,
    /// Filesystem devices booted beyond `shares`, for directories shared later
    /// ([`Sandbox::add_share`](crate::Sandbox::add_share)).
    pub spare_shares: usize,
    /// How the egress gateway resolves names.
    pub resolver: Arc<dyn airlock_net::Resolver>,
    /// Ports on which a CONNECT must carry a TLS ClientHello whose SNI names the CONNECT host.
    pub tls_ports: Vec<u16>,
    /// TLS termination and credentials for the egress gateway, and the CA bundle and
    /// placeholders the guest gets; `None` when the policy asks for neither.
    pub egress_tls: Option<crate::credentials::EgressTls>,
}

/// Guest images resolved for booting.
#[derive(Debug, Clone)]
pub struct Images {
    /// The kernel.
    pub kernel: kernel::Kernel,
    /// The initramfs.
    pub tiny: tiny::TinyImage,
    /// A read-only root image (squashfs) layered under the disk; `None` boots the initramfs
    /// userland.
    pub rootfs: Option<PathBuf>,
    /// An agent kit's layer (squashfs) mounted over the root image.
    pub kit: Option<PathBuf>,
    /// Package layers (squashfs, `sandbox.layers`) mounted over the root image, bottom first.
    pub layers: Vec<PathBuf>,
}

impl Images {
    /// Resolves the kernel and tiny image, building them on first use; `bar` shows progress.
    pub fn resolve(cache: &Cache, bar: &ProgressBar) -> Result<Images, ImageError> {
        let kernel = kernel::ensure(cache, bar)?;
        // Booted only if it is still what was built.
        kernel.verify()?;
        let tiny = tiny::ensure(cache)?;
        Ok(Images {
            kernel,
            tiny,
            rootfs: None,
            kit: None,
            layers: Vec::new(),
        })
    }
}

/// Wall-clock phases of a sandbox start, for `--timings` and the benchmark.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StartTimings {
    /// Starting the vsock backend and the engine process.
    pub engine_start_ms: f64,
    /// From engine start until the guest agent reported ready.
    pub guest_ready_ms: f64,
    /// The guest's own view: kernel boot to agent ready.
    pub guest_uptime_ms: u64,
    /// The guest's view: kernel boot to its agent starting as PID 1.
    pub guest_agent_start_ms: u64,
    /// The guest's view: kernel boot to its agent's init done (file systems, disk root, cgroups).
    pub guest_init_done_ms: u64,
}

/// Where a sandbox's audit events go: empty until a log is opened, which for a warm guest is
/// when it is claimed.
pub type RecorderSlot = Arc<std::sync::OnceLock<Arc<Recorder>>>;

/// How to boot a guest before anything is bound to it: the parts of [`SandboxConfig`] that the
/// machine needs, plus how many shares it can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Size of the writable layer in bytes.
    pub disk_bytes: u64,
    /// Refuse to boot without host cgroup limits.
    pub require_host_limits: bool,
    /// Filesystem devices (one per share it can take later).
    pub fs_slots: usize,
    /// Accelerator.
    pub accel: Accel,
    /// How long to wait for the guest agent.
    pub boot_timeout: Duration,
}

impl SandboxConfig {
    /// The machine this config boots.
    pub fn machine(&self) -> Machine {
        Machine {
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            disk_bytes: self.disk_bytes,
            require_host_limits: self.require_host_limits,
            fs_slots: self.shares.len() + self.spare_shares,
            accel: self.accel.accel,
            boot_timeout: self.boot_timeout,
        }
    }
}
