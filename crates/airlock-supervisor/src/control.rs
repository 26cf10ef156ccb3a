//! The host end of the control connection that the guest opens when it is ready: the `ready`
//! handshake, then requests (mount, shutdown) answered by id, read by one background task.

use super::SandboxError;
use airlock_audit::{Decision, Event, ProcInfo, Source, kind};
use airlock_proto::codec::Decoder;
use airlock_proto::{ControlRequest, ExitStatus, Frame, GuestEvent, encode};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Result<(), String>>>>>;

/// What the guest said in its `ready` message.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Protocol version.
    pub protocol: u32,
    /// Guest kernel release.
    pub kernel_release: String,
    /// Guest uptime at ready, ms.
    pub uptime_ms: u64,
    /// The guest's stages before ready (its word: shown, never used for decisions).
    pub boot: airlock_proto::BootStages,
}

/// The control connection.
pub struct Control {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU32,
    reader: tokio::task::JoinHandle<()>,
    bye: Arc<tokio::sync::Notify>,
}

impl Control {
    /// Reads the guest's `ready`, then starts the reader task.
    pub async fn handshake(
        stream: UnixStream,
        recorder: super::RecorderSlot,
    ) -> Result<(Control, Ready), SandboxError> {
        let (mut rd, wr) = stream.into_split();
        let mut decoder = Decoder::new();
        let first = next_event(&mut rd, &mut decoder).await?;
        let ready = match first {
            Some(GuestEvent::Ready {
                protocol,
                kernel_release,
                uptime_ms,
                boot,
                ..
            }) => Ready {
                protocol,
                kernel_release,
                uptime_ms,
                boot,
            },
            Some(other) => {
                return Err(SandboxError::Protocol(format!(
                    "expected ready, got {other:?}"
                )));
            }
            None => {
                return Err(SandboxError::Protocol(
                    "guest closed the control connection before ready".into(),
                ));
            }
        };
        let pending: Pending = Arc::default();
        let bye = Arc::new(tokio::sync::Notify::new());
        let reader = tokio::spawn(tracing::Instrument::in_current_span(read_events(
            rd,
            decoder,
            pending.clone(),
            recorder,
            bye.clone(),
        )));
        let control = Control {
            writer: tokio::sync::Mutex::new(wr),
            pending,
            next_id: AtomicU32::new(1),
            reader,
            bye,
        };
        Ok((control, ready))
    }

    /// Asks the guest to mount virtio-fs `tag` at `path` and waits for the answer.
    pub async fn mount(&self, tag: &str, path: &str, read_only: bool) -> Result<(), SandboxError> {
        let what = format!("mounting {tag} at {path}");
        self.ask(&what, |id| ControlRequest::Mount {
            id,
            tag: tag.to_string(),
            path: path.to_string(),
            read_only,
        })
        .await
    }

    /// Has the guest trust `ca_pem` and give every later command `env`; waits for the answer.
    pub async fn configure(
        &self,
        ca_pem: &str,
        env: &[(String, String)],
    ) -> Result<(), SandboxError> {
        let what = "installing certificates and credential placeholders";
        self.ask(what, |id| ControlRequest::Configure {
            id,
            ca_pem: ca_pem.to_owned(),
            env: env.to_vec(),
        })
        .await
    }

    /// Sends the request `make` builds with a fresh id and waits for the guest's answer to it.
    async fn ask(
        &self,
        what: &str,
        make: impl FnOnce(u32) -> ControlRequest,
    ) -> Result<(), SandboxError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, tx);
        self.send(&make(id)).await?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(SandboxError::Guest(format!(
                "{what}: {}",
                message.escape_debug()
            ))),
            Err(_) => Err(SandboxError::Protocol(format!(
                "control connection lost while {what}"
            ))),
        }
    }

    /// Asks the guest to power off, and waits (up to `limit`) for its goodbye, which comes after
    /// its last process reports, so none is lost at teardown.
    /// Returns whether the goodbye came.
    pub async fn shutdown(&self, limit: std::time::Duration) -> bool {
        let bye = self.bye.notified();
        self.send(&ControlRequest::Shutdown {}).await.is_ok()
            && tokio::time::timeout(limit, bye).await.is_ok()
    }

    async fn send(&self, req: &ControlRequest) -> Result<(), SandboxError> {
        let mut buf = Vec::new();
        encode(&Frame::Message(req.clone()), &mut buf).map_err(SandboxError::Codec)?;
        let mut w = self.writer.lock().await;
        w.write_all(&buf).await.map_err(|source| SandboxError::Io {
            context: "writing to the control connection",
            source,
        })
    }
}

impl Control {
    /// Waits (up to `limit`) for the guest's last reports to be read: the reader ends at EOF,
    /// once the vsock device is gone. Used at teardown so nothing the guest said is lost.
    pub async fn drain(&mut self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, &mut self.reader).await;
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn next_event(
    rd: &mut OwnedReadHalf,
    decoder: &mut Decoder,
) -> Result<Option<GuestEvent>, SandboxError> {
    let mut buf = [0u8; 4096];
    loop {
        match decoder.next_frame::<GuestEvent>() {
            Ok(Some(Frame::Message(ev))) => return Ok(Some(ev)),
            Ok(Some(other)) => {
                return Err(SandboxError::Protocol(format!(
                    "unexpected control frame {other:?}"
                )));
            }
            Ok(None) => {}
            Err(e) => return Err(SandboxError::Codec(e)),
        }
        let n = rd.read(&mut buf).await.map_err(|source| SandboxError::Io {
            context: "reading the control connection",
            source,
        })?;
        match buf.get(..n) {
            Some(b) if !b.is_empty() => decoder.extend(b),
            _ => return Ok(None),
        }
    }
}

async fn read_events(
    mut rd: OwnedReadHalf,
    mut decoder: Decoder,
    pending: Pending,
    recorder: super::RecorderSlot,
    bye: Arc<tokio::sync::Notify>,
) {
    loop {
        let event = match next_event(&mut rd, &mut decoder).await {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "control connection");
                break;
            }
        };
        let (id, result) = match event {
            GuestEvent::Mounted { id } | GuestEvent::Configured { id } => (id, Ok(())),
            GuestEvent::MountFailed { id, message }
            | GuestEvent::ConfigureFailed { id, message } => (id, Err(message)),
            GuestEvent::Bye {} => {
                bye.notify_one();
                continue;
            }
            GuestEvent::Ready { .. } => {
                tracing::warn!("guest sent a second ready; ignored");
                continue;
            }
            report @ (GuestEvent::ProcExec { .. }
            | GuestEvent::ProcExit { .. }
            | GuestEvent::SyscallDenied { .. }
            | GuestEvent::EventsDropped { .. }) => {
                // Before a warm guest is claimed there is no log yet, and no workload either.
                if let (Some(r), Some(ev)) = (recorder.get(), guest_report(report)) {
                    r.record(ev);
                }
                continue;
            }
        };
        let waiter = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        match waiter {
            Some(tx) => {
                let _ = tx.send(result);
            }
            None => tracing::warn!(id, "guest answered a request that was not made"),
        }
    }
    // Wake every waiter: dropping the senders makes their receivers fail.
    pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
}

/// A guest report as an audit event: `source: guest`, never authoritative.
fn guest_report(report: GuestEvent) -> Option<Event> {
    Some(match report {
        GuestEvent::ProcExec {
            pid,
            ppid,
            uid,
            argv,
            argv_truncated,
            cwd,
        } => {
            let mut ev = Event::new(Source::Guest, kind::PROC_EXEC).with_proc(ProcInfo {
                pid: Some(pid),
                ppid: Some(ppid),
                uid: Some(uid),
                argv,
                cwd: Some(cwd),
                ..ProcInfo::default()
            });
            if argv_truncated {
                ev = ev.with_detail("argv truncated");
            }
            ev
        }
        GuestEvent::ProcExit { pid, status } => {
            let (exit, signal) = match status {
                ExitStatus::Code { code } => (Some(code), None),
                ExitStatus::Signal { signal } => (None, Some(signal)),
            };
            Event::new(Source::Guest, kind::PROC_EXIT).with_proc(ProcInfo {
                pid: Some(pid),
                exit,
                signal,
                ..ProcInfo::default()
            })
        }
        GuestEvent::SyscallDenied {
            pid,
            syscall,
            reason,
        } => Event::new(Source::Guest, kind::POLICY_DENY)
            .with_decision(Decision::Deny)
            .with_rule("process.seccomp")
            .with_reason("syscall_denied")
            .with_proc(ProcInfo {
                pid: Some(pid),
                ..ProcInfo::default()
            })
            .with_detail(format!("syscall {syscall} refused with EPERM: {reason}")),
        GuestEvent::EventsDropped { count } => Event::new(Source::Guest, kind::AUDIT_DROPPED)
            .with_count(count)
            .with_detail("guest process events lost (kernel buffer overrun)"),
        _ => return None,
    })
}
