//! TLS termination for the hosts a credential or an HTTP rule names: after `200 Connection
//! established`, the guest's ClientHello is read; the gateway connects upstream with TLS
//! (certificates verified against the configured roots, offering the protocols the guest
//! offered), then finishes the guest's handshake with a leaf certificate for the CONNECT host
//! from the sandbox's authority, offering exactly the protocol the upstream chose. HTTP/1.1 or
//! HTTP/2 is then served request by request (`proxy.rs`): HTTP rules decided, placeholders
//! found, credentials injected, every request recorded.
//!
//! Called by `conn.rs` with the guest stream it owns (hyper needs it owned, for upgrades) once
//! `tunnel.rs` has decided the CONNECT and connected upstream. Uses nothing from `conn.rs`.

mod bodies;
mod proxy;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use airlock_policy::{Policy, Target};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::splice::Progress;
use crate::config::Shared;
use crate::events::{NetDecision, NetEvent};
use crate::reason;
use crate::tls::{H2, HTTP11};
use proxy::{Proxy, Upstream};

/// A decided CONNECT whose TLS the gateway terminates.
pub(super) struct Handoff {
    pub(super) upstream: TcpStream,
    pub(super) target: Target,
    pub(super) port: u16,
    /// Bytes the guest sent after the CONNECT head (the ClientHello's start).
    pub(super) pending: Vec<u8>,
}

/// Bytes read from either socket at a time. rustls asks for 4 KiB per read, a quarter of a
/// full record: without a buffer below it, a 100 MB download costs some 25,000 `recv` calls.
const READ_BUFFER: usize = 64 * 1024;

fn fail(ev: &mut NetEvent, decision: NetDecision, why: &'static str) {
    ev.decision = decision;
    ev.rule = reason::RULE_TLS.to_owned();
    ev.reason = why;
}

/// Terminates the guest's TLS and serves its requests; fills the CONNECT's `ev`.
pub(super) async fn serve<S>(
    shared: Arc<Shared>,
    policy: Arc<Policy>,
    handoff: Handoff,
    client: S,
    ev: &mut NetEvent,
    progress: Arc<Progress>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(term) = shared.termination() else {
        tracing::warn!("a terminated host, but the gateway has no certificate authority");
        return fail(ev, NetDecision::Error, reason::NO_AUTHORITY);
    };
    let cfg = &shared.config;
    let stream = BufReader::with_capacity(
        READ_BUFFER,
        Prefixed {
            pending: handoff.pending,
            at: 0,
            inner: client,
        },
    );
    let acceptor =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = match timeout(cfg.hello_timeout, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "no TLS ClientHello from the guest");
            return fail(ev, NetDecision::Deny, reason::NOT_TLS);
        }
        Err(_) => return fail(ev, NetDecision::Deny, reason::HELLO_TIMEOUT),
    };
    let offered: Vec<&[u8]> = start
        .client_hello()
        .alpn()
        .map(|protocols| {
            protocols
                .filter(|p| *p == H2 || *p == HTTP11)
                .map(|p| if p == H2 { H2 } else { HTTP11 })
                .collect()
        })
        .unwrap_or_default();

    // Upstream first, so the guest is offered only what the upstream speaks.
    let upstream_alpn: &[&[u8]] = if offered.is_empty() {
        &[HTTP11]
    } else {
        &offered
    };
    let client_config = match term.client_config(upstream_alpn) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no upstream TLS configuration");
            return fail(ev, NetDecision::Error, reason::UPSTREAM_TLS);
        }
    };
    let up_tls = match upstream_tls(
        client_config,
        &handoff.target,
        handoff.upstream,
        cfg.connect_timeout,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(host = %handoff.target, error = %e, "upstream TLS failed");
            return fail(ev, NetDecision::Error, reason::UPSTREAM_TLS);
        }
    };
    let h2 = up_tls.get_ref().1.alpn_protocol() == Some(H2);
    let guest_alpn: &[&[u8]] = match (offered.is_empty(), h2) {
        (true, _) => &[],
        (false, true) => &[H2],
        (false, false) => &[HTTP11],
    };
    let server_config = match term.authority.server_config(&handoff.target, guest_alpn) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no leaf certificate");
            return fail(ev, NetDecision::Error, reason::NO_AUTHORITY);
        }
    };
    let guest_tls = match timeout(cfg.hello_timeout, start.into_stream(server_config)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            // A client that pins its certificates, or does not trust the sandbox's CA.
            tracing::warn!(host = %handoff.target, error = %e, "the guest refused the gateway's certificate");
            return fail(ev, NetDecision::Error, reason::GUEST_TLS);
        }
        Err(_) => return fail(ev, NetDecision::Error, reason::GUEST_TLS),
    };
    // The CONNECT keeps the rule that allowed it; its requests are recorded one by one.
    ev.decision = NetDecision::Allow;
    ev.reason = reason::TERMINATED;

    let proxy = |upstream| {
        Arc::new(Proxy {
            shared: shared.clone(),
            policy: policy.clone(),
            secrets: term.secrets.clone(),
            target: handoff.target.clone(),
            port: handoff.port,
            host: ev.host.clone(),
            ip: ev.ip,
            progress: progress.clone(),
            upstream,
        })
    };
    let served = if h2 {
        let (send, conn) = match hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(up_tls))
            .await
        {
            Ok(pair) => pair,
            Err(e) => {
                tracing::info!(error = %e, "upstream HTTP/2 failed");
                return fail(ev, NetDecision::Error, reason::UPSTREAM_TLS);
            }
        };
        tokio::spawn(conn);
        let p = proxy(Upstream::H2(send));
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(
                TokioIo::new(guest_tls),
                hyper::service::service_fn(move |req| p.clone().handle(req)),
            )
            .await
    } else {
        let (send, conn) = match hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(up_tls))
            .await
        {
            Ok(pair) => pair,
            Err(e) => {
                tracing::info!(error = %e, "upstream HTTP/1.1 failed");
                return fail(ev, NetDecision::Error, reason::UPSTREAM_TLS);
            }
        };
        let p = proxy(Upstream::H1(tokio::sync::Mutex::new(send)));
        let guest = hyper::server::conn::http1::Builder::new()
            .serve_connection(
                TokioIo::new(guest_tls),
                hyper::service::service_fn(move |req| p.clone().handle(req)),
            )
            .with_upgrades();
        // Both legs in this one task: each response frame passes from the upstream reader to
        // the guest writer without waking a task on another thread. The upstream leg ends
        // once the guest's is over and has dropped the proxy (and with it the sender).
        let upstream = async {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        };
        tokio::join!(guest, upstream).0
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "terminated connection ended with an error");
    }
}

async fn upstream_tls(
    config: Arc<rustls::ClientConfig>,
    target: &Target,
    tcp: TcpStream,
    limit: std::time::Duration,
) -> io::Result<tokio_rustls::client::TlsStream<BufReader<TcpStream>>> {
    let name = match target {
        Target::Ip(ip) => ServerName::IpAddress((*ip).into()),
        Target::Name(h) => ServerName::try_from(h.as_str().to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
    };
    let tcp = BufReader::with_capacity(READ_BUFFER, tcp);
    let connect = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    timeout(limit, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// A stream that first yields bytes already read from it.
struct Prefixed<S> {
    pending: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.pending.get(this.at..)
            && !rest.is_empty()
        {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
