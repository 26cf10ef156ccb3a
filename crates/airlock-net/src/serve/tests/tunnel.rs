//! CONNECT tunnels through the gateway: bytes flow both ways and are counted, and on a TLS
//! port the ClientHello's server name must match the CONNECT host or the tunnel is closed.
//!
//! Part of the end-to-end tests in `serve/tests.rs`, whose harness and fake upstreams it uses.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{EchoServer, Harness, LOCALHOST, WAIT, event, open_tunnel, read_all, tls_config};
use crate::testutil::{client_hello, split_records};
use crate::{NetDecision, NetEvent};
use airlock_audit::kind;

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
