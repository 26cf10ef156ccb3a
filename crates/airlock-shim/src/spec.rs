//! What the shim takes from an OCI bundle's `config.json` (and from an exec's process spec):
//! the process to run, the pod it belongs to, the profile it asks for and its resources.
//! Everything else in the spec (namespaces, capabilities, mounts, hooks) describes a runc
//! container; inside airlock's VM it has no meaning and is ignored, as the docs say.

use airlock_proto::WindowSize;
use oci_spec::runtime::{Process, Spec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// CRI's annotation naming a container's role: `sandbox` (the pod's pause container) or
/// `container`.
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// CRI's annotation naming the pod sandbox a container belongs to.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// The annotation a pod picks an admin-approved airlock profile with.
pub const PROFILE: &str = "io.airlock.profile";

/// Why a spec was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// `config.json` could not be read or parsed.
    #[error("{}: {source}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// An exec's process spec is not valid JSON of an OCI process.
    #[error("exec process spec: {0}")]
    Process(#[source] serde_json::Error),
    /// A field holds something the shim cannot run.
    #[error("{field}: {why}")]
    Invalid {
        /// The spec field, dotted (`process.args`).
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

fn invalid(field: &'static str, why: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field,
        why: why.into(),
    }
}

/// A process to run in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Program and arguments.
    pub args: Vec<String>,
    /// `NAME=value` entries, split.
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the container root.
    pub cwd: String,
    /// Run under a terminal of this size.
    pub tty: Option<WindowSize>,
    /// `uid:gid`, resolved in the guest.
    pub user: String,
}

/// A container's role in a pod (from CRI's annotations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not part of a pod (`ctr run`): a VM of its own.
    Alone,
    /// The pod's sandbox (pause) container: it starts the pod's VM.
    PodSandbox,
    /// An application container of pod `pod`: it joins that pod's VM.
    PodMember {
        /// The pod sandbox's id.
        pod: String,
    },
}

/// What the shim uses of a container's bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The init process.
    pub process: ProcessSpec,
    /// Its role in a pod.
    pub role: Role,
    /// The airlock profile asked for by annotation (`None`: the node's default).
    pub profile: Option<String>,
    /// vCPUs from the CPU quota (rounded up).
    pub cpus: Option<u32>,
    /// Memory limit in MiB (rounded up).
    pub memory_mib: Option<u64>,
    /// Process limit.
    pub pids: Option<u32>,
    /// Root path from the spec, for bundles that bring their root as a directory (no mounts).
    pub root: PathBuf,
}

impl ContainerSpec {
    /// Reads `<bundle>/config.json`.
    pub fn read(bundle: &Path) -> Result<ContainerSpec, SpecError> {
        let path = bundle.join("config.json");
        let spec = Spec::load(&path).map_err(|source| SpecError::Load { path, source })?;
        ContainerSpec::from_spec(&spec)
    }

    /// Takes what the shim needs from a parsed spec.
    pub fn from_spec(spec: &Spec) -> Result<ContainerSpec, SpecError> {
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| invalid("process", "missing"))?;
        let annotations: BTreeMap<&str, &str> = spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let role = match annotations.get(CONTAINER_TYPE).copied() {
            None => Role::Alone,
            Some("sandbox") => Role::PodSandbox,
            Some("container") => Role::PodMember {
                pod: annotations
                    .get(SANDBOX_ID)
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| {
                        invalid(
                            "annotations",
                            format!(
                                "{CONTAINER_TYPE} is \"container\" but {SANDBOX_ID} is missing"
                            ),
                        )
                    })?
                    .to_string(),
            },
            Some(other) => {
                return Err(invalid(
                    "annotations",
                    format!("{CONTAINER_TYPE} {other:?} is neither \"sandbox\" nor \"container\""),
                ));
            }
        };
        let profile = annotations
            .get(PROFILE)
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
        let memory_mib = match resources
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
        {
            Some(bytes) if bytes > 0 => Some(u64::try_from(bytes).unwrap_or(0).div_ceil(1 << 20)),
            _ => None,
        };
        let cpus = resources
            .and_then(|r| r.cpu().as_ref())
            .and_then(|c| Some((c.quota()?, c.period()?)))
            .and_then(|(quota, period)| {
                let quota = u64::try_from(quota).ok().filter(|q| *q > 0)?;
                let period = period.max(1);
                u32::try_from(quota.div_ceil(period)).ok()
            });
        let pids = resources
            .and_then(|r| r.pids().as_ref())
            .map(|p| p.limit())
            .filter(|l| *l > 0)
            .map(|l| u32::try_from(l).unwrap_or(u32::MAX));
        Ok(ContainerSpec {
            process: process_spec(process)?,
            role,
            profile,
            cpus,
            memory_mib,
            pids,
            root: spec
                .root()
                .as_ref()
                .map(|r| r.path().clone())
                .unwrap_or_else(|| PathBuf::from("rootfs")),
        })
    }

    /// The pod this container's VM is shared with: the grouping key of shim processes.
    pub fn group(&self, id: &str) -> String {
        match &self.role {
            Role::PodMember { pod } => pod.clone(),
            Role::Alone | Role::PodSandbox => id.to_string(),
        }
    }
}

/// Parses an exec's process spec (the JSON containerd passes in `ExecProcessRequest.spec`).
pub fn exec_process(json: &[u8]) -> Result<ProcessSpec, SpecError> {
    let process: Process = serde_json::from_slice(json).map_err(SpecError::Process)?;
    process_spec(&process)
}

fn process_spec(process: &Process) -> Result<ProcessSpec, SpecError> {
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() || args.first().is_some_and(String::is_empty) {
        return Err(invalid("process.args", "no program to run"));
    }
    let mut env = Vec::new();
    for entry in process.env().iter().flatten() {
        let (k, v) = entry
            .split_once('=')
            .ok_or_else(|| invalid("process.env", format!("{entry:?} is not NAME=value")))?;
        if k.is_empty() {
            return Err(invalid(
                "process.env",
                format!("{entry:?} has an empty name"),
            ));
        }
        env.push((k.to_string(), v.to_string()));
    }
    let cwd = process.cwd().to_string_lossy().into_owned();
    let cwd = if cwd.is_empty() { "/".to_string() } else { cwd };
    if !cwd.starts_with('/') {
        return Err(invalid("process.cwd", format!("{cwd:?} is not absolute")));
    }
    let tty = process.terminal().unwrap_or(false).then(|| {
        let size = process.console_size();
        WindowSize {
            rows: size
                .and_then(|s| u16::try_from(s.height()).ok())
                .filter(|r| *r > 0)
                .unwrap_or(24),
            cols: size
                .and_then(|s| u16::try_from(s.width()).ok())
                .filter(|c| *c > 0)
                .unwrap_or(80),
        }
    });
    let user = process.user();
    Ok(ProcessSpec {
        args,
        env,
        cwd,
        tty,
        user: format!("{}:{}", user.uid(), user.gid()),
    })
}

#[cfg(test)]
mod tests;
