//! What the gateway reports: one [`NetEvent`] per request, allowed or denied, handed to a
//! [`NetEvents`] sink.
//!
//! `conn.rs` builds the event as the request goes and records it exactly once, when the
//! request is over (for a tunnel: when it closes, with bytes and duration). The supervisor's
//! sink turns events into audit records (`source: "host"`, kinds `net.connect` and
//! `net.http`); tests use [`RecordingEvents`](crate::testutil::RecordingEvents). Keeping this a
//! small trait keeps `airlock-net` independent of the audit crate.

use std::fmt;
use std::net::IpAddr;

/// Event kinds, as in the audit log.
pub mod kind {
    /// A CONNECT tunnel (and anything that is not a well-formed plain-HTTP request).
    pub const NET_CONNECT: &str = "net.connect";
    /// A plain-HTTP request.
    pub const NET_HTTP: &str = "net.http";
}

/// The gateway's verdict on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetDecision {
    /// Allowed and forwarded (the transfer may still have failed midway: see `reason`).
    Allow,
    /// Refused by the policy or by the gateway's own checks (head syntax, Host, SNI).
    Deny,
    /// Allowed, but could not be carried out (DNS or connect failure, timeout).
    Error,
}

impl NetDecision {
    /// `allow`, `deny` or `error`, as in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for NetDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request through the gateway. Text fields come from the guest: escape them before
/// showing them to a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEvent {
    /// [`kind::NET_CONNECT`] or [`kind::NET_HTTP`].
    pub kind: &'static str,
    /// Requested host: canonical (lower-case punycode, IPv6 without brackets) when it parsed,
    /// otherwise as sent (at most 255 bytes, lossily decoded); empty when the head did not
    /// parse.
    pub host: String,
    /// Requested port; 0 when the head did not parse.
    pub port: u16,
    /// The address connected to, once one was.
    pub ip: Option<IpAddr>,
    /// HTTP method (`CONNECT` for tunnels), when the head parsed.
    pub method: Option<String>,
    /// Request target path and query of a plain-HTTP request, as sent.
    pub path: Option<String>,
    /// Status the gateway or the upstream answered with, when known (403 for a denial, 200
    /// for an established tunnel, the upstream's status for plain HTTP).
    pub status: Option<u16>,
    /// Allow, deny or error.
    pub decision: NetDecision,
    /// The rule that decided: a policy rule (`network.allow[0] "api.example.com:443"`,
    /// `network.allow_private`, ...) or a gateway rule from [`crate::reason`]
    /// (`egress.sni`, ...).
    pub rule: String,
    /// Why: an [`airlock_policy::reason`] or [`crate::reason`] constant.
    pub reason: &'static str,
    /// Bytes from the guest forwarded upstream (request head and body, tunnel data).
    pub bytes_up: u64,
    /// Bytes from upstream forwarded to the guest (the gateway's own replies not counted).
    pub bytes_down: u64,
    /// From accepting the connection to recording the event.
    pub duration_ms: u64,
}

/// Where the gateway sends its events. Called on the connection's task: keep it quick and
/// never block on I/O (queue, count drops).
pub trait NetEvents: Send + Sync {
    /// Records one event.
    fn record(&self, event: &NetEvent);
}

/// A sink that drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl NetEvents for NoEvents {
    fn record(&self, _event: &NetEvent) {}
}
