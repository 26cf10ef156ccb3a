//! End-to-end tests of the gateway on loopback: a TCP (or unix) listener served by
//! [`Gateway`], local upstream servers, and a local DNS server that counts queries.
#![allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::*;
use crate::testutil::{DnsServer, RecordingEvents, client_hello, split_records};
use crate::{NetDecision, NetEvent, dns_resolver};
use airlock_audit::kind;

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

#[tokio::test]
async fn plain_http_get_returns_the_body() {
    let upstream = HttpServer::start(b"hello from upstream").await;
    let port = upstream.port();
    let h = Harness::start(&format!("[network]\nallow = [\"127.0.0.1:{port}\"]\n"), &[]).await;
    let response = h
        .exchange(
            format!(
                "GET http://127.0.0.1:{port}/greeting?lang=en HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: test\r\nProxy-Connection: Keep-Alive\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    let response = text(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.ends_with("\r\n\r\nhello from upstream"),
        "{response}"
    );
    let forwarded = format!(
        "GET /greeting?lang=en HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: test\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(upstream.requests(), vec![forwarded.clone()]);
    assert_eq!(
        h.event(0).await,
        NetEvent {
            ip: Some(LOCALHOST),
            method: Some("GET".into()),
            path: Some("/greeting?lang=en".into()),
            status: Some(200),
            bytes_up: forwarded.len() as u64,
            bytes_down: response.len() as u64,
            ..event(
                kind::NET_HTTP,
                "127.0.0.1",
                port,
                NetDecision::Allow,
                &format!("network.allow[0] \"127.0.0.1:{port}\""),
                "allowed"
            )
        }
    );
    assert_eq!(h.dns.queries(), 0, "an address literal needs no lookup");
    let counters = h.stop().await;
    assert_eq!(
        counters,
        Counters {
            connections: 1,
            active: 0,
            over_limit: 0,
            requests: 1,
            allowed: 1,
            denied: 0,
            errors: 0,
            bytes_up: forwarded.len() as u64,
            bytes_down: response.len() as u64,
        }
    );
}

#[tokio::test]
async fn plain_http_by_name_is_resolved_on_the_host() {
    let upstream = HttpServer::start(b"by name").await;
    let port = upstream.port();
    let h = Harness::start(
        &format!("[network]\nallow = [\"web.test:{port}\"]\nallow_private = true\n"),
        &[("web.test", LOCALHOST)],
    )
    .await;
    let response = text(
        &h.exchange(
            format!("GET http://WEB.test:{port}/ HTTP/1.1\r\nHost: web.test:{port}\r\n\r\n")
                .as_bytes(),
        )
        .await,
    );
    assert!(response.ends_with("by name"), "{response}");
    let ev = h.event(0).await;
    assert_eq!(
        (ev.host.as_str(), ev.ip, ev.decision, ev.rule.as_str()),
        (
            "web.test",
            Some(LOCALHOST),
            NetDecision::Allow,
            format!("network.allow[0] \"web.test:{port}\"").as_str()
        )
    );
    assert_eq!(h.dns.queries(), 2, "one A and one AAAA query");
    h.stop().await;
}

#[tokio::test]
async fn request_bodies_are_forwarded_and_pipelined_requests_are_not() {
    let upstream = HttpServer::start(b"ok").await;
    let port = upstream.port();
    let h = Harness::start(&format!("[network]\nallow = [\"127.0.0.1:{port}\"]\n"), &[]).await;
    let smuggled =
        format!("GET http://127.0.0.1:{port}/admin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let fixed = format!(
        "POST http://127.0.0.1:{port}/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 5\r\n\r\nhello{smuggled}"
    );
    assert!(text(&h.exchange(fixed.as_bytes()).await).ends_with("ok"));
    let chunked = format!(
        "POST http://127.0.0.1:{port}/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}"
    );
    assert!(text(&h.exchange(chunked.as_bytes()).await).ends_with("ok"));
    // Give the upstream a moment: anything smuggled would arrive after the first request.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        upstream.requests(),
        vec![
            format!(
                "POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
            ),
            format!(
                "POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            ),
        ]
    );
    // A malformed chunked body stops forwarding and is recorded as a denial.
    let bad = format!(
        "POST http://127.0.0.1:{port}/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    );
    h.exchange(bad.as_bytes()).await;
    let ev = h.event(2).await;
    assert_eq!(
        (ev.decision, ev.rule.as_str(), ev.reason),
        (NetDecision::Deny, "egress.request", "malformed_request")
    );
    h.stop().await;
}

#[tokio::test]
async fn connect_tunnel_carries_bytes_both_ways() {
    let echo = EchoServer::start().await;
    let port = echo.port();
    let h = Harness::start(&format!("[network]\nallow = [\"127.0.0.1:{port}\"]\n"), &[]).await;
    let mut s = open_tunnel(h.addr, &format!("127.0.0.1:{port}")).await;
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&payload).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let recv = async {
        tokio::time::timeout(WAIT, r.read_to_end(&mut back))
            .await
            .unwrap()
            .unwrap();
    };
    tokio::join!(send, recv);
    assert!(
        back == payload,
        "echoed {} of {} bytes",
        back.len(),
        payload.len()
    );
    assert_eq!(
        h.event(0).await,
        NetEvent {
            ip: Some(LOCALHOST),
            method: Some("CONNECT".into()),
            status: Some(200),
            bytes_up: payload.len() as u64,
            bytes_down: payload.len() as u64,
            ..event(
                kind::NET_CONNECT,
                "127.0.0.1",
                port,
                NetDecision::Allow,
                &format!("network.allow[0] \"127.0.0.1:{port}\""),
                "allowed"
            )
        }
    );
    h.stop().await;
}

fn tls_config(port: u16) -> GatewayConfig {
    GatewayConfig {
        tls_ports: vec![port],
        ..GatewayConfig::default()
    }
}

#[tokio::test]
async fn tls_tunnel_with_matching_sni_is_spliced() {
    let echo = EchoServer::start().await;
    let port = echo.port();
    let h = Harness::with_config(
        &format!("[network]\nallow = [\"tls.test:{port}\"]\nallow_private = true\n"),
        &[("tls.test", LOCALHOST)],
        tls_config(port),
    )
    .await;
    let mut s = open_tunnel(h.addr, &format!("tls.test:{port}")).await;
    // Spelling differs, canonical form matches; the hello is split over three records.
    let hello = split_records(&client_hello(Some("TLS.Test.")), 3);
    s.write_all(&hello).await.unwrap();
    let mut back = vec![0u8; hello.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, hello);
    drop(s);
    let ev = h.event(0).await;
    assert_eq!(
        (ev.decision, ev.rule.as_str(), ev.bytes_up),
        (
            NetDecision::Allow,
            format!("network.allow[0] \"tls.test:{port}\"").as_str(),
            hello.len() as u64
        )
    );
    h.stop().await;
}

#[tokio::test]
async fn tls_tunnel_with_another_sni_is_closed_and_denied() {
    let echo = EchoServer::start().await;
    let port = echo.port();
    let h = Harness::with_config(
        &format!("[network]\nallow = [\"tls.test:{port}\"]\nallow_private = true\n"),
        &[("tls.test", LOCALHOST)],
        tls_config(port),
    )
    .await;
    let target = format!("tls.test:{port}");
    let cases: [(Vec<u8>, &str); 4] = [
        (client_hello(Some("evil.test")), "sni_mismatch"),
        (client_hello(None), "sni_missing"),
        (client_hello(Some("127.0.0.1")), "sni_mismatch"),
        (
            b"GET / HTTP/1.1\r\nHost: tls.test\r\n\r\n".to_vec(),
            "not_tls",
        ),
    ];
    for (i, (first_bytes, why)) in cases.iter().enumerate() {
        let mut s = open_tunnel(h.addr, &target).await;
        s.write_all(first_bytes).await.unwrap();
        assert_eq!(read_all(&mut s).await, b"", "{why}: nothing comes back");
        assert_eq!(
            h.event(i).await,
            NetEvent {
                ip: Some(LOCALHOST),
                method: Some("CONNECT".into()),
                status: Some(200),
                ..event(
                    kind::NET_CONNECT,
                    "tls.test",
                    port,
                    NetDecision::Deny,
                    "egress.sni",
                    why
                )
            }
        );
    }
    // The upstream connection is made before the hello arrives, and dropped unused.
    assert_eq!(echo.accepted(), cases.len());
    h.stop().await;
}

#[tokio::test]
async fn denied_names_get_403_and_never_reach_dns() {
    let h = Harness::start(
        "[network]\nallow = [\"allowed.test\"]\ndeny = [\"blocked.test\"]\n",
        &[("denied.test", LOCALHOST), ("blocked.test", LOCALHOST)],
    )
    .await;
    let response = text(
        &h.exchange(b"CONNECT denied.test:443 HTTP/1.1\r\nHost: denied.test:443\r\n\r\n")
            .await,
    );
    assert!(
        response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{response}"
    );
    assert_eq!(
        header(&response, "X-Airlock-Decision"),
        Some("deny; rule=network.default")
    );
    assert!(
        response.ends_with(
            "\r\n\r\nairlock egress gateway: deny (not_allowed, rule network.default)\n"
        )
    );
    assert_eq!(
        h.event(0).await,
        NetEvent {
            method: Some("CONNECT".into()),
            status: Some(403),
            ..event(
                kind::NET_CONNECT,
                "denied.test",
                443,
                NetDecision::Deny,
                "network.default",
                "not_allowed"
            )
        }
    );
    let response = text(
        &h.exchange(b"GET http://blocked.test/x HTTP/1.1\r\nHost: blocked.test\r\n\r\n")
            .await,
    );
    assert_eq!(
        header(&response, "X-Airlock-Decision"),
        Some("deny; rule=network.deny[0] \"blocked.test\"")
    );
    assert_eq!(
        h.event(1).await,
        NetEvent {
            method: Some("GET".into()),
            path: Some("/x".into()),
            status: Some(403),
            ..event(
                kind::NET_HTTP,
                "blocked.test",
                80,
                NetDecision::Deny,
                "network.deny[0] \"blocked.test\"",
                "denied"
            )
        }
    );
    assert_eq!(h.dns.queries(), 0);
    let counters = h.stop().await;
    assert_eq!((counters.requests, counters.denied), (2, 2));
}

#[tokio::test]
async fn names_resolving_to_private_addresses_are_refused_before_connecting() {
    let upstream = HttpServer::start(b"must not be reached").await;
    let port = upstream.port();
    let h = Harness::start(
        "[network]\nallow = [\"inside.test\", \"loop.test\", \"meta.test\"]\n",
        &[
            ("inside.test", IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            ("loop.test", LOCALHOST),
            ("meta.test", IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))),
        ],
    )
    .await;
    let cases = [
        (
            "inside.test",
            80,
            "network.allow_private",
            "private_address",
        ),
        (
            "loop.test",
            port,
            "network.allow_private",
            "private_address",
        ),
        ("meta.test", 80, "network.metadata", "metadata_address"),
    ];
    for (i, (name, p, rule, why)) in cases.iter().enumerate() {
        let response = text(
            &h.exchange(format!("CONNECT {name}:{p} HTTP/1.1\r\n\r\n").as_bytes())
                .await,
        );
        assert!(response.starts_with("HTTP/1.1 403 "), "{name}: {response}");
        assert_eq!(
            header(&response, "X-Airlock-Decision"),
            Some(format!("deny; rule={rule}").as_str())
        );
        assert!(response.contains(why), "{response}");
        assert_eq!(
            h.event(i).await,
            NetEvent {
                method: Some("CONNECT".into()),
                status: Some(403),
                ..event(kind::NET_CONNECT, name, *p, NetDecision::Deny, rule, why)
            }
        );
    }
    // Plain HTTP takes the same path.
    let response = text(
        &h.exchange(
            format!("GET http://loop.test:{port}/ HTTP/1.1\r\nHost: loop.test:{port}\r\n\r\n")
                .as_bytes(),
        )
        .await,
    );
    assert!(response.starts_with("HTTP/1.1 403 "), "{response}");
    assert_eq!(
        upstream.accepted(),
        0,
        "nothing connected to the private address"
    );
    assert_eq!(h.dns.queries(), 8);
    h.stop().await;
}

#[tokio::test]
async fn host_header_must_name_the_target() {
    let upstream = HttpServer::start(b"x").await;
    let port = upstream.port();
    let h = Harness::start(&format!("[network]\nallow = [\"127.0.0.1:{port}\"]\n"), &[]).await;
    for (i, host) in ["other.test", "127.0.0.1", "127.0.0.1:1"]
        .iter()
        .enumerate()
    {
        let response = text(
            &h.exchange(
                format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
            )
            .await,
        );
        assert!(response.starts_with("HTTP/1.1 403 "), "{host}: {response}");
        assert_eq!(
            header(&response, "X-Airlock-Decision"),
            Some("deny; rule=egress.host_header")
        );
        let ev = h.event(i).await;
        assert_eq!(
            (ev.decision, ev.reason),
            (NetDecision::Deny, "host_mismatch")
        );
    }
    // Another spelling of the same address is the same host.
    let response = text(
        &h.exchange(
            format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 0x7f.1:{port}\r\n\r\n")
                .as_bytes(),
        )
        .await,
    );
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert_eq!(upstream.accepted(), 1);
    h.stop().await;
}

#[tokio::test]
async fn hostile_input_is_rejected_cleanly_and_the_gateway_keeps_serving() {
    let echo = EchoServer::start().await;
    let port = echo.port();
    let config = GatewayConfig {
        head_timeout: Duration::from_millis(300),
        hello_timeout: Duration::from_millis(300),
        ..tls_config(port)
    };
    let h = Harness::with_config(
        &format!("[network]\nallow = [\"127.0.0.1:{port}\"]\n"),
        &[],
        config,
    )
    .await;
    let mut n = 0;

    for line in [
        "CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",
        "CONNECT  127.0.0.1:1 HTTP/1.1\r\n\r\n",
        "CONNECT 127.0.0.1:99999 HTTP/1.1\r\n\r\n",
        "CONNECT user@host:443 HTTP/1.1\r\n\r\n",
        "CONNECT host:443 HTTP/1.1\nHost: host\n\n",
        "CONNECT host:443 HTTP/9.9\r\n\r\n",
        "CONNECT host:443 HTTP/1.1\r\nX: a\0b\r\n\r\n",
        "CONNECT host:443 HTTP/1.1\r\n folded\r\n\r\n",
        "\x16\x03\x01\x00\x05hello\r\n",
    ] {
        let response = text(&h.exchange(line.as_bytes()).await);
        assert!(
            response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{line:?}: {response}"
        );
        assert_eq!(
            header(&response, "X-Airlock-Decision"),
            Some("deny; rule=egress.request")
        );
        let ev = h.event(n).await;
        assert_eq!(
            (ev.decision, ev.rule.as_str(), ev.reason),
            (NetDecision::Deny, "egress.request", "malformed_request"),
            "{line:?}"
        );
        n += 1;
    }

    // A megabyte of header: refused after the first 16 KiB, without reading it all.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let (mut r, mut w) = s.split();
    let mut big = b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1 << 20));
    let send = async {
        let _ = w.write_all(&big).await;
    };
    let mut got = Vec::new();
    let recv = async {
        let _ = tokio::time::timeout(WAIT, r.read_to_end(&mut got)).await;
    };
    tokio::join!(send, recv);
    let got = text(&got);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 400 "), "{got}");
    let ev = h.event(n).await;
    assert_eq!(
        (ev.decision, ev.reason),
        (NetDecision::Deny, "malformed_request")
    );
    n += 1;

    // Truncated ClientHellos: the tunnel waits for the rest, then gives up.
    let hello = client_hello(Some("127.0.0.1"));
    for cut in [1, 5, hello.len() / 2, hello.len() - 1] {
        let mut s = open_tunnel(h.addr, &format!("127.0.0.1:{port}")).await;
        s.write_all(&hello[..cut]).await.unwrap();
        assert_eq!(read_all(&mut s).await, b"", "cut {cut}");
        let ev = h.event(n).await;
        assert_eq!(
            (ev.decision, ev.rule.as_str(), ev.reason),
            (NetDecision::Deny, "egress.sni", "hello_timeout"),
            "cut {cut}"
        );
        n += 1;
    }
    // The guest gives up halfway through its hello.
    let mut s = open_tunnel(h.addr, &format!("127.0.0.1:{port}")).await;
    s.write_all(&hello[..10]).await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(read_all(&mut s).await, b"");
    let ev = h.event(n).await;
    assert_eq!(
        (ev.decision, ev.reason),
        (NetDecision::Error, "incomplete_request")
    );
    n += 1;

    // Slowloris: connect and send nothing, or half a line.
    for opening in [&b""[..], b"GET http://127.0.0.1/ HT"] {
        let started = std::time::Instant::now();
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        s.write_all(opening).await.unwrap();
        let response = text(&read_all(&mut s).await);
        assert!(response.starts_with("HTTP/1.1 408 "), "{response}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let ev = h.event(n).await;
        assert_eq!(
            (ev.decision, ev.reason),
            (NetDecision::Error, "request_timeout")
        );
        n += 1;
    }

    // A client that connects and leaves without a byte leaves no event.
    drop(TcpStream::connect(h.addr).await.unwrap());

    // An IP-literal tunnel with a hello without SNI is fine, and the gateway still serves.
    let mut s = open_tunnel(h.addr, &format!("127.0.0.1:{port}")).await;
    let plain = client_hello(None);
    s.write_all(&plain).await.unwrap();
    let mut back = vec![0u8; plain.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, plain);
    drop(s);
    let ev = h.event(n).await;
    assert_eq!(ev.decision, NetDecision::Allow);
    n += 1;

    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        h.events.events().len(),
        n,
        "one event per request, none for the silent client"
    );
    let counters = h.stop().await;
    assert_eq!(counters.requests, n as u64);
    assert_eq!(counters.active, 0);
}

#[tokio::test]
async fn shutdown_closes_open_tunnels_and_records_them() {
    let echo = EchoServer::start().await;
    let port = echo.port();
    let h = Harness::start(&format!("[network]\nallow = [\"127.0.0.1:{port}\"]\n"), &[]).await;
    let mut s = open_tunnel(h.addr, &format!("127.0.0.1:{port}")).await;
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).await.unwrap();
    // An idle connection that has not sent its head yet.
    let mut idle = TcpStream::connect(h.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let events = h.events.clone();
    let counters = h.stop().await;
    assert_eq!(read_all(&mut s).await, b"");
    assert_eq!(read_all(&mut idle).await, b"");
    let recorded = events.events();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        (
            recorded[0].decision,
            recorded[0].bytes_up,
            recorded[0].bytes_down
        ),
        (NetDecision::Allow, 4, 4)
    );
    assert_eq!((counters.active, counters.connections), (0, 2));
}

#[tokio::test]
async fn connections_over_the_limit_get_503() {
    let config = GatewayConfig {
        max_connections: 2,
        ..GatewayConfig::default()
    };
    let h = Harness::with_config("", &[], config).await;
    let _a = TcpStream::connect(h.addr).await.unwrap();
    let _b = TcpStream::connect(h.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let response = text(&h.exchange(b"CONNECT a.test:443 HTTP/1.1\r\n\r\n").await);
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert_eq!(h.gateway.counters().over_limit, 1);
    drop((_a, _b));
    h.stop().await;
}

#[tokio::test]
async fn unix_listener_serves_and_set_policy_applies_to_new_connections() {
    let echo = EchoServer::start().await;
    let port = echo.port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vsock_3128");
    let listener = UnixListener::bind(&path).unwrap();
    let closed = airlock_policy::load_str("", Path::new("test.toml")).unwrap();
    let events = RecordingEvents::new();
    let dns = DnsServer::start(&[]).await.unwrap();
    let gateway = Gateway::new(Arc::new(closed), dns_resolver(dns.addr()), events.clone());
    let (tx, rx) = watch::channel(false);
    let gw = gateway.clone();
    let task = tokio::spawn(async move { gw.serve_unix(listener, rx).await });

    let request = format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n");
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    assert!(text(&read_all(&mut s).await).starts_with("HTTP/1.1 403 "));

    let open = format!("[network]\nallow = [\"127.0.0.1:{port}\"]\n");
    gateway.set_policy(Arc::new(
        airlock_policy::load_str(&open, Path::new("test.toml")).unwrap(),
    ));
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    s.write_all(b"over unix").await.unwrap();
    let mut got = vec![0u8; ESTABLISHED.len() + 9];
    tokio::time::timeout(WAIT, s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text(&got), format!("{}over unix", text(ESTABLISHED)));
    drop(s);

    let recorded = events.wait_for(2).await;
    assert_eq!(
        recorded.iter().map(|e| e.decision).collect::<Vec<_>>(),
        [NetDecision::Deny, NetDecision::Allow]
    );
    tx.send(true).unwrap();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}
