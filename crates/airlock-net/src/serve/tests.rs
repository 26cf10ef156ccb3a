//! End-to-end tests of the gateway on loopback: a TCP (or unix) listener served by
//! [`Gateway`], local upstream servers, and a local DNS server that counts queries.
//!
//! This file holds what every topic shares (the [`Harness`] around a served gateway, the fake
//! upstreams, small readers of replies); the tests themselves sit in `tests/` by topic:
//! `http.rs` (plain HTTP), `tunnel.rs` (CONNECT and SNI), `policy.rs` (name and address
//! decisions), `hostile.rs` (malformed and slow input), `listener.rs` (limits, shutdown, unix
//! listener, policy swaps).
#![allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]

mod hostile;
mod http;
mod listener;
mod policy;
mod terminate;
mod tunnel;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::*;
use crate::testutil::{DnsServer, RecordingEvents};
use crate::{NetDecision, NetEvent, dns_resolver};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    addr: SocketAddr,
    gateway: Gateway,
    events: Arc<RecordingEvents>,
    dns: DnsServer,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Harness {
    async fn start(policy: &str, records: &[(&str, IpAddr)]) -> Self {
        Self::with_config(policy, records, GatewayConfig::default()).await
    }

    async fn with_config(policy: &str, records: &[(&str, IpAddr)], config: GatewayConfig) -> Self {
        let policy = airlock_policy::load_str(policy, Path::new("test.toml")).unwrap();
        let dns = DnsServer::start(records).await.unwrap();
        let events = RecordingEvents::new();
        let gateway = Gateway::with_config(
            Arc::new(policy),
            dns_resolver(dns.addr()),
            events.clone(),
            config,
        );
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, rx) = watch::channel(false);
        let gw = gateway.clone();
        let task = tokio::spawn(async move { gw.serve_tcp(listener, rx).await });
        Self {
            addr,
            gateway,
            events,
            dns,
            shutdown,
            task,
        }
    }

    /// Sends `request`, half-closes nothing, and reads until the gateway closes.
    async fn exchange(&self, request: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        s.write_all(request).await.unwrap();
        read_all(&mut s).await
    }

    /// The `n`th event (waiting for it), with its duration zeroed for comparison.
    async fn event(&self, n: usize) -> NetEvent {
        let events = self.events.wait_for(n + 1).await;
        let mut ev = events
            .get(n)
            .cloned()
            .unwrap_or_else(|| panic!("no event {n}: {events:?}"));
        ev.duration_ms = 0;
        ev
    }

    async fn stop(self) -> Counters {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
        self.gateway.counters()
    }
}

async fn read_all<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("gateway did not close the connection");
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn event(
    kind: &'static str,
    host: &str,
    port: u16,
    decision: NetDecision,
    rule: &str,
    reason: &'static str,
) -> NetEvent {
    NetEvent {
        kind,
        host: host.into(),
        port,
        ip: None,
        method: None,
        path: None,
        status: None,
        decision,
        rule: rule.into(),
        reason,
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: 0,
        credential: None,
    }
}

/// A plain-HTTP server: records each request (head and `Content-Length` body, or the raw
/// bytes of a chunked one up to its end) and answers `body`.
struct HttpServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    accepted: Arc<AtomicUsize>,
}

impl HttpServer {
    async fn start(body: &'static [u8]) -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (reqs, count) = (requests.clone(), accepted.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let reqs = reqs.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = text(&buf[..end]).to_ascii_lowercase();
                            let want = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .and_then(|v| v.parse::<usize>().ok())
                                .unwrap_or(0);
                            let chunked = head.contains("transfer-encoding: chunked");
                            let body = &buf[end + 4..];
                            let complete = if chunked {
                                body.ends_with(b"0\r\n\r\n")
                            } else {
                                body.len() >= want
                            };
                            if complete {
                                break;
                            }
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend(&chunk[..n]),
                        }
                    }
                    reqs.lock().unwrap().push(buf);
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                    let _ = s.write_all(body).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Self {
            addr,
            requests,
            accepted,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| text(r))
            .collect()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// An echo server that counts connections.
struct EchoServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl EchoServer {
    async fn start() -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Self { addr, accepted }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// Sends CONNECT and reads exactly the 200 line; returns the open stream.
async fn open_tunnel(gateway: SocketAddr, target: &str) -> TcpStream {
    let mut s = TcpStream::connect(gateway).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = vec![0u8; ESTABLISHED.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text(&got), text(ESTABLISHED));
    s
}

fn tls_config(port: u16) -> GatewayConfig {
    GatewayConfig {
        tls_ports: vec![port],
        ..GatewayConfig::default()
    }
}
