//! Schema to validated [`Policy`]: merges the `extends` layers, applies defaults, parses every
//! size, duration, path, glob and host pattern, and checks the entries against each other.
//!
//! Every bad entry is reported, each with the key path it came from; `load.rs` turns key paths
//! into `file:line:column`. The only I/O is checking that shared host directories exist.

use std::path::{Component, PathBuf};
use std::time::Duration;

use globset::GlobBuilder;

use crate::host::{Endpoint, HostError};
use crate::load::{Env, Layer, Loc, Source};
use crate::path::{
    BUILTIN_PROTECTED, PathError, PathRule, builtin_rules, normalize_glob, normalize_guest,
};
use crate::policy::{
    AuditPolicy, HttpPath, HttpRule, MonitorRule, Mount, MountHost, NetRule, NetworkRules, Policy,
    ProcessPolicy, SandboxLimits,
};
use crate::schema::{DefaultAction, MountEntry, MountMode, PolicyFile, SeccompProfile};

/// Default `sandbox.image`.
const DEFAULT_IMAGE: &str = "tiny";
/// Default `sandbox.cpus`.
const DEFAULT_CPUS: u32 = 1;
/// Default `sandbox.memory` (512 MiB).
const DEFAULT_MEMORY: u64 = 512 << 20;
/// Default `sandbox.disk` (2 GiB).
const DEFAULT_DISK: u64 = 2 << 30;
/// Default `sandbox.pids`.
const DEFAULT_PIDS: u32 = 1024;
/// Default `process.user`.
const DEFAULT_USER: &str = "agent";
/// Longest user name accepted by common `useradd` implementations.
const MAX_USER_LEN: usize = 32;
/// Longest image name.
const MAX_IMAGE_LEN: usize = 64;
/// Guest paths a share may not cover: mounting there would hide the guest's own system.
const RESERVED_GUEST_PATHS: &[&str] = &["/proc", "/sys", "/dev"];

/// A value that is well formed TOML but not a valid policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// `extends` names no shipped profile.
    #[error("unknown profile {found:?}, expected one of: {expected}")]
    UnknownProfile {
        /// The name as written.
        found: String,
        /// The shipped profiles.
        expected: String,
    },
    /// A profile that (indirectly) extends itself.
    #[error("profile {found:?} is already in this `extends` chain; expected no cycle")]
    ExtendsCycle {
        /// The repeated profile.
        found: String,
    },
    /// Too many nested `extends`.
    #[error("more than {max} nested `extends`")]
    ExtendsTooDeep {
        /// The limit.
        max: usize,
    },
    /// `sandbox.require` names no known protection.
    #[error("unknown protection {found:?}, expected one of: {expected}")]
    UnknownProtection {
        /// The name as written.
        found: String,
        /// The known protections.
        expected: String,
    },
    /// `sandbox.image` is not a plain name.
    #[error(
        "invalid image name {found:?}, expected 1 to 64 lower-case letters, digits, `.`, `_` or \
         `-`, starting with a letter or digit"
    )]
    BadImage {
        /// The name as written.
        found: String,
    },
    /// A count below its minimum.
    #[error("found {found}, expected at least {min}")]
    TooSmall {
        /// The value.
        found: u64,
        /// The minimum.
        min: u64,
    },
    /// A size string that does not parse.
    #[error(
        "invalid size {found:?}, expected a whole number greater than 0 with an optional unit: \
         K, M, G, T or KiB, MiB, GiB, TiB (binary), KB, MB, GB, TB (decimal), B; e.g. \"512MiB\""
    )]
    BadSize {
        /// The text as written.
        found: String,
    },
    /// A duration string that does not parse.
    #[error(
        "invalid duration {found:?}, expected numbers with units ms, s, m, h or d, greater than 0; \
         e.g. \"90s\", \"30m\" or \"1h30m\""
    )]
    BadDuration {
        /// The text as written.
        found: String,
    },
    /// A guest path that is not absolute or contains `..`.
    #[error(
        "invalid guest path {found:?}: {problem}; expected an absolute path like \"/workspace\""
    )]
    BadGuestPath {
        /// The path as written.
        found: String,
        /// What is wrong.
        problem: PathError,
    },
    /// A guest path over the guest's own system directories.
    #[error(
        "guest path {found:?} would hide a guest system directory; expected a path outside /, /proc, /sys and /dev"
    )]
    ReservedGuestPath {
        /// The normalised path.
        found: String,
    },
    /// Two mounts at the same guest path in one file.
    #[error("guest path {found:?} is already mounted by {first}; expected each guest path once")]
    DuplicateMount {
        /// The normalised path.
        found: String,
        /// The key of the first mount.
        first: String,
    },
    /// Both `host` and `workspace = true`.
    #[error("both `host` and `workspace = true` are set; expected exactly one")]
    MountSourceConflict,
    /// Neither `host` nor `workspace = true`.
    #[error("neither `host` nor `workspace = true` is set; expected exactly one")]
    MountSourceMissing,
    /// A host path that is malformed.
    #[error("invalid host path {found:?}: {problem}")]
    BadHostPath {
        /// The path as written.
        found: String,
        /// What is wrong.
        problem: PathError,
    },
    /// `~` used while `HOME` is unset.
    #[error("cannot expand `~` in {found:?}: HOME is not set")]
    HomeUnset {
        /// The path as written.
        found: String,
    },
    /// The host directories passed with a policy checked elsewhere do not fit its mounts.
    #[error("host directories do not match the mounts: {why}")]
    MountHostsMismatch {
        /// What differs.
        why: String,
    },
    /// A shared host directory that does not exist.
    #[error(
        "host path {found:?} (resolved to {resolved:?}) does not exist; expected an existing directory"
    )]
    HostPathMissing {
        /// The path as written.
        found: String,
        /// The path after `~` expansion and joining to the policy file's directory.
        resolved: String,
    },
    /// A shared host path that is not a directory.
    #[error(
        "host path {found:?} (resolved to {resolved:?}) is not a directory; expected a directory"
    )]
    NotADirectory {
        /// The path as written.
        found: String,
        /// The resolved path.
        resolved: String,
    },
    /// A shared host path that exists but cannot be examined.
    #[error(
        "host path {found:?} (resolved to {resolved:?}) cannot be accessed ({reason}); expected a \
         readable directory"
    )]
    HostPathInaccessible {
        /// The path as written.
        found: String,
        /// The resolved path.
        resolved: String,
        /// The I/O error kind.
        reason: String,
    },
    /// A malformed path glob.
    #[error("invalid glob {found:?}: {problem}")]
    BadGlob {
        /// The glob as written.
        found: String,
        /// What is wrong.
        problem: PathError,
    },
    /// `unprotect` names no built-in entry.
    #[error("{found:?} is not a built-in protected entry, expected one of: {expected}")]
    UnknownUnprotect {
        /// The entry as written.
        found: String,
        /// The built-in entries.
        expected: String,
    },
    /// The same entry in `protect` and `unprotect`.
    #[error("{found:?} is also in `filesystem.protect`; expected it in only one of the two lists")]
    ProtectAndUnprotect {
        /// The entry.
        found: String,
    },
    /// A malformed `host[:port]` pattern.
    #[error("invalid host pattern {found:?}: {problem}")]
    BadHostPattern {
        /// The pattern as written.
        found: String,
        /// What is wrong.
        problem: HostError,
    },
    /// A malformed HTTP method.
    #[error("invalid HTTP method {found:?}, expected letters and `-` only, like \"GET\"")]
    BadMethod {
        /// The method as written.
        found: String,
    },
    /// A malformed HTTP path glob.
    #[error(
        "invalid HTTP path {found:?}: {problem}; expected a glob starting with `/`, like \"/v1/**\""
    )]
    BadHttpPath {
        /// The glob as written.
        found: String,
        /// What is wrong.
        problem: String,
    },
    /// A user name the guest cannot create.
    #[error(
        "invalid user name {found:?}, expected up to 32 lower-case letters, digits, `_` or `-`, \
         starting with a letter or `_`"
    )]
    BadUser {
        /// The name as written.
        found: String,
    },
    /// `no_new_privs = false` with a seccomp filter.
    #[error(
        "`no_new_privs = false` requires `seccomp = \"unconfined\"` (the unprivileged workload \
         cannot install a seccomp filter without no_new_privs); found seccomp = {seccomp:?}"
    )]
    NoNewPrivsNeedsUnconfined {
        /// The seccomp profile in force.
        seccomp: String,
    },
    /// A malformed redaction regex.
    #[error("invalid regular expression {found:?}: {problem}")]
    BadRegex {
        /// The regex as written.
        found: String,
        /// The regex parser's description.
        problem: String,
    },
    /// A malformed environment variable name.
    #[error(
        "invalid environment variable name {found:?}, expected letters, digits and `_`, not \
         starting with a digit"
    )]
    BadEnvName {
        /// The name as written.
        found: String,
    },
    /// A monitor rule without any match field.
    #[error("rule has no match field; expected at least one of kind, decision, path, host")]
    EmptyMonitorRule,
}

/// A value and the key it came from.
struct Item<'a, T> {
    value: &'a T,
    src: usize,
    key: String,
}

struct Ctx<'a> {
    sources: &'a [Source],
    /// The caller's own file (the last layer).
    top: usize,
    env: &'a Env,
    errors: Vec<(Loc, ValidationError)>,
}

/// Merges and validates the layers of one `extends` chain (lowest first).
pub(crate) fn build(
    layers: &[Layer],
    sources: &[Source],
    env: &Env,
) -> Result<Policy, Vec<(Loc, ValidationError)>> {
    let mut cx = Ctx {
        sources,
        top: layers.last().map_or(0, |l| l.src),
        env,
        errors: Vec::new(),
    };
    let sandbox = cx.sandbox(layers);
    let mounts = cx.mounts(layers);
    let (protected, unprotected) = cx.protected(layers);
    let deny_write = cx.globs(layers, "filesystem.deny_write", |f| {
        &f.filesystem.deny_write
    });
    let deny_read = cx.globs(layers, "filesystem.deny_read", |f| &f.filesystem.deny_read);
    let network = cx.network(layers);
    let process = cx.process(layers);
    let audit = cx.audit(layers);
    let monitor = cx.monitor(layers);
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    Ok(Policy {
        source: crate::policy::PolicySource::default(),
        sandbox,
        mounts,
        protected,
        deny_write,
        deny_read,
        network,
        process,
        audit,
        monitor,
        unprotected,
    })
}

/// The value of a scalar from the highest layer that sets it.
fn last<'a, T>(
    layers: &'a [Layer],
    key: &str,
    get: impl Fn(&'a PolicyFile) -> &'a Option<T>,
) -> Option<Item<'a, T>> {
    layers.iter().rev().find_map(|l| {
        get(&l.file).as_ref().map(|value| Item {
            value,
            src: l.src,
            key: key.to_owned(),
        })
    })
}

/// Every entry of a list, lowest layer first.
fn all<'a, T>(
    layers: &'a [Layer],
    key: &str,
    get: impl Fn(&'a PolicyFile) -> &'a Vec<T>,
) -> Vec<Item<'a, T>> {
    layers
        .iter()
        .flat_map(|l| {
            get(&l.file).iter().enumerate().map(move |(i, value)| Item {
                value,
                src: l.src,
                key: format!("{key}[{i}]"),
            })
        })
        .collect()
}

impl Ctx<'_> {
    fn error(&mut self, src: usize, key: &str, error: ValidationError) {
        self.errors.push((Loc::value(src, key), error));
    }

    /// `key "text"`, plus the profile name when the entry comes from a profile under the
    /// caller's file, so that audit records name the entry unambiguously.
    fn rule_name(&self, src: usize, key: &str, text: &str) -> String {
        let mut name = format!("{key} {text:?}");
        if src != self.top
            && let Some(profile) = self.sources.get(src).and_then(|s| s.profile)
        {
            name.push_str(&format!(" (profile {profile})"));
        }
        name
    }

    fn sandbox(&mut self, layers: &[Layer]) -> SandboxLimits {
        let mut limits = SandboxLimits {
            image: DEFAULT_IMAGE.to_owned(),
            cpus: DEFAULT_CPUS,
            memory_bytes: DEFAULT_MEMORY,
            disk_bytes: DEFAULT_DISK,
            pids: DEFAULT_PIDS,
            timeout: None,
            require: Vec::new(),
        };
        if let Some(it) = last(layers, "sandbox.image", |f| &f.sandbox.image) {
            if valid_image(it.value) {
                limits.image.clone_from(it.value);
            } else {
                self.error(
                    it.src,
                    &it.key,
                    ValidationError::BadImage {
                        found: it.value.clone(),
                    },
                );
            }
        }
        if let Some(it) = last(layers, "sandbox.cpus", |f| &f.sandbox.cpus) {
            limits.cpus = self.at_least_one(&it);
        }
        if let Some(it) = last(layers, "sandbox.pids", |f| &f.sandbox.pids) {
            limits.pids = self.at_least_one(&it);
        }
        if let Some(it) = last(layers, "sandbox.memory", |f| &f.sandbox.memory) {
            limits.memory_bytes = self.size(&it).unwrap_or(DEFAULT_MEMORY);
        }
        if let Some(it) = last(layers, "sandbox.disk", |f| &f.sandbox.disk) {
            limits.disk_bytes = self.size(&it).unwrap_or(DEFAULT_DISK);
        }
        if let Some(it) = last(layers, "sandbox.require", |f| &f.sandbox.require) {
            for (i, name) in it.value.iter().enumerate() {
                if crate::policy::PROTECTIONS.contains(&name.as_str()) {
                    if !limits.require.contains(name) {
                        limits.require.push(name.clone());
                    }
                } else {
                    self.error(
                        it.src,
                        &format!("{}[{i}]", it.key),
                        ValidationError::UnknownProtection {
                            found: name.clone(),
                            expected: crate::policy::PROTECTIONS.join(", "),
                        },
                    );
                }
            }
        }
        if let Some(it) = last(layers, "sandbox.timeout", |f| &f.sandbox.timeout) {
            match parse_duration(it.value) {
                Some(d) => limits.timeout = Some(d),
                None => self.error(
                    it.src,
                    &it.key,
                    ValidationError::BadDuration {
                        found: it.value.clone(),
                    },
                ),
            }
        }
        limits
    }

    fn at_least_one(&mut self, it: &Item<'_, u32>) -> u32 {
        if *it.value == 0 {
            self.error(
                it.src,
                &it.key,
                ValidationError::TooSmall { found: 0, min: 1 },
            );
            1
        } else {
            *it.value
        }
    }

    fn size(&mut self, it: &Item<'_, String>) -> Option<u64> {
        let size = parse_size(it.value);
        if size.is_none() {
            self.error(
                it.src,
                &it.key,
                ValidationError::BadSize {
                    found: it.value.clone(),
                },
            );
        }
        size
    }

    fn mounts(&mut self, layers: &[Layer]) -> Vec<Mount> {
        // (item, normalised guest path), in merged order.
        let mut merged: Vec<(Item<'_, MountEntry>, Option<String>)> = Vec::new();
        for it in all(layers, "filesystem.mounts", |f| &f.filesystem.mounts) {
            let guest_key = format!("{}.guest", it.key);
            let guest = match normalize_guest(&it.value.guest) {
                Ok(g) => Some(g),
                Err(problem) => {
                    self.error(
                        it.src,
                        &guest_key,
                        ValidationError::BadGuestPath {
                            found: it.value.guest.clone(),
                            problem,
                        },
                    );
                    None
                }
            };
            if let Some(g) = &guest
                && (g == "/"
                    || RESERVED_GUEST_PATHS.iter().any(|r| {
                        g == r || g.strip_prefix(r).is_some_and(|rest| rest.starts_with('/'))
                    }))
            {
                self.error(
                    it.src,
                    &guest_key,
                    ValidationError::ReservedGuestPath { found: g.clone() },
                );
            }
            let same = merged.iter().position(|(_, g)| g.is_some() && *g == guest);
            match same {
                // A lower layer's mount at the same guest path is replaced in place.
                Some(i) if merged.get(i).is_some_and(|(m, _)| m.src != it.src) => {
                    if let Some(slot) = merged.get_mut(i) {
                        *slot = (it, guest);
                    }
                }
                Some(i) => {
                    let first = merged
                        .get(i)
                        .map(|(m, _)| m.key.clone())
                        .unwrap_or_default();
                    self.error(
                        it.src,
                        &guest_key,
                        ValidationError::DuplicateMount {
                            found: guest.unwrap_or_default(),
                            first,
                        },
                    );
                }
                None => merged.push((it, guest)),
            }
        }
        let mut mounts = Vec::new();
        for (it, guest) in merged {
            let m = it.value;
            let host = match (&m.host, m.workspace.unwrap_or(false)) {
                (Some(_), true) => {
                    self.error(
                        it.src,
                        &format!("{}.workspace", it.key),
                        ValidationError::MountSourceConflict,
                    );
                    None
                }
                (None, false) => {
                    self.error(it.src, &it.key, ValidationError::MountSourceMissing);
                    None
                }
                (None, true) => Some(MountHost::Workspace),
                (Some(raw), false) => self
                    .host_dir(it.src, &format!("{}.host", it.key), raw)
                    .map(MountHost::Path),
            };
            if let (Some(host), Some(guest)) = (host, guest) {
                mounts.push(Mount {
                    rule: self.rule_name(it.src, &it.key, &guest),
                    host,
                    guest,
                    mode: m.mode.unwrap_or(MountMode::Ro),
                    workspace: m.workspace.unwrap_or(false),
                });
            }
        }
        mounts
    }

    /// Resolves a host path (`~`, relative to the policy file) without checking it exists.
    fn host_path(&mut self, src: usize, key: &str, raw: &str) -> Option<PathBuf> {
        let bad = |problem| ValidationError::BadHostPath {
            found: raw.to_owned(),
            problem,
        };
        if raw.is_empty() {
            self.error(src, key, bad(PathError::Empty));
            return None;
        }
        if raw.contains('\0') {
            self.error(src, key, bad(PathError::Nul));
            return None;
        }
        let expanded = if raw == "~" || raw.starts_with("~/") {
            let Some(home) = &self.env.home else {
                self.error(
                    src,
                    key,
                    ValidationError::HomeUnset {
                        found: raw.to_owned(),
                    },
                );
                return None;
            };
            home.join(raw.trim_start_matches('~').trim_start_matches('/'))
        } else if raw.starts_with('~') {
            self.error(src, key, bad(PathError::TildeUser));
            return None;
        } else {
            PathBuf::from(raw)
        };
        if expanded.components().any(|c| c == Component::ParentDir) {
            self.error(src, key, bad(PathError::ParentDir));
            return None;
        }
        if expanded.is_absolute() {
            return Some(expanded);
        }
        let dir = self
            .sources
            .get(src)
            .and_then(|s| s.dir.clone())
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Some(dir.join(expanded))
    }

    /// Resolves a shared host directory, which must exist; returns it canonicalised.
    fn host_dir(&mut self, src: usize, key: &str, raw: &str) -> Option<PathBuf> {
        let path = self.host_path(src, key, raw)?;
        if self.env.trusted_hosts {
            return Some(path);
        }
        let found = raw.to_owned();
        let resolved = path.display().to_string();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => match std::fs::canonicalize(&path) {
                Ok(canonical) => Some(canonical),
                Err(e) => {
                    self.error(
                        src,
                        key,
                        ValidationError::HostPathInaccessible {
                            found,
                            resolved,
                            reason: e.kind().to_string(),
                        },
                    );
                    None
                }
            },
            Ok(_) => {
                self.error(src, key, ValidationError::NotADirectory { found, resolved });
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.error(
                    src,
                    key,
                    ValidationError::HostPathMissing { found, resolved },
                );
                None
            }
            Err(e) => {
                self.error(
                    src,
                    key,
                    ValidationError::HostPathInaccessible {
                        found,
                        resolved,
                        reason: e.kind().to_string(),
                    },
                );
                None
            }
        }
    }

    /// Compiles one glob list (`deny_read`, `deny_write`) into rules.
    fn globs<'a>(
        &mut self,
        layers: &'a [Layer],
        key: &str,
        get: impl Fn(&'a PolicyFile) -> &'a Vec<String>,
    ) -> Vec<PathRule> {
        let mut rules = Vec::new();
        for it in all(layers, key, get) {
            if let Some(rule) = self.glob(&it, false, false) {
                rules.push(rule);
            }
        }
        rules
    }

    fn glob(
        &mut self,
        it: &Item<'_, String>,
        anywhere: bool,
        case_insensitive: bool,
    ) -> Option<PathRule> {
        let compiled = normalize_glob(it.value).and_then(|glob| {
            PathRule::compile(
                self.rule_name(it.src, &it.key, it.value),
                &glob,
                anywhere,
                case_insensitive,
            )
        });
        match compiled {
            Ok(rule) => Some(rule),
            Err(problem) => {
                self.error(
                    it.src,
                    &it.key,
                    ValidationError::BadGlob {
                        found: it.value.clone(),
                        problem,
                    },
                );
                None
            }
        }
    }

    /// Built-in protected entries minus `unprotect`, plus `protect`.
    fn protected(&mut self, layers: &[Layer]) -> (Vec<PathRule>, Vec<String>) {
        let protect = all(layers, "filesystem.protect", |f| &f.filesystem.protect);
        let unprotect = all(layers, "filesystem.unprotect", |f| &f.filesystem.unprotect);
        let mut unprotected: Vec<String> = Vec::new();
        for it in &unprotect {
            if !BUILTIN_PROTECTED
                .iter()
                .any(|p| p.pattern == it.value.as_str())
            {
                let expected = BUILTIN_PROTECTED
                    .iter()
                    .map(|p| p.pattern)
                    .collect::<Vec<_>>()
                    .join(", ");
                self.error(
                    it.src,
                    &it.key,
                    ValidationError::UnknownUnprotect {
                        found: it.value.clone(),
                        expected,
                    },
                );
            } else if protect
                .iter()
                .any(|p| normalize_glob(p.value).is_ok_and(|g| g == *it.value))
            {
                self.error(
                    it.src,
                    &it.key,
                    ValidationError::ProtectAndUnprotect {
                        found: it.value.clone(),
                    },
                );
            } else if !unprotected.contains(it.value) {
                unprotected.push(it.value.clone());
            }
        }
        let mut rules = Vec::new();
        for (entry, compiled) in BUILTIN_PROTECTED.iter().zip(builtin_rules()) {
            if unprotected.iter().any(|u| u == entry.pattern) {
                continue;
            }
            // A failure would be a bug in the table (tests compile every entry); skipping
            // the entry would fail open, so it is reported instead.
            match compiled {
                Ok(rule) => rules.push(rule.clone()),
                Err(problem) => self.error(
                    self.top,
                    "filesystem.protected",
                    ValidationError::BadGlob {
                        found: entry.pattern.to_owned(),
                        problem: problem.clone(),
                    },
                ),
            }
        }
        for it in &protect {
            if let Some(rule) = self.glob(it, false, true) {
                rules.push(rule);
            }
        }
        (rules, unprotected)
    }

    fn endpoint(&mut self, src: usize, key: &str, text: &str) -> Option<Endpoint> {
        match Endpoint::parse(text) {
            Ok(e) => Some(e),
            Err(problem) => {
                self.error(
                    src,
                    key,
                    ValidationError::BadHostPattern {
                        found: text.to_owned(),
                        problem,
                    },
                );
                None
            }
        }
    }

    fn network(&mut self, layers: &[Layer]) -> NetworkRules {
        let default_allow = last(layers, "network.default", |f| &f.network.default)
            .is_some_and(|it| *it.value == DefaultAction::Allow);
        let allow_private = last(layers, "network.allow_private", |f| {
            &f.network.allow_private
        })
        .is_some_and(|it| *it.value);
        let mut rules = Vec::new();
        for (key, allow) in [("network.allow", true), ("network.deny", false)] {
            let items = all(layers, key, |f| {
                if allow {
                    &f.network.allow
                } else {
                    &f.network.deny
                }
            });
            for it in items {
                if let Some(endpoint) = self.endpoint(it.src, &it.key, it.value) {
                    rules.push(NetRule {
                        endpoint,
                        allow,
                        rule: self.rule_name(it.src, &it.key, it.value),
                    });
                }
            }
        }
        let mut http = Vec::new();
        for it in all(layers, "network.http", |f| &f.network.http) {
            let r = it.value;
            let endpoint = self.endpoint(it.src, &format!("{}.host", it.key), &r.host);
            let mut methods = Vec::new();
            for (i, m) in r.methods.iter().enumerate() {
                if !m.is_empty()
                    && m.len() <= 32
                    && m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
                {
                    methods.push(m.to_ascii_uppercase());
                } else {
                    self.error(
                        it.src,
                        &format!("{}.methods[{i}]", it.key),
                        ValidationError::BadMethod { found: m.clone() },
                    );
                }
            }
            let path = match &r.path {
                None => Some(None),
                Some(p) => match http_path(p) {
                    Ok(hp) => Some(Some(hp)),
                    Err(problem) => {
                        self.error(
                            it.src,
                            &format!("{}.path", it.key),
                            ValidationError::BadHttpPath {
                                found: p.clone(),
                                problem,
                            },
                        );
                        None
                    }
                },
            };
            if let (Some(endpoint), Some(path)) = (endpoint, path) {
                let text = format!(
                    "{} {}{}",
                    if methods.is_empty() {
                        "*".to_owned()
                    } else {
                        methods.join(",")
                    },
                    r.host,
                    r.path.as_deref().unwrap_or("")
                );
                http.push(HttpRule {
                    endpoint,
                    methods,
                    path,
                    allow: r.action == DefaultAction::Allow,
                    rule: self.rule_name(it.src, &it.key, &text),
                });
            }
        }
        NetworkRules {
            default_allow,
            rules,
            allow_private,
            http,
        }
    }

    fn process(&mut self, layers: &[Layer]) -> ProcessPolicy {
        let mut process = ProcessPolicy {
            user: DEFAULT_USER.to_owned(),
            seccomp: SeccompProfile::Default,
            no_new_privs: true,
        };
        if let Some(it) = last(layers, "process.user", |f| &f.process.user) {
            if valid_user(it.value) {
                process.user.clone_from(it.value);
            } else {
                self.error(
                    it.src,
                    &it.key,
                    ValidationError::BadUser {
                        found: it.value.clone(),
                    },
                );
            }
        }
        if let Some(it) = last(layers, "process.seccomp", |f| &f.process.seccomp) {
            process.seccomp = *it.value;
        }
        if let Some(it) = last(layers, "process.no_new_privs", |f| &f.process.no_new_privs) {
            process.no_new_privs = *it.value;
            if !*it.value && process.seccomp != SeccompProfile::Unconfined {
                self.error(
                    it.src,
                    &it.key,
                    ValidationError::NoNewPrivsNeedsUnconfined {
                        seccomp: process.seccomp.as_str().to_owned(),
                    },
                );
            }
        }
        process
    }

    fn audit(&mut self, layers: &[Layer]) -> AuditPolicy {
        let path = last(layers, "audit.path", |f| &f.audit.path)
            .and_then(|it| self.host_path(it.src, &it.key, it.value));
        let mut redact = Vec::new();
        for it in all(layers, "audit.redact", |f| &f.audit.redact) {
            match regex::Regex::new(it.value) {
                Ok(_) => redact.push(it.value.clone()),
                Err(e) => self.error(
                    it.src,
                    &it.key,
                    ValidationError::BadRegex {
                        found: it.value.clone(),
                        problem: regex_problem(&e),
                    },
                ),
            }
        }
        let mut redact_env = Vec::new();
        for it in all(layers, "audit.redact_env", |f| &f.audit.redact_env) {
            if valid_env_name(it.value) {
                redact_env.push(it.value.clone());
            } else {
                self.error(
                    it.src,
                    &it.key,
                    ValidationError::BadEnvName {
                        found: it.value.clone(),
                    },
                );
            }
        }
        AuditPolicy {
            path,
            redact,
            redact_env,
        }
    }

    fn monitor(&mut self, layers: &[Layer]) -> Vec<MonitorRule> {
        let mut rules = Vec::new();
        for it in all(layers, "monitor.rules", |f| &f.monitor.rules) {
            let r = it.value;
            if r.kind.is_none() && r.decision.is_none() && r.path.is_none() && r.host.is_none() {
                self.error(it.src, &it.key, ValidationError::EmptyMonitorRule);
                continue;
            }
            let mut ok = true;
            let mut compile =
                |cx: &mut Self, field: &str, glob: &Option<String>, literal_separator: bool| {
                    let glob = glob.as_ref()?;
                    match GlobBuilder::new(glob)
                        .literal_separator(literal_separator)
                        .build()
                    {
                        Ok(g) => Some(g.compile_matcher()),
                        Err(e) => {
                            cx.error(
                                it.src,
                                &format!("{}.{field}", it.key),
                                ValidationError::BadGlob {
                                    found: glob.clone(),
                                    problem: PathError::BadGlob(e.kind().to_string()),
                                },
                            );
                            ok = false;
                            None
                        }
                    }
                };
            let kind = compile(self, "kind", &r.kind, false);
            let path = compile(self, "path", &r.path, true);
            let host = match &r.host {
                None => None,
                Some(h) => {
                    let e = self.endpoint(it.src, &format!("{}.host", it.key), h);
                    ok &= e.is_some();
                    e
                }
            };
            if ok {
                rules.push(MonitorRule {
                    action: r.action,
                    rule: self.rule_name(it.src, &it.key, &describe_monitor(r)),
                    kind,
                    decision: r.decision,
                    path,
                    host,
                });
            }
        }
        rules
    }
}

fn describe_monitor(r: &crate::schema::MonitorRuleEntry) -> String {
    let mut parts = Vec::new();
    if let Some(k) = &r.kind {
        parts.push(format!("kind={k}"));
    }
    if let Some(d) = r.decision {
        parts.push(format!("decision={}", d.as_str()));
    }
    if let Some(p) = &r.path {
        parts.push(format!("path={p}"));
    }
    if let Some(h) = &r.host {
        parts.push(format!("host={h}"));
    }
    parts.join(" ")
}

fn valid_image(name: &str) -> bool {
    name.len() <= MAX_IMAGE_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

fn valid_user(name: &str) -> bool {
    name.len() <= MAX_USER_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

fn valid_env_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(
            || text.lines().last().unwrap_or_default().trim().to_owned(),
            str::to_owned,
        )
}

fn http_path(glob: &str) -> Result<HttpPath, String> {
    if !glob.starts_with('/') {
        return Err("does not start with `/`".to_owned());
    }
    if glob.split('/').any(|c| c == ".." || c == ".") {
        return Err("`.` and `..` segments are not allowed".to_owned());
    }
    let matcher = GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.kind().to_string())?
        .compile_matcher();
    let literal_len = glob.find(['*', '?', '[', '{', '\\']).unwrap_or(glob.len());
    Ok(HttpPath {
        matcher,
        literal_len,
    })
}

/// Parses `512M`, `2GiB`, `500MB`, `1024`: a whole number and an optional unit, case-insensitive.
/// K, M, G, T and KiB, MiB, GiB, TiB are binary; KB, MB, GB, TB decimal; B or none is bytes.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.len() > 20 {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(multiplier).filter(|v| *v > 0)
}

/// Parses `90s`, `30m`, `2h`, `1h30m`, `500ms`, `1d`: number-unit pairs, summed; at least one
/// pair, total greater than zero.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 || digits > 15 {
            return None;
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total_ms = total_ms.checked_add(n.checked_mul(ms)?)?;
        rest = tail;
    }
    (total_ms > 0).then(|| Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests;
