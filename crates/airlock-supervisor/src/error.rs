//! Why a sandbox could not be started or used.

use crate::audit::RecorderError;
use airlock_image::ImageError;
use airlock_vm::EngineError;
use airlock_vm::vsock::VsockError;
use std::path::PathBuf;

/// Why a sandbox could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Images could not be resolved.
    #[error("resolving guest images")]
    Image(#[from] ImageError),
    /// The engine failed.
    #[error("VM engine")]
    Engine(#[from] EngineError),
    /// The vsock device failed.
    #[error("vsock device")]
    Vsock(#[from] VsockError),
    /// A filesystem gateway could not start.
    #[error("filesystem gateway for {guest}")]
    Fs {
        /// Guest mount point.
        guest: String,
        /// Cause.
        #[source]
        source: airlock_fs::FsError,
    },
    /// The audit log could not be opened.
    #[error("audit")]
    Audit(#[from] RecorderError),
    /// State dir problems.
    #[error("state dir {path}")]
    State {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The VM process exited before the guest agent reported ready.
    #[error("the VM exited during boot ({status}); {hint}\n{detail}")]
    BootExited {
        /// QEMU's exit status.
        status: String,
        /// What to do.
        hint: &'static str,
        /// QEMU's stderr and the last console lines.
        detail: String,
    },
    /// The guest agent did not report ready in time.
    #[error(
        "the guest did not become ready within {secs} s (set AIRLOCK_BOOT_TIMEOUT to wait longer); last console lines:\n{console}"
    )]
    BootTimeout {
        /// Seconds waited.
        secs: u64,
        /// The last console lines.
        console: String,
    },
    /// A filesystem gateway could not be started or bound.
    #[error("fs gateway for {what}")]
    FsGateway {
        /// The slot (`fs0`) or the share's guest mount point.
        what: String,
        /// Cause.
        #[source]
        source: airlock_fs::client::SlotError,
    },
    /// The egress gateway could not be started.
    #[error("starting the egress gateway")]
    Egress(#[source] airlock_jail::gateway::GatewayError),
    /// The resolver in the config cannot be rebuilt in the gateway process.
    #[error("the resolver cannot be rebuilt in the egress gateway process")]
    Resolver,
    /// A bound sandbox was bound again.
    #[error("the sandbox is already bound")]
    AlreadyBound,
    /// More shares than the guest has filesystem devices.
    #[error("{shares} shares, but the guest has {devices} filesystem devices")]
    TooManyShares {
        /// Shares asked for.
        shares: usize,
        /// Devices the guest booted with.
        devices: usize,
    },
    /// The writable disk could not be made.
    #[error("sandbox disk {path}: {message}")]
    Disk {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The guest refused a request.
    #[error("guest: {0}")]
    Guest(String),
    /// The guest spoke an unexpected protocol.
    #[error("guest protocol: {0}")]
    Protocol(String),
    /// A frame from or to the guest could not be encoded or decoded.
    #[error("guest protocol")]
    Codec(#[from] airlock_proto::CodecError),
    /// I/O with the guest.
    #[error("talking to the guest: {context}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}
