//! The warm pool: guests booted ahead of time with nothing bound to them, so that creating a
//! sandbox is a claim (bind the policy and shares, mount them) instead of a boot.
//!
//! A warm guest has its fs gateways running but unbound (they refuse every request), no egress
//! gateway and no audit log: nothing untrusted has run in it. [`Sandbox::claim`] binds it and
//! records `sandbox.start` and `sandbox.bind` in the new sandbox's log. A guest leaves the pool
//! for good when claimed, when it is older than the TTL, or when its engine died; the keeper
//! boots replacements in the background, one at a time per image, through the daemon's boot
//! slots. Each warm guest has a registry record, so a daemon killed with its pool still has
//! them reaped at the next start.

use super::Daemon;
use super::registry::{ProcessRef, SandboxRecord};
use airlock_audit::Timestamp;
use airlock_image::debian::OpenedImage;
use airlock_supervisor::{Images, Machine, Sandbox, state_root};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the keeper checks the pool when nothing wakes it.
const KEEPER_TICK: Duration = Duration::from_secs(1);
/// After a failed boot, wait this long before trying that image again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// What the pool keeps.
#[derive(Debug, Clone, Default)]
pub struct PoolConfig {
    /// Warm guests per image name.
    pub sizes: BTreeMap<String, usize>,
    /// Warm guests older than this are replaced.
    pub ttl: Duration,
    /// Filesystem devices per warm guest: the most shares a claim can bind.
    pub fs_slots: usize,
}

/// A booted, unbound guest.
struct Warm {
    sandbox: Sandbox,
    /// The root image it booted (a claim must want the same build).
    rootfs: Option<std::path::PathBuf>,
    _image: Option<Box<OpenedImage>>,
}

/// Per-image counters.
#[derive(Debug, Clone, Default)]
struct Counters {
    booting: usize,
    claimed: u64,
    missed: u64,
    recycled: u64,
    failed: u64,
    last_failure: Option<(Instant, String)>,
}

/// The pool's state, shared by the keeper and claims.
pub struct Pool {
    config: PoolConfig,
    warm: Mutex<BTreeMap<String, Vec<Warm>>>,
    counters: Mutex<BTreeMap<String, Counters>>,
    wake: tokio::sync::Notify,
    /// Set at daemon shutdown: guests that finish booting after it are shut down at once.
    closed: std::sync::atomic::AtomicBool,
}

/// One image's pool, as `GET /v1/pool` reports it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PoolImage {
    /// Image name.
    pub image: String,
    /// Guests kept warm.
    pub size: usize,
    /// Warm guests ready to be claimed now.
    pub ready: usize,
    /// Guests booting.
    pub booting: usize,
    /// Sandboxes created from this pool.
    pub claimed: u64,
    /// Creates that found no compatible warm guest and booted cold.
    pub missed: u64,
    /// Warm guests replaced for age or because their engine died.
    pub recycled: u64,
    /// Warm boots that failed.
    pub failed: u64,
    /// The last boot failure, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// Body of `GET /v1/pool`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PoolStatus {
    /// Warm guests older than this many seconds are replaced.
    pub ttl_secs: u64,
    /// The most shares a warm guest can take.
    pub fs_slots: usize,
    /// One entry per pooled image.
    pub images: Vec<PoolImage>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
    /// An empty pool that the keeper fills to `config`.
    pub fn new(config: PoolConfig) -> Pool {
        Pool {
            config,
            warm: Mutex::new(BTreeMap::new()),
            counters: Mutex::new(BTreeMap::new()),
            wake: tokio::sync::Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether any image is pooled.
    pub fn is_enabled(&self) -> bool {
        self.config.sizes.values().any(|n| *n > 0)
    }

    /// The pool's state.
    pub fn status(&self) -> PoolStatus {
        let warm = lock(&self.warm);
        let counters = lock(&self.counters);
        PoolStatus {
            ttl_secs: self.config.ttl.as_secs(),
            fs_slots: self.config.fs_slots,
            images: self
                .config
                .sizes
                .iter()
                .map(|(image, size)| {
                    let c = counters.get(image).cloned().unwrap_or_default();
                    PoolImage {
                        image: image.clone(),
                        size: *size,
                        ready: warm.get(image).map_or(0, Vec::len),
                        booting: c.booting,
                        claimed: c.claimed,
                        missed: c.missed,
                        recycled: c.recycled,
                        failed: c.failed,
                        last_failure: c.last_failure.map(|(_, m)| m),
                    }
                })
                .collect(),
        }
    }

    /// Takes the oldest warm guest of `image` that fits `wanted` (same CPUs, memory, disk and
    /// accelerator; enough filesystem devices; host limits not required), if any.
    fn take(
        &self,
        image: &str,
        rootfs: Option<&std::path::Path>,
        wanted: &Machine,
    ) -> Option<Warm> {
        if !self.config.sizes.contains_key(image) {
            return None;
        }
        let taken = {
            let mut warm = lock(&self.warm);
            let guests = warm.get_mut(image)?;
            let fits = |m: &Machine| {
                m.cpus == wanted.cpus
                    && m.memory_mib == wanted.memory_mib
                    && m.disk_bytes == wanted.disk_bytes
                    && m.accel == wanted.accel
                    && m.fs_slots >= wanted.fs_slots
                    && !wanted.require_host_limits
            };
            let i = guests
                .iter()
                .position(|w| w.rootfs.as_deref() == rootfs && fits(w.sandbox.machine()));
            i.map(|i| guests.remove(i))
        };
        let mut counters = lock(&self.counters);
        let c = counters.entry(image.to_string()).or_default();
        if taken.is_some() {
            c.claimed += 1;
        } else {
            c.missed += 1;
        }
        drop(counters);
        // Refill at once.
        self.wake.notify_one();
        taken
    }
}

impl Daemon {
    /// Claims a warm guest for `launch` if the pool has one that fits; `None` when it has not,
    /// or when the claim failed (the guest is then discarded, never offered again). Also
    /// returns the warm guest's registry id: its record goes once the claimed sandbox's own
    /// record names the guest's dir and processes.
    pub(super) async fn claim_warm(
        &self,
        launch: &airlock_supervisor::launch::Launch,
    ) -> Option<(Sandbox, String)> {
        let pool = self.pool.as_ref()?;
        let warm = pool.take(
            &launch.image_name,
            launch.images.rootfs.as_deref(),
            &launch.config.machine(),
        )?;
        let warm_id = warm.sandbox.state_dir_id().to_string();
        match warm.sandbox.claim(&launch.config).await {
            Ok(s) => Some((s, warm_id)),
            Err(e) => {
                let _ = self.registry.remove(&warm_id);
                tracing::warn!(image = %launch.image_name, error = %format!("{e:#}"), "claiming a warm guest failed; booting cold");
                None
            }
        }
    }

    /// Keeps the pool filled, replaces guests past the TTL or dead, forever.
    pub async fn pool_keeper(self: Arc<Self>) {
        let Some(pool) = self.pool.clone() else {
            return;
        };
        if !pool.is_enabled() {
            return;
        }
        loop {
            self.recycle(&pool).await;
            for (image, size) in &pool.config.sizes {
                let start = {
                    let warm = lock(&pool.warm);
                    let mut counters = lock(&pool.counters);
                    let c = counters.entry(image.clone()).or_default();
                    let ready = warm.get(image).map_or(0, Vec::len);
                    let cooling = c
                        .last_failure
                        .as_ref()
                        .is_some_and(|(t, _)| t.elapsed() < RETRY_AFTER);
                    // One boot at a time per image: boots are CPU-bound, claims come first.
                    let go = ready + c.booting < *size && c.booting == 0 && !cooling;
                    if go {
                        c.booting += 1;
                    }
                    go
                };
                if start {
                    let me = self.clone();
                    let image = image.clone();
                    tokio::spawn(async move { me.boot_warm(image).await });
                }
            }
            tokio::select! {
                () = pool.wake.notified() => {}
                () = tokio::time::sleep(KEEPER_TICK) => {}
            }
        }
    }

    /// Boots one warm guest of `image` and adds it to the pool.
    async fn boot_warm(self: Arc<Self>, image: String) {
        let Some(pool) = self.pool.clone() else {
            return;
        };
        // Counts the boot as over however this task ends (a panic included).
        struct Booting<'a>(&'a Pool, &'a str);
        impl Drop for Booting<'_> {
            fn drop(&mut self) {
                let mut counters = lock(&self.0.counters);
                let c = counters.entry(self.1.to_string()).or_default();
                c.booting = c.booting.saturating_sub(1);
                drop(counters);
                self.0.wake.notify_one();
            }
        }
        let _booting = Booting(&pool, &image);
        match self.boot_warm_inner(&pool, &image).await {
            Ok(warm) => {
                // Checked under the lock `drain_pool` sets it under: a guest is either
                // drained or shut down here, never stranded.
                let stray = {
                    let mut guests = lock(&pool.warm);
                    if pool.closed.load(std::sync::atomic::Ordering::SeqCst) {
                        Some(warm)
                    } else {
                        tracing::info!(%image, id = warm.sandbox.state_dir_id(), "warm guest ready");
                        guests.entry(image.clone()).or_default().push(warm);
                        None
                    }
                };
                if let Some(warm) = stray {
                    let id = warm.sandbox.state_dir_id().to_string();
                    let _ = warm.sandbox.shutdown("the daemon stopped").await;
                    let _ = self.registry.remove(&id);
                }
            }
            Err(e) => {
                let e = airlock_jail::error_chain(&e);
                tracing::warn!(%image, error = %e, "warm guest boot failed");
                let mut counters = lock(&pool.counters);
                let c = counters.entry(image.clone()).or_default();
                c.failed += 1;
                c.last_failure = Some((Instant::now(), e));
            }
        }
    }

    async fn boot_warm_inner(&self, pool: &Pool, image: &str) -> Result<Warm, PoolError> {
        let (images, opened) = self.pool_images(image).await?;
        let machine = pool_machine(pool.config.fs_slots)?;
        let id = airlock_supervisor::new_sandbox_id().map_err(PoolError::Id)?;
        let mut record = SandboxRecord {
            id: id.clone(),
            daemon_pid: std::process::id(),
            state_dir: state_root().join(&id),
            audit_log: None,
            processes: Vec::new(),
            created_at: Timestamp::now().to_string(),
        };
        // Written before booting: a daemon killed mid-boot still leaves a trace to reap.
        self.registry.write(&record)?;
        let booted = {
            let _slot = self
                .boot_slots
                .acquire()
                .await
                .map_err(|_| PoolError::Queue)?;
            Sandbox::boot_unbound(&machine, &images, &id).await
        };
        match booted {
            Ok(sandbox) => {
                record.processes = sandbox
                    .pids()
                    .into_iter()
                    .filter_map(ProcessRef::of)
                    .collect();
                if let Err(e) = self.registry.write(&record) {
                    tracing::warn!(error = %e, "updating a warm guest's registry record");
                }
                Ok(Warm {
                    sandbox,
                    rootfs: images.rootfs.clone(),
                    _image: opened.map(Box::new),
                })
            }
            Err(e) => {
                let _ = self.registry.remove(&id);
                Err(PoolError::Boot(Box::new(e)))
            }
        }
    }

    /// Kernel, initramfs and root image for a pooled image name.
    async fn pool_images(&self, image: &str) -> Result<(Images, Option<OpenedImage>), PoolError> {
        let mut images = self.images.clone();
        if image == "tiny" {
            return Ok((images, None));
        }
        let image_err = |source| PoolError::Image {
            image: image.to_string(),
            source: Box::new(source),
        };
        let cache = airlock_image::Cache::from_env().map_err(image_err)?;
        let name = image.to_string();
        let opened =
            tokio::task::spawn_blocking(move || airlock_image::debian::open(&cache, &name))
                .await
                .map_err(|_| PoolError::Task)?
                .map_err(image_err)?;
        images.rootfs = Some(opened.rootfs.clone());
        Ok((images, Some(opened)))
    }

    /// Shuts down warm guests past the TTL or whose engine died.
    async fn recycle(&self, pool: &Pool) {
        let stale: Vec<(String, Warm, &'static str)> = {
            let mut warm = lock(&pool.warm);
            let mut stale = Vec::new();
            for (image, guests) in warm.iter_mut() {
                let mut keep = Vec::with_capacity(guests.len());
                for mut w in guests.drain(..) {
                    if w.sandbox.has_exited() {
                        stale.push((image.clone(), w, "its engine exited"));
                    } else if w.sandbox.age() > pool.config.ttl {
                        stale.push((image.clone(), w, "older than the pool TTL"));
                    } else {
                        keep.push(w);
                    }
                }
                *guests = keep;
            }
            stale
        };
        for (image, w, why) in stale {
            let id = w.sandbox.state_dir_id().to_string();
            tracing::info!(%image, %id, why, "recycling a warm guest");
            lock(&pool.counters).entry(image).or_default().recycled += 1;
            if let Err(e) = w.sandbox.shutdown(why).await {
                tracing::debug!(%id, error = %format!("{e:#}"), "warm guest shutdown");
            }
            let _ = self.registry.remove(&id);
        }
    }

    /// Shuts every warm guest down (daemon shutdown).
    pub(super) async fn drain_pool(&self) {
        let Some(pool) = &self.pool else {
            return;
        };
        let all: Vec<Warm> = {
            let mut warm = lock(&pool.warm);
            pool.closed.store(true, std::sync::atomic::Ordering::SeqCst);
            std::mem::take(&mut *warm).into_values().flatten().collect()
        };
        let stops: Vec<_> = all
            .into_iter()
            .map(|w| {
                tokio::spawn(async move {
                    let id = w.sandbox.state_dir_id().to_string();
                    let _ = w.sandbox.shutdown("the daemon stopped").await;
                    id
                })
            })
            .collect();
        for stop in stops {
            if let Ok(id) = stop.await {
                let _ = self.registry.remove(&id);
            }
        }
        // Boots under way end by shutting their guest down (see `boot_warm`); wait for them.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && lock(&pool.counters).values().any(|c| c.booting > 0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The pool's state; `None` when the daemon keeps no pool.
    pub fn pool_status(&self) -> Option<PoolStatus> {
        self.pool.as_ref().map(|p| p.status())
    }
}

/// Why a warm guest could not be booted.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No id could be chosen.
    #[error("choosing an id")]
    Id(#[source] std::io::Error),
    /// The registry could not record it.
    #[error(transparent)]
    Registry(#[from] super::registry::RegistryError),
    /// The daemon is shutting down.
    #[error("the boot queue is closed")]
    Queue,
    /// The boot failed.
    #[error("booting")]
    Boot(#[source] Box<airlock_supervisor::SandboxError>),
    /// The image could not be opened.
    #[error("image {image:?}")]
    Image {
        /// The image name.
        image: String,
        /// Cause.
        #[source]
        source: Box<airlock_image::ImageError>,
    },
    /// The image check task failed.
    #[error("the image check task failed")]
    Task,
    /// The `default` profile did not load.
    #[error("loading the default profile")]
    Profile(#[source] airlock_policy::PolicyErrors),
    /// A setting airlock reads is wrong.
    #[error(transparent)]
    Launch(#[from] airlock_supervisor::launch::LaunchError),
}

/// The machine warm guests boot: the `default` profile's CPUs, memory and disk, so that
/// `airlock run` and creates with the shipped profiles fit.
fn pool_machine(fs_slots: usize) -> Result<Machine, PoolError> {
    let policy = airlock_policy::load_profile("default").map_err(PoolError::Profile)?;
    let limits = policy.sandbox();
    Ok(Machine {
        cpus: limits.cpus,
        memory_mib: limits.memory_bytes.div_ceil(1024 * 1024),
        disk_bytes: limits.disk_bytes,
        require_host_limits: false,
        fs_slots,
        accel: airlock_vm::accel::probe().accel,
        boot_timeout: airlock_supervisor::launch::boot_timeout()?,
    })
}
