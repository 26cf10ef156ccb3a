//! Directory listings without the names the gateway refuses, so a directory that holds one can
//! still be listed. Used by `backend.rs` for `READDIR` and `READDIRPLUS`.

use std::ffi::CStr;

use virtiofsd::filesystem::{DirEntry, DirectoryIterator};

use crate::paths::validate_name;

/// Hides directory entries whose names the gateway would refuse (not UTF-8, too long), so
/// that listing a directory that holds one still works and `READDIRPLUS` never looks one up.
pub struct FilteredDir<D> {
    inner: D,
    name: Vec<u8>,
    ino: libc::ino64_t,
    offset: u64,
    type_: u32,
}

impl<D> FilteredDir<D> {
    /// Filters the entries of `inner`.
    pub fn new(inner: D) -> FilteredDir<D> {
        FilteredDir {
            inner,
            name: Vec::new(),
            ino: 0,
            offset: 0,
            type_: 0,
        }
    }
}

impl<D: DirectoryIterator> DirectoryIterator for FilteredDir<D> {
    fn next(&mut self) -> Option<DirEntry<'_>> {
        loop {
            let e = self.inner.next()?;
            let bytes = e.name.to_bytes();
            if bytes == b"." || bytes == b".." || validate_name(bytes).is_ok() {
                self.name.clear();
                self.name.extend_from_slice(e.name.to_bytes_with_nul());
                self.ino = e.ino;
                self.offset = e.offset;
                self.type_ = e.type_;
                break;
            }
        }
        let name = CStr::from_bytes_with_nul(&self.name).ok()?;
        Some(DirEntry {
            ino: self.ino,
            offset: self.offset,
            type_: self.type_,
            name,
        })
    }
}
