//! What the user allowed the MCP client to choose: shipped policy profiles by name
//! (`--allow-profile`) and the host directories a workspace may come from
//! (`--allow-workspace`). A client picks among these; it never sends policy text, so the
//! server cannot widen what the user allowed. Pure checks, no I/O beyond resolving paths.

use crate::error::{ConfigError, ToolError};
use std::path::{Path, PathBuf};

/// The profile used when the user allowed none explicitly.
pub const DEFAULT_PROFILE: &str = "default";

/// The user's allow-list, fixed when the server starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    profiles: Vec<String>,
    roots: Vec<PathBuf>,
}

impl Allowed {
    /// Checks the user's choices: each profile must be a shipped one, each workspace root an
    /// existing directory (kept canonical). No profiles means [`DEFAULT_PROFILE`] only; no
    /// roots means `cwd` only. The first of each is the default a client gets.
    pub fn new(profiles: &[String], roots: &[PathBuf], cwd: &Path) -> Result<Allowed, ConfigError> {
        let known = airlock_policy::profile_names();
        let mut checked: Vec<String> = Vec::new();
        for name in profiles {
            if !known.contains(&name.as_str()) {
                return Err(ConfigError::UnknownProfile {
                    name: name.clone(),
                    known: known.to_vec(),
                });
            }
            if !checked.contains(name) {
                checked.push(name.clone());
            }
        }
        if checked.is_empty() {
            checked.push(DEFAULT_PROFILE.into());
        }
        let given: Vec<PathBuf> = if roots.is_empty() {
            vec![cwd.to_path_buf()]
        } else {
            roots.iter().map(|r| cwd.join(r)).collect()
        };
        let mut canonical: Vec<PathBuf> = Vec::new();
        for root in given {
            let c = std::fs::canonicalize(&root)
                .and_then(|c| {
                    if c.is_dir() {
                        Ok(c)
                    } else {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::NotADirectory,
                            "not a directory",
                        ))
                    }
                })
                .map_err(|source| ConfigError::Workspace {
                    path: root.clone(),
                    source,
                })?;
            if !canonical.contains(&c) {
                canonical.push(c);
            }
        }
        Ok(Allowed {
            profiles: checked,
            roots: canonical,
        })
    }

    /// The allowed profiles, the default first.
    pub fn profiles(&self) -> &[String] {
        &self.profiles
    }

    /// The allowed workspace roots (canonical), the default first.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The profile for a request: the one asked for if the user allowed it, else the default.
    pub fn profile(&self, requested: Option<&str>) -> Result<String, ToolError> {
        let Some(name) = requested else {
            return Ok(self.profiles.first().cloned().unwrap_or_default());
        };
        if self.profiles.iter().any(|p| p == name) {
            Ok(name.to_string())
        } else {
            Err(ToolError::ProfileNotAllowed {
                profile: name.to_string(),
                allowed: self.profiles.clone(),
            })
        }
    }

    /// The workspace for a request: the directory asked for (absolute, or relative to the
    /// first root), resolved through symlinks, if it is one of the roots or beneath one; else
    /// the first root.
    pub fn workspace(&self, requested: Option<&str>) -> Result<PathBuf, ToolError> {
        let first = self.roots.first().cloned().unwrap_or_default();
        let Some(given) = requested else {
            return Ok(first);
        };
        let path = first.join(given);
        let resolved = std::fs::canonicalize(&path).map_err(|source| ToolError::Workspace {
            path: path.clone(),
            source,
        })?;
        if !resolved.is_dir() {
            return Err(ToolError::Workspace {
                path,
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        if self.roots.iter().any(|r| resolved.starts_with(r)) {
            Ok(resolved)
        } else {
            Err(ToolError::WorkspaceNotAllowed {
                path: resolved,
                roots: self.roots.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_shipped_profiles_can_be_allowed_and_the_first_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let a = Allowed::new(&names(&["offline", "default", "offline"]), &[], dir.path()).unwrap();
        assert_eq!(a.profiles(), names(&["offline", "default"]));
        assert_eq!(a.profile(None).unwrap(), "offline");
        assert_eq!(a.profile(Some("default")).unwrap(), "default");
        let none = Allowed::new(&[], &[], dir.path()).unwrap();
        assert_eq!(none.profiles(), names(&["default"]));
        let e = Allowed::new(&names(&["default", "yolo"]), &[], dir.path()).unwrap_err();
        assert!(matches!(&e, ConfigError::UnknownProfile { name, .. } if name == "yolo"));
        assert!(e.to_string().starts_with(
            "--allow-profile \"yolo\": no such profile; shipped profiles: default, offline"
        ));
    }

    #[test]
    fn a_profile_the_user_did_not_allow_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = Allowed::new(&names(&["offline"]), &[], dir.path()).unwrap();
        let e = a.profile(Some("claude-code")).unwrap_err();
        assert_eq!(e.code(), "profile_not_allowed");
        assert_eq!(
            e.to_string(),
            "profile \"claude-code\" is not allowed here; the user allowed: offline. A client \
             cannot choose another policy: ask the user to start `airlock mcp` with \
             `--allow-profile claude-code`"
        );
    }

    #[test]
    fn workspaces_must_resolve_inside_an_allowed_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("projects");
        let inside = root.join("app");
        let outside = tmp.path().join("secrets");
        for d in [&inside, &outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(&outside, inside.join("escape")).unwrap();
        let a = Allowed::new(&[], std::slice::from_ref(&root), tmp.path()).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        assert_eq!(a.roots(), std::slice::from_ref(&root));
        assert_eq!(a.workspace(None).unwrap(), root);
        assert_eq!(a.workspace(Some("app")).unwrap(), root.join("app"));
        let abs = inside.to_str().unwrap();
        assert_eq!(a.workspace(Some(abs)).unwrap(), root.join("app"));
        for bad in [outside.to_str().unwrap(), "app/escape", "..", "/"] {
            let e = a.workspace(Some(bad)).unwrap_err();
            assert_eq!(e.code(), "workspace_not_allowed", "{bad}");
            assert!(matches!(e, ToolError::WorkspaceNotAllowed { .. }), "{bad}");
        }
        let e = a.workspace(Some("missing")).unwrap_err();
        assert!(matches!(&e, ToolError::Workspace { path, .. } if path == &root.join("missing")));
        assert_eq!(
            Allowed::new(&[], &[tmp.path().join("nope")], tmp.path())
                .unwrap_err()
                .to_string(),
            format!(
                "--allow-workspace {}: not an existing directory",
                tmp.path().join("nope").display()
            )
        );
    }
}
