//! The egress gateway process: `airlock __gateway egress`.
//!
//! Reads an [`EgressSpec`] (JSON) from stdin, takes the listener on fd 3, jails itself, then
//! serves guest tunnels with [`airlock_net::Gateway`] until SIGTERM, writing one [`NetLine`]
//! per decision to stdout.

use airlock_audit::{Decision, Event, NetInfo, Source};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::os::fd::FromRawFd;
use std::sync::Arc;

/// What the supervisor tells the egress gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSpec {
    /// The policy to load.
    pub policy: super::PolicyText,
    /// A DNS server to ask instead of the host's resolver.
    pub dns: Option<SocketAddr>,
    /// Ports on which a CONNECT must carry a matching TLS ClientHello.
    pub tls_ports: Vec<u16>,
}

/// One gateway decision as it crosses the process boundary: [`airlock_net::NetEvent`] with
/// owned strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetLine {
    /// `net.connect` or `net.http`.
    pub kind: String,
    /// Requested host.
    pub host: String,
    /// Requested port.
    pub port: u16,
    /// The address connected to.
    pub ip: Option<std::net::IpAddr>,
    /// HTTP method.
    pub method: Option<String>,
    /// Plain-HTTP path.
    pub path: Option<String>,
    /// Status.
    pub status: Option<u16>,
    /// `allow`, `deny` or `error`.
    pub decision: String,
    /// The deciding rule.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// Bytes guest → upstream.
    pub bytes_up: u64,
    /// Bytes upstream → guest.
    pub bytes_down: u64,
    /// Duration.
    pub duration_ms: u64,
}

impl From<&airlock_net::NetEvent> for NetLine {
    fn from(e: &airlock_net::NetEvent) -> Self {
        NetLine {
            kind: e.kind.to_string(),
            host: e.host.clone(),
            port: e.port,
            ip: e.ip,
            method: e.method.clone(),
            path: e.path.clone(),
            status: e.status,
            decision: e.decision.as_str().to_string(),
            rule: e.rule.clone(),
            reason: e.reason.to_string(),
            bytes_up: e.bytes_up,
            bytes_down: e.bytes_down,
            duration_ms: e.duration_ms,
        }
    }
}

/// Longest string field accepted from a gateway line.
const MAX_FIELD: usize = 4096;

impl NetLine {
    /// Parses a line from the gateway; refuses unknown kinds and decisions and overlong fields.
    pub fn parse(line: &[u8]) -> Option<NetLine> {
        let l: NetLine = serde_json::from_slice(line).ok()?;
        let known_kind = [airlock_net::kind::NET_CONNECT, airlock_net::kind::NET_HTTP]
            .contains(&l.kind.as_str());
        let known_decision = ["allow", "deny", "error"].contains(&l.decision.as_str());
        let short = [&l.host, &l.rule, &l.reason]
            .into_iter()
            .chain(l.method.as_ref())
            .chain(l.path.as_ref())
            .all(|s| s.len() <= MAX_FIELD);
        (known_kind && known_decision && short).then_some(l)
    }

    /// The audit event for this decision.
    pub fn to_event(&self) -> Event {
        let decision = match self.decision.as_str() {
            "allow" => Decision::Allow,
            "deny" => Decision::Deny,
            _ => Decision::Error,
        };
        Event::new(Source::Host, self.kind.clone())
            .with_decision(decision)
            .with_rule(self.rule.clone())
            .with_reason(self.reason.clone())
            .with_net(NetInfo {
                host: Some(self.host.clone()),
                port: Some(self.port),
                ip: self.ip.map(|ip| ip.to_string()),
                method: self.method.clone(),
                path: self.path.clone(),
                status: self.status,
                bytes_in: Some(self.bytes_down),
                bytes_out: Some(self.bytes_up),
                duration_ms: Some(self.duration_ms),
            })
    }
}

impl airlock_net::NetEvents for super::JsonLines {
    fn record(&self, event: &airlock_net::NetEvent) {
        self.send(&NetLine::from(event));
    }
}

/// Syscalls the egress gateway makes beyond [`super::confine::BASE`] (sockets, the host resolver).
pub const ALLOWED: &[libc::c_long] = &[
    libc::SYS_getpeername,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_socketpair,
    libc::SYS_uname,
    libc::SYS_kill,
    libc::SYS_faccessat2,
];

/// `airlock __gateway egress`: returns the process exit code.
pub fn child_main() -> u8 {
    super::child_main("egress", run)
}

fn run() -> anyhow::Result<()> {
    use anyhow::Context;
    let spec: EgressSpec = super::read_spec()?;
    let policy = spec.policy.clone().load()?;
    // SAFETY: the supervisor placed the listening unix socket at fd 3 for us, and nothing else
    // in this process owns fd 3.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) };
    listener.set_nonblocking(true)?;
    let jail = super::confine::confine(ALLOWED).context("jailing the egress gateway")?;
    eprintln!(
        "airlock egress gateway: uid {}, Landlock {}, seccomp allow-list of {} syscalls",
        jail.uid, jail.landlock, jail.allowed
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let resolver = match spec.dns {
            Some(server) => airlock_net::dns_resolver(server),
            None => airlock_net::system_resolver(),
        };
        let gateway = airlock_net::Gateway::with_config(
            Arc::new(policy),
            resolver,
            Arc::new(super::JsonLines::default()),
            airlock_net::GatewayConfig {
                tls_ports: spec.tls_ports,
                ..airlock_net::GatewayConfig::default()
            },
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            term.recv().await;
            let _ = stop_tx.send(true);
        });
        gateway.serve_unix(listener, stop_rx).await;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> NetLine {
        NetLine {
            kind: "net.connect".into(),
            host: "example.com".into(),
            port: 443,
            ip: None,
            method: Some("CONNECT".into()),
            path: None,
            status: Some(403),
            decision: "deny".into(),
            rule: "network.default".into(),
            reason: "not_allowed".into(),
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 1,
        }
    }

    #[test]
    fn lines_round_trip_and_bad_ones_are_refused() {
        let json = serde_json::to_vec(&line()).unwrap();
        assert_eq!(NetLine::parse(&json), Some(line()));
        let mut bad = line();
        bad.kind = "fs.write".into();
        assert_eq!(NetLine::parse(&serde_json::to_vec(&bad).unwrap()), None);
        let mut bad = line();
        bad.decision = "maybe".into();
        assert_eq!(NetLine::parse(&serde_json::to_vec(&bad).unwrap()), None);
        let mut bad = line();
        bad.host = "x".repeat(MAX_FIELD + 1);
        assert_eq!(NetLine::parse(&serde_json::to_vec(&bad).unwrap()), None);
        assert_eq!(NetLine::parse(b"{\"kind\":"), None);
        assert_eq!(NetLine::parse(b"not json"), None);
    }

    #[test]
    fn the_event_matches_the_line() {
        let e = line().to_event();
        assert_eq!(e.kind, "net.connect");
        assert_eq!(e.decision, Some(Decision::Deny));
        assert_eq!(e.net.unwrap().host.as_deref(), Some("example.com"));
    }

    #[test]
    fn the_allow_list_compiles() {
        assert!(
            !super::super::confine::allow_list(ALLOWED)
                .unwrap()
                .is_empty()
        );
    }
}
