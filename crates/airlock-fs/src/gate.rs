//! Pure decisions for the gateway: a [`Request`] (operation plus share-relative paths) in, an
//! [`Outcome`] out, naming the event kind, the deciding rule and the errno for the guest.
//!
//! Called by `backend.rs` before every operation that reads contents or changes state. It
//! asks `Policy::decide_fs` for each path and each policy operation a request amounts to (both
//! sides of a rename or hard link, the target of a symlink inside the share, `Read` as well as
//! `Write` for `O_RDWR`), takes the first denial, and adds what the gateway refuses on its own:
//! every state change on a `ro` share, device nodes, set-ID bits and unknown rename flags. No
//! I/O happens here.

use std::sync::Arc;

use airlock_policy::{Decision, FsOp, MountMode, Policy, Verdict};
use virtiofsd::filesystem::SetattrValid;

use crate::paths::MAX_PATH_LEN;
use crate::reason;
use airlock_audit::kind;

/// `renameat2` flags the gateway passes on; `RENAME_WHITEOUT` (which creates a device node)
/// and anything unknown are refused.
const RENAME_ALLOWED_FLAGS: u32 = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE;

/// One operation, with the share-relative paths it touches. Node-based operations carry every
/// known path of the node (hard links); all must be allowed.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    /// `FUSE_OPEN` with its `open(2)` flags.
    Open {
        /// The node's paths.
        paths: &'a [String],
        /// `open(2)` flags.
        flags: u32,
    },
    /// `FUSE_OPENDIR`: listing a directory's contents.
    Opendir {
        /// The node's paths.
        paths: &'a [String],
    },
    /// `FUSE_READLINK`, `FUSE_GETXATTR`, `FUSE_LISTXATTR`.
    Read {
        /// The node's paths.
        paths: &'a [String],
    },
    /// `FUSE_CREATE`: create (or open) a regular file.
    Create {
        /// Paths of the new name.
        paths: &'a [String],
        /// `open(2)` flags.
        flags: u32,
        /// Requested mode.
        mode: u32,
    },
    /// `FUSE_MKNOD`.
    Mknod {
        /// Paths of the new name.
        paths: &'a [String],
        /// Requested mode, file type included.
        mode: u32,
    },
    /// `FUSE_MKDIR`.
    Mkdir {
        /// Paths of the new name.
        paths: &'a [String],
        /// Requested mode.
        mode: u32,
    },
    /// `FUSE_UNLINK`, `FUSE_RMDIR`.
    Unlink {
        /// Paths of the name removed.
        paths: &'a [String],
    },
    /// `FUSE_RENAME`, `FUSE_RENAME2`.
    Rename {
        /// Paths of the old name.
        from: &'a [String],
        /// Paths of the new name.
        to: &'a [String],
        /// `renameat2` flags.
        flags: u32,
    },
    /// `FUSE_LINK`: a new name for an existing node.
    Link {
        /// The existing node's paths.
        from: &'a [String],
        /// Paths of the new name.
        to: &'a [String],
    },
    /// `FUSE_SYMLINK`.
    Symlink {
        /// Paths of the new link.
        paths: &'a [String],
        /// The link's target, as written by the guest.
        target: &'a [u8],
    },
    /// `FUSE_SETATTR`.
    Setattr {
        /// The node's paths.
        paths: &'a [String],
        /// `FATTR_*` bits.
        valid: u32,
        /// New mode, if `FATTR_MODE` is set.
        mode: u32,
        /// Whether the node is a directory (set-group-ID is fine there).
        is_dir: bool,
    },
    /// `FUSE_SETXATTR`, `FUSE_REMOVEXATTR`.
    Setxattr {
        /// The node's paths.
        paths: &'a [String],
    },
}

/// The gate's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Event kind (`fs.write`, ...).
    pub kind: &'static str,
    /// The decision; for an allowed request with several checks, the last allow.
    pub decision: Decision,
    /// The path the decision is about (the denied one, else the first).
    pub path: String,
    /// Second path: rename destination, new link name, or symlink target.
    pub path2: Option<String>,
    /// Whether to report this as an event: every state change, and every denial.
    pub report: bool,
}

impl Outcome {
    /// True when the request may go on.
    pub fn is_allowed(&self) -> bool {
        self.decision.is_allowed()
    }

    /// The errno for the guest when denied: `EROFS` on a `ro` share, `EPERM` for device
    /// nodes and set-ID bits, `EINVAL` for malformed requests, `EACCES` otherwise.
    pub fn errno(&self) -> i32 {
        errno_for(self.decision.reason)
    }
}

/// The errno a denial with `reason` is answered with.
pub fn errno_for(reason: &str) -> i32 {
    match reason {
        airlock_policy::reason::READ_ONLY_MOUNT => libc::EROFS,
        reason::DEVICE_NODE | reason::SETID_BITS => libc::EPERM,
        reason::INVALID_NAME | reason::UNSUPPORTED_FLAGS => libc::EINVAL,
        _ => libc::EACCES,
    }
}

/// A denial made by the gateway itself.
pub fn gateway_deny(rule: &str, reason: &'static str) -> Decision {
    Decision {
        verdict: Verdict::Deny,
        rule: rule.to_owned(),
        reason,
    }
}

/// Decides requests on one share.
#[derive(Debug, Clone)]
pub struct Gate {
    policy: Arc<Policy>,
    mount: String,
    read_only: bool,
    /// Absolute host paths that name the share's root in a symlink target.
    host_dirs: Vec<String>,
}

impl Gate {
    /// Whether the share is read-only (every change refused).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// A gate for the share mounted at `mount` in the guest, with `mode`; `host_dir` (if
    /// UTF-8) lets absolute symlink targets naming the share's host path be checked too.
    pub fn new(policy: Arc<Policy>, mount: &str, mode: MountMode, host_dir: Option<&str>) -> Self {
        Self {
            policy,
            mount: mount.to_owned(),
            read_only: mode == MountMode::Ro,
            host_dirs: host_dir
                .map(|h| h.trim_end_matches('/').to_owned())
                .into_iter()
                .collect(),
        }
    }

    /// Also treats absolute symlink targets under `dir` as pointing into the share. An
    /// overlay share is served from a copy, but its links end up in the original host
    /// directory on `apply`, so a target naming that directory must be checked as well.
    pub fn with_host_alias(mut self, dir: &str) -> Self {
        self.host_dirs.push(dir.trim_end_matches('/').to_owned());
        self
    }

    /// The guest mount point passed to the policy.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// One policy operation on one path, with the share's mode applied on top.
    pub fn decide(&self, op: FsOp, path: &str) -> Decision {
        let d = self.policy.decide_fs(&self.mount, op, path);
        if d.is_allowed() && self.read_only && op.is_mutation() {
            return Decision {
                verdict: Verdict::Deny,
                rule: d.rule,
                reason: airlock_policy::reason::READ_ONLY_MOUNT,
            };
        }
        d
    }

    /// Decides `req`.
    pub fn check(&self, req: &Request<'_>) -> Outcome {
        match *req {
            Request::Open { paths, flags } => {
                let intent = OpenIntent::from_flags(flags);
                let mut ops = Vec::with_capacity(3);
                if intent.read {
                    ops.push(FsOp::Read);
                }
                if intent.write {
                    ops.push(FsOp::Write);
                }
                if intent.create {
                    ops.push(FsOp::Create);
                }
                let mutation = intent.write || intent.create;
                let k = if mutation {
                    kind::FS_WRITE
                } else {
                    kind::FS_OPEN
                };
                self.all(k, &ops, paths, None, mutation)
            }
            Request::Opendir { paths } | Request::Read { paths } => {
                self.all(kind::FS_OPEN, &[FsOp::Read], paths, None, false)
            }
            Request::Create { paths, flags, mode } => {
                if let Some(o) = self.mode_check(kind::FS_CREATE, paths, mode, false) {
                    return o;
                }
                let intent = OpenIntent::from_flags(flags);
                // An existing file is opened, not created, unless O_EXCL: reading it is a read.
                let may_read_existing = intent.read && !intent.exclusive;
                let ops: &[FsOp] = if may_read_existing {
                    &[FsOp::Create, FsOp::Read]
                } else {
                    &[FsOp::Create]
                };
                self.all(kind::FS_CREATE, ops, paths, None, true)
            }
            Request::Mknod { paths, mode } => {
                let ty = mode & libc::S_IFMT;
                if !matches!(ty, 0 | libc::S_IFREG | libc::S_IFIFO | libc::S_IFSOCK) {
                    return self.refuse(
                        kind::FS_CREATE,
                        paths,
                        reason::rule::MKNOD,
                        reason::DEVICE_NODE,
                    );
                }
                if let Some(o) = self.mode_check(kind::FS_CREATE, paths, mode, false) {
                    return o;
                }
                self.all(kind::FS_CREATE, &[FsOp::Create], paths, None, true)
            }
            Request::Mkdir { paths, mode } => {
                if let Some(o) = self.mode_check(kind::FS_MKDIR, paths, mode, true) {
                    return o;
                }
                self.all(kind::FS_MKDIR, &[FsOp::Mkdir], paths, None, true)
            }
            Request::Unlink { paths } => {
                self.all(kind::FS_UNLINK, &[FsOp::Unlink], paths, None, true)
            }
            Request::Rename { from, to, flags } => {
                if flags & !RENAME_ALLOWED_FLAGS != 0 {
                    let mut o = self.refuse(
                        kind::FS_RENAME,
                        from,
                        reason::rule::RENAME,
                        reason::UNSUPPORTED_FLAGS,
                    );
                    o.path2 = to.first().cloned();
                    return o;
                }
                self.pair(kind::FS_RENAME, FsOp::Rename, from, to)
            }
            Request::Link { from, to } => self.pair(kind::FS_LINK, FsOp::Link, from, to),
            Request::Symlink { paths, target } => self.symlink(paths, target),
            Request::Setattr {
                paths,
                valid,
                mode,
                is_dir,
            } => {
                let valid = SetattrValid::from_bits_truncate(valid);
                let size = valid.contains(SetattrValid::SIZE);
                let other = !(valid - SetattrValid::SIZE).is_empty();
                let k = if size {
                    kind::FS_WRITE
                } else {
                    kind::FS_SETATTR
                };
                if valid.contains(SetattrValid::MODE)
                    && let Some(o) = self.mode_check(k, paths, mode, is_dir)
                {
                    return o;
                }
                let ops: &[FsOp] = match (size, other) {
                    (true, true) => &[FsOp::Write, FsOp::Setattr],
                    (true, false) => &[FsOp::Write],
                    _ => &[FsOp::Setattr],
                };
                self.all(k, ops, paths, None, true)
            }
            Request::Setxattr { paths } => {
                self.all(kind::FS_SETATTR, &[FsOp::Setattr], paths, None, true)
            }
        }
    }

    /// Every `op` on every path; the first denial wins.
    fn all(
        &self,
        kind: &'static str,
        ops: &[FsOp],
        paths: &[String],
        path2: Option<String>,
        mutation: bool,
    ) -> Outcome {
        let mut last = None;
        for path in paths {
            for &op in ops {
                let d = self.decide(op, path);
                if !d.is_allowed() {
                    return Outcome {
                        kind,
                        decision: d,
                        path: path.clone(),
                        path2,
                        report: true,
                    };
                }
                last = Some(d);
            }
        }
        match last {
            Some(decision) => Outcome {
                kind,
                decision,
                path: paths.first().cloned().unwrap_or_default(),
                path2,
                report: mutation,
            },
            // No path or no operation: nothing was decided, so nothing is allowed.
            None => self.refuse(kind, paths, reason::rule::PATH, reason::UNKNOWN_PATH),
        }
    }

    /// Both sides of a rename or link: `op` on every source and destination path.
    fn pair(&self, kind: &'static str, op: FsOp, from: &[String], to: &[String]) -> Outcome {
        let src = self.all(kind, &[op], from, None, true);
        let first_to = to.first().cloned();
        if !src.is_allowed() {
            return Outcome {
                path2: first_to,
                ..src
            };
        }
        let dst = self.all(kind, &[op], to, None, true);
        if !dst.is_allowed() {
            // Report as "from -> to" with the denied destination second.
            return Outcome {
                path: src.path,
                path2: Some(dst.path),
                ..dst
            };
        }
        Outcome {
            kind,
            decision: dst.decision,
            path: src.path,
            path2: first_to,
            report: true,
        }
    }

    fn symlink(&self, paths: &[String], target: &[u8]) -> Outcome {
        let target_text = String::from_utf8_lossy(target).into_owned();
        let Ok(target_str) = std::str::from_utf8(target) else {
            let mut o = self.refuse(
                kind::FS_SYMLINK,
                paths,
                reason::rule::NAME,
                reason::INVALID_NAME,
            );
            o.path2 = Some(target_text);
            return o;
        };
        if target.is_empty() || target.len() >= MAX_PATH_LEN || target.contains(&0) {
            let mut o = self.refuse(
                kind::FS_SYMLINK,
                paths,
                reason::rule::NAME,
                reason::INVALID_NAME,
            );
            o.path2 = Some(target_text);
            return o;
        }
        let at = self.all(
            kind::FS_SYMLINK,
            &[FsOp::Symlink],
            paths,
            Some(target_text.clone()),
            true,
        );
        if !at.is_allowed() {
            return at;
        }
        // A link to something in the share is another name for it, as a hard link is.
        let mut targets = Vec::new();
        for p in paths {
            if let Some(t) = self.resolve_target(p, target_str) {
                targets.push(t);
            }
        }
        if targets.is_empty() {
            return at;
        }
        let to = self.all(kind::FS_SYMLINK, &[FsOp::Link], &targets, None, true);
        if !to.is_allowed() {
            return Outcome {
                path: at.path,
                path2: Some(target_text),
                ..to
            };
        }
        at
    }

    /// Where a symlink at `link_path` with `target` points, as a share-relative path, when it
    /// points into the share: relative targets resolved lexically from the link's directory,
    /// absolute targets naming the guest mount point or the host directory (or one of its
    /// aliases, see [`with_host_alias`](Self::with_host_alias)). `None` for
    /// targets outside the share.
    pub fn resolve_target(&self, link_path: &str, target: &str) -> Option<String> {
        let (base, rest): (Vec<&str>, &str) = if let Some(rest) = strip_dir(target, &self.mount) {
            (Vec::new(), rest)
        } else if let Some(rest) = self.host_dirs.iter().find_map(|h| strip_dir(target, h)) {
            (Vec::new(), rest)
        } else if target.starts_with('/') {
            return None;
        } else {
            let mut dir: Vec<&str> = link_path.split('/').filter(|c| !c.is_empty()).collect();
            dir.pop();
            (dir, target)
        };
        let mut comps = base;
        for c in rest.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    comps.pop()?;
                }
                c => comps.push(c),
            }
        }
        Some(comps.join("/"))
    }

    /// Refuses set-user-ID anywhere and set-group-ID on anything but a directory: a guest
    /// root could otherwise leave a set-ID executable owned by a host user in the share.
    fn mode_check(
        &self,
        kind: &'static str,
        paths: &[String],
        mode: u32,
        is_dir: bool,
    ) -> Option<Outcome> {
        let setuid = mode & libc::S_ISUID != 0;
        let setgid = mode & libc::S_ISGID != 0 && !is_dir;
        (setuid || setgid).then(|| self.refuse(kind, paths, reason::rule::MODE, reason::SETID_BITS))
    }

    fn refuse(
        &self,
        kind: &'static str,
        paths: &[String],
        rule: &str,
        why: &'static str,
    ) -> Outcome {
        Outcome {
            kind,
            decision: gateway_deny(rule, why),
            path: paths.first().cloned().unwrap_or_default(),
            path2: None,
            report: true,
        }
    }
}

/// `target` with `dir` (an absolute directory) stripped, if it names `dir` or something in it.
fn strip_dir<'t>(target: &'t str, dir: &str) -> Option<&'t str> {
    let rest = target.strip_prefix(dir)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// What an `open(2)` flag set asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenIntent {
    /// Reads the contents.
    pub read: bool,
    /// Writes or truncates the contents.
    pub write: bool,
    /// Creates the file (`O_CREAT`).
    pub create: bool,
    /// Fails if the file exists (`O_EXCL`).
    pub exclusive: bool,
}

impl OpenIntent {
    /// `O_RDONLY` reads; `O_WRONLY` writes; `O_RDWR` (and the invalid access mode 3) both;
    /// `O_TRUNC` writes; `O_CREAT` creates.
    pub fn from_flags(flags: u32) -> Self {
        let flags = flags as i32;
        let acc = flags & libc::O_ACCMODE;
        Self {
            read: acc != libc::O_WRONLY,
            write: acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0,
            create: flags & libc::O_CREAT != 0,
            exclusive: flags & libc::O_EXCL != 0,
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rules;
