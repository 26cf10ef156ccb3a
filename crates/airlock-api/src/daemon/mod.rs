//! The daemon's sandbox manager: sandboxes that outlive one command.
//!
//! [`Daemon`] owns every sandbox it started, keyed by id. Creation goes through one function,
//! `Daemon::provision`, which claims a warm guest from the pool when one fits (`keeper.rs`) and
//! boots a fresh one otherwise. Each sandbox is an [`Entry`] whose state moves starting → running →
//! stopping → stopped; execs hold a reference to the running [`Sandbox`] and end when it stops,
//! so teardown always gets the sandbox back and runs the supervisor's full shutdown (audit
//! sealed, state dir removed).
//!
//! A janitor task stops sandboxes past their idle timeout or maximum lifetime, or whose policy's
//! `kill` monitor rule fired. The registry ([`registry`]) mirrors live sandboxes on disk so a
//! restarted daemon can reap what a killed one left.

pub mod changes;
mod entry;
mod error;
pub mod exec;
pub mod files;
mod handle;
mod keeper;
pub mod pool;
pub mod registry;

pub use entry::Entry;
pub use error::DaemonError;
pub use handle::ExecHandle;

use entry::{EntryState, lock};

use crate::types::{CreateSandboxRequest, SandboxInfo, SandboxStatus};
use airlock_audit::Timestamp;
use airlock_supervisor::launch::{Launch, LaunchOptions, PolicyChoice};
use airlock_supervisor::{Images, Sandbox, SandboxError};
use registry::{ProcessRef, Registry, SandboxRecord};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// How long a stop waits for running execs to let go of the sandbox.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the janitor looks at timeouts.
const JANITOR_TICK: Duration = Duration::from_secs(1);
/// Most labels per sandbox.
const MAX_LABELS: usize = 64;

/// The daemon's limits and defaults.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Idle timeout for sandboxes that do not set one (zero: none).
    pub idle_timeout: Duration,
    /// Maximum lifetime for sandboxes that do not set one (zero: none).
    pub max_lifetime: Duration,
    /// Most sandboxes alive (not stopped) at once.
    pub max_sandboxes: usize,
    /// Most sandboxes booting at once (boots are CPU-bound under TCG).
    pub max_starting: usize,
    /// The warm pool, if any.
    pub pool: Option<pool::PoolConfig>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            idle_timeout: Duration::from_secs(30 * 60),
            max_lifetime: Duration::from_secs(24 * 60 * 60),
            max_sandboxes: 64,
            max_starting: std::thread::available_parallelism().map_or(2, |n| n.get()),
            pool: None,
        }
    }
}

/// The sandbox manager.
pub struct Daemon {
    config: DaemonConfig,
    images: Images,
    registry: Registry,
    audit_key: Option<PathBuf>,
    sandboxes: Mutex<BTreeMap<String, Arc<Entry>>>,
    boot_slots: Semaphore,
    pool: Option<Arc<pool::Pool>>,
}

impl Daemon {
    /// A manager booting from `images`, mirroring live sandboxes into `registry`.
    pub fn new(config: DaemonConfig, images: Images, registry: Registry) -> Arc<Daemon> {
        Arc::new(Daemon {
            boot_slots: Semaphore::new(config.max_starting.max(1)),
            pool: config
                .pool
                .clone()
                .map(|p| Arc::new(pool::Pool::new(p)))
                .filter(|p| p.is_enabled()),
            config,
            images,
            registry,
            audit_key: airlock_audit::default_key_path(),
            sandboxes: Mutex::new(BTreeMap::new()),
        })
    }

    /// Reaps what a previous daemon left in the registry; returns what was done.
    pub fn reap_leftovers(&self) -> Vec<registry::Reaped> {
        self.registry
            .leftovers()
            .iter()
            .map(|r| self.registry.reap(r, self.audit_key.as_deref()))
            .collect()
    }

    /// A sandbox by id, or 404.
    pub fn get(&self, id: &str) -> Result<Arc<Entry>, DaemonError> {
        lock(&self.sandboxes)
            .get(id)
            .cloned()
            .ok_or_else(|| DaemonError::NotFound(format!("no sandbox with id {id:?}")))
    }

    /// Every sandbox, oldest first.
    pub fn list(&self) -> Vec<SandboxInfo> {
        let mut all: Vec<Arc<Entry>> = lock(&self.sandboxes).values().cloned().collect();
        all.sort_by_key(|e| e.created);
        all.iter().map(|e| e.info()).collect()
    }

    /// Creates and boots a sandbox; returns once it is running.
    pub async fn create(
        self: &Arc<Self>,
        request: CreateSandboxRequest,
    ) -> Result<SandboxInfo, DaemonError> {
        let options = validate_create(&request)?;
        let alive = lock(&self.sandboxes)
            .values()
            .filter(|e| !e.is_ended())
            .count();
        if alive >= self.config.max_sandboxes {
            return Err(DaemonError::Conflict(format!(
                "the daemon already runs {alive} sandboxes (--max-sandboxes {}); delete one first",
                self.config.max_sandboxes
            )));
        }
        // Run to completion even if the client goes away: a half-registered sandbox is worse
        // than one the idle timeout collects.
        let me = self.clone();
        tokio::spawn(async move { me.create_inner(request, options).await })
            .await
            .map_err(|e| DaemonError::Internal(format!("create task: {e}")))?
    }

    async fn create_inner(
        self: Arc<Self>,
        request: CreateSandboxRequest,
        options: LaunchOptions,
    ) -> Result<SandboxInfo, DaemonError> {
        let launch = airlock_supervisor::launch::prepare(&options, &self.images).await?;
        let policy_timeout = launch.policy.sandbox().timeout;
        let lifetime = match request.max_lifetime_secs {
            Some(s) => Duration::from_secs(s),
            None => self.config.max_lifetime,
        };
        // The policy's time limit bounds the sandbox's life as it bounds `airlock run`.
        let max_lifetime = match policy_timeout {
            Some(t) if lifetime.is_zero() || t < lifetime => t,
            _ => lifetime,
        };
        let now = Timestamp::now();
        let audit_log = airlock_supervisor::launch::audit_log_path(&launch.config, &launch.id);
        let entry = Arc::new(Entry {
            id: launch.id.clone(),
            created_at: now,
            created: Instant::now(),
            labels: request.labels.clone(),
            image: launch.image_name.clone(),
            origin: launch.origin.clone(),
            workspace: launch.workspace.clone(),
            cpus: launch.config.cpus,
            memory_mib: launch.config.memory_mib,
            idle_timeout: request
                .idle_timeout_secs
                .map_or(self.config.idle_timeout, Duration::from_secs),
            max_lifetime,
            audit_log: audit_log.clone(),
            policy: launch.policy.clone(),
            kernel_release: Mutex::new(None),
            start: Mutex::new(None),
            state: Mutex::new(EntryState::Starting),
            last_active: Mutex::new((Instant::now(), now)),
            running_execs: AtomicU32::new(0),
            exec_seq: AtomicU64::new(0),
            execs: Mutex::new(HashMap::new()),
            stopping: watch::channel(false).0,
        });
        let mut record = SandboxRecord {
            id: launch.id.clone(),
            daemon_pid: std::process::id(),
            state_dir: airlock_supervisor::state_root().join(&launch.id),
            audit_log,
            processes: Vec::new(),
            created_at: now.to_string(),
        };
        // Written before booting: a daemon killed mid-boot still leaves a trace to reap.
        self.registry
            .write(&record)
            .map_err(|e| DaemonError::Internal(format!("{e:#}")))?;
        lock(&self.sandboxes).insert(entry.id.clone(), entry.clone());
        let t0 = Instant::now();
        let started = match self.claim_warm(&launch).await {
            Some((s, warm_id)) => Ok((s, Some(warm_id))),
            None => {
                let _slot = self
                    .boot_slots
                    .acquire()
                    .await
                    .map_err(|e| DaemonError::Internal(format!("boot queue: {e}")))?;
                self.provision(&launch).await.map(|s| (s, None))
            }
        };
        let (sandbox, warm_id) = match started {
            Ok((s, warm_id)) => {
                *lock(&entry.start) = Some((warm_id.is_some(), t0.elapsed()));
                (s, warm_id)
            }
            Err(e) => {
                lock(&self.sandboxes).remove(&entry.id);
                let _ = self.registry.remove(&entry.id);
                return Err(DaemonError::BootFailed(format!(
                    "starting sandbox {}: {}",
                    entry.id,
                    airlock_jail::error_chain(&e)
                )));
            }
        };
        airlock_supervisor::launch::record_unprotected(&sandbox, &launch.policy, &launch.origin);
        // A claimed warm guest keeps its own dir name; the record must name the real dir.
        record.state_dir = sandbox.state_dir().to_path_buf();
        record.processes = sandbox
            .pids()
            .into_iter()
            .filter_map(ProcessRef::of)
            .collect();
        match self.registry.write(&record) {
            // The claimed guest is now recorded under the sandbox's id.
            Ok(()) => {
                if let Some(warm) = &warm_id {
                    let _ = self.registry.remove(warm);
                }
            }
            Err(e) => tracing::warn!(error = %e, "updating the registry record"),
        }
        *lock(&entry.kernel_release) = Some(sandbox.kernel_release.clone());
        let kill = sandbox.recorder().map(|r| r.kill_requested());
        *lock(&entry.state) = EntryState::Running {
            sandbox: Arc::new(sandbox),
            image: launch.image.map(Box::new),
        };
        if let Some(mut kill) = kill {
            // A `kill` monitor rule stops the sandbox.
            let me = Arc::downgrade(&self);
            let id = entry.id.clone();
            tokio::spawn(async move {
                while kill.changed().await.is_ok() {
                    let why = kill.borrow().clone();
                    if let (Some(why), Some(d)) = (why, me.upgrade()) {
                        let _ = d.stop(&id, &why).await;
                        return;
                    }
                }
            });
        }
        tracing::info!(id = %entry.id, "sandbox running");
        entry.touch();
        Ok(entry.info())
    }

    /// Boots the guest for `launch` cold (when no warm guest fits).
    async fn provision(&self, launch: &Launch) -> Result<Sandbox, SandboxError> {
        Sandbox::start(&launch.config, &launch.images).await
    }

    /// Stops a sandbox (ending its execs) and keeps its record as stopped. Stopping a stopped
    /// sandbox is a no-op.
    pub async fn stop(&self, id: &str, reason: &str) -> Result<SandboxInfo, DaemonError> {
        let entry = self.get(id)?;
        // Decide under the lock, act after it: `info()` takes the same lock.
        let taken = {
            let mut state = lock(&entry.state);
            match std::mem::replace(&mut *state, EntryState::Stopping) {
                EntryState::Running { sandbox, image } => {
                    drop(image);
                    Ok(Some(sandbox))
                }
                EntryState::Stopped { reason } => {
                    *state = EntryState::Stopped { reason };
                    Ok(None)
                }
                other @ (EntryState::Starting | EntryState::Stopping) => {
                    let what = if matches!(other, EntryState::Starting) {
                        "starting"
                    } else {
                        "already stopping"
                    };
                    *state = other;
                    Err(DaemonError::Conflict(format!("sandbox {id} is {what}")))
                }
            }
        };
        let Some(sandbox) = taken? else {
            return Ok(entry.info());
        };
        entry.stopping.send_replace(true);
        let sandbox = release(sandbox).await;
        let outcome = match sandbox {
            Some(s) => s
                .shutdown(reason)
                .await
                .map_err(|e| airlock_jail::error_chain(&e)),
            None => Err("execs did not release the sandbox; its processes were killed".into()),
        };
        let _ = self.registry.remove(id);
        let reason = match &outcome {
            Ok(()) => reason.to_string(),
            Err(e) => format!("{reason} (teardown: {e})"),
        };
        tracing::info!(%id, %reason, "sandbox stopped");
        *lock(&entry.state) = EntryState::Stopped { reason };
        Ok(entry.info())
    }

    /// Stops (if needed) and forgets a sandbox.
    pub async fn delete(&self, id: &str) -> Result<(), DaemonError> {
        let entry = self.get(id)?;
        if !matches!(entry.status().0, SandboxStatus::Stopped) {
            self.stop(id, "deleted through the API").await?;
        }
        lock(&self.sandboxes).remove(id);
        Ok(())
    }

    /// Stops every sandbox (daemon shutdown) and releases the registry.
    pub async fn shutdown(self: &Arc<Self>, reason: &str) {
        let ids: Vec<String> = lock(&self.sandboxes).keys().cloned().collect();
        // Together, not one after the other: each teardown waits on its guest.
        let stops: Vec<_> = ids
            .into_iter()
            .map(|id| {
                let (me, reason) = (self.clone(), reason.to_string());
                tokio::spawn(async move { me.stop(&id, &reason).await })
            })
            .collect();
        for stop in stops {
            if let Ok(Err(e)) = stop.await {
                tracing::warn!(error = %e, "stopping a sandbox at daemon shutdown");
            }
        }
        // Sandboxes still starting finish (or fail) on their own; give them a moment.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline
            && lock(&self.sandboxes)
                .values()
                .any(|e| matches!(e.status().0, SandboxStatus::Starting))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ids: Vec<String> = lock(&self.sandboxes).keys().cloned().collect();
        for id in ids {
            let _ = self.stop(&id, reason).await;
        }
        self.drain_pool().await;
        self.registry.close();
    }

    /// Stops sandboxes past their idle timeout or lifetime, every second, forever.
    pub async fn janitor(self: Arc<Self>) {
        let mut tick = tokio::time::interval(JANITOR_TICK);
        loop {
            tick.tick().await;
            let due: Vec<(String, String)> = lock(&self.sandboxes)
                .values()
                .filter_map(|e| Some((e.id.clone(), e.expired()?)))
                .collect();
            for (id, why) in due {
                let me = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = me.stop(&id, &why).await {
                        tracing::debug!(%id, error = %e, "janitor stop");
                    }
                });
            }
        }
    }
}

/// Waits until `sandbox` is the only reference (execs dropped theirs), up to
/// [`RELEASE_TIMEOUT`]. `None` if they did not: then dropping it kills its processes.
async fn release(mut sandbox: Arc<Sandbox>) -> Option<Sandbox> {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    loop {
        match Arc::try_unwrap(sandbox) {
            Ok(s) => return Some(s),
            Err(shared) if Instant::now() < deadline => {
                sandbox = shared;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                tracing::error!("execs still hold the sandbox after {RELEASE_TIMEOUT:?}");
                return None;
            }
        }
    }
}

/// Checks a create request and turns it into launch options.
fn validate_create(r: &CreateSandboxRequest) -> Result<LaunchOptions, DaemonError> {
    let policy = match (&r.policy, &r.profile) {
        (Some(_), Some(_)) => {
            return Err(DaemonError::bad(
                "policy",
                "give either policy (text) or profile, not both",
            ));
        }
        (Some(text), None) => {
            let origin = PathBuf::from(r.policy_origin.as_deref().unwrap_or("/api/policy.toml"));
            if !origin.is_absolute() {
                return Err(DaemonError::bad(
                    "policy_origin",
                    format!("{} is not an absolute path", origin.display()),
                ));
            }
            PolicyChoice::Text {
                text: text.clone(),
                origin,
            }
        }
        (None, profile) => {
            if r.policy_origin.is_some() {
                return Err(DaemonError::bad(
                    "policy_origin",
                    "only meaningful with policy (text)",
                ));
            }
            PolicyChoice::Profile(profile.clone().unwrap_or_else(|| "default".into()))
        }
    };
    if r.labels.len() > MAX_LABELS {
        return Err(DaemonError::bad(
            "labels",
            format!("{} labels; at most {MAX_LABELS}", r.labels.len()),
        ));
    }
    for (k, v) in &r.labels {
        let key_ok = (1..=63).contains(&k.len())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !key_ok {
            return Err(DaemonError::bad(
                "labels",
                format!("label key {k:?} must be 1..=63 characters of [A-Za-z0-9._-]"),
            ));
        }
        if v.len() > 255 || v.chars().any(char::is_control) {
            return Err(DaemonError::bad(
                "labels",
                format!("label {k:?}: values are at most 255 bytes without control characters"),
            ));
        }
    }
    if let Some(img) = &r.image
        && (img.is_empty()
            || !img
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(DaemonError::bad(
            "image",
            format!("{img:?} is not an image name ([A-Za-z0-9._-]+)"),
        ));
    }
    let workspace = r.workspace.as_ref().map(PathBuf::from);
    if let Some(w) = &workspace
        && !w.is_absolute()
    {
        return Err(DaemonError::bad(
            "workspace",
            format!("{} is not an absolute path", w.display()),
        ));
    }
    let kit = match &r.agent {
        None => None,
        Some(name) => Some(airlock_image::kit::get(name).ok_or_else(|| {
            let names: Vec<String> = airlock_image::kit::all()
                .into_iter()
                .map(|k| k.name)
                .collect();
            DaemonError::bad(
                "agent",
                format!("unknown agent kit {name:?}; kits: {}", names.join(", ")),
            )
        })?),
    };
    Ok(LaunchOptions {
        policy,
        workspace,
        image: r.image.clone(),
        cpus: r.cpus,
        memory_mib: r.memory_mib,
        keep: false,
        env: Vec::new(),
        notify: airlock_supervisor::Notifier::stderr(),
        kit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requests_are_checked_field_by_field() {
        let field = |r: CreateSandboxRequest| match validate_create(&r) {
            Err(DaemonError::BadRequest { field, .. }) => field,
            other => panic!("{:?}", other.map(|_| ())),
        };
        assert_eq!(
            field(CreateSandboxRequest {
                policy: Some(String::new()),
                profile: Some("default".into()),
                ..Default::default()
            }),
            "policy"
        );
        assert_eq!(
            field(CreateSandboxRequest {
                workspace: Some("rel".into()),
                ..Default::default()
            }),
            "workspace"
        );
        assert_eq!(
            field(CreateSandboxRequest {
                labels: [("bad key".to_string(), "v".to_string())].into(),
                ..Default::default()
            }),
            "labels"
        );
        assert_eq!(
            field(CreateSandboxRequest {
                image: Some("../x".into()),
                ..Default::default()
            }),
            "image"
        );
        assert!(validate_create(&CreateSandboxRequest::default()).is_ok());
    }
}
