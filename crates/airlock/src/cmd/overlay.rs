//! Overlay mounts: the guest works on a private copy; `airlock diff ID` shows its changes,
//! `airlock apply ID` writes them to the host tree (refusing conflicts and anything the policy
//! would not let the guest write), `airlock discard ID` drops them.
//!
//! Each overlay lives in `<overlays>/<sandbox id>/<mount index>/` with `meta.json` beside them,
//! which keeps the policy text and workspace the sandbox ran with, so `apply` decides with the
//! same rules.

use airlock_fs::{ApplyGuard, ChangeKind, Overlay};
use airlock_policy::Policy;
use airlock_supervisor::launch::{OverlayMeta as Meta, PolicySource, overlays_dir};
use anyhow::{Context, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments of `airlock diff`, `apply` and `discard`.
#[derive(Debug, Args)]
pub struct OverlayArgs {
    /// Sandbox id (printed when the run ends).
    id: String,
    /// `apply` only: overwrite host files that changed since the copy was made.
    #[arg(long)]
    force: bool,
}

fn open(id: &str) -> anyhow::Result<(PathBuf, Meta)> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        bail!("{id:?} is not a sandbox id");
    }
    let dir = overlays_dir()?.join(id);
    let meta_path = dir.join("meta.json");
    let bytes = std::fs::read(&meta_path)
        .with_context(|| format!("sandbox {id} has no overlay (no {})", meta_path.display()))?;
    let meta: Meta = serde_json::from_slice(&bytes)
        .with_context(|| format!("reading {}", meta_path.display()))?;
    Ok((dir, meta))
}

/// A running sandbox refreshes `stats.json` in its state dir every second; a state dir left by
/// a killed airlock does not count.
fn refuse_if_running(id: &str) -> anyhow::Result<()> {
    let stats = airlock_supervisor::state_root().join(id).join("stats.json");
    let fresh = std::fs::metadata(&stats)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < std::time::Duration::from_secs(5));
    if fresh {
        bail!("sandbox {id} is still running; wait for it to end");
    }
    Ok(())
}

/// `airlock diff ID`: lists added, modified and deleted paths, with unified diffs for text.
pub fn diff(args: &OverlayArgs) -> anyhow::Result<u8> {
    let (dir, meta) = open(&args.id)?;
    for (i, guest) in &meta.mounts {
        let ov = Overlay::open(&dir.join(i.to_string()))?;
        let changes = ov.changes()?;
        println!(
            "# {guest} ({} changes; host {})",
            changes.len(),
            ov.host_dir().display()
        );
        for c in &changes {
            let mark = match c.kind {
                ChangeKind::Added => 'A',
                ChangeKind::Modified => 'M',
                ChangeKind::Deleted => 'D',
            };
            println!("{mark} {}", airlock_audit::display_safe(&c.path));
        }
        for c in &changes {
            if let Some(text) = ov.unified_diff(c)? {
                print!(
                    "{}",
                    airlock_audit::display_safe(&text).replace("\\n", "\n")
                );
            }
        }
    }
    Ok(0)
}

/// `airlock apply ID`: writes the changes to the host; exits 1 if anything was refused.
pub fn apply(args: &OverlayArgs) -> anyhow::Result<u8> {
    refuse_if_running(&args.id)?;
    let (dir, meta) = open(&args.id)?;
    let _lock = lock(&dir)?;
    let policy = policy_of(&meta.policy)?;
    let mut refused = false;
    for (i, guest) in &meta.mounts {
        let ov = Overlay::open(&dir.join(i.to_string()))?;
        let guard = ApplyGuard::new(policy.clone(), guest, ov.host_dir())?;
        let report = ov.apply(&guard, args.force)?;
        for p in &report.applied {
            println!("applied   {}", airlock_audit::display_safe(p));
        }
        for c in &report.conflicts {
            refused = true;
            println!(
                "CONFLICT  {} ({:?}; rerun with --force to overwrite)",
                airlock_audit::display_safe(&c.path),
                c.reason
            );
        }
        for d in &report.denied {
            refused = true;
            println!(
                "DENIED    {} (rule {})",
                airlock_audit::display_safe(&d.path),
                d.decision.rule
            );
        }
    }
    Ok(u8::from(refused))
}

/// `airlock discard ID`: deletes the overlay copies.
pub fn discard(args: &OverlayArgs) -> anyhow::Result<u8> {
    refuse_if_running(&args.id)?;
    let (dir, meta) = open(&args.id)?;
    {
        let _lock = lock(&dir)?;
        for (i, _) in &meta.mounts {
            Overlay::open(&dir.join(i.to_string()))?.discard()?;
        }
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    println!("discarded the overlay of sandbox {}", args.id);
    Ok(0)
}

fn policy_of(source: &PolicySource) -> anyhow::Result<Arc<Policy>> {
    let policy = airlock_policy::load_str(&source.text, &source.origin_path)
        .map_err(super::policy::report)?;
    let policy = match &source.workspace {
        Some(ws) if policy.needs_workspace() => {
            policy.with_workspace(ws).map_err(super::policy::report)?
        }
        _ => policy,
    };
    Ok(Arc::new(policy))
}

/// Serialises apply and discard on one overlay.
fn lock(dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::File::create(dir.join("lock"))
        .with_context(|| format!("locking {}", dir.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow::anyhow!("another airlock is applying or discarding this overlay ({e})")
    })
}
