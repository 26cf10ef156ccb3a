//! The policy file as written: serde types that mirror the TOML one to one.
//!
//! Every scalar is an `Option` so that `extends` can tell "not set" from "set to the default";
//! defaults are applied by `validate.rs`. The same types derive [`schemars::JsonSchema`]: the
//! JSON schema is published by `airlock policy schema` and is also what `load.rs` walks to
//! report every unknown key and wrong type with its position. Doc comments become the schema's
//! descriptions, so they are written for policy authors.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An airlock policy file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "airlock policy")]
pub(crate) struct PolicyFile {
    /// Name of a shipped profile to build on (`default`, `offline`, `claude-code`, `codex`).
    /// Lists are appended to the profile's, scalars override it, mounts with the same guest
    /// path replace the profile's mount.
    pub extends: Option<String>,
    /// Resources of the microVM.
    #[serde(default)]
    pub sandbox: SandboxSection,
    /// Directories shared with the guest, and path rules inside them.
    #[serde(default)]
    pub filesystem: FilesystemSection,
    /// Egress rules applied by the host's egress gateway.
    #[serde(default)]
    pub network: NetworkSection,
    /// In-guest hardening of the workload's process tree (defence in depth).
    #[serde(default)]
    pub process: ProcessSection,
    /// Where the audit log goes and what it redacts.
    #[serde(default)]
    pub audit: AuditSection,
    /// Live rules over audit events.
    #[serde(default)]
    pub monitor: MonitorSection,
}

/// `[sandbox]`: resources of the microVM.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SandboxSection {
    /// Guest image name, e.g. `tiny` or `debian`. Default `tiny`.
    pub image: Option<String>,
    /// Package layers mounted over a Debian image, built on first use: `docker` (a private
    /// Docker engine, started at boot). Default: none.
    pub layers: Option<Vec<String>>,
    /// Virtual CPUs, at least 1. Default 1.
    pub cpus: Option<u32>,
    /// Guest memory as a size string: `512M`, `512MiB`, `2G`, `2GiB` (binary units) or `500MB`
    /// (decimal units). Default `512MiB`.
    pub memory: Option<String>,
    /// Size of the writable layer, a size string like `memory`. Default `2GiB`.
    pub disk: Option<String>,
    /// Maximum number of processes in the guest, at least 1. Default 1024.
    pub pids: Option<u32>,
    /// Wall-clock limit as a duration string: `90s`, `30m`, `2h`, `1h30m`. Default: none.
    pub timeout: Option<String>,
    /// Host protections this policy needs; `airlock run` refuses to start on a host that cannot
    /// give one of them: `kvm` (hardware virtualization), `engine-namespaces` (the engine jail's
    /// namespaces, root pivot and own uid), `host-cgroups` (cgroup limits on the engine),
    /// `landlock` (Landlock on the host's helpers) and `seccomp` (seccomp filters on them).
    /// Every run records which of them it has in its first records (`sandbox.layer`).
    /// Default: none.
    pub require: Option<Vec<String>>,
}

/// `[filesystem]`: shared directories and path rules.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilesystemSection {
    /// Directories shared into the guest.
    #[serde(default)]
    pub mounts: Vec<MountEntry>,
    /// Globs, relative to each share's root, that the guest may not read (nor rename or link).
    #[serde(default)]
    pub deny_read: Vec<String>,
    /// Globs, relative to each share's root, that the guest may not create, modify, rename,
    /// link or delete.
    #[serde(default)]
    pub deny_write: Vec<String>,
    /// Extra write-protected globs, added to the built-in protected paths.
    #[serde(default)]
    pub protect: Vec<String>,
    /// Built-in protected entries to drop, named exactly as listed in the documentation.
    #[serde(default)]
    pub unprotect: Vec<String>,
    /// Most files the guest may hold open at once on each share; beyond it, opens fail with
    /// ENFILE and the gateway records `fs.limit` once. Default 8192.
    #[schemars(range(min = 16, max = 1_048_576))]
    pub max_open: Option<u32>,
    /// How much the guest may grow the host filesystem through each writable share (`rw` or
    /// `overlay`) in one run, e.g. `20GiB`: beyond it writes fail with ENOSPC and the gateway
    /// records `fs.limit`. Deleting files gives the space back. Default: `sandbox.disk`.
    pub quota: Option<String>,
}

/// One `[[filesystem.mounts]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MountEntry {
    /// Host directory to share. Relative paths are resolved against the policy file's
    /// directory, and a leading `~/` against `$HOME`. Exclusive with `workspace`.
    pub host: Option<String>,
    /// Share the workspace given to `airlock run --workspace DIR` (default: the current
    /// directory) instead of a fixed `host` path.
    pub workspace: Option<bool>,
    /// Absolute mount point inside the guest, e.g. `/workspace`.
    pub guest: String,
    /// `ro` (read-only), `rw` (writes reach the host) or `overlay` (writes stay in the
    /// sandbox). Default `ro`.
    pub mode: Option<MountMode>,
    /// Apply the protected paths (the built-in ones and `filesystem.protect`) inside this
    /// share. Default true. Set it to false only for a directory that nothing on the host
    /// reads or runs, such as the agent home airlock mounts at the guest user's home; not
    /// allowed with `workspace = true`, nor on a directory that holds another share's host
    /// directory.
    pub protected: Option<bool>,
}

/// How a share is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MountMode {
    /// Read-only: every modification is refused.
    Ro,
    /// Read-write: modifications reach the host directory (subject to path rules).
    Rw,
    /// Copy-on-write: modifications stay in the sandbox and never reach the host directory.
    Overlay,
}

impl MountMode {
    /// The keyword used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ro => "ro",
            Self::Rw => "rw",
            Self::Overlay => "overlay",
        }
    }
}

/// `[network]`: egress rules.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkSection {
    /// Verdict when no `allow` or `deny` entry matches. Default `deny`.
    pub default: Option<DefaultAction>,
    /// `host[:port]` entries to allow: `example.com`, `*.example.com`, `192.0.2.1`,
    /// `[2001:db8::1]:443`, `10.0.0.0/8`. No port means any port.
    #[serde(default)]
    pub allow: Vec<String>,
    /// `host[:port]` entries to deny, same syntax as `allow`. On equal specificity deny wins.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Allow connections to private, loopback, link-local, CGNAT and multicast addresses
    /// after DNS resolution. Default false. Cloud metadata addresses stay refused.
    pub allow_private: Option<bool>,
    /// Rules on HTTP requests (method and path): plain HTTP, and HTTPS to the hosts they name
    /// (the gateway terminates TLS for those).
    #[serde(default)]
    pub http: Vec<HttpRuleEntry>,
    /// Secrets the gateway writes into requests on their way out; the guest only ever sees a
    /// placeholder.
    #[serde(default)]
    pub credentials: Vec<CredentialEntry>,
    /// Install the CA certificates the host trusts beyond the system set (those
    /// `update-ca-certificates` installs from /usr/local/share/ca-certificates, and
    /// `SSL_CERT_FILE`) in the guest, and trust them upstream. Default false.
    pub trust_host_ca: Option<bool>,
    /// More CA certificate files (PEM) to trust in the guest and upstream. Relative paths are
    /// resolved against the policy file's directory.
    #[serde(default)]
    pub extra_ca: Vec<String>,
    /// `host[:port]` patterns never terminated, even when an HTTP rule names them (for
    /// certificate-pinning clients). A credential's host may not be listed.
    #[serde(default)]
    pub passthrough: Vec<String>,
}

/// One `[[network.credentials]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialEntry {
    /// Name in audit records: letters, digits, `-` and `_`.
    pub name: String,
    /// Exact `host[:port]` (no wildcards); port 443 when absent.
    pub host: String,
    /// The only header the value is written into, e.g. `x-api-key` or `authorization`.
    pub header: String,
    /// The header's value, with `{}` for the secret or `{base64}` for its base64. Default `{}`.
    pub format: Option<String>,
    /// `env:NAME`, `file:PATH` or `command:ARGV...` (run on the host; output cached for `ttl`).
    pub source: String,
    /// Guest environment variable that holds the placeholder.
    pub guest_env: Option<String>,
    /// How long a `command:` or `file:` value is used before it is read again, e.g. `5m`.
    /// Default 5m for `command:`, 1m for `file:`.
    pub ttl: Option<String>,
}

/// `network.default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DefaultAction {
    /// Connections not matched by any entry are allowed.
    Allow,
    /// Connections not matched by any entry are refused.
    Deny,
}

/// One `[[network.http]]` rule.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpRuleEntry {
    /// `host[:port]` the rule applies to, same syntax as `network.allow`.
    pub host: String,
    /// HTTP methods the rule applies to, e.g. `["GET", "HEAD"]`. Empty or absent: any method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Glob on the decoded URL path, starting with `/`, e.g. `/v1/**`. Absent: any path.
    pub path: Option<String>,
    /// `allow` or `deny`.
    pub action: DefaultAction,
}

/// `[process]`: in-guest hardening.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProcessSection {
    /// Guest user that runs the workload. Default `agent`.
    pub user: Option<String>,
    /// Seccomp filter for the workload. Default `default`.
    pub seccomp: Option<SeccompProfile>,
    /// Set `no_new_privs` on the workload. Default true; `false` requires
    /// `seccomp = "unconfined"`.
    pub no_new_privs: Option<bool>,
}

/// Seccomp filter applied in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeccompProfile {
    /// Refuses syscalls that a coding agent does not need (kernel modules, mounts, bpf, ...).
    Default,
    /// `default` plus refusing namespace creation, ptrace and other debugging interfaces.
    Strict,
    /// No filter.
    Unconfined,
}

impl SeccompProfile {
    /// The keyword used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Strict => "strict",
            Self::Unconfined => "unconfined",
        }
    }
}

/// `[audit]`: the audit log.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditSection {
    /// Audit log file. Relative paths are resolved against the policy file's directory.
    /// Default: `audit.jsonl` in the sandbox state directory.
    pub path: Option<String>,
    /// Regular expressions (Rust `regex` syntax); matching text in recorded strings is
    /// replaced by `[REDACTED]`.
    #[serde(default)]
    pub redact: Vec<String>,
    /// Environment variable names whose values are replaced by `[REDACTED]` wherever they
    /// appear in recorded strings.
    #[serde(default)]
    pub redact_env: Vec<String>,
    /// Reports from the guest (process starts and exits, seccomp refusals) recorded per
    /// second, with bursts of five times as many; beyond it they are counted in an
    /// `audit.dropped` record instead. Host records are never limited. Default 2000.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub guest_rate: Option<u32>,
}

/// `[monitor]`: live rules.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MonitorSection {
    /// Rules checked against every audit event; all present match fields must match.
    #[serde(default)]
    pub rules: Vec<MonitorRuleEntry>,
}

/// One `[[monitor.rules]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MonitorRuleEntry {
    /// Glob on the dotted event kind, e.g. `net.*` or `fs.rename`.
    pub kind: Option<String>,
    /// Event decision to match.
    pub decision: Option<EventDecision>,
    /// Glob on the event's path, e.g. `**/.env`.
    pub path: Option<String>,
    /// Host pattern on the event's host, same syntax as `network.allow` without a port.
    pub host: Option<String>,
    /// What to do on a match.
    pub action: MonitorAction,
}

/// The decision recorded in an audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventDecision {
    /// The operation was allowed.
    Allow,
    /// The operation was refused by policy.
    Deny,
    /// The operation failed.
    Error,
}

impl EventDecision {
    /// The keyword used in policy files and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Error => "error",
        }
    }
}

/// What a monitor rule does on a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MonitorAction {
    /// Record an alert event and show it in `airlock events`.
    Alert,
    /// Pause the sandbox until an operator resumes or kills it.
    Pause,
    /// Stop the sandbox.
    Kill,
}

impl MonitorAction {
    /// The keyword used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Pause => "pause",
            Self::Kill => "kill",
        }
    }
}
