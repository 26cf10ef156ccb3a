//! The seccomp lists, as data: one entry per system call with the reason it is on the list.
//!
//! [`ENGINE_DENY`] is what the engine (QEMU) and the vsock backend may never call; the
//! gateways run on allow-lists: [`GATEWAY_BASE`] for every gateway plus [`FS_GATEWAY`] or
//! [`EGRESS_GATEWAY`]. `seccomp.rs` compiles them; `airlock doctor` and the docs read them.

/// One system call on a list, and why it is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall {
    /// The x86_64 system call number.
    pub nr: libc::c_long,
    /// Its name, as in `man 2`.
    pub name: &'static str,
    /// Why it is allowed (on an allow-list) or refused (on a deny-list).
    pub why: &'static str,
}

/// What the engine (QEMU) and the vsock backend never need: refused with EPERM, on top of
/// QEMU's own `-sandbox` filter, so a guest that takes over the process cannot use them.
pub const ENGINE_DENY: &[Syscall] = &[
    s(libc::SYS_ptrace, "ptrace", "debugging other processes"),
    s(
        libc::SYS_process_vm_readv,
        "process_vm_readv",
        "reading other processes' memory",
    ),
    s(
        libc::SYS_process_vm_writev,
        "process_vm_writev",
        "writing other processes' memory",
    ),
    s(
        libc::SYS_kexec_load,
        "kexec_load",
        "replacing the host kernel",
    ),
    s(
        libc::SYS_kexec_file_load,
        "kexec_file_load",
        "replacing the host kernel",
    ),
    s(libc::SYS_init_module, "init_module", "kernel modules"),
    s(libc::SYS_finit_module, "finit_module", "kernel modules"),
    s(libc::SYS_delete_module, "delete_module", "kernel modules"),
    s(libc::SYS_mount, "mount", "changing the filesystem view"),
    s(libc::SYS_umount2, "umount2", "changing the filesystem view"),
    s(
        libc::SYS_pivot_root,
        "pivot_root",
        "changing the filesystem view",
    ),
    s(libc::SYS_chroot, "chroot", "changing the filesystem view"),
    s(libc::SYS_open_tree, "open_tree", "new mount API"),
    s(libc::SYS_move_mount, "move_mount", "new mount API"),
    s(libc::SYS_fsopen, "fsopen", "new mount API"),
    s(libc::SYS_fsmount, "fsmount", "new mount API"),
    s(libc::SYS_fspick, "fspick", "new mount API"),
    s(libc::SYS_mount_setattr, "mount_setattr", "new mount API"),
    s(libc::SYS_unshare, "unshare", "new namespaces"),
    s(libc::SYS_setns, "setns", "joining namespaces"),
    s(libc::SYS_keyctl, "keyctl", "kernel keyring"),
    s(libc::SYS_add_key, "add_key", "kernel keyring"),
    s(libc::SYS_request_key, "request_key", "kernel keyring"),
    s(libc::SYS_bpf, "bpf", "eBPF"),
    s(
        libc::SYS_perf_event_open,
        "perf_event_open",
        "performance counters",
    ),
    s(
        libc::SYS_userfaultfd,
        "userfaultfd",
        "userfaultfd, a kernel exploitation aid",
    ),
    s(
        libc::SYS_open_by_handle_at,
        "open_by_handle_at",
        "opening files by handle, bypassing the jail's root",
    ),
    s(
        libc::SYS_name_to_handle_at,
        "name_to_handle_at",
        "file handles",
    ),
    s(libc::SYS_iopl, "iopl", "raw port I/O"),
    s(libc::SYS_ioperm, "ioperm", "raw port I/O"),
    s(libc::SYS_swapon, "swapon", "swap"),
    s(libc::SYS_swapoff, "swapoff", "swap"),
    s(libc::SYS_reboot, "reboot", "rebooting the host"),
    s(libc::SYS_acct, "acct", "process accounting"),
    s(libc::SYS_settimeofday, "settimeofday", "the host clock"),
    s(libc::SYS_clock_settime, "clock_settime", "the host clock"),
    s(libc::SYS_adjtimex, "adjtimex", "the host clock"),
    s(libc::SYS_sethostname, "sethostname", "host identity"),
    s(libc::SYS_setdomainname, "setdomainname", "host identity"),
];

/// What every gateway process calls: its threads, memory, signals, polling, sockets and log.
pub const GATEWAY_BASE: &[Syscall] = &[
    s(
        libc::SYS_read,
        "read",
        "reading requests, its spec and files",
    ),
    s(
        libc::SYS_write,
        "write",
        "writing replies, event lines and its log",
    ),
    s(libc::SYS_readv, "readv", "vectored reads of guest buffers"),
    s(libc::SYS_writev, "writev", "vectored writes of replies"),
    s(libc::SYS_close, "close", "closing descriptors"),
    s(
        libc::SYS_openat,
        "openat",
        "opening files (resolver config, shared files)",
    ),
    s(
        libc::SYS_newfstatat,
        "newfstatat",
        "stat of files it serves or reads",
    ),
    s(libc::SYS_fstat, "fstat", "stat of open descriptors"),
    s(libc::SYS_statx, "statx", "stat as std does it"),
    s(libc::SYS_lseek, "lseek", "seeking in files"),
    s(libc::SYS_pread64, "pread64", "positioned reads"),
    s(
        libc::SYS_mmap,
        "mmap",
        "memory allocation, guest memory regions",
    ),
    s(libc::SYS_munmap, "munmap", "freeing memory"),
    s(libc::SYS_mprotect, "mprotect", "thread stacks' guard pages"),
    s(
        libc::SYS_madvise,
        "madvise",
        "the allocator returning memory",
    ),
    s(libc::SYS_mremap, "mremap", "the allocator growing buffers"),
    s(libc::SYS_brk, "brk", "the allocator's heap"),
    s(
        libc::SYS_rt_sigaction,
        "rt_sigaction",
        "signal handlers (SIGTERM)",
    ),
    s(
        libc::SYS_rt_sigprocmask,
        "rt_sigprocmask",
        "blocking signals per thread",
    ),
    s(
        libc::SYS_rt_sigreturn,
        "rt_sigreturn",
        "returning from a signal handler",
    ),
    s(
        libc::SYS_sigaltstack,
        "sigaltstack",
        "Rust's stack-overflow handler",
    ),
    s(
        libc::SYS_ioctl,
        "ioctl",
        "FIONBIO and terminal checks by std and tokio",
    ),
    s(
        libc::SYS_fcntl,
        "fcntl",
        "descriptor flags (non-blocking, close-on-exec)",
    ),
    s(libc::SYS_futex, "futex", "locks and thread wake-ups"),
    s(
        libc::SYS_clone,
        "clone",
        "starting threads; only without namespace flags, checked on its flags argument",
    ),
    s(
        libc::SYS_seccomp,
        "seccomp",
        "installing the clone3 filter after this one (filters only ever restrict further)",
    ),
    s(libc::SYS_set_robust_list, "set_robust_list", "new threads"),
    s(libc::SYS_rseq, "rseq", "new threads (glibc)"),
    s(
        libc::SYS_sched_getaffinity,
        "sched_getaffinity",
        "sizing thread pools",
    ),
    s(libc::SYS_sched_yield, "sched_yield", "spinning locks"),
    s(libc::SYS_getpid, "getpid", "its own pid for logs"),
    s(libc::SYS_gettid, "gettid", "thread ids"),
    s(
        libc::SYS_getuid,
        "getuid",
        "checking whether it runs as root",
    ),
    s(
        libc::SYS_geteuid,
        "geteuid",
        "checking whether it runs as root",
    ),
    s(
        libc::SYS_getrandom,
        "getrandom",
        "hash map seeds, DNS query ids, TLS keys",
    ),
    s(
        libc::SYS_clock_gettime,
        "clock_gettime",
        "timestamps and timeouts",
    ),
    s(libc::SYS_clock_nanosleep, "clock_nanosleep", "sleeping"),
    s(libc::SYS_nanosleep, "nanosleep", "sleeping"),
    s(libc::SYS_epoll_create1, "epoll_create1", "event loops"),
    s(libc::SYS_epoll_ctl, "epoll_ctl", "event loops"),
    s(libc::SYS_epoll_wait, "epoll_wait", "event loops"),
    s(libc::SYS_epoll_pwait, "epoll_pwait", "event loops"),
    s(
        libc::SYS_eventfd2,
        "eventfd2",
        "waking event loops and virtqueue kicks",
    ),
    s(libc::SYS_pipe2, "pipe2", "tokio's signal pipe"),
    s(
        libc::SYS_poll,
        "poll",
        "waiting on stdin and the signal descriptor",
    ),
    s(libc::SYS_ppoll, "ppoll", "waiting on descriptors"),
    s(
        libc::SYS_socket,
        "socket",
        "upstream connections, DNS, the vhost-user socket",
    ),
    s(libc::SYS_connect, "connect", "upstream connections, DNS"),
    s(
        libc::SYS_accept4,
        "accept4",
        "accepting the guest's connections",
    ),
    s(libc::SYS_bind, "bind", "its listening socket"),
    s(libc::SYS_getsockname, "getsockname", "socket addresses"),
    s(
        libc::SYS_getsockopt,
        "getsockopt",
        "socket errors and state",
    ),
    s(
        libc::SYS_setsockopt,
        "setsockopt",
        "TCP_NODELAY, buffer sizes",
    ),
    s(libc::SYS_sendto, "sendto", "sending on sockets"),
    s(libc::SYS_recvfrom, "recvfrom", "receiving on sockets"),
    s(
        libc::SYS_sendmsg,
        "sendmsg",
        "vhost-user messages with descriptors",
    ),
    s(
        libc::SYS_recvmsg,
        "recvmsg",
        "vhost-user messages with descriptors",
    ),
    s(libc::SYS_shutdown, "shutdown", "half-closing connections"),
    s(
        libc::SYS_prctl,
        "prctl",
        "thread names, parent-death signal",
    ),
    s(libc::SYS_exit, "exit", "ending a thread"),
    s(libc::SYS_exit_group, "exit_group", "ending the process"),
    s(libc::SYS_tgkill, "tgkill", "aborting on a fatal error"),
    s(
        libc::SYS_access,
        "access",
        "the resolver checking its files",
    ),
];

/// What the filesystem gateway calls beyond [`GATEWAY_BASE`]: file serving. `name_to_handle_at`
/// only probes for handles; `open_by_handle_at` stays refused (it could reach any inode of the
/// share's filesystem).
pub const FS_GATEWAY: &[Syscall] = &[
    s(libc::SYS_pwrite64, "pwrite64", "guest writes"),
    s(libc::SYS_preadv, "preadv", "guest reads into guest memory"),
    s(
        libc::SYS_pwritev,
        "pwritev",
        "guest writes from guest memory",
    ),
    s(
        libc::SYS_preadv2,
        "preadv2",
        "guest reads into guest memory",
    ),
    s(
        libc::SYS_pwritev2,
        "pwritev2",
        "guest writes from guest memory",
    ),
    s(
        libc::SYS_close_range,
        "close_range",
        "closing inherited descriptors",
    ),
    s(libc::SYS_dup, "dup", "duplicating file descriptors"),
    s(libc::SYS_dup3, "dup3", "duplicating file descriptors"),
    s(
        libc::SYS_openat2,
        "openat2",
        "opening beneath the share without following links",
    ),
    s(libc::SYS_fstatfs, "fstatfs", "FUSE statfs"),
    s(libc::SYS_statfs, "statfs", "FUSE statfs"),
    s(libc::SYS_getdents64, "getdents64", "FUSE readdir"),
    s(libc::SYS_readlinkat, "readlinkat", "FUSE readlink"),
    s(
        libc::SYS_readlink,
        "readlink",
        "reading /proc/self/fd links",
    ),
    s(libc::SYS_getcwd, "getcwd", "std path handling"),
    s(libc::SYS_unlink, "unlink", "FUSE unlink"),
    s(libc::SYS_chmod, "chmod", "FUSE setattr"),
    s(libc::SYS_mkdir, "mkdir", "FUSE mkdir"),
    s(libc::SYS_rmdir, "rmdir", "FUSE rmdir"),
    s(libc::SYS_rename, "rename", "FUSE rename"),
    s(libc::SYS_stat, "stat", "stat by path"),
    s(
        libc::SYS_lstat,
        "lstat",
        "stat by path without following links",
    ),
    s(
        libc::SYS_name_to_handle_at,
        "name_to_handle_at",
        "virtiofsd probing for file handles (open_by_handle_at stays refused)",
    ),
    s(libc::SYS_mkdirat, "mkdirat", "FUSE mkdir"),
    s(
        libc::SYS_mknodat,
        "mknodat",
        "FUSE mknod (FIFOs and sockets only)",
    ),
    s(libc::SYS_symlinkat, "symlinkat", "FUSE symlink"),
    s(libc::SYS_linkat, "linkat", "FUSE link"),
    s(libc::SYS_unlinkat, "unlinkat", "FUSE unlink and rmdir"),
    s(libc::SYS_renameat, "renameat", "FUSE rename"),
    s(libc::SYS_renameat2, "renameat2", "FUSE rename with flags"),
    s(libc::SYS_fchmod, "fchmod", "FUSE setattr"),
    s(libc::SYS_fchmodat, "fchmodat", "FUSE setattr"),
    s(
        libc::SYS_fchown,
        "fchown",
        "FUSE setattr, ownership of new files",
    ),
    s(
        libc::SYS_fchownat,
        "fchownat",
        "FUSE setattr, ownership of new files",
    ),
    s(libc::SYS_utimensat, "utimensat", "FUSE setattr times"),
    s(libc::SYS_ftruncate, "ftruncate", "FUSE setattr size"),
    s(libc::SYS_fallocate, "fallocate", "FUSE fallocate"),
    s(
        libc::SYS_copy_file_range,
        "copy_file_range",
        "FUSE copy_file_range",
    ),
    s(libc::SYS_flock, "flock", "FUSE flock"),
    s(libc::SYS_fsync, "fsync", "FUSE fsync"),
    s(libc::SYS_fdatasync, "fdatasync", "FUSE fsync"),
    s(libc::SYS_syncfs, "syncfs", "FUSE syncfs"),
    s(
        libc::SYS_fchdir,
        "fchdir",
        "virtiofsd's xattr calls on directories",
    ),
    s(libc::SYS_fgetxattr, "fgetxattr", "FUSE getxattr"),
    s(libc::SYS_fsetxattr, "fsetxattr", "FUSE setxattr"),
    s(libc::SYS_flistxattr, "flistxattr", "FUSE listxattr"),
    s(libc::SYS_fremovexattr, "fremovexattr", "FUSE removexattr"),
    s(
        libc::SYS_umask,
        "umask",
        "creating files with the guest's mode",
    ),
    s(
        libc::SYS_membarrier,
        "membarrier",
        "virtiofsd's lock-free structures",
    ),
    s(
        libc::SYS_unshare,
        "unshare",
        "worker threads' own umask and cwd; only CLONE_FS, checked on its flags argument",
    ),
    s(
        libc::SYS_rt_sigtimedwait,
        "rt_sigtimedwait",
        "waiting for SIGTERM",
    ),
    s(libc::SYS_getgid, "getgid", "per-request credentials"),
    s(libc::SYS_getegid, "getegid", "per-request credentials"),
    s(
        libc::SYS_setresuid,
        "setresuid",
        "acting as the guest's user per request",
    ),
    s(
        libc::SYS_setresgid,
        "setresgid",
        "acting as the guest's group per request",
    ),
    s(
        libc::SYS_setgroups,
        "setgroups",
        "per-request supplementary groups",
    ),
    s(libc::SYS_capget, "capget", "per-request capabilities"),
    s(
        libc::SYS_capset,
        "capset",
        "dropping CAP_FSETID for guest writes",
    ),
    s(
        libc::SYS_prlimit64,
        "prlimit64",
        "raising its descriptor limit",
    ),
    s(libc::SYS_listen, "listen", "the vhost-user socket"),
    s(
        libc::SYS_signalfd4,
        "signalfd4",
        "waiting for SIGTERM with stdin",
    ),
    s(
        libc::SYS_landlock_create_ruleset,
        "landlock_create_ruleset",
        "the serving threads' Landlock layer, made at bind time",
    ),
    s(
        libc::SYS_landlock_add_rule,
        "landlock_add_rule",
        "the serving threads' Landlock layer",
    ),
    s(
        libc::SYS_landlock_restrict_self,
        "landlock_restrict_self",
        "the serving threads' Landlock layer",
    ),
];

/// What the egress gateway calls beyond [`GATEWAY_BASE`]: sockets and the host resolver.
pub const EGRESS_GATEWAY: &[Syscall] = &[
    s(
        libc::SYS_getpeername,
        "getpeername",
        "upstream socket addresses",
    ),
    s(
        libc::SYS_sendmmsg,
        "sendmmsg",
        "glibc's resolver sending A and AAAA at once",
    ),
    s(libc::SYS_recvmmsg, "recvmmsg", "the resolver's replies"),
    s(
        libc::SYS_socketpair,
        "socketpair",
        "tokio's blocking pool wake-ups",
    ),
    s(libc::SYS_uname, "uname", "glibc's resolver"),
    s(libc::SYS_kill, "kill", "tokio's signal handling"),
    s(
        libc::SYS_faccessat2,
        "faccessat2",
        "the resolver checking its files",
    ),
    s(
        libc::SYS_splice,
        "splice",
        "relaying bytes socket to pipe to socket without copying them",
    ),
];

const fn s(nr: libc::c_long, name: &'static str, why: &'static str) -> Syscall {
    Syscall { nr, name, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_has_a_reason_and_no_list_repeats_a_call() {
        for list in [ENGINE_DENY, GATEWAY_BASE, FS_GATEWAY, EGRESS_GATEWAY] {
            let mut seen = std::collections::BTreeSet::new();
            for s in list {
                assert!(!s.why.is_empty() && !s.name.is_empty(), "{s:?}");
                assert!(seen.insert(s.nr), "{} twice", s.name);
            }
        }
        // The gateway lists add to the base; none repeats it.
        for s in FS_GATEWAY.iter().chain(EGRESS_GATEWAY) {
            assert!(GATEWAY_BASE.iter().all(|b| b.nr != s.nr), "{}", s.name);
        }
    }

    #[test]
    fn nothing_the_engine_is_refused_is_allowed_to_a_gateway_unless_checked() {
        // A gateway may call these only because the filter checks their arguments or the
        // jail makes them harmless: unshare (CLONE_FS only) and name_to_handle_at (no open).
        let checked = [libc::SYS_unshare, libc::SYS_name_to_handle_at];
        for s in GATEWAY_BASE.iter().chain(FS_GATEWAY).chain(EGRESS_GATEWAY) {
            if ENGINE_DENY.iter().any(|d| d.nr == s.nr) {
                assert!(
                    checked.contains(&s.nr),
                    "{} is denied to the engine",
                    s.name
                );
            }
        }
    }
}
