//! The task service containerd drives (`containerd.task.v2.Task` over ttrpc): one per shim
//! process, which holds one pod's VM. Requests that change the pod take its lock; a running
//! process's I/O and exit are handled by tasks of their own, so `Wait` and `Kill` never wait
//! behind a long `Create`.

use crate::config::ShimConfig;
use crate::pod::{Pod, check_id};
use crate::process::{Exit, Phase, Proc, Stdio};
use crate::spec::{ContainerSpec, Role};
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::api;
use containerd_shim::protos::events::task::TaskExit;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{MessageDyn, MessageField};
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::publisher::RemotePublisher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// The task service of one shim process.
#[derive(Clone)]
pub struct Service {
    pub(crate) state: Arc<Mutex<Option<Pod>>>,
    publisher: Arc<RemotePublisher>,
    namespace: String,
    config: Arc<ShimConfig>,
    /// Why this shim refuses every container (its configuration is invalid).
    refusal: Option<String>,
    pub(crate) exit: Arc<ExitSignal>,
}

pub(crate) fn error(code: Code, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message.into()))
}

pub(crate) fn not_found(what: &str) -> ttrpc::Error {
    error(Code::NOT_FOUND, format!("{what}: not found"))
}

fn timestamp(at: SystemTime) -> Timestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        ..Default::default()
    }
}

pub(crate) fn stamp(exit: Option<Exit>) -> MessageField<Timestamp> {
    exit.map(|e| timestamp(e.at)).into()
}

pub(crate) type Res<T> = ttrpc::Result<T>;

impl Service {
    /// A service publishing events to containerd through `publisher`.
    pub fn new(
        publisher: RemotePublisher,
        namespace: String,
        config: ShimConfig,
        exit: Arc<ExitSignal>,
    ) -> Service {
        Service {
            state: Arc::new(Mutex::new(None)),
            publisher: Arc::new(publisher),
            namespace,
            config: Arc::new(config),
            refusal: None,
            exit,
        }
    }

    /// A service that refuses every container with `why` (an invalid shim configuration).
    pub fn refusing(
        publisher: RemotePublisher,
        namespace: String,
        why: String,
        exit: Arc<ExitSignal>,
    ) -> Service {
        Service {
            refusal: Some(why),
            ..Service::new(publisher, namespace, ShimConfig::default(), exit)
        }
    }

    pub(crate) async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        publish(&self.publisher, &self.namespace, topic, event).await;
    }

    pub(crate) async fn create_in(&self, req: api::CreateTaskRequest) -> Result<u32, ttrpc::Error> {
        if let Some(why) = &self.refusal {
            return Err(error(
                Code::FAILED_PRECONDITION,
                format!("airlock shim configuration: {why}"),
            ));
        }
        let id = req.id.as_str();
        check_id(id).map_err(|e| error(Code::INVALID_ARGUMENT, e.to_string()))?;
        let bundle = PathBuf::from(&req.bundle);
        let spec = ContainerSpec::read(&bundle)
            .map_err(|e| error(Code::INVALID_ARGUMENT, e.to_string()))?;
        let mut guard = self.state.lock().await;
        if guard
            .as_ref()
            .is_some_and(|p| p.containers.contains_key(id))
        {
            return Err(error(
                Code::ALREADY_EXISTS,
                format!("container {id} exists"),
            ));
        }
        let boots = guard.is_none();
        match (&spec.role, boots) {
            (Role::PodMember { pod }, true) => {
                return Err(error(
                    Code::FAILED_PRECONDITION,
                    format!(
                        "pod {pod} has no VM in this shim: its sandbox container must come first"
                    ),
                ));
            }
            (Role::Alone | Role::PodSandbox, false) => {
                return Err(error(
                    Code::FAILED_PRECONDITION,
                    "this shim's VM already runs a pod; a second sandbox container cannot join it",
                ));
            }
            _ => {}
        }
        // The root: mounted from containerd's snapshot, or a directory the bundle names.
        let (root, mounted) = if req.rootfs.is_empty() {
            let root = if spec.root.is_absolute() {
                spec.root.clone()
            } else {
                bundle.join(&spec.root)
            };
            (root, None)
        } else {
            let target = bundle.join("rootfs");
            for m in &req.rootfs {
                containerd_shim::asynchronous::util::mount_rootfs(m, &target)
                    .await
                    .map_err(|e| {
                        error(
                            Code::INTERNAL,
                            format!("mounting the rootfs ({}): {e}", m.type_),
                        )
                    })?;
            }
            (target.clone(), Some(target))
        };
        let unmount_on_error = |e: ttrpc::Error| {
            if let Some(t) = &mounted {
                unmount(t);
            }
            e
        };
        if boots {
            tracing::info!(id, "booting the VM");
            let pod = Pod::boot(&self.config, &self.namespace, id, &spec)
                .await
                .map_err(|e| {
                    unmount_on_error(error(Code::FAILED_PRECONDITION, format!("{e:#}")))
                })?;
            *guard = Some(pod);
        }
        let Some(pod) = guard.as_mut() else {
            return Err(unmount_on_error(error(Code::INTERNAL, "no pod")));
        };
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let added = pod
            .add_container(id, &bundle, &root, mounted.clone(), &spec, stdio)
            .await;
        if let Err(e) = added {
            let message = format!("{e:#}");
            if pod.containers.is_empty()
                && let Some(p) = guard.take()
            {
                p.shutdown("the container could not be created").await;
            }
            return Err(unmount_on_error(error(Code::FAILED_PRECONDITION, message)));
        }
        Ok(pod.engine_pid)
    }

    /// Starts process `exec_id` of `id`; returns the pid containerd sees.
    pub(crate) async fn start_in(&self, id: &str, exec_id: &str) -> Result<u32, ttrpc::Error> {
        let (executor, request, running, pid) = {
            let mut guard = self.state.lock().await;
            let pod = guard.as_mut().ok_or_else(|| not_found(id))?;
            let pid = pod.engine_pid;
            let executor = pod.executor.clone();
            let proc = pod
                .containers
                .get_mut(id)
                .and_then(|c| c.procs.get_mut(exec_id))
                .ok_or_else(|| not_found(&format!("process {id}/{exec_id}")))?;
            let running = proc
                .start()
                .await
                .map_err(|e| error(Code::FAILED_PRECONDITION, e))?;
            (executor, proc.request.clone(), running, pid)
        };
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let service = self.clone();
        let (cid, eid) = (id.to_string(), exec_id.to_string());
        tokio::spawn(async move {
            let (exit, outcome) = crate::process::run(executor, request, running, started_tx).await;
            let (spawn_error, never_ran) = match &outcome {
                Ok(airlock_supervisor::ExecOutcome::SpawnFailed { message, .. }) => {
                    (Some(message.clone()), true)
                }
                Err(e) => (Some(format!("{e:#}")), false),
                Ok(_) => (None, false),
            };
            let _ = done_tx.send(spawn_error);
            // A process that never ran is reported by Start's error, not by an exit event.
            service.exited(&cid, &eid, pid, exit, never_ran).await;
        });
        match started_rx.await {
            Ok(guest_pid) => {
                let mut guard = self.state.lock().await;
                if let Some(p) = guard
                    .as_mut()
                    .and_then(|pod| pod.containers.get_mut(id))
                    .and_then(|c| c.procs.get_mut(exec_id))
                {
                    p.guest_pid = Some(guest_pid);
                }
                Ok(pid)
            }
            Err(_) => {
                let why = done_rx.await.ok().flatten().unwrap_or_default();
                Err(error(
                    Code::FAILED_PRECONDITION,
                    format!("starting the process in the VM failed: {why}"),
                ))
            }
        }
    }

    /// A process ended: announce it, and when a container's init ends, end its execs too (as
    /// a container's pid namespace would).
    pub(crate) async fn exited(
        &self,
        id: &str,
        exec_id: &str,
        pid: u32,
        exit: Exit,
        unannounced: bool,
    ) {
        if exec_id.is_empty() {
            let mut guard = self.state.lock().await;
            if let Some(pod) = guard.as_mut() {
                if let Some(c) = pod.containers.get(id) {
                    for p in c.procs.values() {
                        p.signal(libc::SIGKILL);
                    }
                }
                // A lone container's VM has nothing left to run: free it now, as runc frees
                // a container's processes when its init ends.
                if pod.alone {
                    pod.stop_vm("the container's init process ended").await;
                }
            }
        }
        if unannounced {
            return;
        }
        let event = TaskExit {
            container_id: id.to_string(),
            id: if exec_id.is_empty() { id } else { exec_id }.to_string(),
            pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        };
        self.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(event))
            .await;
    }

    pub(crate) async fn with_proc<T>(
        &self,
        id: &str,
        exec_id: &str,
        f: impl FnOnce(&mut Proc, u32) -> Res<T>,
    ) -> Res<T> {
        let mut guard = self.state.lock().await;
        let pod = guard.as_mut().ok_or_else(|| not_found(id))?;
        let pid = pod.engine_pid;
        let proc = pod
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found(&format!("container {id}")))?
            .procs
            .get_mut(exec_id)
            .ok_or_else(|| not_found(&format!("process {id}/{exec_id}")))?;
        f(proc, pid)
    }
}

async fn publish(
    publisher: &RemotePublisher,
    namespace: &str,
    topic: &str,
    event: Box<dyn MessageDyn>,
) {
    if let Err(e) = publisher
        .publish(ttrpc::context::Context::default(), topic, namespace, event)
        .await
    {
        tracing::warn!(topic, "publishing an event to containerd: {e}");
    }
}

pub(crate) fn unmount(target: &Path) {
    if let Some(t) = target.to_str()
        && let Err(e) = containerd_shim::mount::umount_recursive(Some(t), libc::MNT_DETACH)
    {
        tracing::warn!("unmounting {t}: {e}");
    }
}

pub(crate) fn status(phase: Phase) -> api::Status {
    match phase {
        Phase::Created => api::Status::CREATED,
        Phase::Running => api::Status::RUNNING,
        Phase::Stopped => api::Status::STOPPED,
    }
}
