//! Shaping the root tree around the package steps: before them, apt's sources and a
//! `policy-rc.d` that keeps package scripts from starting daemons; after them, the agent's
//! directories, host identity files, an empty `resolv.conf` and the removal of apt's caches,
//! logs and build-only files. Called by [`Builder::run`].

use std::path::Path;

use super::Builder;
use crate::debian::mirror::Archive;
use crate::{ImageError, io_err};

/// The workload's account (policy `process.user = "agent"`).
const AGENT_UID: u32 = 1000;

impl Builder<'_> {
    /// sources.list with the three archives; no services started during the build.
    pub(super) fn configure_apt(&mut self, archives: &[Archive]) -> Result<(), ImageError> {
        let mut sources = String::from("# Written by airlock image build.\n");
        for a in archives {
            sources.push_str(&a.sources_line());
            sources.push('\n');
        }
        self.write_file("etc/apt/sources.list", &sources, 0o644)?;
        // Package scripts must not start daemons inside the build chroot.
        self.write_file("usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)?;
        Ok(())
    }

    fn write_file(&self, rel: &str, text: &str, mode: u32) -> Result<(), ImageError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        // Replace rather than write through: a symlink in the tree must not redirect the write.
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, text).map_err(io_err(format!("writing {}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("setting the mode of {}", path.display())))
    }

    /// The agent's dirs, host identity files, and removal of caches and build-only files.
    pub(super) fn finish_tree(&mut self) -> Result<(), ImageError> {
        self.set_step(6, "configuring the tree and removing caches");
        let root = self.root.clone();
        for (dir, owner) in [("workspace", AGENT_UID), ("run/airlock", 0)] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path)
                .map_err(io_err(format!("creating {}", path.display())))?;
            std::os::unix::fs::lchown(&path, Some(owner), Some(owner))
                .map_err(io_err(format!("chown {}", path.display())))?;
        }
        self.write_file("etc/hostname", "airlock\n", 0o644)?;
        self.write_file(
            "etc/hosts",
            "127.0.0.1\tlocalhost\n127.0.1.1\tairlock\n::1\tlocalhost ip6-localhost ip6-loopback\n",
            0o644,
        )?;
        // debootstrap copied the host's resolver config; the guest reaches the network only
        // through airlock's proxy, and the host's resolvers are none of its business.
        self.write_file(
            "etc/resolv.conf",
            "# airlock guests reach the network through the egress proxy only.\n",
            0o644,
        )?;
        let _ = std::fs::remove_file(root.join("usr/sbin/policy-rc.d"));
        for dir in [
            "var/lib/apt/lists",
            "var/cache/apt",
            "var/cache/debconf",
            "var/log",
            "tmp",
            "var/tmp",
            "root/.cache",
        ] {
            clear_files(&root.join(dir), dir == "var/cache/debconf")?;
        }
        Ok(())
    }
}

/// Removes the regular files under `dir` (recursively), keeping the directories apt and dpkg
/// expect to exist. With `only_old`, only `*-old` backups are removed.
fn clear_files(dir: &Path, only_old: bool) -> Result<(), ImageError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            clear_files(&path, only_old)?;
        } else if !only_old || path.to_string_lossy().ends_with("-old") {
            // apt's lock files are recreated on demand.
            std::fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_files_keeps_dirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("partial")).unwrap();
        std::fs::write(dir.path().join("partial/x"), "x").unwrap();
        std::fs::write(dir.path().join("lock"), "").unwrap();
        std::fs::write(dir.path().join("config.dat-old"), "").unwrap();
        std::fs::write(dir.path().join("config.dat"), "").unwrap();
        clear_files(dir.path(), true).unwrap();
        assert!(dir.path().join("config.dat").exists());
        assert!(!dir.path().join("config.dat-old").exists());
        clear_files(dir.path(), false).unwrap();
        assert!(dir.path().join("partial").is_dir());
        assert!(!dir.path().join("partial/x").exists());
        assert!(!dir.path().join("lock").exists());
    }
}
