//! The layout every built artefact shares, for images (`images/<name>/`) and agent kits
//! (`kits/<name>/`): immutable build dirs named by build id, a `current` file naming one of
//! them, an `in-use.lock` in each build that sandboxes hold shared, and garbage collection that
//! removes a non-current build only when it can take that lock exclusively.

use crate::debian::manifest::Artefact;
use crate::{EntryLock, ImageError, io_err, sha256_file, write_atomic};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::Path;

/// The in-use lock file of a build.
pub const IN_USE: &str = "in-use.lock";

/// Whether `id` looks like a build id (so a tampered `current` cannot name `..`).
pub(crate) fn is_build_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `20261127T051500Z-1a2b3c4d` from an RFC 3339 time and the artefact's hash.
pub(crate) fn build_id(rfc3339: &str, sha256: &str) -> String {
    let compact: String = rfc3339
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("{compact}Z-{}", sha256.get(..8).unwrap_or(sha256))
}

/// The build `dir/current` names, if any.
pub(crate) fn read_current(dir: &Path) -> Result<Option<String>, ImageError> {
    let path = dir.join("current");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ImageError::Io {
                context: format!("reading {}", path.display()),
                source: e,
            });
        }
    };
    let id = text.trim();
    if !is_build_id(id) {
        return Err(ImageError::BadInput {
            path,
            message: format!("{id:?} is not a build id"),
        });
    }
    Ok(Some(id.to_string()))
}

/// Makes `build_id` the current build in `dir`.
pub(crate) fn set_current(dir: &Path, build_id: &str) -> Result<(), ImageError> {
    write_atomic(&dir.join("current"), format!("{build_id}\n").as_bytes())
}

/// Locks `dir/in-use.lock`; `Ok(None)` when the dir is gone or (non-blocking) the lock is held.
pub(crate) fn lock_in_use(dir: &Path, how: FlockArg) -> Result<Option<Flock<File>>, ImageError> {
    let path = dir.join(IN_USE);
    let opened = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path);
    // A user who may not write to a shared cache can still lock the file the build created.
    let opened = match opened {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(&path),
        other => other,
    };
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ImageError::Io {
                context: format!("opening {}", path.display()),
                source: e,
            });
        }
    };
    match Flock::lock(file, how) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(ImageError::Io {
            context: format!("locking {}", path.display()),
            source: e.into(),
        }),
    }
}

/// Names of the subdirectories of `dir`, sorted, without hidden ones; none if `dir` is missing.
pub(crate) fn sorted_dirs(dir: &Path) -> Result<Vec<String>, ImageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ImageError::Io {
                context: format!("reading {}", dir.display()),
                source: e,
            });
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// What garbage collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Builds removed.
    pub removed: Vec<String>,
    /// Old builds kept because a sandbox uses them.
    pub in_use: Vec<String>,
}

/// Removes every build in `dir` except the current one and those a sandbox holds open.
pub(crate) fn gc(dir: &Path) -> Result<GcReport, ImageError> {
    let _lock = EntryLock::acquire(&dir.join("build.lock"))?;
    let current = read_current(dir)?;
    let mut report = GcReport::default();
    for build_id in sorted_dirs(dir)? {
        if !is_build_id(&build_id) || current.as_deref() == Some(build_id.as_str()) {
            continue;
        }
        let bdir = dir.join(&build_id);
        let Some(lock) = lock_in_use(&bdir, FlockArg::LockExclusiveNonblock)? else {
            report.in_use.push(build_id);
            continue;
        };
        // Rename while holding the lock: an `open` waiting for it then finds the build gone.
        let trash = dir.join(format!(".trash-{build_id}"));
        std::fs::rename(&bdir, &trash)
            .map_err(io_err(format!("moving {} aside", bdir.display())))?;
        drop(lock);
        std::fs::remove_dir_all(&trash).map_err(io_err(format!("removing {}", trash.display())))?;
        report.removed.push(build_id);
    }
    Ok(report)
}

/// The artefact record for `path`, hashed now.
pub(crate) fn record(path: &Path, name: &str) -> Result<Artefact, ImageError> {
    let size = std::fs::metadata(path)
        .map_err(io_err(format!("reading {}", path.display())))?
        .len();
    Ok(Artefact {
        path: name.to_string(),
        size,
        sha256: sha256_file(path)?,
    })
}

/// Checks `path` against its record: `Err((expected, actual))` when size or SHA-256 differ.
pub(crate) fn verify(
    path: &Path,
    record: &Artefact,
) -> Result<Result<(), (String, String)>, ImageError> {
    let size = std::fs::metadata(path)
        .map_err(io_err(format!("reading {}", path.display())))?
        .len();
    if size != record.size {
        return Ok(Err((
            format!("{} ({} bytes)", record.sha256, record.size),
            format!("a file of {size} bytes"),
        )));
    }
    let actual = sha256_file(path)?;
    if actual != record.sha256 {
        return Ok(Err((record.sha256.clone(), actual)));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_ids_are_time_then_hash() {
        assert_eq!(
            build_id("2026-11-27T05:15:00.123Z", "1a2b3c4d5e6f"),
            "20261127T051500Z-1a2b3c4d"
        );
        assert!(is_build_id("20261127T051500Z-1a2b3c4d"));
        assert!(!is_build_id("../x"));
        assert!(!is_build_id(""));
    }

    #[test]
    fn verify_reports_size_then_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let rec = record(&p, "f").unwrap();
        assert!(verify(&p, &rec).unwrap().is_ok());
        std::fs::write(&p, b"abd").unwrap();
        let (_, actual) = verify(&p, &rec).unwrap().unwrap_err();
        assert_eq!(actual, sha256_file(&p).unwrap());
        std::fs::write(&p, b"abcd").unwrap();
        let (_, actual) = verify(&p, &rec).unwrap().unwrap_err();
        assert_eq!(actual, "a file of 4 bytes");
    }
}
