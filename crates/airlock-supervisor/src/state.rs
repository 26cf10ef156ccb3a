//! The per-sandbox state dir: sockets, console and engine logs.
//!
//! Lives under `$AIRLOCK_STATE_DIR`, else `$XDG_RUNTIME_DIR/airlock`, else `/tmp/airlock-<uid>`.
//! Unix socket paths are limited to 108 bytes, so the root should stay short.

use super::SandboxError;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Root directory holding one subdirectory per running sandbox.
pub fn state_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("AIRLOCK_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join("airlock");
    }
    PathBuf::from(format!("/tmp/airlock-{}", nix::unistd::getuid()))
}

/// A sandbox's state dir; removed on [`StateDir::finish`] or drop unless kept.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    id: String,
    keep: bool,
    finished: bool,
    /// A symlink naming this dir by the id of the sandbox it was claimed for.
    alias: Option<PathBuf>,
}

impl StateDir {
    /// Creates a fresh, private state dir with a random id.
    pub fn create(keep: bool) -> Result<StateDir, SandboxError> {
        let id = new_sandbox_id().map_err(|source| SandboxError::State {
            path: state_root(),
            source,
        })?;
        Self::create_with(&id, keep)
    }

    /// Creates the state dir for a sandbox whose id was chosen earlier (for example because its
    /// overlay copies are named after it).
    pub fn create_with(id: &str, keep: bool) -> Result<StateDir, SandboxError> {
        let root = state_root();
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SandboxError::State { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(err(&root))?;
        // A shared /tmp root must not be someone else's: not a link, owned by us.
        let meta = std::fs::symlink_metadata(&root).map_err(err(&root))?;
        {
            use std::os::unix::fs::MetadataExt;
            if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
                return Err(SandboxError::State {
                    path: root.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        "the state root is not a directory owned by this user; remove it or set \
                         AIRLOCK_STATE_DIR",
                    ),
                });
            }
        }
        if meta.permissions().mode() & 0o022 != 0 {
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
                .map_err(err(&root))?;
        }
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(SandboxError::State {
                path: root.join(id),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "sandbox ids are [A-Za-z0-9-]",
                ),
            });
        }
        let id = id.to_string();
        let path = root.join(&id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(err(&path))?;
        Ok(StateDir {
            path,
            id,
            keep,
            finished: false,
            alias: None,
        })
    }

    /// Makes the dir reachable as `<root>/<id>` too (a warm guest's dir, once claimed for
    /// sandbox `id`), so tools that look a sandbox up by id find it. Removed with the dir.
    pub fn alias(&mut self, id: &str) -> Result<(), SandboxError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(SandboxError::State {
                path: state_root().join(id),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "sandbox ids are [A-Za-z0-9-]",
                ),
            });
        }
        let link = self
            .path
            .parent()
            .map_or_else(state_root, Path::to_path_buf)
            .join(id);
        std::os::unix::fs::symlink(&self.id, &link).map_err(|source| SandboxError::State {
            path: link.clone(),
            source,
        })?;
        self.alias = Some(link);
        Ok(())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sandbox id (the directory's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Removes the directory unless kept.
    pub fn finish(mut self) -> Result<(), SandboxError> {
        self.finished = true;
        if let Some(link) = self.alias.take() {
            let _ = std::fs::remove_file(link);
        }
        if self.keep {
            return Ok(());
        }
        std::fs::remove_dir_all(&self.path).map_err(|source| SandboxError::State {
            path: self.path.clone(),
            source,
        })
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if let Some(link) = self.alias.take() {
            let _ = std::fs::remove_file(link);
        }
        if !self.finished && !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A fresh random sandbox id (12 hex digits).
pub fn new_sandbox_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 6];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_hex() {
        let a = new_sandbox_id().unwrap();
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_sandbox_id().unwrap());
    }
}
