//! `containerd.task.v2.Task` for [`Service`]: each request checked, answered from the pod's
//! state, and announced to containerd as its event.

use crate::process::{Exit, Phase, Proc, Stdio};
use crate::service::{Res, Service, error, not_found, stamp, status, unmount};
use crate::spec;
use async_trait::async_trait;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskIO, TaskStart,
};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::Code;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use containerd_shim::protos::{api, cgroups::metrics};

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> Res<api::CreateTaskResponse> {
        let pid = self.create_in(req.clone()).await?;
        let event = TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            }),
            pid,
            ..Default::default()
        };
        self.publish(topics::TASK_CREATE_EVENT_TOPIC, Box::new(event))
            .await;
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, _ctx: &TtrpcContext, req: api::StartRequest) -> Res<api::StartResponse> {
        let pid = self.start_in(&req.id, &req.exec_id).await?;
        if req.exec_id.is_empty() {
            let event = TaskStart {
                container_id: req.id.clone(),
                pid,
                ..Default::default()
            };
            self.publish(topics::TASK_START_EVENT_TOPIC, Box::new(event))
                .await;
        } else {
            let event = TaskExecStarted {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                pid,
                ..Default::default()
            };
            self.publish(topics::TASK_EXEC_STARTED_EVENT_TOPIC, Box::new(event))
                .await;
        }
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> Res<api::Empty> {
        let process = spec::exec_process(&req.spec.value)
            .map_err(|e| error(Code::INVALID_ARGUMENT, e.to_string()))?;
        {
            let mut guard = self.state.lock().await;
            let container = guard
                .as_mut()
                .and_then(|p| p.containers.get_mut(&req.id))
                .ok_or_else(|| not_found(&format!("container {}", req.id)))?;
            if req.exec_id.is_empty() || container.procs.contains_key(&req.exec_id) {
                return Err(error(
                    Code::ALREADY_EXISTS,
                    format!("exec id {:?} is empty or in use", req.exec_id),
                ));
            }
            let stdio = Stdio {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            };
            let request = crate::pod::request(&container.template, &process);
            container
                .procs
                .insert(req.exec_id.clone(), Proc::new(request, stdio));
        }
        let event = TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        };
        self.publish(topics::TASK_EXEC_ADDED_EVENT_TOPIC, Box::new(event))
            .await;
        Ok(api::Empty::default())
    }

    async fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> Res<api::StateResponse> {
        let bundle = {
            let guard = self.state.lock().await;
            guard
                .as_ref()
                .and_then(|p| p.containers.get(&req.id))
                .map(|c| c.bundle.display().to_string())
                .unwrap_or_default()
        };
        self.with_proc(&req.id, &req.exec_id, |p, pid| {
            let exit = p.exit();
            Ok(api::StateResponse {
                id: if req.exec_id.is_empty() {
                    req.id.clone()
                } else {
                    req.exec_id.clone()
                },
                bundle,
                pid,
                status: status(p.phase()).into(),
                stdin: p.stdio.stdin.clone(),
                stdout: p.stdio.stdout.clone(),
                stderr: p.stdio.stderr.clone(),
                terminal: p.stdio.terminal,
                exit_status: exit.map_or(0, |e| e.status),
                exited_at: stamp(exit),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            })
        })
        .await
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> Res<api::Empty> {
        let signal = i32::try_from(req.signal)
            .ok()
            .filter(|s| (1..=64).contains(s))
            .ok_or_else(|| {
                error(
                    Code::INVALID_ARGUMENT,
                    format!("signal {} is out of range 1..=64", req.signal),
                )
            })?;
        let mut unstarted = None;
        {
            let guard = self.state.lock().await;
            let pod = guard.as_ref().ok_or_else(|| not_found(&req.id))?;
            let container = pod
                .containers
                .get(&req.id)
                .ok_or_else(|| not_found(&format!("container {}", req.id)))?;
            if req.all {
                for p in container.procs.values() {
                    p.signal(signal);
                }
            } else {
                let p = container
                    .procs
                    .get(&req.exec_id)
                    .ok_or_else(|| not_found(&format!("process {}/{}", req.id, req.exec_id)))?;
                match p.phase() {
                    Phase::Running => {
                        p.signal(signal);
                    }
                    Phase::Created => {
                        // Never started: it ends here, as a killed runc container would.
                        let status = 128 + req.signal;
                        p.end_unstarted(status);
                        unstarted = Some((pod.engine_pid, Exit::now(status)));
                    }
                    Phase::Stopped => {
                        return Err(not_found(&format!(
                            "process {}/{} already finished",
                            req.id, req.exec_id
                        )));
                    }
                }
            }
        }
        if let Some((pid, exit)) = unstarted {
            self.exited(&req.id, &req.exec_id, pid, exit, false).await;
        }
        Ok(api::Empty::default())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> Res<api::WaitResponse> {
        let mut rx = self
            .with_proc(&req.id, &req.exec_id, |p, _| Ok(p.watch_exit()))
            .await?;
        let exit = rx
            .wait_for(Option::is_some)
            .await
            .map(|e| *e)
            .map_err(|_| error(Code::INTERNAL, "the process's state was dropped"))?;
        Ok(api::WaitResponse {
            exit_status: exit.map_or(0, |e| e.status),
            exited_at: stamp(exit),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> Res<api::DeleteResponse> {
        let mut guard = self.state.lock().await;
        let pod = guard.as_mut().ok_or_else(|| not_found(&req.id))?;
        let pid = pod.engine_pid;
        let container = pod
            .containers
            .get_mut(&req.id)
            .ok_or_else(|| not_found(&format!("container {}", req.id)))?;
        let running = |p: &Proc| p.phase() == Phase::Running;
        if req.exec_id.is_empty() {
            if container.procs.values().any(running) {
                return Err(error(
                    Code::FAILED_PRECONDITION,
                    format!(
                        "container {} still has running processes: kill them first",
                        req.id
                    ),
                ));
            }
        } else if container.procs.get(&req.exec_id).is_some_and(running) {
            return Err(error(
                Code::FAILED_PRECONDITION,
                format!("process {}/{} is running", req.id, req.exec_id),
            ));
        }
        let exit = if req.exec_id.is_empty() {
            let Some(c) = pod.containers.remove(&req.id) else {
                return Err(not_found(&req.id));
            };
            if let Some(root) = &c.mounted_root {
                unmount(root);
            }
            let exit = c.procs.get("").and_then(Proc::exit);
            if pod.containers.is_empty()
                && let Some(p) = guard.take()
            {
                p.shutdown("containerd deleted the last container").await;
            }
            exit
        } else {
            container
                .procs
                .remove(&req.exec_id)
                .ok_or_else(|| not_found(&format!("process {}/{}", req.id, req.exec_id)))?
                .exit()
        };
        drop(guard);
        let status = exit.map_or(0, |e| e.status);
        if req.exec_id.is_empty() {
            let event = TaskDelete {
                container_id: req.id.clone(),
                pid,
                exit_status: status,
                exited_at: stamp(exit),
                id: req.id.clone(),
                ..Default::default()
            };
            self.publish(topics::TASK_DELETE_EVENT_TOPIC, Box::new(event))
                .await;
        }
        Ok(api::DeleteResponse {
            pid,
            exit_status: status,
            exited_at: stamp(exit),
            ..Default::default()
        })
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> Res<api::PidsResponse> {
        let guard = self.state.lock().await;
        let container = guard
            .as_ref()
            .and_then(|p| p.containers.get(&req.id))
            .ok_or_else(|| not_found(&format!("container {}", req.id)))?;
        let processes = container
            .procs
            .values()
            .filter(|p| p.phase() == Phase::Running)
            .filter_map(|p| p.guest_pid)
            .map(|pid| api::ProcessInfo {
                pid,
                ..Default::default()
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> Res<api::Empty> {
        let size = airlock_proto::WindowSize {
            rows: u16::try_from(req.height).unwrap_or(u16::MAX),
            cols: u16::try_from(req.width).unwrap_or(u16::MAX),
        };
        self.with_proc(&req.id, &req.exec_id, |p, _| {
            // A terminal that reports no size (0x0) keeps the one the process has.
            if size.rows == 0 || size.cols == 0 {
                return Ok(api::Empty::default());
            }
            if p.stdio.terminal && p.resize(size) {
                Ok(api::Empty::default())
            } else {
                Err(error(
                    Code::FAILED_PRECONDITION,
                    format!("process {}/{} has no running terminal", req.id, req.exec_id),
                ))
            }
        })
        .await
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> Res<api::Empty> {
        self.with_proc(&req.id, &req.exec_id, |p, _| {
            p.close_stdin();
            Ok(api::Empty::default())
        })
        .await
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: api::StatsRequest) -> Res<api::StatsResponse> {
        let guard = self.state.lock().await;
        let pod = guard.as_ref().ok_or_else(|| not_found(&req.id))?;
        let container = pod
            .containers
            .get(&req.id)
            .ok_or_else(|| not_found(&format!("container {}", req.id)))?;
        let running = container
            .procs
            .values()
            .filter(|p| p.phase() == Phase::Running)
            .count();
        let stats = pod.stats();
        let m = metrics::Metrics {
            pids: MessageField::some(metrics::PidsStat {
                current: running as u64,
                limit: container.template.pids_max.map_or(0, u64::from),
                ..Default::default()
            }),
            cpu: MessageField::some(metrics::CPUStat {
                usage: MessageField::some(metrics::CPUUsage {
                    total: stats
                        .as_ref()
                        .and_then(|s| s.cpu_seconds)
                        .map_or(0, |s| (s * 1e9) as u64),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            memory: MessageField::some(metrics::MemoryStat {
                usage: MessageField::some(metrics::MemoryEntry {
                    usage: stats.as_ref().and_then(|s| s.memory_bytes).unwrap_or(0),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let any = containerd_shim::util::convert_to_any(Box::new(m))
            .map_err(|e| error(Code::INTERNAL, e.to_string()))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ConnectRequest,
    ) -> Res<api::ConnectResponse> {
        let task_pid = self.state.lock().await.as_ref().map_or(0, |p| p.engine_pid);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, req: api::ShutdownRequest) -> Res<api::Empty> {
        let mut guard = self.state.lock().await;
        if !req.now && guard.as_ref().is_some_and(|p| !p.containers.is_empty()) {
            return Ok(api::Empty::default());
        }
        if let Some(p) = guard.take() {
            p.shutdown("containerd shut the shim down").await;
        }
        self.exit.signal();
        Ok(api::Empty::default())
    }
}
