//! The egress gateway process: `airlock __gateway egress`.
//!
//! Reads an [`EgressSpec`] (JSON) from stdin, takes the listener on fd 3, jails itself
//! ([`jail`]: its own uid, no capabilities, Landlock with no writable path, the
//! [`airlock_jail::syscalls::EGRESS_GATEWAY`] allow-list), then serves guest tunnels with
//! [`crate::Gateway`] until SIGTERM, writing one [`NetLine`](crate::NetLine) per decision to
//! stdout. The supervisor starts it with [`crate::client::spawn`].

use airlock_jail::{Identity, SelfJail};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::os::fd::FromRawFd;
use std::sync::Arc;

/// What the supervisor tells the egress gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSpec {
    /// The policy to load.
    pub policy: airlock_policy::PolicySource,
    /// A DNS server to ask instead of the host's resolver.
    pub dns: Option<SocketAddr>,
    /// Ports on which a CONNECT must carry a matching TLS ClientHello.
    pub tls_ports: Vec<u16>,
}

/// Why the egress gateway process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EgressProcessError {
    /// Its spec could not be read.
    #[error(transparent)]
    Spec(#[from] airlock_jail::gateway::SpecError),
    /// The policy did not load.
    #[error("loading the policy")]
    Policy(#[source] airlock_policy::PolicyErrors),
    /// The listener or the runtime could not be set up.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The jail could not be entered.
    #[error("jailing the egress gateway")]
    Jail(#[from] airlock_jail::JailError),
}

/// The egress gateway's jail: its own uid and no capabilities (as root), no writable path,
/// the egress allow-list.
pub fn jail() -> SelfJail {
    SelfJail {
        mount_jail: None,
        identity: Identity::OwnUid,
        dumpable: true,
        writable: Some(Vec::new()),
        readable: None,
        landlock_required_as_root: false,
        syscalls: airlock_jail::syscalls::EGRESS_GATEWAY,
    }
}

/// `airlock __gateway egress`: returns the process exit code.
pub fn child_main() -> u8 {
    airlock_jail::gateway::child_main("egress", run)
}

fn run() -> Result<(), EgressProcessError> {
    let io = |what| move |source| EgressProcessError::Io { what, source };
    let spec: EgressSpec = airlock_jail::gateway::read_spec()?;
    let policy = spec.policy.load().map_err(EgressProcessError::Policy)?;
    // SAFETY: the supervisor placed the listening unix socket at fd 3 for us (see `client::spawn`), and
    // nothing else in this process owns fd 3.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) };
    listener
        .set_nonblocking(true)
        .map_err(io("taking the listener"))?;
    let jailed = jail().enter()?;
    eprintln!(
        "airlock egress gateway: uid {}, Landlock {}, seccomp allow-list of {} syscalls",
        jailed.uid,
        jailed
            .landlock
            .map_or_else(|| "off".to_string(), |l| l.to_string()),
        jailed.allowed
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("starting the runtime"))?;
    runtime.block_on(async move {
        let listener =
            tokio::net::UnixListener::from_std(listener).map_err(io("taking the listener"))?;
        let resolver = match spec.dns {
            Some(server) => crate::dns_resolver(server),
            None => crate::system_resolver(),
        };
        let gateway = crate::Gateway::with_config(
            Arc::new(policy),
            resolver,
            Arc::new(airlock_jail::gateway::JsonLines::default()),
            crate::GatewayConfig {
                tls_ports: spec.tls_ports,
                ..crate::GatewayConfig::default()
            },
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(io("watching for SIGTERM"))?;
        tokio::spawn(async move {
            term.recv().await;
            let _ = stop_tx.send(true);
        });
        gateway.serve_unix(listener, stop_rx).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_jail_writes_nowhere_and_its_allow_list_compiles() {
        let j = super::jail();
        assert_eq!(j.writable, Some(Vec::new()));
        assert!(airlock_jail::seccomp::allow_list(j.syscalls).is_ok());
    }
}
