//! Message types exchanged over vsock between host and guest.
//!
//! Two kinds of connection exist:
//! - the **control** connection, opened by the guest to host port [`CONTROL_PORT`] once it is up:
//!   the guest sends [`GuestEvent::Ready`], the host may send [`ControlRequest::Shutdown`];
//! - one **exec** connection per command, opened by the host to guest port [`EXEC_PORT`]: the host
//!   sends [`ExecRequest`] first, then [`ExecControl`] messages and stdin data; the guest answers
//!   with [`ExecEvent`] messages and stdout/stderr data.

use serde::{Deserialize, Serialize};

/// Version of this protocol; both sides refuse a peer with another one.
pub const PROTOCOL_VERSION: u32 = 2;
/// The guest's vsock context id (every sandbox has its own vsock device, so it is constant).
pub const GUEST_CID: u32 = 3;
/// Guest vsock port on which `airlock-guest` accepts exec connections.
pub const EXEC_PORT: u32 = 1024;
/// Host vsock port the guest connects to when it is ready (the control connection).
pub const CONTROL_PORT: u32 = 1025;
/// Host vsock port of the egress gateway; the guest's 127.0.0.1:3128 forwards here.
pub const PROXY_PORT: u32 = 3128;

/// First message of an exec connection: what to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Extra environment variables, applied over the guest's defaults.
    pub env: Vec<(String, String)>,
    /// Working directory; the guest's default when absent.
    pub cwd: Option<String>,
    /// Run under a pseudo-terminal of this size instead of pipes.
    pub tty: Option<WindowSize>,
    /// Guest user to run as (a name from the image's `/etc/passwd`); `None` runs as root.
    pub user: Option<String>,
    /// Set `no_new_privs` before exec (always set when a seccomp filter is applied).
    pub no_new_privs: bool,
    /// Seccomp filter applied to the command and everything it starts.
    pub seccomp: SeccompProfile,
    /// Most processes the command and its descendants may have at once (a pids cgroup).
    pub pids_max: Option<u32>,
    /// When set, Landlock confines the command's writes to these guest directories (and what
    /// lies beneath them); missing ones are skipped. Reads are not restricted.
    #[serde(default)]
    pub landlock_write: Option<Vec<String>>,
    /// A container's root directory in the guest: the command runs in a mount namespace of its
    /// own, chrooted there, with the guest's `/proc`, `/dev` and `/sys` bound in. `cwd`, `user`
    /// and the `PATH` lookup then resolve inside it.
    #[serde(default)]
    pub root: Option<String>,
}

/// The in-guest seccomp profiles (see `airlock-guest`'s `harden.rs` for the lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeccompProfile {
    /// Refuse syscalls a coding agent does not need and that widen the kernel attack surface.
    Default,
    /// `default` plus ptrace, cross-process memory access and raw sockets.
    Strict,
    /// No filter.
    Unconfined,
}

/// Terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// Host → guest messages on an exec connection, after the [`ExecRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExecControl {
    /// The host terminal changed size.
    Resize {
        /// New size.
        size: WindowSize,
    },
    /// Deliver a signal to the command's process group.
    Signal {
        /// Signal number (Linux x86_64 numbering).
        signal: i32,
    },
}

/// Guest → host messages on an exec connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExecEvent {
    /// The command started.
    Started {
        /// Its pid inside the guest.
        pid: u32,
    },
    /// The command could not be started.
    SpawnFailed {
        /// Why, as a class the host maps to an exit status.
        reason: SpawnFailure,
        /// Human-readable detail from the guest (untrusted text).
        message: String,
    },
    /// The command ended; all of its output has been sent before this message.
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// Processes of the command's tree that the guest kernel's OOM killer ended.
        #[serde(default)]
        oom_kills: u32,
        /// Where the guest agent's time went (the guest's word: for display, never trusted).
        #[serde(default)]
        timings: GuestTimings,
    },
}

/// Stages of one exec as the guest agent timed them, in microseconds of the guest's monotonic
/// clock. The host shows them beside its own round trip, so the share of the transport is a
/// difference, not a guess.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestTimings {
    /// From accepting the connection to the request decoded.
    pub request_us: u64,
    /// From the request to the fork: user lookup, cgroup, seccomp and Landlock set-up.
    pub setup_us: u64,
    /// From the fork to the command running: the child's hardening, exec, and the hand-over
    /// of its seccomp listener.
    pub spawn_us: u64,
    /// From the command running to its exit reaped.
    pub run_us: u64,
    /// From its exit to the last of its output sent.
    pub drain_us: u64,
}

/// When the guest reached each stage of its start, in milliseconds since its kernel booted
/// (CLOCK_BOOTTIME), so the host can split the wait for ready into kernel and agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootStages {
    /// The guest agent started as PID 1: the kernel's own boot, device probes included.
    pub agent_start_ms: u64,
    /// Its init was done: file systems, the disk root, cgroups, loopback.
    pub init_done_ms: u64,
}

/// Why a command could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpawnFailure {
    /// The program does not exist in the guest (shell convention: exit 127).
    NotFound,
    /// The program exists but cannot be executed (shell convention: exit 126).
    PermissionDenied,
    /// The request itself was invalid (empty argv, bad cwd, NUL bytes).
    InvalidRequest,
    /// Anything else.
    Other,
}

impl SpawnFailure {
    /// The exit status a shell would give for this failure.
    pub fn exit_code(self) -> i32 {
        match self {
            SpawnFailure::NotFound => 127,
            SpawnFailure::PermissionDenied => 126,
            SpawnFailure::InvalidRequest | SpawnFailure::Other => 125,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExitStatus {
    /// It exited with this code.
    Code {
        /// The exit code (0..=255).
        code: i32,
    },
    /// It was killed by this signal.
    Signal {
        /// The signal number.
        signal: i32,
    },
}

impl ExitStatus {
    /// The status a shell reports: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code { code } => code,
            ExitStatus::Signal { signal } => 128_i32.saturating_add(signal),
        }
    }
}

/// Guest → host messages on the control connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GuestEvent {
    /// The guest agent is up and serving exec connections.
    Ready {
        /// [`PROTOCOL_VERSION`] as the guest knows it.
        protocol: u32,
        /// The guest agent's version.
        agent_version: String,
        /// `uname -r` of the guest kernel.
        kernel_release: String,
        /// Milliseconds since the guest kernel booted (CLOCK_BOOTTIME).
        uptime_ms: u64,
        /// How that time was spent before ready.
        boot: BootStages,
    },
    /// A [`ControlRequest::Mount`] succeeded.
    Mounted {
        /// The request id.
        id: u32,
    },
    /// A process in the guest called exec (from the kernel's proc connector; not authoritative).
    ProcExec {
        /// Its pid.
        pid: u32,
        /// Its parent's pid (0 if it already exited).
        ppid: u32,
        /// Its real uid.
        uid: u32,
        /// Its argv, possibly truncated (see `argv_truncated`).
        argv: Vec<String>,
        /// Whether argv was cut to fit the message.
        argv_truncated: bool,
        /// Its working directory ("" if unknown).
        cwd: String,
    },
    /// The seccomp profile refused a syscall of the workload (answered with EPERM).
    SyscallDenied {
        /// The calling process.
        pid: u32,
        /// The syscall's name.
        syscall: String,
        /// Why the profile refuses it.
        reason: String,
    },
    /// A process in the guest exited.
    ProcExit {
        /// Its pid.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// The guest lost process events (kernel buffer overrun); at least `count` are missing.
    EventsDropped {
        /// Lower bound of lost events.
        count: u64,
    },
    /// Answer to [`ControlRequest::Shutdown`]: every report before this one has been sent; the
    /// guest powers off next. (Braces, not a unit variant: serde ignores unknown fields on an
    /// internally tagged unit variant.)
    Bye {},
    /// A [`ControlRequest::Mount`] failed.
    MountFailed {
        /// The request id.
        id: u32,
        /// Why (untrusted text).
        message: String,
    },
    /// A [`ControlRequest::Configure`] was applied.
    Configured {
        /// The request id.
        id: u32,
    },
    /// A [`ControlRequest::Configure`] failed.
    ConfigureFailed {
        /// The request id.
        id: u32,
        /// Why (untrusted text).
        message: String,
    },
}

/// Host → guest messages on the control connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// Mount a virtio-fs share (the guest answers [`GuestEvent::Mounted`] or
    /// [`GuestEvent::MountFailed`] with the same `id`).
    Mount {
        /// Request id, echoed in the answer.
        id: u32,
        /// virtio-fs tag of the device.
        tag: String,
        /// Absolute mount point in the guest; created if missing.
        path: String,
        /// Mount read-only in the guest too (the host gateway enforces it regardless).
        read_only: bool,
    },
    /// Trust `ca_pem` (added to the system bundle, and named by the usual variables of node,
    /// python, git and curl in every later command) and give every later command `env`
    /// (credential placeholders). Answered by [`GuestEvent::Configured`] or
    /// [`GuestEvent::ConfigureFailed`].
    Configure {
        /// Request id, echoed in the answer.
        id: u32,
        /// PEM certificates; empty for none.
        ca_pem: String,
        /// Variables for every later command (before the command's own).
        env: Vec<(String, String)>,
    },
    /// Sync filesystems and power the guest off. (Braces: see [`GuestEvent::Bye`].)
    Shutdown {},
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_by_type() {
        let json = serde_json::to_string(&ExecEvent::Exited {
            status: ExitStatus::Signal { signal: 9 },
            oom_kills: 1,
            timings: GuestTimings::default(),
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"type":"exited","status":{"type":"signal","signal":9},"oom_kills":1,"timings":{"request_us":0,"setup_us":0,"spawn_us":0,"run_us":0,"drain_us":0}}"#
        );
        // A guest that sends no timings is still understood.
        let old: ExecEvent = serde_json::from_str(
            r#"{"type":"exited","status":{"type":"code","code":0},"oom_kills":0}"#,
        )
        .unwrap();
        assert!(
            matches!(old, ExecEvent::Exited { timings, .. } if timings == GuestTimings::default())
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<ExecControl>(r#"{"type":"signal","signal":2,"x":1}"#);
        assert!(err.is_err());
        // Variants without fields too (found by tests/fuzz_frames.rs).
        let bye = serde_json::from_str::<GuestEvent>(r#"{"type":"bye","x":1}"#);
        assert!(bye.is_err());
        let shutdown = serde_json::from_str::<ControlRequest>(r#"{"type":"shutdown","x":1}"#);
        assert!(shutdown.is_err());
        assert_eq!(
            serde_json::from_str::<GuestEvent>(r#"{"type":"bye"}"#).unwrap(),
            GuestEvent::Bye {}
        );
        assert_eq!(
            serde_json::to_string(&ControlRequest::Shutdown {}).unwrap(),
            r#"{"type":"shutdown"}"#
        );
    }

    #[test]
    fn shell_codes() {
        assert_eq!(ExitStatus::Code { code: 7 }.shell_code(), 7);
        assert_eq!(ExitStatus::Signal { signal: 2 }.shell_code(), 130);
        assert_eq!(
            ExitStatus::Signal { signal: i32::MAX }.shell_code(),
            i32::MAX
        );
        assert_eq!(SpawnFailure::NotFound.exit_code(), 127);
        assert_eq!(SpawnFailure::PermissionDenied.exit_code(), 126);
    }
}
