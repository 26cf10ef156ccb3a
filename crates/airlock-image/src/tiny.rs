//! The `tiny` image: an initramfs with `airlock-guest` as `/init` plus busybox-static. It builds in
//! well under a second and is what the tests boot.

use super::cpio::CpioWriter;
use super::{Cache, EntryLock, ImageError, hash_parts, io_err, write_atomic};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bump when the layout below changes, so cached images are rebuilt under a new key.
const RECIPE: &str = "airlock-tiny-v2";
/// The unprivileged account the workload runs as by default (policy `process.user`).
const AGENT_UID: u32 = 1000;

/// The static `airlock-guest` binary, built by this crate's build script.
pub fn guest_agent() -> &'static [u8] {
    include_bytes!(env!("AIRLOCK_GUEST_BIN"))
}

/// A resolved tiny image.
#[derive(Debug, Clone)]
pub struct TinyImage {
    /// The initramfs (uncompressed newc cpio).
    pub initrd: PathBuf,
    /// Its cache key.
    pub key: String,
}

/// Where busybox-static is looked for, first match wins.
const BUSYBOX_PATHS: [&str; 2] = ["/usr/bin/busybox", "/bin/busybox"];

/// Finds a statically linked busybox (`$AIRLOCK_BUSYBOX` overrides).
pub fn find_busybox() -> Result<PathBuf, ImageError> {
    let candidates: Vec<PathBuf> = match std::env::var_os("AIRLOCK_BUSYBOX") {
        Some(p) => vec![PathBuf::from(p)],
        None => BUSYBOX_PATHS.iter().map(PathBuf::from).collect(),
    };
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            if is_static_elf(&bytes) {
                return Ok(path);
            }
            return Err(ImageError::BadInput {
                path,
                message: "busybox is dynamically linked; the tiny image needs busybox-static \
                          (apt-get install busybox-static)"
                    .into(),
            });
        }
    }
    Err(ImageError::MissingDeps {
        what: "the tiny image",
        missing: "a static busybox".into(),
        packages: "busybox-static".into(),
    })
}

/// The tiny image's cache state without building it: `Some(path)` when present.
pub fn cached(cache: &Cache) -> Result<Option<PathBuf>, ImageError> {
    let busybox = find_busybox()?;
    let bb = std::fs::read(&busybox).map_err(io_err(format!("reading {}", busybox.display())))?;
    let path = cache
        .root()
        .join("images")
        .join(format!("tiny-{}.cpio", key(&bb)));
    Ok(path.exists().then_some(path))
}

fn key(busybox: &[u8]) -> String {
    let full = hash_parts(&[RECIPE.as_bytes(), guest_agent(), busybox]);
    full.get(..16).unwrap_or(&full).to_string()
}

/// Returns the tiny image, building it on first use.
pub fn ensure(cache: &Cache) -> Result<TinyImage, ImageError> {
    let busybox = find_busybox()?;
    let bb = std::fs::read(&busybox).map_err(io_err(format!("reading {}", busybox.display())))?;
    let key = key(&bb);
    let dir = cache.dir("images")?;
    let initrd = dir.join(format!("tiny-{key}.cpio"));
    // Found byte-for-byte equal to this build before, and not written since: boot it.
    if super::checked::recall(&initrd).is_some() {
        return Ok(TinyImage { initrd, key });
    }
    // The image is a pure function of its inputs and takes milliseconds to make: make it in
    // memory and boot the cached file only if it is byte-for-byte that.
    let applets = busybox_applets(&busybox)?;
    let bytes = build(guest_agent(), &bb, &applets)
        .map_err(io_err(format!("building {}", initrd.display())))?;
    let verify = || -> Result<TinyImage, ImageError> {
        let expected = hex::encode(Sha256::digest(&bytes));
        let started = std::time::SystemTime::now();
        let before = super::checked::identity(&initrd);
        let actual = super::sha256_file(&initrd)?;
        if actual == expected
            && let Some(before) = before
        {
            super::checked::remember(&initrd, &actual, before, started);
        }
        if actual != expected {
            return Err(ImageError::Tampered(Box::new(super::Tampered {
                what: "image tiny".into(),
                path: initrd.clone(),
                expected,
                actual,
                remove: initrd.clone(),
            })));
        }
        Ok(TinyImage {
            initrd: initrd.clone(),
            key: key.clone(),
        })
    };
    if initrd.exists() {
        return verify();
    }
    let _lock = EntryLock::acquire(&dir.join(format!("tiny-{key}.lock")))?;
    if !initrd.exists() {
        write_atomic(&initrd, &bytes)?;
    }
    verify()
}

/// `busybox --list-full`: applet paths relative to `/`, e.g. `bin/sh`.
fn busybox_applets(busybox: &Path) -> Result<Vec<String>, ImageError> {
    let out = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(io_err(format!("running {} --list-full", busybox.display())))?;
    if !out.status.success() {
        return Err(ImageError::BadInput {
            path: busybox.to_path_buf(),
            message: format!("--list-full exited with {}", out.status),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("..") && !l.starts_with('/'))
        .map(str::to_string)
        .collect())
}

const DIRS: [(&str, u32); 15] = [
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("etc", 0o755),
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("run", 0o755),
    ("tmp", 0o1777),
    ("root", 0o700),
    ("home", 0o755),
    ("home/agent", 0o755),
    ("workspace", 0o755),
];

fn build(agent: &[u8], busybox: &[u8], applets: &[String]) -> std::io::Result<Vec<u8>> {
    let mut w = CpioWriter::new(Vec::with_capacity(agent.len() + busybox.len() + 64 * 1024));
    for (dir, perm) in DIRS {
        // The agent owns its home and the workspace mount point; everything else is root's.
        let owner = if matches!(dir, "home/agent" | "workspace") {
            (AGENT_UID, AGENT_UID)
        } else {
            (0, 0)
        };
        w.dir_owned(dir, perm, owner)?;
    }
    w.char_dev("dev/console", 0o600, 5, 1)?;
    w.file("init", 0o755, agent)?;
    w.file("bin/busybox", 0o755, busybox)?;
    for applet in applets {
        if applet != "bin/busybox"
            && DIRS
                .iter()
                .any(|(d, _)| applet.rsplit_once('/').is_some_and(|(p, _)| p == *d))
        {
            w.symlink(applet, "/bin/busybox")?;
        }
    }
    w.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/home/agent:/bin/sh\n",
    )?;
    w.file("etc/group", 0o644, b"root:x:0:\ntty:x:5:\nagent:x:1000:\n")?;
    w.file("etc/hosts", 0o644, b"127.0.0.1 localhost\n::1 localhost\n")?;
    w.file("etc/hostname", 0o644, b"airlock\n")?;
    w.file(
        "etc/os-release",
        0o644,
        b"NAME=\"airlock tiny\"\nID=airlock-tiny\n",
    )?;
    w.finish()
}

/// True for an ELF file without a `PT_INTERP` program header (static or static-pie).
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    // 64-bit little-endian ELF only (the guest is x86_64).
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let off = phoff.saturating_add(i.saturating_mul(usize::from(phentsize)));
        u32_at(off).is_some_and(|t| t != PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_is_static() {
        assert!(
            is_static_elf(guest_agent()),
            "airlock-guest must be statically linked"
        );
    }

    #[test]
    fn dynamic_binaries_are_detected() {
        let sh = std::fs::read("/bin/sh").unwrap();
        assert!(!is_static_elf(&sh));
        assert!(!is_static_elf(b"\x7fELF\x02\x01"));
        assert!(!is_static_elf(b"#!/bin/sh"));
    }

    #[test]
    fn tiny_image_has_init_and_applets() {
        let img = build(
            b"AGENT",
            b"BUSYBOX",
            &["bin/sh".into(), "usr/bin/env".into(), "nope/x".into()],
        )
        .unwrap();
        let text = String::from_utf8_lossy(&img);
        assert!(text.contains("init\0"));
        assert!(text.contains("bin/sh\0"));
        assert!(text.contains("usr/bin/env\0"));
        assert!(
            !text.contains("nope/x"),
            "applets outside known dirs are skipped"
        );
        assert!(text.contains("dev/console\0"));
    }
}
