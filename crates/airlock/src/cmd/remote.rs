//! `airlock create|exec|ls|stop|rm|logs|cp`: commands that talk to a running `airlock daemon`
//! over its unix socket. Without a daemon they say so, name the socket and how to start one,
//! and exit 125. `airlock exec` exits with the command's status, as `airlock run` does; both
//! stream their command with [`stream_exec`] when they go through the daemon.

use super::args::{CommandArgs, parse_duration};
use super::stream::{ExecEnd, ExecSpec, OnSignal, sandbox_path, stream_exec, with_client};
use crate::ui::Signals;
use airlock_api::client::{Lines, encode_query};
use airlock_api::types::{CreateSandboxRequest, FileStat, SandboxInfo, SandboxList};
use anyhow::{Context, bail};
use clap::Args;
use hyper::Method;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `airlock create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Guest image (overrides the policy's sandbox.image).
    #[arg(long, value_name = "NAME")]
    image: Option<String>,
    /// Policy file (its text is sent to the daemon).
    #[arg(long, value_name = "FILE", conflicts_with = "profile")]
    policy: Option<PathBuf>,
    /// A shipped profile: default, offline, claude-code, codex, gemini, aider, docker, container.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// An agent kit layered over the image, with its home for the workspace (`airlock agent ls`).
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
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
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    idle_timeout: Option<std::time::Duration>,
    /// Stop this long after creation (`2h`, `0` never; default: the daemon's).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
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
    cmd: CommandArgs,
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
        agent: args.agent,
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
        let tty = args.cmd.wants_tty();
        let spec = ExecSpec {
            argv: args.cmd.command,
            env: args.cmd.env,
            cwd: args.cmd.workdir,
            tty,
            filter: !args.cmd.allow_title_and_clipboard,
        };
        match stream_exec(&c, &args.id, spec, &mut signals, OnSignal::Forward).await? {
            ExecEnd::Exited(code) | ExecEnd::GaveUp(code) => Ok(code),
            ExecEnd::Broken(detail) => bail!("{detail}"),
        }
    })
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
