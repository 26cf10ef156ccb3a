//! Pure decisions: a request in, a [`Decision`] out, naming the rule that decided and why.
//!
//! Called by the egress gateway (`decide_connect` before DNS, `decide_address` after it,
//! `decide_http` for plain HTTP), by the filesystem gateway (`decide_fs` for every operation)
//! and by `explain.rs`. Nothing here does I/O. Precedence: the most specific matching rule
//! wins, and on a tie deny wins; `docs/policy.md` has the full table.

use std::fmt;
use std::net::IpAddr;

use crate::address::AddressClass;
use crate::host::{Target, canonical_ip};
use crate::path::{PathMatch, normalize_guest, normalize_rel};
use crate::policy::{HttpRule, NetRule, Policy};
use crate::reason;
use crate::reserved::ReservedAccess;
use crate::schema::MountMode;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The request may proceed.
    Allow,
    /// The request is refused.
    Deny,
}

impl Verdict {
    /// `allow` or `deny`, as in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a policy query. A denial is a decision, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub verdict: Verdict,
    /// The deciding rule, e.g. `network.allow[0] "api.anthropic.com:443"`,
    /// `filesystem.protected ".git/hooks/**"` or `network.default`.
    pub rule: String,
    /// Why, as one of the constants in [`reason`](crate::reason).
    pub reason: &'static str,
}

impl Decision {
    fn new(verdict: Verdict, rule: impl Into<String>, reason: &'static str) -> Self {
        Self {
            verdict,
            rule: rule.into(),
            reason,
        }
    }

    /// True for [`Verdict::Allow`].
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }
}

/// A filesystem operation, as seen by the filesystem gateway.
///
/// For [`FsOp::Rename`] and [`FsOp::Link`], ask once for each of the two paths (source and
/// destination); the operation may proceed only when both are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsOp {
    /// Open for reading, read, readdir, readlink, getattr, getxattr.
    Read,
    /// Open for writing, write, truncate, fallocate.
    Write,
    /// Create a regular file, device node or FIFO.
    Create,
    /// Create a directory.
    Mkdir,
    /// Remove a file or directory.
    Unlink,
    /// Rename (either side).
    Rename,
    /// chmod, chown, utimes, setxattr, removexattr.
    Setattr,
    /// Create a hard link (either side: the existing file and the new name).
    Link,
    /// Create a symbolic link at this path.
    Symlink,
}

impl FsOp {
    /// Every operation, for tables and tests.
    pub const ALL: [FsOp; 9] = [
        Self::Read,
        Self::Write,
        Self::Create,
        Self::Mkdir,
        Self::Unlink,
        Self::Rename,
        Self::Setattr,
        Self::Link,
        Self::Symlink,
    ];

    /// Lower-case name, as in audit kinds (`fs.rename`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Create => "create",
            Self::Mkdir => "mkdir",
            Self::Unlink => "unlink",
            Self::Rename => "rename",
            Self::Setattr => "setattr",
            Self::Link => "link",
            Self::Symlink => "symlink",
        }
    }

    /// Anything but [`FsOp::Read`].
    pub fn is_mutation(self) -> bool {
        self != Self::Read
    }

    /// Whether a protected or `deny_write` rule that relates to the path as `m` refuses this
    /// operation (always a mutation).
    ///
    /// On a directory leading to a covered path ([`PathMatch::Ancestor`], e.g. `.git`), every
    /// operation that could replace or move it, or put a file or link in its place (a gitlink
    /// `.git` file, a `.git` symlink), is refused; `Mkdir` and `Setattr` are not, so that
    /// `mkdir .git` still works. Under a `**` on the way ([`PathMatch::DeepAncestor`]) the path
    /// may be an ordinary file, so only moving and linking are refused.
    fn write_rule_refuses(self, m: PathMatch) -> bool {
        match m {
            PathMatch::Direct => true,
            PathMatch::Ancestor => matches!(
                self,
                Self::Write
                    | Self::Create
                    | Self::Unlink
                    | Self::Rename
                    | Self::Link
                    | Self::Symlink
            ),
            PathMatch::DeepAncestor => matches!(self, Self::Rename | Self::Link | Self::Symlink),
            PathMatch::No => false,
        }
    }

    /// Whether a `deny_read` rule that relates to the path as `m` refuses this operation:
    /// reads of covered paths, and renames or hard links that would make a covered file
    /// readable under another name.
    fn read_rule_refuses(self, m: PathMatch) -> bool {
        match m {
            PathMatch::Direct => matches!(self, Self::Read | Self::Rename | Self::Link),
            PathMatch::Ancestor | PathMatch::DeepAncestor => {
                matches!(self, Self::Rename | Self::Link)
            }
            PathMatch::No => false,
        }
    }
}

impl fmt::Display for FsOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Picks the winning rule: highest specificity, then deny over allow, then the first listed.
fn best<'a, T, K: Ord>(
    candidates: impl Iterator<Item = (usize, &'a T)>,
    specificity: impl Fn(&T) -> K,
    is_allow: impl Fn(&T) -> bool,
) -> Option<&'a T> {
    candidates
        .max_by_key(|(i, r)| (specificity(r), !is_allow(r), std::cmp::Reverse(*i)))
        .map(|(_, r)| r)
}

fn rule_decision(allow: bool, rule: &str) -> Decision {
    if allow {
        Decision::new(Verdict::Allow, rule, reason::ALLOWED)
    } else {
        Decision::new(Verdict::Deny, rule, reason::DENIED)
    }
}

impl Policy {
    /// Decides a connection to `host:port` before any DNS lookup. `host` may be a name, an IPv4
    /// address in any `inet_aton` form, or an IPv6 address with or without brackets; it is
    /// canonicalised first. For an address, the address rules of
    /// [`decide_address`](Self::decide_address) apply too.
    pub fn decide_connect(&self, host: &str, port: u16) -> Decision {
        if port == 0 {
            return Decision::new(Verdict::Deny, "network.port", reason::INVALID_PORT);
        }
        let target = match Target::parse(host) {
            Ok(t) => t,
            Err(_) => return Decision::new(Verdict::Deny, "network.host", reason::INVALID_HOST),
        };
        let decision = self.decide_target(&target, port);
        if let (Target::Ip(ip), true) = (&target, decision.is_allowed()) {
            let by_address = self.decide_address(*ip, port);
            if !by_address.is_allowed() {
                return by_address;
            }
        }
        decision
    }

    fn decide_target(&self, target: &Target, port: u16) -> Decision {
        let net = &self.network;
        let matching = net
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.endpoint.matches(target, port));
        match best(
            matching,
            |r: &NetRule| r.endpoint.specificity(),
            |r| r.allow,
        ) {
            Some(r) => rule_decision(r.allow, &r.rule),
            None if net.default_allow => {
                Decision::new(Verdict::Allow, "network.default", reason::DEFAULT_ALLOW)
            }
            None => Decision::new(Verdict::Deny, "network.default", reason::NOT_ALLOWED),
        }
    }

    /// Decides whether an address that a name (already allowed by
    /// [`decide_connect`](Self::decide_connect)) resolved to may be connected to.
    ///
    /// Address entries (`192.0.2.1`, `10.0.0.0/8`) in `network.allow`/`network.deny` decide
    /// first, with the usual precedence; an explicit address allow opens even a private
    /// address. A cloud metadata address ([`METADATA_BLOCKS`](crate::METADATA_BLOCKS)) is
    /// opened only by an allow entry naming that exact address, never by a block. Otherwise
    /// public addresses are allowed; private, loopback, link-local, CGNAT, multicast and
    /// reserved ones only with `allow_private`; metadata addresses never.
    pub fn decide_address(&self, ip: IpAddr, port: u16) -> Decision {
        if port == 0 {
            return Decision::new(Verdict::Deny, "network.port", reason::INVALID_PORT);
        }
        let ip = canonical_ip(ip);
        let target = Target::Ip(ip);
        let class = AddressClass::of(ip);
        // A block that happens to contain a metadata address must not open it (validation
        // refuses such allow entries; this holds for policies built any other way too).
        let opens = |r: &NetRule| {
            class != AddressClass::Metadata || !r.allow || r.endpoint.specificity().exact
        };
        let matching = self
            .network
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.endpoint.matches(&target, port) && opens(r));
        if let Some(r) = best(
            matching,
            |r: &NetRule| r.endpoint.specificity(),
            |r| r.allow,
        ) {
            return rule_decision(r.allow, &r.rule);
        }
        match class {
            AddressClass::Public => {
                Decision::new(Verdict::Allow, "network.address", reason::PUBLIC_ADDRESS)
            }
            AddressClass::Metadata => {
                Decision::new(Verdict::Deny, "network.metadata", reason::METADATA_ADDRESS)
            }
            _ if self.network.allow_private => {
                Decision::new(Verdict::Allow, "network.allow_private", reason::ALLOWED)
            }
            _ => Decision::new(
                Verdict::Deny,
                "network.allow_private",
                reason::PRIVATE_ADDRESS,
            ),
        }
    }

    /// Decides a plain-HTTP request. `path` is the request target's path (a query string and
    /// fragment are ignored); it is percent-decoded, and `.`, `..` and empty segments are
    /// handled before matching, so `/a/%2e%2e/b` cannot slip past a rule on `/b`. A path with
    /// `;` parameters is also decided as servlet containers read it, and allowed only if both
    /// readings are.
    ///
    /// A matching `[[network.http]]` rule decides; among several, the most specific host
    /// pattern wins, then the longest literal path prefix, then a rule that names methods, then
    /// deny. Without a matching rule, [`decide_connect`](Self::decide_connect) decides.
    pub fn decide_http(&self, host: &str, port: u16, method: &str, path: &str) -> Decision {
        let connect = self.decide_connect(host, port);
        if matches!(
            connect.reason,
            reason::INVALID_HOST
                | reason::INVALID_PORT
                | reason::PRIVATE_ADDRESS
                | reason::METADATA_ADDRESS
        ) {
            return connect;
        }
        let invalid = || Decision::new(Verdict::Deny, "network.http", reason::INVALID_REQUEST);
        let Ok(target) = Target::parse(host) else {
            return invalid();
        };
        if method.is_empty()
            || method.len() > 32
            || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
        {
            return invalid();
        }
        let method = method.to_ascii_uppercase();
        let Some(readings) = http_path_readings(path) else {
            return invalid();
        };
        // Every reading must be allowed; when all are, the literal one's rule is reported.
        let mut decisions = readings
            .iter()
            .map(|path| self.decide_http_path(&target, port, &method, path, &connect));
        let literal = decisions.next().unwrap_or_else(invalid);
        if literal.is_allowed()
            && let Some(denied) = decisions.find(|d| !d.is_allowed())
        {
            return denied;
        }
        literal
    }

    /// [`decide_http`](Self::decide_http) for one normalised path.
    fn decide_http_path(
        &self,
        target: &Target,
        port: u16,
        method: &str,
        path: &str,
        connect: &Decision,
    ) -> Decision {
        let matching = self.network.http.iter().enumerate().filter(|(_, r)| {
            r.endpoint.matches(target, port)
                && (r.methods.is_empty() || r.methods.iter().any(|m| m == method))
                && r.path.as_ref().is_none_or(|p| p.matcher.is_match(path))
        });
        let specificity = |r: &HttpRule| {
            (
                r.endpoint.specificity(),
                r.path.as_ref().map(|p| p.literal_len),
                !r.methods.is_empty(),
            )
        };
        match best(matching, specificity, |r| r.allow) {
            Some(r) if r.allow => {
                // An HTTP rule opens a method and path, never a private address.
                if let Target::Ip(ip) = target {
                    let by_address = self.decide_address(*ip, port);
                    if !by_address.is_allowed() {
                        return by_address;
                    }
                }
                rule_decision(true, &r.rule)
            }
            Some(r) => rule_decision(false, &r.rule),
            None => connect.clone(),
        }
    }

    /// Decides a filesystem operation on `rel_path` inside the share mounted at `mount` (its
    /// guest path, e.g. `/workspace`). `rel_path` is relative to the share root; a leading `/`
    /// is ignored and `..` is refused. No filesystem access: paths that do not exist yet are
    /// decided the same way.
    ///
    /// Order: airlock's own files ([`Policy::with_reserved`]), protected paths (only in a mount
    /// with `protected = true`), then `deny_write`, then
    /// `deny_read` (reads, and renames or links that would expose a read-denied file), then the
    /// mount mode. Any matching deny rule beats the mode, which is the least specific rule (it
    /// covers the whole share).
    pub fn decide_fs(&self, mount: &str, op: FsOp, rel_path: &str) -> Decision {
        let Some((index, m)) = normalize_guest(mount)
            .ok()
            .and_then(|g| self.mounts.iter().enumerate().find(|(_, m)| m.guest == g))
        else {
            return Decision::new(Verdict::Deny, "filesystem.mounts", reason::UNKNOWN_MOUNT);
        };
        let Ok(path) = normalize_rel(rel_path) else {
            return Decision::new(Verdict::Deny, "filesystem.path", reason::INVALID_PATH);
        };
        // airlock's own files first: no rule of the policy can open them.
        for r in self.reserved.iter().filter(|r| r.mount == index) {
            let hit = r.rule.check(&path);
            let refused = (op.is_mutation() && op.write_rule_refuses(hit))
                || (r.access == ReservedAccess::Hidden && op.read_rule_refuses(hit));
            if refused {
                return Decision::new(Verdict::Deny, &r.rule.rule, reason::AIRLOCK_FILE);
            }
        }
        if op.is_mutation() {
            let refuses = |hit| op.write_rule_refuses(hit);
            let folded = crate::path::fold_name(&path);
            if m.protected
                && let Some(r) = self.protected.first_hit(&path, refuses).or_else(|| {
                    folded
                        .as_deref()
                        .and_then(|f| self.protected.first_hit(f, refuses))
                })
            {
                return Decision::new(Verdict::Deny, &r.rule, reason::PROTECTED_PATH);
            }
            if let Some(r) = self.deny_write.first_hit(&path, refuses) {
                return Decision::new(Verdict::Deny, &r.rule, reason::WRITE_DENIED);
            }
        }
        if let Some(r) = self.deny_read.first_hit(&path, |m| op.read_rule_refuses(m)) {
            return Decision::new(Verdict::Deny, &r.rule, reason::READ_DENIED);
        }
        if op.is_mutation() && m.mode == MountMode::Ro {
            return Decision::new(Verdict::Deny, &m.rule, reason::READ_ONLY_MOUNT);
        }
        Decision::new(Verdict::Allow, &m.rule, reason::ALLOWED)
    }
}

/// Longest HTTP path accepted.
const MAX_HTTP_PATH_LEN: usize = 16 * 1024;

/// The paths an upstream may take `raw` to mean, each normalised: as written, and, when a
/// segment has `;` parameters, as servlet containers read it (they drop each segment's
/// parameters before resolving dot segments, so `/a/..;/b` is `/b` and `/a;x/b` is `/a/b`).
/// `None` when either reading is refused.
fn http_path_readings(raw: &str) -> Option<Vec<String>> {
    let literal = normalize_http_path(raw)?;
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    if !path.contains(';') {
        return Some(vec![literal]);
    }
    let servlet: Vec<&str> = path
        .split('/')
        .map(|s| s.split(';').next().unwrap_or_default())
        .collect();
    Some(vec![literal, normalize_http_path(&servlet.join("/"))?])
}

/// Normalises an HTTP request path for matching: drops query and fragment, percent-decodes,
/// refuses `..`, NUL, bad escapes and non-UTF-8, drops `.` and empty segments. Keeps a trailing
/// `/`. Refuses a final `.` segment, which upstreams read two ways (`/a/.` is `/a/` by RFC
/// 3986, `/a` by Go's `path.Clean`). Returns `None` for anything refused.
fn normalize_http_path(raw: &str) -> Option<String> {
    if raw.len() > MAX_HTTP_PATH_LEN {
        return None;
    }
    let raw = raw.split(['?', '#']).next().unwrap_or_default();
    if !raw.starts_with('/') {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).ok()?;
    if decoded.contains(['\0', '\\']) || decoded.ends_with("/.") {
        return None;
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s => {
                out.push('/');
                out.push_str(s);
            }
        }
    }
    if out.is_empty() || decoded.ends_with('/') {
        out.push('/');
    }
    Some(out)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_http_path;
#[cfg(test)]
mod tests_reserved;
