//! Unified diffs of changed text files, for `airlock diff`. Called by `Overlay::unified_diff`.
//!
//! The old side is the host's current file (read through the host tree without following
//! symlinks), the new side the copy's. The snapshot's own contents are not kept (only their
//! hash), so for a file that also changed on the host the diff shows what `apply --force`
//! would do to it.

use std::io;
use std::path::Path;

use similar::TextDiff;

use super::copy::read_capped;
use super::tree::Tree;
use super::types::{Change, ChangeKind, EntryKind, OverlayError};

/// Largest file, in bytes, that gets a text diff.
pub const MAX_DIFF_BYTES: u64 = 1024 * 1024;
/// Lines of context around each change.
const CONTEXT: usize = 3;

/// See [`Overlay::unified_diff`](super::Overlay::unified_diff): `host_dir` is the original,
/// `upper_dir` the copy.
pub(super) fn unified_diff(
    host_dir: &Path,
    upper_dir: &Path,
    change: &Change,
) -> Result<Option<String>, OverlayError> {
    if change.entry != EntryKind::File {
        return Ok(None);
    }
    let old = match change.kind {
        ChangeKind::Added => Some(Vec::new()),
        ChangeKind::Modified | ChangeKind::Deleted => {
            let host = Tree::open(host_dir).map_err(|source| OverlayError::HostDir {
                path: host_dir.to_owned(),
                source,
            })?;
            read_side(&host, &change.path, true)?
        }
    };
    let new = match change.kind {
        ChangeKind::Deleted => Some(Vec::new()),
        ChangeKind::Added | ChangeKind::Modified => {
            let upper = Tree::open(upper_dir).map_err(|source| OverlayError::Io {
                op: "open",
                path: upper_dir.to_owned(),
                source,
            })?;
            read_side(&upper, &change.path, false)?
        }
    };
    let (Some(old), Some(new)) = (old, new) else {
        return Ok(None);
    };
    let (Some(old), Some(new)) = (as_text(&old), as_text(&new)) else {
        return Ok(None);
    };
    let a = match change.kind {
        ChangeKind::Added => "/dev/null".to_owned(),
        _ => format!("a/{}", change.path),
    };
    let b = match change.kind {
        ChangeKind::Deleted => "/dev/null".to_owned(),
        _ => format!("b/{}", change.path),
    };
    if old == new {
        return Ok(Some(String::new()));
    }
    let diff = TextDiff::from_lines(old, new);
    Ok(Some(
        diff.unified_diff()
            .context_radius(CONTEXT)
            .header(&a, &b)
            .to_string(),
    ))
}

/// The contents of `rel` in `tree` if at most [`MAX_DIFF_BYTES`]; `None` if larger. When
/// `missing_is_empty`, a path that is gone or no longer a regular file reads as empty (the
/// host side may have changed since the snapshot).
fn read_side(
    tree: &Tree,
    rel: &str,
    missing_is_empty: bool,
) -> Result<Option<Vec<u8>>, OverlayError> {
    let fail = |source: io::Error| OverlayError::Io {
        op: "read",
        path: tree.display(rel),
        source,
    };
    let file = match tree.open_file(rel) {
        Ok(f) => f,
        Err(e)
            if missing_is_empty
                && (matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)
                ) || e.kind() == io::ErrorKind::InvalidData) =>
        {
            return Ok(Some(Vec::new()));
        }
        Err(e) => return Err(fail(e)),
    };
    read_capped(&file, MAX_DIFF_BYTES).map_err(fail)
}

/// `bytes` as text: valid UTF-8 without NUL.
fn as_text(bytes: &[u8]) -> Option<&str> {
    if bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}
