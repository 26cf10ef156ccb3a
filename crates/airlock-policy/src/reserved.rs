//! airlock's own files inside a share: the policy file, audit logs and key, the CA, airlock's
//! data, state and cache directories. The supervisor finds which of them lie inside a share
//! before boot ([`crate::Policy::reserve`]); every share then exposes them read-only or not at all, whatever
//! the policy says, because a guest that could rewrite them could change its own rules, forge
//! its record or read the keys that sign it.
//!
//! The list travels with [`crate::PolicySource`] to the gateways, which cannot see the host
//! paths themselves.

use std::path::Path;

use crate::path::{PathError, PathRule, normalize_rel};

/// What a share may do with a reserved file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservedAccess {
    /// Readable, never changed (the policy file, the image cache).
    ReadOnly,
    /// Neither read nor changed (audit logs and key, the CA key, overlays, state).
    Hidden,
}

impl ReservedAccess {
    /// `read-only` or `hidden`, as `policy explain` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::Hidden => "hidden",
        }
    }
}

/// One of airlock's files or directories inside a share.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reserved {
    /// Index of the mount in [`crate::Policy::mounts`].
    pub mount: usize,
    /// Its path relative to the share root.
    pub path: String,
    /// What the guest may do with it.
    pub access: ReservedAccess,
    /// What it is (`policy file`, `audit log`), as named in decisions.
    pub what: String,
}

/// One host file or directory of airlock's, as the supervisor names it.
#[derive(Debug, Clone)]
pub struct HostFile<'a> {
    /// Canonical host path (it may not exist yet: an audit log before its first run).
    pub path: &'a Path,
    /// What a share holding it may do with it.
    pub access: ReservedAccess,
    /// What it is.
    pub what: &'a str,
}

/// The entries of `files` that lie strictly inside one of the mounts' host directories
/// (`hosts`, in mount order; canonical paths on both sides), one per (mount, file). A file that
/// is a share's root or holds it is not listed: sharing airlock's own directory is the host
/// user's explicit choice (an agent home lives under airlock's data directory). A name that is
/// not UTF-8 is not listed either: the fs gateway refuses such names whatever the policy says.
pub(crate) fn reserve<'a>(
    hosts: impl Iterator<Item = Option<&'a Path>>,
    files: &[HostFile<'_>],
) -> Vec<Reserved> {
    let mut out = Vec::new();
    for (i, host) in hosts.enumerate() {
        let Some(host) = host else {
            continue;
        };
        for f in files {
            let Ok(rel) = f.path.strip_prefix(host) else {
                continue;
            };
            let Some(rel) = rel.to_str().filter(|r| !r.is_empty()) else {
                continue;
            };
            out.push(Reserved {
                mount: i,
                path: rel.to_owned(),
                access: f.access,
                what: f.what.to_owned(),
            });
        }
    }
    out
}

/// A compiled [`Reserved`] entry.
#[derive(Debug, Clone)]
pub(crate) struct ReservedRule {
    pub(crate) mount: usize,
    pub(crate) access: ReservedAccess,
    /// Covers the path and, when it is a directory, everything below it.
    pub(crate) rule: PathRule,
}

/// Compiles `r`; its path is matched literally (glob characters in a file name are escaped).
pub(crate) fn compile(r: &Reserved) -> Result<ReservedRule, PathError> {
    let rel = normalize_rel(&r.path)?;
    if rel.is_empty() {
        return Err(PathError::Empty);
    }
    let mut glob = String::with_capacity(rel.len() + 3);
    for c in rel.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            glob.push('\\');
        }
        glob.push(c);
    }
    glob.push_str("/**");
    let rule = PathRule::compile(format!("airlock {}", r.what), &glob, false, true)?;
    Ok(ReservedRule {
        mount: r.mount,
        access: r.access,
        rule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::PathMatch;

    #[test]
    fn paths_match_literally_with_everything_below() {
        let r = compile(&Reserved {
            mount: 0,
            path: "cfg/a*[1]{x}\\y/".into(),
            access: ReservedAccess::Hidden,
            what: "audit log".into(),
        })
        .unwrap();
        assert_eq!(r.rule.rule, "airlock audit log");
        assert_eq!(r.rule.check("cfg/a*[1]{x}\\y"), PathMatch::Direct);
        assert_eq!(r.rule.check("cfg/a*[1]{x}\\y/k"), PathMatch::Direct);
        assert_eq!(r.rule.check("cfg/ab1x\\y"), PathMatch::No);
        assert_eq!(r.rule.check("cfg"), PathMatch::Ancestor);
        for bad in ["", "..", "a/../b"] {
            let r = Reserved {
                mount: 0,
                path: bad.into(),
                access: ReservedAccess::Hidden,
                what: "x".into(),
            };
            assert!(compile(&r).is_err(), "{bad:?}");
        }
    }
}
