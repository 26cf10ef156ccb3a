//! Execs through the API: one command in a running sandbox, its output streamed as NDJSON
//! lines, with stdin, signals and resizes delivered through the exec's handle while it runs.
//!
//! The command runs in a task that holds the sandbox; the response body holds that task and
//! aborts it when dropped, so a client that disconnects ends its command (the guest sees the
//! exec connection close). Output flows through bounded pipes into a bounded line queue, so a
//! slow client slows the command down instead of growing memory. When the sandbox starts
//! stopping, running execs end at once with an `error` line.

use super::entry::{Entry, lock};
use super::error::DaemonError;
use super::handle::{ExecHandle, check_size};
use crate::types::{ErrorBody, ExecBody, ExecExit, ExecLine, ExecStages, TerminalSize};
use airlock_proto::{ExitStatus, WindowSize};
use airlock_supervisor::{ExecIo, ExecOutcome};
use base64::Engine as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Lines queued for a slow client before the command is throttled.
const LINE_QUEUE: usize = 32;
/// Bytes buffered per output pipe.
const PIPE_BYTES: usize = 64 * 1024;
/// Stdin chunks queued before `POST .../stdin` waits.
const STDIN_QUEUE: usize = 16;

/// A started exec: its id and the stream of NDJSON lines.
pub struct Started {
    /// The exec id.
    pub exec_id: String,
    /// NDJSON lines, each ending in `\n`.
    pub lines: mpsc::Receiver<Vec<u8>>,
    /// Aborts the command when dropped (the client went away).
    pub guard: AbortOnDrop,
}

/// Aborts a task when dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Aborts `task` when this is dropped.
    pub fn new(task: tokio::task::JoinHandle<()>) -> AbortOnDrop {
        AbortOnDrop(task)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Decrements the running count and forgets the exec, however its task ends.
struct Finished {
    entry: Arc<Entry>,
    exec_id: String,
}

impl Drop for Finished {
    fn drop(&mut self) {
        lock(&self.entry.execs).remove(&self.exec_id);
        self.entry.running_execs.fetch_sub(1, Ordering::Relaxed);
        self.entry.touch();
    }
}

/// Checks `body` and starts the command in `entry`'s sandbox.
pub fn start(entry: &Arc<Entry>, body: ExecBody) -> Result<Started, DaemonError> {
    let sandbox = entry.running()?;
    if body.argv.is_empty() || body.argv.first().is_some_and(String::is_empty) {
        return Err(DaemonError::bad(
            "argv",
            "give the command and its arguments",
        ));
    }
    if body.argv.iter().any(|a| a.contains('\0')) {
        return Err(DaemonError::bad(
            "argv",
            "arguments cannot contain NUL bytes",
        ));
    }
    for (k, v) in &body.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(DaemonError::bad(
                "env",
                format!("{k:?}: names are non-empty without '=' or NUL; values without NUL"),
            ));
        }
    }
    if let Some(cwd) = &body.cwd
        && (!cwd.starts_with('/') || cwd.contains('\0'))
    {
        return Err(DaemonError::bad(
            "cwd",
            format!("{cwd:?} must be an absolute path inside the guest"),
        ));
    }
    if body.size.is_some() && !body.tty {
        return Err(DaemonError::bad("size", "only meaningful with tty: true"));
    }
    if let Some(size) = &body.size {
        check_size(size)?;
    }
    let stdin_data = body
        .stdin
        .as_deref()
        .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
        .transpose()
        .map_err(|e| DaemonError::bad("stdin", format!("not valid base64: {e}")))?;
    let tty = body.tty.then(|| {
        let s = body.size.unwrap_or(TerminalSize { rows: 24, cols: 80 });
        WindowSize {
            rows: s.rows,
            cols: s.cols,
        }
    });
    let cwd_given = body.cwd.is_some();
    let mut request = airlock_supervisor::launch::exec_request(
        entry.policy(),
        body.argv,
        body.env.into_iter().collect(),
        body.cwd,
        tty,
    );
    if let Some(config) = entry.image_config() {
        airlock_supervisor::launch::apply_image_config(&mut request, &config, cwd_given);
    }
    if request.argv.is_empty() {
        return Err(DaemonError::bad(
            "argv",
            "empty, and the image names no Entrypoint or Cmd to run instead",
        ));
    }

    let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>(STDIN_QUEUE);
    if let Some(data) = stdin_data.filter(|d| !d.is_empty()) {
        // The queue is empty and has room: this cannot wait.
        let _ = stdin_tx.try_send(data);
    }
    let stdin_tx = body.stdin_open.then_some(stdin_tx);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let n = entry.exec_seq.fetch_add(1, Ordering::Relaxed) + 1;
    let exec_id = format!("e{n}");
    let handle = Arc::new(ExecHandle {
        stdin: tokio::sync::Mutex::new(stdin_tx),
        control: control_tx,
        tty: tty.is_some(),
    });
    lock(&entry.execs).insert(exec_id.clone(), handle);
    entry.running_execs.fetch_add(1, Ordering::Relaxed);
    entry.touch();
    let finished = Finished {
        entry: entry.clone(),
        exec_id: exec_id.clone(),
    };

    let (lines_tx, lines_rx) = mpsc::channel::<Vec<u8>>(LINE_QUEUE);
    let (out_w, out_r) = tokio::io::duplex(PIPE_BYTES);
    let (err_w, err_r) = tokio::io::duplex(PIPE_BYTES);
    let io = ExecIo {
        stdin: Some(stdin_rx),
        stdout: Box::pin(out_w),
        stderr: Box::pin(err_w),
        control: control_rx,
    };
    let mut stopping = entry.stopping();
    let first = line(&ExecLine {
        exec_id: Some(exec_id.clone()),
        ..ExecLine::default()
    });
    let task = tokio::spawn(async move {
        let _finished = finished;
        if lines_tx.send(first).await.is_err() {
            return;
        }
        let pump_out = tokio::spawn(pump(out_r, "stdout", lines_tx.clone()));
        let pump_err = tokio::spawn(pump(err_r, "stderr", lines_tx.clone()));
        let t0 = std::time::Instant::now();
        let outcome = tokio::select! {
            r = sandbox.exec(request, io) => Some(r),
            _ = stopping.wait_for(|s| *s) => None,
        };
        let host_us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        // The exec's writers are dropped now: the pumps reach end of output.
        let _ = pump_out.await;
        let _ = pump_err.await;
        drop(sandbox);
        let last = match outcome {
            Some(Ok(outcome)) => ExecLine {
                exit: Some(ExecExit {
                    timings: stages_of(&outcome, host_us),
                    ..exit_of(&outcome)
                }),
                ..ExecLine::default()
            },
            Some(Err(e)) => ExecLine {
                error: Some(ErrorBody {
                    error: "internal".into(),
                    detail: format!("exec failed: {}", airlock_jail::error_chain(&e)),
                }),
                ..ExecLine::default()
            },
            None => ExecLine {
                error: Some(ErrorBody {
                    error: "conflict".into(),
                    detail: "the sandbox was stopped while the command ran".into(),
                }),
                ..ExecLine::default()
            },
        };
        let _ = lines_tx.send(line(&last)).await;
    });
    Ok(Started {
        exec_id,
        lines: lines_rx,
        guard: AbortOnDrop(task),
    })
}

/// The exec `exec_id` of `entry`, or 404.
pub fn handle(entry: &Entry, exec_id: &str) -> Result<Arc<ExecHandle>, DaemonError> {
    lock(&entry.execs).get(exec_id).cloned().ok_or_else(|| {
        DaemonError::NotFound(format!(
            "no running exec {exec_id:?} in sandbox {}",
            entry.id()
        ))
    })
}

/// Copies one output pipe into base64 lines.
async fn pump(mut from: tokio::io::DuplexStream, stream: &'static str, to: mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; PIPE_BYTES];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = buf.get(..n).unwrap_or_default();
                let l = line(&ExecLine {
                    stream: Some(stream.into()),
                    data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
                    ..ExecLine::default()
                });
                if to.send(l).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One NDJSON line.
pub fn line<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    v
}

/// The wire form of how a command ended.
pub fn exit_of(outcome: &ExecOutcome) -> ExecExit {
    match outcome {
        ExecOutcome::Exited {
            status, oom_kills, ..
        } => ExecExit {
            exit_code: status.shell_code(),
            code: match status {
                ExitStatus::Code { code } => Some(*code),
                ExitStatus::Signal { .. } => None,
            },
            signal: match status {
                ExitStatus::Signal { signal } => Some(*signal),
                ExitStatus::Code { .. } => None,
            },
            oom_kills: *oom_kills,
            ..ExecExit::default()
        },
        ExecOutcome::SpawnFailed { reason, message } => ExecExit {
            exit_code: reason.exit_code(),
            spawn_error: Some(
                serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("{reason:?}")),
            ),
            message: Some(message.clone()),
            ..ExecExit::default()
        },
    }
}

/// Where a command's time went: `host_us` on the daemon's clock, the rest from `outcome`.
pub fn stages_of(outcome: &ExecOutcome, host_us: u64) -> Option<ExecStages> {
    match outcome {
        ExecOutcome::Exited { timings, .. } => Some(ExecStages {
            host_us,
            connect_us: timings.connect_us,
            guest_request_us: timings.guest.request_us,
            guest_setup_us: timings.guest.setup_us,
            guest_spawn_us: timings.guest.spawn_us,
            guest_run_us: timings.guest.run_us,
            guest_drain_us: timings.guest.drain_us,
        }),
        ExecOutcome::SpawnFailed { .. } => None,
    }
}

/// Parses a signal given as a number or a name (`TERM`, `SIGTERM`).
pub fn parse_signal(v: &serde_json::Value) -> Result<i32, DaemonError> {
    let bad = || {
        DaemonError::bad(
            "signal",
            format!("{v}: expected a signal number 1..=64 or a name such as \"TERM\""),
        )
    };
    if let Some(n) = v.as_i64() {
        return i32::try_from(n)
            .ok()
            .filter(|n| (1..=64).contains(n))
            .ok_or_else(bad);
    }
    let name = v.as_str().ok_or_else(bad)?;
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_proto::SpawnFailure;

    #[test]
    fn signals_by_number_and_name() {
        assert_eq!(parse_signal(&serde_json::json!(15)).unwrap(), 15);
        assert_eq!(parse_signal(&serde_json::json!("term")).unwrap(), 15);
        assert_eq!(parse_signal(&serde_json::json!("SIGINT")).unwrap(), 2);
        assert!(parse_signal(&serde_json::json!(0)).is_err());
        assert!(parse_signal(&serde_json::json!("NOPE")).is_err());
    }

    #[test]
    fn exits_map_to_shell_codes() {
        let e = exit_of(&ExecOutcome::Exited {
            status: ExitStatus::Signal { signal: 9 },
            oom_kills: 1,
            timings: airlock_supervisor::ExecTimings::default(),
        });
        assert_eq!(
            e,
            ExecExit {
                exit_code: 137,
                signal: Some(9),
                oom_kills: 1,
                ..ExecExit::default()
            }
        );
        let e = exit_of(&ExecOutcome::SpawnFailed {
            reason: SpawnFailure::NotFound,
            message: "x".into(),
        });
        assert_eq!(e.exit_code, 127);
        assert_eq!(e.spawn_error.as_deref(), Some("not_found"));
    }

    #[test]
    fn stages_carry_the_host_time_and_the_guest_account() {
        let timings = airlock_supervisor::ExecTimings {
            connect_us: 300,
            guest: airlock_proto::GuestTimings {
                request_us: 1,
                setup_us: 2,
                spawn_us: 3,
                run_us: 4,
                drain_us: 5,
            },
        };
        let outcome = ExecOutcome::Exited {
            status: ExitStatus::Code { code: 0 },
            oom_kills: 0,
            timings,
        };
        assert_eq!(
            stages_of(&outcome, 9_000),
            Some(ExecStages {
                host_us: 9_000,
                connect_us: 300,
                guest_request_us: 1,
                guest_setup_us: 2,
                guest_spawn_us: 3,
                guest_run_us: 4,
                guest_drain_us: 5,
            })
        );
        let failed = ExecOutcome::SpawnFailed {
            reason: SpawnFailure::NotFound,
            message: "x".into(),
        };
        assert_eq!(stages_of(&failed, 9_000), None);
    }
}
