//! The engine jail: what QEMU is left with if a guest breaks out into it.
//!
//! Between fork and exec the engine process:
//! - enters new mount, pid, network, IPC and UTS namespaces (the network one is empty;
//!   vhost-user sockets are pathname unix sockets, which work across network namespaces);
//! - pivots its root to a per-sandbox directory that holds only `/usr` (read-only), the loader
//!   cache, a few device nodes, the sandbox's state dir and the images it boots, each bound at
//!   its own path so the command line needs no rewriting;
//! - forks once more so that QEMU is PID 1 of its pid namespace and sees no other process; the
//!   intermediate only waits and passes QEMU's exit status on;
//! - drops every capability and switches to a uid of its own ([`JAIL_UID_BASE`] + the
//!   intermediate's host pid, unique while the sandbox lives), keeping the `kvm` group when it
//!   boots with KVM;
//! - sets `no_new_privs` and installs our seccomp filter ([`crate::syscalls::ENGINE_DENY`]); QEMU's `-sandbox`
//!   filter comes on top.
//!
//! Namespaces and uid changes need root. Run by an ordinary user, the engine keeps the user's
//! uid and gets only `no_new_privs`, the seccomp filters and an empty capability set; `airlock
//! doctor` says so.

use crate::JailError;
use crate::caps;
use seccompiler::BpfProgram;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// First uid of the range jailed processes run as (one uid per sandbox and gateway).
pub const JAIL_UID_BASE: u32 = 0x5A00_0000;

/// One bind mount into the jail.
#[derive(Debug, Clone)]
struct Bind {
    source: CString,
    target: CString,
    writable: bool,
}

/// Everything the engine's jail needs, prepared in the parent (allocation is not allowed after
/// fork).
#[derive(Debug)]
pub struct EngineJail {
    root: CString,
    binds: Vec<Bind>,
    /// Files the jailed uid must own (sockets it connects to, logs and disks it writes).
    owned: Vec<CString>,
    kvm_gid: Option<libc::gid_t>,
    filters: Vec<BpfProgram>,
}

/// What goes into the engine's jail.
#[derive(Debug, Default)]
pub struct EngineJailSpec {
    /// The jail root to create (must not exist yet; removed with the state dir).
    pub root: PathBuf,
    /// Directories bound read-write at their own path (the state dir).
    pub rw_dirs: Vec<PathBuf>,
    /// Files bound read-only at their own path (kernel, initrd, read-only images).
    pub ro_files: Vec<PathBuf>,
    /// Files handed to the jailed uid (sockets, console log, writable disks).
    pub owned: Vec<PathBuf>,
    /// Whether `/dev/kvm` is bound in.
    pub kvm: bool,
    /// The engine binary, bound read-only when it lives outside `/usr`.
    pub binary: PathBuf,
}

fn cstring(p: &Path) -> Result<CString, JailError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| JailError::Nul(p.to_path_buf()))
}

use crate::ns::inside;

impl EngineJail {
    /// Builds the jail's directory skeleton and mount list.
    pub fn prepare(spec: &EngineJailSpec) -> Result<EngineJail, JailError> {
        let root = &spec.root;
        let at = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JailError::Io { path, source }
        };
        std::fs::create_dir(root).map_err(at(root))?;
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(at(root))?;
        let mut binds = Vec::new();
        let mut bind = |source: &Path, writable: bool| -> Result<(), JailError> {
            let target = inside(root, source);
            let meta = std::fs::metadata(source).map_err(at(source))?;
            if meta.is_dir() {
                std::fs::create_dir_all(&target).map_err(at(&target))?;
            } else {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(at(parent))?;
                }
                std::fs::File::create(&target).map_err(at(&target))?;
            }
            binds.push(Bind {
                source: cstring(source)?,
                target: cstring(&target)?,
                writable,
            });
            Ok(())
        };
        // The loader and libraries: merged-/usr hosts have symlinks at the top level.
        for top in ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let host = Path::new("/").join(top);
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    let link = std::fs::read_link(&host).map_err(at(&host))?;
                    std::os::unix::fs::symlink(link, root.join(top)).map_err(at(&host))?;
                }
                Ok(m) if m.is_dir() => bind(&host, false)?,
                _ => {}
            }
        }
        let ld_cache = Path::new("/etc/ld.so.cache");
        if ld_cache.exists() {
            bind(ld_cache, false)?;
        }
        if !spec.binary.starts_with("/usr") {
            bind(&spec.binary, false)?;
        }
        // Device nodes stay writable: a read-only bind would refuse writes to /dev/null.
        let mut devices = vec!["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"];
        if spec.kvm {
            devices.push("/dev/kvm");
        }
        for dev in devices {
            if Path::new(dev).exists() {
                bind(Path::new(dev), true)?;
            }
        }
        for dir in &spec.rw_dirs {
            bind(dir, true)?;
        }
        for file in &spec.ro_files {
            bind(file, false)?;
        }
        let kvm_gid = if spec.kvm {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/dev/kvm").ok().map(|m| m.gid())
        } else {
            None
        };
        Ok(EngineJail {
            root: cstring(root)?,
            binds,
            owned: spec
                .owned
                .iter()
                .map(|p| cstring(p))
                .collect::<Result<_, _>>()?,
            kvm_gid,
            filters: crate::seccomp::engine_filters()?,
        })
    }

    /// Installs the jail on `cmd`: it runs between fork and exec of the engine.
    pub(crate) fn install(self, cmd: &mut tokio::process::Command) {
        // SAFETY: the closure runs in the child between fork and exec. It makes raw syscalls
        // only (unshare, mount, pivot_root, chown, fork, waitpid, prctl, capset, set*id,
        // seccomp), all async-signal-safe, on data prepared before the fork; it allocates
        // nothing and takes no locks.
        // JUSTIFICATION: namespaces, the root pivot and the uid switch must happen between fork
        // and exec of the engine; no safe API covers that window.
        unsafe {
            cmd.pre_exec(move || enter(&self));
        }
    }
}

/// The jail of a foreign helper that keeps the caller's uid and view (the vsock backend):
/// between fork and exec it loses every capability, gets `no_new_privs`, the engine's seccomp
/// filters, and Landlock lets it write only beneath one directory (as root it still owns every
/// root file otherwise).
#[derive(Debug)]
pub struct HelperJail {
    filters: Vec<BpfProgram>,
    landlock: Option<std::os::fd::OwnedFd>,
}

impl HelperJail {
    /// Prepares the jail of a helper that may write only beneath `writable`.
    pub fn prepare(writable: &Path) -> Result<HelperJail, JailError> {
        Ok(HelperJail {
            filters: crate::seccomp::engine_filters()?,
            landlock: crate::landlock::prepare_writes_beneath(writable)?,
        })
    }

    /// Installs the jail on `cmd`: it runs between fork and exec.
    pub(crate) fn install(self, cmd: &mut tokio::process::Command) {
        // SAFETY: runs between fork and exec; `drop_privileges` and `restrict_in_child` make
        // only raw, async-signal-safe syscalls on data prepared here.
        // JUSTIFICATION: privileges must be dropped between fork and exec of the helper.
        unsafe {
            cmd.pre_exec(move || {
                drop_privileges(None, None, &self.filters)?;
                if let Some(fd) = &self.landlock {
                    // no_new_privs is set: restricting needs nothing more.
                    crate::landlock::restrict_in_child(fd)?;
                }
                Ok(())
            });
        }
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mount(2)` with optional source and target; the strings are prepared before fork.
fn mount(
    source: Option<&std::ffi::CStr>,
    target: &std::ffi::CStr,
    flags: libc::c_ulong,
) -> io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: mount reads NUL-terminated strings that outlive the call (or takes NULL); no
    // filesystem data is passed. Async-signal-safe.
    check(unsafe {
        libc::mount(
            source.map_or(null, |s| s.as_ptr()),
            target.as_ptr(),
            null,
            flags,
            std::ptr::null(),
        )
    })
}

/// Runs in the forked child. Returns in the process that goes on to exec the engine.
fn enter(jail: &EngineJail) -> io::Result<()> {
    let ns = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(ns) } != 0 {
        let err = io::Error::last_os_error();
        // As root a refusal means a confined host (a container, a systemd unit): fail closed
        // rather than run the engine as root outside its namespaces.
        // SAFETY: geteuid takes no arguments.
        if err.raw_os_error() != Some(libc::EPERM) || unsafe { libc::geteuid() } == 0 {
            return Err(err);
        }
        return drop_privileges(None, None, &jail.filters);
    }
    // Nothing mounted here may propagate back to the host.
    mount(None, c"/", libc::MS_REC | libc::MS_PRIVATE)?;
    // pivot_root needs the new root to be a mount point; the binds go on top of it.
    mount(Some(&jail.root), &jail.root, libc::MS_BIND)?;
    for b in &jail.binds {
        mount(Some(&b.source), &b.target, libc::MS_BIND | libc::MS_REC)?;
        if !b.writable {
            let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID;
            mount(None, &b.target, ro)?;
        }
    }
    // The uid this jail runs as: unique while the intermediate (this process) lives.
    let uid = JAIL_UID_BASE.wrapping_add(std::process::id());
    for path in &jail.owned {
        // SAFETY: chown reads a NUL-terminated path prepared before fork.
        check(unsafe { libc::chown(path.as_ptr(), uid, uid) })?;
    }
    // SAFETY: chdir reads a NUL-terminated path prepared before fork.
    check(unsafe { libc::chdir(jail.root.as_ptr()) })?;
    // pivot_root(".", "."): the old root ends up on top of the new one, then is detached.
    // SAFETY: pivot_root reads two NUL-terminated literals.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: umount2 and chdir read NUL-terminated literals.
    check(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })?;
    // SAFETY: as above.
    check(unsafe { libc::chdir(c"/".as_ptr()) })?;
    // The jail root itself read-only: QEMU writes only where the state dir is bound.
    let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID;
    mount(None, c"/", ro)?;
    // Fork so that the engine is PID 1 of the new pid namespace.
    // A raw clone (fork semantics, no atfork handlers: glibc's would take malloc locks another
    // thread of the parent may have held at the first fork).
    // SAFETY: clone with SIGCHLD and no stack or pointers behaves as fork; this process is
    // single-threaded; both sides only make async-signal-safe calls afterwards.
    let child = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
    let child = libc::pid_t::try_from(child).unwrap_or(-1);
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child > 0 {
        relay(child);
    }
    // In the engine-to-be: die with the intermediate.
    // SAFETY: prctl on integers.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) })?;
    drop_privileges(Some(uid), jail.kvm_gid, &jail.filters)
}

/// The intermediate: holds no files, waits for the engine, exits as it did. Never returns.
fn relay(child: libc::pid_t) -> ! {
    // SAFETY: close_range, waitpid, signal, kill and _exit are async-signal-safe syscalls on
    // integers and a local status word.
    unsafe {
        // Spawn's error pipe and every other inherited fd: the parent must see EOF once the
        // engine has exec'd, not when this process exits.
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        let mut status: libc::c_int = 0;
        loop {
            let rc = libc::waitpid(child, &mut status, 0);
            if rc == child {
                break;
            }
            if rc < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(125);
            }
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
        libc::_exit(libc::WEXITSTATUS(status));
    }
}

/// Drops capabilities, switches uid (when given, keeping `group` as the one supplementary
/// group), sets `no_new_privs`, installs the filters. Async-signal-safe.
fn drop_privileges(
    uid: Option<u32>,
    group: Option<libc::gid_t>,
    filters: &[BpfProgram],
) -> io::Result<()> {
    // Clearing the bounding set needs CAP_SETPCAP, so it comes before the uid switch.
    caps::drop_bounding(0);
    // SAFETY: setgroups, set*id and prctl on integers and a live local array;
    // async-signal-safe.
    unsafe {
        if let Some(uid) = uid {
            let groups: [libc::gid_t; 1] = [group.unwrap_or(uid)];
            check(libc::setgroups(1, groups.as_ptr()))?;
            check(libc::setresgid(uid, uid, uid))?;
            check(libc::setresuid(uid, uid, uid))?;
            // A credential change clears the parent-death signal: set it again.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        }
    }
    caps::set_own(0)?;
    // SAFETY: prctl on integers.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    for f in filters {
        seccompiler::apply_filter(f).map_err(|_| io::Error::from_raw_os_error(libc::EPERM))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeleton_binds_at_the_same_paths() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let kernel = dir.path().join("vmlinux");
        std::fs::write(&kernel, b"k").unwrap();
        let root = state.join("jail");
        let jail = EngineJail::prepare(&EngineJailSpec {
            root: root.clone(),
            rw_dirs: vec![state.clone()],
            ro_files: vec![kernel.clone()],
            owned: vec![],
            kvm: false,
            binary: PathBuf::from("/usr/bin/qemu-system-x86_64"),
        })
        .unwrap();
        assert!(inside(&root, &kernel).is_file());
        assert!(inside(&root, &state).is_dir());
        let targets: Vec<String> = jail
            .binds
            .iter()
            .map(|b| b.target.to_string_lossy().into_owned())
            .collect();
        assert!(
            targets.iter().any(|t| t.ends_with("/jail/usr")),
            "{targets:?}"
        );
        let kernel_bind = jail
            .binds
            .iter()
            .find(|b| b.source.to_bytes() == kernel.as_os_str().as_bytes())
            .unwrap();
        assert!(!kernel_bind.writable);
        assert!(
            jail.binds
                .iter()
                .any(|b| b.writable && b.source.to_bytes() == state.as_os_str().as_bytes())
        );
        // A second jail at the same root is refused rather than reused.
        assert!(
            EngineJail::prepare(&EngineJailSpec {
                root,
                ..EngineJailSpec::default()
            })
            .is_err()
        );
    }
}
