//! One sandbox as the daemon keeps it: its description, its state (starting, running,
//! stopping, stopped), its running execs and its activity, for the API and the janitor.

use super::error::DaemonError;
use super::handle::ExecHandle;
use crate::types::{SandboxInfo, SandboxStatus};
use airlock_audit::Timestamp;
use airlock_image::debian::OpenedImage;
use airlock_policy::Policy;
use airlock_supervisor::Sandbox;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Locks `m`, taking the data of a poisoned lock as it is (a panicked holder leaves nothing
/// half-written that the readers here care about).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a sandbox is, and what it holds in that state.
pub(super) enum EntryState {
    Starting,
    Running {
        sandbox: Arc<Sandbox>,
        /// A built image, held in use while the sandbox runs.
        image: Option<Box<OpenedImage>>,
    },
    Stopping,
    Stopped {
        reason: String,
    },
}

/// One sandbox the daemon manages.
pub struct Entry {
    pub(super) id: String,
    pub(super) created_at: Timestamp,
    pub(super) created: Instant,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) image: String,
    pub(super) origin: String,
    pub(super) workspace: Option<PathBuf>,
    pub(super) cpus: u32,
    pub(super) memory_mib: u64,
    pub(super) idle_timeout: Duration,
    pub(super) max_lifetime: Duration,
    pub(super) audit_log: Option<PathBuf>,
    pub(super) policy: Arc<Policy>,
    pub(super) kernel_release: Mutex<Option<String>>,
    /// Whether it was a warm guest from the pool, and how long the create took.
    pub(super) start: Mutex<Option<(bool, Duration)>>,
    pub(super) state: Mutex<EntryState>,
    pub(super) last_active: Mutex<(Instant, Timestamp)>,
    pub(super) running_execs: AtomicU32,
    pub(super) exec_seq: AtomicU64,
    pub(super) execs: Mutex<HashMap<String, Arc<ExecHandle>>>,
    /// Turns true when the sandbox starts stopping: running execs end.
    pub(super) stopping: watch::Sender<bool>,
}

impl Entry {
    /// The sandbox id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The policy the sandbox runs under.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Its audit log.
    pub fn audit_log(&self) -> Option<&PathBuf> {
        self.audit_log.as_ref()
    }

    /// Notes API activity (resets the idle timer).
    pub fn touch(&self) {
        *lock(&self.last_active) = (Instant::now(), Timestamp::now());
    }

    /// The running sandbox, or 409 naming its state.
    pub fn running(&self) -> Result<Arc<Sandbox>, DaemonError> {
        match &*lock(&self.state) {
            EntryState::Running { sandbox, .. } => Ok(sandbox.clone()),
            EntryState::Starting => Err(DaemonError::Conflict(format!(
                "sandbox {} is still starting",
                self.id
            ))),
            EntryState::Stopping => Err(DaemonError::Conflict(format!(
                "sandbox {} is stopping",
                self.id
            ))),
            EntryState::Stopped { reason } => Err(DaemonError::Conflict(format!(
                "sandbox {} is stopped ({reason})",
                self.id
            ))),
        }
    }

    /// The run settings of the imported OCI image it runs, if it runs one.
    pub fn image_config(&self) -> Option<airlock_image::debian::manifest::OciRunConfig> {
        match &*lock(&self.state) {
            EntryState::Running { image: Some(i), .. } => {
                i.manifest.oci.as_ref().map(|o| o.config.clone())
            }
            _ => None,
        }
    }

    /// Whether it is stopped or stopping.
    pub fn is_ended(&self) -> bool {
        matches!(
            &*lock(&self.state),
            EntryState::Stopped { .. } | EntryState::Stopping
        )
    }

    /// A receiver that turns true when the sandbox starts stopping.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    pub(super) fn status(&self) -> (SandboxStatus, Option<String>) {
        match &*lock(&self.state) {
            EntryState::Starting => (SandboxStatus::Starting, None),
            EntryState::Running { .. } => (SandboxStatus::Running, None),
            EntryState::Stopping => (SandboxStatus::Stopping, None),
            EntryState::Stopped { reason } => (SandboxStatus::Stopped, Some(reason.clone())),
        }
    }

    /// The API view.
    pub fn info(&self) -> SandboxInfo {
        let (status, end_reason) = self.status();
        let start = *lock(&self.start);
        SandboxInfo {
            id: self.id.clone(),
            status,
            image: self.image.clone(),
            policy: self.origin.clone(),
            workspace: self.workspace.as_ref().map(|w| w.display().to_string()),
            labels: self.labels.clone(),
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            created_at: self.created_at.to_string(),
            last_active_at: lock(&self.last_active).1.to_string(),
            idle_timeout_secs: self.idle_timeout.as_secs(),
            max_lifetime_secs: self.max_lifetime.as_secs(),
            execs_running: self.running_execs.load(Ordering::Relaxed),
            audit_log: self.audit_log.as_ref().map(|p| p.display().to_string()),
            kernel_release: lock(&self.kernel_release).clone(),
            pooled: start.is_some_and(|(pooled, _)| pooled),
            start_ms: start.map(|(_, d)| d.as_millis().try_into().unwrap_or(u64::MAX)),
            end_reason,
        }
    }

    /// Why the janitor should stop this sandbox now, if it should.
    pub(super) fn expired(&self) -> Option<String> {
        if !matches!(&*lock(&self.state), EntryState::Running { .. }) {
            return None;
        }
        if !self.max_lifetime.is_zero() && self.created.elapsed() >= self.max_lifetime {
            return Some(format!(
                "reached its maximum lifetime of {} s",
                self.max_lifetime.as_secs()
            ));
        }
        let idle = lock(&self.last_active).0.elapsed();
        if !self.idle_timeout.is_zero()
            && self.running_execs.load(Ordering::Relaxed) == 0
            && idle >= self.idle_timeout
        {
            return Some(format!(
                "idle for {} s (idle timeout {} s)",
                idle.as_secs(),
                self.idle_timeout.as_secs()
            ));
        }
        None
    }
}
