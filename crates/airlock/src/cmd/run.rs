//! `airlock run`: boot a sandbox, run one command with its stdio bridged, tear down, and exit with
//! the command's status.
//!
//! When an `airlock daemon` answers on its socket, the sandbox comes from the daemon instead (from
//! its warm pool when it keeps one): created through the API with the same options, the command
//! streamed through the exec API by the code `airlock exec` uses, and the sandbox deleted on
//! every path. Without a daemon, with `--no-daemon`, or with options only a local boot can honour,
//! airlock boots the sandbox itself. Either way the output and exit status are the same.
//!
//! Signals: SIGINT/SIGTERM/SIGHUP are forwarded to the command's process group in the guest; if
//! it has not ended after [`GRACE`], or a second signal arrives, the sandbox is torn down and
//! airlock exits with 128+N. Teardown runs on every path, so nothing is left behind.

mod timings;

use super::args::CommandArgs;
use super::image::resolve_images;
use super::stream::{ExecEnd, ExecSpec, OnSignal};
use crate::exit;
use crate::termfilter;
use crate::ui::{RawMode, Signals, note_oom, note_removed, note_spawn_failure, terminal_size};
use airlock_api::client::{Client, ClientError};
use airlock_api::types::{CreateSandboxRequest, SandboxInfo, SandboxStatus};
use airlock_image::Cache;
use airlock_image::kit::{self, Kit};
use airlock_policy::{MountMode, Policy};
use airlock_proto::{ExecControl, WindowSize};
use airlock_supervisor::launch::{LaunchError, LaunchOptions, LoadedPolicy, PolicyChoice};
use airlock_supervisor::{ExecIo, ExecOutcome, ExecTimings, Sandbox};
use anyhow::Context;
use clap::Args;
use hyper::Method;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// How long a forwarded signal may take to end the command before airlock tears down.
const GRACE: Duration = Duration::from_secs(5);
/// How long to wait for the daemon to finish stopping a sandbox it stopped under a command.
const DAEMON_STOP_WAIT: Duration = Duration::from_secs(30);

/// Arguments of `airlock run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Host directory shared as the policy's workspace mount (default: the current directory).
    #[arg(long, value_name = "DIR")]
    workspace: Option<std::path::PathBuf>,
    /// Policy file governing the sandbox (default: the shipped `default` profile).
    #[arg(long, value_name = "FILE", conflicts_with = "profile")]
    policy: Option<std::path::PathBuf>,
    /// A shipped policy profile: default, offline, claude-code, codex, gemini, aider, docker, container.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Run with an agent kit (`airlock agent ls`): its command installed over the image, its
    /// profile unless --policy or --profile says otherwise, and its home for this workspace.
    /// Chosen by the command's name (`airlock run -- claude`) when no --image, --profile or
    /// --policy is given.
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
    /// Guest image (overrides the policy's sandbox.image): `tiny`, or a name built with
    /// `airlock image build`.
    #[arg(long, value_name = "NAME")]
    image: Option<String>,
    /// Virtual CPUs (overrides the policy's sandbox.cpus).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16))]
    cpus: Option<u32>,
    /// Guest memory in MiB (overrides the policy's sandbox.memory).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(64..=65536))]
    memory: Option<u64>,
    /// Keep the sandbox's state dir (console log, sockets) and print its path.
    #[arg(long)]
    keep: bool,
    /// Print start-up phase timings as JSON on stderr when done.
    #[arg(long)]
    timings: bool,
    /// Boot the sandbox here even when an `airlock daemon` is running.
    #[arg(long, env = "AIRLOCK_NO_DAEMON", value_parser = clap::builder::BoolishValueParser::new())]
    no_daemon: bool,
    /// The command, how it runs.
    #[command(flatten)]
    cmd: CommandArgs,
    /// The kit chosen by [`select_kit`].
    #[arg(skip)]
    kit: Option<Box<Kit>>,
}

/// Runs the subcommand; returns the exit code.
pub fn main(args: RunArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(dispatch(args));
    // The stdin reader thread may be blocked in read(2); do not wait for it.
    rt.shutdown_background();
    result
}

/// Runs through a daemon when one answers and can honour the options; otherwise boots here.
async fn dispatch(mut args: RunArgs) -> anyhow::Result<u8> {
    args.cmd.tty = args.cmd.wants_tty();
    if args.cmd.command.is_empty() && !args.image.as_deref().is_some_and(|i| i.starts_with("oci:"))
    {
        anyhow::bail!(
            "no command: give one after `--` (only an imported image, `--image oci:NAME`, has a \
             command of its own)"
        );
    }
    let mut signals = Signals::install()?;
    let workspace = match &args.workspace {
        Some(d) => {
            std::path::absolute(d).with_context(|| format!("--workspace {}", d.display()))?
        }
        None => std::env::current_dir()
            .context("reading the current directory (the default workspace)")?,
    };
    let kit = select_kit(&mut args)?;
    if let Some(kit) = &kit {
        let chosen = match (&args.policy, &args.profile) {
            (Some(p), _) => format!("policy {}", p.display()),
            (None, Some(p)) => format!("profile {p}"),
            (None, None) => "profile default".into(),
        };
        let prepared =
            super::agent::prepare_for_run(kit.clone(), args.image.clone(), chosen, &workspace);
        tokio::select! {
            r = prepared => r?,
            sig = signals.recv() => return Ok(interrupted(sig, "installing the agent kit")),
        }
    }
    let layers =
        super::layers::prepare_for_run(policy_choice(&args), args.image.as_deref(), &workspace);
    tokio::select! {
        r = layers => r?,
        sig = signals.recv() => return Ok(interrupted(sig, "building a package layer")),
    }
    let args = RunArgs {
        kit: kit.map(Box::new),
        ..args
    };
    if let Some(route) = daemon_route(&args, &workspace)
        && let Some(code) = run_in_daemon(&args, &route, &mut signals).await?
    {
        return Ok(code);
    }
    run(args, workspace, signals).await
}

/// The agent kit this run uses: `--agent NAME`, or the kit whose command the command names
/// when no `--image`, `--profile` or `--policy` chooses otherwise. Its profile becomes the
/// run's unless `--policy` or `--profile` names one.
fn select_kit(args: &mut RunArgs) -> anyhow::Result<Option<Kit>> {
    let kit = match &args.agent {
        Some(name) => super::agent::named(name)?,
        None if args.image.is_none() && args.profile.is_none() && args.policy.is_none() => {
            match args.cmd.command.first().and_then(|c| kit::for_command(c)) {
                Some(k) => k,
                None => return Ok(None),
            }
        }
        None => return Ok(None),
    };
    if args.policy.is_none() && args.profile.is_none() {
        args.profile = Some(kit.profile.clone());
    }
    Ok(Some(kit))
}

fn policy_choice(args: &RunArgs) -> PolicyChoice {
    match (&args.policy, &args.profile) {
        (Some(file), _) => PolicyChoice::File(file.clone()),
        (None, profile) => PolicyChoice::Profile(profile.as_deref().unwrap_or("default").into()),
    }
}

/// A daemon to run through: its client, the policy as loaded here, and the create request.
struct DaemonRoute {
    client: Client,
    loaded: LoadedPolicy,
    request: CreateSandboxRequest,
}

/// The daemon route, or `None` to boot here: no daemon listens (silently), `--no-daemon`,
/// or an option only a local boot honours (with a note where that is not obvious).
fn daemon_route(args: &RunArgs, workspace: &Path) -> Option<DaemonRoute> {
    // `--keep` keeps a state dir on this host and `--timings` times a boot on this host.
    if args.no_daemon || args.keep || args.timings {
        return None;
    }
    let socket = airlock_api::socket::default_socket();
    if let Err(e) = airlock_api::socket::check_before_connect(&socket) {
        crate::ui::note!("airlock: not using the daemon: {e}");
        return None;
    }
    std::os::unix::net::UnixStream::connect(&socket).ok()?;
    // A policy that does not load is reported by the local path, word for word as without a
    // daemon.
    let loaded =
        airlock_supervisor::launch::load_policy(&policy_choice(args), Some(workspace)).ok()?;
    let policy = &loaded.policy;
    if policy.mounts().iter().any(|m| m.mode == MountMode::Overlay) {
        crate::ui::note!(
            "airlock: {} has an overlay mount, kept for review on this host after the run; not using the daemon",
            loaded.origin
        );
        return None;
    }
    // The redactor takes these values from the environment of whoever boots the sandbox.
    let redact_env = &policy.audit().redact_env;
    if redact_env
        .iter()
        .any(|name| args.cmd.env.iter().any(|(k, _)| k == name) || std::env::var_os(name).is_some())
    {
        crate::ui::note!(
            "airlock: {} redacts values of this shell's environment (audit.redact_env), which the daemon cannot see; not using the daemon",
            loaded.origin
        );
        return None;
    }
    // Credentials are read from the environment of whoever boots the sandbox: keys set in
    // this shell must not be looked for in the daemon's.
    let from_here = policy.credentials().iter().any(|c| {
        matches!(&c.source, airlock_policy::CredentialSource::Env(name) if std::env::var_os(name).is_some())
    });
    if from_here {
        crate::ui::note!(
            "airlock: {} takes credentials from this shell's environment, which the daemon cannot see; not using the daemon",
            loaded.origin
        );
        return None;
    }
    // The API carries paths as UTF-8 text; other paths boot here.
    let policy_origin = match &args.policy {
        Some(file) => Some(std::path::absolute(file).ok()?.to_str()?.to_string()),
        None => None,
    };
    let request = CreateSandboxRequest {
        image: args.image.clone(),
        policy: policy_origin.as_ref().map(|_| loaded.source.text.clone()),
        policy_origin,
        // Clap lets only one of --policy and --profile through.
        profile: args.profile.clone(),
        agent: args.kit.as_ref().map(|k| k.name.clone()),
        workspace: Some(workspace.to_str()?.to_string()),
        cpus: args.cpus,
        memory_mib: args.memory,
        labels: [("created-by".to_string(), "airlock-run".to_string())].into(),
        idle_timeout_secs: None,
        // As with a local run, only the policy's sandbox.timeout bounds the sandbox's life.
        max_lifetime_secs: Some(0),
    };
    Some(DaemonRoute {
        client: Client::new(socket),
        loaded,
        request,
    })
}

/// Runs the command in a sandbox the daemon creates, and deletes it on every path. `None` when
/// the daemon went away before creating one: the caller boots here.
async fn run_in_daemon(
    args: &RunArgs,
    route: &DaemonRoute,
    signals: &mut Signals,
) -> anyhow::Result<Option<u8>> {
    let client = &route.client;
    let create =
        client.json::<serde_json::Value>(Method::POST, "/v1/sandboxes", Some(&route.request));
    tokio::pin!(create);
    let created = tokio::select! {
        r = &mut create => r,
        sig = signals.recv() => {
            let code = interrupted(sig, "booting");
            // The daemon finishes the boot whatever happens to this request: wait for the
            // sandbox to delete it. A second signal stops waiting (the idle timeout collects it).
            tokio::select! {
                r = &mut create => {
                    if let Some(id) = r.ok().as_ref().and_then(|v| v.get("id")).and_then(|v| v.as_str()) {
                        let _ = delete(client, id).await;
                    }
                }
                _ = signals.recv() => {}
            }
            return Ok(Some(code));
        }
    };
    let reply = match created {
        Ok(v) => v,
        Err(ClientError::NoDaemon { .. }) => return Ok(None),
        // The daemon's refusal stands: its policy and limits are the operator's.
        Err(ClientError::Api { body, .. }) => {
            crate::ui::note!(
                "airlock: the daemon on {} did not create the sandbox: {}",
                client.socket().display(),
                body.detail
            );
            return Ok(Some(exit::AIRLOCK_ERROR));
        }
        Err(e) => {
            return Err(anyhow::Error::from(e).context(format!(
                "creating a sandbox through the daemon on {}",
                client.socket().display()
            )));
        }
    };
    let info = match serde_json::from_value::<SandboxInfo>(reply.clone()) {
        Ok(info) => info,
        Err(e) => {
            if let Some(id) = reply.get("id").and_then(|v| v.as_str()) {
                let _ = delete(client, id).await;
            }
            anyhow::bail!("unexpected reply from the daemon to create: {e}");
        }
    };
    // Operators (and bench/pool.sh) see with AIRLOCK_LOG=debug whether the pool served it; a
    // daemon without a pool does not say.
    let pooled = reply
        .get("pooled")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    tracing::debug!(id = %info.id, pooled, "sandbox from the daemon");
    if let Some(log) = &info.audit_log
        && std::io::stderr().is_terminal()
    {
        crate::ui::note!("airlock: audit log {log}");
    }

    let spec = ExecSpec {
        argv: args.cmd.command.clone(),
        env: args.cmd.env.clone(),
        cwd: args.cmd.workdir.clone(),
        tty: args.cmd.tty,
        filter: !args.cmd.allow_title_and_clipboard,
    };
    let outcome =
        match super::stream::stream_exec(client, &info.id, spec, signals, OnSignal::GiveUp(GRACE))
            .await
        {
            Ok(ExecEnd::Exited(code) | ExecEnd::GaveUp(code)) => Ok(code),
            Ok(ExecEnd::Broken(detail)) => {
                stopped_under_command(client, &info.id, &route.loaded.policy, &detail).await
            }
            // The daemon stopped the sandbox before the command started (a time limit shorter
            // than the boot, a kill rule): the same causes, the same exits.
            Err(e)
                if matches!(
                    e.downcast_ref::<ClientError>(),
                    Some(ClientError::Api { status, .. }) if *status == hyper::StatusCode::CONFLICT
                ) =>
            {
                let detail = format!("{e:#}");
                stopped_under_command(client, &info.id, &route.loaded.policy, &detail).await
            }
            Err(e) => Err(e),
        };
    let deleted = delete(client, &info.id).await;
    let code = outcome?;
    deleted?;
    Ok(Some(code))
}

/// The daemon stopped the sandbox while the command ran: exit as a local run would for the same
/// cause (a `kill` monitor rule, the policy's time limit), or fail naming the daemon's reason.
async fn stopped_under_command(
    client: &Client,
    id: &str,
    policy: &Policy,
    detail: &str,
) -> anyhow::Result<u8> {
    let info = wait_stopped(client, id).await?;
    let reason = info.end_reason.unwrap_or_default();
    let cause = reason.split(" (teardown: ").next().unwrap_or_default();
    // The daemon's end reasons for these causes (crate::daemon).
    if cause.starts_with("monitor rule ") {
        crate::ui::note!("airlock: {cause}; stopping the sandbox");
        return Ok(exit::KILLED);
    }
    if let Some(limit) = policy.sandbox().timeout
        && cause.starts_with("reached its maximum lifetime")
    {
        crate::ui::note!(
            "airlock: the sandbox reached its time limit of {} s (sandbox.timeout); stopping it",
            limit.as_secs()
        );
        return Ok(exit::TIMED_OUT);
    }
    anyhow::bail!("{detail}: the daemon stopped sandbox {id}: {reason}")
}

/// Polls until the daemon has finished stopping `id` (the API announces it nowhere else), up to
/// [`DAEMON_STOP_WAIT`].
async fn wait_stopped(client: &Client, id: &str) -> anyhow::Result<SandboxInfo> {
    let path = super::stream::sandbox_path(id, "")?;
    let deadline = Instant::now() + DAEMON_STOP_WAIT;
    loop {
        let info: SandboxInfo = client
            .json(Method::GET, &path, None::<&()>)
            .await
            .with_context(|| format!("reading sandbox {id} from the daemon"))?;
        if info.status == SandboxStatus::Stopped || Instant::now() >= deadline {
            return Ok(info);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes a daemon sandbox. One already gone is fine; one the daemon is still stopping is
/// deleted once stopped.
async fn delete(client: &Client, id: &str) -> anyhow::Result<()> {
    let path = super::stream::sandbox_path(id, "")?;
    let mut waited = false;
    loop {
        match client.call(Method::DELETE, &path, None).await {
            Ok(_) => return Ok(()),
            Err(ClientError::Api { status, .. }) if status == hyper::StatusCode::NOT_FOUND => {
                return Ok(());
            }
            Err(ClientError::Api { status, .. })
                if status == hyper::StatusCode::CONFLICT && !waited =>
            {
                waited = true;
                wait_stopped(client, id).await?;
            }
            Err(e) => {
                return Err(anyhow::Error::from(e)
                    .context(format!("removing sandbox {id} from the daemon")));
            }
        }
    }
}

/// Boots the sandbox here.
async fn run(args: RunArgs, workspace: PathBuf, mut signals: Signals) -> anyhow::Result<u8> {
    let started = Instant::now();
    let cache = Cache::from_env()?;
    let images = tokio::select! {
        r = resolve_images(cache) => r?,
        sig = signals.recv() => return Ok(interrupted(sig, "preparing images")),
    };
    let image_resolve = started.elapsed();

    let options = LaunchOptions {
        policy: policy_choice(&args),
        workspace: Some(workspace),
        image: args.image.clone(),
        cpus: args.cpus,
        memory_mib: args.memory,
        keep: args.keep,
        env: args.cmd.env.clone(),
        notify: airlock_supervisor::Notifier::stderr(),
        kit: args.kit.as_deref().cloned(),
    };
    let launch = airlock_supervisor::launch::prepare(&options, &images)
        .await
        .map_err(|e| match e {
            LaunchError::Invalid { message, .. } => anyhow::anyhow!(message),
            e => anyhow::Error::from(e),
        })?;
    let id = launch.id.clone();
    let has_overlay = launch.has_overlay;
    if has_overlay {
        crate::ui::note!(
            "airlock: sandbox {id} works on an overlay copy; the host tree stays untouched"
        );
    }
    let policy: &Policy = &launch.policy;
    let limits = policy.sandbox();
    let config = &launch.config;
    tracing::debug!(accel = %config.accel.accel, reason = %config.accel.reason, "accelerator");
    let sandbox = tokio::select! {
        r = Sandbox::start(config, &launch.images) => r.context("starting the sandbox")?,
        sig = signals.recv() => return Ok(interrupted(sig, "booting")),
    };
    if args.keep {
        crate::ui::note!("airlock: state dir {}", sandbox.state_dir().display());
    }
    airlock_supervisor::launch::record_unprotected(&sandbox, policy, &launch.origin);
    if let Some(r) = sandbox.recorder()
        && std::io::stderr().is_terminal()
    {
        crate::ui::note!("airlock: audit log {}", r.path().display());
    }

    let exec_started = Instant::now();
    let image_config = launch
        .image
        .as_ref()
        .and_then(|i| i.manifest.oci.as_ref())
        .map(|o| o.config.clone());
    let stages = OnceLock::new();
    let running = exec(
        &sandbox,
        &args,
        policy,
        image_config.as_ref(),
        &mut signals,
        &stages,
    );
    // No policy time limit: wait as long as the command runs.
    let limit = limits.timeout.unwrap_or(Duration::MAX);
    let outcome = match tokio::time::timeout(limit, running).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let why = format!(
                "the sandbox reached its time limit of {} s (sandbox.timeout)",
                limit.as_secs()
            );
            crate::ui::note!("airlock: {why}; stopping it");
            Ok((exit::TIMED_OUT, why))
        }
    };
    let exec_time = exec_started.elapsed();
    let teardown_started = Instant::now();
    let start_timings = sandbox.timings.clone();
    let reason = match &outcome {
        Ok((code, why)) => format!("{why}; airlock exits {code}"),
        Err(e) => format!("error: {e:#}"),
    };
    let shutdown = sandbox.shutdown(&reason).await;
    let teardown = teardown_started.elapsed();
    if args.timings {
        let t = timings::Timings::new(
            image_resolve,
            &start_timings,
            exec_time,
            stages.get().copied().unwrap_or_default(),
            teardown,
            started.elapsed(),
        );
        crate::ui::note!("{}", serde_json::to_string(&t).unwrap_or_default());
    }
    if has_overlay {
        crate::ui::note!(
            "airlock: the guest's changes are kept in an overlay: review them with `airlock diff {id}`, then `airlock apply {id}` or `airlock discard {id}`"
        );
    }
    let (code, _) = outcome?;
    shutdown.context("tearing down the sandbox")?;
    Ok(code)
}

/// A signal before the command ran: what was started is already torn down by drop.
fn interrupted(sig: i32, phase: &str) -> u8 {
    crate::ui::note!("airlock: interrupted by signal {sig} while {phase}");
    exit::clamp(128 + sig)
}

async fn exec(
    sandbox: &Sandbox,
    args: &RunArgs,
    policy: &Policy,
    image: Option<&airlock_image::debian::manifest::OciRunConfig>,
    signals: &mut Signals,
    stages: &OnceLock<ExecTimings>,
) -> anyhow::Result<(u8, String)> {
    let stdin_is_tty = std::io::stdin().is_terminal();
    // Listening before the size is read: a resize during the start is delivered afterwards.
    let winch = if args.cmd.tty {
        Some(signal(SignalKind::window_change()).context("installing SIGWINCH handler")?)
    } else {
        None
    };
    let tty = args
        .cmd
        .tty
        .then(|| terminal_size().unwrap_or(WindowSize { rows: 24, cols: 80 }));
    let mut env = args.cmd.env.clone();
    if tty.is_some()
        && !env.iter().any(|(k, _)| k == "TERM")
        && let Ok(term) = std::env::var("TERM")
    {
        env.push(("TERM".into(), term));
    }
    let mut request = airlock_supervisor::launch::exec_request(
        policy,
        args.cmd.command.clone(),
        env,
        args.cmd.workdir.clone(),
        tty,
    );
    if let Some(config) = image {
        airlock_supervisor::launch::apply_image_config(
            &mut request,
            config,
            args.cmd.workdir.is_some(),
        );
    }
    if request.argv.is_empty() {
        anyhow::bail!("no command: give one after `--` (the image names no Entrypoint or Cmd)");
    }
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (stdout, stderr, removed) = termfilter::stdio(!args.cmd.allow_title_and_clipboard);
    let io = ExecIo {
        stdin: Some(spawn_stdin_reader()),
        stdout: Box::pin(stdout),
        stderr: Box::pin(stderr),
        control: control_rx,
    };
    // Raw mode only when our own terminal is the input; restored when the guard drops.
    let _raw = if args.cmd.tty && stdin_is_tty {
        RawMode::enter().ok()
    } else {
        None
    };
    if let Some(mut winch) = winch {
        let tx = control_tx.clone();
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some(size) = terminal_size()
                    && tx.send(ExecControl::Resize { size }).is_err()
                {
                    break;
                }
            }
        });
    }

    let exec = sandbox.exec(request, io);
    tokio::pin!(exec);
    let mut forwarded: Option<(i32, tokio::time::Instant)> = None;
    let mut kill = match sandbox.recorder() {
        Some(r) => r.kill_requested(),
        None => tokio::sync::watch::channel(None).1,
    };
    let outcome = loop {
        let deadline = forwarded.map(|(_, at)| at + GRACE);
        tokio::select! {
            r = &mut exec => break r.context("running the command")?,
            Ok(()) = kill.changed() => {
                if let Some(why) = kill.borrow().clone() {
                    crate::ui::note!("airlock: {why}; stopping the sandbox");
                    return Ok((exit::KILLED, why));
                }
            }
            sig = signals.recv() => {
                if forwarded.is_some() {
                    // Second signal: stop waiting.
                    return Ok((exit::clamp(128 + sig), format!("second signal {sig}")));
                }
                let _ = control_tx.send(ExecControl::Signal { signal: sig });
                forwarded = Some((sig, tokio::time::Instant::now()));
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                let sig = forwarded.map_or(libc::SIGTERM, |(s, _)| s);
                let why = format!("the command did not exit within {} s of signal {sig}", GRACE.as_secs());
                crate::ui::note!("airlock: {why}; stopping the sandbox");
                return Ok((exit::clamp(128 + sig), why));
            }
        }
    };
    drop(_raw);
    note_removed(removed.load(Ordering::Relaxed));
    Ok(match outcome {
        ExecOutcome::Exited {
            status,
            oom_kills,
            timings,
        } => {
            let _ = stages.set(timings);
            note_oom(oom_kills);
            (
                exit::clamp(status.shell_code()),
                format!("command ended: {status:?}, {oom_kills} OOM kill(s)"),
            )
        }
        ExecOutcome::SpawnFailed { reason, message } => {
            let what = note_spawn_failure(reason, &message);
            (exit::clamp(reason.exit_code()), what.to_string())
        }
    })
}

/// Reads this process's stdin on a plain thread (a blocked read must not hold up shutdown).
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; airlock_proto::codec::DATA_CHUNK];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx
                            .blocking_send(buf.get(..n).unwrap_or_default().to_vec())
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
    rx
}
