//! `airlock policy check|explain|schema`: validate policy files, show decisions, print the schema.

use airlock_policy::{Policy, PolicyErrors, Query, load_file, load_profile, profile_names};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Arguments of `airlock policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate policy files; lists every error as file:line:column and exits 1 if any.
    Check {
        /// Policy files to check.
        #[arg(required_unless_present = "profiles", value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Also (or only) check every shipped profile.
        #[arg(long)]
        profiles: bool,
    },
    /// Show how a policy decides reads, writes and connections, with the deciding rule.
    Explain {
        /// Policy file (or use --profile).
        #[arg(
            value_name = "FILE",
            conflicts_with = "profile",
            required_unless_present = "profile"
        )]
        file: Option<PathBuf>,
        /// A shipped profile instead of a file.
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        /// A path to read, relative to the workspace or absolute in the guest.
        #[arg(long = "read", value_name = "PATH")]
        reads: Vec<String>,
        /// A path to write.
        #[arg(long = "write", value_name = "PATH")]
        writes: Vec<String>,
        /// A connection, HOST:PORT or \[IPV6\]:PORT.
        #[arg(long = "connect", value_name = "HOST:PORT", value_parser = parse_connect)]
        connects: Vec<Query>,
        /// The host directory to bind to the workspace mount, as `airlock run` would.
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
    },
    /// Print the policy JSON Schema (for editor completion).
    Schema,
}

fn parse_connect(s: &str) -> Result<Query, String> {
    Query::parse_connect(s).map_err(|e| e.to_string())
}

/// Runs the subcommand; returns the exit code.
pub fn main(args: PolicyArgs) -> anyhow::Result<u8> {
    match args.command {
        PolicyCommand::Check { files, profiles } => Ok(check(&files, profiles)),
        PolicyCommand::Explain {
            file,
            profile,
            reads,
            writes,
            connects,
            workspace,
        } => {
            let policy = match (&file, profile) {
                (Some(f), _) => load_file(f).map_err(report)?,
                (None, Some(name)) => load_named_profile(&name)?,
                (None, None) => anyhow::bail!("give a policy FILE or --profile NAME"),
            };
            let policy = match &workspace {
                Some(dir) => policy.with_workspace(dir).map_err(report)?,
                None => policy,
            };
            // airlock's own files inside a share, as `airlock run` would protect them.
            let files = airlock_supervisor::launch::airlock_files(file.as_deref(), &policy);
            let reserved = policy.reserve(
                &files
                    .iter()
                    .map(|(path, access, what)| airlock_policy::HostFile {
                        path,
                        access: *access,
                        what,
                    })
                    .collect::<Vec<_>>(),
            );
            let policy = policy.with_reserved(reserved).map_err(report)?;
            for r in policy.reserved() {
                let guest = policy
                    .mounts()
                    .get(r.mount)
                    .map_or("?", |m| m.guest.as_str());
                println!(
                    "airlock {} {guest}/{} is {} in the guest (rule: airlock {}, reason: {})",
                    r.what,
                    r.path,
                    r.access.as_str(),
                    r.what,
                    airlock_policy::reason::AIRLOCK_FILE
                );
            }
            let mut queries: Vec<Query> = reads.into_iter().map(Query::Read).collect();
            queries.extend(writes.into_iter().map(Query::Write));
            queries.extend(connects);
            if queries.is_empty() {
                anyhow::bail!(
                    "nothing to explain: give --read PATH, --write PATH or --connect HOST:PORT"
                );
            }
            for line in airlock_policy::explain(&policy, &queries) {
                println!("{line}");
            }
            Ok(0)
        }
        PolicyCommand::Schema => {
            let schema = serde_json::to_string_pretty(&airlock_policy::json_schema())
                .context("rendering the schema")?;
            println!("{schema}");
            Ok(0)
        }
    }
}

/// Loads a shipped profile, naming the known ones when `name` is not one.
pub fn load_named_profile(name: &str) -> anyhow::Result<Policy> {
    if !profile_names().contains(&name) {
        anyhow::bail!(
            "unknown profile {name:?}; shipped profiles: {}",
            profile_names().join(", ")
        );
    }
    load_profile(name).map_err(report)
}

/// Turns all errors of a policy into one error whose text lists each on its own line.
pub fn report(errors: PolicyErrors) -> anyhow::Error {
    anyhow::anyhow!("invalid policy:\n{errors}")
}

fn check(files: &[PathBuf], profiles: bool) -> u8 {
    let mut failed = false;
    let mut ok = |label: String, result: Result<Policy, PolicyErrors>| match result {
        Ok(_) => println!("ok    {label}"),
        Err(errors) => {
            failed = true;
            println!("FAIL  {label}");
            crate::ui::note!("{errors}");
        }
    };
    if profiles {
        for name in profile_names() {
            ok(format!("profile {name}"), load_profile(name));
        }
    }
    for f in files {
        ok(f.display().to_string(), load_file(f));
    }
    u8::from(failed)
}
