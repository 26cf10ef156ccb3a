//! What the gateway tells its owner: one [`FsEvent`] per state-changing operation (allowed or
//! denied) and per denied operation. Allowed reads are not events. The supervisor implements
//! [`FsEvents`] to turn these into audit records (`source: "host"`); [`NoEvents`] drops them.
//!
//! `record` is called on the gateway's worker threads, after the policy decided and (for
//! allowed operations) after the host filesystem answered; keep it cheap and non-blocking.
//!
//! In the gateway process ([`crate::process`]) events cross to the supervisor as [`FsLine`]s,
//! one JSON object per line on stdout; the supervisor parses each strictly ([`FsLine::parse`])
//! before it becomes an audit record.

use airlock_audit::{Cut, Decision, Event, FsInfo, Source, cut_text, kind};
use airlock_policy::Verdict;
use serde::{Deserialize, Serialize};

/// One filesystem decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEvent {
    /// Kind, one of the `fs.*` constants of [`airlock_audit::kind`] (`fs.write`, `fs.rename`, ...).
    pub op: &'static str,
    /// Guest mount point of the share (`/workspace`), as passed to `decide_fs`.
    pub mount: String,
    /// Path relative to the share root, `/`-separated, no `..`; empty for the root. For a
    /// malformed name, the parent's path and the name with non-UTF-8 bytes escaped.
    pub path: String,
    /// Second path: the rename destination, the new hard link name, or a symlink's target.
    pub path2: Option<String>,
    /// Allow or deny.
    pub decision: Verdict,
    /// The rule that decided, e.g. `filesystem.protected ".git/hooks/**"`,
    /// `filesystem.mounts[0]` or a gateway rule (`gateway.name`).
    pub rule: String,
    /// Why: an `airlock_policy::reason` constant or one of [`crate::reason`].
    pub reason: &'static str,
    /// A count the kind defines (`fs.limit`: the limit).
    pub count: Option<u64>,
}

/// Receives the gateway's events.
pub trait FsEvents: Send + Sync {
    /// Records one event. Called on gateway worker threads; must not block for long.
    fn record(&self, e: &FsEvent);
}

/// Drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl FsEvents for NoEvents {
    fn record(&self, _e: &FsEvent) {}
}

/// One filesystem decision as it crosses the process boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsLine {
    /// `fs.write`, `fs.create`, ...
    pub op: String,
    /// Guest mount point.
    pub mount: String,
    /// Path relative to the share.
    pub path: String,
    /// Second path (rename destination, link name, symlink target).
    pub path2: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// The deciding rule.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// A count the kind defines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Fields cut to the line's limit, with their full length and hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cut: Vec<Cut>,
}

const KINDS: &[&str] = &[
    kind::FS_WRITE,
    kind::FS_CREATE,
    kind::FS_UNLINK,
    kind::FS_RENAME,
    kind::FS_SETATTR,
    kind::FS_MKDIR,
    kind::FS_SYMLINK,
    kind::FS_LINK,
    kind::FS_OPEN,
    kind::FS_LOOKUP,
    kind::FS_LIMIT,
];

/// Longest string field a gateway line carries: every path the policy accepts (16 KiB) whole,
/// so monitor rules match on it; a longer one is cut here, with its length and hash.
const MAX_FIELD: usize = 16 * 1024;

impl From<&FsEvent> for FsLine {
    fn from(e: &FsEvent) -> Self {
        let mut cut = Vec::new();
        let mut path = e.path.clone();
        cut.extend(cut_text("fs.path", &mut path, MAX_FIELD));
        let mut path2 = e.path2.clone();
        if let Some(p) = &mut path2 {
            cut.extend(cut_text("fs.to", p, MAX_FIELD));
        }
        FsLine {
            op: e.op.to_string(),
            mount: e.mount.clone(),
            path,
            path2,
            decision: match e.decision {
                airlock_policy::Verdict::Allow => "allow",
                airlock_policy::Verdict::Deny => "deny",
            }
            .to_string(),
            rule: e.rule.clone(),
            reason: e.reason.to_string(),
            count: e.count,
            cut,
        }
    }
}

impl FsLine {
    /// Parses a line from the gateway; refuses unknown ops and decisions and overlong fields.
    pub fn parse(line: &[u8]) -> Option<FsLine> {
        let l: FsLine = serde_json::from_slice(line).ok()?;
        let short = [&l.mount, &l.path, &l.rule, &l.reason]
            .into_iter()
            .chain(l.path2.as_ref())
            .all(|s| s.len() <= MAX_FIELD)
            && l.cut.len() <= 2
            && l.cut
                .iter()
                .all(|c| c.field.len() <= 32 && c.sha256.len() == 64);
        (KINDS.contains(&l.op.as_str())
            && ["allow", "deny"].contains(&l.decision.as_str())
            && short)
            .then_some(l)
    }

    /// The audit event for this decision.
    pub fn to_event(&self) -> Event {
        let decision = if self.decision == "allow" {
            Decision::Allow
        } else {
            Decision::Deny
        };
        let op = self.op.strip_prefix("fs.").unwrap_or(&self.op).to_string();
        let mut event = Event::new(Source::Host, self.op.clone())
            .with_decision(decision)
            .with_rule(self.rule.clone())
            .with_reason(self.reason.clone())
            .with_fs(FsInfo {
                op,
                path: self.path.clone(),
                to: self.path2.clone(),
                mount: Some(self.mount.clone()),
            });
        event.cut.clone_from(&self.cut);
        match self.count {
            Some(n) => event.with_count(n),
            None => event,
        }
    }
}

impl FsEvents for airlock_jail::gateway::JsonLines {
    fn record(&self, e: &FsEvent) {
        self.send(&FsLine::from(e));
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> FsLine {
        FsLine {
            op: "fs.write".into(),
            mount: "/workspace".into(),
            path: ".git/hooks/pre-commit".into(),
            path2: None,
            decision: "deny".into(),
            rule: "filesystem.protected \".git/hooks/**\"".into(),
            reason: "protected_path".into(),
            cut: Vec::new(),
            count: None,
        }
    }

    #[test]
    fn lines_round_trip_and_bad_ones_are_refused() {
        let json = serde_json::to_vec(&line()).unwrap();
        assert_eq!(FsLine::parse(&json), Some(line()));
        let mut bad = line();
        bad.op = "net.connect".into();
        assert_eq!(FsLine::parse(&serde_json::to_vec(&bad).unwrap()), None);
        let mut bad = line();
        bad.decision = "error".into();
        assert_eq!(FsLine::parse(&serde_json::to_vec(&bad).unwrap()), None);
        let mut bad = line();
        bad.path = "a/".repeat(MAX_FIELD);
        assert_eq!(FsLine::parse(&serde_json::to_vec(&bad).unwrap()), None);
        assert_eq!(FsLine::parse(b"[]"), None);
    }

    #[test]
    fn the_event_matches_the_line() {
        let e = line().to_event();
        assert_eq!(e.kind, "fs.write");
        let fs = e.fs.unwrap();
        assert_eq!(fs.op, "write");
        assert_eq!(fs.mount.as_deref(), Some("/workspace"));
    }

    #[test]
    fn the_longest_event_a_guest_can_cause_fits_one_event_line() {
        // Paths the policy accepts are at most 16 KiB; a symlink target at most PATH_MAX.
        // Control characters are the worst case for JSON (six bytes each).
        let mut l = line();
        l.path = "\u{1}".repeat(16 * 1024);
        l.path2 = Some("\u{1}".repeat(4096));
        let json = serde_json::to_vec(&l).unwrap();
        assert!(
            json.len() < airlock_jail::gateway::MAX_EVENT_LINE,
            "{} bytes",
            json.len()
        );
        assert_eq!(FsLine::parse(&json).map(|p| p.path.len()), Some(16 * 1024));
        // Longer than any path the policy accepts: cut, never dropped.
        let mut e = FsEvent {
            op: kind::FS_CREATE,
            mount: "/workspace".into(),
            path: "d/".repeat(20_000),
            path2: None,
            decision: Verdict::Deny,
            rule: "filesystem.path".into(),
            reason: "invalid_path",
            count: None,
        };
        let json = serde_json::to_vec(&FsLine::from(&e)).unwrap();
        let event = FsLine::parse(&json).expect("still an event").to_event();
        let expected = cut_text("fs.path", &mut e.path, MAX_FIELD).unwrap();
        assert_eq!(expected.len, 40_000);
        assert_eq!(event.cut, [expected]);
    }
}
