//! Persistent agent homes: one directory per (agent kit, workspace) pair, mounted read-write at
//! the guest user's home so an agent's login, settings and sessions survive across runs.
//!
//! ```text
//! $AIRLOCK_HOMES_DIR, else $XDG_DATA_HOME/airlock/homes, else ~/.local/share/airlock/homes
//!   <kit>/<workspace-name>-<hash>/        the home, shared with the guest
//!   <kit>/<workspace-name>-<hash>.json    which workspace it belongs to (never shared)
//! ```
//!
//! The home is guest-written data: airlock only ever creates, measures (without following
//! links) and removes it. The user's own `~/.claude` and the like are never shared.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Where the guest sees the home (the `agent` account's home directory).
pub const GUEST_HOME: &str = "/home/agent";

/// Why a home could not be found or made.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// No data directory could be determined.
    #[error("no directory for agent homes: set AIRLOCK_HOMES_DIR, XDG_DATA_HOME or HOME")]
    NoDir,
    /// A filesystem operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No home matches.
    #[error("no agent home {0}; `airlock agent homes` lists them")]
    NotFound(String),
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> HomeError {
    move |source| HomeError::Io { context, source }
}

/// The directory holding every home.
pub fn homes_dir() -> Result<PathBuf, HomeError> {
    if let Some(d) = std::env::var_os("AIRLOCK_HOMES_DIR") {
        return Ok(PathBuf::from(d));
    }
    data_dir().map(|d| d.join("homes")).ok_or(HomeError::NoDir)
}

/// airlock's data directory: `$XDG_DATA_HOME/airlock`, else `~/.local/share/airlock`.
pub(crate) fn data_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return Some(PathBuf::from(d).join("airlock"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/airlock"))
}

/// What the `.json` beside a home records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeRecord {
    /// Kit name.
    pub kit: String,
    /// The workspace's absolute host path.
    pub workspace: PathBuf,
}

/// One home, as listed.
#[derive(Debug, Clone)]
pub struct HomeInfo {
    /// Kit and workspace.
    pub record: HomeRecord,
    /// The home directory.
    pub path: PathBuf,
    /// Bytes in regular files beneath it.
    pub bytes: u64,
}

/// `<workspace-name>-<first 12 hex of SHA-256 of the path>`: readable and unique per path.
fn slug(workspace: &Path) -> String {
    let name: String = workspace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let hash = hex(&Sha256::digest(workspace.as_os_str().as_encoded_bytes()));
    format!("{}-{}", name.trim_start_matches('.'), &hash[..12])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The home of `kit` for `workspace` under `root`, created (mode 0700) with its record if new.
pub fn ensure_in(root: &Path, kit: &str, workspace: &Path) -> Result<PathBuf, HomeError> {
    let dir = root.join(kit);
    let slug = slug(workspace);
    let home = dir.join(&slug);
    if !home.is_dir() {
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&home)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(io(format!("creating {}", home.display())))?;
    }
    let record = HomeRecord {
        kit: kit.to_string(),
        workspace: workspace.to_path_buf(),
    };
    let meta = dir.join(format!("{slug}.json"));
    if !meta.exists() {
        let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
        std::fs::write(&meta, json).map_err(io(format!("writing {}", meta.display())))?;
    }
    Ok(home)
}

/// [`ensure_in`] under [`homes_dir`].
pub fn ensure(kit: &str, workspace: &Path) -> Result<PathBuf, HomeError> {
    ensure_in(&homes_dir()?, kit, workspace)
}

/// Every home under `root`, sorted by kit then workspace.
pub fn list_in(root: &Path) -> Result<Vec<HomeInfo>, HomeError> {
    let mut out = Vec::new();
    let kits = match std::fs::read_dir(root) {
        Ok(k) => k,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(format!("reading {}", root.display()))(e)),
    };
    for kit in kits.flatten() {
        let Ok(entries) = std::fs::read_dir(kit.path()) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Some(record) = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<HomeRecord>(&b).ok())
            else {
                continue;
            };
            let home = path.with_extension("");
            if !home.is_dir() {
                continue;
            }
            out.push(HomeInfo {
                bytes: du(&home),
                record,
                path: home,
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.record.kit, &a.record.workspace).cmp(&(&b.record.kit, &b.record.workspace))
    });
    Ok(out)
}

/// [`list_in`] under [`homes_dir`].
pub fn list() -> Result<Vec<HomeInfo>, HomeError> {
    list_in(&homes_dir()?)
}

/// Removes the home of `kit` for `workspace` under `root`; returns its path.
pub fn remove_in(root: &Path, kit: &str, workspace: &Path) -> Result<PathBuf, HomeError> {
    let slug = slug(workspace);
    let home = root.join(kit).join(&slug);
    if !home.is_dir() {
        return Err(HomeError::NotFound(format!(
            "of {kit} for {}",
            workspace.display()
        )));
    }
    // `remove_dir_all` removes symlinks the guest made, never what they point to.
    std::fs::remove_dir_all(&home).map_err(io(format!("removing {}", home.display())))?;
    let _ = std::fs::remove_file(root.join(kit).join(format!("{slug}.json")));
    Ok(home)
}

/// [`remove_in`] under [`homes_dir`].
pub fn remove(kit: &str, workspace: &Path) -> Result<PathBuf, HomeError> {
    remove_in(&homes_dir()?, kit, workspace)
}

/// Bytes in regular files beneath `dir`, never following links.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_are_per_kit_and_workspace_and_survive_until_removed() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (Path::new("/src/app"), Path::new("/other/app"));
        let ha = ensure_in(root.path(), "claude-code", a).unwrap();
        let hb = ensure_in(root.path(), "claude-code", b).unwrap();
        let hc = ensure_in(root.path(), "codex", a).unwrap();
        assert_ne!(ha, hb);
        assert_ne!(ha, hc);
        assert!(
            ha.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("app-")
        );
        std::fs::write(ha.join("state"), b"12345").unwrap();
        std::os::unix::fs::symlink("/etc", ha.join("link")).unwrap();
        // Ensuring again keeps what is there.
        assert_eq!(ensure_in(root.path(), "claude-code", a).unwrap(), ha);
        let homes = list_in(root.path()).unwrap();
        assert_eq!(homes.len(), 3);
        let first = &homes[0];
        assert_eq!(first.record.workspace, b);
        let with_state = homes.iter().find(|h| h.path == ha).unwrap();
        assert_eq!(with_state.bytes, 5);
        assert_eq!(remove_in(root.path(), "claude-code", a).unwrap(), ha);
        assert!(!ha.exists());
        assert!(Path::new("/etc/passwd").exists());
        assert_eq!(list_in(root.path()).unwrap().len(), 2);
        let e = remove_in(root.path(), "claude-code", a).unwrap_err();
        assert!(
            e.to_string()
                .contains("no agent home of claude-code for /src/app"),
            "{e}"
        );
    }
}
