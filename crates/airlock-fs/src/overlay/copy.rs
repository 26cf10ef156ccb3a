//! Moving file contents for the overlay: copying (a reflink where the filesystem has them,
//! else `copy_file_range`, else read/write), hashing, and reading a bounded amount.
//!
//! Used by `snapshot` (host → copy), `apply` (copy → host), `changes` (hashing the copy) and
//! `diff` (reading both sides).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

use crate::sys;

/// Read buffer for hashing.
const CHUNK: usize = 256 * 1024;

/// Copies all of `src` into the empty file `dst`, both at offset 0. Tries `FICLONE` first
/// (the copy shares the blocks: instant, no extra space), then `std::io::copy`, which on
/// Linux uses `copy_file_range` (in-kernel, and itself a reflink on some filesystems) and
/// falls back to `sendfile` and plain reads and writes. Returns the bytes in `dst`.
pub(crate) fn copy_data(src: &File, dst: &File) -> io::Result<u64> {
    if sys::ficlone(dst.as_fd(), src.as_fd()).is_ok() {
        return dst.metadata().map(|m| m.len());
    }
    let mut reader = src;
    let mut writer = dst;
    io::copy(&mut reader, &mut writer)
}

/// SHA-256 of `f`'s contents from offset 0, as lower-case hex, and their length. Reads with
/// `pread`, so the file offset is left alone.
pub(crate) fn hash_file(f: &File) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    loop {
        let n = match f.read_at(&mut buf, off) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(buf.get(..n).unwrap_or_default());
        off = off.saturating_add(n as u64);
    }
    Ok((hex::encode(hasher.finalize()), off))
}

/// All of `f`'s contents if they are at most `cap` bytes, else `None`.
pub(crate) fn read_capped(f: &File, cap: u64) -> io::Result<Option<Vec<u8>>> {
    if f.metadata()?.len() > cap {
        return Ok(None);
    }
    let mut buf = Vec::new();
    let mut reader = f.take(cap.saturating_add(1));
    reader.read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Ok(None);
    }
    Ok(Some(buf))
}
