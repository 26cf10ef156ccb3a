//! Namespaces and mounts for processes that jail themselves after exec (the filesystem
//! gateway), and for mounting a share into such a jail later from outside.
//!
//! The engine's own namespaces are entered between fork and exec, in `engine.rs`.

use crate::JailError;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Gives the calling thread its own cwd, root and umask (`unshare(CLONE_FS)`), so a library
/// that changes them (virtiofsd sets the umask and `fchdir`s for xattrs) changes only its own
/// thread's.
pub fn unshare_fs() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(io::Error::from)
}

fn c(p: &Path) -> Result<CString, JailError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| JailError::Nul(p.to_path_buf()))
}

fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), JailError> {
    nix::mount::mount(
        source,
        target,
        fstype,
        nix::mount::MsFlags::from_bits_truncate(flags),
        data,
    )
    .map_err(|e| JailError::Mount {
        target: target.to_path_buf(),
        source: e.into(),
    })
}

/// A mount namespace whose root is a small read-only tmpfs holding only what a gateway needs.
#[derive(Debug, Clone)]
pub struct MountJail {
    /// An empty host directory to build the root on.
    pub root: PathBuf,
    /// Directories bound in read-write at their own path (the socket's directory).
    pub rw_dirs: Vec<PathBuf>,
    /// Empty directories made in the jail, at mode 0755, for mounts that come later (the
    /// share's mount point); they stay mount points in a read-only root.
    pub mount_points: Vec<PathBuf>,
}

impl MountJail {
    /// Moves the calling (single-threaded) process into a new mount namespace: a tmpfs at
    /// `root` holding the `rw_dirs` at their own paths, the `mount_points` and a read-only
    /// `/proc`; pivots into it and makes the root read-only. Needs root.
    pub fn enter(&self) -> Result<(), JailError> {
        let root = &self.root;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| JailError::Namespaces(e.into()))?;
        mount(
            None,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
        )?;
        mount(
            Some("tmpfs"),
            root,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some("mode=0755,size=1m"),
        )?;
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JailError::Io { path, source }
        };
        for dir in &self.rw_dirs {
            let target = inside(root, dir);
            std::fs::create_dir_all(&target).map_err(io_err(&target))?;
            mount(
                Some(&dir.to_string_lossy()),
                &target,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?;
        }
        for point in &self.mount_points {
            let at = inside(root, point);
            std::fs::create_dir_all(&at).map_err(io_err(&at))?;
            std::fs::set_permissions(&at, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(io_err(&at))?;
        }
        let proc_dir = root.join("proc");
        std::fs::create_dir_all(&proc_dir).map_err(io_err(&proc_dir))?;
        // Read-only: the gateway needs /proc/self/fd, never to write to /proc/sys or sysrq.
        mount(
            Some("proc"),
            &proc_dir,
            Some("proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
            None,
        )?;
        let root_c = c(root)?;
        // SAFETY: chdir, pivot_root and umount2 read NUL-terminated strings that outlive the
        // calls.
        // JUSTIFICATION: nix's pivot_root takes two paths and cannot express pivot_root(".", ".").
        unsafe {
            if libc::chdir(root_c.as_ptr()) != 0
                || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
                || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
                || libc::chdir(c"/".as_ptr()) != 0
            {
                return Err(JailError::Pivot(io::Error::last_os_error()));
            }
        }
        // Nothing can be planted in the jail's root (shares are mounted on mount points later).
        mount(
            None,
            Path::new("/"),
            None,
            libc::MS_REMOUNT
                | libc::MS_BIND
                | libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC,
            None,
        )
    }
}

/// `root` joined with absolute `path`.
pub(crate) fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// Mounts host directory `source` (recursively, private, nosuid, nodev and, if asked,
/// read-only) on `target` inside the mount namespace of process `pid`. `target` must be an
/// existing directory strictly beneath `under`, reached there without following any link.
///
/// Enters that namespace, so it needs a single-threaded process of its own (the supervisor
/// runs it as `airlock __gateway attach`); refuses to mount into its own namespace.
pub fn attach(
    pid: u32,
    target: &Path,
    source: &Path,
    read_only: bool,
    under: &Path,
) -> Result<(), JailError> {
    use std::os::unix::fs::MetadataExt;
    if !source.is_absolute() {
        return Err(JailError::AttachRefused(format!(
            "{} is not absolute",
            source.display()
        )));
    }
    if !target.starts_with(under) || target == under {
        return Err(JailError::AttachRefused(format!(
            "{} is not under {}",
            target.display(),
            under.display()
        )));
    }
    let source_c = c(source)?;
    let target_c = c(target)?;
    let sys = |what: String| move |source: io::Error| JailError::Attach { what, source };
    // SAFETY: open_tree reads a NUL-terminated path that outlives the call; the result is a new
    // descriptor we own.
    // JUSTIFICATION: neither nix nor libc wraps the new mount API.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source_c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
        )
    };
    if tree < 0 {
        return Err(sys(format!("open_tree {}", source.display()))(
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh descriptor returned by open_tree, owned by nobody else.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as libc::c_int) };
    let mut attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID
            | MOUNT_ATTR_NODEV
            | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        // Not a peer of the host's mount: later host mounts under the share stay out.
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (a live local of the size passed) and an empty path.
    // JUSTIFICATION: as for open_tree.
    if unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &raw mut attr,
            std::mem::size_of::<MountAttr>(),
        )
    } != 0
    {
        return Err(sys("mount_setattr".into())(io::Error::last_os_error()));
    }
    let ours = std::fs::metadata("/proc/self/ns/mnt").map_err(sys("our mount namespace".into()))?;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(sys(format!("the mount namespace of process {pid}")))?;
    let theirs = ns
        .metadata()
        .map_err(sys(format!("the mount namespace of process {pid}")))?;
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        return Err(JailError::AttachRefused(format!(
            "process {pid} shares our mount namespace; refusing to mount there"
        )));
    }
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| sys("setns".into())(e.into()))?;
    // The target is opened without following any link: whatever the jail holds, the share
    // lands on that directory.
    // SAFETY: open_how is plain integers; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads a NUL-terminated path and `how` (a live local of the size passed).
    // JUSTIFICATION: nix 0.29 has no openat2.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            target_c.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(sys(format!(
            "opening {} in the jail without links",
            target.display()
        ))(io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor returned by openat2, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    // SAFETY: move_mount reads two empty NUL-terminated strings that outlive the call.
    // JUSTIFICATION: as for open_tree.
    if unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            fd.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    } != 0
    {
        return Err(sys(format!("move_mount onto {}", target.display()))(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}
