//! PID 1 duties: mount the pseudo filesystems, wire the console to stdio, power off.
//!
//! Called from `main` only when the agent is PID 1 inside the guest.

use nix::mount::{MsFlags, mount};
use nix::sys::stat::Mode;
use std::io;
use std::os::fd::AsRawFd;

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Mounts `/proc`, `/sys` and `/dev`, moves `/` onto the disk-backed overlay when the host gave
/// a disk ([`crate::rootfs`]), then mounts `/dev/pts`, `/dev/shm`, `/run` (and a tmpfs `/tmp`
/// when there is no disk), points stdio at the console, sets the hostname and brings up loopback.
/// Returns what the root switch found (whether to start the Docker engine).
pub fn setup() -> io::Result<crate::rootfs::Root> {
    let early: [(&str, &str, &str, MsFlags, Option<&str>); 3] = [
        ("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, None),
        ("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, None),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        ),
    ];
    mount_all(&early)?;
    let root = crate::rootfs::switch_to_disk_root()?;
    let late: [(&str, &str, &str, MsFlags, Option<&str>); 3] = [
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
            Some("ptmxmode=0666,mode=0620,gid=5"),
        ),
        (
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            NOSUID_NODEV_NOEXEC,
            Some("mode=1777"),
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            NOSUID_NODEV_NOEXEC,
            Some("mode=0755"),
        ),
    ];
    mount_all(&late)?;
    if root.on_disk {
        std::fs::create_dir_all("/tmp")?;
        // Only when needed: changing a directory of the image copies it up to the disk layer.
        set_mode("/tmp", 0o1777)?;
    } else {
        mount_all(&[(
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
            Some("mode=1777"),
        )])?;
    }
    console_stdio()?;
    cgroups()?;
    // The initramfs root starts world-writable (1777); make it an ordinary root-owned `/`.
    set_mode("/", 0o755)?;
    nix::unistd::sethostname("airlock")?;
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    loopback_up()?;
    Ok(root)
}

/// Gives `path` the permission bits `mode` unless it has them already.
fn set_mode(path: &str, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::metadata(path)?.permissions().mode() & 0o7777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn mount_all(mounts: &[(&str, &str, &str, MsFlags, Option<&str>)]) -> io::Result<()> {
    for &(source, target, fstype, flags, data) in mounts {
        std::fs::create_dir_all(target)?;
        mount(Some(source), target, Some(fstype), flags, data)
            .map_err(|e| io::Error::other(format!("mount {fstype} on {target}: {e}")))?;
    }
    Ok(())
}

/// The kernel starts init with no open files when the initramfs lacks `/dev/console`.
fn console_stdio() -> io::Result<()> {
    let console = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")?;
    for target in 0..=2 {
        nix::unistd::dup2(console.as_raw_fd(), target)?;
    }
    Ok(())
}

/// Brings `lo` up so the workload can use 127.0.0.1 (the guest has no other interface).
fn loopback_up() -> io::Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // IFF_UP | IFF_RUNNING = 0x41 fits in the kernel's short flags field.
    req.ifr_ifru.ifru_flags = libc::c_short::try_from(libc::IFF_UP | libc::IFF_RUNNING)
        .map_err(|_| io::Error::other("interface flags out of range"))?;
    // SAFETY: SIOCSIFFLAGS reads a `struct ifreq` through the pointer, which points at a live,
    // initialised `ifreq` with a NUL-terminated name; `sock` is an open socket for the call.
    // JUSTIFICATION: neither nix nor rustix wraps interface flag changes.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Syncs and leaves through the reboot syscall: with `reboot=t` and QEMU's `-no-reboot` this ends
/// the VM at once (`poweroff` never completes on microvm, which has no ACPI).
pub fn power_off() -> ! {
    nix::unistd::sync();
    let err = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    eprintln!("airlock-guest: reboot failed: {err:?}");
    loop {
        std::thread::park();
    }
}

/// Mounts virtio-fs `tag` at `path` (created if missing) for the workload.
pub fn mount_share(tag: &str, path: &str, read_only: bool) -> io::Result<()> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{m}: {path:?}"));
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") || path.contains('\0') {
        return Err(bad("mount point must be an absolute path without '..'"));
    }
    if tag.is_empty() || tag.len() > 36 || tag.contains('\0') {
        return Err(bad("bad virtio-fs tag for mount point"));
    }
    std::fs::create_dir_all(path)?;
    let mut flags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
    if read_only {
        flags = flags.union(MsFlags::MS_RDONLY);
    }
    mount(Some(tag), path, Some("virtiofs"), flags, None::<&str>)
        .map_err(|e| io::Error::other(format!("mount virtiofs {tag} on {path}: {e}")))
}

/// Where the agent's cgroup v2 hierarchy is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Mounts cgroup v2 and enables the pids and memory controllers for per-command groups.
///
/// `favordynmods`: every command moves into a group of its own, and without it each move waits
/// for an RCU grace period (the thread-group lock's writer side): about 12 ms per command under
/// emulation. With it, fork and exit pay a little instead. A kernel without the option (before
/// 6.0) gets the plain mount.
fn cgroups() -> io::Result<()> {
    let mounted = mount(
        Some("cgroup2"),
        CGROUP_ROOT,
        Some("cgroup2"),
        NOSUID_NODEV_NOEXEC,
        Some("favordynmods"),
    )
    .or_else(|_| {
        mount(
            Some("cgroup2"),
            CGROUP_ROOT,
            Some("cgroup2"),
            NOSUID_NODEV_NOEXEC,
            None::<&str>,
        )
    });
    mounted.map_err(|e| io::Error::other(format!("mount cgroup2 on {CGROUP_ROOT}: {e}")))?;
    std::fs::write(
        format!("{CGROUP_ROOT}/cgroup.subtree_control"),
        "+pids +memory",
    )
}
