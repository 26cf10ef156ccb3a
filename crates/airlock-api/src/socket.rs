//! Where the daemon's unix socket lives, and the checks on the fallback directory.
//!
//! The fallback `/tmp/airlock-<uid>` sits in a directory every user can write to: another
//! user could create it first and serve a socket of their own, which the CLI would then send
//! commands, environment and input to. So the daemon creates it owner-only in one `mkdir`,
//! and both the daemon and the CLI refuse it unless it is a real directory (not a symlink)
//! owned by this user with mode 0700. Once that holds nobody else can change it: `/tmp` is
//! sticky, so the directory cannot be renamed or replaced by another user either.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why a socket directory was refused.
#[derive(Debug, thiserror::Error)]
pub enum SocketDirError {
    /// Not a directory (a symlink, a file).
    #[error("socket directory {} is a {found}, expected a directory this user owns with mode 0700; remove it", path.display())]
    NotADirectory {
        /// The directory.
        path: PathBuf,
        /// What it is instead.
        found: &'static str,
    },
    /// Owned by another user.
    #[error("socket directory {} is owned by uid {found}, expected uid {expected} (this user) with mode 0700; another user may have created it, remove it", path.display())]
    WrongOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        found: u32,
        /// This process's effective uid.
        expected: u32,
    },
    /// Group or others have access.
    #[error("socket directory {} has mode {found:04o}, expected 0700 (no access for group or others); `chmod 700` it if you made it", path.display())]
    WrongMode {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        found: u32,
    },
    /// Creating or examining it failed.
    #[error("{what} socket directory {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// The socket the daemon listens on and the CLI connects to: `$AIRLOCK_SOCKET`, else
/// `/run/airlock/airlock.sock` for root, else `$XDG_RUNTIME_DIR/airlock.sock`, else
/// `airlock.sock` in [`fallback_dir`].
pub fn default_socket() -> PathBuf {
    if let Some(p) = std::env::var_os("AIRLOCK_SOCKET") {
        return PathBuf::from(p);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/airlock/airlock.sock");
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("airlock.sock");
    }
    fallback_dir().join("airlock.sock")
}

/// `/tmp/airlock-<uid>`: the socket directory when neither root nor `XDG_RUNTIME_DIR` gives
/// one.
pub fn fallback_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/airlock-{}", nix::unistd::getuid()))
}

/// Whether `socket` lives in [`fallback_dir`], whose directory must pass [`check_private_dir`]
/// (other socket directories are the user's own choice, or root's).
pub fn in_fallback_dir(socket: &Path) -> bool {
    socket.parent() == Some(fallback_dir().as_path())
}

/// For the daemon: creates `dir` with mode 0700 if it does not exist (one `mkdir`, so it is
/// never reachable with wider access), then checks it as [`check_private_dir`] does. Its
/// parent must exist.
pub fn ensure_private_dir(dir: &Path) -> Result<(), SocketDirError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(SocketDirError::Io {
                what: "creating",
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    check_private_dir(dir)
}

/// Checks, without following a symlink, that `dir` is a directory owned by the effective uid
/// with no access for group or others (mode 0700; the umask may only have taken owner bits
/// away, which the check catches too).
pub fn check_private_dir(dir: &Path) -> Result<(), SocketDirError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|source| SocketDirError::Io {
        what: "examining",
        path: dir.to_path_buf(),
        source,
    })?;
    let kind = meta.file_type();
    if !kind.is_dir() {
        return Err(SocketDirError::NotADirectory {
            path: dir.to_path_buf(),
            found: if kind.is_symlink() {
                "symbolic link"
            } else {
                "file that is not a directory"
            },
        });
    }
    let expected = nix::unistd::geteuid().as_raw();
    if meta.uid() != expected {
        return Err(SocketDirError::WrongOwner {
            path: dir.to_path_buf(),
            found: meta.uid(),
            expected,
        });
    }
    // Set-id and sticky bits give no access; a set-gid bit is inherited from some parents.
    let mode = meta.mode() & 0o777;
    if mode != 0o700 {
        return Err(SocketDirError::WrongMode {
            path: dir.to_path_buf(),
            found: mode,
        });
    }
    Ok(())
}

/// For a client: refuses to talk through `socket` when it is in [`fallback_dir`] and that
/// directory exists but fails [`check_private_dir`]. A missing directory is fine (nothing
/// listens there; connecting says so).
pub fn check_before_connect(socket: &Path) -> Result<(), SocketDirError> {
    let Some(dir) = socket.parent().filter(|_| in_fallback_dir(socket)) else {
        return Ok(());
    };
    match check_private_dir(dir) {
        Err(SocketDirError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_missing_directory_is_created_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("airlock-1000");
        ensure_private_dir(&dir).unwrap();
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o7777, 0o700);
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
        // Existing and right: accepted again.
        ensure_private_dir(&dir).unwrap();
        check_private_dir(&dir).unwrap();
    }

    #[test]
    fn a_directory_with_group_or_other_access_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        for bad in [0o755, 0o770, 0o701, 0o707, 0o500] {
            mode(&dir, bad);
            let e = ensure_private_dir(&dir).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "socket directory {} has mode {bad:04o}, expected 0700 (no access for group or others); `chmod 700` it if you made it",
                    dir.display()
                )
            );
        }
        // Mode is never changed behind the user's back.
        assert_eq!(
            std::fs::symlink_metadata(&dir).unwrap().mode() & 0o777,
            0o500
        );
    }

    #[test]
    fn a_symlink_is_refused_even_to_a_good_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("real");
        std::fs::create_dir(&target).unwrap();
        mode(&target, 0o700);
        check_private_dir(&target).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = ensure_private_dir(&link).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "socket directory {} is a symbolic link, expected a directory this user owns with mode 0700; remove it",
                link.display()
            )
        );
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            check_private_dir(&file),
            Err(SocketDirError::NotADirectory {
                found: "file that is not a directory",
                ..
            })
        ));
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        if !airlock_testkit::require_root("chown to another user") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        mode(&dir, 0o700);
        let nobody = 65534;
        nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(nobody)), None).unwrap();
        let e = ensure_private_dir(&dir).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "socket directory {} is owned by uid {nobody}, expected uid 0 (this user) with mode 0700; another user may have created it, remove it",
                dir.display()
            )
        );
    }

    #[test]
    fn clients_check_only_the_fallback_directory_and_only_when_it_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        mode(&open, 0o777);
        // Not the fallback directory: the user's own choice.
        check_before_connect(&open.join("airlock.sock")).unwrap();
        assert!(!in_fallback_dir(&open.join("airlock.sock")));
        assert!(in_fallback_dir(&fallback_dir().join("airlock.sock")));
        assert!(!in_fallback_dir(&fallback_dir().join("x/airlock.sock")));
        assert!(matches!(
            check_private_dir(&tmp.path().join("missing")),
            Err(SocketDirError::Io {
                what: "examining",
                ..
            })
        ));
    }
}
