//! QEMU `-M microvm` engine (Debian's `qemu-system-x86`).

pub mod cmdline;

use crate::child::{contain, jail_engine};
use crate::engine::{BootSpec, Engine, EngineError, Vm};
use std::path::{Path, PathBuf};
use std::process::Stdio;
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
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        contain(&mut cmd);
        jail_engine(&mut cmd);
        let child = cmd.spawn().map_err(|source| EngineError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        tracing::debug!(pid = child.id(), ?args, "qemu started");
        Ok(QemuVm { child })
    }
}

/// A running QEMU process.
#[derive(Debug)]
pub struct QemuVm {
    child: tokio::process::Child,
}

impl Vm for QemuVm {
    fn pid(&self) -> Option<u32> {
        self.child.id()
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
            self.child.kill().await.map_err(EngineError::Control)?;
        }
        Ok(())
    }
}
