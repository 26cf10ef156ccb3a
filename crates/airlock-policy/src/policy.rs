//! The validated policy and its parts, as built by `validate.rs` and read by the supervisor,
//! the gateways and the guest hardening. Decisions on requests live in `decide.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::GlobMatcher;

use crate::error::{ErrorKind, Location, PolicyError, PolicyErrors};
use crate::host::{Endpoint, Target};
use crate::path_set::PathRules;
use crate::reserved::{HostFile, Reserved, ReservedRule};
use crate::schema::{EventDecision, MonitorAction, MountMode, SeccompProfile};
use crate::validation_error::ValidationError;

/// A validated policy. Built only by the loaders; every query on it is pure.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) source: PolicySource,
    pub(crate) sandbox: SandboxLimits,
    pub(crate) mounts: Vec<Mount>,
    /// Built-in (minus `unprotect`) and `protect` entries; applied in every mount with
    /// `protected = true`.
    pub(crate) protected: PathRules,
    pub(crate) deny_write: PathRules,
    pub(crate) deny_read: PathRules,
    pub(crate) network: NetworkRules,
    pub(crate) process: ProcessPolicy,
    pub(crate) audit: AuditPolicy,
    pub(crate) monitor: Vec<MonitorRule>,
    pub(crate) unprotected: Vec<String>,
    pub(crate) max_open: u32,
    pub(crate) quota: u64,
    /// airlock's own files inside shares (see `reserved.rs`); decided before any rule.
    pub(crate) reserved: Vec<ReservedRule>,
}

/// What a policy was loaded from, so another process (a jailed gateway) can load the very same
/// policy: the text, the origin its relative paths and `extends` resolve against, and the bound
/// workspace. It crosses to the gateway processes as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    /// The policy text.
    pub text: String,
    /// The file it came from (or `profiles/<name>.toml`).
    pub origin: PathBuf,
    /// The workspace bound with [`Policy::with_workspace`].
    pub workspace: Option<PathBuf>,
    /// The agent home added with [`Policy::with_home`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<PathBuf>,
    /// airlock's own files inside shares, added with [`Policy::with_reserved`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<Reserved>,
}

/// Resources of the microVM, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Guest image name.
    pub image: String,
    /// Package layers over the image, bottom first (names from [`LAYERS`]).
    pub layers: Vec<String>,
    /// Virtual CPUs, at least 1.
    pub cpus: u32,
    /// Guest memory in bytes.
    pub memory_bytes: u64,
    /// Writable layer size in bytes.
    pub disk_bytes: u64,
    /// Maximum number of guest processes, at least 1.
    pub pids: u32,
    /// Wall-clock limit, if any.
    pub timeout: Option<Duration>,
    /// Host protections the run must have (names from [`PROTECTIONS`]).
    pub require: Vec<String>,
}

/// Package layers a policy may name in `sandbox.layers`: the files of `images/layers/`
/// (airlock-image checks that the two lists agree).
pub const LAYERS: &[&str] = &["docker"];

/// Host protections a policy may require in `sandbox.require`.
pub const PROTECTIONS: &[&str] = &[
    "kvm",
    "engine-namespaces",
    "host-cgroups",
    "landlock",
    "seccomp",
];

/// Where a share comes from on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountHost {
    /// The workspace given at run time; not yet bound (see [`Policy::with_workspace`]).
    Workspace,
    /// A canonical, existing host directory.
    Path(PathBuf),
}

/// A directory shared with the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Host side.
    pub host: MountHost,
    /// Normalised absolute guest path; also the name passed to [`Policy::decide_fs`].
    pub guest: String,
    /// How the share is mounted.
    pub mode: MountMode,
    /// Whether this is the workspace mount (even after binding).
    pub workspace: bool,
    /// Whether the protected paths (built-in and `filesystem.protect`) apply inside this share
    /// (`protected`, default true). False only for a directory that nothing on the host reads,
    /// such as an agent home; never for the workspace mount, nor for a mount whose host
    /// directory is or contains the host directory of a mount that keeps them.
    pub protected: bool,
    /// The rule name reported when the mode decides, e.g. `filesystem.mounts[0]`.
    pub(crate) rule: String,
}

/// In-guest hardening, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPolicy {
    /// Guest user that runs the workload.
    pub user: String,
    /// Seccomp filter.
    pub seccomp: SeccompProfile,
    /// Whether `no_new_privs` is set.
    pub no_new_privs: bool,
}

/// Audit log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPolicy {
    /// Log file; `None` means the sandbox state directory's default.
    pub path: Option<PathBuf>,
    /// Regular expressions (validated) whose matches are redacted.
    pub redact: Vec<String>,
    /// Environment variable names whose values are redacted.
    pub redact_env: Vec<String>,
    /// Guest reports recorded per second (bursts of five times as many).
    pub guest_rate: u32,
}

/// A live rule over audit events.
#[derive(Debug, Clone)]
pub struct MonitorRule {
    /// What to do on a match.
    pub action: MonitorAction,
    /// Rule name, e.g. `monitor.rules[0]`.
    pub rule: String,
    pub(crate) kind: Option<GlobMatcher>,
    pub(crate) decision: Option<EventDecision>,
    pub(crate) path: Option<GlobMatcher>,
    pub(crate) host: Option<Endpoint>,
}

/// The fields of an audit event a monitor rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct MonitorEvent<'a> {
    /// Dotted kind, e.g. `net.connect`.
    pub kind: &'a str,
    /// The event's decision.
    pub decision: EventDecision,
    /// The path the event concerns, if any.
    pub path: Option<&'a str>,
    /// The host the event concerns, if any.
    pub host: Option<&'a str>,
    /// The port the event concerns, if any.
    pub port: Option<u16>,
}

impl MonitorRule {
    /// True when every match field present in the rule matches the event. A rule that names
    /// a path (or host) does not match events without one.
    pub fn matches(&self, event: &MonitorEvent<'_>) -> bool {
        if self.kind.as_ref().is_some_and(|k| !k.is_match(event.kind)) {
            return false;
        }
        if self.decision.is_some_and(|d| d != event.decision) {
            return false;
        }
        if let Some(glob) = &self.path
            && !event.path.is_some_and(|p| glob.is_match(p))
        {
            return false;
        }
        if let Some(pattern) = &self.host {
            let target = event.host.and_then(|h| Target::parse(h).ok());
            let port_ok = pattern.port().is_none_or(|p| event.port == Some(p));
            if !(port_ok && target.is_some_and(|t| pattern.host().matches(&t))) {
                return false;
            }
        }
        true
    }
}

/// Network rules in evaluation form.
#[derive(Debug, Clone)]
pub(crate) struct NetworkRules {
    pub default_allow: bool,
    pub rules: Vec<NetRule>,
    pub allow_private: bool,
    pub http: Vec<HttpRule>,
    pub credentials: Vec<Credential>,
    pub trust_host_ca: bool,
    pub extra_ca: Vec<PathBuf>,
    pub passthrough: Vec<Endpoint>,
}

/// One `[[network.credentials]]` entry, validated. Holds where the secret comes from, never
/// the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Name in audit records.
    pub name: String,
    /// The host it is sent to (canonical).
    pub host: Target,
    /// The port it is sent to (443 unless the entry names one).
    pub port: u16,
    /// The header it is written into, lower-case.
    pub header: String,
    /// The header value around the secret: `{}` (the secret) or `{base64}` (its base64).
    pub format: String,
    /// Where the secret comes from.
    pub source: CredentialSource,
    /// Guest environment variable that holds the placeholder.
    pub guest_env: Option<String>,
    /// How long a read value is used (none: read once, for `env:`).
    pub ttl: Option<Duration>,
    /// Rule name for audit records: `network.credentials[0] "anthropic"`.
    pub rule: String,
}

/// Where a credential's secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The host environment variable of the process that starts the sandbox.
    Env(String),
    /// A file on the host (resolved against the policy file's directory); trailing newlines
    /// are dropped.
    File(PathBuf),
    /// A command run on the host (argv, no shell); its standard output, trailing newlines
    /// dropped.
    Command(Vec<String>),
}

impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::Command(argv) => write!(f, "command:{}", argv.join(" ")),
        }
    }
}

/// One `network.allow` or `network.deny` entry.
#[derive(Debug, Clone)]
pub(crate) struct NetRule {
    pub endpoint: Endpoint,
    pub allow: bool,
    pub rule: String,
}

/// One `[[network.http]]` rule.
#[derive(Debug, Clone)]
pub(crate) struct HttpRule {
    pub endpoint: Endpoint,
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    pub path: Option<HttpPath>,
    pub allow: bool,
    pub rule: String,
}

/// A compiled `[[network.http]].path` glob.
#[derive(Debug, Clone)]
pub(crate) struct HttpPath {
    pub matcher: GlobMatcher,
    /// Length of the glob's literal prefix (before the first glob character): the longer, the
    /// more specific.
    pub literal_len: usize,
}

impl Policy {
    /// What this policy was loaded from.
    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    /// The `[sandbox]` limits.
    pub fn sandbox(&self) -> &SandboxLimits {
        &self.sandbox
    }

    /// Shared directories, in policy order.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// In-guest hardening settings.
    pub fn process(&self) -> &ProcessPolicy {
        &self.process
    }

    /// Audit log settings.
    pub fn audit(&self) -> &AuditPolicy {
        &self.audit
    }

    /// Live rules over audit events, in policy order.
    pub fn monitor_rules(&self) -> &[MonitorRule] {
        &self.monitor
    }

    /// Built-in protected entries removed by `filesystem.unprotect`; the supervisor records
    /// them in the audit log at start.
    pub fn unprotected(&self) -> &[String] {
        &self.unprotected
    }

    /// Mounts with `protected = false`, in policy order: inside them no protected path (built-in
    /// or `filesystem.protect`) applies. The supervisor records them in the audit log at start,
    /// like [`unprotected`](Self::unprotected).
    pub fn unprotected_mounts(&self) -> impl Iterator<Item = &Mount> {
        self.mounts.iter().filter(|m| !m.protected)
    }

    /// `[[network.credentials]]`, in policy order.
    pub fn credentials(&self) -> &[Credential] {
        &self.network.credentials
    }

    /// Whether the host's extra CA certificates go into the guest (`network.trust_host_ca`).
    pub fn trust_host_ca(&self) -> bool {
        self.network.trust_host_ca
    }

    /// `network.extra_ca` files, resolved.
    pub fn extra_ca(&self) -> &[PathBuf] {
        &self.network.extra_ca
    }

    /// Whether any `[[network.http]]` rule exists (each terminates TLS to the hosts it names).
    pub fn has_http_rules(&self) -> bool {
        !self.network.http.is_empty()
    }

    /// Whether the gateway terminates TLS for a CONNECT to `host:port`: a credential or an
    /// HTTP rule names it, and no `network.passthrough` entry does.
    pub fn terminates(&self, host: &Target, port: u16) -> bool {
        if self
            .network
            .passthrough
            .iter()
            .any(|e| e.matches(host, port))
        {
            return false;
        }
        self.network
            .credentials
            .iter()
            .any(|c| &c.host == host && c.port == port)
            || self
                .network
                .http
                .iter()
                .any(|r| r.endpoint.matches(host, port))
    }

    /// How many bytes the guest may grow the host filesystem by through each writable share
    /// (`filesystem.quota`, else `sandbox.disk`).
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Most files the guest may hold open at once on each share (`filesystem.max_open`).
    pub fn max_open(&self) -> u32 {
        self.max_open
    }

    /// True when a mount still waits for the workspace directory.
    pub fn needs_workspace(&self) -> bool {
        self.mounts.iter().any(|m| m.host == MountHost::Workspace)
    }

    /// Binds the workspace mount(s) to `dir`, which must be an existing directory; it is
    /// stored canonicalised. Fails closed: a missing directory is an error, not a skipped
    /// mount, and so is a workspace inside (or equal to) the host directory of a mount with
    /// `protected = false`, through which its protected paths would be writable.
    pub fn with_workspace(mut self, dir: &Path) -> Result<Self, PolicyErrors> {
        let canonical = match std::fs::canonicalize(dir) {
            Ok(c) if c.is_dir() => c,
            Ok(c) => {
                return Err(workspace_error(
                    dir,
                    ValidationError::NotADirectory {
                        found: dir.display().to_string(),
                        resolved: c.display().to_string(),
                    },
                ));
            }
            Err(_) => {
                return Err(workspace_error(
                    dir,
                    ValidationError::HostPathMissing {
                        found: dir.display().to_string(),
                        resolved: dir.display().to_string(),
                    },
                ));
            }
        };
        self.source.workspace = Some(canonical.clone());
        for m in &mut self.mounts {
            if m.workspace {
                m.host = MountHost::Path(canonical.clone());
            }
        }
        if let Some((_, error)) = unprotected_overlaps(&self.mounts).into_iter().next() {
            return Err(workspace_error(dir, error));
        }
        Ok(self)
    }
}

impl Policy {
    /// Adds airlock's own files inside shares (found by [`crate::reserve`]): each becomes
    /// read-only or hidden in its share whatever the policy's rules say. Replaces any list
    /// added before.
    pub fn with_reserved(mut self, reserved: Vec<Reserved>) -> Result<Self, PolicyErrors> {
        let mut rules = Vec::with_capacity(reserved.len());
        for r in &reserved {
            let bad = |why: String| {
                PolicyErrors::new(vec![PolicyError {
                    location: Location {
                        file: self.source.origin.display().to_string(),
                        position: None,
                        key: "airlock.reserved".to_owned(),
                    },
                    kind: ErrorKind::Invalid(ValidationError::MountHostsMismatch { why }),
                }])
            };
            if r.mount >= self.mounts.len() {
                return Err(bad(format!(
                    "{} {:?} names mount {} of {}",
                    r.what,
                    r.path,
                    r.mount,
                    self.mounts.len()
                )));
            }
            let rule = crate::reserved::compile(r)
                .map_err(|e| bad(format!("{} {:?}: {e}", r.what, r.path)))?;
            rules.push(rule);
        }
        self.reserved = rules;
        self.source.reserved = reserved;
        Ok(self)
    }

    /// Which of `files` (airlock's own, canonical host paths) lie inside a share of this
    /// policy, for [`Policy::with_reserved`].
    pub fn reserve(&self, files: &[HostFile<'_>]) -> Vec<Reserved> {
        crate::reserved::reserve(
            self.mounts.iter().map(|m| match &m.host {
                MountHost::Path(p) => Some(p.as_path()),
                MountHost::Workspace => None,
            }),
            files,
        )
    }

    /// airlock's own files inside shares, as added with [`Policy::with_reserved`].
    pub fn reserved(&self) -> &[Reserved] {
        &self.source.reserved
    }
}

impl Mount {
    /// The rule name its decisions report, e.g. `filesystem.mounts[0] "/workspace"`.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

/// Where [`Policy::with_home`] mounts an agent home: the `agent` account's home directory.
pub const AGENT_HOME: &str = "/home/agent";
/// The rule name decisions in the agent home report.
pub const AGENT_HOME_RULE: &str = "agent home";

impl Policy {
    /// Adds an agent's persistent home: `dir` (an existing directory, stored canonicalised)
    /// shared read-write at [`AGENT_HOME`] with `protected = false`, since only sandboxes ever
    /// use it. Refused when a mount of the policy is at, above or below that guest path, or
    /// when `dir` is or holds the host directory of a share that keeps its protected paths.
    pub fn with_home(mut self, dir: &Path) -> Result<Self, PolicyErrors> {
        let canonical = match std::fs::canonicalize(dir) {
            Ok(c) if c.is_dir() => c,
            _ => {
                return Err(home_error(
                    dir,
                    ValidationError::HostPathMissing {
                        found: dir.display().to_string(),
                        resolved: dir.display().to_string(),
                    },
                ));
            }
        };
        self.push_home(canonical.clone())
            .map_err(|e| home_error(dir, e))?;
        self.source.home = Some(canonical);
        Ok(self)
    }

    /// Appends the agent home mount for `host` (already canonical).
    pub(crate) fn push_home(&mut self, host: PathBuf) -> Result<(), ValidationError> {
        let nested = |a: &str, b: &str| a == b || Path::new(a).starts_with(b);
        if let Some(m) = self
            .mounts
            .iter()
            .find(|m| nested(&m.guest, AGENT_HOME) || nested(AGENT_HOME, &m.guest))
        {
            return Err(ValidationError::HomeMountConflict {
                found: m.guest.clone(),
                other: m.rule.clone(),
            });
        }
        self.mounts.push(Mount {
            host: MountHost::Path(host),
            guest: AGENT_HOME.to_string(),
            mode: MountMode::Rw,
            workspace: false,
            protected: false,
            rule: AGENT_HOME_RULE.to_string(),
        });
        if let Some((_, error)) = unprotected_overlaps(&self.mounts).into_iter().next() {
            self.mounts.pop();
            return Err(error);
        }
        Ok(())
    }
}

fn home_error(dir: &Path, error: ValidationError) -> PolicyErrors {
    PolicyErrors::new(vec![PolicyError {
        location: Location {
            file: dir.display().to_string(),
            position: None,
            key: "agent home".to_owned(),
        },
        kind: ErrorKind::Invalid(error),
    }])
}

/// Every mount with `protected = false` whose host directory is, or contains, the host
/// directory of a mount that keeps the protected paths: through it the guest could write that
/// share's protected files under other names. Returns the index of the unprotected mount and
/// the error, in mount order. Unbound workspace mounts are skipped (checked when bound).
pub(crate) fn unprotected_overlaps(mounts: &[Mount]) -> Vec<(usize, ValidationError)> {
    let mut found = Vec::new();
    for (i, open) in mounts.iter().enumerate() {
        let MountHost::Path(open_dir) = &open.host else {
            continue;
        };
        if open.protected {
            continue;
        }
        for kept in mounts.iter().filter(|m| m.protected) {
            if let MountHost::Path(kept_dir) = &kept.host
                && kept_dir.starts_with(open_dir)
            {
                found.push((
                    i,
                    ValidationError::UnprotectedMountHoldsShare {
                        found: open_dir.display().to_string(),
                        other: kept.rule.clone(),
                        other_host: kept_dir.display().to_string(),
                    },
                ));
            }
        }
    }
    found
}

fn workspace_error(dir: &Path, error: ValidationError) -> PolicyErrors {
    PolicyErrors::new(vec![PolicyError {
        location: Location {
            file: dir.display().to_string(),
            position: None,
            key: "workspace".to_owned(),
        },
        kind: ErrorKind::Invalid(error),
    }])
}

#[cfg(test)]
#[path = "home_tests.rs"]
mod home_tests;
