//! Mount safety for the build tree: the private `/proc` the chroot gets for package scripts
//! ([`ProcMount`], unmounted on every path), the mount points below a directory read from
//! `/proc/self/mountinfo`, and [`remove_tree`], which deletes a tree only once nothing is
//! mounted below it, so a leftover mount can never make a deletion reach outside the tree. Used
//! by the build before packing and when it clears `.build/`.

use std::path::{Path, PathBuf};

use crate::{ImageError, io_err};

/// A private `/proc` inside the build chroot, unmounted when dropped.
pub(crate) struct ProcMount {
    target: PathBuf,
    mounted: bool,
}

impl ProcMount {
    pub(crate) fn mount(target: &Path) -> Result<ProcMount, ImageError> {
        use nix::mount::MsFlags;
        std::fs::create_dir_all(target)
            .map_err(io_err(format!("creating {}", target.display())))?;
        nix::mount::mount(
            Some("proc"),
            target,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| ImageError::Io {
            context: format!("mounting proc on {}", target.display()),
            source: e.into(),
        })?;
        Ok(ProcMount {
            target: target.to_path_buf(),
            mounted: true,
        })
    }

    pub(crate) fn unmount(mut self) -> Result<(), ImageError> {
        self.mounted = false;
        nix::mount::umount2(&self.target, nix::mount::MntFlags::empty()).map_err(|e| {
            ImageError::Io {
                context: format!("unmounting {}", self.target.display()),
                source: e.into(),
            }
        })
    }
}

impl Drop for ProcMount {
    fn drop(&mut self) {
        if self.mounted {
            // A package script may still hold it open; detach so the tree can be cleaned.
            let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Mount points at or below `dir`, deepest first, from `/proc/self/mountinfo`.
pub(crate) fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err("reading /proc/self/mountinfo"))?;
    let mut found: Vec<PathBuf> = mount_points(&text)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(found)
}

/// Mount points listed in mountinfo text (field 5, octal escapes decoded).
fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect()
}

/// Decodes the `\040`-style escapes the kernel uses for space, tab, newline and backslash.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let code = bytes
            .get(i + 1..i + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        if let Some(c) = code {
            out.push(c);
            i += 4;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Deletes `dir` after unmounting anything below it; refuses if something stays mounted, so a
/// leftover bind or proc mount can never make the deletion reach outside the tree.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), ImageError> {
    if !dir.exists() {
        return Ok(());
    }
    let dir = dir
        .canonicalize()
        .map_err(io_err(format!("resolving {}", dir.display())))?;
    for m in mounts_under(&dir)? {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
    let left = mounts_under(&dir)?;
    if !left.is_empty() {
        return Err(ImageError::BadInput {
            path: dir,
            message: format!("cannot remove: still mounted below it: {left:?}"),
        });
    }
    std::fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_points_are_decoded() {
        let info = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
98 22 0:5 / /root/.cache/airlock/images/debian/.build/root/proc rw - proc proc rw
99 22 0:6 / /tmp/with\\040space rw - tmpfs tmpfs rw
";
        assert_eq!(
            mount_points(info),
            vec![
                PathBuf::from("/"),
                PathBuf::from("/root/.cache/airlock/images/debian/.build/root/proc"),
                PathBuf::from("/tmp/with space"),
            ]
        );
        assert_eq!(unescape_octal("a\\134b\\0"), "a\\b\\0");
    }
    #[test]
    fn remove_tree_removes_unmounted_trees() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::fs::write(t.join("a/b/f"), "x").unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
        remove_tree(&t).unwrap();
    }
}
