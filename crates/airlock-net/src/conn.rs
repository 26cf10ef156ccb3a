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
//! This file reads the head, records the event, and holds the steps both flows share
//! (`Conn`: denying, resolving, classifying the addresses and connecting, error replies). Once
//! the head parsed, `tunnel.rs` (CONNECT) or `http.rs` (plain HTTP) takes over in an `impl
//! Conn` block of its own: it decides on the name and calls back into `Conn::connect`.
//! `splice.rs` moves and counts the bytes and `reply.rs` words the error replies; those two
//! use nothing from this file, so the module graph stays acyclic.

mod http;
mod reply;
mod socket;
mod splice;
mod terminate;
mod tunnel;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use airlock_policy::{Decision, Policy, Target};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, timeout, timeout_at};

use crate::config::Shared;
use crate::events::{NetDecision, NetEvent};
use crate::reason;
use crate::request::{self, RequestError, RequestHead, RequestTarget};
use crate::resolve::{self, MAX_ADDRESSES, ResolveError};
use airlock_audit::kind;
use reply::{REPLY_TIMEOUT, error_reply, linger};
pub(crate) use socket::GuestStream;
use splice::Progress;

/// Size of each read from the guest while the head is arriving.
const HEAD_READ_LEN: usize = 4096;
/// Longest host text kept in an event when the host did not parse.
const MAX_EVENT_HOST_LEN: usize = 255;

/// Serves one connection from the guest and records its event.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    mut client: S,
    mut shutdown: watch::Receiver<bool>,
) where
    S: GuestStream,
{
    let started = Instant::now();
    let policy = shared.policy();
    let progress = Arc::new(Progress::default());
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
        credential: None,
    };
    let conn = Conn {
        shared: &shared,
        policy: &policy,
        progress: &progress,
        started,
        linger: AtomicBool::new(false),
        handoff: std::sync::Mutex::new(None),
    };
    let mut finished = tokio::select! {
        record = conn.run(&mut client, &mut ev) => Some(record),
        () = shutdown_signal(&mut shutdown) => None,
    };
    let handoff = conn
        .handoff
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let (Some(handoff), Some(_)) = (handoff, finished) {
        // The CONNECT was decided and connected; its TLS is terminated here, with the stream
        // owned (hyper keeps it for upgrades).
        let terminated = terminate::serve(
            shared.clone(),
            policy.clone(),
            handoff,
            client,
            &mut ev,
            progress.clone(),
        );
        finished = tokio::select! {
            () = terminated => Some(true),
            () = shutdown_signal(&mut shutdown) => None,
        };
        return finish(&shared, &progress, started, finished, ev);
    }
    finish(&shared, &progress, started, finished, ev);
    if conn.linger.load(Ordering::Relaxed) {
        linger(&mut client).await;
    }
}

/// Fills in the counters and records the connection's event (when it should be recorded).
fn finish(
    shared: &Shared,
    progress: &Progress,
    started: Instant,
    finished: Option<bool>,
    mut ev: NetEvent,
) {
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
    /// Set by the CONNECT flow when the gateway terminates the tunnel's TLS.
    handoff: std::sync::Mutex<Option<terminate::Handoff>>,
}

/// How reading the head ended, when it did not give a head.
enum HeadFailure {
    Closed,
    Timeout,
    Rejected(RequestError),
    Io(io::Error),
}

impl Conn<'_> {
    /// Runs the connection, filling `ev`; returns whether an event should be recorded.
    async fn run<S>(&self, client: &mut S, ev: &mut NetEvent) -> bool
    where
        S: GuestStream,
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
        S: GuestStream,
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

    /// Writes a 403 for `decision` and closes.
    async fn deny<S>(&self, client: &mut S, decision: &Decision, ev: &mut NetEvent)
    where
        S: GuestStream,
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
        S: GuestStream,
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
        S: GuestStream,
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
