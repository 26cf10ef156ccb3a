//! `airlock create|exec|ls|stop|rm|logs|cp`: commands that talk to a running `airlock daemon`
//! over its unix socket. Without a daemon they say so, name the socket and how to start one,
//! and exit 125. `airlock exec` exits with the command's status, as `airlock run` does; both
//! stream their command with [`stream_exec`] when they go through the daemon.

use super::run::{RawMode, Signals, note_oom, note_spawn_failure, terminal_size};
use crate::exit;
use airlock_api::client::{Client, ClientError, Lines, encode_query};
use airlock_api::types::{
    CreateSandboxRequest, ExecBody, ExecLine, FileStat, SandboxInfo, SandboxList, SignalBody,
    StdinBody, TerminalSize,
};
use airlock_proto::SpawnFailure;
use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Args;
use hyper::Method;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `airlock create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Guest image (overrides the policy's sandbox.image).
    #[arg(long, value_name = "NAME")]
    image: Option<String>,
    /// Policy file (its text is sent to the daemon).
    #[arg(long, value_name = "FILE", conflicts_with = "profile")]
    policy: Option<PathBuf>,
    /// A shipped profile: default, offline, claude-code, codex.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Host directory shared as the workspace (default: the current directory).
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// A label KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Virtual CPUs.
    #[arg(long)]
    cpus: Option<u32>,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB")]
    memory: Option<u64>,
    /// Stop after this long without activity (`30m`, `0` never; default: the daemon's).
    #[arg(long, value_name = "DURATION", value_parser = super::daemon::parse_duration)]
    idle_timeout: Option<std::time::Duration>,
    /// Stop this long after creation (`2h`, `0` never; default: the daemon's).
    #[arg(long, value_name = "DURATION", value_parser = super::daemon::parse_duration)]
    max_lifetime: Option<std::time::Duration>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))
}

/// Arguments of `airlock exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Sandbox id.
    id: String,
    /// The command, how it runs.
    #[command(flatten)]
    cmd: super::run::CommandArgs,
}

/// Arguments of `airlock ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print the daemon's JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `airlock stop` and `airlock rm`.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Sandbox ids.
    #[arg(required = true)]
    ids: Vec<String>,
}

/// Arguments of `airlock logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Sandbox id.
    id: String,
    /// Keep printing new events until the sandbox ends.
    #[arg(short, long)]
    follow: bool,
    /// Print the records as JSON lines.
    #[arg(long)]
    json: bool,
}

/// Arguments of `airlock cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Source: a host file, or ID:/path in a sandbox.
    src: String,
    /// Destination: a host file or directory, or ID:/path in a sandbox.
    dst: String,
}

/// Runs `f` on a current-thread runtime with a client for the daemon; maps "no daemon" and
/// API errors to a message and exit 125.
fn with_client<F, Fut>(f: F) -> anyhow::Result<u8>
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
                crate::note!("airlock: {no_daemon}");
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

/// `airlock create`: prints the new sandbox's id.
pub fn create(args: CreateArgs) -> anyhow::Result<u8> {
    let (policy, policy_origin) = match &args.policy {
        Some(f) => (
            Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading policy file {}", f.display()))?,
            ),
            Some(
                std::path::absolute(f)
                    .with_context(|| f.display().to_string())?
                    .display()
                    .to_string(),
            ),
        ),
        None => (None, None),
    };
    let workspace = match &args.workspace {
        Some(d) => {
            std::path::absolute(d).with_context(|| format!("--workspace {}", d.display()))?
        }
        None => std::env::current_dir().context("reading the current directory")?,
    };
    let body = CreateSandboxRequest {
        image: args.image,
        policy,
        policy_origin,
        profile: args.profile,
        workspace: Some(workspace.display().to_string()),
        cpus: args.cpus,
        memory_mib: args.memory,
        labels: args.labels.into_iter().collect(),
        idle_timeout_secs: args.idle_timeout.map(|d| d.as_secs()),
        max_lifetime_secs: args.max_lifetime.map(|d| d.as_secs()),
    };
    with_client(|c| async move {
        let info: SandboxInfo = c
            .json(Method::POST, "/v1/sandboxes", Some(&body))
            .await
            .context("creating a sandbox")?;
        println!("{}", info.id);
        Ok(0)
    })
}

/// `airlock ls`.
pub fn ls(args: LsArgs) -> anyhow::Result<u8> {
    with_client(|c| async move {
        let list: SandboxList = c
            .json(Method::GET, "/v1/sandboxes", None::<&()>)
            .await
            .context("listing sandboxes")?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(0);
        }
        println!(
            "{:<14} {:<9} {:<8} {:<24} LABELS",
            "ID", "STATUS", "IMAGE", "CREATED"
        );
        for s in &list.sandboxes {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "{:<14} {:<9} {:<8} {:<24} {}",
                s.id,
                s.status.as_str(),
                s.image,
                s.created_at,
                airlock_audit::display_safe(&labels.join(","))
            );
        }
        Ok(0)
    })
}

/// `airlock stop`.
pub fn stop(args: IdArgs) -> anyhow::Result<u8> {
    with_client(|c| async move {
        for id in &args.ids {
            let _: SandboxInfo = c
                .json(Method::POST, &sandbox_path(id, "/stop")?, None::<&()>)
                .await
                .with_context(|| format!("stopping sandbox {id}"))?;
            println!("{id}");
        }
        Ok(0)
    })
}

/// `airlock rm`.
pub fn rm(args: IdArgs) -> anyhow::Result<u8> {
    with_client(|c| async move {
        for id in &args.ids {
            c.call(Method::DELETE, &sandbox_path(id, "")?, None)
                .await
                .with_context(|| format!("removing sandbox {id}"))?;
            println!("{id}");
        }
        Ok(0)
    })
}

/// `airlock logs`.
pub fn logs(args: LogsArgs) -> anyhow::Result<u8> {
    with_client(|c| async move {
        let path = sandbox_path(&args.id, &format!("/events?follow={}", args.follow))?;
        let resp = c
            .call(Method::GET, &path, None)
            .await
            .with_context(|| format!("reading the events of sandbox {}", args.id))?;
        let mut lines = Lines::new(resp);
        let mut out = std::io::stdout().lock();
        while let Some(line) = lines.next().await? {
            let text = match airlock_audit::Record::parse(&line) {
                Ok(r) if !args.json => airlock_audit::format_record(&r),
                Ok(_) => String::from_utf8_lossy(&line).into_owned(),
                Err(e) => format!("unreadable record: {e}"),
            };
            if writeln!(out, "{text}").is_err() {
                break;
            }
        }
        Ok(0)
    })
}

/// `airlock exec`: runs a command in a sandbox; exits with its status.
pub fn exec(args: ExecArgs) -> anyhow::Result<u8> {
    with_client(|c| async move {
        let mut signals = Signals::install()?;
        let spec = ExecSpec {
            argv: args.cmd.command,
            env: args.cmd.env,
            cwd: args.cmd.workdir,
            tty: args.cmd.tty,
        };
        match stream_exec(&c, &args.id, spec, &mut signals, OnSignal::Forward).await? {
            ExecEnd::Exited(code) | ExecEnd::GaveUp(code) => Ok(code),
            ExecEnd::Broken(detail) => bail!("{detail}"),
        }
    })
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
    let size = spec.tty.then(|| {
        terminal_size()
            .map(|w| TerminalSize {
                rows: w.rows,
                cols: w.cols,
            })
            .unwrap_or(TerminalSize { rows: 24, cols: 80 })
    });
    let mut env = spec.env;
    if spec.tty && !env.iter().any(|(k, _)| k == "TERM") {
        if let Ok(term) = std::env::var("TERM") {
            env.push(("TERM".into(), term));
        }
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
    if spec.tty {
        let mut winch =
            signal(SignalKind::window_change()).context("installing SIGWINCH handler")?;
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
                crate::note!(
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
            let w: &mut dyn Write = if stream == "stderr" {
                &mut stderr
            } else {
                &mut stdout
            };
            // A closed reader (`| head`) ends our copy, not the error path.
            if w.write_all(&bytes).and_then(|()| w.flush()).is_err() {
                return Ok(ExecEnd::Exited(exit::clamp(128 + libc::SIGPIPE)));
            }
        }
        if let Some(x) = l.exit {
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

/// One side of `airlock cp`.
enum Place {
    Host(PathBuf),
    Sandbox { id: String, path: String },
}

fn place(s: &str) -> Place {
    if let Some((id, path)) = s.split_once(':')
        && !id.is_empty()
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && path.starts_with('/')
    {
        return Place::Sandbox {
            id: id.into(),
            path: path.into(),
        };
    }
    Place::Host(PathBuf::from(s))
}

fn file_name(path: &str) -> Option<&str> {
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

/// `airlock cp`: copies one file between the host and a sandbox.
pub fn cp(args: CpArgs) -> anyhow::Result<u8> {
    match (place(&args.src), place(&args.dst)) {
        (Place::Host(src), Place::Sandbox { id, path }) => {
            let meta = std::fs::metadata(&src).with_context(|| src.display().to_string())?;
            if !meta.is_file() {
                bail!(
                    "{}: only regular files can be copied (for a tree, pipe tar through `airlock exec`)",
                    src.display()
                );
            }
            let data = std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let mode = format!("{:o}", meta.permissions().mode() & 0o777);
            with_client(|c| async move {
                let base = sandbox_path(&id, "/files")?;
                let mut target = path.clone();
                let is_dir = path.ends_with('/') || {
                    let stat = c
                        .json::<FileStat>(
                            Method::GET,
                            &format!("{base}/stat?path={}", encode_query(&path)),
                            None::<&()>,
                        )
                        .await;
                    matches!(stat, Ok(s) if s.kind == "directory")
                };
                if is_dir {
                    let name = src
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .context("the source has no file name")?;
                    target = format!("{}/{name}", path.trim_end_matches('/'));
                }
                c.call(
                    Method::PUT,
                    &format!("{base}?path={}&mode={mode}", encode_query(&target)),
                    Some(("application/octet-stream", data)),
                )
                .await
                .with_context(|| format!("writing {id}:{target}"))?;
                Ok(0)
            })
        }
        (Place::Sandbox { id, path }, Place::Host(dst)) => with_client(|c| async move {
            let url = format!(
                "{}?path={}",
                sandbox_path(&id, "/files")?,
                encode_query(&path)
            );
            let resp = c
                .call(Method::GET, &url, None)
                .await
                .with_context(|| format!("reading {id}:{path}"))?;
            let data = airlock_api::client::collect(resp).await?;
            let target = if dst.is_dir() {
                dst.join(file_name(&path).context("the source has no file name")?)
            } else {
                dst
            };
            write_host(&target, &data)?;
            Ok(0)
        }),
        (Place::Host(_), Place::Host(_)) => {
            bail!("one side must be a sandbox path, ID:/path (use cp(1) for host copies)")
        }
        (Place::Sandbox { .. }, Place::Sandbox { .. }) => {
            bail!("copying between two sandbox paths is not supported; go through the host")
        }
    }
}

fn write_host(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_places() {
        assert!(
            matches!(place("abc123:/tmp/x"), Place::Sandbox { id, path } if id == "abc123" && path == "/tmp/x")
        );
        assert!(matches!(place("./a:b"), Place::Host(_)));
        assert!(matches!(place("C:relative"), Place::Host(_)));
        assert!(matches!(place("/abs/file"), Place::Host(_)));
    }
}
