//! One process of a container (its init process or an exec): the request it runs with, its
//! stdio FIFOs, and its state from created to stopped. Starting it runs the request in the
//! pod's VM through the supervisor's [`Executor`], bridging containerd's FIFOs to the exec
//! session; its exit is kept for `Wait`, `State` and `Delete` and announced by the caller.

use airlock_proto::{ExecControl, ExecRequest, ExitStatus, WindowSize};
use airlock_supervisor::{ExecIo, ExecOutcome, Executor};
use std::path::Path;
use std::time::SystemTime;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, watch};

/// Bytes per stdin read.
const STDIN_CHUNK: usize = 32 * 1024;

/// The FIFOs containerd made for a process (empty path: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    /// Read end for the process's input.
    pub stdin: String,
    /// Write end for its output (all of it with a terminal).
    pub stdout: String,
    /// Write end for its errors.
    pub stderr: String,
    /// Whether it runs under a terminal.
    pub terminal: bool,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit status as containerd reports it: the code, or 128 + the signal.
    pub status: u32,
    /// When.
    pub at: SystemTime,
}

impl Exit {
    /// An exit now with `status`.
    pub fn now(status: u32) -> Exit {
        Exit {
            status,
            at: SystemTime::now(),
        }
    }
}

/// A process's state, as containerd names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created, not started.
    Created,
    /// Started and not yet ended.
    Running,
    /// Ended.
    Stopped,
}

/// One process.
pub struct Proc {
    /// The command and how to run it.
    pub request: ExecRequest,
    /// Its FIFOs.
    pub stdio: Stdio,
    /// Its pid in the guest, once running.
    pub guest_pid: Option<u32>,
    started: bool,
    control: Option<mpsc::UnboundedSender<ExecControl>>,
    close_stdin: Option<oneshot::Sender<()>>,
    exit: watch::Sender<Option<Exit>>,
}

/// What [`Proc::start`] hands to the task that runs the process.
pub struct Running {
    /// The exec session's input, output and control.
    pub io: ExecIo,
    /// Set once when it ends.
    pub exit: watch::Sender<Option<Exit>>,
}

impl Proc {
    /// A created process.
    pub fn new(request: ExecRequest, stdio: Stdio) -> Proc {
        Proc {
            request,
            stdio,
            guest_pid: None,
            started: false,
            control: None,
            close_stdin: None,
            exit: watch::channel(None).0,
        }
    }

    /// Where it is in its life.
    pub fn phase(&self) -> Phase {
        if self.exit.borrow().is_some() {
            Phase::Stopped
        } else if self.started {
            Phase::Running
        } else {
            Phase::Created
        }
    }

    /// How it ended, if it has.
    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// A receiver that sees the exit.
    pub fn watch_exit(&self) -> watch::Receiver<Option<Exit>> {
        self.exit.subscribe()
    }

    /// Marks it ended without it having run (killed or deleted while created).
    pub fn end_unstarted(&self, status: u32) {
        self.exit.send_replace(Some(Exit::now(status)));
    }

    /// Opens its FIFOs and makes the exec session's I/O; the process is then running as far
    /// as containerd is concerned.
    pub async fn start(&mut self) -> Result<Running, String> {
        if self.started || self.exit.borrow().is_some() {
            return Err("process already started".into());
        }
        let stdout = open_output(&self.stdio.stdout)?;
        let stderr = if self.stdio.terminal {
            None
        } else {
            open_output(&self.stdio.stderr)?
        };
        let (stdin, close) = match self.stdio.stdin.as_str() {
            "" => (None, None),
            path => {
                // Read-write: with no writer yet, a read-only FIFO would read as end of input.
                // Input ends on CloseIO instead.
                let fifo = pipe::OpenOptions::new()
                    .read_write(true)
                    .open_receiver(path)
                    .map_err(|e| format!("opening stdin {path}: {e}"))?;
                let (tx, rx) = mpsc::channel(8);
                let (close_tx, close_rx) = oneshot::channel();
                tokio::spawn(pump_stdin(fifo, tx, close_rx));
                (Some(rx), Some(close_tx))
            }
        };
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        self.started = true;
        self.control = Some(control_tx);
        self.close_stdin = close;
        Ok(Running {
            io: ExecIo {
                stdin,
                stdout: sink_or(stdout),
                stderr: sink_or(stderr),
                control: control_rx,
            },
            exit: self.exit.clone(),
        })
    }

    /// Delivers `signal` to the running process's group; false when it is not running.
    pub fn signal(&self, signal: i32) -> bool {
        self.phase() == Phase::Running
            && self
                .control
                .as_ref()
                .is_some_and(|c| c.send(ExecControl::Signal { signal }).is_ok())
    }

    /// Resizes its terminal.
    pub fn resize(&self, size: WindowSize) -> bool {
        self.control
            .as_ref()
            .is_some_and(|c| c.send(ExecControl::Resize { size }).is_ok())
    }

    /// Ends its input.
    pub fn close_stdin(&mut self) {
        if let Some(c) = self.close_stdin.take() {
            let _ = c.send(());
        }
    }
}

/// The status containerd reports for how an exec session ended.
pub fn exit_status(outcome: &Result<ExecOutcome, airlock_supervisor::SandboxError>) -> u32 {
    match outcome {
        Ok(ExecOutcome::Exited {
            status: ExitStatus::Code { code },
            ..
        }) => u32::try_from(*code).unwrap_or(255),
        Ok(ExecOutcome::Exited {
            status: ExitStatus::Signal { signal },
            ..
        }) => 128 + u32::try_from(*signal).unwrap_or(0),
        Ok(ExecOutcome::SpawnFailed { reason, .. }) => match reason {
            airlock_proto::SpawnFailure::NotFound => 127,
            _ => 126,
        },
        Err(_) => 255,
    }
}

/// Runs `request` with `running`'s I/O; sends the guest pid on `started` and returns the
/// exit, which is also set on the process.
pub async fn run(
    executor: Executor,
    request: ExecRequest,
    running: Running,
    started: oneshot::Sender<u32>,
) -> (Exit, Result<ExecOutcome, airlock_supervisor::SandboxError>) {
    let outcome = executor.exec(request, running.io, Some(started)).await;
    let exit = Exit::now(exit_status(&outcome));
    running.exit.send_replace(Some(exit));
    (exit, outcome)
}

type Output = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

fn open_output(path: &str) -> Result<Option<pipe::Sender>, String> {
    if path.is_empty() {
        return Ok(None);
    }
    // Read-write: opening never fails for want of a reader (containerd opens its end lazily).
    pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(Path::new(path))
        .map(Some)
        .map_err(|e| format!("opening {path}: {e}"))
}

fn sink_or(out: Option<pipe::Sender>) -> Output {
    match out {
        Some(s) => Box::pin(s),
        None => Box::pin(tokio::io::sink()),
    }
}

async fn pump_stdin(
    mut fifo: pipe::Receiver,
    tx: mpsc::Sender<Vec<u8>>,
    mut close: oneshot::Receiver<()>,
) {
    let mut buf = vec![0u8; STDIN_CHUNK];
    loop {
        let n = tokio::select! {
            _ = &mut close => return,
            r = fifo.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        let Some(chunk) = buf.get(..n) else { return };
        if tx.send(chunk.to_vec()).await.is_err() {
            return;
        }
    }
}
