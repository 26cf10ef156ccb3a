//! Overlay mounts: the guest works on a private copy; `airlock diff ID` shows its changes,
//! `airlock apply ID` writes them to the host tree (refusing conflicts and anything the policy
//! would not let the guest write), `airlock discard ID` drops them.
//!
//! Each overlay lives in `<overlays>/<sandbox id>/<mount index>/` with `meta.json` beside them,
//! which keeps the policy text and workspace the sandbox ran with, so `apply` decides with the
//! same rules.

use airlock_supervisor::review::Review;
use clap::Args;

/// Arguments of `airlock diff`, `apply` and `discard`.
#[derive(Debug, Args)]
pub struct OverlayArgs {
    /// Sandbox id (printed when the run ends).
    id: String,
    /// `apply` only: overwrite host files that changed since the copy was made.
    #[arg(long)]
    force: bool,
}

/// `airlock diff ID`: lists added, modified and deleted paths, with unified diffs for text.
pub fn diff(args: &OverlayArgs) -> anyhow::Result<u8> {
    let review = Review::open(&args.id)?;
    for share in review.changes()? {
        println!(
            "# {} ({} changes; host {})",
            share.guest,
            share.changes.len(),
            share.host
        );
        for c in &share.changes {
            let mark = match c.kind {
                "added" => 'A',
                "deleted" => 'D',
                _ => 'M',
            };
            println!("{mark} {}", airlock_audit::display_safe(&c.path));
        }
        for c in &share.changes {
            if let Some(text) = &c.diff {
                print!("{}", airlock_audit::display_safe(text).replace("\\n", "\n"));
            }
        }
    }
    Ok(0)
}

/// `airlock apply ID`: writes the changes to the host; exits 1 if anything was refused.
pub fn apply(args: &OverlayArgs) -> anyhow::Result<u8> {
    let out = Review::open(&args.id)?.apply(args.force, "airlock apply")?;
    for p in &out.applied {
        println!("applied   {}", airlock_audit::display_safe(p));
    }
    for (path, why) in &out.conflicts {
        println!(
            "CONFLICT  {} ({why}; rerun with --force to overwrite)",
            airlock_audit::display_safe(path),
        );
    }
    for (path, rule) in &out.denied {
        println!(
            "DENIED    {} (rule {rule})",
            airlock_audit::display_safe(path)
        );
    }
    Ok(u8::from(!out.complete()))
}

/// `airlock discard ID`: deletes the overlay copies.
pub fn discard(args: &OverlayArgs) -> anyhow::Result<u8> {
    Review::open(&args.id)?.discard("airlock discard")?;
    println!("discarded the overlay of sandbox {}", args.id);
    Ok(0)
}
