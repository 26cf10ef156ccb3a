//! What the gateway reports: one [`NetEvent`] per request, allowed or denied, handed to a
//! [`NetEvents`] sink.
//!
//! `conn.rs` builds the event as the request goes and records it exactly once, when the
//! request is over (for a tunnel: when it closes, with bytes and duration). The supervisor's
//! sink turns events into audit records (`source: "host"`, kinds `net.connect` and
//! `net.http`); tests use [`RecordingEvents`](crate::testutil::RecordingEvents). Keeping this a
//! small trait keeps the gateway's hot path free of the audit writer; the kinds are
//! [`airlock_audit::kind`]'s.

use airlock_audit::{Cut, Decision, Event, NetInfo, Source, cut_text, kind};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

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
    /// [`airlock_audit::kind::NET_CONNECT`] or [`airlock_audit::kind::NET_HTTP`].
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
    /// The credential injected into this request, or whose placeholder it carried where it
    /// may not go (the name; never the value).
    pub credential: Option<String>,
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

/// One gateway decision as it crosses the process boundary: [`NetEvent`] with
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
    /// Credential name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Fields cut to [`MAX_FIELD`] here, with their full length and hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cut: Vec<Cut>,
}

impl From<&NetEvent> for NetLine {
    /// Every request is recorded however long its target: a field over [`MAX_FIELD`] is cut
    /// here and the line says how long it was and its hash.
    fn from(e: &NetEvent) -> Self {
        let mut cut = Vec::new();
        let mut host = e.host.clone();
        cut.extend(cut_text("net.host", &mut host, MAX_FIELD));
        let mut method = e.method.clone();
        if let Some(m) = &mut method {
            cut.extend(cut_text("net.method", m, MAX_FIELD));
        }
        let mut path = e.path.clone();
        if let Some(p) = &mut path {
            cut.extend(cut_text("net.path", p, MAX_FIELD));
        }
        NetLine {
            kind: e.kind.to_string(),
            host,
            port: e.port,
            ip: e.ip,
            method,
            path,
            status: e.status,
            decision: e.decision.as_str().to_string(),
            rule: e.rule.clone(),
            reason: e.reason.to_string(),
            bytes_up: e.bytes_up,
            bytes_down: e.bytes_down,
            duration_ms: e.duration_ms,
            credential: e.credential.clone(),
            cut,
        }
    }
}

/// Longest string field accepted from a gateway line.
const MAX_FIELD: usize = 4096;

impl NetLine {
    /// Parses a line from the gateway; refuses unknown kinds and decisions and overlong fields.
    pub fn parse(line: &[u8]) -> Option<NetLine> {
        let l: NetLine = serde_json::from_slice(line).ok()?;
        let known_kind = [
            kind::NET_CONNECT,
            kind::NET_HTTP,
            kind::CREDENTIAL_INJECT,
            kind::CREDENTIAL_LEAK_ATTEMPT,
        ]
        .contains(&l.kind.as_str());
        let known_decision = ["allow", "deny", "error"].contains(&l.decision.as_str());
        let short = [&l.host, &l.rule, &l.reason]
            .into_iter()
            .chain(l.method.as_ref())
            .chain(l.path.as_ref())
            .chain(l.credential.as_ref())
            .all(|s| s.len() <= MAX_FIELD)
            && l.cut.len() <= 3
            && l.cut
                .iter()
                .all(|c| c.field.len() <= 32 && c.sha256.len() == 64);
        (known_kind && known_decision && short).then_some(l)
    }

    /// The audit event for this decision.
    pub fn to_event(&self) -> Event {
        let decision = match self.decision.as_str() {
            "allow" => Decision::Allow,
            "deny" => Decision::Deny,
            _ => Decision::Error,
        };
        let mut event = Event::new(Source::Host, self.kind.clone())
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
                credential: self.credential.clone(),
            });
        event.cut.clone_from(&self.cut);
        event
    }
}

impl NetEvents for airlock_jail::gateway::JsonLines {
    fn record(&self, event: &NetEvent) {
        self.send(&NetLine::from(event));
    }
}

#[cfg(test)]
mod proptests;

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
            credential: None,
            cut: Vec::new(),
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
    fn a_long_target_is_cut_with_its_length_and_hash_never_dropped() {
        let long = format!("/{}", "a%2e".repeat(2000));
        let e = NetEvent {
            kind: kind::NET_HTTP,
            host: "example.com".into(),
            port: 80,
            ip: None,
            method: Some("GET".into()),
            path: Some(long.clone()),
            status: Some(200),
            decision: NetDecision::Allow,
            rule: "network.allow[0]".into(),
            reason: "allowed",
            bytes_up: 1,
            bytes_down: 1,
            duration_ms: 1,
            credential: None,
        };
        let json = serde_json::to_vec(&NetLine::from(&e)).unwrap();
        let l = NetLine::parse(&json).expect("a long request is still an event");
        let event = l.to_event();
        let path = event.net.as_ref().and_then(|n| n.path.clone()).unwrap();
        assert!(path.len() <= MAX_FIELD && long.starts_with(&path));
        let expected = cut_text("net.path", &mut long.clone(), MAX_FIELD).unwrap();
        assert_eq!(
            (expected.field.as_str(), expected.len, expected.sha256.len()),
            ("net.path", long.len() as u64, 64)
        );
        assert_eq!(event.cut, [expected]);
    }
}
