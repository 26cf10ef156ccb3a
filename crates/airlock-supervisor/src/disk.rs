//! The sandbox disk: the guest's writable layer, a sparse raw file in the state dir formatted as
//! ext4 on the host. Its size is the policy's `sandbox.disk`, so a guest that fills it gets ENOSPC
//! and the host loses at most that much space. The host never mounts it.

use super::SandboxError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Smallest disk that holds an ext4 with room to work (the policy's minimum is checked here,
/// not in the guest, so the error names the setting).
pub const MIN_DISK_BYTES: u64 = 16 * 1024 * 1024;

/// Creates `path` as a sparse file of `bytes` and formats it; returns the path.
pub fn create(path: &Path, bytes: u64) -> Result<PathBuf, SandboxError> {
    let fail = |message: String| SandboxError::Disk {
        path: path.to_path_buf(),
        message,
    };
    if bytes < MIN_DISK_BYTES {
        return Err(fail(format!(
            "sandbox.disk is {bytes} bytes; the writable layer needs at least {} MiB",
            MIN_DISK_BYTES / (1024 * 1024)
        )));
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| fail(format!("creating: {e}")))?;
    file.set_len(bytes)
        .map_err(|e| fail(format!("sizing to {bytes} bytes: {e}")))?;
    drop(file);
    // No journal: the disk lives and dies with one sandbox. Lazy inode tables keep formatting at a
    // few milliseconds and the file sparse; the guest mounts with noinit_itable.
    let mkfs = std::env::var_os("AIRLOCK_MKFS").unwrap_or_else(|| "mkfs.ext4".into());
    let out = Command::new(&mkfs)
        // One inode per 8 KiB (mkfs's default is 16 KiB): agents fill guest disks with many
        // small files (node_modules, caches); a 2 GiB disk then holds 262,144 of them.
        .args([
            "-q",
            "-F",
            "-m",
            "0",
            "-i",
            "8192",
            "-O",
            "^has_journal",
            "-E",
        ])
        .arg("lazy_itable_init=1,root_owner=0:0")
        .arg(path)
        .output()
        .map_err(|e| {
            fail(format!(
                "running {}: {e}; install it with: apt-get install e2fsprogs",
                mkfs.to_string_lossy()
            ))
        })?;
    if !out.status.success() {
        return Err(fail(format!(
            "mkfs.ext4 exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_and_formatted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        create(&path, 1024 * 1024 * 1024).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 1024 * 1024 * 1024);
        // Allocated blocks stay a small fraction of the size.
        assert!(
            meta.blocks() * 512 < 64 * 1024 * 1024,
            "{} blocks",
            meta.blocks()
        );
        // ext4 superblock magic 0xEF53 at offset 1024 + 56.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1024 + 56..1024 + 58], &[0x53, 0xEF]);
    }

    #[test]
    fn too_small_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let err = create(&dir.path().join("d"), 1024).unwrap_err().to_string();
        assert!(err.contains("sandbox.disk"), "{err}");
        assert!(!dir.path().join("d").exists());
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        std::fs::write(&path, b"keep").unwrap();
        assert!(create(&path, MIN_DISK_BYTES).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
    }
}
