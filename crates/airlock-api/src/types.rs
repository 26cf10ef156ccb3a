//! The daemon API's wire types: request and response bodies, shared by the server, the CLI
//! client and the OpenAPI document (their schemas are derived from these definitions).
//!
//! Requests reject unknown fields, so a misspelt field is a 400 naming it rather than a silent
//! default.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Body of `POST /v1/sandboxes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandboxRequest {
    /// Guest image (`tiny`, or a name built with `airlock image build`); default: the policy's
    /// `sandbox.image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Policy text (TOML). Give this or `profile`, not both; neither means profile `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Absolute host path naming the policy text: messages cite it and relative host paths in
    /// the policy resolve against its directory. Default: `/api/policy.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_origin: Option<String>,
    /// A shipped policy profile: `default`, `offline`, `claude-code`, `codex`, `gemini`, `aider`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// An agent kit (`claude-code`, `codex`, `gemini`, `aider`) layered over the image, with the
    /// agent's persistent home for the workspace at `/home/agent`. The kit must be installed
    /// (`airlock agent install NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Absolute host directory shared as the policy's workspace mount (required when the policy
    /// has one, as the shipped profiles do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Virtual CPUs (1..=16), overriding `sandbox.cpus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Guest memory in MiB (64..=65536), overriding `sandbox.memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Free-form labels (keys 1..=63 chars of `[A-Za-z0-9._-]`, values up to 255 chars).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Stop the sandbox after this many seconds without API activity and without a running
    /// exec; default: the daemon's `--idle-timeout`; 0 disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// Stop the sandbox this many seconds after it was created; default: the daemon's
    /// `--max-lifetime`; 0 disables. The policy's `sandbox.timeout`, if shorter, wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime_secs: Option<u64>,
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxStatus {
    /// Booting.
    Starting,
    /// Ready for execs.
    Running,
    /// Being torn down.
    Stopping,
    /// Torn down; its audit log remains. `DELETE` forgets it.
    Stopped,
}

impl SandboxStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxStatus::Starting => "starting",
            SandboxStatus::Running => "running",
            SandboxStatus::Stopping => "stopping",
            SandboxStatus::Stopped => "stopped",
        }
    }
}

/// A sandbox as the daemon reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SandboxInfo {
    /// Sandbox id (12 hex digits).
    pub id: String,
    /// Status.
    pub status: SandboxStatus,
    /// Guest image name.
    pub image: String,
    /// Where the policy came from (`profile default`, or the policy origin).
    pub policy: String,
    /// Host directory shared as the workspace, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Labels given at creation.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Last API activity (RFC 3339, UTC).
    pub last_active_at: String,
    /// Idle timeout in seconds (0: none).
    pub idle_timeout_secs: u64,
    /// Maximum lifetime in seconds (0: none).
    pub max_lifetime_secs: u64,
    /// Execs running now.
    pub execs_running: u32,
    /// The sandbox's audit log on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<String>,
    /// Guest kernel release, once running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    /// Whether it was a warm guest claimed from the daemon's pool (else it booted cold).
    #[serde(default)]
    pub pooled: bool,
    /// How long the create took, in milliseconds (claim or boot), once running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    /// Why it stopped, once stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
}

/// Body of `GET /v1/sandboxes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SandboxList {
    /// Every sandbox the daemon knows, oldest first.
    pub sandboxes: Vec<SandboxInfo>,
}

/// A terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminalSize {
    /// Rows (1..=1000).
    pub rows: u16,
    /// Columns (1..=1000).
    pub cols: u16,
}

/// Body of `POST /v1/sandboxes/{id}/exec`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    /// The command and its arguments (non-empty).
    pub argv: Vec<String>,
    /// Environment variables for the command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Absolute working directory in the guest; default: the workspace mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Run under a pseudo-terminal (stdout then carries all terminal output).
    #[serde(default)]
    pub tty: bool,
    /// Initial terminal size with `tty` (default 24x80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<TerminalSize>,
    /// Standard input, base64; it is followed by end-of-input unless `stdin_open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Keep stdin open after `stdin` for `POST .../execs/{exec_id}/stdin`; otherwise the
    /// command sees end-of-input at once (or after `stdin`).
    #[serde(default)]
    pub stdin_open: bool,
}

/// One line of an exec's NDJSON stream: exactly one field is present. The first line carries
/// `exec_id`, the last one `exit` (or `error` if the exec broke).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ExecLine {
    /// The exec's id, for the stdin, signal and resize endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
    /// Which output stream `data` belongs to: `stdout` or `stderr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Output bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// How the command ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExecExit>,
    /// The exec failed on the host side; no `exit` follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// How an exec ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecExit {
    /// The status a shell would report, as `airlock run` exits: the exit code, 128+N for
    /// signal N, 126 cannot execute, 127 not found.
    pub exit_code: i32,
    /// The exit code, when the command exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The signal, when the command was killed by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Processes of its tree that the guest's OOM killer ended.
    #[serde(default)]
    pub oom_kills: u32,
    /// Why the command could not start (`not_found`, `permission_denied`, ...), if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn_error: Option<String>,
    /// The guest's message for `spawn_error` (untrusted text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the exec's time went, when the command ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<ExecStages>,
}

/// Where an exec's time went, in microseconds: the daemon's own clock, and the guest agent's
/// account of its stages (its word, for diagnosis only: nothing is decided on it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecStages {
    /// The daemon: from handing the request to the sandbox to the exit status back.
    pub host_us: u64,
    /// Of that, connecting to the guest's exec port (the vsock handshake).
    pub connect_us: u64,
    /// Guest: from accepting the connection to the request decoded.
    pub guest_request_us: u64,
    /// Guest: from the request to the fork (user lookup, cgroup, seccomp and Landlock set-up).
    pub guest_setup_us: u64,
    /// Guest: from the fork to the command running (the child's hardening and exec).
    pub guest_spawn_us: u64,
    /// Guest: from the command running to its exit reaped.
    pub guest_run_us: u64,
    /// Guest: from its exit to the last of its output sent.
    pub guest_drain_us: u64,
}

/// Body of `POST .../execs/{exec_id}/stdin`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StdinBody {
    /// Bytes for the command's stdin, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Close stdin after `data`.
    #[serde(default)]
    pub eof: bool,
}

/// Body of `POST .../execs/{exec_id}/signal`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    /// Signal number (1..=64) or name (`TERM`, `SIGINT`, ...), delivered to the command's
    /// process group.
    #[schema(value_type = Object, example = json!("TERM"))]
    pub signal: serde_json::Value,
}

/// Body of `GET /v1/sandboxes/{id}/files/stat` and the entries of `files/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileStat {
    /// The path as asked (stat) or the entry's name (list).
    pub path: String,
    /// `file`, `directory`, `symlink`, `fifo`, `socket`, `char_device`, `block_device` or
    /// `other`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits, octal text (`644`).
    pub mode: String,
    /// Owner uid in the guest.
    pub uid: u32,
    /// Owner gid in the guest.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// Body of `GET /v1/sandboxes/{id}/files/list`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileList {
    /// The directory listed.
    pub path: String,
    /// Its entries (without `.` and `..`), sorted by name.
    pub entries: Vec<FileStat>,
}

/// Body of `PUT /v1/sandboxes/{id}/files`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileWritten {
    /// The path written.
    pub path: String,
    /// Bytes written.
    pub size: u64,
}

/// Every error reply: a stable snake_case code and a precise message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `not_found`, `bad_request`, `conflict`, `unauthorized`, `payload_too_large`,
    /// `method_not_allowed`, `boot_failed` or `internal`.
    pub error: String,
    /// What went wrong, naming the request field or resource at fault.
    pub detail: String,
}

/// Query of the `files` endpoints.
#[derive(Debug, Clone, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// Absolute path in the guest.
    pub path: String,
    /// `PUT` only: permission bits to set, octal text (`755`); default: new files get the
    /// workload's umask, existing ones keep theirs.
    #[serde(default)]
    pub mode: Option<String>,
}

/// Query of `GET /v1/sandboxes/{id}/events`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Keep the stream open and send new events until the sandbox ends.
    #[serde(default)]
    pub follow: bool,
}

/// Body of `GET /v1/sandboxes/{id}/changes`: what the workload changed in each writable
/// share.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeList {
    /// The sandbox.
    pub id: String,
    /// One entry per `rw` or `overlay` mount, in policy order (`ro` mounts cannot change).
    pub mounts: Vec<MountChanges>,
}

/// The changes in one share.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MountChanges {
    /// Guest mount point (`/workspace`).
    pub guest: String,
    /// `rw` or `overlay`.
    pub mode: String,
    /// The host directory the share shows (for `overlay`, the one the copy was made from).
    pub host: String,
    /// How the changes were found: `overlay` compares the private copy with its snapshot
    /// (contents, with diffs for text); `audit` lists the paths the filesystem gateway allowed
    /// the guest to modify (an `rw` share writes to the host at once, so there is no copy to
    /// compare).
    pub method: String,
    /// Changed paths, relative to the mount, sorted.
    pub changes: Vec<PathChange>,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PathChange {
    /// Path relative to the mount, `/`-separated.
    pub path: String,
    /// `overlay`: `added`, `modified` or `deleted`. `audit`: the last operation the gateway
    /// allowed on it (`create`, `write`, `setattr`, `mkdir`, `symlink`, `link`, `unlink`,
    /// `rename` for the old name, `rename_to` for the new one).
    pub kind: String,
    /// `overlay` only: a unified diff of a text file (absent for binary or large files and
    /// for directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}
