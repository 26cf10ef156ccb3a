//! One sandbox's lifecycle: state dir, vsock backend, VM, guest readiness, exec, teardown.
//!
//! Everything a sandbox starts is tied to its [`Sandbox`] value: helper processes die with
//! airlock (PDEATHSIG) and are killed on drop, and the state dir is removed on shutdown unless
//! `keep` was asked for. A failed start tears down what it had started before returning.

use crate::config::{Images, Machine, RecorderSlot, SandboxConfig, StartTimings};
use crate::control::{Control, Ready};
use crate::exec::{ExecIo, ExecOutcome};
use crate::state::StateDir;
use crate::{Recorder, SandboxError, disk};
use airlock_audit::{Decision, Event, Source, kind};
use airlock_proto::{CONTROL_PORT, ExecRequest, PROTOCOL_VERSION};
use airlock_vm::qemu::QemuEngine;
use airlock_vm::vsock::{self, VsockBackend};
use airlock_vm::{BootSpec, Drive, Engine, EngineError, Vm};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Lines of the guest console shown when the guest fails to come up.
const CONSOLE_TAIL: usize = 20;

/// A running sandbox.
pub struct Sandbox {
    /// The sandbox id: the state dir's name, or for a claimed warm guest the id it was claimed
    /// for.
    pub(crate) id: String,
    pub(crate) state: StateDir,
    pub(crate) backend: VsockBackend,
    pub(crate) vm: airlock_vm::qemu::QemuVm,
    pub(crate) control: Control,
    pub(crate) recorder: RecorderSlot,
    pub(crate) stats_task: Option<tokio::task::JoinHandle<()>>,
    /// Refuses (and records) later connections to the control port.
    pub(crate) control_guard: Option<tokio::task::JoinHandle<()>>,
    pub(crate) fs: Vec<airlock_fs::client::FsSlot>,
    pub(crate) egress: Option<airlock_jail::gateway::GatewayProcess>,
    pub(crate) machine: Machine,
    pub(crate) booted: Instant,
    pub(crate) bound: bool,
    /// Guest kernel release as the guest reported it.
    pub kernel_release: String,
    /// Start phases.
    pub timings: StartTimings,
    /// `sandbox{id=...}`: every log line of work done for this sandbox is in it.
    pub(crate) span: tracing::Span,
}

impl Sandbox {
    /// Boots a sandbox, binds `config`'s policy and shares to it, and waits until its agent is
    /// ready.
    pub async fn start(config: &SandboxConfig, images: &Images) -> Result<Sandbox, SandboxError> {
        let state = match &config.id {
            Some(id) => StateDir::create_with(id, config.keep)?,
            None => StateDir::create(config.keep)?,
        };
        let span = sandbox_span(state.id());
        Self::start_in(config, images, state, span.clone())
            .instrument(span)
            .await
    }

    async fn start_in(
        config: &SandboxConfig,
        images: &Images,
        state: StateDir,
        span: tracing::Span,
    ) -> Result<Sandbox, SandboxError> {
        let recorder: RecorderSlot = Arc::default();
        if let Some(a) = &config.audit {
            let r = Arc::new(Recorder::open(a, state.id())?);
            let layers = crate::protections::probe();
            r.record(
                Event::new(Source::Host, kind::SANDBOX_START)
                    .with_decision(Decision::Allow)
                    .with_detail(format!(
                        "{}; {} cpus, {} MiB, accel {} ({}); layers: {}",
                        config.description,
                        config.cpus,
                        config.memory_mib,
                        config.accel.accel,
                        config.accel.reason,
                        crate::protections::summary(&layers)
                    )),
            );
            for e in crate::protections::layer_events(&layers) {
                r.record(e);
            }
            let _ = recorder.set(r);
        }
        let booted = Self::boot(
            &config.machine(),
            images,
            state,
            recorder.clone(),
            span,
            Some(config),
        )
        .await;
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
        let span = sandbox_span(id);
        Self::boot(machine, images, state, Arc::default(), span.clone(), None)
            .instrument(span)
            .await
    }

    /// Binds a warm guest to `config` (id, policy, shares, audit log) and records it. On
    /// failure the guest is torn down: a guest is never offered twice.
    pub async fn claim(mut self, config: &SandboxConfig) -> Result<Sandbox, SandboxError> {
        if let Some(id) = &config.id {
            // From the claim on, everything done for it is logged under the claimed id.
            self.span = sandbox_span(id);
            tracing::debug!(parent: &self.span, warm = self.state.id(), "claiming a warm guest");
        }
        let span = self.span.clone();
        self.claim_in(config).instrument(span).await
    }

    async fn claim_in(mut self, config: &SandboxConfig) -> Result<Sandbox, SandboxError> {
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
                let layers = crate::protections::probe();
                r.record(
                    Event::new(Source::Host, kind::SANDBOX_START)
                        .with_decision(Decision::Allow)
                        .with_detail(format!(
                            "{}; {} cpus, {} MiB, accel {}; warm guest {} booted {:.1} s before \
                             the claim; layers: {}",
                            config.description,
                            self.machine.cpus,
                            self.machine.memory_mib,
                            self.machine.accel,
                            self.state.id(),
                            self.booted.elapsed().as_secs_f64(),
                            crate::protections::summary(&layers)
                        )),
                );
                for e in crate::protections::layer_events(&layers) {
                    r.record(e);
                }
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

    /// Boots the guest and waits for its agent. With `early` (a cold start, whose binding is
    /// known), the egress gateway starts and the filesystem gateways are bound while the guest
    /// boots, so that binding after it only mounts the shares.
    async fn boot(
        machine: &Machine,
        images: &Images,
        state: StateDir,
        recorder: RecorderSlot,
        span: tracing::Span,
        early: Option<&SandboxConfig>,
    ) -> Result<Sandbox, SandboxError> {
        let t0 = Instant::now();
        // The disk, the vsock backend and the filesystem gateways do not depend on each other:
        // they start together.
        let disk = {
            let (path, bytes) = (state.path().join("disk.img"), machine.disk_bytes);
            tokio::task::spawn_blocking(move || disk::create(&path, bytes))
        };
        let slots = async {
            let mut fs: Vec<airlock_fs::client::FsSlot> = Vec::new();
            let mut fs_devices = Vec::new();
            // One jailed gateway process per share it may take; each learns its share at bind.
            for i in 0..machine.fs_slots {
                let sink = recorder.clone();
                let slot = airlock_fs::client::FsSlot::start(state.path(), i, move |line| {
                    match airlock_fs::FsLine::parse(line) {
                        Some(l) => {
                            if let Some(r) = sink.get() {
                                r.record(l.to_event());
                            }
                        }
                        None => {
                            tracing::warn!("malformed line from an fs gateway");
                            if let Some(r) = sink.get() {
                                r.record(crate::audit::malformed_line("fs"));
                            }
                        }
                    }
                })
                .await
                .map_err(|source| SandboxError::FsGateway {
                    what: format!("slot {i}"),
                    source,
                });
                match slot {
                    Ok(slot) => {
                        fs_devices.push((slot.socket().to_path_buf(), format!("fs{i}")));
                        fs.push(slot);
                    }
                    Err(e) => {
                        for slot in fs {
                            slot.stop(Duration::from_secs(1)).await;
                        }
                        return Err(e);
                    }
                }
            }
            Ok((fs, fs_devices))
        };
        let vsock_log = state.path().join("vsock.log");
        let (backend, slots, disk) =
            tokio::join!(VsockBackend::start(state.path(), &vsock_log), slots, disk);
        let disk = disk.unwrap_or_else(|e| {
            Err(SandboxError::Io {
                context: "creating the sandbox disk",
                source: std::io::Error::other(e),
            })
        });
        let started = match (backend, slots, disk) {
            (Ok(backend), Ok(slots), Ok(disk)) => Ok((backend, slots, disk)),
            (backend, slots, disk) => {
                let mut first = None;
                match backend {
                    Ok(mut b) => b.stop().await,
                    Err(e) => first = Some(SandboxError::from(e)),
                }
                match slots {
                    Ok((fs, _)) => {
                        for slot in fs {
                            slot.stop(Duration::from_secs(1)).await;
                        }
                    }
                    Err(e) => first = first.or(Some(e)),
                }
                Err(first.or(disk.err()))
            }
        };
        let (mut backend, (mut fs, fs_devices), disk) = match started {
            Ok(v) => v,
            Err(e) => {
                return Err(e.unwrap_or_else(|| SandboxError::Io {
                    context: "starting the sandbox",
                    source: std::io::Error::other("a start-up step failed without an error"),
                }));
            }
        };
        let located = async {
            let listener = backend.listen(CONTROL_PORT)?;
            let engine = QemuEngine::locate()?;
            Ok::<_, SandboxError>((listener, engine))
        }
        .await;
        let (listener, engine) = match located {
            Ok(v) => v,
            Err(e) => {
                backend.stop().await;
                for slot in fs {
                    slot.stop(Duration::from_secs(1)).await;
                }
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
        // The guest stacks them in this order (`airlock-layer0` lowest) above the image.
        for (i, layer) in images.layers.iter().enumerate() {
            drives.push(Drive {
                path: layer.clone(),
                read_only: true,
                serial: format!("airlock-layer{i}"),
            });
        }
        if let Some(kit) = &images.kit {
            drives.push(Drive {
                path: kit.clone(),
                read_only: true,
                serial: "airlock-kit".into(),
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
                airlock_jail::cgroup::Limits::for_engine(machine.cpus, machine.memory_mib),
                machine.require_host_limits,
            )),
        };
        airlock_jail::cgroup::sweep();
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
        let ready = async {
            tokio::select! {
            r = tokio::time::timeout(machine.boot_timeout, accept) => match r {
                Ok(r) => r,
                Err(_) => Err(SandboxError::BootTimeout { secs: machine.boot_timeout.as_secs(), console: airlock_audit::tail_lines(&spec.console_log, CONSOLE_TAIL) }),
            },
            status = vm.wait() => Err(match status {
                Ok(status) => SandboxError::BootExited {
                    status: status.to_string(),
                    hint: "check the engine log below; run `airlock doctor` to check the host",
                    detail: format!("{}\n--- console ---\n{}", airlock_audit::tail_lines(&spec.engine_log, CONSOLE_TAIL), airlock_audit::tail_lines(&spec.console_log, CONSOLE_TAIL)),
                },
                Err(e) => SandboxError::Engine(e),
            }),
            }
        };
        let prepare = async {
            let Some(config) = early else {
                return Ok(None);
            };
            let egress =
                crate::bind::start_egress(&backend, &recorder, state.path(), &span, config).await?;
            // The gateway is kept even when a slot fails to bind, so that it is stopped below.
            let bound = crate::bind::bind_slots(&mut fs, config).await;
            Ok::<_, SandboxError>(Some((egress, bound)))
        };
        let (outcome, prepared) = tokio::join!(ready, prepare);
        let (egress, outcome) = match prepared {
            Ok(None) => (None, outcome),
            // A failed boot is reported before a failed binding, as when neither could start.
            Ok(Some((egress, bound))) => (Some(egress), outcome.and_then(|v| bound.map(|()| v))),
            Err(e) => (None, outcome.and(Err(e))),
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
                if let Some(egress) = egress {
                    egress.stop(Duration::from_secs(1)).await;
                }
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
            boot,
            ..
        } = ready;
        // The control port stays taken: anything else in the guest that connects to it is
        // refused and recorded, never heard.
        let control_guard = tokio::spawn(refuse_control_connections(listener, recorder.clone()));
        let timings = StartTimings {
            engine_start_ms: crate::bind::ms(engine_start),
            guest_ready_ms: crate::bind::ms(t0.elapsed().saturating_sub(engine_start)),
            guest_uptime_ms: uptime_ms,
            guest_agent_start_ms: boot.agent_start_ms,
            guest_init_done_ms: boot.init_done_ms,
        };
        Ok(Sandbox {
            id: state.id().to_string(),
            state,
            backend,
            vm,
            control,
            recorder,
            stats_task: None,
            control_guard: Some(control_guard),
            fs,
            egress,
            machine: machine.clone(),
            booted: Instant::now(),
            bound: false,
            kernel_release,
            timings,
            span,
        })
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
        self.executor().exec(request, io, None).await
    }

    /// What runs commands in this guest, detached from the `Sandbox` value so that commands
    /// can run while it is changed (a share added).
    pub fn executor(&self) -> crate::exec::Executor {
        crate::exec::Executor {
            uds: self.backend.uds.clone(),
            recorder: self.recorder.clone(),
            span: self.span.clone(),
            memory_mib: self.machine.memory_mib,
        }
    }

    /// The VM engine's host pid, while it runs.
    pub fn engine_pid(&self) -> Option<u32> {
        self.vm.pid()
    }

    /// Live counters (engine CPU and memory, gateway operations); `None` without an audit log.
    pub fn stats(&self) -> Option<crate::Stats> {
        self.recorder
            .get()
            .map(|r| r.stats(&self.id, self.vm.pid()))
    }

    /// The audit recorder, if this sandbox records.
    pub fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.recorder.get()
    }

    /// Stops the guest and everything the sandbox started, and removes the state dir unless kept.
    /// `reason` goes into the `sandbox.end` record.
    pub async fn shutdown(self, reason: &str) -> Result<(), SandboxError> {
        let span = self.span.clone();
        self.shutdown_in(reason).instrument(span).await
    }

    async fn shutdown_in(mut self, reason: &str) -> Result<(), SandboxError> {
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
        for t in [self.stats_task.take(), self.control_guard.take()]
            .into_iter()
            .flatten()
        {
            t.abort();
        }
        // After its goodbye the guest has reported everything and synced its filesystems (the
        // shares are write-through): the rest of its power-off serves no one, so the VM is
        // stopped at once. Without a goodbye, it gets a grace period to leave by itself.
        let said_bye = self.control.shutdown(Duration::from_secs(2)).await;
        let grace = if said_bye {
            Duration::ZERO
        } else {
            Duration::from_secs(3)
        };
        let stopped = self.vm.stop(grace).await;
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

/// The span everything done for sandbox `id` runs in, so its log lines can be filtered by id.
fn sandbox_span(id: &str) -> tracing::Span {
    tracing::info_span!("sandbox", id = %id)
}

/// How many refused control connections may be closing gently at once; past that, they are
/// dropped at once (the guest's own connection may then hang, nothing else).
const REFUSED_CLOSING: usize = 8;

/// Accepts every later connection to the control port, records it as refused and closes it:
/// only the guest agent's first connection is the control connection.
async fn refuse_control_connections(listener: tokio::net::UnixListener, recorder: RecorderSlot) {
    let closing = Arc::new(tokio::sync::Semaphore::new(REFUSED_CLOSING));
    while let Ok((stream, _)) = listener.accept().await {
        // Closed gently so the guest sees its connection end (see `close_gently`).
        if let Ok(permit) = closing.clone().try_acquire_owned() {
            tokio::spawn(async move {
                vsock::close_gently(stream, vsock::GENTLE_CLOSE_TIME).await;
                drop(permit);
            });
        }
        if let Some(r) = recorder.get() {
            r.record(
                Event::new(Source::Host, kind::POLICY_DENY)
                    .with_decision(Decision::Deny)
                    .with_rule("vsock.control")
                    .with_reason("control_port_taken")
                    .with_detail(
                        "a second connection to the host's control port from inside the guest \
                         was refused",
                    ),
            );
        }
    }
}
