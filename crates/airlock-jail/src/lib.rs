//! The one place where airlock confines its own processes: namespaces, `pivot_root`, uid and
//! gid changes, capabilities, rlimits, host cgroups, Landlock and seccomp.
//!
//! Every process a sandbox runs on the host is described by a [`ProcessSpec`] and started by
//! [`spawn`]: the engine and the vsock backend are jailed between fork and exec
//! ([`EngineJail`], [`HelperJail`]); airlock's own gateways are started contained and then
//! jail themselves with a [`SelfJail`] once they have read their spec. The seccomp lists are
//! data with a reason per entry ([`syscalls`]).
//!
//! Nothing here decides policy or talks to a guest; it only takes privileges away.

pub mod caps;
pub mod cgroup;
pub mod child;
mod confine;
mod engine;
mod error;
pub mod gateway;
pub mod landlock;
pub mod ns;
pub mod rlimit;
pub mod seccomp;
mod spawn;
pub mod syscalls;

pub use confine::{Confined, Identity, SelfJail};
pub use engine::{EngineJail, EngineJailSpec, HelperJail, JAIL_UID_BASE};
pub use error::JailError;
pub use spawn::{Confinement, ProcessSpec, spawn};

/// An error and its causes on one line, `outer: inner: root`: how airlock's helper processes
/// and services write an error into a log, an audit record or an API reply.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
