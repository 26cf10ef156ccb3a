//! What the gateway tells its owner: one [`FsEvent`] per state-changing operation (allowed or
//! denied) and per denied operation. Allowed reads are not events. The supervisor implements
//! [`FsEvents`] to turn these into audit records (`source: "host"`); [`NoEvents`] drops them.
//!
//! `record` is called on the gateway's worker threads, after the policy decided and (for
//! allowed operations) after the host filesystem answered; keep it cheap and non-blocking.

use airlock_policy::Verdict;

/// Event kinds, as in audit records.
pub mod kind {
    /// Open for writing or truncation (`O_WRONLY`, `O_RDWR`, `O_TRUNC`, `truncate`).
    pub const WRITE: &str = "fs.write";
    /// Create a regular file, FIFO or socket.
    pub const CREATE: &str = "fs.create";
    /// Remove a file or directory.
    pub const UNLINK: &str = "fs.unlink";
    /// Rename; `path2` is the destination.
    pub const RENAME: &str = "fs.rename";
    /// chmod, chown, utimes, setxattr, removexattr.
    pub const SETATTR: &str = "fs.setattr";
    /// Create a directory.
    pub const MKDIR: &str = "fs.mkdir";
    /// Create a symbolic link; `path2` is the link's target as written.
    pub const SYMLINK: &str = "fs.symlink";
    /// Create a hard link; `path` is the existing file, `path2` the new name.
    pub const LINK: &str = "fs.link";
    /// A denied read: open for reading, opendir, readlink.
    pub const OPEN: &str = "fs.open";
    /// A denied lookup (a malformed name).
    pub const LOOKUP: &str = "fs.lookup";
}

/// One filesystem decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEvent {
    /// Kind, one of the [`kind`] constants (`fs.write`, `fs.rename`, ...).
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
