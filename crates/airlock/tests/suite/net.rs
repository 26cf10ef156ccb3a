//! Egress: the guest reaches only what the policy allows, through the host gateway; names are
//! decided before DNS, private addresses and SNI mismatches are refused, and all of it is audited.

use airlock_net::testutil::{DnsServer, client_hello};
use airlock_testkit::audit::{Decision, is, kind};
use airlock_testkit::upstream::Upstream;
use airlock_testkit::{Airlock, text, write_policy};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// The host an egress event names.
fn host_of(e: &airlock_testkit::audit::Event) -> Option<&str> {
    e.net.as_ref().and_then(|n| n.host.as_deref())
}

/// Runs a guest shell script with the proxy forced even for 127.0.0.1 targets.
fn run(a: &Airlock, policy: &str, ws: &Path, script: &str) -> std::process::Output {
    let script = format!("unset no_proxy NO_PROXY; {script}");
    a.run([
        "run",
        "--policy",
        policy,
        "--workspace",
        ws.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &script,
    ])
}

#[test]
fn allowed_http_and_connect_go_through_and_the_rest_gets_403() {
    let a = Airlock::start();
    let upstream = Upstream::hello();
    let port = upstream.port();
    let ws = tempfile::tempdir().unwrap();
    let p = write_policy(
        ws.path(),
        &format!("extends = \"default\"\n[network]\nallow = [\"127.0.0.1:{port}\"]\n"),
    );
    let script = format!(
        "wget -q -O- http://127.0.0.1:{port}/plain; \
         printf 'CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\n\\r\\n' > req; \
         printf 'GET /tunnel HTTP/1.0\\r\\n\\r\\n' >> req; nc 127.0.0.1 3128 < req; \
         printf 'GET http://evil.example/ HTTP/1.1\\r\\nHost: evil.example\\r\\n\\r\\n' | nc 127.0.0.1 3128; \
         nc -w 3 1.1.1.1 80 </dev/null; echo raw=$?"
    );
    let out = run(&a, &p, ws.path(), &script);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("hello from /plain"),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("200 Connection established") && stdout.contains("hello from /tunnel"),
        "{stdout}"
    );
    assert!(stdout.contains("HTTP/1.1 403 Forbidden"), "{stdout}");
    assert!(
        stdout
            .to_ascii_lowercase()
            .contains("x-airlock-decision: deny; rule=network.default"),
        "{stdout}"
    );
    assert!(
        stdout.contains("raw=1"),
        "a raw connection must fail: {stdout}"
    );
    let log = a.audit();
    assert!(log.has(is(kind::NET_HTTP, Decision::Allow)), "{log}");
    assert!(log.has(is(kind::NET_CONNECT, Decision::Allow)), "{log}");
    assert!(
        log.has(|e| e.decision == Some(Decision::Deny)
            && e.rule.as_deref() == Some("network.default")
            && host_of(e) == Some("evil.example")),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn denied_names_are_never_resolved_and_private_answers_are_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dns = rt
        .block_on(DnsServer::start(&[
            ("inside.test", IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            ("loop.test", IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ]))
        .unwrap();
    let ws = tempfile::tempdir().unwrap();
    let p = write_policy(
        ws.path(),
        "extends = \"default\"\n[network]\nallow = [\"inside.test:80\", \"loop.test:80\"]\n",
    );
    let with_dns = |a: &Airlock, script: &str| {
        let script = format!("unset no_proxy NO_PROXY; {script}");
        a.command([
            "run",
            "--policy",
            &p,
            "--workspace",
            ws.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .env("AIRLOCK_DNS", dns.addr().to_string())
        .output()
        .unwrap()
    };

    let a = Airlock::start();
    let out = with_dns(
        &a,
        "wget -q -O- http://denied.test/; wget -q -O- http://other.example:8080/; echo done",
    );
    assert!(text(&out.stdout).contains("done"), "{}", text(&out.stderr));
    assert_eq!(dns.queries(), 0, "a denied name must not reach DNS");
    let log = a.audit();
    assert!(log.has(|e| host_of(e) == Some("denied.test")), "{log}");
    a.assert_clean();

    let a = Airlock::start();
    let out = with_dns(
        &a,
        "wget -q -O- http://inside.test/; echo inside=$?; wget -q -O- http://loop.test/; echo loop=$?",
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("inside=1") && stdout.contains("loop=1"),
        "{stdout}"
    );
    assert!(dns.queries() > 0, "allowed names are resolved on the host");
    let log = a.audit();
    for host in ["inside.test", "loop.test"] {
        assert!(
            log.has(|e| host_of(e) == Some(host) && e.reason.as_deref() == Some("private_address")),
            "{host} not refused as private_address in\n{log}"
        );
    }
    a.assert_clean();
}

#[test]
fn a_connect_whose_sni_names_another_host_is_closed_and_recorded() {
    let a = Airlock::start();
    let upstream = Upstream::hello();
    let port = upstream.port();
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(
        ws.path().join("hello.bin"),
        client_hello(Some("evil.example")),
    )
    .unwrap();
    let p = write_policy(
        ws.path(),
        &format!("extends = \"default\"\n[network]\nallow = [\"127.0.0.1:{port}\"]\n"),
    );
    let script = format!(
        "unset no_proxy NO_PROXY; (printf 'CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\n\\r\\n'; \
         sleep 1; cat hello.bin; sleep 2) | nc 127.0.0.1 3128 | head -c 200; echo; echo end"
    );
    let out = a
        .command([
            "run",
            "--policy",
            &p,
            "--workspace",
            ws.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .env("AIRLOCK_TLS_PORTS", port.to_string())
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("end"), "{}", text(&out.stderr));
    let log = a.audit();
    assert!(
        log.has(|e| is(kind::NET_CONNECT, Decision::Deny)(e)
            && e.rule.as_deref() == Some("egress.sni")
            && e.reason.as_deref() == Some("sni_mismatch")),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn malformed_requests_do_not_take_the_gateway_down() {
    let a = Airlock::start();
    let upstream = Upstream::hello();
    let port = upstream.port();
    let ws = tempfile::tempdir().unwrap();
    let p = write_policy(
        ws.path(),
        &format!("extends = \"default\"\n[network]\nallow = [\"127.0.0.1:{port}\"]\n"),
    );
    let script = format!(
        "printf 'CONNECT nonsense\\r\\n\\r\\n' | nc 127.0.0.1 3128; echo; \
         printf 'BREW coffee HTCPCP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 3128; echo; \
         (printf 'GET http://127.0.0.1:{port}/ HTTP/1.1\\r\\nX-Big: '; head -c 1048576 /dev/zero | tr '\\000' a) | nc 127.0.0.1 3128 | head -c 100; echo; \
         printf 'CONNECT 127.0.0.1:443 HTTP/1.1\\r\\nHost: 127.0.0.1:443\\r\\n\\r\\n\\026\\003\\001' | nc 127.0.0.1 3128 | head -c 100; echo; \
         wget -q -O- http://127.0.0.1:{port}/still-alive"
    );
    let out = run(&a, &p, ws.path(), &script);
    assert!(
        text(&out.stdout).contains("hello from /still-alive"),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    a.assert_clean();
}

#[test]
fn a_kill_rule_on_denied_network_stops_the_sandbox() {
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    let p = write_policy(
        ws.path(),
        "extends = \"default\"\n[[monitor.rules]]\nkind = \"net.*\"\ndecision = \"deny\"\naction = \"kill\"\n",
    );
    let out = run(
        &a,
        &p,
        ws.path(),
        "while true; do wget -q -O- http://exfil.example/ 2>/dev/null; sleep 1; done",
    );
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let log = a.audit();
    assert!(log.has(|e| e.kind == kind::MONITOR_KILL), "{log}");
    assert!(
        log.first(kind::SANDBOX_END)
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("matched net.http deny exfil.example:80")),
        "{log}"
    );
    let v = a.run(["audit", "verify", a.audit_log().to_str().unwrap()]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}{}",
        text(&v.stdout),
        text(&v.stderr)
    );
    a.assert_clean();
}
