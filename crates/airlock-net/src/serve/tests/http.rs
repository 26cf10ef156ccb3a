//! Plain HTTP through the gateway: the request reaches the upstream in origin-form with only
//! its announced body, the response comes back, and the `Host` header must name the target.
//!
//! Part of the end-to-end tests in `serve/tests.rs`, whose harness and fake upstreams it uses.

use std::time::Duration;

use super::{Harness, HttpServer, LOCALHOST, event, header, text};
use crate::{Counters, NetDecision, NetEvent};
use airlock_audit::kind;

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
