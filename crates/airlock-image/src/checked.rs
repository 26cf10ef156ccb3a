//! Remembering that a cached file was checked, so an unchanged file is not hashed again.
//!
//! A run checks the kernel (about 30 MB) and the tiny image against their sha256 before booting
//! them, which cost tens of milliseconds of every cold start. After a full check passes, a
//! stamp beside the file (`NAME.checked`) records the file's identity (device, inode, size,
//! modification and change times in ns) and its sha256. A later check whose `stat` matches the
//! stamp exactly takes the stamp's word.
//!
//! Why this is as strong as hashing again: any write to the file, or any change of its times,
//! sets its change time (ctime) to the current time, which only root can set back (by moving
//! the clock). The stamp is as trusted as the manifest that holds the expected sha256; both are
//! in the same cache directory. A file whose ctime is within [`SETTLE`] of the check is never
//! stamped: a write in the same timestamp tick as the one before could otherwise go unseen
//! (git calls this "racy").

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How old a file's last change must be before its check is remembered.
const SETTLE: Duration = Duration::from_secs(2);
/// Longest stamp read (a stamp is about 200 bytes).
const MAX_STAMP: u64 = 4096;

/// What `stat` says about a file: any write changes at least one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stamp {
    identity: Identity,
    sha256: String,
}

/// The identity to pass to [`remember`], taken before reading the file.
pub(crate) fn identity(path: &Path) -> Option<Identity> {
    let m = std::fs::metadata(path).ok()?;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Some(Identity {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
    })
}

fn stamp_path(path: &Path) -> Option<PathBuf> {
    let mut name = path.file_name()?.to_os_string();
    name.push(".checked");
    Some(path.with_file_name(name))
}

/// The sha256 recorded for `path` when it was last checked, if it has not changed since.
pub(crate) fn recall(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(stamp_path(path)?).ok()?;
    let mut text = String::new();
    file.take(MAX_STAMP).read_to_string(&mut text).ok()?;
    let stamp: Stamp = serde_json::from_str(&text).ok()?;
    (identity(path)? == stamp.identity).then_some(stamp.sha256)
}

/// Remembers that `path` had `sha256` when a check that started at `started` read it, unless
/// it changed during the check or too recently before it. Best effort: a cache that cannot be
/// written is checked in full every time.
pub(crate) fn remember(path: &Path, sha256: &str, before: Identity, started: SystemTime) {
    let Some(now) = identity(path) else { return };
    let started_ns = started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let settled = now.ctime_ns.saturating_add(SETTLE.as_nanos() as i128) <= started_ns;
    if now != before || !settled {
        return;
    }
    let stamp = Stamp {
        identity: now,
        sha256: sha256.to_owned(),
    };
    if let (Some(dest), Ok(json)) = (stamp_path(path), serde_json::to_vec(&stamp)) {
        let _ = crate::write_atomic(&dest, &json);
    }
}

/// Hex SHA-256 of `path`, hashed in full unless a stamp shows it unchanged since the last full
/// hash. `expected` is only used to decide whether to remember: a mismatch is never stamped.
pub(crate) fn sha256(path: &Path, expected: &str) -> Result<String, crate::ImageError> {
    sha256_from(path, expected, SystemTime::now())
}

/// [`sha256`] for a check that starts at `started`.
fn sha256_from(
    path: &Path,
    expected: &str,
    started: SystemTime,
) -> Result<String, crate::ImageError> {
    if let Some(sha) = recall(path) {
        return Ok(sha);
    }
    let before = identity(path);
    let sha = crate::sha256_file(path)?;
    if let Some(before) = before
        && sha == expected
    {
        remember(path, &sha, before, started);
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    fn old_file(dir: &Path, bytes: &[u8]) -> (PathBuf, SystemTime) {
        let p = dir.join("vmlinux");
        std::fs::write(&p, bytes).unwrap();
        // A check that starts well after the file's last change may be remembered.
        (p, SystemTime::now() + SETTLE + Duration::from_secs(1))
    }

    #[test]
    fn an_unchanged_file_is_recalled_and_any_write_forgets_it() {
        let dir = tempfile::tempdir().unwrap();
        let (p, later) = old_file(dir.path(), b"kernel bytes");
        let sha = crate::sha256_file(&p).unwrap();
        remember(&p, &sha, identity(&p).unwrap(), later);
        assert_eq!(recall(&p), Some(sha.clone()));

        // Same length, one byte flipped in place: the change time moves, the stamp is void.
        std::thread::sleep(Duration::from_millis(20));
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.seek(SeekFrom::Start(3)).unwrap();
        f.write_all(b"X").unwrap();
        drop(f);
        assert_eq!(recall(&p), None);
    }

    #[test]
    fn setting_the_times_back_does_not_revive_a_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let (p, later) = old_file(dir.path(), b"kernel bytes");
        let before = identity(&p).unwrap();
        let sha = crate::sha256_file(&p).unwrap();
        remember(&p, &sha, before, later);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&p, b"kernel bytez").unwrap();
        // Restoring the modification time still changes ctime.
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        let mtime = UNIX_EPOCH + Duration::from_nanos(before.mtime_ns as u64);
        f.set_modified(mtime).unwrap();
        assert_eq!(identity(&p).unwrap().mtime_ns, before.mtime_ns);
        assert_eq!(recall(&p), None);
    }

    #[test]
    fn a_recent_or_moving_file_is_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vmlinux");
        std::fs::write(&p, b"fresh").unwrap();
        let sha = crate::sha256_file(&p).unwrap();
        // Changed just now: too recent.
        remember(&p, &sha, identity(&p).unwrap(), SystemTime::now());
        assert_eq!(recall(&p), None);
        // Changed during the check.
        let before = identity(&p).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&p, b"fresh").unwrap();
        remember(
            &p,
            &sha,
            before,
            SystemTime::now() + Duration::from_secs(60),
        );
        assert_eq!(recall(&p), None);
    }

    #[test]
    fn a_mismatch_is_never_remembered_and_a_bad_stamp_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("image.cpio");
        std::fs::write(&p, b"image").unwrap();
        let stamp = stamp_path(&p).unwrap();
        std::fs::write(&stamp, b"{not json").unwrap();
        assert_eq!(recall(&p), None);
        std::fs::write(&stamp, vec![b' '; 10_000]).unwrap();
        assert_eq!(recall(&p), None);
        // A settled file whose hash is not the expected one: hashed in full, never stamped.
        let later = SystemTime::now() + SETTLE + Duration::from_secs(1);
        let sha = sha256_from(&p, "0000", later).unwrap();
        assert_eq!(sha, crate::sha256_file(&p).unwrap());
        assert_eq!(recall(&p), None);
        // The same file with the right expectation is stamped, and the next check recalls it.
        assert_eq!(sha256_from(&p, &sha, later).unwrap(), sha);
        assert_eq!(recall(&p), Some(sha));
    }
}
