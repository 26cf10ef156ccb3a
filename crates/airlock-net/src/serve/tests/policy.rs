//! The policy's decisions end to end: denied names get a `403` naming the rule and never reach
//! DNS, and allowed names that resolve to private, loopback or metadata addresses are refused
//! before anything connects.
//!
//! Part of the end-to-end tests in `serve/tests.rs`, whose harness and fake upstreams it uses.

use std::net::{IpAddr, Ipv4Addr};

use super::{Harness, HttpServer, LOCALHOST, event, header, text};
use crate::{NetDecision, NetEvent};
use airlock_audit::kind;

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
