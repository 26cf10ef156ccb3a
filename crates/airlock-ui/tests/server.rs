//! The review page's server over real sockets: who may reach it, what it refuses, and that it
//! answers bad parameters with errors that name them.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use airlock_audit::{Chain, ChainOptions, Decision, Event, HostKey, Source, kind};
use airlock_ui::{ServeError, Ui, UiOptions};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::Path;

struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// One HTTP/1.1 request with `Connection: close`; `host` overrides the Host header.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn write_log(path: &Path, id: &str, key: HostKey) {
    let (mut chain, _) = Chain::open(path, ChainOptions::new(id, key)).unwrap();
    chain
        .append(
            &Event::new(Source::Host, kind::SANDBOX_START)
                .with_decision(Decision::Allow)
                .with_detail("policy /p, image tiny; 1 cpus"),
        )
        .unwrap();
    chain.finish().unwrap();
}

struct Server {
    addr: SocketAddr,
    token: String,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

fn serve() -> Server {
    let key = HostKey::generate().unwrap();
    let public = key.public_key();
    let dir = tempfile::tempdir().unwrap();
    write_log(&dir.path().join("sb-one.jsonl"), "sb-one", key);
    write_log(
        &dir.path().join("sb-other.jsonl"),
        "sb-other",
        HostKey::generate().unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ui = rt
        .block_on(Ui::bind(UiOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            audit_dir: dir.path().to_owned(),
            trusted_key: Some(public),
        }))
        .unwrap();
    let addr = ui.addr();
    let token = ui.url().split("token=").nth(1).unwrap().to_string();
    rt.spawn(ui.serve(std::future::pending()));
    Server {
        addr,
        token,
        _dir: dir,
        _rt: rt,
    }
}

const ENDPOINTS: [(&str, &str); 12] = [
    ("GET", "/"),
    ("GET", "/assets/app.js"),
    ("GET", "/assets/app.css"),
    ("GET", "/api/sandboxes"),
    ("GET", "/api/sandboxes/sb-one"),
    ("GET", "/api/sandboxes/sb-one/records"),
    ("GET", "/api/sandboxes/sb-one/stream"),
    ("GET", "/api/sandboxes/sb-one/verify"),
    ("GET", "/api/sandboxes/sb-one/changes"),
    ("GET", "/api/sandboxes/sb-one/charts"),
    ("POST", "/api/sandboxes/sb-one/apply"),
    ("POST", "/api/sandboxes/sb-one/discard"),
];

#[test]
fn without_the_token_every_endpoint_answers_401() {
    let s = serve();
    for (method, path) in ENDPOINTS.iter().chain(&[("GET", "/no/such/page")]) {
        let r = request(
            s.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            "{}",
        );
        assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
        assert!(
            r.head
                .contains("content-security-policy: default-src 'none'"),
            "{}",
            r.head
        );
        let wrong = format!("Bearer {}", "0".repeat(64));
        let r = request(s.addr, method, path, &[("Authorization", &wrong)], "");
        assert_eq!(r.status, 401, "wrong token: {method} {path}");
        let short = request(s.addr, method, &format!("{path}?token=abc"), &[], "");
        assert_eq!(short.status, 401, "short token: {method} {path}");
    }
}

#[test]
fn the_token_opens_the_page_sets_a_strict_cookie_and_the_cookie_then_works() {
    let s = serve();
    let r = request(s.addr, "GET", &format!("/?token={}", s.token), &[], "");
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("<script src=\"/assets/app.js\""),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<script>"), "no inline script");
    let cookie_line = r
        .head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap()
        .to_string();
    assert!(
        cookie_line.contains("httponly") && cookie_line.contains("samesite=strict"),
        "{cookie_line}"
    );
    let cookie = format!("airlock_ui_{}={}", s.addr.port(), s.token);
    let r = request(s.addr, "GET", "/api/sandboxes", &[("Cookie", &cookie)], "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"id\":\"sb-one\""), "{}", r.body);
    let bearer = format!("Bearer {}", s.token);
    let r = request(
        s.addr,
        "GET",
        "/api/sandboxes/sb-one/verify",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"state\":\"verified\""), "{}", r.body);
    // A log signed by another key is not this host's: the page says so, and where.
    let r = request(
        s.addr,
        "GET",
        "/api/sandboxes/sb-other/verify",
        &[("Authorization", &bearer)],
        "",
    );
    assert!(r.body.contains("\"state\":\"broken\""), "{}", r.body);
    assert!(r.body.contains("untrusted key"), "{}", r.body);
    for h in [
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "x-frame-options: deny",
    ] {
        assert!(r.head.contains(h), "{h} missing: {}", r.head);
    }
}

#[test]
fn a_foreign_origin_or_host_is_refused_even_with_the_token() {
    let s = serve();
    let bearer = format!("Bearer {}", s.token);
    let json = ("Content-Type", "application/json");
    for path in [
        "/api/sandboxes/sb-one/apply",
        "/api/sandboxes/sb-one/discard",
    ] {
        let r = request(
            s.addr,
            "POST",
            path,
            &[
                ("Authorization", &bearer),
                ("Origin", "http://evil.example"),
                json,
            ],
            "{}",
        );
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("cross-origin"), "{}", r.body);
        let r = request(
            s.addr,
            "POST",
            path,
            &[("Authorization", &bearer), json],
            "{}",
        );
        assert_eq!(r.status, 403, "no Origin: {path}");
        let origin = format!("http://{}", s.addr);
        let r = request(
            s.addr,
            "POST",
            path,
            &[
                ("Authorization", &bearer),
                ("Origin", &origin),
                ("Content-Type", "text/plain"),
            ],
            "{}",
        );
        assert_eq!(r.status, 415, "a form-like body: {path}");
        // Same origin, JSON: the request reaches the handler (this sandbox has no overlay).
        let r = request(
            s.addr,
            "POST",
            path,
            &[("Authorization", &bearer), ("Origin", &origin), json],
            "{}",
        );
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(r.body.contains("has no overlay"), "{}", r.body);
    }
    // DNS rebinding: another name for this address.
    let r = request(
        s.addr,
        "GET",
        "/api/sandboxes",
        &[("Authorization", &bearer), ("Host", "rebind.example:80")],
        "",
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn bad_parameters_get_errors_that_name_them() {
    let s = serve();
    let bearer = format!("Bearer {}", s.token);
    let auth = [("Authorization", bearer.as_str())];
    let cases = [
        (
            "/api/sandboxes/sb-one/records?area=fs,bogus",
            400,
            "area: unknown value \\\"bogus\\\"",
        ),
        (
            "/api/sandboxes/sb-one/records?decision=maybe",
            400,
            "decision: unknown value",
        ),
        (
            "/api/sandboxes/sb-one/records?source=alien",
            400,
            "source: unknown value",
        ),
        ("/api/sandboxes/sb-one/records?limit=x", 400, "limit"),
        ("/api/sandboxes/sb-one/records?colour=red", 400, "colour"),
        ("/api/sandboxes/..%2Fetc/verify", 400, "is not a sandbox id"),
        (
            "/api/sandboxes/sb-none/records",
            404,
            "no audit log for sandbox sb-none",
        ),
        ("/assets/other.js", 404, "no asset"),
    ];
    for (path, status, needle) in cases {
        let r = request(s.addr, "GET", path, &auth, "");
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(
            r.body.contains(needle),
            "{path}: {needle} not in {}",
            r.body
        );
    }
    let origin = format!("http://{}", s.addr);
    let r = request(
        s.addr,
        "POST",
        "/api/sandboxes/sb-one/apply",
        &[
            ("Authorization", &bearer),
            ("Origin", &origin),
            ("Content-Type", "application/json"),
        ],
        "{\"force\":\"yes\"}",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("apply body"), "{}", r.body);
}

#[test]
fn a_page_of_records_is_filtered_on_the_server() {
    let s = serve();
    let bearer = format!("Bearer {}", s.token);
    let r = request(
        s.addr,
        "GET",
        "/api/sandboxes/sb-one/records?area=sandbox&decision=allow&limit=1",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["matched"], 1);
    assert_eq!(v["records"][0]["record"]["kind"], "sandbox.start");
    let r = request(
        s.addr,
        "GET",
        "/api/sandboxes/sb-one/records?area=net",
        &[("Authorization", &bearer)],
        "",
    );
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["matched"], 0);
}

#[test]
fn only_loopback_addresses_are_served() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(Ui::bind(UiOptions {
            listen: "0.0.0.0:0".parse().unwrap(),
            audit_dir: std::env::temp_dir(),
            trusted_key: None,
        }))
        .unwrap_err();
    assert!(matches!(err, ServeError::NotLoopback(_)), "{err}");
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[test]
fn a_large_log_is_listed_at_once_and_indexed_in_the_background() {
    let s = serve();
    let key = HostKey::generate().unwrap();
    let path = s._dir.path().join("sb-big.jsonl");
    let (mut chain, _) = Chain::open(&path, ChainOptions::new("sb-big", key)).unwrap();
    let n = 30_000u64;
    for i in 0..n {
        chain
            .append(
                &Event::new(Source::Host, kind::FS_WRITE)
                    .with_decision(Decision::Allow)
                    .with_fs(airlock_audit::FsInfo {
                        op: "write".into(),
                        path: format!("/workspace/some/longer/path/to/a/file/number/{i}.txt"),
                        to: None,
                        mount: Some("/workspace".into()),
                    }),
            )
            .unwrap();
    }
    chain.finish().unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > airlock_ui::catalog::LIST_INDEX_LIMIT);
    let bearer = format!("Bearer {}", s.token);
    let big = || {
        let r = request(
            s.addr,
            "GET",
            "/api/sandboxes",
            &[("Authorization", &bearer)],
            "",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        v["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "sb-big")
            .cloned()
            .unwrap()
    };
    let first = big();
    assert_eq!(first["records"], n, "the count is known at once: {first}");
    assert_eq!(
        first["indexing"], true,
        "the first list does not wait for a large log: {first}"
    );
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = big();
        if now["indexing"] == false {
            assert_eq!(now["fs_ops"], n, "{now}");
            break;
        }
        assert!(std::time::Instant::now() < end, "never indexed: {now}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
