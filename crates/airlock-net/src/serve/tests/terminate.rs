//! TLS termination: a real HTTPS upstream (its certificate from a test CA the gateway is told
//! to trust), a guest-side client that trusts the sandbox CA, over HTTP/1.1 and HTTP/2.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::*;
use crate::Termination;
use crate::secrets::{Refresh, SecretSpec, Secrets};
use crate::tls::{self, Authority};
use airlock_audit::kind;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    api_key: Option<String>,
    body: Vec<u8>,
    version: hyper::Version,
}

struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    ca: tls::AuthorityPem,
    /// Lets `/sse` send its second event.
    gate: Arc<tokio::sync::Notify>,
}

type TestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

fn boxed(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).boxed_unsync()
}

/// A body fed by a channel: each message is a frame, sent as it comes.
struct Chan(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Chan {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|m| m.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Server-sent events: the first now, the second once `gate` is notified.
fn sse(gate: Arc<tokio::sync::Notify>) -> Response<TestBody> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let _ = tx.send(Bytes::from_static(b"data: first\n\n")).await;
        gate.notified().await;
        let _ = tx.send(Bytes::from_static(b"data: second\n\n")).await;
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Chan(rx).boxed_unsync())
        .unwrap()
}

impl Upstream {
    async fn start() -> Upstream {
        let ca = Authority::generate().unwrap();
        let authority = Authority::from_pem(&ca).unwrap();
        let host = airlock_policy::Target::parse("127.0.0.1").unwrap();
        let config = authority
            .server_config(&host, &[tls::H2, tls::HTTP11])
            .unwrap();
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let gate = Arc::new(tokio::sync::Notify::new());
        let sse_gate = gate.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                let log = log.clone();
                let sse_gate = sse_gate.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |mut req: Request<hyper::body::Incoming>| {
                            let log = log.clone();
                            let sse_gate = sse_gate.clone();
                            async move {
                                if req.headers().contains_key("upgrade") {
                                    return Ok(echo_upgrade(&mut req));
                                }
                                if req.uri().path() == "/sse" {
                                    return Ok(sse(sse_gate));
                                }
                                let header = |n: &str| {
                                    req.headers()
                                        .get(n)
                                        .and_then(|v| v.to_str().ok())
                                        .map(str::to_owned)
                                };
                                let mut seen = Seen {
                                    method: req.method().to_string(),
                                    path: req.uri().path().to_owned(),
                                    api_key: header("x-api-key"),
                                    body: Vec::new(),
                                    version: req.version(),
                                };
                                let body = req.into_body().collect().await;
                                match body {
                                    Ok(b) => seen.body = b.to_bytes().to_vec(),
                                    // The gateway broke the body off: nothing of it counts.
                                    Err(_) => return Err::<Response<TestBody>, _>("cut"),
                                }
                                log.lock().unwrap().push(seen);
                                Ok(Response::new(boxed(Bytes::from_static(b"upstream ok"))))
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            ca,
            gate,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers a WebSocket-style upgrade with `101` and echoes the bytes that follow.
fn echo_upgrade(req: &mut Request<hyper::body::Incoming>) -> Response<TestBody> {
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut io = TokioIo::new(up);
        let mut buf = [0u8; 64];
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(boxed(Bytes::new()))
        .unwrap()
}

/// Hands out scripted values, counting the asks.
struct Script(Mutex<VecDeque<String>>, AtomicU32);

impl Refresh for Script {
    fn refresh<'a>(
        &'a self,
        _name: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>
    {
        self.1.fetch_add(1, Ordering::SeqCst);
        let next = self.0.lock().unwrap().pop_front();
        Box::pin(async move { next.ok_or_else(|| "no more".to_owned()) })
    }
}

const PLACEHOLDER: &str = "airlock-api-00112233445566778899aabbccddeeff";

struct Setup {
    h: Harness,
    up: Upstream,
    sandbox_ca: tls::AuthorityPem,
    script: Arc<Script>,
}

async fn setup(trust_upstream: bool) -> Setup {
    let up = Upstream::start().await;
    let port = up.addr.port();
    let policy_text = format!(
        r#"
[network]
allow = ["127.0.0.1:{port}"]
allow_private = true
[[network.http]]
host = "127.0.0.1:{port}"
methods = ["POST"]
path = "/v1/forbidden"
action = "deny"
[[network.credentials]]
name = "api"
host = "127.0.0.1:{port}"
header = "x-api-key"
source = "command:token"
ttl = "1s"
"#
    );
    let h = Harness::start(&policy_text, &[]).await;
    let policy = airlock_policy::load_str(&policy_text, Path::new("test.toml")).unwrap();
    let sandbox_ca = Authority::generate().unwrap();
    let roots = if trust_upstream {
        tls::roots(std::slice::from_ref(&up.ca.cert)).0
    } else {
        rustls::RootCertStore::empty()
    };
    let script = Arc::new(Script(
        Mutex::new(VecDeque::from(["real-key-2".to_owned()])),
        AtomicU32::new(0),
    ));
    h.gateway.set_termination(Termination::new(
        Authority::from_pem(&sandbox_ca).unwrap(),
        Arc::new(roots),
        Arc::new(Secrets::new(
            &policy,
            vec![SecretSpec {
                name: "api".into(),
                placeholder: PLACEHOLDER.into(),
                value: Some("real-key-1".into()),
            }],
            Some(script.clone()),
        )),
    ));
    Setup {
        h,
        up,
        sandbox_ca,
        script,
    }
}

enum Client {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Client {
    /// CONNECT through the gateway, then TLS trusting only the sandbox CA, offering `alpn`.
    async fn open(s: &Setup, alpn: &[&[u8]]) -> Client {
        let mut tcp = TcpStream::connect(s.h.addr).await.unwrap();
        let port = s.up.addr.port();
        tcp.write_all(
            format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            tcp.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        assert!(text(&head).starts_with("HTTP/1.1 200"), "{}", text(&head));
        let roots = Arc::new(tls::roots(std::slice::from_ref(&s.sandbox_ca.cert)).0);
        let config = tls::client_config(roots, alpn).unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        let h2 = stream.get_ref().1.alpn_protocol() == Some(tls::H2);
        let io = TokioIo::new(stream);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Client::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn.with_upgrades());
            Client::H1(send)
        }
    }

    async fn send(
        &mut self,
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let uri = match self {
            Client::H1(_) => path.to_owned(),
            Client::H2(_) => format!("https://127.0.0.1:{port}{path}"),
        };
        let mut req = Request::builder().method(method).uri(uri);
        if matches!(self, Client::H1(_)) {
            req = req.header("host", format!("127.0.0.1:{port}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let resp = match self {
            Client::H1(s) => s.send_request(req).await,
            Client::H2(s) => s.send_request(req).await,
        }
        .unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, text(&body))
    }
}

/// Events of the given kind, waiting until there are `n`.
async fn of_kind(h: &Harness, kind: &str, n: usize) -> Vec<NetEvent> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found: Vec<NetEvent> = h
            .events
            .events()
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect();
        if found.len() >= n || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn credentials_are_injected_over_http1_and_http2_and_refreshed_after_their_ttl() {
    let s = setup(true).await;
    let port = s.up.addr.port();
    for (alpn, version) in [
        (&[tls::HTTP11][..], hyper::Version::HTTP_11),
        (&[tls::H2, tls::HTTP11][..], hyper::Version::HTTP_2),
    ] {
        let mut c = Client::open(&s, alpn).await;
        let (status, body) = c
            .send(port, "GET", "/v1/ok?x=1", &[("x-api-key", PLACEHOLDER)], "")
            .await;
        assert_eq!((status, body.as_str()), (200, "upstream ok"));
        let last = s.up.seen().pop().unwrap();
        assert_eq!(last.api_key.as_deref(), Some("real-key-1"));
        assert_eq!(
            (last.method.as_str(), last.path.as_str()),
            ("GET", "/v1/ok")
        );
        assert_eq!(last.version, version);
        // Without the placeholder the request passes unchanged.
        let (status, _) = c.send(port, "GET", "/v1/plain", &[], "").await;
        assert_eq!(status, 200);
        assert_eq!(s.up.seen().pop().unwrap().api_key, None);
    }
    let injected = of_kind(&s.h, kind::CREDENTIAL_INJECT, 2).await;
    assert_eq!(injected.len(), 2, "{injected:?}");
    for e in &injected {
        assert_eq!(e.credential.as_deref(), Some("api"));
        assert_eq!(e.method.as_deref(), Some("GET"));
        assert_eq!(e.path.as_deref(), Some("/v1/ok?x=1"));
        assert_eq!(e.status, Some(200));
        assert_eq!(e.rule, "network.credentials[0] \"api\"");
        assert_eq!(e.reason, crate::reason::INJECTED);
        assert!(e.bytes_down > 0);
    }
    assert_eq!(s.script.1.load(Ordering::SeqCst), 0);

    // After the ttl the supervisor is asked again and the new value goes out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut c = Client::open(&s, &[tls::HTTP11]).await;
    let (status, _) = c
        .send(port, "GET", "/v1/ok", &[("x-api-key", PLACEHOLDER)], "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.up.seen().pop().unwrap().api_key.as_deref(),
        Some("real-key-2")
    );
    assert_eq!(s.script.1.load(Ordering::SeqCst), 1);
    // Nothing the gateway recorded holds a value.
    for e in s.h.events.events() {
        assert!(!format!("{e:?}").contains("real-key"), "{e:?}");
    }
}

#[tokio::test]
async fn placeholders_elsewhere_and_ruled_out_requests_never_reach_the_upstream() {
    let s = setup(true).await;
    let port = s.up.addr.port();
    let mut c = Client::open(&s, &[tls::HTTP11]).await;
    // An HTTP rule on the terminated host.
    let (status, body) = c.send(port, "POST", "/v1/forbidden", &[], "x").await;
    assert_eq!(status, 403, "{body}");
    // The placeholder in another header, in the URL, in the body.
    let bearer = format!("Bearer {PLACEHOLDER}");
    let (status, _) = c
        .send(
            port,
            "GET",
            "/v1/ok",
            &[("authorization", bearer.as_str())],
            "",
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = c
        .send(port, "GET", &format!("/v1/ok?key={PLACEHOLDER}"), &[], "")
        .await;
    assert_eq!(status, 403);
    let body = format!("{{\"prompt\":\"{}\"}}", "x".repeat(70_000) + PLACEHOLDER);
    let mut c = Client::open(&s, &[tls::HTTP11]).await;
    let (status, _) = c.send(port, "POST", "/v1/ok", &[], &body).await;
    assert_eq!(status, 403);
    // The upstream saw none of them.
    let seen = s.up.seen();
    assert!(seen.is_empty(), "{seen:?}");

    let denied = of_kind(&s.h, kind::NET_HTTP, 1).await;
    assert_eq!(denied[0].decision, NetDecision::Deny);
    assert_eq!(denied[0].path.as_deref(), Some("/v1/forbidden"));
    assert!(
        denied[0].rule.starts_with("network.http[0]"),
        "{}",
        denied[0].rule
    );
    let leaks = of_kind(&s.h, kind::CREDENTIAL_LEAK_ATTEMPT, 3).await;
    let reasons: Vec<&str> = leaks.iter().map(|e| e.reason).collect();
    assert_eq!(
        reasons,
        [
            crate::reason::LEAK_HEADER,
            crate::reason::LEAK_URL,
            crate::reason::LEAK_BODY
        ]
    );
    for e in &leaks {
        assert_eq!(e.decision, NetDecision::Deny);
        assert_eq!(e.credential.as_deref(), Some("api"));
        assert_eq!(e.status, Some(403));
    }
}

#[tokio::test]
async fn an_upstream_certificate_that_does_not_verify_closes_the_tunnel() {
    let s = setup(false).await;
    let mut tcp = TcpStream::connect(s.h.addr).await.unwrap();
    let port = s.up.addr.port();
    tcp.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let roots = Arc::new(tls::roots(std::slice::from_ref(&s.sandbox_ca.cert)).0);
    let mut head = [0u8; 39];
    tcp.read_exact(&mut head).await.unwrap();
    let config = tls::client_config(roots, &[tls::HTTP11]).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let r = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await;
    assert!(r.is_err());
    let ev = s.h.event(0).await;
    assert_eq!(ev.kind, kind::NET_CONNECT);
    assert_eq!(ev.decision, NetDecision::Error);
    assert_eq!(
        (ev.rule.as_str(), ev.reason),
        ("egress.tls", crate::reason::UPSTREAM_TLS)
    );
    assert!(s.up.seen().is_empty());
}

#[tokio::test]
async fn an_upgrade_becomes_a_byte_stream_both_ways() {
    let s = setup(true).await;
    let port = s.up.addr.port();
    let Client::H1(mut send) = Client::open(&s, &[tls::HTTP11]).await else {
        panic!("HTTP/1.1 was offered alone");
    };
    let req = Request::builder()
        .uri("/ws")
        .header("host", format!("127.0.0.1:{port}"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    let mut io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    for msg in [&b"ping"[..], b"second frame"] {
        io.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(WAIT, io.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, msg);
    }
    drop(io);
    let ev = of_kind(&s.h, kind::NET_HTTP, 1).await;
    assert_eq!(ev[0].status, Some(101));
    assert_eq!(ev[0].path.as_deref(), Some("/ws"));
    assert!(
        ev[0].bytes_up >= 16 && ev[0].bytes_down >= 16,
        "{:?}",
        ev[0]
    );
}

#[tokio::test]
async fn a_client_that_refuses_the_gateway_certificate_is_recorded() {
    // A pinning client, or one that does not trust the sandbox CA: it trusts only the
    // origin's own CA.
    let s = setup(true).await;
    let mut tcp = TcpStream::connect(s.h.addr).await.unwrap();
    let port = s.up.addr.port();
    tcp.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 39];
    tcp.read_exact(&mut head).await.unwrap();
    let pinned = Arc::new(tls::roots(std::slice::from_ref(&s.up.ca.cert)).0);
    let config = tls::client_config(pinned, &[tls::HTTP11]).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let r = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await;
    assert!(r.is_err());
    let ev = s.h.event(0).await;
    assert_eq!(ev.kind, kind::NET_CONNECT);
    assert_eq!(ev.decision, NetDecision::Error);
    assert_eq!(
        (ev.rule.as_str(), ev.reason),
        ("egress.tls", crate::reason::GUEST_TLS)
    );
    assert!(s.up.seen().is_empty());
}

#[tokio::test]
async fn server_sent_events_stream_through_unbuffered() {
    let s = setup(true).await;
    let port = s.up.addr.port();
    for alpn in [&[tls::HTTP11][..], &[tls::H2, tls::HTTP11][..]] {
        let mut c = Client::open(&s, alpn).await;
        let uri = match &c {
            Client::H1(_) => "/sse".to_owned(),
            Client::H2(_) => format!("https://127.0.0.1:{port}/sse"),
        };
        let req = Request::builder()
            .uri(uri)
            .header("host", format!("127.0.0.1:{port}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = match &mut c {
            Client::H1(send) => send.send_request(req).await,
            Client::H2(send) => send.send_request(req).await,
        }
        .unwrap();
        let mut body = resp.into_body();
        // The first event arrives while the origin still holds the second.
        let first = tokio::time::timeout(WAIT, body.frame()).await.unwrap();
        let first = first.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"data: first\n\n");
        s.up.gate.notify_one();
        let rest = tokio::time::timeout(WAIT, body.collect()).await.unwrap();
        assert_eq!(&rest.unwrap().to_bytes()[..], b"data: second\n\n");
    }
}
