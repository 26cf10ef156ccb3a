//! `[filesystem]`: mounts and their host directories, `deny_read`/`deny_write` globs, and the
//! protected paths (built-in, added, removed).

use std::path::{Component, Path, PathBuf};

use crate::path::{
    BUILTIN_PROTECTED, PathError, PathRule, builtin_rules, normalize_glob, normalize_guest,
    normalize_rel,
};
use crate::policy::{AGENT_HOME, Mount, MountHost, unprotected_overlaps};
use crate::schema::{MountEntry, MountMode, PolicyFile};
use crate::source::Layer;
use crate::validation_error::ValidationError;

use super::ctx::{Ctx, Item, all, last};

/// Guest paths a share may not cover: mounting there would hide the guest's own system.
const RESERVED_GUEST_PATHS: &[&str] = &["/proc", "/sys", "/dev"];

/// Reads one glob list of a layer.
type GlobList = fn(&PolicyFile) -> &Vec<String>;

/// Default `filesystem.max_open`.
const DEFAULT_MAX_OPEN: u32 = 8192;

impl Ctx<'_> {
    /// `filesystem.max_open` (its range is checked against the schema at load).
    pub(super) fn max_open(&mut self, layers: &[Layer]) -> u32 {
        last(layers, "filesystem.max_open", |f| &f.filesystem.max_open)
            .map_or(DEFAULT_MAX_OPEN, |it| *it.value)
    }

    /// `filesystem.quota`, else `disk` (`sandbox.disk`).
    pub(super) fn quota(&mut self, layers: &[Layer], disk: u64) -> u64 {
        last(layers, "filesystem.quota", |f| &f.filesystem.quota)
            .and_then(|it| self.size(&it))
            .unwrap_or(disk)
    }

    pub(super) fn mounts(&mut self, layers: &[Layer]) -> Vec<Mount> {
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
        // (source, key) of each entry of `mounts`, for errors found across mounts.
        let mut keys = Vec::new();
        for (it, guest) in merged {
            let m = it.value;
            let protected = m.protected.unwrap_or(true);
            if !protected && m.workspace == Some(true) {
                self.error(
                    it.src,
                    &format!("{}.protected", it.key),
                    ValidationError::UnprotectedWorkspace,
                );
            }
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
                    protected,
                });
                keys.push((it.src, it.key));
            }
        }
        // Host paths taken as written are checked once they are known
        // (`PolicySource::load_checked_elsewhere`).
        let overlaps = if self.env.trusted_hosts {
            Vec::new()
        } else {
            unprotected_overlaps(&mounts)
        };
        for (i, error) in overlaps {
            if let Some((src, key)) = keys.get(i) {
                self.error(*src, &format!("{key}.protected"), error);
            }
        }
        mounts
    }

    /// Resolves a host path (`~`, relative to the policy file) without checking it exists.
    pub(super) fn host_path(&mut self, src: usize, key: &str, raw: &str) -> Option<PathBuf> {
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
    pub(super) fn host_dir(&mut self, src: usize, key: &str, raw: &str) -> Option<PathBuf> {
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
    pub(super) fn globs<'a>(
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

    pub(super) fn glob(
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

    /// Refuses `deny_read`, `deny_write` and `protect` globs written as a guest or host path
    /// of a share (`/workspace/.env`): globs are matched relative to each share's root, so
    /// such a glob never covers the file it names, and the policy would protect less than it
    /// reads. Only globs with a leading `/` are checked: `workspace/.env` stays a way to name
    /// a directory called `workspace` inside a share.
    pub(super) fn mount_path_globs(&mut self, layers: &[Layer], mounts: &[Mount]) {
        // (prefix without the leading `/`, what it is), longest first so the innermost share
        // gives the suggestion.
        let mut anchors: Vec<(String, String)> = Vec::new();
        for m in mounts {
            anchors.push((
                m.guest.clone(),
                format!("the guest mount point of {}", m.rule),
            ));
            if let MountHost::Path(host) = &m.host
                && let Some(host) = host.to_str()
            {
                let what = format!("the host directory {host:?} of {}", m.rule);
                anchors.push((host.to_owned(), what));
            }
        }
        // The agent home a kit mounts, unless a policy mount is there (then that one counts).
        let nested = |a: &str, b: &str| Path::new(a).starts_with(b);
        if !mounts
            .iter()
            .any(|m| nested(&m.guest, AGENT_HOME) || nested(AGENT_HOME, &m.guest))
        {
            let what = format!("the agent home's mount point {AGENT_HOME:?}");
            anchors.push((AGENT_HOME.to_owned(), what));
        }
        let mut anchors: Vec<(String, String)> = anchors
            .into_iter()
            .filter_map(|(a, what)| {
                let rel = normalize_rel(&a).ok()?;
                (!rel.is_empty()).then_some((rel, what))
            })
            .collect();
        anchors.sort_by_key(|(a, _)| std::cmp::Reverse(a.len()));
        let lists: [(&str, GlobList); 3] = [
            ("filesystem.deny_read", |f| &f.filesystem.deny_read),
            ("filesystem.deny_write", |f| &f.filesystem.deny_write),
            ("filesystem.protect", |f| &f.filesystem.protect),
        ];
        for (key, get) in lists {
            for it in all(layers, key, get) {
                if !it.value.starts_with('/') {
                    continue;
                }
                let Ok(glob) = normalize_glob(it.value) else {
                    continue;
                };
                let hit = anchors.iter().find_map(|(anchor, what)| {
                    let rest = glob.strip_prefix(anchor.as_str())?;
                    (rest.is_empty() || rest.starts_with('/'))
                        .then(|| (what, rest.trim_start_matches('/')))
                });
                if let Some((what, rest)) = hit {
                    self.error(
                        it.src,
                        &it.key,
                        ValidationError::GlobNamesMountPath {
                            found: it.value.clone(),
                            what: what.clone(),
                            relative: glob.clone(),
                            instead: if rest.is_empty() { "**" } else { rest }.to_owned(),
                        },
                    );
                }
            }
        }
    }

    /// Built-in protected entries minus `unprotect`, plus `protect`.
    pub(super) fn protected(&mut self, layers: &[Layer]) -> (Vec<PathRule>, Vec<String>) {
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
}
