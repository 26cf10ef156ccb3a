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

use super::entry::lock;
use airlock_image::debian::OpenedImage;
use airlock_supervisor::{Machine, Sandbox};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the keeper checks the pool when nothing wakes it.
pub(super) const KEEPER_TICK: Duration = Duration::from_secs(1);
/// After a failed boot, wait this long before trying that image again.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(10);

/// What the pool keeps.
#[derive(Debug, Clone, Default)]
pub struct PoolConfig {
    /// Warm guests per image name, or per agent kit name (the Debian image with the kit's
    /// layer, sized by the kit's profile).
    pub sizes: BTreeMap<String, usize>,
    /// Warm guests older than this are replaced.
    pub ttl: Duration,
    /// Filesystem devices per warm guest: the most shares a claim can bind.
    pub fs_slots: usize,
}

/// A booted, unbound guest.
pub(super) struct Warm {
    pub(super) sandbox: Sandbox,
    /// The root image it booted (a claim must want the same build).
    pub(super) rootfs: Option<std::path::PathBuf>,
    /// The agent kit layer it booted, if any (a claim must want the same build).
    pub(super) kit: Option<std::path::PathBuf>,
    pub(super) _image: Option<Box<OpenedImage>>,
    pub(super) _kit: Option<Box<airlock_image::kit::store::OpenedKit>>,
}

/// Per-image counters.
#[derive(Debug, Clone, Default)]
pub(super) struct Counters {
    pub(super) booting: usize,
    pub(super) claimed: u64,
    pub(super) missed: u64,
    pub(super) recycled: u64,
    pub(super) failed: u64,
    pub(super) last_failure: Option<(Instant, String)>,
}

/// The pool's state, shared by the keeper and claims.
pub struct Pool {
    pub(super) config: PoolConfig,
    pub(super) warm: Mutex<BTreeMap<String, Vec<Warm>>>,
    pub(super) counters: Mutex<BTreeMap<String, Counters>>,
    pub(super) wake: tokio::sync::Notify,
    /// Set at daemon shutdown: guests that finish booting after it are shut down at once.
    pub(super) closed: std::sync::atomic::AtomicBool,
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

    /// Takes the oldest warm guest of `image` (an image or kit name) booted from `rootfs` and
    /// `kit` that fits `wanted` (same CPUs, memory, disk and accelerator; enough filesystem
    /// devices; host limits not required), if any.
    pub(super) fn take(
        &self,
        image: &str,
        rootfs: Option<&std::path::Path>,
        kit: Option<&std::path::Path>,
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
            let i = guests.iter().position(|w| {
                w.rootfs.as_deref() == rootfs
                    && w.kit.as_deref() == kit
                    && fits(w.sandbox.machine())
            });
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
/// The machine of a warm guest: sized as `profile` says (`default` for an image, the kit's
/// profile for a kit), with `fs_slots` filesystem devices.
pub(super) fn pool_machine(fs_slots: usize, profile: &str) -> Result<Machine, PoolError> {
    let policy = airlock_policy::load_profile(profile).map_err(PoolError::Profile)?;
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
