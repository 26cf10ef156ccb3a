//! A pod's VM and its containers. The first container of a shim (a lone container, or the
//! pod's pause container) boots the VM under the policy the node admin approved; each container
//! then brings its root filesystem, mounted on the host by the shim and shared into the VM
//! through one of the filesystem gateways the VM was booted with.

use crate::config::ShimConfig;
use crate::process::Proc;
use crate::spec::{ContainerSpec, ProcessSpec, Role};
use airlock_policy::Policy;
use airlock_proto::ExecRequest;
use airlock_supervisor::launch::{self, LaunchOptions};
use airlock_supervisor::{Executor, Images, Notifier, Sandbox};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where container roots appear in the guest (`<GUEST_ROOTS>/<container id>`).
pub const GUEST_ROOTS: &str = "/run/airlock/containers";

/// Why a pod or container could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The admin's configuration refused the pod's choice.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The policy, images or launch checks failed.
    #[error(transparent)]
    Launch(#[from] launch::LaunchError),
    /// The kernel or initramfs could not be resolved.
    #[error("guest images: {0}")]
    Images(#[from] airlock_image::ImageError),
    /// The sandbox failed to boot or to take the container's root.
    #[error(transparent)]
    Sandbox(#[from] Box<airlock_supervisor::SandboxError>),
    /// The policy with the container's root added is invalid.
    #[error("{0}")]
    Policy(String),
    /// A container id containerd gave cannot name a guest path.
    #[error("container id {0:?}: only letters, digits, `_`, `-` and `.` are allowed")]
    BadId(String),
}

/// One container in the pod's VM.
pub struct Container {
    /// Its bundle directory on the host.
    pub bundle: PathBuf,
    /// Its root on the host, when the shim mounted it there (unmounted at delete).
    pub mounted_root: Option<PathBuf>,
    /// Its processes: the init process under `""`, execs under their ids.
    pub procs: BTreeMap<String, Proc>,
    /// The request template for execs (policy, root, limits).
    pub template: ExecRequest,
}

/// The VM of one pod (or lone container) and what runs in it.
pub struct Pod {
    /// The VM; `None` once stopped.
    sandbox: Option<Sandbox>,
    /// A lone container (`ctr run`), not a pod: its VM stops when its init process ends.
    pub alone: bool,
    /// Runs commands without holding the pod.
    pub executor: Executor,
    policy: std::sync::Arc<Policy>,
    /// Host pid of the VM engine: the pid containerd sees for every task of the pod.
    pub engine_pid: u32,
    /// Containers by id.
    pub containers: BTreeMap<String, Container>,
    /// The audit log of the pod.
    pub audit_log: Option<PathBuf>,
    /// Held so the image is not collected while it boots.
    _image: Option<airlock_image::debian::OpenedImage>,
}

/// Checks a container id before it names a guest path.
pub fn check_id(id: &str) -> Result<(), PodError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(PodError::BadId(id.to_string()))
    }
}

impl Pod {
    /// Boots the VM for `spec`'s pod under the policy the admin approved for it.
    pub async fn boot(
        config: &ShimConfig,
        namespace: &str,
        id: &str,
        spec: &ContainerSpec,
    ) -> Result<Pod, PodError> {
        let (profile, choice) = config.policy_for(spec.profile.as_deref())?;
        let options = LaunchOptions {
            policy: choice,
            workspace: None,
            image: None,
            cpus: spec.cpus.map(|c| c.clamp(1, 16)),
            memory_mib: spec
                .memory_mib
                .map(|m| m.clamp(64, 65536))
                .or(config.memory_mib),
            keep: false,
            env: Vec::new(),
            notify: Notifier::new(|line| tracing::info!("{line}")),
            kit: None,
        };
        let base = tokio::task::spawn_blocking(|| {
            let cache = airlock_image::Cache::from_env()?;
            Images::resolve(&cache, &indicatif::ProgressBar::hidden())
        })
        .await
        .map_err(|e| PodError::Policy(format!("resolving guest images: {e}")))??;
        let mut launch = launch::prepare(&options, &base).await?;
        launch.config.spare_shares = match spec.role {
            Role::Alone => 1,
            Role::PodSandbox | Role::PodMember { .. } => config.max_containers,
        };
        if let Some(audit) = launch.config.audit.as_mut() {
            audit.dir.clone_from(&config.audit_dir);
        }
        launch.config.description = format!(
            "containerd {} {id} (namespace {namespace}), profile {profile}; {}",
            match spec.role {
                Role::Alone => "container",
                _ => "pod",
            },
            launch.config.description
        );
        let audit_log = launch::audit_log_path(&launch.config, &launch.id);
        let sandbox = Sandbox::start(&launch.config, &launch.images)
            .await
            .map_err(Box::new)?;
        Ok(Pod {
            executor: sandbox.executor(),
            engine_pid: sandbox.engine_pid().unwrap_or(0),
            sandbox: Some(sandbox),
            alone: spec.role == Role::Alone,
            policy: launch.policy,
            containers: BTreeMap::new(),
            audit_log,
            _image: launch.image,
        })
    }

    /// Shares `root` (the container's root on the host) into the VM and adds the container
    /// with its init process.
    pub async fn add_container(
        &mut self,
        id: &str,
        bundle: &Path,
        root: &Path,
        mounted_root: Option<PathBuf>,
        spec: &ContainerSpec,
        stdio: crate::process::Stdio,
    ) -> Result<(), PodError> {
        check_id(id)?;
        let guest = format!("{GUEST_ROOTS}/{id}");
        let host = std::fs::canonicalize(root)
            .map_err(|e| PodError::Policy(format!("container root {}: {e}", root.display())))?;
        let policy = with_root(&self.policy, &host, &guest)?;
        let share = airlock_fs::Share {
            host_dir: host,
            guest_path: guest.clone(),
            mode: airlock_policy::MountMode::Rw,
        };
        self.sandbox
            .as_mut()
            .ok_or_else(|| PodError::Policy("the pod's VM has stopped".into()))?
            .add_share(&policy, &share)
            .await
            .map_err(Box::new)?;
        let template = template(&self.policy, &guest, spec.pids);
        let init = Proc::new(request(&template, &spec.process), stdio);
        self.containers.insert(
            id.to_string(),
            Container {
                bundle: bundle.to_path_buf(),
                mounted_root,
                procs: BTreeMap::from([(String::new(), init)]),
                template,
            },
        );
        Ok(())
    }

    /// Live figures of the VM.
    pub fn stats(&self) -> Option<airlock_supervisor::Stats> {
        self.sandbox.as_ref().and_then(Sandbox::stats)
    }

    /// Stops the VM and everything it started and seals the audit log; the containers' state
    /// stays for `State`, `Wait` and `Delete`.
    pub async fn stop_vm(&mut self, reason: &str) {
        if let Some(sandbox) = self.sandbox.take()
            && let Err(e) = sandbox.shutdown(reason).await
        {
            tracing::warn!("stopping the pod's sandbox: {e:#}");
        }
    }

    /// Stops the VM (if still running) and drops the pod.
    pub async fn shutdown(mut self, reason: &str) {
        self.stop_vm(reason).await;
    }
}

/// The pod's policy with one more mount: the container's root, read-write, without the
/// protected paths (they guard a user's project, not an image's files).
fn with_root(policy: &Policy, host: &Path, guest: &str) -> Result<Policy, PodError> {
    let source = policy.source();
    let host = host
        .to_str()
        .ok_or_else(|| PodError::Policy(format!("{} is not UTF-8", host.display())))?;
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let text = format!(
        "{}\n\n# Added by the containerd shim: this container's root.\n[[filesystem.mounts]]\nhost = {}\nguest = {}\nmode = \"rw\"\nprotected = false\n",
        source.text,
        quote(host),
        quote(guest)
    );
    airlock_policy::load_str(&text, &source.origin).map_err(|e| {
        PodError::Policy(format!(
            "the pod's policy cannot take the container's root: {}",
            launch::policy_errors(&e)
        ))
    })
}

/// What every process of a container runs with: the policy's hardening, its root and limits.
fn template(policy: &Policy, guest_root: &str, pids: Option<u32>) -> ExecRequest {
    let mut t = launch::exec_request(policy, Vec::new(), Vec::new(), None, None);
    t.root = Some(guest_root.to_string());
    // Landlock paths are guest paths outside the container's root; the VM is the boundary.
    t.landlock_write = None;
    t.pids_max = match (t.pids_max, pids) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    t
}

/// The request for one process from the container's template.
pub fn request(template: &ExecRequest, process: &ProcessSpec) -> ExecRequest {
    ExecRequest {
        argv: process.args.clone(),
        env: process.env.clone(),
        cwd: Some(process.cwd.clone()),
        tty: process.tty,
        user: Some(process.user.clone()),
        ..template.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_cannot_name_a_guest_path_are_refused() {
        for good in ["c1", "a.b-c_d", "0123456789abcdef"] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn container_roots_are_added_to_the_policy_as_unprotected_rw_mounts() {
        let policy = airlock_policy::load_profile("container").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = with_root(&policy, dir.path(), "/run/airlock/containers/c1").unwrap();
        let m = p.mounts().first().unwrap();
        assert_eq!(m.guest, "/run/airlock/containers/c1");
        assert_eq!(m.mode, airlock_policy::MountMode::Rw);
        assert!(!m.protected);
        assert!(
            p.decide_fs(
                "/run/airlock/containers/c1",
                airlock_policy::FsOp::Write,
                ".git/config"
            )
            .is_allowed()
        );
        // The pod's sizes and process hardening stay as they were.
        assert_eq!(p.sandbox().image, policy.sandbox().image);
        assert_eq!(p.process().seccomp, policy.process().seccomp);
    }

    #[test]
    fn processes_run_in_the_container_root_with_the_policys_hardening() {
        let policy = airlock_policy::load_profile("container").unwrap();
        let t = template(&policy, "/run/airlock/containers/c1", Some(10));
        assert_eq!(t.root.as_deref(), Some("/run/airlock/containers/c1"));
        assert_eq!(t.landlock_write, None);
        assert_eq!(t.pids_max, Some(10));
        let r = request(
            &t,
            &ProcessSpec {
                args: vec!["sh".into()],
                env: vec![("A".into(), "1".into())],
                cwd: "/srv".into(),
                tty: None,
                user: "0:0".into(),
            },
        );
        assert_eq!(r.argv, ["sh"]);
        assert_eq!(r.cwd.as_deref(), Some("/srv"));
        assert_eq!(r.user.as_deref(), Some("0:0"));
        assert_eq!(r.seccomp, t.seccomp);
        assert_eq!(r.root, t.root);
    }
}
