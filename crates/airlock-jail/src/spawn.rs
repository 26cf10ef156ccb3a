//! The one way airlock starts a jailed process: a [`ProcessSpec`] says what runs, with which
//! descriptors, in which host cgroup and under which [`Confinement`]; [`spawn`] starts it.
//!
//! Every process a sandbox runs on the host comes through here: the engine (QEMU), the vsock
//! backend, and the filesystem and egress gateways. Each is contained first: it dies with
//! airlock and has a session of its own with no controlling terminal (`child.rs`).

use crate::JailError;
use crate::cgroup::EngineGroup;
use crate::engine::{EngineJail, HelperJail};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

/// How a process is confined.
#[derive(Debug)]
pub enum Confinement {
    /// The engine: namespaces, a pivoted root, its own uid, no capabilities and the deny-list
    /// filters, all between fork and exec (`engine.rs`).
    Engine(EngineJail),
    /// A foreign helper that keeps airlock's uid and view (the vsock backend): no
    /// capabilities, `no_new_privs`, the deny-list filters and Landlock, between fork and exec.
    Helper(HelperJail),
    /// One of airlock's gateways: contained only here; it enters its
    /// [`SelfJail`](crate::SelfJail) itself after exec, once it has read its spec and opened
    /// its sockets.
    SelfJailed,
}

/// One jailed process.
#[derive(Debug)]
pub struct ProcessSpec {
    /// The binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error (usually its log file).
    pub stderr: Stdio,
    /// A descriptor handed over as fd 3 (a listening socket).
    pub fd3: Option<OwnedFd>,
    /// A host cgroup entered before exec, so everything it starts is counted.
    pub cgroup: Option<Arc<EngineGroup>>,
    /// `RLIMIT_NOFILE` (soft and hard) set before exec, while airlock still has the privilege
    /// to raise it ([`crate::rlimit::nofile_ceiling`]).
    pub nofile: Option<u64>,
    /// Its confinement.
    pub confinement: Confinement,
}

impl ProcessSpec {
    /// A spec for `program` with stdio closed and nothing else set.
    pub fn new(program: impl Into<PathBuf>, confinement: Confinement) -> ProcessSpec {
        ProcessSpec {
            program: program.into(),
            args: Vec::new(),
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            stderr: Stdio::null(),
            fd3: None,
            cgroup: None,
            nofile: None,
            confinement,
        }
    }
}

/// Starts the process `spec` describes. It is killed when the returned child is dropped.
pub fn spawn(spec: ProcessSpec) -> Result<tokio::process::Child, JailError> {
    let ProcessSpec {
        program,
        args,
        stdin,
        stdout,
        stderr,
        fd3,
        cgroup,
        nofile,
        confinement,
    } = spec;
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args).stdin(stdin).stdout(stdout).stderr(stderr);
    crate::child::contain(&mut cmd);
    if let Some(raw) = fd3.as_ref().map(AsRawFd::as_raw_fd) {
        // SAFETY: runs between fork and exec; dup2 and fcntl are async-signal-safe and act on
        // a descriptor this process owns (kept open by `fd3` until spawn returns).
        // JUSTIFICATION: std offers no way to place an inherited descriptor at a fixed number.
        unsafe {
            cmd.pre_exec(move || {
                if raw == 3 {
                    // Already in place: only clear close-on-exec.
                    if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(raw, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    if let Some(limit) = nofile {
        let rlim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: runs between fork and exec; setrlimit is async-signal-safe and reads one
        // `rlimit` copied into the closure.
        // JUSTIFICATION: the limit must be raised before the process drops the privilege to.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    if let Some(g) = cgroup {
        // SAFETY: runs between fork and exec; `enter_in_child` only makes raw,
        // async-signal-safe syscalls on paths prepared before fork.
        // JUSTIFICATION: the process must be counted from its first instruction.
        unsafe {
            cmd.pre_exec(move || g.enter_in_child());
        }
    }
    match confinement {
        Confinement::Engine(jail) => jail.install(&mut cmd),
        Confinement::Helper(jail) => jail.install(&mut cmd),
        Confinement::SelfJailed => {}
    }
    let child = cmd.spawn().map_err(|source| JailError::Spawn {
        program: program.clone(),
        source,
    })?;
    drop(fd3);
    Ok(child)
}
