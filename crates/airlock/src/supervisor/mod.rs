//! One sandbox's lifecycle: state dir, vsock backend, VM, guest readiness, exec, teardown.
//!
//! Everything a sandbox starts is tied to its [`Sandbox`] value: helper processes die with
//! airlock (PDEATHSIG) and are killed on drop, and the state dir is removed on shutdown unless
//! `keep` was asked for. A failed start tears down what it had started before returning.

mod audit;
mod control;
mod disk;
mod exec;
mod state;
mod stats;

pub use audit::{AuditConfig, REDACTED, Recorder, RecorderError, Redactor, default_audit_dir};
pub use control::{Control, Ready};
pub use exec::{ExecIo, ExecOutcome};
pub use state::{StateDir, new_sandbox_id, state_root};

use airlock_vm::Accel;
pub use stats::Stats;

use airlock_audit::{Decision, Event, ProcInfo, Source, kind};
use airlock_proto::{
    CONTROL_PORT, EXEC_PORT, ExecRequest, ExitStatus, PROTOCOL_VERSION, PROXY_PORT,
};
use airlock_vm::image::{Cache, ImageError, kernel, tiny};
use airlock_vm::qemu::QemuEngine;
use airlock_vm::vsock::{VsockBackend, VsockError};
use airlock_vm::{AccelChoice, BootSpec, Drive, Engine, EngineError, Vm};
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lines of the guest console shown when the guest fails to come up.
const CONSOLE_TAIL: usize = 20;

/// Why a sandbox could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Images could not be resolved.
    #[error("resolving guest images")]
    Image(#[from] ImageError),
    /// The engine failed.
    #[error("VM engine")]
    Engine(#[from] EngineError),
    /// The vsock device failed.
    #[error("vsock device")]
    Vsock(#[from] VsockError),
    /// A filesystem gateway could not start.
    #[error("filesystem gateway for {guest}")]
    Fs {
        /// Guest mount point.
        guest: String,
        /// Cause.
        #[source]
        source: airlock_fs::FsError,
    },
    /// The audit log could not be opened.
    #[error("audit")]
    Audit(#[from] RecorderError),
    /// State dir problems.
    #[error("state dir {path}")]
    State {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The VM process exited before the guest agent reported ready.
    #[error("the VM exited during boot ({status}); {hint}\n{detail}")]
    BootExited {
        /// QEMU's exit status.
        status: String,
        /// What to do.
        hint: &'static str,
        /// QEMU's stderr and the last console lines.
        detail: String,
    },
    /// The guest agent did not report ready in time.
    #[error(
        "the guest did not become ready within {secs} s (set AIRLOCK_BOOT_TIMEOUT to wait longer); last console lines:\n{console}"
    )]
    BootTimeout {
        /// Seconds waited.
        secs: u64,
        /// The last console lines.
        console: String,
    },
    /// A gateway process could not be started.
    #[error("{0}")]
    Gateway(String),
    /// The writable disk could not be made.
    #[error("sandbox disk {path}: {message}")]
    Disk {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The guest refused a request.
    #[error("guest: {0}")]
    Guest(String),
    /// The guest spoke an unexpected protocol.
    #[error("guest protocol: {0}")]
    Protocol(String),
    /// I/O with the guest.
    #[error("talking to the guest: {context}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// How to size and keep a sandbox.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Size of the writable layer (the sandbox disk) in bytes.
    pub disk_bytes: u64,
    /// Refuse to boot when the host cannot put the engine under cgroup limits.
    pub require_host_limits: bool,
    /// Keep the state dir (console log, sockets) after shutdown.
    pub keep: bool,
    /// How long to wait for the guest agent.
    pub boot_timeout: Duration,
    /// Accelerator choice.
    pub accel: AccelChoice,
    /// Audit log; `None` records nothing (benchmarks only).
    pub audit: Option<AuditConfig>,
    /// What to note in `sandbox.start` (policy origin, image).
    pub description: String,
    /// The policy the gateways enforce (with the workspace bound).
    pub policy: Arc<airlock_policy::Policy>,
    /// The sandbox id to use; a random one when `None`.
    pub id: Option<String>,
    /// Directories shared through the fs gateway, one device each.
    pub shares: Vec<airlock_fs::Share>,
    /// How the egress gateway resolves names.
    pub resolver: Arc<dyn airlock_net::Resolver>,
    /// Ports on which a CONNECT must carry a TLS ClientHello whose SNI names the CONNECT host.
    pub tls_ports: Vec<u16>,
}

/// Guest images resolved for booting.
#[derive(Debug, Clone)]
pub struct Images {
    /// The kernel.
    pub kernel: kernel::Kernel,
    /// The initramfs.
    pub tiny: tiny::TinyImage,
    /// A read-only root image (squashfs) layered under the disk; `None` boots the initramfs
    /// userland.
    pub rootfs: Option<PathBuf>,
}

impl Images {
    /// Resolves the kernel and tiny image, building them on first use; `bar` shows progress.
    pub fn resolve(cache: &Cache, bar: &ProgressBar) -> Result<Images, ImageError> {
        let kernel = kernel::ensure(cache, bar)?;
        // Booted only if it is still what was built.
        kernel.verify()?;
        let tiny = tiny::ensure(cache)?;
        Ok(Images {
            kernel,
            tiny,
            rootfs: None,
        })
    }
}

/// Wall-clock phases of a sandbox start, for `--timings` and the benchmark.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StartTimings {
    /// Starting the vsock backend and the engine process.
    pub engine_start_ms: f64,
    /// From engine start until the guest agent reported ready.
    pub guest_ready_ms: f64,
    /// The guest's own view: kernel boot to agent ready.
    pub guest_uptime_ms: u64,
}

/// Where a sandbox's audit events go: empty until a log is opened, which for a warm guest is
/// when it is claimed.
pub type RecorderSlot = Arc<std::sync::OnceLock<Arc<Recorder>>>;

/// How to boot a guest before anything is bound to it: the parts of [`SandboxConfig`] that the
/// machine needs, plus how many shares it can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Size of the writable layer in bytes.
    pub disk_bytes: u64,
    /// Refuse to boot without host cgroup limits.
    pub require_host_limits: bool,
    /// Filesystem devices (one per share it can take later).
    pub fs_slots: usize,
    /// Accelerator.
    pub accel: Accel,
    /// How long to wait for the guest agent.
    pub boot_timeout: Duration,
}

impl SandboxConfig {
    /// The machine this config boots.
    pub fn machine(&self) -> Machine {
        Machine {
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            disk_bytes: self.disk_bytes,
            require_host_limits: self.require_host_limits,
            fs_slots: self.shares.len(),
            accel: self.accel.accel,
            boot_timeout: self.boot_timeout,
        }
    }
}

/// A running sandbox.
pub struct Sandbox {
    /// The sandbox id: the state dir's name, or for a claimed warm guest the id it was claimed
    /// for.
    id: String,
    state: StateDir,
    backend: VsockBackend,
    vm: airlock_vm::qemu::QemuVm,
    control: Control,
    recorder: RecorderSlot,
    stats_task: Option<tokio::task::JoinHandle<()>>,
    fs: Vec<crate::gateway::fs::FsSlot>,
    egress: Option<crate::gateway::GatewayProcess>,
    machine: Machine,
    booted: Instant,
    bound: bool,
    /// Guest kernel release as the guest reported it.
    pub kernel_release: String,
    /// Start phases.
    pub timings: StartTimings,
}

impl Sandbox {
    /// Boots a sandbox, binds `config`'s policy and shares to it, and waits until its agent is
    /// ready.
    pub async fn start(config: &SandboxConfig, images: &Images) -> Result<Sandbox, SandboxError> {
        let state = match &config.id {
            Some(id) => StateDir::create_with(id, config.keep)?,
            None => StateDir::create(config.keep)?,
        };
        let recorder: RecorderSlot = Arc::default();
        if let Some(a) = &config.audit {
            let r = Arc::new(Recorder::open(a, state.id())?);
            r.record(
                Event::new(Source::Host, kind::SANDBOX_START)
                    .with_decision(Decision::Allow)
                    .with_detail(format!(
                        "{}; {} cpus, {} MiB, accel {} ({})",
                        config.description,
                        config.cpus,
                        config.memory_mib,
                        config.accel.accel,
                        config.accel.reason
                    )),
            );
            let _ = recorder.set(r);
        }
        let booted = Self::boot(&config.machine(), images, state, recorder.clone()).await;
        let result = match booted {
            Ok(mut sandbox) => match sandbox.bind(config).await {
                Ok(bind) => {
                    sandbox.finish_bind(bind);
                    return Ok(sandbox);
                }
                Err(e) => {
                    let _ = sandbox.teardown().await;
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        if let (Err(e), Some(r)) = (&result, recorder.get()) {
            r.record(
                Event::new(Source::Host, kind::SANDBOX_END)
                    .with_decision(Decision::Error)
                    .with_detail(format!("start failed: {e:#}")),
            );
            let _ = r.finish();
        }
        result
    }

    /// Boots a warm guest with nothing bound: no audit log, no egress gateway, and `fs_slots`
    /// filesystem gateways that refuse every request until [`claim`](Self::claim).
    pub async fn boot_unbound(
        machine: &Machine,
        images: &Images,
        id: &str,
    ) -> Result<Sandbox, SandboxError> {
        let state = StateDir::create_with(id, false)?;
        Self::boot(machine, images, state, Arc::default()).await
    }

    /// Binds a warm guest to `config` (id, policy, shares, audit log) and records it. On
    /// failure the guest is torn down: a guest is never offered twice.
    pub async fn claim(mut self, config: &SandboxConfig) -> Result<Sandbox, SandboxError> {
        let claimed = async {
            if let Some(id) = &config.id {
                self.state.alias(id)?;
                self.id.clone_from(id);
            }
            let bind = self.bind(config).await?;
            // The log opens once the claim has worked: a failed claim leaves no record under
            // the id, which a cold boot then uses.
            if let Some(a) = &config.audit {
                let r = Arc::new(Recorder::open(a, &self.id)?);
                r.record(
                    Event::new(Source::Host, kind::SANDBOX_START)
                        .with_decision(Decision::Allow)
                        .with_detail(format!(
                            "{}; {} cpus, {} MiB, accel {}; warm guest {} booted {:.1} s before \
                             the claim",
                            config.description,
                            self.machine.cpus,
                            self.machine.memory_mib,
                            self.machine.accel,
                            self.state.id(),
                            self.booted.elapsed().as_secs_f64()
                        )),
                );
                let _ = self.recorder.set(r);
            }
            self.finish_bind(bind);
            Ok::<(), SandboxError>(())
        }
        .await;
        match claimed {
            Ok(()) => Ok(self),
            Err(e) => {
                let _ = self.shutdown_quiet().await;
                Err(e)
            }
        }
    }

    /// The state dir's name: the id the guest booted with (differs from [`Self::id`] once a warm
    /// guest is claimed).
    pub fn state_dir_id(&self) -> &str {
        self.state.id()
    }

    /// The machine this sandbox runs on.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// How long ago the guest booted.
    pub fn age(&self) -> Duration {
        self.booted.elapsed()
    }

    /// Whether the engine process has exited (a warm guest that died).
    pub fn has_exited(&mut self) -> bool {
        self.vm.has_exited()
    }

    async fn boot(
        machine: &Machine,
        images: &Images,
        state: StateDir,
        recorder: RecorderSlot,
    ) -> Result<Sandbox, SandboxError> {
        let t0 = Instant::now();
        let disk = disk::create(&state.path().join("disk.img"), machine.disk_bytes)?;
        let mut backend =
            VsockBackend::start(state.path(), &state.path().join("vsock.log")).await?;
        let started = async {
            let listener = backend.listen(CONTROL_PORT)?;
            let engine = QemuEngine::locate()?;
            let mut fs = Vec::new();
            let mut fs_devices = Vec::new();
            // One jailed gateway process per share it may take; each learns its share at bind.
            for i in 0..machine.fs_slots {
                let sink = recorder.clone();
                let slot = crate::gateway::fs::FsSlot::start(state.path(), i, move |line| {
                    match crate::gateway::fs::FsLine::parse(line) {
                        Some(l) => {
                            if let Some(r) = sink.get() {
                                r.record(l.to_event());
                            }
                        }
                        None => tracing::warn!("malformed line from an fs gateway"),
                    }
                })
                .await
                .map_err(|m| SandboxError::Gateway(format!("fs gateway {i}: {m}")))?;
                fs_devices.push((slot.socket().to_path_buf(), format!("fs{i}")));
                fs.push(slot);
            }
            Ok::<_, SandboxError>((listener, engine, fs, fs_devices))
        }
        .await;
        let (listener, engine, fs, fs_devices) = match started {
            Ok(v) => v,
            Err(e) => {
                backend.stop().await;
                return Err(e);
            }
        };
        let mut drives = vec![Drive {
            path: disk,
            read_only: false,
            serial: "airlock-disk".into(),
        }];
        if let Some(rootfs) = &images.rootfs {
            drives.push(Drive {
                path: rootfs.clone(),
                read_only: true,
                serial: "airlock-root".into(),
            });
        }
        let spec = BootSpec {
            kernel: images.kernel.vmlinux.clone(),
            initrd: images.tiny.initrd.clone(),
            cmdline: String::new(),
            cpus: machine.cpus,
            memory_mib: machine.memory_mib,
            state_dir: state.path().to_path_buf(),
            accel: machine.accel,
            console_log: state.path().join("console.log"),
            engine_log: state.path().join("qemu.log"),
            vsock_socket: backend.socket.clone(),
            fs_devices,
            drives,
            host_limits: Some((
                state.id().to_string(),
                airlock_vm::cgroup::Limits::for_engine(machine.cpus, machine.memory_mib),
                machine.require_host_limits,
            )),
        };
        airlock_vm::cgroup::sweep();
        let mut vm = match engine.boot(&spec) {
            Ok(vm) => vm,
            Err(e) => {
                backend.stop().await;
                for slot in fs {
                    slot.stop(Duration::from_secs(1)).await;
                }
                return Err(e.into());
            }
        };
        let engine_start = t0.elapsed();
        tracing::debug!(state = %state.path().display(), pid = vm.pid(), "vm booting");

        let accept = async {
            let (stream, _) = listener.accept().await.map_err(|source| SandboxError::Io {
                context: "accepting the guest's control connection",
                source,
            })?;
            Control::handshake(stream, recorder.clone()).await
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(machine.boot_timeout, accept) => match r {
                Ok(r) => r,
                Err(_) => Err(SandboxError::BootTimeout { secs: machine.boot_timeout.as_secs(), console: tail(&spec.console_log, CONSOLE_TAIL) }),
            },
            status = vm.wait() => Err(match status {
                Ok(status) => SandboxError::BootExited {
                    status: status.to_string(),
                    hint: "check the engine log below; run `airlock doctor` to check the host",
                    detail: format!("{}\n--- console ---\n{}", tail(&spec.engine_log, CONSOLE_TAIL), tail(&spec.console_log, CONSOLE_TAIL)),
                },
                Err(e) => SandboxError::Engine(e),
            }),
        };
        let outcome = outcome.and_then(|(control, ready)| {
            if ready.protocol == PROTOCOL_VERSION {
                Ok((control, ready))
            } else {
                Err(SandboxError::Protocol(format!(
                    "guest speaks protocol {}, host {PROTOCOL_VERSION}",
                    ready.protocol
                )))
            }
        });
        let (control, ready) = match outcome {
            Ok(v) => v,
            Err(e) => {
                let _ = vm.stop(Duration::ZERO).await;
                backend.stop().await;
                for slot in fs {
                    slot.stop(Duration::from_secs(1)).await;
                }
                return Err(e);
            }
        };
        let Ready {
            kernel_release,
            uptime_ms,
            ..
        } = ready;
        let timings = StartTimings {
            engine_start_ms: ms(engine_start),
            guest_ready_ms: ms(t0.elapsed().saturating_sub(engine_start)),
            guest_uptime_ms: uptime_ms,
        };
        Ok(Sandbox {
            id: state.id().to_string(),
            state,
            backend,
            vm,
            control,
            recorder,
            stats_task: None,
            fs,
            egress: None,
            machine: machine.clone(),
            booted: Instant::now(),
            bound: false,
            kernel_release,
            timings,
        })
    }

    /// Starts the egress gateway with `config`'s policy, binds each share to a filesystem
    /// gateway and mounts it in the guest; returns the `sandbox.bind` record to write.
    async fn bind(&mut self, config: &SandboxConfig) -> Result<Event, SandboxError> {
        if self.bound {
            return Err(SandboxError::Gateway("the sandbox is already bound".into()));
        }
        if config.shares.len() > self.fs.len() {
            return Err(SandboxError::Gateway(format!(
                "{} shares, but the guest has {} filesystem devices",
                config.shares.len(),
                self.fs.len()
            )));
        }
        self.bound = true;
        let t0 = Instant::now();
        // The egress gateway, in a jailed process of its own: the guest's 127.0.0.1:3128
        // tunnels arrive on this listener, which it inherits.
        let listener = self
            .backend
            .listen(PROXY_PORT)?
            .into_std()
            .map_err(|source| SandboxError::Io {
                context: "preparing the egress listener",
                source,
            })?;
        let dns = match config.resolver.spec() {
            Some(airlock_net::ResolverSpec::System) => None,
            Some(airlock_net::ResolverSpec::Dns(server)) => Some(server),
            None => {
                return Err(SandboxError::Gateway(
                    "the resolver cannot be rebuilt in the egress gateway process".into(),
                ));
            }
        };
        let spec = crate::gateway::egress::EgressSpec {
            policy: crate::gateway::PolicyText::of(&config.policy),
            dns,
            tls_ports: config.tls_ports.clone(),
        };
        let spec = serde_json::to_vec(&spec)
            .map_err(|e| SandboxError::Gateway(format!("egress spec: {e}")))?;
        let sink = self.recorder.clone();
        self.egress = Some(
            crate::gateway::GatewayProcess::spawn(
                "egress",
                spec,
                Some(std::os::fd::OwnedFd::from(listener)),
                &self.state.path().join("egress.log"),
                move |line| match crate::gateway::egress::NetLine::parse(line) {
                    Some(l) => {
                        if let Some(r) = sink.get() {
                            r.record(l.to_event());
                        }
                    }
                    None => tracing::warn!("malformed line from the egress gateway"),
                },
            )
            .map_err(|e| SandboxError::Gateway(format!("starting the egress gateway: {e}")))?,
        );
        for (i, share) in config.shares.iter().enumerate() {
            let bind = crate::gateway::fs::FsBind::new(
                &config.policy,
                share,
                owner_map(&share.host_dir)
                    .map(|m| [m.guest_uid, m.guest_gid, m.host_uid, m.host_gid]),
            );
            let slot = self
                .fs
                .get_mut(i)
                .ok_or_else(|| SandboxError::Gateway("missing filesystem device".into()))?;
            slot.bind(&bind).await.map_err(|message| {
                SandboxError::Gateway(format!("fs gateway for {}: {message}", share.guest_path))
            })?;
            let read_only = share.mode == airlock_policy::MountMode::Ro;
            self.control
                .mount(&format!("fs{i}"), &share.guest_path, read_only)
                .await?;
        }
        let shares: Vec<String> = config
            .shares
            .iter()
            .map(|s| {
                format!(
                    "{} at {} ({})",
                    s.host_dir.display(),
                    s.guest_path,
                    s.mode.as_str()
                )
            })
            .collect();
        let source = config.policy.source();
        Ok(Event::new(Source::Host, kind::SANDBOX_BIND)
            .with_decision(Decision::Allow)
            .with_detail(format!(
                "policy {} (sha256 {}); shares: {}; bound in {:.0} ms",
                source.origin.display(),
                sha256_hex(source.text.as_bytes()),
                if shares.is_empty() {
                    "none".to_string()
                } else {
                    shares.join(", ")
                },
                ms(t0.elapsed())
            )))
    }

    /// Records the binding and starts publishing counters for `airlock stats`.
    fn finish_bind(&mut self, bind: Event) {
        let Some(r) = self.recorder.get().cloned() else {
            return;
        };
        r.record(bind);
        let (id, path, pid) = (
            self.id.clone(),
            self.state.path().join("stats.json"),
            self.vm.pid(),
        );
        self.stats_task = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Ok(json) = serde_json::to_vec(&r.stats(&id, pid)) {
                    let tmp = path.with_extension("json.tmp");
                    if std::fs::write(&tmp, json).is_ok() {
                        let _ = std::fs::rename(&tmp, &path);
                    }
                }
            }
        }));
    }

    /// The sandbox id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The state dir.
    pub fn state_dir(&self) -> &std::path::Path {
        self.state.path()
    }

    /// Host pids of the processes this sandbox runs (engine, vsock backend, gateways).
    pub fn pids(&self) -> Vec<u32> {
        [
            self.vm.pid(),
            self.backend.pid(),
            self.egress.as_ref().and_then(|e| e.pid()),
        ]
        .into_iter()
        .chain(self.fs.iter().map(|g| g.pid()))
        .flatten()
        .collect()
    }

    /// Runs one command in the guest, bridging `io`; returns how it ended.
    pub async fn exec(
        &self,
        request: ExecRequest,
        io: ExecIo,
    ) -> Result<ExecOutcome, SandboxError> {
        if let Some(r) = self.recorder.get() {
            r.record(
                Event::new(Source::Host, kind::PROC_EXEC)
                    .with_decision(Decision::Allow)
                    .with_proc(ProcInfo {
                        argv: request.argv.clone(),
                        cwd: request.cwd.clone(),
                        ..ProcInfo::default()
                    })
                    .with_detail(format!(
                        "exec request: user {}, seccomp {:?}, tty {}",
                        request.user.as_deref().unwrap_or("root"),
                        request.seccomp,
                        request.tty.is_some()
                    )),
            );
        }
        let stream = self.backend.connect(EXEC_PORT).await?;
        let outcome = exec::run(stream, request, io).await;
        if let Some(r) = self.recorder.get() {
            if let Ok(ExecOutcome::Exited { oom_kills, .. }) = &outcome
                && *oom_kills > 0
            {
                r.record(
                    Event::new(Source::Guest, kind::PROC_OOM)
                        .with_decision(Decision::Deny)
                        .with_detail(format!(
                            "the guest kernel's OOM killer ended {oom_kills} process(es) of this \
                             command (guest memory {} MiB)",
                            self.machine.memory_mib
                        )),
                );
            }
            let ev = Event::new(Source::Host, kind::PROC_EXIT);
            r.record(match &outcome {
                Ok(ExecOutcome::Exited {
                    status: ExitStatus::Code { code },
                    ..
                }) => ev.with_proc(ProcInfo {
                    exit: Some(*code),
                    ..ProcInfo::default()
                }),
                Ok(ExecOutcome::Exited {
                    status: ExitStatus::Signal { signal },
                    ..
                }) => ev.with_proc(ProcInfo {
                    signal: Some(*signal),
                    ..ProcInfo::default()
                }),
                Ok(ExecOutcome::SpawnFailed { reason, message }) => ev
                    .with_decision(Decision::Error)
                    .with_detail(format!("spawn failed ({reason:?}): {message}")),
                Err(e) => ev
                    .with_decision(Decision::Error)
                    .with_detail(format!("{e:#}")),
            });
        }
        outcome
    }

    /// The audit recorder, if this sandbox records.
    pub fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.recorder.get()
    }

    /// Stops the guest and everything the sandbox started, and removes the state dir unless kept.
    /// `reason` goes into the `sandbox.end` record.
    pub async fn shutdown(mut self, reason: &str) -> Result<(), SandboxError> {
        let stopped = self.teardown().await;
        if let Some(r) = self.recorder.get() {
            r.record(
                Event::new(Source::Host, kind::SANDBOX_END)
                    .with_decision(Decision::Allow)
                    .with_detail(reason.to_string()),
            );
            r.finish()?;
        }
        self.state.finish()?;
        stopped.map_err(SandboxError::Engine)
    }

    /// Ends a sandbox that failed to start or be claimed: stops everything, seals nothing (the
    /// caller records why), removes the state dir.
    async fn shutdown_quiet(mut self) -> Result<(), SandboxError> {
        let _ = self.teardown().await;
        if let Some(r) = self.recorder.get() {
            r.finish()?;
        }
        self.state.finish()
    }

    /// Stops the guest, the engine and every helper process; the audit log stays open.
    async fn teardown(&mut self) -> Result<(), EngineError> {
        if let Some(t) = self.stats_task.take() {
            t.abort();
        }
        self.control.shutdown(Duration::from_secs(2)).await;
        let stopped = self.vm.stop(Duration::from_secs(3)).await;
        // The helpers stop together: each waits on its own process.
        let mut helpers = tokio::task::JoinSet::new();
        for gw in self.fs.drain(..) {
            helpers.spawn(gw.stop(Duration::from_secs(2)));
        }
        if let Some(egress) = self.egress.take() {
            // Open tunnels are recorded as they close; give them a moment, then cut them.
            helpers.spawn(egress.stop(Duration::from_secs(2)));
        }
        self.backend.stop().await;
        while helpers.join_next().await.is_some() {}
        // The backend is gone, so the control stream ends: read what the guest sent before.
        self.control.drain(Duration::from_secs(2)).await;
        stopped
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Maps the guest's `agent` (uid/gid 1000) onto the owner of a shared directory, so the agent can
/// work on the user's files and what it creates belongs to that user on the host.
/// Where the workload may write, for the guest's Landlock ruleset: its shares, the temporary
/// directories, its home (`~`) and `/dev` (terminals, `/dev/null`). `None` when the policy turns
/// `no_new_privs` off, which Landlock needs for an unprivileged workload.
pub fn landlock_dirs(policy: &airlock_policy::Policy) -> Option<Vec<String>> {
    if !policy.process().no_new_privs {
        return None;
    }
    let mut dirs: Vec<String> = ["/tmp", "/var/tmp", "/dev", "~"]
        .into_iter()
        .map(String::from)
        .collect();
    dirs.extend(
        policy
            .mounts()
            .iter()
            .filter(|m| m.mode != airlock_policy::MountMode::Ro)
            .map(|m| m.guest.clone()),
    );
    Some(dirs)
}

fn owner_map(dir: &std::path::Path) -> Option<airlock_fs::OwnerMap> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    Some(airlock_fs::OwnerMap {
        guest_uid: AGENT_ID,
        guest_gid: AGENT_ID,
        host_uid: meta.uid(),
        host_gid: meta.gid(),
    })
}

/// uid and gid of the `agent` account in airlock's images.
const AGENT_ID: u32 = 1000;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The last `n` lines of a log file, with control characters escaped (guest output is untrusted).
pub fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| {
            l.chars()
                .flat_map(|c| {
                    if c.is_control() && c != '\t' {
                        c.escape_default().collect::<Vec<_>>()
                    } else {
                        vec![c]
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
