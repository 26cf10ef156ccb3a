//! `airlock audit verify|show` and `airlock events`: check and read sandbox audit logs.
//!
//! A log is named by a file path or by a sandbox id (looked up in the default audit dir).

use airlock_audit::{
    Decision, Filter, HostKey, PublicKey, Timestamp, checkpoints_path, default_key_path,
    format_record, format_timeline, read_log, verify,
};
use airlock_supervisor::default_audit_dir;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `audit verify` exit code for a log whose chain is intact but whose end is not signed.
const UNSEALED: u8 = 2;

/// Arguments of `airlock audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check a log's hash chain and signed checkpoints: exit 0 intact and sealed, 1 tampered
    /// (names the first bad record), 2 intact but not sealed (crash, or cut after a checkpoint).
    Verify {
        /// Log file or sandbox id.
        log: String,
        /// Trust this public key (hex) instead of the local host key.
        #[arg(long, value_name = "HEX")]
        key: Option<String>,
    },
    /// Print a readable timeline of a log.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// Log file or sandbox id (default: the most recent log).
    log: Option<String>,
    /// Only kinds matching this glob, e.g. `net.*`.
    #[arg(long)]
    kind: Option<String>,
    /// Only this decision.
    #[arg(long, value_parser = ["allow", "deny", "error"])]
    decision: Option<String>,
    /// Only records at or after this time (RFC 3339, e.g. 2026-11-27T10:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Print the records as JSON lines instead.
    #[arg(long)]
    json: bool,
}

/// Arguments of `airlock events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Sandbox id or log file (default: the most recent log).
    log: Option<String>,
    /// Keep printing new events until the sandbox ends.
    #[arg(short, long)]
    follow: bool,
}

/// Resolves a log argument: an existing file, else `<audit dir>/<id>.jsonl`, else (no
/// argument) the newest log in the audit dir.
fn resolve(arg: Option<&str>) -> anyhow::Result<PathBuf> {
    let dir = default_audit_dir();
    if let Some(a) = arg {
        let p = PathBuf::from(a);
        if p.is_file() {
            return Ok(p);
        }
        if !a.contains('/')
            && !a.contains("..")
            && let Some(d) = &dir
        {
            let by_id = d.join(format!("{a}.jsonl"));
            if by_id.is_file() {
                return Ok(by_id);
            }
        }
        bail!(
            "no audit log {a:?}: not a file, and no sandbox with that id in {}",
            dir.map_or("(no audit dir)".into(), |d| d.display().to_string())
        );
    }
    let d = dir.context("no audit dir: set AIRLOCK_AUDIT_DIR or HOME")?;
    let newest = std::fs::read_dir(&d)
        .with_context(|| format!("reading {}", d.display()))?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max();
    newest
        .map(|(_, p)| p)
        .with_context(|| format!("no audit logs in {}", d.display()))
}

/// Runs `airlock audit`.
pub fn main(args: AuditArgs) -> anyhow::Result<u8> {
    match args.command {
        AuditCommand::Verify { log, key } => verify_cmd(&resolve(Some(&log))?, key.as_deref()),
        AuditCommand::Show(a) => show(a),
    }
}

fn verify_cmd(log: &Path, key: Option<&str>) -> anyhow::Result<u8> {
    let trusted: Option<PublicKey> = match key {
        Some(hex) => Some(hex.parse().map_err(|e| anyhow::anyhow!("--key: {e}"))?),
        None => default_key_path()
            .filter(|p| p.exists())
            .and_then(|p| HostKey::load(&p).ok())
            .map(|k| k.public_key()),
    };
    let cps = checkpoints_path(log);
    match verify(log, Some(&cps), trusted.as_ref()) {
        Ok(report) => {
            println!(
                "ok: {} records, last seq {}, {} signed checkpoints{}{}",
                report.records,
                report.last_seq,
                report.checkpoints_verified,
                if report.sealed {
                    ", sealed"
                } else {
                    ", NOT sealed (records after the last checkpoint are unsigned)"
                },
                if report.signer_trusted {
                    ", signed by the trusted key"
                } else {
                    ", signer not checked against a trusted key"
                },
            );
            if report.runs.len() > 1 {
                for (i, run) in report.runs.iter().enumerate() {
                    println!(
                        "run {}: sandbox {}, seq {}..{}, {}",
                        i + 1,
                        run.sandbox,
                        run.first_seq,
                        run.last_seq,
                        if run.sealed { "sealed" } else { "not sealed" }
                    );
                }
            }
            if let Some(tail) = &report.tail_incomplete {
                println!("note: {tail}");
            }
            if report.sealed {
                Ok(0)
            } else {
                // Intact as far as it goes, but its end is not signed: the writer did not close
                // (a crash or kill -9), or records after the last checkpoint were cut off.
                crate::ui::note!(
                    "airlock: audit log {} is intact up to seq {} but not sealed by a final checkpoint: \
                     the sandbox did not end cleanly, or records after seq {} were removed",
                    log.display(),
                    report.last_seq,
                    report.last_checkpoint_seq.unwrap_or(0)
                );
                Ok(UNSEALED)
            }
        }
        Err(e) => {
            crate::ui::note!(
                "airlock: audit log {} FAILED verification: {e}",
                log.display()
            );
            Ok(1)
        }
    }
}

fn show(a: ShowArgs) -> anyhow::Result<u8> {
    let log = resolve(a.log.as_deref())?;
    let filter = Filter {
        kind: a.kind,
        decision: a.decision.as_deref().map(|d| match d {
            "deny" => Decision::Deny,
            "error" => Decision::Error,
            _ => Decision::Allow,
        }),
        since: a
            .since
            .as_deref()
            .map(|s| {
                s.parse::<Timestamp>()
                    .map_err(|e| anyhow::anyhow!("--since {s:?}: {e}"))
            })
            .transpose()?,
    };
    let records = read_log(&log, &filter).with_context(|| format!("reading {}", log.display()))?;
    if a.json {
        // The records' own canonical lines: JSON escapes every control character.
        for r in &records {
            println!("{}", String::from_utf8_lossy(&r.to_line()));
        }
    } else {
        print!("{}", format_timeline(&records));
    }
    Ok(0)
}

/// Runs `airlock events`.
pub fn events(args: EventsArgs) -> anyhow::Result<u8> {
    let log = resolve(args.log.as_deref())?;
    let mut file =
        std::fs::File::open(&log).with_context(|| format!("opening {}", log.display()))?;
    let mut pos = 0u64;
    let mut partial = String::new();
    loop {
        file.seek(std::io::SeekFrom::Start(pos))?;
        let mut reader = std::io::BufReader::new(&file);
        let mut ended = false;
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            if !line.ends_with('\n') {
                partial.push_str(&line); // a record being written; complete it next round
                continue;
            }
            let full = std::mem::take(&mut partial) + &line;
            match airlock_audit::Record::parse(full.trim_end().as_bytes()) {
                Ok(r) => {
                    ended |= r.event.kind == airlock_audit::kind::SANDBOX_END;
                    println!("{}", format_record(&r));
                }
                Err(e) => crate::ui::note!("airlock: unreadable record: {e}"),
            }
        }
        if !args.follow || ended {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Arguments of `airlock stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Sandbox id (default: the most recent).
    id: Option<String>,
    /// Prometheus text format instead of JSON.
    #[arg(long)]
    prometheus: bool,
}

/// Runs `airlock stats`: live counters of a running sandbox, or a summary of a finished one.
pub fn stats(args: StatsArgs) -> anyhow::Result<u8> {
    let log = resolve(args.id.as_deref())?;
    let id = log
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let live = airlock_supervisor::state_root()
        .join(&id)
        .join("stats.json");
    let stats: airlock_supervisor::Stats = match std::fs::read(&live) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .context("unreadable live stats")?,
        Err(_) => {
            let records = read_log(&log, &Filter::default())
                .with_context(|| format!("reading {}", log.display()))?;
            airlock_supervisor::Stats::from_records(&id, &records)
        }
    };
    if args.prometheus {
        print!("{}", stats.prometheus());
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&stats).context("encoding stats")?
        );
    }
    Ok(0)
}
