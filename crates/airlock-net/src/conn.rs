//! One guest connection: read the head → decide on the name → resolve → classify the
//! addresses → connect to exactly the chosen address → (CONNECT) `200`, SNI check on TLS ports
//! → forward and splice both ways, counting bytes → one [`NetEvent`].
//!
//! Called by `serve.rs` for every accepted stream, on its own task, inside a
//! `conn{peer, host}` span. Order matters for the threat model: the policy decides on the
//! name before any lookup (a denied name never reaches DNS, so it cannot be used to exfiltrate
//! data through DNS queries); the resolved addresses are classified before any connect (a
//! permitted name pointing at 127.0.0.1, 10.0.0.1 or 169.254.169.254 is refused without a
//! packet sent there); and the gateway connects to the address it classified, never looking
//! the name up again (no DNS-rebinding window).
//!
//! Plain HTTP is one request per connection: the head is rewritten to origin-form with
//! `Connection: close`, exactly the body its framing announces is forwarded, and anything the
//! guest pipelines after it is never sent upstream (a second request on the same upstream
//! connection would escape the method and path rules).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use airlock_policy::{Decision, Policy, Target};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, timeout, timeout_at};

use crate::config::Shared;
use crate::events::{NetDecision, NetEvent};
use crate::reason;
use crate::request::{self, BodyFraming, ChunkedBody, RequestError, RequestHead, RequestTarget};
use crate::resolve::{self, MAX_ADDRESSES, ResolveError};
use crate::sni::{self, Sni, SniError};
use airlock_audit::kind;

/// Size of each read from the guest while the head is arriving.
const HEAD_READ_LEN: usize = 4096;
/// Buffer size of each direction of a splice.
const RELAY_BUF_LEN: usize = 64 * 1024;
/// How long writing an error reply may take before the connection is dropped.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// After an error reply, how long and how much of the guest's further input is read and
/// discarded before closing, so the reply is not lost to a TCP reset.
const LINGER_TIME: Duration = Duration::from_millis(500);
/// See [`LINGER_TIME`].
const LINGER_BYTES: usize = 256 * 1024;
/// Longest host text kept in an event when the host did not parse.
const MAX_EVENT_HOST_LEN: usize = 255;
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

/// Bytes relayed so far, readable after the connection's future was dropped (shutdown).
#[derive(Debug, Default)]
struct Progress {
    up: AtomicU64,
    down: AtomicU64,
    /// HTTP status of the upstream response; 0 until seen.
    status: AtomicU64,
}

/// Serves one connection from the guest and records its event.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    mut client: S,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let started = Instant::now();
    let policy = shared.policy();
    let progress = Progress::default();
    let mut ev = NetEvent {
        kind: kind::NET_CONNECT,
        host: String::new(),
        port: 0,
        ip: None,
        method: None,
        path: None,
        status: None,
        decision: NetDecision::Error,
        rule: reason::RULE_REQUEST.to_owned(),
        reason: reason::SHUTDOWN,
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: 0,
    };
    let conn = Conn {
        shared: &shared,
        policy: &policy,
        progress: &progress,
        started,
        linger: AtomicBool::new(false),
    };
    let finished = tokio::select! {
        record = conn.run(&mut client, &mut ev) => Some(record),
        () = shutdown_signal(&mut shutdown) => None,
    };
    // Cut short by shutdown: record what was under way once the head had parsed.
    let record = finished.unwrap_or(ev.method.is_some());
    ev.bytes_up = progress.up.load(Ordering::Relaxed);
    ev.bytes_down = progress.down.load(Ordering::Relaxed);
    if let Ok(status) = u16::try_from(progress.status.load(Ordering::Relaxed))
        && status != 0
    {
        ev.status = Some(status);
    }
    ev.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if record {
        shared.stats.count(&ev);
        match ev.decision {
            NetDecision::Allow => tracing::debug!(
                kind = ev.kind, host = ?ev.host, port = ev.port, ip = ?ev.ip,
                method = ?ev.method, path = ?ev.path, status = ?ev.status,
                rule = %ev.rule, reason = ev.reason, bytes_up = ev.bytes_up,
                bytes_down = ev.bytes_down, duration_ms = ev.duration_ms, "request done"
            ),
            NetDecision::Deny => tracing::info!(
                kind = ev.kind, host = ?ev.host, port = ev.port, ip = ?ev.ip,
                method = ?ev.method, path = ?ev.path, rule = %ev.rule, reason = ev.reason,
                "request denied"
            ),
            NetDecision::Error => tracing::info!(
                kind = ev.kind, host = ?ev.host, port = ev.port, ip = ?ev.ip,
                rule = %ev.rule, reason = ev.reason, "request failed"
            ),
        }
        shared.events.record(&ev);
    }
    if conn.linger.load(Ordering::Relaxed) {
        linger(&mut client).await;
    }
}

/// Resolves when the gateway shuts down (the value turns true, or the sender is gone).
pub(crate) async fn shutdown_signal(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

struct Conn<'a> {
    shared: &'a Shared,
    policy: &'a Policy,
    progress: &'a Progress,
    started: Instant,
    /// An error reply was sent: drain the guest's input before closing (after the event is
    /// recorded, so the record is not delayed).
    linger: AtomicBool,
}

/// How reading the head ended, when it did not give a head.
enum HeadFailure {
    Closed,
    Timeout,
    Rejected(RequestError),
    Io(io::Error),
}

/// How waiting for the ClientHello ended.
enum Hello {
    Name(String),
    Rejected(SniError),
    Timeout,
    Closed,
}

impl Conn<'_> {
    /// Runs the connection, filling `ev`; returns whether an event should be recorded.
    async fn run<S>(&self, client: &mut S, ev: &mut NetEvent) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let cfg = &self.shared.config;
        let mut buf = Vec::with_capacity(HEAD_READ_LEN);
        let head = read_head(client, &mut buf, self.started + cfg.head_timeout).await;
        let (head, consumed) = match head {
            Ok(h) => h,
            Err(failure) => return self.head_failed(client, &buf, failure, ev).await,
        };
        let leftover = buf.get(consumed..).unwrap_or_default().to_vec();
        ev.method = Some(head.method.clone());
        match &head.target {
            RequestTarget::Connect { host, port } => {
                let (host, port) = (host.clone(), *port);
                self.tunnel(client, &host, port, leftover, ev).await;
            }
            RequestTarget::Absolute { host, port, path } => {
                let (host, port, path) = (host.clone(), *port, path.clone());
                self.http(client, &head, &host, port, &path, leftover, ev)
                    .await;
            }
        }
        true
    }

    async fn head_failed<S>(
        &self,
        client: &mut S,
        buf: &[u8],
        failure: HeadFailure,
        ev: &mut NetEvent,
    ) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if buf.starts_with(b"CONNECT ") {
            ev.kind = kind::NET_CONNECT;
        } else {
            ev.kind = kind::NET_HTTP;
        }
        ev.rule = reason::RULE_REQUEST.to_owned();
        if let HeadFailure::Io(e) = &failure {
            tracing::debug!(error = %e, "read failed before a whole head");
        }
        match failure {
            HeadFailure::Closed | HeadFailure::Io(_) if buf.is_empty() => false,
            HeadFailure::Closed | HeadFailure::Io(_) => {
                ev.decision = NetDecision::Error;
                ev.reason = reason::INCOMPLETE_REQUEST;
                true
            }
            HeadFailure::Timeout => {
                ev.decision = NetDecision::Error;
                ev.reason = reason::REQUEST_TIMEOUT;
                ev.status = Some(408);
                let reply = error_reply(408, "Request Timeout", ev, "");
                self.reply(client, &reply).await;
                true
            }
            HeadFailure::Rejected(e) => {
                tracing::debug!(error = %e, "malformed request head");
                ev.decision = NetDecision::Deny;
                ev.reason = reason::MALFORMED_REQUEST;
                let (code, phrase) = match e {
                    RequestError::HeadTooLarge | RequestError::TooManyHeaders => {
                        (431, "Request Header Fields Too Large")
                    }
                    _ => (400, "Bad Request"),
                };
                ev.status = Some(code);
                let reply = error_reply(code, phrase, ev, &e.to_string());
                self.reply(client, &reply).await;
                true
            }
        }
    }

    /// CONNECT host:port.
    async fn tunnel<S>(
        &self,
        client: &mut S,
        host: &str,
        port: u16,
        mut pending: Vec<u8>,
        ev: &mut NetEvent,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        ev.kind = kind::NET_CONNECT;
        ev.port = port;
        let target = Target::parse(host);
        ev.host = event_host(host, target.as_ref().ok());
        tracing::Span::current().record("host", tracing::field::debug(&ev.host));

        let decision = self.policy.decide_connect(host, port);
        if !decision.is_allowed() {
            return self.deny(client, &decision, ev).await;
        }
        let Ok(target) = target else {
            // decide_connect refuses every host that does not parse; stay closed anyway.
            let d = invalid_host_decision();
            return self.deny(client, &d, ev).await;
        };
        let Some(upstream) = self.connect(client, &target, port, ev).await else {
            return;
        };
        ev.status = Some(200);
        let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
        if !matches!(
            timeout(REPLY_TIMEOUT, client.write_all(established)).await,
            Ok(Ok(()))
        ) {
            set(
                ev,
                NetDecision::Error,
                reason::RULE_CONNECT,
                reason::INCOMPLETE_REQUEST,
            );
            return;
        }

        if self.shared.config.tls_ports.contains(&port) {
            let deadline = Instant::now() + self.shared.config.hello_timeout;
            let hello = read_hello(client, &mut pending, deadline).await;
            let verdict = match hello {
                Hello::Name(name) if Target::parse(&name).as_ref() == Ok(&target) => Ok(()),
                Hello::Name(name) => {
                    tracing::info!(sni = ?name, "SNI differs from the CONNECT host");
                    Err((NetDecision::Deny, reason::SNI_MISMATCH))
                }
                Hello::Rejected(SniError::NoServerName) if matches!(target, Target::Ip(_)) => {
                    Ok(())
                }
                Hello::Rejected(SniError::NoServerName) => {
                    Err((NetDecision::Deny, reason::SNI_MISSING))
                }
                Hello::Rejected(e) => {
                    tracing::debug!(error = %e, "not a TLS ClientHello");
                    Err((NetDecision::Deny, reason::NOT_TLS))
                }
                Hello::Timeout => Err((NetDecision::Deny, reason::HELLO_TIMEOUT)),
                Hello::Closed => Err((NetDecision::Error, reason::INCOMPLETE_REQUEST)),
            };
            if let Err((decision, why)) = verdict {
                set(ev, decision, reason::RULE_SNI, why);
                // The guest already speaks TLS: no reply, just close both sides.
                drop(upstream);
                let _ = timeout(REPLY_TIMEOUT, client.shutdown()).await;
                return;
            }
        }

        ev.decision = NetDecision::Allow;
        ev.rule = decision.rule;
        ev.reason = decision.reason;
        let end = relay(
            client,
            upstream,
            pending,
            UpMode::Stream,
            self.shared.config.idle_timeout,
            self.progress,
            &self.shared.stats,
        )
        .await;
        end.log("tunnel closed");
    }

    /// `METHOD http://host:port/path`.
    #[allow(clippy::too_many_arguments)]
    async fn http<S>(
        &self,
        client: &mut S,
        head: &RequestHead,
        host: &str,
        port: u16,
        path: &str,
        pending: Vec<u8>,
        ev: &mut NetEvent,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send,
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
            client,
            upstream,
            pending,
            UpMode::Body(body),
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

    /// Writes a 403 for `decision` and closes.
    async fn deny<S>(&self, client: &mut S, decision: &Decision, ev: &mut NetEvent)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        ev.decision = NetDecision::Deny;
        ev.rule = decision.rule.clone();
        ev.reason = decision.reason;
        ev.status = Some(403);
        let reply = error_reply(403, "Forbidden", ev, "");
        self.reply(client, &reply).await;
    }

    /// Resolves (for a name), classifies every address and connects to the first allowed one
    /// that answers. On failure the reply is sent, `ev` filled, and `None` returned.
    async fn connect<S>(
        &self,
        client: &mut S,
        target: &Target,
        port: u16,
        ev: &mut NetEvent,
    ) -> Option<TcpStream>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let cfg = &self.shared.config;
        let mut addrs = match target {
            Target::Ip(ip) => vec![*ip],
            Target::Name(name) => {
                let looked_up = timeout(cfg.resolve_timeout, self.shared.resolver.resolve(name));
                let failure = match looked_up.await {
                    Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
                    Ok(Ok(_) | Err(ResolveError::NotFound)) => Err((502, reason::NO_ADDRESS)),
                    Ok(Err(e)) => {
                        tracing::info!(error = %e, "lookup failed");
                        Err((502, reason::RESOLVE_FAILED))
                    }
                    Err(_) => Err((504, reason::RESOLVE_FAILED)),
                };
                match failure {
                    Ok(addrs) => addrs,
                    Err((code, why)) => {
                        set(ev, NetDecision::Error, reason::RULE_RESOLVE, why);
                        return self.fail(client, code, ev).await;
                    }
                }
            }
        };
        addrs.truncate(MAX_ADDRESSES);
        let choice = resolve::classify(self.policy, &addrs, port);
        if let Some((ip, refused)) = choice.denied.first()
            && choice.allowed.is_empty()
        {
            tracing::info!(%ip, rule = %refused.rule, reason = refused.reason, "address refused");
            let refused = refused.clone();
            self.deny(client, &refused, ev).await;
            return None;
        }
        for ip in choice.allowed {
            let addr = SocketAddr::new(ip, port);
            match timeout(cfg.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    ev.ip = Some(ip);
                    return Some(stream);
                }
                Ok(Err(e)) => tracing::info!(%addr, error = %e, "connect failed"),
                Err(_) => tracing::info!(%addr, "connect timed out"),
            }
        }
        set(
            ev,
            NetDecision::Error,
            reason::RULE_CONNECT,
            reason::CONNECT_FAILED,
        );
        self.fail(client, 502, ev).await
    }

    async fn fail<S>(&self, client: &mut S, code: u16, ev: &mut NetEvent) -> Option<TcpStream>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        ev.status = Some(code);
        let phrase = if code == 504 {
            "Gateway Timeout"
        } else {
            "Bad Gateway"
        };
        let reply = error_reply(code, phrase, ev, "");
        self.reply(client, &reply).await;
        None
    }
}

impl Conn<'_> {
    /// Writes an error reply and half-closes; the connection lingers once the event is
    /// recorded.
    async fn reply<S>(&self, client: &mut S, reply: &[u8])
    where
        S: AsyncWrite + Unpin,
    {
        let sent = timeout(REPLY_TIMEOUT, async {
            client.write_all(reply).await?;
            client.shutdown().await
        })
        .await;
        if matches!(sent, Ok(Ok(()))) {
            self.linger.store(true, Ordering::Relaxed);
        }
    }
}

fn set(ev: &mut NetEvent, decision: NetDecision, rule: &str, why: &'static str) {
    ev.decision = decision;
    ev.rule = rule.to_owned();
    ev.reason = why;
}

fn invalid_host_decision() -> Decision {
    Decision {
        verdict: airlock_policy::Verdict::Deny,
        rule: "network.host".to_owned(),
        reason: airlock_policy::reason::INVALID_HOST,
    }
}

/// The host as recorded: canonical when it parsed, else as sent (bounded).
fn event_host(raw: &str, target: Option<&Target>) -> String {
    match target {
        Some(t) => t.to_string(),
        None => raw.chars().take(MAX_EVENT_HOST_LEN).collect(),
    }
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Reads until a whole head parsed, or it failed. `buf` keeps everything read (the head and
/// whatever followed it).
async fn read_head<S>(
    client: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(RequestHead, usize), HeadFailure>
where
    S: AsyncRead + Unpin,
{
    let mut chunk = [0u8; HEAD_READ_LEN];
    loop {
        let n = match timeout_at(deadline, client.read(&mut chunk)).await {
            Err(_) => return Err(HeadFailure::Timeout),
            Ok(Err(e)) => return Err(HeadFailure::Io(e)),
            Ok(Ok(0)) => return Err(HeadFailure::Closed),
            Ok(Ok(n)) => n,
        };
        let new = chunk.get(..n).unwrap_or_default();
        buf.extend_from_slice(new);
        // Only a new line can complete a head; parsing on every byte would let a slow client
        // make the gateway rescan its buffer once per byte.
        if new.contains(&b'\n') || buf.len() >= request::MAX_HEAD_LEN {
            match request::parse(buf) {
                request::Parse::Complete { head, consumed } => return Ok((head, consumed)),
                request::Parse::Rejected(e) => return Err(HeadFailure::Rejected(e)),
                request::Parse::Incomplete => {}
            }
        }
    }
}

/// Reads the ClientHello into `buf` (which may already hold its start).
async fn read_hello<S>(client: &mut S, buf: &mut Vec<u8>, deadline: Instant) -> Hello
where
    S: AsyncRead + Unpin,
{
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match sni::parse(buf) {
            Sni::Complete(name) => return Hello::Name(name),
            Sni::Rejected(e) => return Hello::Rejected(e),
            Sni::Incomplete if buf.len() >= sni::MAX_INPUT_LEN => {
                return Hello::Rejected(SniError::TooLarge);
            }
            Sni::Incomplete => {}
        }
        match timeout_at(deadline, client.read(&mut chunk)).await {
            Err(_) => return Hello::Timeout,
            Ok(Err(_) | Ok(0)) => return Hello::Closed,
            Ok(Ok(n)) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
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

/// An error reply naming the decision: `X-Airlock-Decision: deny; rule=<rule>` for denials,
/// `error; reason=<reason>` otherwise; the body says the same in words.
fn error_reply(code: u16, phrase: &str, ev: &NetEvent, detail: &str) -> Vec<u8> {
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
async fn linger<S>(client: &mut S)
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

/// The request body still to forward.
#[derive(Debug)]
enum Body {
    Length(u64),
    Chunked(ChunkedBody),
}

impl Body {
    fn is_done(&self) -> bool {
        match self {
            Self::Length(n) => *n == 0,
            Self::Chunked(c) => c.is_done(),
        }
    }

    /// How much of `data` belongs to the body.
    fn take(&mut self, data: &[u8]) -> Result<usize, request::ChunkedError> {
        match self {
            Self::Length(n) => {
                let take = usize::try_from(*n).map_or(data.len(), |n| n.min(data.len()));
                *n -= len_u64(take);
                Ok(take)
            }
            Self::Chunked(c) => c.feed(data),
        }
    }
}

/// What flows from the guest to upstream.
enum UpMode {
    /// Everything until the guest's EOF (CONNECT tunnels).
    Stream,
    /// Exactly the request body; then nothing more (plain HTTP).
    Body(Body),
}

/// How a splice ended.
#[derive(Debug)]
enum RelayEnd {
    /// Both sides finished (tunnel), or the upstream finished its response (HTTP).
    Done,
    /// No byte moved either way for the idle timeout.
    Idle,
    /// The guest side failed.
    Client(io::Error),
    /// The upstream side failed.
    Upstream(io::Error),
    /// The chunked request body was malformed; forwarding stopped.
    BadBody(request::ChunkedError),
}

impl RelayEnd {
    fn log(&self, what: &'static str) {
        match self {
            Self::Done => tracing::debug!("{what}"),
            Self::Idle => tracing::debug!("{what}: idle timeout"),
            Self::Client(e) => tracing::debug!(error = %e, "{what}: guest side failed"),
            Self::Upstream(e) => tracing::debug!(error = %e, "{what}: upstream side failed"),
            Self::BadBody(e) => tracing::debug!(error = %e, "{what}: malformed body"),
        }
    }
}

enum UpError {
    Client(io::Error),
    Upstream(io::Error),
    BadBody(request::ChunkedError),
}

/// Splices `client` and `upstream`, first sending `pending` (bytes the guest sent after the
/// head) upstream. Bytes are counted in `progress` and the gateway's stats as they move.
async fn relay<S>(
    client: &mut S,
    mut upstream: TcpStream,
    pending: Vec<u8>,
    mode: UpMode,
    idle: Duration,
    progress: &Progress,
    stats: &crate::config::Stats,
) -> RelayEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let t0 = Instant::now();
    let last = AtomicU64::new(0);
    let touch = || {
        let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        last.store(ms, Ordering::Relaxed);
    };
    let (mut ur, mut uw) = upstream.split();
    let (mut cr, mut cw) = tokio::io::split(client);
    let stream_mode = matches!(mode, UpMode::Stream);
    let status_wanted = !stream_mode;

    let up = async {
        let mut buf = vec![0u8; RELAY_BUF_LEN];
        match mode {
            UpMode::Stream => {
                if !pending.is_empty() {
                    uw.write_all(&pending).await.map_err(UpError::Upstream)?;
                    progress
                        .up
                        .fetch_add(len_u64(pending.len()), Ordering::Relaxed);
                    stats.add_up(pending.len());
                }
                loop {
                    let n = cr.read(&mut buf).await.map_err(UpError::Client)?;
                    if n == 0 {
                        let _ = uw.shutdown().await;
                        return Ok(());
                    }
                    touch();
                    let data = buf.get(..n).unwrap_or_default();
                    uw.write_all(data).await.map_err(UpError::Upstream)?;
                    progress.up.fetch_add(len_u64(n), Ordering::Relaxed);
                    stats.add_up(n);
                }
            }
            UpMode::Body(mut body) => {
                if !pending.is_empty() && !body.is_done() {
                    let take = body.take(&pending).map_err(UpError::BadBody)?;
                    let part = pending.get(..take).unwrap_or_default();
                    uw.write_all(part).await.map_err(UpError::Upstream)?;
                    progress.up.fetch_add(len_u64(take), Ordering::Relaxed);
                    stats.add_up(take);
                }
                while !body.is_done() {
                    let n = cr.read(&mut buf).await.map_err(UpError::Client)?;
                    if n == 0 {
                        return Err(UpError::Client(io::ErrorKind::UnexpectedEof.into()));
                    }
                    touch();
                    let data = buf.get(..n).unwrap_or_default();
                    let take = body.take(data).map_err(UpError::BadBody)?;
                    let part = data.get(..take).unwrap_or_default();
                    uw.write_all(part).await.map_err(UpError::Upstream)?;
                    progress.up.fetch_add(len_u64(take), Ordering::Relaxed);
                    stats.add_up(take);
                }
                Ok(())
            }
        }
    };

    let down = async {
        let mut buf = vec![0u8; RELAY_BUF_LEN];
        let mut first = status_wanted;
        loop {
            let n = ur.read(&mut buf).await.map_err(RelayEnd::Upstream)?;
            if n == 0 {
                let _ = cw.shutdown().await;
                return Ok::<(), RelayEnd>(());
            }
            touch();
            let data = buf.get(..n).unwrap_or_default();
            if first {
                let (status, more) = request::scan_status(data);
                if let Some(status) = status {
                    progress.status.store(u64::from(status), Ordering::Relaxed);
                }
                first = more;
            }
            cw.write_all(data).await.map_err(RelayEnd::Client)?;
            progress.down.fetch_add(len_u64(n), Ordering::Relaxed);
            stats.add_down(n);
        }
    };

    tokio::pin!(up, down);
    let mut up_done = false;
    let mut down_done = false;
    let tick_every = (idle / 4).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(tick_every);
    loop {
        tokio::select! {
            r = &mut up, if !up_done => {
                up_done = true;
                match r {
                    Ok(()) if down_done => return RelayEnd::Done,
                    Ok(()) => {}
                    Err(UpError::Client(e)) => return RelayEnd::Client(e),
                    Err(UpError::Upstream(e)) => return RelayEnd::Upstream(e),
                    Err(UpError::BadBody(e)) => return RelayEnd::BadBody(e),
                }
            }
            r = &mut down, if !down_done => {
                down_done = true;
                match r {
                    Ok(()) if up_done || !stream_mode => return RelayEnd::Done,
                    Ok(()) => {}
                    Err(end) => return end,
                }
            }
            _ = tick.tick() => {
                let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
                let now = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
                if now.saturating_sub(last.load(Ordering::Relaxed)) >= idle_ms {
                    return RelayEnd::Idle;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Parse;

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
