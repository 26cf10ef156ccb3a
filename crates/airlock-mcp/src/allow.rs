//! What the user allowed the MCP client to choose: policy profiles by name (`--allow-profile`:
//! a shipped profile, or `NAME=FILE` for a policy file of the user's, read once at start-up)
//! and the host directories a workspace may come from (`--allow-workspace`). A client picks
//! among these; it never sends policy text, so the server cannot widen what the user allowed.

use crate::error::{ConfigError, ToolError};
use std::path::{Path, PathBuf};

/// The profile used when the user allowed none explicitly.
pub const DEFAULT_PROFILE: &str = "default";

/// A profile a client may choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// A profile shipped with airlock, by name.
    Shipped(String),
    /// A policy file the user named: its text as read (and validated) at start-up.
    File {
        /// The name clients use.
        name: String,
        /// The file (absolute), cited in messages; relative paths in it resolve against it.
        path: PathBuf,
        /// Its text.
        text: String,
    },
}

impl Profile {
    /// The name clients use.
    pub fn name(&self) -> &str {
        match self {
            Profile::Shipped(name) | Profile::File { name, .. } => name,
        }
    }

    /// Parses one `--allow-profile` value: `NAME` (shipped) or `NAME=FILE` (relative to `cwd`).
    pub fn parse(value: &str, cwd: &Path) -> Result<Profile, ConfigError> {
        let Some((name, file)) = value.split_once('=') else {
            let known = airlock_policy::profile_names();
            if !known.contains(&value) {
                return Err(ConfigError::UnknownProfile {
                    name: value.to_string(),
                    known: known.to_vec(),
                });
            }
            return Ok(Profile::Shipped(value.to_string()));
        };
        let name_ok = (1..=63).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(ConfigError::ProfileName(name.to_string()));
        }
        let path = cwd.join(file);
        let read = |source| ConfigError::PolicyFile {
            name: name.to_string(),
            path: path.clone(),
            source,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| read(Box::new(e)))?;
        // Fail closed now rather than at each create: the daemon would refuse it too.
        airlock_policy::load_str(&text, &path).map_err(|e| read(Box::new(e)))?;
        Ok(Profile::File {
            name: name.to_string(),
            path,
            text,
        })
    }
}

/// The user's allow-list, fixed when the server starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    profiles: Vec<Profile>,
    roots: Vec<PathBuf>,
}

impl Allowed {
    /// Checks the user's choices: each profile must be a shipped one or a valid policy file,
    /// each workspace root an existing directory (kept canonical). No profiles means
    /// [`DEFAULT_PROFILE`] only; no roots means `cwd` only. The first of each is the default a
    /// client gets.
    pub fn new(profiles: &[String], roots: &[PathBuf], cwd: &Path) -> Result<Allowed, ConfigError> {
        let mut checked: Vec<Profile> = Vec::new();
        for value in profiles {
            let p = Profile::parse(value, cwd)?;
            match checked.iter().find(|c| c.name() == p.name()) {
                Some(same) if *same == p => {}
                Some(_) => return Err(ConfigError::ProfileName(p.name().to_string())),
                None => checked.push(p),
            }
        }
        if checked.is_empty() {
            checked.push(Profile::Shipped(DEFAULT_PROFILE.into()));
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

    /// The names of the allowed profiles, the default first.
    pub fn profiles(&self) -> Vec<String> {
        self.profiles.iter().map(|p| p.name().to_string()).collect()
    }

    /// The allowed workspace roots (canonical), the default first.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The profile for a request: the one asked for if the user allowed it, else the default.
    pub fn profile(&self, requested: Option<&str>) -> Result<&Profile, ToolError> {
        let found = match requested {
            None => self.profiles.first(),
            Some(name) => self.profiles.iter().find(|p| p.name() == name),
        };
        found.ok_or_else(|| ToolError::ProfileNotAllowed {
            profile: requested.unwrap_or_default().to_string(),
            allowed: self.profiles(),
        })
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
        assert_eq!(a.profile(None).unwrap().name(), "offline");
        assert_eq!(
            a.profile(Some("default")).unwrap(),
            &Profile::Shipped("default".into())
        );
        let none = Allowed::new(&[], &[], dir.path()).unwrap();
        assert_eq!(none.profiles(), names(&["default"]));
        let e = Allowed::new(&names(&["default", "yolo"]), &[], dir.path()).unwrap_err();
        assert!(matches!(&e, ConfigError::UnknownProfile { name, .. } if name == "yolo"));
        assert!(e.to_string().starts_with(
            "--allow-profile \"yolo\": no such profile; shipped profiles: default, offline"
        ));
    }

    #[test]
    fn a_policy_file_is_read_and_checked_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let good =
            "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"overlay\"\n";
        std::fs::write(dir.path().join("review.toml"), good).unwrap();
        std::fs::write(dir.path().join("bad.toml"), "[sandbox]\ncpu = 2\n").unwrap();
        let a = Allowed::new(&names(&["review=review.toml", "default"]), &[], dir.path()).unwrap();
        assert_eq!(a.profiles(), names(&["review", "default"]));
        assert_eq!(
            a.profile(None).unwrap(),
            &Profile::File {
                name: "review".into(),
                path: dir.path().join("review.toml"),
                text: good.into(),
            }
        );
        let e = Allowed::new(&names(&["strict=bad.toml"]), &[], dir.path()).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "--allow-profile strict={}: not a usable policy",
                dir.path().join("bad.toml").display()
            )),
            "{e}"
        );
        let e = Allowed::new(&names(&["gone=missing.toml"]), &[], dir.path()).unwrap_err();
        assert!(matches!(e, ConfigError::PolicyFile { .. }), "{e}");
        for bad in ["a b=review.toml", "=review.toml"] {
            let e = Allowed::new(&names(&[bad]), &[], dir.path()).unwrap_err();
            assert!(matches!(e, ConfigError::ProfileName(_)), "{bad}: {e}");
        }
        // One name, two meanings: refused rather than guessed.
        let e =
            Allowed::new(&names(&["default=review.toml", "default"]), &[], dir.path()).unwrap_err();
        assert!(matches!(e, ConfigError::ProfileName(n) if n == "default"));
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
