//! The daemon's side of the warm pool: claiming a warm guest for a create, the keeper task that
//! boots and recycles guests, and draining the pool at shutdown. The pool's own bookkeeping is
//! in `pool.rs`.

use super::Daemon;
use super::entry::lock;
use super::pool::{KEEPER_TICK, Pool, PoolError, PoolStatus, RETRY_AFTER, Warm, pool_machine};
use super::registry::{ProcessRef, SandboxRecord};
use airlock_audit::Timestamp;
use airlock_image::debian::OpenedImage;
use airlock_image::kit::store::OpenedKit;
use airlock_supervisor::{Images, Sandbox, state_root};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        // Warm guests boot without package layers.
        if !launch.images.layers.is_empty() {
            return None;
        }
        // An agent's guest is pooled under its kit's name.
        let key = launch
            .kit
            .as_ref()
            .map_or(launch.image_name.as_str(), |k| k.name.as_str());
        let warm = pool.take(
            key,
            launch.images.rootfs.as_deref(),
            launch.images.kit.as_deref(),
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
        let (images, opened, kit) = self.pool_images(image).await?;
        let machine = match &kit {
            // The workspace and the agent home at least.
            Some(k) => pool_machine(pool.config.fs_slots.max(2), &k.1)?,
            None => pool_machine(pool.config.fs_slots, "default")?,
        };
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
                    kit: images.kit.clone(),
                    _image: opened.map(Box::new),
                    _kit: kit.map(|k| Box::new(k.0)),
                })
            }
            Err(e) => {
                let _ = self.registry.remove(&id);
                Err(PoolError::Boot(Box::new(e)))
            }
        }
    }

    /// Kernel, initramfs and root image for a pooled image name; for a kit name, the Debian
    /// image with the kit's layer, and the kit's profile.
    async fn pool_images(
        &self,
        image: &str,
    ) -> Result<(Images, Option<OpenedImage>, Option<(OpenedKit, String)>), PoolError> {
        let mut images = self.images.clone();
        if image == "tiny" {
            return Ok((images, None, None));
        }
        let kit = airlock_image::kit::get(image);
        let image_err = |source| PoolError::Image {
            image: image.to_string(),
            source: Box::new(source),
        };
        let cache = airlock_image::Cache::from_env().map_err(image_err)?;
        let name = if kit.is_some() {
            airlock_image::debian::DEFAULT_NAME.to_string()
        } else {
            image.to_string()
        };
        let k = kit.clone();
        let (opened, kit_opened) = tokio::task::spawn_blocking(move || {
            let opened = airlock_image::debian::open(&cache, &name)?;
            let kit = match &k {
                Some(k) => Some(airlock_image::kit::store::open(&cache, k)?),
                None => None,
            };
            Ok::<_, airlock_image::ImageError>((opened, kit))
        })
        .await
        .map_err(|_| PoolError::Task)?
        .map_err(image_err)?;
        images.rootfs = Some(opened.rootfs.clone());
        images.kit = kit_opened.as_ref().map(|k| k.layer.clone());
        let kit = kit_opened.zip(kit.map(|k| k.profile));
        Ok((images, Some(opened), kit))
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
