//! What the host needs to build a Debian image: the tools the build runs (found in PATH or
//! sbin, since root's tools live there) and the archive keyring debootstrap checks the base
//! system with. `airlock doctor` and `image build` ask [`missing_build_deps`] before starting;
//! the build steps call [`crate::tool_path`] and pass [`KEYRING`] to debootstrap.

use std::path::{Path, PathBuf};

/// Host tools the build runs, with the Debian package providing each.
const TOOLS: [(&str, &str); 3] = [
    ("debootstrap", "debootstrap"),
    ("mksquashfs", "squashfs-tools"),
    ("chroot", "coreutils"),
];
/// The archive key debootstrap checks the base system with.
pub(super) const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// What this host lacks to build a Debian image, as (what, package) pairs.
pub fn missing_build_deps() -> Vec<(String, String)> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut missing: Vec<(String, String)> = TOOLS
        .iter()
        .filter(|(tool, _)| {
            // Root's tools live in sbin, which a user's PATH may lack.
            !std::env::split_paths(&path)
                .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
                .any(|d| d.join(tool).is_file())
        })
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    if !Path::new(KEYRING).is_file() {
        missing.push((KEYRING.into(), "debian-archive-keyring".into()));
    }
    missing
}
