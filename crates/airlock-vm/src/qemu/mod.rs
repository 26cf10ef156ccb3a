//! QEMU `-M microvm` engine (Debian's `qemu-system-x86`).

pub mod cmdline;

use crate::engine::{BootSpec, Engine, EngineError, Vm};
use airlock_jail::cgroup::EngineGroup;
use airlock_jail::{Confinement, EngineJail, EngineJailSpec, ProcessSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const BINARY: &str = "qemu-system-x86_64";

/// The QEMU engine.
#[derive(Debug, Clone)]
pub struct QemuEngine {
    binary: PathBuf,
}

impl QemuEngine {
    /// Finds `qemu-system-x86_64` (`$AIRLOCK_QEMU` overrides).
    pub fn locate() -> Result<QemuEngine, EngineError> {
        if let Some(p) = std::env::var_os("AIRLOCK_QEMU") {
            return Ok(QemuEngine { binary: p.into() });
        }
        find_in_path(BINARY)
            .map(|binary| QemuEngine { binary })
            .ok_or(EngineError::NotInstalled {
                binary: BINARY,
                package: "qemu-system-x86",
            })
    }

    /// The binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// First line of `--version`.
    pub fn version(&self) -> Result<String, EngineError> {
        let out = std::process::Command::new(&self.binary)
            .arg("--version")
            .output()
            .map_err(|source| EngineError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string())
    }
}

/// First `name` in `$PATH`.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Engine for QemuEngine {
    type Vm = QemuVm;

    fn boot(&self, spec: &BootSpec) -> Result<QemuVm, EngineError> {
        let args = cmdline::args(spec)?;
        let log = std::fs::File::create(&spec.engine_log).map_err(EngineError::Control)?;
        let group = match &spec.host_limits {
            Some((id, limits, required)) => match EngineGroup::create(id, *limits) {
                Ok(g) => Some(Arc::new(g)),
                Err(why) if *required => return Err(EngineError::HostLimits(why)),
                Err(why) => {
                    tracing::warn!(error = %why, "engine runs without host cgroup limits");
                    None
                }
            },
            None => None,
        };
        let jail = jail_spec(spec, &self.binary)
            .map_err(|source| {
                EngineError::Jail(airlock_jail::JailError::Io {
                    path: spec.state_dir.clone(),
                    source,
                })
            })
            .and_then(|j| EngineJail::prepare(&j).map_err(EngineError::Jail))?;
        let mut process = ProcessSpec::new(&self.binary, Confinement::Engine(jail));
        process.args = args.iter().map(Into::into).collect();
        process.stderr = log.into();
        process.cgroup = group.clone();
        let child = airlock_jail::spawn(process).map_err(|e| match e {
            airlock_jail::JailError::Spawn { program, source } => EngineError::Spawn {
                binary: program,
                source,
            },
            e => EngineError::Jail(e),
        })?;
        tracing::debug!(pid = child.id(), ?args, "qemu started");
        Ok(QemuVm { child, group })
    }
}

/// What the engine's jail holds for `spec`: the state dir (read-write), the kernel, initrd and
/// read-only images (read-only); it owns its sockets, console log and writable disks.
fn jail_spec(spec: &BootSpec, binary: &std::path::Path) -> std::io::Result<EngineJailSpec> {
    use std::os::unix::fs::PermissionsExt;
    let state = &spec.state_dir;
    // The jailed uid must reach the files it owns; the state root above stays private.
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o711))?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.console_log)?;
    let mut ro_files = vec![spec.kernel.clone(), spec.initrd.clone()];
    let mut owned = vec![spec.vsock_socket.clone(), spec.console_log.clone()];
    owned.extend(spec.fs_devices.iter().map(|(socket, _)| socket.clone()));
    for d in &spec.drives {
        if d.read_only {
            ro_files.push(d.path.clone());
        } else {
            owned.push(d.path.clone());
        }
    }
    // Anything outside the state dir that the engine must write would escape the jail.
    if let Some(outside) = owned.iter().find(|p| !p.starts_with(state)) {
        return Err(std::io::Error::other(format!(
            "{} is outside the state dir {}",
            outside.display(),
            state.display()
        )));
    }
    Ok(EngineJailSpec {
        root: state.join("jail"),
        rw_dirs: vec![state.clone()],
        ro_files,
        owned,
        kvm: spec.accel == crate::Accel::Kvm,
        binary: binary.to_path_buf(),
    })
}

/// A running QEMU process.
#[derive(Debug)]
pub struct QemuVm {
    child: tokio::process::Child,
    /// The engine's host cgroup, removed when the VM is dropped.
    group: Option<Arc<EngineGroup>>,
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        // kill_on_drop reaches the jail's intermediate; QEMU itself must not rely on its
        // parent-death signal (it could have cleared it).
        self.kill_engine();
    }
}

impl QemuVm {
    /// SIGKILLs QEMU itself (the jail's PID 1), not only the intermediate that waits for it.
    fn kill_engine(&self) {
        let (Some(spawned), Some(engine)) = (self.child.id(), self.pid()) else {
            return;
        };
        if engine != spawned
            && let Ok(pid) = i32::try_from(engine)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Whether the engine process has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The host cgroup(s) limiting the engine, if any.
    pub fn host_group(&self) -> Option<&EngineGroup> {
        self.group.as_deref()
    }
}

impl Vm for QemuVm {
    fn pid(&self) -> Option<u32> {
        let spawned = self.child.id()?;
        // Jailed, the spawned process is the pid namespace's parent and QEMU its only child.
        let children =
            std::fs::read_to_string(format!("/proc/{spawned}/task/{spawned}/children")).ok();
        Some(
            children
                .and_then(|c| c.split_whitespace().next()?.parse().ok())
                .unwrap_or(spawned),
        )
    }

    async fn wait(&mut self) -> Result<std::process::ExitStatus, EngineError> {
        self.child.wait().await.map_err(EngineError::Control)
    }

    async fn stop(&mut self, grace: Duration) -> Result<(), EngineError> {
        if self
            .child
            .try_wait()
            .map_err(EngineError::Control)?
            .is_some()
        {
            return Ok(());
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.kill_engine();
            self.child.kill().await.map_err(EngineError::Control)?;
        }
        Ok(())
    }
}
