//! Reviewing what a sandbox changed in its `overlay` shares before it lands: the diff, apply and
//! discard that `airlock diff|apply|discard` and the review page (`airlock ui`) share. Every
//! apply and discard is recorded in the sandbox's audit log as a user action (`user.apply`,
//! `user.discard`), appended to the same chain and sealed with a new final checkpoint.
//!
//! Each overlay lives in `<overlays>/<sandbox id>/<mount index>/` with `meta.json` beside them,
//! which keeps the policy text and workspace the sandbox ran with, so `apply` decides with the
//! same rules.

use crate::launch::{OverlayMeta, PolicySource, overlays_dir};
use airlock_audit::{Chain, ChainOptions, Decision, Event, HostKey, Source, kind};
use airlock_fs::{ApplyGuard, ChangeKind, EntryKind, Overlay, OverlayError};
use airlock_policy::Policy;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Largest diff text kept per file; longer ones are cut at a line end and marked.
pub const MAX_DIFF_CHARS: usize = 64 * 1024;

/// Why a review step failed. A conflict or a refusal during apply is not an error: it is in
/// [`ApplyOutcome`].
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not the shape of a sandbox id.
    #[error("{0:?} is not a sandbox id")]
    BadId(String),
    /// The sandbox has no overlay (it had none, or it was applied and discarded already).
    #[error("sandbox {id} has no overlay (no {})", path.display())]
    NoOverlay {
        /// The sandbox.
        id: String,
        /// The `meta.json` looked for.
        path: PathBuf,
    },
    /// Where overlays live is unknown.
    #[error("finding the overlays")]
    Dir(#[source] crate::launch::LaunchError),
    /// A file could not be read or written.
    #[error("{what} {}", path.display())]
    Io {
        /// What we were doing.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `meta.json` is not what airlock wrote.
    #[error("reading {}", path.display())]
    Meta {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The sandbox still runs: its copy may still change.
    #[error("sandbox {0} is still running; wait for it to end")]
    Running(String),
    /// Another apply or discard holds the overlay.
    #[error("another airlock is applying or discarding this overlay")]
    Busy(#[source] nix::Error),
    /// The policy kept with the overlay no longer loads.
    #[error("the policy the sandbox ran with ({}) no longer loads", path.display())]
    Policy {
        /// Its origin.
        path: PathBuf,
        /// Why.
        #[source]
        source: airlock_policy::PolicyErrors,
    },
    /// An overlay operation failed.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
}

/// One changed path of an overlay share.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileChange {
    /// Path relative to the share's root.
    pub path: String,
    /// `added`, `modified` or `deleted`.
    pub kind: &'static str,
    /// `file`, `dir` or `symlink`.
    pub entry: &'static str,
    /// Unified diff of a text file (cut at [`MAX_DIFF_CHARS`]); `None` for binary files,
    /// directories and symlinks; empty when only the mode changed.
    pub diff: Option<String>,
    /// A regular file whose contents are not text, so no diff is shown.
    pub binary: bool,
}

/// The changes of one overlay share.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShareChanges {
    /// Where the guest saw it.
    pub guest: String,
    /// The host directory that apply writes to.
    pub host: String,
    /// The changes, by path.
    pub changes: Vec<FileChange>,
}

/// What apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyOutcome {
    /// Paths now as in the copy.
    pub applied: Vec<String>,
    /// Paths left alone because the host changed since the copy was made: `(path, why)`.
    pub conflicts: Vec<(String, String)>,
    /// Paths left alone because the policy refuses writing them: `(path, rule)`.
    pub denied: Vec<(String, String)>,
}

impl ApplyOutcome {
    /// Whether everything was applied.
    pub fn complete(&self) -> bool {
        self.conflicts.is_empty() && self.denied.is_empty()
    }
}

/// The overlay of one finished sandbox.
#[derive(Debug)]
pub struct Review {
    id: String,
    dir: PathBuf,
    meta: OverlayMeta,
}

/// Whether sandbox `id` is running: a running sandbox refreshes `stats.json` in its state dir
/// every second; a state dir left by a killed airlock does not count.
pub fn is_running(id: &str) -> bool {
    let stats = crate::state_root().join(id).join("stats.json");
    std::fs::metadata(&stats)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < Duration::from_secs(5))
}

/// Whether `id` has the shape of a sandbox id (so it can name a file or directory safely).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Review {
    /// Opens the overlay of sandbox `id`.
    pub fn open(id: &str) -> Result<Review, ReviewError> {
        if !valid_id(id) {
            return Err(ReviewError::BadId(id.to_string()));
        }
        let dir = overlays_dir().map_err(ReviewError::Dir)?.join(id);
        let path = dir.join("meta.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReviewError::NoOverlay {
                    id: id.to_string(),
                    path,
                });
            }
            Err(source) => {
                return Err(ReviewError::Io {
                    what: "reading",
                    path,
                    source,
                });
            }
        };
        let meta = serde_json::from_slice(&bytes).map_err(|source| ReviewError::Meta {
            path: path.clone(),
            source,
        })?;
        Ok(Review {
            id: id.to_string(),
            dir,
            meta,
        })
    }

    /// The sandbox.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The changes of each overlay share, with diffs of text files.
    pub fn changes(&self) -> Result<Vec<ShareChanges>, ReviewError> {
        let mut out = Vec::new();
        for (i, guest) in &self.meta.mounts {
            let ov = Overlay::open(&self.dir.join(i.to_string()))?;
            let mut changes = Vec::new();
            for c in ov.changes()? {
                let diff = ov.unified_diff(&c)?;
                let binary =
                    c.entry == EntryKind::File && c.kind != ChangeKind::Deleted && diff.is_none();
                changes.push(FileChange {
                    path: c.path.clone(),
                    kind: c.kind.as_str(),
                    entry: c.entry.as_str(),
                    diff: diff.map(cut_diff),
                    binary,
                });
            }
            out.push(ShareChanges {
                guest: guest.clone(),
                host: ov.host_dir().display().to_string(),
                changes,
            });
        }
        Ok(out)
    }

    /// Writes the changes to the host (`force`: also over host files changed since the copy),
    /// refusing what the policy would not let the guest write, and records `user.apply`.
    pub fn apply(&self, force: bool, by: &str) -> Result<ApplyOutcome, ReviewError> {
        if is_running(&self.id) {
            return Err(ReviewError::Running(self.id.clone()));
        }
        let _lock = self.lock()?;
        let policy = policy_of(&self.meta.policy)?;
        let mut out = ApplyOutcome::default();
        for (i, guest) in &self.meta.mounts {
            let ov = Overlay::open(&self.dir.join(i.to_string()))?;
            let guard = ApplyGuard::new(policy.clone(), guest, ov.host_dir())?;
            let report = ov.apply(&guard, force)?;
            out.applied.extend(report.applied);
            out.conflicts.extend(
                report
                    .conflicts
                    .into_iter()
                    .map(|c| (c.path, c.reason.to_string())),
            );
            out.denied.extend(
                report
                    .denied
                    .into_iter()
                    .map(|d| (d.path, d.decision.rule.to_string())),
            );
        }
        let decision = if out.complete() {
            Decision::Allow
        } else {
            Decision::Deny
        };
        let detail = format!(
            "{by}: applied {} path(s), {} conflict(s), {} refused by the policy{}",
            out.applied.len(),
            out.conflicts.len(),
            out.denied.len(),
            if force { " (forced)" } else { "" }
        );
        record_user_action(
            &self.id,
            &policy,
            Event::new(Source::Host, kind::USER_APPLY)
                .with_decision(decision)
                .with_detail(detail),
        );
        Ok(out)
    }

    /// Deletes the overlay copies and records `user.discard`.
    pub fn discard(self, by: &str) -> Result<(), ReviewError> {
        if is_running(&self.id) {
            return Err(ReviewError::Running(self.id.clone()));
        }
        let policy = policy_of(&self.meta.policy).ok();
        let mut dropped = 0;
        {
            let _lock = self.lock()?;
            for (i, _) in &self.meta.mounts {
                let ov = Overlay::open(&self.dir.join(i.to_string()))?;
                dropped += ov.changes().map(|c| c.len()).unwrap_or(0);
                ov.discard()?;
            }
        }
        std::fs::remove_dir_all(&self.dir).map_err(|source| ReviewError::Io {
            what: "removing",
            path: self.dir.clone(),
            source,
        })?;
        if let Some(policy) = policy {
            record_user_action(
                &self.id,
                &policy,
                Event::new(Source::Host, kind::USER_DISCARD)
                    .with_decision(Decision::Allow)
                    .with_detail(format!("{by}: discarded {dropped} change(s)")),
            );
        }
        Ok(())
    }

    /// Serialises apply and discard on one overlay.
    fn lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>, ReviewError> {
        let path = self.dir.join("lock");
        let file = std::fs::File::create(&path).map_err(|source| ReviewError::Io {
            what: "locking",
            path,
            source,
        })?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| ReviewError::Busy(e))
    }
}

fn policy_of(source: &PolicySource) -> Result<Arc<Policy>, ReviewError> {
    let err = |e| ReviewError::Policy {
        path: source.origin_path.clone(),
        source: e,
    };
    let policy = airlock_policy::load_str(&source.text, &source.origin_path).map_err(err)?;
    let policy = match &source.workspace {
        Some(ws) if policy.needs_workspace() => policy.with_workspace(ws).map_err(err)?,
        _ => policy,
    };
    Ok(Arc::new(policy))
}

/// The audit log of sandbox `id` under `policy`: its `audit.path`, else the default audit dir.
pub fn audit_log_of(id: &str, policy: &Policy) -> Option<PathBuf> {
    policy
        .audit()
        .path
        .clone()
        .or_else(|| crate::default_audit_dir().map(|d| d.join(format!("{id}.jsonl"))))
}

/// Appends a user action to the sandbox's log and seals it again. A log that is missing, or
/// that cannot be extended (damaged, locked by a run), is left as it is: the action happened
/// either way, and the reason is logged.
fn record_user_action(id: &str, policy: &Policy, event: Event) {
    let Some(log) = audit_log_of(id, policy) else {
        return;
    };
    if let Err(e) = append_and_seal(&log, id, &event) {
        tracing::warn!("could not record {} in {}: {e}", event.kind, log.display());
    }
}

fn append_and_seal(log: &Path, id: &str, event: &Event) -> Result<(), String> {
    if !log.is_file() {
        return Err("no such log".into());
    }
    let key_path = airlock_audit::default_key_path().ok_or("no audit key path")?;
    let key = HostKey::load(&key_path).map_err(|e| e.to_string())?;
    let (mut chain, _) = Chain::open(log, ChainOptions::new(id, key)).map_err(|e| e.to_string())?;
    chain.append(event).map_err(|e| e.to_string())?;
    chain.finish().map_err(|e| e.to_string())?;
    Ok(())
}

/// Cuts `diff` to [`MAX_DIFF_CHARS`] at a line end, saying so.
pub fn cut_diff(diff: String) -> String {
    if diff.len() <= MAX_DIFF_CHARS {
        return diff;
    }
    let mut end = MAX_DIFF_CHARS;
    while !diff.is_char_boundary(end) {
        end -= 1;
    }
    let head = diff.get(..end).unwrap_or_default();
    let head = head
        .rfind('\n')
        .and_then(|i| head.get(..=i))
        .unwrap_or(head);
    format!(
        "{head}... diff cut at {MAX_DIFF_CHARS} characters ({} in all)\n",
        diff.len()
    )
}
