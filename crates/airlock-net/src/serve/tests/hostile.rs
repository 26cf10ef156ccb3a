//! Hostile input: malformed heads, oversized heads, truncated or abandoned ClientHellos and
//! slowloris clients are each refused cleanly with one event, and the gateway keeps serving.
//!
//! Part of the end-to-end tests in `serve/tests.rs`, whose harness and fake upstreams it uses.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{EchoServer, Harness, WAIT, header, open_tunnel, read_all, text, tls_config};
use crate::testutil::client_hello;
use crate::{GatewayConfig, NetDecision};

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
