//! The gateway as a whole: shutdown closes open tunnels and records them, connections over
//! the limit get `503`, and the unix listener serves with policy swaps applying to new
//! connections.
//!
//! Part of the end-to-end tests in `serve/tests.rs`, whose harness and fake upstreams it uses.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};
use tokio::sync::watch;

use super::{ESTABLISHED, EchoServer, Harness, WAIT, open_tunnel, read_all, text};
use crate::testutil::{DnsServer, RecordingEvents};
use crate::{Gateway, GatewayConfig, NetDecision, dns_resolver};

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
