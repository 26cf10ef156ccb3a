//! The guest's root filesystem: an overlay whose writable layer is the sandbox disk.
//!
//! The host attaches virtio-blk drives told apart by their serial: `airlock-disk`, an empty ext4
//! of the policy's `sandbox.disk` size; `airlock-root`, an optional read-only image (squashfs by
//! default); `airlock-layer0`, `airlock-layer1`, ..., optional read-only squashfs layers of
//! Debian packages (`sandbox.layers`, e.g. `docker`); and `airlock-kit`, an optional read-only
//! squashfs holding an agent kit (`/opt/airlock/kits/<name>` and its command in
//! `/usr/local/bin`). The overlay's lower layers are the kit over the layers over the image, or
//! the initramfs itself when there is no image; every write in the guest lands on the disk, so
//! a full disk means ENOSPC in the guest and nothing more on the host. Then the agent moves into
//! the overlay as `switch_root` does (the initramfs cannot be pivoted away).
//!
//! A layer providing `dockerd` gets the engine's data directory on the disk itself (see
//! [`crate::docker`]), and the caller starts the engine.

use nix::mount::{MsFlags, mount};
use std::io;
use std::path::{Path, PathBuf};

/// Serial of the writable disk.
pub const DISK_SERIAL: &str = "airlock-disk";
/// Serial of the read-only image.
pub const ROOT_SERIAL: &str = "airlock-root";
/// Serial of the agent kit layer.
pub const KIT_SERIAL: &str = "airlock-kit";
/// Serial prefix of package layers, numbered from the bottom one.
pub const LAYER_SERIAL: &str = "airlock-layer";
/// Most package layers looked for.
const MAX_LAYERS: usize = 4;

/// What the root switch found.
#[derive(Debug, Clone, Copy, Default)]
pub struct Root {
    /// `/` is the disk-backed overlay.
    pub on_disk: bool,
    /// A layer provides the Docker engine.
    pub docker: bool,
}

const STAGE: &str = "/.airlock";

/// Moves `/` onto the overlay when the host gave a disk. `/proc`, `/sys` and `/dev` must be
/// mounted (they are moved along).
pub fn switch_to_disk_root() -> io::Result<Root> {
    // Each read of a virtio-blk serial is a request to the device: read them all once.
    let drives = drives_by_serial()?;
    let find_by_serial = |serial: &str| {
        drives
            .iter()
            .find(|(s, _)| s == serial)
            .map(|(_, dev)| dev.clone())
    };
    let Some(disk) = find_by_serial(DISK_SERIAL) else {
        return Ok(Root::default());
    };
    let stage = Path::new(STAGE);
    let (disk_dir, lower_dir, kit_dir, root_dir) = (
        stage.join("disk"),
        stage.join("lower"),
        stage.join("kit"),
        stage.join("root"),
    );
    for d in [&disk_dir, &lower_dir, &kit_dir, &root_dir] {
        std::fs::create_dir_all(d)?;
    }
    // noinit_itable: the host formats lazily; zeroing inode tables in the background would only
    // burn guest CPU and grow the sparse file on the host.
    mount_dev(
        &disk,
        &disk_dir,
        "ext4",
        MsFlags::empty(),
        Some("noinit_itable"),
    )?;
    let (upper, work) = (disk_dir.join("upper"), disk_dir.join("work"));
    std::fs::create_dir_all(&upper)?;
    std::fs::create_dir_all(&work)?;

    let lower = match find_by_serial(ROOT_SERIAL) {
        Some(image) => {
            let fstype = cmdline_value("airlock.rootfstype").unwrap_or_else(|| "squashfs".into());
            if !matches!(fstype.as_str(), "squashfs" | "erofs" | "ext4") {
                return Err(io::Error::other(format!(
                    "airlock.rootfstype={fstype:?} is not one of squashfs, erofs, ext4"
                )));
            }
            mount_dev(&image, &lower_dir, &fstype, MsFlags::MS_RDONLY, None)?;
            lower_dir.clone()
        }
        None => PathBuf::from("/"),
    };
    // Leftmost is the top layer: the kit's files shadow the layers', theirs the image's.
    let mut lowers = vec![lower.display().to_string()];
    let mut docker = false;
    for i in 0..MAX_LAYERS {
        let Some(dev) = find_by_serial(&format!("{LAYER_SERIAL}{i}")) else {
            break;
        };
        let dir = stage.join(format!("layer{i}"));
        std::fs::create_dir_all(&dir)?;
        mount_dev(&dev, &dir, "squashfs", MsFlags::MS_RDONLY, None)?;
        docker |= dir.join(crate::docker::DOCKERD).is_file();
        lowers.insert(0, dir.display().to_string());
    }
    if let Some(kit) = find_by_serial(KIT_SERIAL) {
        mount_dev(&kit, &kit_dir, "squashfs", MsFlags::MS_RDONLY, None)?;
        lowers.insert(0, kit_dir.display().to_string());
    }
    let lowers = lowers.join(":");
    let options = format!(
        "lowerdir={lowers},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &root_dir,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| io::Error::other(format!("mount overlay ({options}): {e}")))?;
    if docker {
        bind_engine_data(&disk_dir, &root_dir)?;
    }

    for pseudo in ["proc", "sys", "dev"] {
        let target = root_dir.join(pseudo);
        std::fs::create_dir_all(&target)?;
        mount(
            Some(Path::new("/").join(pseudo).as_path()),
            &target,
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|e| io::Error::other(format!("moving /{pseudo}: {e}")))?;
    }
    std::env::set_current_dir(&root_dir)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| io::Error::other(format!("moving the overlay to /: {e}")))?;
    nix::unistd::chroot(".")?;
    std::env::set_current_dir("/")?;
    Ok(Root {
        on_disk: true,
        docker,
    })
}

/// Binds a directory of the disk (ext4) on the engine's data root in the new root: its image
/// layers are overlays, whose upper directories cannot live on the root overlay.
fn bind_engine_data(disk_dir: &Path, root_dir: &Path) -> io::Result<()> {
    let (source, target) = (
        disk_dir.join("docker"),
        root_dir.join(crate::docker::DATA_ROOT.trim_start_matches('/')),
    );
    std::fs::create_dir_all(&source)?;
    std::fs::set_permissions(&source, std::os::unix::fs::PermissionsExt::from_mode(0o710))?;
    std::fs::create_dir_all(&target)?;
    mount(
        Some(source.as_path()),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| io::Error::other(format!("binding {}: {e}", target.display())))
}

fn mount_dev(
    dev: &Path,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> io::Result<()> {
    mount(
        Some(dev),
        target,
        Some(fstype),
        flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        data,
    )
    .map_err(|e| {
        io::Error::other(format!(
            "mount {fstype} {} on {}: {e}",
            dev.display(),
            target.display()
        ))
    })
}

/// Block devices and their serials, as `/sys/block` lists them.
fn drives_by_serial() -> io::Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir("/sys/block") {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut drives = Vec::new();
    for entry in entries.flatten() {
        if let Ok(serial) = std::fs::read_to_string(entry.path().join("serial")) {
            let serial = serial.trim_end_matches(['\n', '\0']).to_string();
            drives.push((serial, Path::new("/dev").join(entry.file_name())));
        }
    }
    Ok(drives)
}

/// `key=value` from the kernel command line.
fn cmdline_value(key: &str) -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    parse_cmdline(&cmdline, key)
}

fn parse_cmdline(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_lookup() {
        let c = "console=ttyS0 airlock.rootfstype=erofs quiet\n";
        assert_eq!(
            parse_cmdline(c, "airlock.rootfstype").as_deref(),
            Some("erofs")
        );
        assert_eq!(parse_cmdline(c, "airlock.root"), None);
        assert_eq!(parse_cmdline(c, "quiet"), None);
    }
}
