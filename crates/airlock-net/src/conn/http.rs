//! The plain-HTTP flow: `METHOD http://host:port/path` → the `Host` header must name the
//! target → method and path decision → resolve and connect (shared steps in `conn.rs`) → the
//! head rewritten to origin-form → exactly the announced body forwarded → the response spliced
//! back.
//!
//! Called by `Conn::run` in `conn.rs` once the head parsed as an absolute-form request. Plain
//! HTTP is one request per connection: the head is rewritten with `Connection: close`, exactly
//! the body its framing announces is forwarded, and anything the guest pipelines after it is
//! never sent upstream (a second request on the same upstream connection would escape the
//! method and path rules).

use std::sync::atomic::Ordering;

use airlock_policy::{Decision, Target};
use tokio::io::AsyncWriteExt;

use super::reply::error_reply;
use super::socket::Move;
use super::splice::{Body, RelayEnd, UpMode, len_u64, relay};
use super::{Conn, GuestStream, event_host, invalid_host_decision, set};
use crate::events::{NetDecision, NetEvent};
use crate::reason;
use crate::request::{BodyFraming, ChunkedBody, RequestHead};
use airlock_audit::kind;

/// Headers never forwarded upstream: hop-by-hop fields (RFC 9110 §7.6.1) and proxy
/// credentials. The gateway adds its own `Connection: close`.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "upgrade",
];
/// Headers a `Connection` header can never remove: dropping them would change how the
/// upstream frames the request.
const NEVER_DROPPED: &[&str] = &["host", "content-length", "transfer-encoding"];

impl Conn<'_> {
    /// `METHOD http://host:port/path`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn http<S>(
        &self,
        client: &mut S,
        head: &RequestHead,
        host: &str,
        port: u16,
        path: &str,
        pending: Vec<u8>,
        ev: &mut NetEvent,
    ) where
        S: GuestStream,
    {
        ev.kind = kind::NET_HTTP;
        ev.port = port;
        ev.path = Some(path.to_owned());
        let target = Target::parse(host);
        ev.host = event_host(host, target.as_ref().ok());
        tracing::Span::current().record("host", tracing::field::debug(&ev.host));

        if let (Ok(target), Some(hh)) = (&target, &head.host_header) {
            let same_host = Target::parse(&hh.host).as_ref() == Ok(target);
            if !same_host || hh.port.unwrap_or(80) != port {
                tracing::info!(host_header = ?hh, "Host header differs from the target");
                let d = Decision {
                    verdict: airlock_policy::Verdict::Deny,
                    rule: reason::RULE_HOST_HEADER.to_owned(),
                    reason: reason::HOST_MISMATCH,
                };
                return self.deny(client, &d, ev).await;
            }
        }
        let decision = self.policy.decide_http(host, port, &head.method, path);
        if !decision.is_allowed() {
            return self.deny(client, &decision, ev).await;
        }
        // Credentials are injected only into TLS the gateway terminates: a placeholder in a
        // plain-HTTP request is a leak attempt wherever it is.
        if let Some(secrets) = self.shared.secrets() {
            let in_url = secrets.find(path.as_bytes());
            let in_header = || {
                head.headers
                    .iter()
                    .find_map(|h| secrets.find_in_header(&h.value))
            };
            let found = in_url
                .map(|s| (s, reason::LEAK_URL))
                .or_else(|| in_header().map(|s| (s, reason::LEAK_HEADER)));
            if let Some((secret, why)) = found {
                tracing::warn!(credential = %secret.credential.name, reason = why, "credential placeholder refused");
                ev.kind = kind::CREDENTIAL_LEAK_ATTEMPT;
                ev.credential = Some(secret.credential.name.clone());
                let d = Decision {
                    verdict: airlock_policy::Verdict::Deny,
                    rule: secret.credential.rule.clone(),
                    reason: why,
                };
                return self.deny(client, &d, ev).await;
            }
        }
        let Ok(target) = target else {
            let d = invalid_host_decision();
            return self.deny(client, &d, ev).await;
        };
        let Some(mut upstream) = self.connect(client, &target, port, ev).await else {
            return;
        };
        ev.decision = NetDecision::Allow;
        ev.rule = decision.rule;
        ev.reason = decision.reason;
        let forwarded = forward_head(head, path);
        if upstream.write_all(&forwarded).await.is_err() {
            set(
                ev,
                NetDecision::Error,
                reason::RULE_CONNECT,
                reason::CONNECT_FAILED,
            );
            let reply = error_reply(502, "Bad Gateway", ev, "");
            self.reply(client, &reply).await;
            return;
        }
        self.progress
            .up
            .fetch_add(len_u64(forwarded.len()), Ordering::Relaxed);
        self.shared.stats.add_up(forwarded.len());
        let body = match head.body {
            BodyFraming::None => Body::Length(0),
            BodyFraming::Length(n) => Body::Length(n),
            BodyFraming::Chunked => Body::Chunked(ChunkedBody::new()),
        };
        let end = relay(
            &*client,
            upstream,
            pending,
            UpMode::Body(body),
            Move::Splice,
            self.shared.config.idle_timeout,
            self.progress,
            &self.shared.stats,
        )
        .await;
        if let RelayEnd::BadBody(e) = &end {
            tracing::info!(error = %e, "malformed chunked body; connection closed");
            set(
                ev,
                NetDecision::Deny,
                reason::RULE_REQUEST,
                reason::MALFORMED_REQUEST,
            );
        }
        end.log("request closed");
    }
}

/// The head sent upstream: origin-form request line, the guest's headers minus hop-by-hop
/// ones, and `Connection: close`.
fn forward_head(head: &RequestHead, path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.version.as_str().as_bytes());
    out.extend_from_slice(b"\r\n");
    let named_by_connection: Vec<String> = head
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| {
            String::from_utf8_lossy(&h.value)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|t| !NEVER_DROPPED.contains(&t.as_str()))
        .collect();
    for h in &head.headers {
        let name = h.name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&name.as_str()) || named_by_connection.contains(&name) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{self, Parse};

    fn head(text: &str) -> RequestHead {
        match request::parse(text.as_bytes()) {
            Parse::Complete { head, .. } => head,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forwarded_head_is_origin_form_without_hop_by_hop_fields() {
        let h = head(
            "POST http://a.example:8080/v1/x?y=1 HTTP/1.1\r\nHost: a.example:8080\r\nProxy-Connection: Keep-Alive\r\nProxy-Authorization: Basic eA==\r\nConnection: keep-alive, X-Secret, Content-Length\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: websocket\r\nContent-Length: 2\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(
            String::from_utf8(forward_head(&h, "/v1/x?y=1")).unwrap(),
            "POST /v1/x?y=1 HTTP/1.1\r\nHost: a.example:8080\r\nContent-Length: 2\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }
}
