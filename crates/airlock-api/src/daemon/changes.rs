//! What a sandbox's workload changed in its writable shares, for `GET .../changes`.
//!
//! An `overlay` share is compared with the snapshot taken when its copy was made
//! (`airlock-fs`'s overlay, the same data as `airlock diff`), with unified diffs for text. An
//! `rw` share has no copy: the guest's writes reach the host at once. Its changes are the paths
//! the filesystem gateway allowed the guest to modify, read back from the sandbox's audit log
//! (host-observed records, so authoritative). `ro` shares cannot change and are left out.

use super::entry::Entry;
use super::error::DaemonError;
use crate::types::{ChangeList, MountChanges, PathChange};
use airlock_audit::{Decision, Record, Source, kind};
use airlock_policy::{MountHost, MountMode};
use std::collections::BTreeMap;
use std::path::Path;

pub use airlock_supervisor::review::MAX_DIFF_CHARS;
use airlock_supervisor::review::cut_diff;

/// The changes of every writable share of `entry`. Reads files and the log: call it off the
/// async runtime.
pub fn changes(entry: &Entry) -> Result<ChangeList, DaemonError> {
    let mut mounts = Vec::new();
    let mut records: Option<Vec<Record>> = None;
    for (i, m) in entry.policy().mounts().iter().enumerate() {
        let host = match &m.host {
            MountHost::Path(p) => p.display().to_string(),
            MountHost::Workspace => String::new(),
        };
        let (method, changes) = match m.mode {
            MountMode::Ro => continue,
            MountMode::Overlay => ("overlay", overlay_changes(entry.id(), i)?),
            MountMode::Rw => {
                if records.is_none() {
                    records = Some(read_records(entry)?);
                }
                let all = records.as_deref().unwrap_or_default();
                ("audit", audit_changes(all, &m.guest))
            }
        };
        mounts.push(MountChanges {
            guest: m.guest.clone(),
            mode: m.mode.as_str().into(),
            host,
            method: method.into(),
            changes,
        });
    }
    Ok(ChangeList {
        id: entry.id().into(),
        mounts,
    })
}

fn read_records(entry: &Entry) -> Result<Vec<Record>, DaemonError> {
    let Some(log) = entry.audit_log() else {
        return Err(DaemonError::Conflict(format!(
            "sandbox {} keeps no audit log, so the changes of its rw shares are unknown",
            entry.id()
        )));
    };
    let filter = airlock_audit::Filter {
        kind: Some("fs.*".into()),
        decision: Some(Decision::Allow),
        since: None,
    };
    airlock_audit::read_log(log, &filter)
        .map_err(|e| DaemonError::Internal(format!("reading the audit log: {e}")))
}

/// The paths under `mount` that allowed host-observed fs records say were modified, each with
/// the last such operation.
pub fn audit_changes(records: &[Record], mount: &str) -> Vec<PathChange> {
    let mut last: BTreeMap<String, &'static str> = BTreeMap::new();
    for r in records {
        let e = &r.event;
        let Some(fs) = &e.fs else { continue };
        if e.source != Source::Host
            || e.decision != Some(Decision::Allow)
            || fs.mount.as_deref() != Some(mount)
        {
            continue;
        }
        let to = fs.to.clone();
        match e.kind.as_str() {
            kind::FS_CREATE => last.insert(fs.path.clone(), "create"),
            kind::FS_WRITE => last.insert(fs.path.clone(), "write"),
            kind::FS_SETATTR => last.insert(fs.path.clone(), "setattr"),
            kind::FS_MKDIR => last.insert(fs.path.clone(), "mkdir"),
            kind::FS_SYMLINK => last.insert(fs.path.clone(), "symlink"),
            kind::FS_UNLINK => last.insert(fs.path.clone(), "unlink"),
            kind::FS_LINK => to.and_then(|t| last.insert(t, "link")),
            kind::FS_RENAME => {
                last.insert(fs.path.clone(), "rename");
                to.and_then(|t| last.insert(t, "rename_to"))
            }
            _ => None,
        };
    }
    last.into_iter()
        .map(|(path, kind)| PathChange {
            path,
            kind: kind.into(),
            diff: None,
        })
        .collect()
}

fn overlay_changes(id: &str, index: usize) -> Result<Vec<PathChange>, DaemonError> {
    let root = airlock_supervisor::launch::overlays_dir()
        .map_err(|e| DaemonError::Internal(format!("finding the overlays: {e}")))?;
    let dir = root.join(id).join(index.to_string());
    let internal = |e: &dyn std::fmt::Display, dir: &Path| {
        DaemonError::Internal(format!("reading the overlay {}: {e}", dir.display()))
    };
    let ov = airlock_fs::Overlay::open(&dir).map_err(|e| internal(&e, &dir))?;
    let mut out = Vec::new();
    for c in ov.changes().map_err(|e| internal(&e, &dir))? {
        let diff = ov
            .unified_diff(&c)
            .map_err(|e| internal(&e, &dir))?
            .filter(|d| !d.is_empty())
            .map(cut_diff);
        out.push(PathChange {
            path: c.path.clone(),
            kind: c.kind.as_str().into(),
            diff,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_audit::{Event, FsInfo};

    fn record(kind: &str, decision: Decision, mount: &str, path: &str, to: Option<&str>) -> Record {
        let event = Event::new(Source::Host, kind)
            .with_decision(decision)
            .with_fs(FsInfo {
                op: kind.trim_start_matches("fs.").into(),
                path: path.into(),
                to: to.map(Into::into),
                mount: Some(mount.into()),
            });
        Record {
            seq: 1,
            ts: airlock_audit::Timestamp::now(),
            sandbox: "0123456789ab".into(),
            event,
            prev: airlock_audit::ZERO_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn audit_changes_keep_the_last_allowed_modification_per_path_of_one_mount() {
        let records = vec![
            record(
                kind::FS_OPEN,
                Decision::Allow,
                "/workspace",
                "read.txt",
                None,
            ),
            record(
                kind::FS_CREATE,
                Decision::Allow,
                "/workspace",
                "a.txt",
                None,
            ),
            record(kind::FS_WRITE, Decision::Allow, "/workspace", "a.txt", None),
            record(
                kind::FS_WRITE,
                Decision::Deny,
                "/workspace",
                ".git/hooks/x",
                None,
            ),
            record(kind::FS_WRITE, Decision::Allow, "/data", "elsewhere", None),
            record(
                kind::FS_RENAME,
                Decision::Allow,
                "/workspace",
                "old",
                Some("new"),
            ),
            record(
                kind::FS_SYMLINK,
                Decision::Allow,
                "/workspace",
                "ln",
                Some("/etc/x"),
            ),
            record(kind::FS_UNLINK, Decision::Allow, "/workspace", "gone", None),
        ];
        let got = audit_changes(&records, "/workspace");
        let want: Vec<(&str, &str)> = vec![
            ("a.txt", "write"),
            ("gone", "unlink"),
            ("ln", "symlink"),
            ("new", "rename_to"),
            ("old", "rename"),
        ];
        assert_eq!(
            got.iter()
                .map(|c| (c.path.as_str(), c.kind.as_str()))
                .collect::<Vec<_>>(),
            want
        );
        assert!(got.iter().all(|c| c.diff.is_none()));
    }

    #[test]
    fn long_diffs_are_cut_at_a_line_end() {
        let line = "+0123456789\n";
        let diff = line.repeat(MAX_DIFF_CHARS / line.len() + 10);
        let cut = cut_diff(diff.clone());
        assert!(cut.len() < MAX_DIFF_CHARS + 100);
        let (head, tail) = cut.split_at(cut.find("...").unwrap());
        assert!(head.ends_with('\n') && head.lines().all(|l| l == "+0123456789"));
        assert_eq!(
            tail,
            format!(
                "... diff cut at {MAX_DIFF_CHARS} characters ({} in all)\n",
                diff.len()
            )
        );
        assert_eq!(cut_diff("+a\n".into()), "+a\n");
    }
}
