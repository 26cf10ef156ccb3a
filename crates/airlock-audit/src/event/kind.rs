//! The documented event kinds (see `docs/audit.md`). Kinds are dotted lowercase names; new
//! ones may be added, but a kind once written keeps its meaning.

/// A sandbox started (policy accepted, devices up).
pub const SANDBOX_START: &str = "sandbox.start";
/// One protection layer of the run and whether it is in force (`rule` names it, as in
/// `sandbox.require`; `decision` allow when in force, deny when missing), right after
/// `sandbox.start`.
pub const SANDBOX_LAYER: &str = "sandbox.layer";
/// A sandbox ended; `detail` says how, `proc.exit` carries the workload's status.
pub const SANDBOX_END: &str = "sandbox.end";
/// A pooled guest was bound to a workspace and policy.
pub const SANDBOX_BIND: &str = "sandbox.bind";
/// A guest was unbound from its workspace and policy.
pub const SANDBOX_UNBIND: &str = "sandbox.unbind";
/// A directory was shared into a running sandbox (a container's root, by the containerd shim).
pub const SANDBOX_SHARE: &str = "sandbox.share";
/// The host refused to start a sandbox it could not enforce (fail closed).
pub const SANDBOX_REFUSED: &str = "sandbox.refused";
/// A file was opened for reading.
pub const FS_OPEN: &str = "fs.open";
/// A file, directory, device or socket was created.
pub const FS_CREATE: &str = "fs.create";
/// A file was opened for writing, written or truncated.
pub const FS_WRITE: &str = "fs.write";
/// A path was renamed (`fs.to` is the new name).
pub const FS_RENAME: &str = "fs.rename";
/// A path was removed.
pub const FS_UNLINK: &str = "fs.unlink";
/// A symlink was created (`fs.to` is the link target).
pub const FS_SYMLINK: &str = "fs.symlink";
/// A hard link was created (`fs.to` is the new name).
pub const FS_LINK: &str = "fs.link";
/// Attributes (mode, owner, times, xattrs) changed.
pub const FS_SETATTR: &str = "fs.setattr";
/// A directory was created.
pub const FS_MKDIR: &str = "fs.mkdir";
/// A lookup was refused (a malformed name).
pub const FS_LOOKUP: &str = "fs.lookup";
/// A share reached its limit of files open at once (`filesystem.max_open`); `count` is the
/// limit. Recorded once per share.
pub const FS_LIMIT: &str = "fs.limit";
/// An egress connection (CONNECT tunnel) was decided; on close, bytes and duration.
pub const NET_CONNECT: &str = "net.connect";
/// A plain-HTTP request through the egress proxy was decided.
pub const NET_HTTP: &str = "net.http";
/// The egress gateway wrote a credential into a request (`net.credential` names it; never
/// the value).
pub const CREDENTIAL_INJECT: &str = "credential.inject";
/// A request carried a credential's placeholder somewhere it may not go; refused.
pub const CREDENTIAL_LEAK_ATTEMPT: &str = "credential.leak_attempt";
/// A process was executed in the guest (reported by the guest agent, `source: guest`).
pub const PROC_EXEC: &str = "proc.exec";
/// A process exited in the guest (reported by the guest agent, `source: guest`).
pub const PROC_EXIT: &str = "proc.exit";
/// The guest kernel's OOM killer ended processes of a command.
pub const PROC_OOM: &str = "proc.oom";
/// The user applied an overlay's changes to the host (`airlock apply`, the review page);
/// `decision` is `deny` when a conflict or the policy left something out; `detail` counts.
pub const USER_APPLY: &str = "user.apply";
/// The user discarded an overlay's changes (`airlock discard`, the review page).
pub const USER_DISCARD: &str = "user.discard";
/// A request outside the fs/net gateways was refused by policy.
pub const POLICY_DENY: &str = "policy.deny";
/// A policy removed one of the built-in protected paths (`filesystem.unprotect`).
pub const POLICY_UNPROTECT: &str = "policy.unprotect";
/// A monitor rule with action `alert` matched.
pub const MONITOR_ALERT: &str = "monitor.alert";
/// A monitor rule with action `pause` matched and the sandbox was paused.
pub const MONITOR_PAUSE: &str = "monitor.pause";
/// A monitor rule with action `kill` matched and the sandbox was stopped.
pub const MONITOR_KILL: &str = "monitor.kill";
/// Events were dropped because the audit queue was full; `count` says how many.
pub const AUDIT_DROPPED: &str = "audit.dropped";
/// The appender reopened a log whose last line was incomplete and cut it off; `count`
/// is the number of bytes removed.
pub const AUDIT_RECOVERED: &str = "audit.recovered";
/// A new run continues a log an earlier run wrote (its first record).
pub const AUDIT_RUN: &str = "audit.run";
