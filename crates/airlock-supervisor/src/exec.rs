//! Host side of one exec session: send the request, pump stdin and control messages, copy
//! output to the caller's sinks, and return the exit status.
//!
//! Control messages (signals, resizes) take priority over queued stdin in the writer, so a
//! Ctrl-C is not stuck behind input the command has not read yet.

use super::SandboxError;
use crate::config::RecorderSlot;
use airlock_audit::{Decision, Event, ProcInfo, Source, kind};
use airlock_proto::EXEC_PORT;
use airlock_proto::codec::{DATA_CHUNK, Decoder};
use airlock_proto::{
    ExecControl, ExecEvent, ExecRequest, ExitStatus, Frame, GuestTimings, SpawnFailure, Stream,
    encode,
};
use std::pin::Pin;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tracing::Instrument;

/// Where an exec session's input comes from and its output goes.
pub struct ExecIo {
    /// Stdin chunks; the channel closing means end of input. `None`: no input at all.
    pub stdin: Option<mpsc::Receiver<Vec<u8>>>,
    /// Receives the command's stdout (and all terminal output in PTY mode).
    pub stdout: Pin<Box<dyn AsyncWrite + Send>>,
    /// Receives the command's stderr.
    pub stderr: Pin<Box<dyn AsyncWrite + Send>>,
    /// Signals and resizes to deliver.
    pub control: mpsc::UnboundedReceiver<ExecControl>,
}

/// Stages of one exec: the host's connection set-up and the guest agent's own account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecTimings {
    /// Connecting to the guest's exec port (the vsock `CONNECT` handshake), in microseconds.
    pub connect_us: u64,
    /// The guest agent's stages (its word: for display only).
    pub guest: GuestTimings,
}

/// How an exec session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// The command ran and ended.
    Exited {
        /// How.
        status: ExitStatus,
        /// Processes of its tree that the guest's OOM killer ended.
        oom_kills: u32,
        /// Where the time went.
        timings: ExecTimings,
    },
    /// The command could not be started.
    SpawnFailed {
        /// Why.
        reason: SpawnFailure,
        /// The guest's message (untrusted text).
        message: String,
    },
}

/// Runs commands in one guest and records each in its audit log (`proc.exec`, `proc.exit`,
/// `proc.oom`). Cheap to clone; see [`Sandbox::executor`](crate::Sandbox::executor).
#[derive(Clone)]
pub struct Executor {
    pub(crate) uds: std::path::PathBuf,
    pub(crate) recorder: RecorderSlot,
    pub(crate) span: tracing::Span,
    pub(crate) memory_mib: u64,
}

impl Executor {
    /// Runs one command, bridging `io`; sends its guest pid on `started` once it runs.
    pub async fn exec(
        &self,
        request: ExecRequest,
        io: ExecIo,
        started: Option<oneshot::Sender<u32>>,
    ) -> Result<ExecOutcome, SandboxError> {
        self.exec_in(request, io, started)
            .instrument(self.span.clone())
            .await
    }

    async fn exec_in(
        &self,
        request: ExecRequest,
        io: ExecIo,
        started: Option<oneshot::Sender<u32>>,
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
        let t0 = std::time::Instant::now();
        let stream = airlock_vm::vsock::connect(&self.uds, EXEC_PORT).await?;
        let connect_us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut outcome = run(stream, request, io, started).await;
        if let Ok(ExecOutcome::Exited { timings, .. }) = &mut outcome {
            timings.connect_us = connect_us;
        }
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
                            self.memory_mib
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
}

fn io_err(context: &'static str) -> impl FnOnce(std::io::Error) -> SandboxError {
    move |source| SandboxError::Io { context, source }
}

/// Runs `request` over `stream`.
pub async fn run(
    stream: UnixStream,
    request: ExecRequest,
    io: ExecIo,
    mut started: Option<oneshot::Sender<u32>>,
) -> Result<ExecOutcome, SandboxError> {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = Vec::new();
    encode(&Frame::Message(request), &mut buf).map_err(SandboxError::Codec)?;
    wr.write_all(&buf)
        .await
        .map_err(io_err("sending the exec request"))?;

    let ExecIo {
        stdin,
        mut stdout,
        mut stderr,
        control,
    } = io;
    let writer = tokio::spawn(tracing::Instrument::in_current_span(write_input(
        wr, stdin, control,
    )));
    let result = async {
        let mut decoder = Decoder::new();
        let mut chunk = vec![0u8; DATA_CHUNK];
        loop {
            while let Some(frame) = decoder
                .next_frame::<ExecEvent>()
                .map_err(SandboxError::Codec)?
            {
                match frame {
                    Frame::Data(Stream::Stdout, bytes) => {
                        stdout
                            .write_all(&bytes)
                            .await
                            .map_err(io_err("writing stdout"))?;
                        stdout.flush().await.map_err(io_err("writing stdout"))?;
                    }
                    Frame::Data(Stream::Stderr, bytes) => {
                        stderr
                            .write_all(&bytes)
                            .await
                            .map_err(io_err("writing stderr"))?;
                        stderr.flush().await.map_err(io_err("writing stderr"))?;
                    }
                    Frame::Data(Stream::Stdin, _) | Frame::Eof(Stream::Stdin) => {
                        return Err(SandboxError::Protocol("guest sent stdin frames".into()));
                    }
                    Frame::Message(ExecEvent::Started { pid }) => {
                        if let Some(tx) = started.take() {
                            let _ = tx.send(pid);
                        }
                    }
                    Frame::Eof(_) => {}
                    Frame::Message(ExecEvent::SpawnFailed { reason, message }) => {
                        return Ok(ExecOutcome::SpawnFailed { reason, message });
                    }
                    Frame::Message(ExecEvent::Exited {
                        status,
                        oom_kills,
                        timings,
                    }) => {
                        return Ok(ExecOutcome::Exited {
                            status,
                            oom_kills,
                            timings: ExecTimings {
                                connect_us: 0,
                                guest: timings,
                            },
                        });
                    }
                }
            }
            let n = rd
                .read(&mut chunk)
                .await
                .map_err(io_err("reading from the guest"))?;
            match chunk.get(..n) {
                Some(bytes) if !bytes.is_empty() => decoder.extend(bytes),
                _ => {
                    return Err(SandboxError::Protocol(
                        "guest closed the exec connection without an exit status".into(),
                    ));
                }
            }
        }
    }
    .await;
    writer.abort();
    result
}

async fn write_input(
    mut wr: tokio::net::unix::OwnedWriteHalf,
    mut stdin: Option<mpsc::Receiver<Vec<u8>>>,
    mut control: mpsc::UnboundedReceiver<ExecControl>,
) {
    let mut buf = Vec::new();
    let mut control_open = true;
    if stdin.is_none()
        && send(&mut wr, &mut buf, &Frame::Eof(Stream::Stdin))
            .await
            .is_err()
    {
        return;
    }
    while control_open || stdin.is_some() {
        let frame = tokio::select! {
            biased;
            c = control.recv(), if control_open => match c {
                Some(c) => Frame::Message(c),
                None => { control_open = false; continue; }
            },
            d = async { stdin.as_mut()?.recv().await }, if stdin.is_some() => match d {
                Some(bytes) if bytes.is_empty() => continue,
                Some(bytes) => Frame::Data(Stream::Stdin, bytes),
                None => { stdin = None; Frame::Eof(Stream::Stdin) }
            },
        };
        if send(&mut wr, &mut buf, &frame).await.is_err() {
            return;
        }
    }
    // Keep the write half open: closing it tells the guest the host is gone.
    std::future::pending::<()>().await;
}

async fn send(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    buf: &mut Vec<u8>,
    frame: &Frame<ExecControl>,
) -> std::io::Result<()> {
    buf.clear();
    encode(frame, buf).map_err(std::io::Error::other)?;
    wr.write_all(buf).await
}
