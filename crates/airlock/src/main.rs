//! The `airlock` command line: parse, install logging, dispatch, map errors to exit codes.
//!
//! The commands are thin (`cmd/`): they parse arguments and call the crates that do the work:
//! `airlock-supervisor` (one sandbox), `airlock-api` (the daemon and its client),
//! `airlock-image` (images), `airlock-policy` and `airlock-audit`. `airlock __gateway NAME` is
//! not a user command: the supervisor starts the gateway processes that way.

mod cmd;
mod exit;
mod termfilter;
mod ui;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Run untrusted AI coding agents in microVMs under one policy.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a sandbox, run a command in it, and tear it down; exits with the command's status.
    Run(cmd::run::RunArgs),
    /// Check this host: accelerator, QEMU, vsock backend, kernel and image cache.
    Doctor(cmd::doctor::DoctorArgs),
    /// Validate and explain policy files.
    Policy(cmd::policy::PolicyArgs),
    /// Build, list, check and update guest images (the Debian root filesystem and agent kits).
    Image(cmd::image::ImageArgs),
    /// Agent kits (Claude Code, Codex, Gemini CLI, aider) and their persistent homes.
    Agent(cmd::agent::AgentArgs),
    /// Show what a sandbox changed in its overlay mounts.
    Diff(cmd::overlay::OverlayArgs),
    /// Write a finished sandbox's overlay changes to the host.
    Apply(cmd::overlay::OverlayArgs),
    /// Drop a finished sandbox's overlay changes.
    Discard(cmd::overlay::OverlayArgs),
    /// Verify and read sandbox audit logs.
    Audit(cmd::audit::AuditArgs),
    /// Print a sandbox's audit events; with -f, follow them live until it ends.
    Events(cmd::audit::EventsArgs),
    /// Counters of a sandbox (cpu, memory, fs ops, bytes, denials) as JSON or Prometheus text.
    Stats(cmd::audit::StatsArgs),
    /// Serve the sandbox API on a unix socket (and optionally TCP); sandboxes outlive commands.
    Daemon(cmd::daemon::DaemonArgs),
    /// Create a sandbox in the daemon and print its id.
    Create(cmd::remote::CreateArgs),
    /// Run a command in a daemon's sandbox; exits with the command's status.
    Exec(cmd::remote::ExecArgs),
    /// List the daemon's sandboxes.
    Ls(cmd::remote::LsArgs),
    /// Stop sandboxes (their record and audit log stay until `rm`).
    Stop(cmd::remote::IdArgs),
    /// Stop and remove sandboxes.
    Rm(cmd::remote::IdArgs),
    /// Print a daemon sandbox's audit events; with -f, follow them until it ends.
    Logs(cmd::remote::LogsArgs),
    /// Copy a file between the host and a sandbox (one side is ID:/path).
    Cp(cmd::remote::CpArgs),
    /// Serve sandboxes as MCP tools over stdio (for Claude Code and other MCP clients).
    Mcp(cmd::mcp::McpArgs),
    /// Serve a local review page: sandboxes, live timelines, verified audit, overlay diffs.
    Ui(cmd::webui::UiArgs),
}

fn main() -> ExitCode {
    // The jailed gateway processes the supervisor starts: not a user command.
    let mut argv = std::env::args_os().skip(1);
    if argv.next().is_some_and(|a| a == "__gateway") {
        return match argv.next() {
            Some(kind) if kind == "egress" => ExitCode::from(airlock_net::process::child_main()),
            Some(kind) if kind == "fs" => ExitCode::from(airlock_fs::process::child_main()),
            Some(kind) if kind == "attach" => {
                let rest: Vec<_> = argv.collect();
                ExitCode::from(airlock_fs::process::attach_main(&rest))
            }
            _ => ExitCode::from(exit::AIRLOCK_ERROR),
        };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Usage errors use airlock's own code so they never look like the command's status.
            return if e.use_stderr() {
                ExitCode::from(exit::AIRLOCK_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if !matches!(
        cli.command,
        Command::Run(_) | Command::Exec(_) | Command::Daemon(_) | Command::Mcp(_) | Command::Ui(_)
    ) {
        // Reporting commands behave like other Unix tools when their reader goes away
        // (`airlock audit show | head`): end quietly instead of failing a write.
        // SAFETY: resetting a signal disposition to its default has no memory-safety
        // preconditions; no other thread exists yet.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Run(args) => cmd::run::main(args),
        Command::Doctor(args) => cmd::doctor::main(&args),
        Command::Policy(args) => cmd::policy::main(args),
        Command::Image(args) => cmd::image::main(args),
        Command::Agent(args) => cmd::agent::main(args),
        Command::Audit(args) => cmd::audit::main(args),
        Command::Diff(args) => cmd::overlay::diff(&args),
        Command::Apply(args) => cmd::overlay::apply(&args),
        Command::Discard(args) => cmd::overlay::discard(&args),
        Command::Events(args) => cmd::audit::events(args),
        Command::Stats(args) => cmd::audit::stats(args),
        Command::Daemon(args) => cmd::daemon::main(args),
        Command::Create(args) => cmd::remote::create(args),
        Command::Exec(args) => cmd::remote::exec(args),
        Command::Ls(args) => cmd::remote::ls(args),
        Command::Stop(args) => cmd::remote::stop(args),
        Command::Rm(args) => cmd::remote::rm(args),
        Command::Logs(args) => cmd::remote::logs(args),
        Command::Cp(args) => cmd::remote::cp(args),
        Command::Mcp(args) => cmd::mcp::main(args),
        Command::Ui(args) => cmd::webui::main(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            ui::note!("airlock: {e:#}");
            ExitCode::from(exit::AIRLOCK_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks (duplicate names, bad defaults) over every subcommand.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
