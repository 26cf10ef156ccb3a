//! Talking to a running daemon: a client on a runtime ([`with_client`]), sandbox paths, and one
//! exec streamed through `POST .../exec` and bridged to this terminal ([`stream_exec`]), shared
//! by `airlock exec` and `airlock run` through a daemon.

use crate::exit;
use crate::termfilter::TermFilter;
use crate::ui::{RawMode, Signals, note_oom, note_removed, note_spawn_failure, terminal_size};
use airlock_api::client::{Client, ClientError, Lines};
use airlock_api::types::{ExecBody, ExecLine, SignalBody, StdinBody, TerminalSize};
use airlock_proto::SpawnFailure;
use anyhow::{Context, bail};
use base64::Engine as _;
use hyper::Method;
use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

/// Runs `f` on a current-thread runtime with a client for the daemon; maps "no daemon" and
/// API errors to a message and exit 125.
pub(crate) fn with_client<F, Fut>(f: F) -> anyhow::Result<u8>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u8>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let client = Client::new(airlock_api::socket::default_socket());
    let result = rt.block_on(f(client));
    rt.shutdown_background();
    match result {
        Ok(code) => Ok(code),
        Err(e) => match e.downcast_ref::<ClientError>() {
            Some(no_daemon @ ClientError::NoDaemon { .. }) => {
                crate::ui::note!("airlock: {no_daemon}");
                Ok(exit::AIRLOCK_ERROR)
            }
            _ => Err(e),
        },
    }
}

pub(crate) fn sandbox_path(id: &str, rest: &str) -> anyhow::Result<String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        bail!("{id:?} is not a sandbox id");
    }
    Ok(format!("/v1/sandboxes/{id}{rest}"))
}

/// A command for [`stream_exec`].
pub(crate) struct ExecSpec {
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// Environment variables (`TERM` is added from this host with `tty` unless given).
    pub env: Vec<(String, String)>,
    /// Working directory in the guest (default: the workspace mount).
    pub cwd: Option<String>,
    /// Run under a pseudo-terminal sized like ours (and put our terminal in raw mode).
    pub tty: bool,
    /// Remove title and clipboard sequences from the output ([`TermFilter`]).
    pub filter: bool,
}

/// What the user's SIGINT, SIGTERM and SIGHUP do while an exec streams.
pub(crate) enum OnSignal {
    /// Forward each one (`airlock exec`: the sandbox outlives the command).
    Forward,
    /// Forward the first; stop waiting on a second one, or when the command has not ended this
    /// long after the first (`airlock run`: the caller then tears the sandbox down).
    GiveUp(Duration),
}

/// How a streamed exec ended.
pub(crate) enum ExecEnd {
    /// The command ended (or our stdout closed); airlock's exit code, notes already printed.
    Exited(u8),
    /// The daemon ended the stream without an exit status; its message.
    Broken(String),
    /// [`OnSignal::GiveUp`] gave up: exit 128+N for signal N. The command may still run.
    GaveUp(u8),
}

/// Runs `spec` in sandbox `id` through `POST .../exec` and bridges it to this process: output to
/// our stdout and stderr as it arrives, our stdin to the command, signals and window changes to
/// the command. Prints what `airlock run` prints when the command cannot start or meets the
/// OOM killer. Shared by `airlock exec` and `airlock run` through a daemon.
pub(crate) async fn stream_exec(
    c: &Client,
    id: &str,
    spec: ExecSpec,
    signals: &mut Signals,
    on_signal: OnSignal,
) -> anyhow::Result<ExecEnd> {
    use tokio::signal::unix::{SignalKind, signal};
    let base = sandbox_path(id, "")?;
    // Listening before the size is read: a resize during the start is delivered afterwards.
    let winch = if spec.tty {
        Some(signal(SignalKind::window_change()).context("installing SIGWINCH handler")?)
    } else {
        None
    };
    let size = spec.tty.then(|| {
        terminal_size()
            .map(|w| TerminalSize {
                rows: w.rows,
                cols: w.cols,
            })
            .unwrap_or(TerminalSize { rows: 24, cols: 80 })
    });
    let mut env = spec.env;
    if spec.tty
        && !env.iter().any(|(k, _)| k == "TERM")
        && let Ok(term) = std::env::var("TERM")
    {
        env.push(("TERM".into(), term));
    }
    let body = ExecBody {
        argv: spec.argv,
        env: env.into_iter().collect(),
        cwd: spec.cwd,
        tty: spec.tty,
        size,
        stdin: None,
        stdin_open: true,
    };
    let resp = c
        .call(
            Method::POST,
            &format!("{base}/exec"),
            Some(("application/json", serde_json::to_vec(&body)?)),
        )
        .await
        .with_context(|| format!("exec in sandbox {id}"))?;
    let mut lines = Lines::new(resp);
    let first = lines
        .next()
        .await?
        .context("the daemon closed the exec stream")?;
    let exec_id = serde_json::from_slice::<ExecLine>(&first)
        .ok()
        .and_then(|l| l.exec_id)
        .context("the exec stream did not start with its id")?;
    let exec_path = format!("{base}/execs/{exec_id}");

    forward_stdin(c.clone(), format!("{exec_path}/stdin"));
    let _raw = if spec.tty && std::io::stdin().is_terminal() {
        RawMode::enter().ok()
    } else {
        None
    };
    if let Some(mut winch) = winch {
        let (c, path) = (c.clone(), format!("{exec_path}/resize"));
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some(w) = terminal_size() {
                    let size = TerminalSize {
                        rows: w.rows,
                        cols: w.cols,
                    };
                    post_json(&c, &path, &size).await;
                }
            }
        });
    }

    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut filters = spec.filter.then(|| [TermFilter::new(), TermFilter::new()]);
    let mut shown = Vec::new();
    let mut forwarded: Option<(i32, tokio::time::Instant)> = None;
    loop {
        let deadline = match (&on_signal, forwarded) {
            (OnSignal::GiveUp(grace), Some((_, at))) => Some((at + *grace, *grace)),
            _ => None,
        };
        let line = tokio::select! {
            line = lines.next() => line?,
            sig = signals.recv() => {
                if forwarded.is_some() && matches!(on_signal, OnSignal::GiveUp(_)) {
                    // Second signal: stop waiting.
                    return Ok(ExecEnd::GaveUp(exit::clamp(128 + sig)));
                }
                // Delivered on the side: output keeps flowing meanwhile.
                let (c, path) = (c.clone(), format!("{exec_path}/signal"));
                tokio::spawn(async move {
                    post_json(&c, &path, &SignalBody { signal: sig.into() }).await;
                });
                forwarded.get_or_insert((sig, tokio::time::Instant::now()));
                continue;
            }
            () = async {
                if let Some((at, _)) = deadline {
                    tokio::time::sleep_until(at).await;
                }
            }, if deadline.is_some() => {
                let sig = forwarded.map_or(libc::SIGTERM, |(s, _)| s);
                let grace = deadline.map_or(0, |(_, g)| g.as_secs());
                crate::ui::note!(
                    "airlock: the command did not exit within {grace} s of signal {sig}; stopping the sandbox"
                );
                return Ok(ExecEnd::GaveUp(exit::clamp(128 + sig)));
            }
        };
        let Some(line) = line else {
            return Ok(ExecEnd::Broken(
                "the daemon ended the exec stream without an exit status".into(),
            ));
        };
        let l: ExecLine = serde_json::from_slice(&line).with_context(|| {
            format!("unexpected exec line {:?}", String::from_utf8_lossy(&line))
        })?;
        if let (Some(stream), Some(data)) = (&l.stream, &l.data) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .context("exec output is not base64")?;
            let (w, i): (&mut dyn Write, usize) = if stream == "stderr" {
                (&mut stderr, 1)
            } else {
                (&mut stdout, 0)
            };
            let bytes = match filters.as_mut().and_then(|f| f.get_mut(i)) {
                Some(f) => {
                    shown.clear();
                    f.feed(&bytes, &mut shown);
                    &shown
                }
                None => &bytes,
            };
            // A closed reader (`| head`) ends our copy, not the error path.
            if w.write_all(bytes).and_then(|()| w.flush()).is_err() {
                return Ok(ExecEnd::Exited(exit::clamp(128 + libc::SIGPIPE)));
            }
        }
        if let Some(x) = l.exit {
            if let Some([out, err]) = &mut filters {
                finish(out, &mut stdout);
                finish(err, &mut stderr);
                note_removed(out.removed() + err.removed());
            }
            drop(_raw);
            if let Some(reason) = &x.spawn_error {
                // An unknown reason from a newer daemon reads as "could not start".
                let reason = serde_json::from_value(serde_json::Value::String(reason.clone()))
                    .unwrap_or(SpawnFailure::Other);
                note_spawn_failure(reason, x.message.as_deref().unwrap_or_default());
            }
            note_oom(x.oom_kills);
            return Ok(ExecEnd::Exited(exit::clamp(x.exit_code)));
        }
        if let Some(e) = l.error {
            return Ok(ExecEnd::Broken(e.detail));
        }
    }
}

/// Writes what `f` still holds that may be shown (a lone UTF-8 lead byte), ignoring a closed
/// reader as the copy does.
fn finish(f: &mut TermFilter, w: &mut impl Write) {
    let mut rest = Vec::new();
    f.finish(&mut rest);
    let _ = w.write_all(&rest).and_then(|()| w.flush());
}

/// Reads our stdin on a thread (a blocked read must not hold up exit) and posts it to `path`
/// chunk by chunk, then end-of-input.
fn forward_stdin(c: Client, path: String) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(4);
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.blocking_send(None);
                        break;
                    }
                    Ok(n) => {
                        let chunk = buf.get(..n).unwrap_or_default().to_vec();
                        if tx.blocking_send(Some(chunk)).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            let body = StdinBody {
                eof: chunk.is_none(),
                data: chunk.map(|d| base64::engine::general_purpose::STANDARD.encode(d)),
            };
            let Ok(bytes) = serde_json::to_vec(&body) else {
                return;
            };
            // The command may have ended: its stdin is gone, which is no error here.
            if c.call(Method::POST, &path, Some(("application/json", bytes)))
                .await
                .is_err()
                || body.eof
            {
                return;
            }
        }
    });
}

/// POSTs `body` as JSON to `path`, ignoring the reply (the exec may have ended meanwhile).
async fn post_json(c: &Client, path: &str, body: &impl serde::Serialize) {
    if let Ok(bytes) = serde_json::to_vec(body) {
        let _ = c
            .call(Method::POST, path, Some(("application/json", bytes)))
            .await;
    }
}
