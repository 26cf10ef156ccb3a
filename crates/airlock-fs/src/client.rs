//! The filesystem gateway as the supervisor sees it: one [`FsSlot`] per share, started
//! unbound before the guest boots and bound later ([`FsSlot::bind`]).
//!
//! Binding as root mounts the share into the gateway's jail first, through `airlock __gateway
//! attach` (entering a mount namespace needs a single-threaded process), then sends the
//! [`FsBind`] line and waits for the gateway's `.bound` marker.

use crate::process::{FsBind, FsSpec, bound_marker, ready_marker};
use airlock_jail::gateway::{GatewayError, GatewayProcess, airlock_binary};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a filesystem gateway could not be started or bound.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// Its directories could not be made.
    #[error("preparing {}", path.display())]
    Prepare {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The gateway process failed; `log` holds the last lines of its log.
    #[error("{}\n{log}", airlock_jail::error_chain(.error))]
    Gateway {
        /// What failed.
        error: GatewayError,
        /// The tail of the gateway's log (escaped).
        log: String,
    },
    /// It is bound already.
    #[error("this gateway is already bound")]
    AlreadyBound,
    /// Its process is gone.
    #[error("the fs gateway has exited")]
    Exited,
    /// The share cannot be resolved.
    #[error("share {}", path.display())]
    Share {
        /// The share's host directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The mount helper could not run or failed.
    #[error("mounting {} into the fs gateway's jail: {why}", dir.display())]
    Attach {
        /// The host directory.
        dir: PathBuf,
        /// What the helper said, or why it could not run.
        why: String,
    },
}

/// One filesystem gateway as the supervisor sees it: started unbound, bound later.
pub struct FsSlot {
    process: GatewayProcess,
    socket: PathBuf,
    log: PathBuf,
    bound: bool,
}

impl FsSlot {
    /// Starts the gateway for slot `index` of the sandbox whose state dir is `state`, and
    /// waits until it listens. `on_line` gets its event lines.
    pub async fn start(
        state: &Path,
        index: usize,
        on_line: impl Fn(&[u8]) + Send + 'static,
    ) -> Result<FsSlot, SlotError> {
        let dir = state.join(format!("fs{index}"));
        let jail_root = state.join(format!("fs{index}.jail"));
        let prepare = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SlotError::Prepare { path, source }
        };
        for d in [&dir, &jail_root] {
            std::fs::create_dir(d).map_err(prepare(d))?;
        }
        // The engine's uid must reach the socket inside.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .map_err(prepare(&dir))?;
        let socket = dir.join("sock");
        let log = state.join(format!("fs{index}.log"));
        let spec = FsSpec {
            socket: socket.clone(),
            jail_root,
        };
        let failed = |log: &Path| {
            let log = log.to_path_buf();
            move |error| SlotError::Gateway {
                error,
                log: airlock_audit::tail_lines(&log, 20),
            }
        };
        let mut process = GatewayProcess::spawn_kept("fs", &spec, None, &log, on_line)
            .await
            .map_err(failed(&log))?;
        process
            .wait_for(&ready_marker(&socket), Duration::from_secs(10))
            .await
            .map_err(failed(&log))?;
        Ok(FsSlot {
            process,
            socket,
            log,
            bound: false,
        })
    }

    /// The vhost-user socket the engine connects to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The gateway's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether a share is bound.
    pub fn is_bound(&self) -> bool {
        self.bound
    }

    /// Binds `bind`: as root, mounts the share into the gateway's jail first; then sends the
    /// binding and waits until the gateway serves it.
    pub async fn bind(&mut self, bind: &FsBind) -> Result<(), SlotError> {
        if self.bound {
            return Err(SlotError::AlreadyBound);
        }
        let pid = self.process.pid().ok_or(SlotError::Exited)?;
        let attachments = bind.attachments().map_err(|source| SlotError::Share {
            path: bind.host_dir.clone(),
            source,
        })?;
        let mut bind = bind.clone();
        // The gateway cannot resolve the host path itself: send it canonical.
        if let Some(last) = attachments.last() {
            bind.host_dir.clone_from(&last.source);
        }
        if nix::unistd::geteuid().is_root() {
            for a in &attachments {
                attach(pid, &a.target, &a.source, a.read_only).await?;
            }
        }
        let log = self.log.clone();
        let failed = move |error| SlotError::Gateway {
            error,
            log: airlock_audit::tail_lines(&log, 20),
        };
        self.process.send_line(&bind).await.map_err(&failed)?;
        self.process
            .wait_for(&bound_marker(&self.socket), Duration::from_secs(10))
            .await
            .map_err(&failed)?;
        self.bound = true;
        Ok(())
    }

    /// Stops the gateway; see [`GatewayProcess::stop`].
    pub async fn stop(self, grace: Duration) {
        self.process.stop(grace).await;
    }
}

/// Mounts `source` (read-only if asked) on `target` inside the mount namespace of process
/// `pid`, through `airlock __gateway attach`. Gives up after 10 s.
async fn attach(pid: u32, target: &Path, source: &Path, read_only: bool) -> Result<(), SlotError> {
    let failed = |why: String| SlotError::Attach {
        dir: source.to_path_buf(),
        why,
    };
    let binary = airlock_binary().map_err(|e| failed(e.to_string()))?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(["__gateway", "attach", &pid.to_string()])
        .arg(target)
        .arg(source)
        .arg(if read_only { "ro" } else { "rw" })
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(10), cmd.output())
        .await
        .map_err(|_| failed("timed out".into()))?
        .map_err(|e| failed(format!("starting the share attach helper: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}
