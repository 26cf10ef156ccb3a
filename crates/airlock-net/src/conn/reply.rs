//! Error replies to the guest: the `403`/`4xx`/`5xx` text naming the decision, and the short
//! linger after it.
//!
//! Called by `conn.rs` (and through it by the CONNECT and plain-HTTP flows) whenever a request
//! ends before anything was forwarded. Every reply names the rule so a denied guest can tell
//! why; the rule text comes from the policy and is escaped to printable ASCII so it cannot
//! break the reply's framing. The linger keeps a TCP reset from destroying the reply.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::timeout;

use crate::events::{NetDecision, NetEvent};

/// How long writing an error reply may take before the connection is dropped.
pub(super) const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// After an error reply, how long and how much of the guest's further input is read and
/// discarded before closing, so the reply is not lost to a TCP reset.
const LINGER_TIME: Duration = Duration::from_millis(500);
/// See [`LINGER_TIME`].
const LINGER_BYTES: usize = 256 * 1024;

/// An error reply naming the decision: `X-Airlock-Decision: deny; rule=<rule>` for denials,
/// `error; reason=<reason>` otherwise; the body says the same in words.
pub(super) fn error_reply(code: u16, phrase: &str, ev: &NetEvent, detail: &str) -> Vec<u8> {
    let rule = header_safe(&ev.rule);
    let header = match ev.decision {
        NetDecision::Deny => format!("deny; rule={rule}"),
        _ => format!("{}; reason={}", ev.decision, ev.reason),
    };
    let mut body = format!(
        "airlock egress gateway: {} ({}, rule {rule})",
        ev.decision, ev.reason
    );
    if !detail.is_empty() {
        body.push_str(": ");
        body.push_str(&header_safe(detail));
    }
    body.push('\n');
    format!(
        "HTTP/1.1 {code} {phrase}\r\nX-Airlock-Decision: {header}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Printable ASCII only: anything else is escaped, so no text can break the reply's framing.
fn header_safe(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if (' '..='~').contains(&c) {
                vec![c]
            } else {
                c.escape_unicode().collect()
            }
        })
        .collect()
}

/// Reads and discards a bounded amount of whatever the guest still sends after an error
/// reply, so that closing does not reset the connection before the reply is read.
pub(super) async fn linger<S>(client: &mut S)
where
    S: AsyncRead + Unpin,
{
    let _ = timeout(LINGER_TIME, async {
        let mut sink = [0u8; 8192];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_audit::kind;

    #[test]
    fn replies_name_the_rule() {
        let ev = NetEvent {
            kind: kind::NET_HTTP,
            host: "a.example".into(),
            port: 80,
            ip: None,
            method: None,
            path: None,
            status: None,
            decision: NetDecision::Deny,
            rule: "network.deny[0] \"bücher.example\"\r\nX: y".into(),
            reason: "denied",
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
            credential: None,
        };
        let reply = String::from_utf8(error_reply(403, "Forbidden", &ev, "")).unwrap();
        let body = "airlock egress gateway: deny (denied, rule network.deny[0] \"b\\u{fc}cher.example\"\\u{d}\\u{a}X: y)\n";
        assert_eq!(
            reply,
            format!(
                "HTTP/1.1 403 Forbidden\r\nX-Airlock-Decision: deny; rule=network.deny[0] \"b\\u{{fc}}cher.example\"\\u{{d}}\\u{{a}}X: y\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        );
    }
}
