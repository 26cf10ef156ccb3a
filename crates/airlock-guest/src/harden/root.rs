//! A container's own root: the command gets a mount namespace of its own in which the guest's
//! `/proc`, `/dev` and `/sys` are bound into the container's root directory, then `chroot`s
//! into it. Used by the containerd shim, whose containers bring their root filesystem as a
//! share. The VM stays the isolation boundary; this only gives the process the view of the
//! filesystem its image expects.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Guest directories bound into every container root, at the same path.
const BOUND: [&str; 3] = ["proc", "dev", "sys"];

/// Everything the child needs, made before fork (nothing is allocated after it).
#[derive(Debug)]
pub struct PreparedRoot {
    root: CString,
    binds: Vec<(CString, CString)>,
    cwd: CString,
}

/// Checks `root` (an absolute guest directory without `..`) and `cwd` (a path inside it) and
/// creates the bind targets the root lacks.
pub fn prepare(root: &str, cwd: &str) -> Result<PreparedRoot, String> {
    let dir = clean_absolute(root)
        .ok_or_else(|| format!("container root {root:?} must be an absolute path without `..`"))?;
    if !dir.is_dir() {
        return Err(format!(
            "container root {root:?} is not a directory in the guest"
        ));
    }
    let inner = clean_absolute(cwd).ok_or_else(|| {
        format!("working directory {cwd:?} must be an absolute path without `..`")
    })?;
    let mut binds = Vec::new();
    for name in BOUND {
        let target = dir.join(name);
        // symlink_metadata: a link planted in the image must not redirect the bind.
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{} in the container root is not a directory", name)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(&target)
                .map_err(|e| format!("creating /{name} in the container root: {e}"))?,
            Err(e) => return Err(format!("/{name} in the container root: {e}")),
        }
        binds.push((cstring(Path::new("/").join(name))?, cstring(target)?));
    }
    Ok(PreparedRoot {
        root: cstring(dir)?,
        binds,
        cwd: cstring(inner)?,
    })
}

/// The guest path of `path` inside the container root, for checks made before fork.
pub fn inside(root: &str, path: &str) -> Option<PathBuf> {
    let rel = clean_absolute(path)?;
    let rel = rel.strip_prefix("/").ok()?;
    Some(clean_absolute(root)?.join(rel))
}

fn clean_absolute(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let ok = p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    ok.then(|| p.to_path_buf())
}

fn cstring(path: PathBuf) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", path.display()))
}

/// In the child, between fork and exec: a private mount namespace, the binds, `chroot`, `chdir`.
pub fn enter_in_child(prepared: &PreparedRoot) -> io::Result<()> {
    // SAFETY: unshare takes a flag word; async-signal-safe.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: mount reads NUL-terminated strings that live in `prepared` (or are literals) for
    // the whole call; a null source and type are allowed for a propagation change.
    // JUSTIFICATION: nix's mount allocates, which is not allowed after fork.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    for (source, target) in &prepared.binds {
        // SAFETY: as above; both strings are owned by `prepared`.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: chroot reads a NUL-terminated string owned by `prepared`.
    if unsafe { libc::chroot(prepared.root.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: chdir reads a NUL-terminated string owned by `prepared`.
    if unsafe { libc::chdir(prepared.cwd.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_and_working_directories_must_be_clean_absolute_paths() {
        assert!(prepare("relative", "/").unwrap_err().contains("absolute"));
        assert!(prepare("/run/../etc", "/").unwrap_err().contains("`..`"));
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        assert!(
            prepare(root, "work")
                .unwrap_err()
                .contains("working directory")
        );
        assert!(
            prepare(root, "/a/../..")
                .unwrap_err()
                .contains("working directory")
        );
        assert!(
            prepare(&format!("{root}/missing"), "/")
                .unwrap_err()
                .contains("not a directory")
        );
    }

    #[test]
    fn missing_bind_targets_are_made_and_planted_links_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let p = prepare(root, "/").unwrap();
        assert_eq!(p.binds.len(), 3);
        for name in BOUND {
            assert!(dir.path().join(name).is_dir());
        }
        let other = tempfile::tempdir().unwrap();
        std::fs::remove_dir(dir.path().join("sys")).unwrap();
        std::os::unix::fs::symlink(other.path(), dir.path().join("sys")).unwrap();
        assert!(
            prepare(root, "/")
                .unwrap_err()
                .contains("sys in the container root is not a directory")
        );
    }

    #[test]
    fn paths_inside_the_root_stay_inside() {
        assert_eq!(
            inside("/c/r", "/etc/passwd"),
            Some(PathBuf::from("/c/r/etc/passwd"))
        );
        assert_eq!(inside("/c/r", "/"), Some(PathBuf::from("/c/r")));
        assert_eq!(inside("/c/r", "/../x"), None);
        assert_eq!(inside("/c/r", "x"), None);
    }
}
