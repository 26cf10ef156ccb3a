//! `airlock daemon`: sandboxes that outlive one command, driven through the CLI and through the
//! raw API with curl (following docs/api/openapi.json); concurrency, restart after SIGKILL, and
//! precise errors.

use airlock_testkit::audit::{self, kind};
use airlock_testkit::{Airlock, text, wait_until};
use serde_json::{Value, json};
use std::time::Duration;

fn openapi_file() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/api/openapi.json"
    ))
    .unwrap()
}

/// `body` parsed as JSON; panics showing it when it is not.
pub(super) fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Decodes an exec's NDJSON stream: (stdout, stderr, exit object).
pub(super) fn exec_stream(body: &str) -> (String, String, Value) {
    use base64::Engine as _;
    let mut lines = body.lines();
    let first = json_of(lines.next().unwrap());
    assert!(first["exec_id"].is_string(), "first line: {first}");
    let (mut out, mut err, mut exit) = (Vec::new(), Vec::new(), Value::Null);
    for l in lines {
        let v = json_of(l);
        if let Some(data) = v["data"].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap();
            match v["stream"].as_str() {
                Some("stdout") => out.extend(bytes),
                Some("stderr") => err.extend(bytes),
                other => panic!("stream {other:?}"),
            }
        } else if v["exit"].is_object() {
            exit = v["exit"].clone();
        } else {
            panic!("unexpected line {v}");
        }
    }
    (text(&out), text(&err), exit)
}

#[test]
fn persistence_across_execs() {
    let a = Airlock::start();
    let d = a.daemon(&[]);
    let out = a.run(["create", "--label", "test=persistence"]);
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 12, "{id:?}");

    let out = a.run(["exec", &id, "--", "sh", "-c", "echo hi > /tmp/x"]);
    assert!(out.status.success(), "exec: {}", text(&out.stderr));
    let out = a.run(["exec", &id, "--", "cat", "/tmp/x"]);
    assert_eq!(text(&out.stdout), "hi\n", "stderr: {}", text(&out.stderr));
    assert!(out.status.success());

    // Exit status, stderr and stdin pass through as with `airlock run`.
    let out = a.run(["exec", &id, "--", "sh", "-c", "echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stderr), "err\n");
    let out = a.run_with_input(&["exec", &id, "--", "wc", "-c"], vec![b'x'; 100_000]);
    assert_eq!(text(&out.stdout).trim(), "100000", "{}", text(&out.stderr));
    let out = a.run(["exec", &id, "--", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));

    // Files both ways, as the workload user and under its policy.
    let host_file = a.cwd().join("in.txt");
    std::fs::write(&host_file, "from the host\n").unwrap();
    let out = a.run(["cp", host_file.to_str().unwrap(), &format!("{id}:/tmp/")]);
    assert!(out.status.success(), "cp in: {}", text(&out.stderr));
    let out = a.run(["exec", &id, "--", "cat", "/tmp/in.txt"]);
    assert_eq!(text(&out.stdout), "from the host\n");
    let back = a.cwd().join("back.txt");
    let out = a.run(["cp", &format!("{id}:/tmp/x"), back.to_str().unwrap()]);
    assert!(out.status.success(), "cp out: {}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "hi\n");
    let out = a.run([
        "cp",
        host_file.to_str().unwrap(),
        &format!("{id}:/etc/owned"),
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );

    let out = a.run(["ls"]);
    let listing = text(&out.stdout);
    assert!(
        listing.contains(&id)
            && listing.contains("running")
            && listing.contains("test=persistence"),
        "{listing}"
    );
    let out = a.run(["logs", &id]);
    assert!(text(&out.stdout).contains("sandbox.start"));

    let out = a.run(["stop", &id]);
    assert!(out.status.success(), "stop: {}", text(&out.stderr));
    let out = a.run(["exec", &id, "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("is stopped"),
        "{}",
        text(&out.stderr)
    );
    let out = a.run(["logs", &id, "-f"]);
    assert!(
        text(&out.stdout).contains("sandbox.end"),
        "{}",
        text(&out.stdout)
    );
    let out = a.run(["rm", &id]);
    assert!(out.status.success(), "rm: {}", text(&out.stderr));
    assert!(!text(&a.run(["ls"]).stdout).contains(&id));

    d.stop();
    a.assert_clean();
}

#[test]
fn raw_api_follows_the_openapi_document() {
    let a = Airlock::start();
    let d = a.daemon(&[]);
    let doc: Value = json_of(&openapi_file());
    // The served document is the one kept in docs/api/.
    let (code, served) = d.curl("GET", "/openapi.json", None);
    assert_eq!(code, 200);
    assert!(
        served == openapi_file(),
        "GET /openapi.json differs from docs/api/openapi.json"
    );
    for (path, method) in [
        ("/v1/sandboxes", "post"),
        ("/v1/sandboxes/{id}/exec", "post"),
        ("/v1/sandboxes/{id}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }

    let create = json!({"workspace": a.cwd(), "memory_mib": 128, "labels": {"via": "curl"}});
    let (code, body) = d.curl("POST", "/v1/sandboxes", Some(&create.to_string()));
    assert_eq!(code, 201, "{body}");
    let info = json_of(&body);
    let id = info["id"].as_str().unwrap().to_string();
    assert_eq!(info["status"], "running");
    assert_eq!(info["labels"]["via"], "curl");

    let exec =
        json!({"argv": ["sh", "-c", "echo out; echo err >&2; cat; exit 3"], "stdin": "aW5wdXQK"});
    let (code, body) = d.curl(
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some(&exec.to_string()),
    );
    assert_eq!(code, 200, "{body}");
    let (out, err, exit) = exec_stream(&body);
    assert_eq!(out, "out\ninput\n");
    assert_eq!(err, "err\n");
    assert_eq!(exit["exit_code"], 3);
    assert_eq!(exit["code"], 3);

    let (code, body) = d.curl("GET", &format!("/v1/sandboxes/{id}/stats"), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_of(&body)["sandbox"], id.as_str());
    let (code, body) = d.curl("GET", &format!("/v1/sandboxes/{id}/events"), None);
    assert_eq!(code, 200);
    let events = audit::Log::parse("GET /events", body.as_bytes());
    assert!(events.records.iter().all(|r| r.sandbox == id), "{events}");

    let (code, body) = d.curl("DELETE", &format!("/v1/sandboxes/{id}"), None);
    assert_eq!(code, 204, "{body}");
    let (code, body) = d.curl("GET", &format!("/v1/sandboxes/{id}"), None);
    assert_eq!(code, 404);
    assert_eq!(json_of(&body)["error"], "not_found");
    // Deleting left nothing behind while the daemon still runs.
    a.assert_processes_gone();
    assert_eq!(
        a.leftover_files()
            .iter()
            .filter(|p| !p.ends_with("daemon"))
            .count(),
        0,
        "{:?}",
        a.leftover_files()
    );
    let log = a.audit_dir().join(format!("{id}.jsonl"));
    let out = a.run(["audit", "verify", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));

    d.stop();
    a.assert_clean();
}

#[test]
fn twenty_concurrent_cycles() {
    let a = Airlock::start();
    let d = a.daemon(&[]);
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let d = &d;
                let ws = a.cwd();
                s.spawn(move || -> Result<(), String> {
                    let create =
                        json!({"workspace": ws, "memory_mib": 128, "labels": {"n": i.to_string()}});
                    let (code, body) = d.curl("POST", "/v1/sandboxes", Some(&create.to_string()));
                    if code != 201 {
                        return Err(format!("create {i}: {code} {body}"));
                    }
                    let id = json_of(&body)["id"].as_str().unwrap().to_string();
                    let exec = json!({"argv": ["echo", format!("cycle {i}")]});
                    let (code, body) = d.curl(
                        "POST",
                        &format!("/v1/sandboxes/{id}/exec"),
                        Some(&exec.to_string()),
                    );
                    let (out, _, exit) = exec_stream(&body);
                    if code != 200 || out != format!("cycle {i}\n") || exit["exit_code"] != 0 {
                        return Err(format!("exec {i}: {code} {body}"));
                    }
                    let (code, body) = d.curl("DELETE", &format!("/v1/sandboxes/{id}"), None);
                    if code != 204 {
                        return Err(format!("delete {i}: {code} {body}"));
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "failed cycles: {failed:#?}");
    let (_, body) = d.curl("GET", "/v1/sandboxes", None);
    assert_eq!(json_of(&body)["sandboxes"], json!([]));
    a.assert_processes_gone();
    d.stop();
    a.assert_clean();
}

#[test]
fn sigkill_and_restart_reaps_and_records() {
    let a = Airlock::start();
    let d = a.daemon(&[]);
    let out = a.run(["create"]);
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert!(
        !a.leftover_processes().is_empty(),
        "the sandbox's helpers run"
    );
    d.kill();
    // Parent-death signals take the guest down with the daemon.
    a.assert_processes_gone();
    assert!(
        a.state_dir().join(&id).exists(),
        "the killed daemon left its state"
    );

    let d = a.daemon(&[]);
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log_text()
            .contains("daemon listening")),
        "{}",
        d.log_text()
    );
    assert!(
        d.log_text().contains(&format!("reaped sandbox {id}")),
        "{}",
        d.log_text()
    );
    assert!(!a.state_dir().join(&id).exists());
    let records = a.audit_of(&id);
    let last = &records.records.last().expect("records").event;
    assert_eq!(last.kind, kind::SANDBOX_END, "{records}");
    assert_eq!(
        last.detail.as_deref(),
        Some("daemon restarted; reaped"),
        "{records}"
    );
    let log = a.audit_dir().join(format!("{id}.jsonl"));
    let out = a.run(["audit", "verify", log.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let (_, body) = d.curl("GET", "/v1/sandboxes", None);
    assert_eq!(json_of(&body)["sandboxes"], json!([]));
    d.stop();
    a.assert_clean();
}

#[test]
fn bad_input_gets_precise_errors() {
    let a = Airlock::start();
    // No daemon: say so, and how to start one.
    let out = a.run(["ls"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("airlock daemon &"),
        "{}",
        text(&out.stderr)
    );

    let d = a.daemon(&["--idle-timeout", "3s"]);
    let check =
        |method: &str, path: &str, body: Option<&str>, status: u16, code: &str, needle: &str| {
            let (got, reply) = d.curl(method, path, body);
            let v = json_of(&reply);
            assert_eq!(
                (got, v["error"].as_str().unwrap_or_default()),
                (status, code),
                "{method} {path}: {reply}"
            );
            let detail = v["detail"].as_str().unwrap();
            assert!(
                detail.contains(needle),
                "{method} {path}: {detail:?} lacks {needle:?}"
            );
        };
    check(
        "POST",
        "/v1/sandboxes",
        Some(r#"{"profile":"nope"}"#),
        400,
        "bad_request",
        "unknown profile \"nope\"",
    );
    check(
        "POST",
        "/v1/sandboxes",
        Some(r#"{"bogus":1}"#),
        400,
        "bad_request",
        "unknown field `bogus`",
    );
    check(
        "POST",
        "/v1/sandboxes",
        Some("{"),
        400,
        "bad_request",
        "invalid JSON",
    );
    check(
        "POST",
        "/v1/sandboxes",
        Some(r#"{"profile":"default"}"#),
        400,
        "bad_request",
        "workspace",
    );
    check(
        "POST",
        "/v1/sandboxes",
        Some(r#"{"workspace":"/","cpus":99}"#),
        400,
        "bad_request",
        "cpus",
    );
    check(
        "POST",
        "/v1/sandboxes",
        Some(r#"{"workspace":"/","policy":"[sandbox]\nbogus = 1\n"}"#),
        400,
        "bad_request",
        "policy",
    );
    check(
        "GET",
        "/v1/sandboxes/000000000000",
        None,
        404,
        "not_found",
        "no sandbox with id",
    );
    check("GET", "/v1/nothing", None, 404, "not_found", "no route");
    check(
        "PATCH",
        "/v1/sandboxes",
        None,
        405,
        "method_not_allowed",
        "PATCH",
    );

    // Every documented operation exists: an unknown id reaches its handler (never "no route").
    let doc = json_of(&openapi_file());
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let p = path
                .replace("{id}", "000000000000")
                .replace("{exec_id}", "e1");
            let p = if p.contains("/files") {
                format!("{p}?path=/x")
            } else {
                p
            };
            let body = matches!(method.as_str(), "post" | "put")
                .then_some(r#"{"argv":["true"],"signal":1,"rows":1,"cols":1}"#);
            let (got, reply) = d.curl(&method.to_uppercase(), &p, body);
            if path == "/openapi.json" || (path == "/v1/sandboxes") {
                continue;
            }
            if path == "/v1/pool" {
                // This daemon has no pool: the route answers, and says how to get one.
                assert!(got == 404 && reply.contains("--pool"), "{reply}");
                continue;
            }
            assert!(
                (got == 404 && reply.contains("no sandbox with id")) || got == 400,
                "{method} {path}: {got} {reply}"
            );
        }
    }

    let create = json!({"workspace": a.cwd(), "memory_mib": 128});
    let (code, body) = d.curl("POST", "/v1/sandboxes", Some(&create.to_string()));
    assert_eq!(code, 201, "{body}");
    let id = json_of(&body)["id"].as_str().unwrap().to_string();
    let exec = format!("/v1/sandboxes/{id}/exec");
    check(
        "POST",
        &exec,
        Some(r#"{"argv":[]}"#),
        400,
        "bad_request",
        "argv",
    );
    check(
        "POST",
        &exec,
        Some(r#"{"argv":["true"],"cwd":"rel"}"#),
        400,
        "bad_request",
        "cwd",
    );
    check(
        "POST",
        &exec,
        Some(r#"{"argv":["true"],"stdin":"%%%"}"#),
        400,
        "bad_request",
        "stdin",
    );
    check(
        "POST",
        &format!("/v1/sandboxes/{id}/execs/e99/signal"),
        Some(r#"{"signal":"TERM"}"#),
        404,
        "not_found",
        "no running exec",
    );
    check(
        "GET",
        &format!("/v1/sandboxes/{id}/files?path=relative"),
        None,
        400,
        "bad_request",
        "path",
    );
    check(
        "GET",
        &format!("/v1/sandboxes/{id}/files?path=/no/such"),
        None,
        404,
        "not_found",
        "/no/such",
    );
    check(
        "PUT",
        &format!("/v1/sandboxes/{id}/files?path=/etc/x"),
        Some("data"),
        403,
        "forbidden",
        "Permission denied",
    );

    // The idle timeout stops it (with the reason) and a stopped sandbox refuses execs.
    assert!(
        wait_until(Duration::from_secs(30), || {
            json_of(&d.curl("GET", &format!("/v1/sandboxes/{id}"), None).1)["status"] == "stopped"
        }),
        "the idle timeout did not stop the sandbox"
    );
    let info = json_of(&d.curl("GET", &format!("/v1/sandboxes/{id}"), None).1);
    assert!(
        info["end_reason"]
            .as_str()
            .unwrap()
            .contains("idle timeout 3 s"),
        "{info}"
    );
    check(
        "POST",
        &exec,
        Some(r#"{"argv":["true"]}"#),
        409,
        "conflict",
        "is stopped",
    );
    d.stop();
    a.assert_clean();
}

#[test]
fn tcp_listener_requires_the_token() {
    let a = Airlock::start();
    let out = a.run(["daemon", "--tcp", "127.0.0.1:0"]);
    assert_eq!(
        out.status.code(),
        Some(125),
        "refuses to start without a token"
    );
    assert!(
        text(&out.stderr).contains("--token-file"),
        "{}",
        text(&out.stderr)
    );

    let token = airlock_testkit::token_file(a.cwd(), "test-token-0123456789abcdef");
    let addr = airlock_testkit::free_loopback_addr();
    let d = a.daemon(&["--tcp", &addr, "--token-file", token.to_str().unwrap()]);
    let curl = |auth: Option<&str>| {
        let mut c = std::process::Command::new("curl");
        c.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"]);
        if let Some(h) = auth {
            c.args(["-H", h]);
        }
        text(
            &c.arg(format!("http://{addr}/v1/sandboxes"))
                .output()
                .unwrap()
                .stdout,
        )
    };
    assert!(
        wait_until(Duration::from_secs(10), || curl(None) == "401"),
        "no token: {}",
        curl(None)
    );
    assert_eq!(
        curl(Some("Authorization: Bearer wrong-token-0123456789")),
        "401"
    );
    assert_eq!(
        curl(Some("Authorization: Bearer test-token-0123456789abcdef")),
        "200"
    );
    // The unix socket needs no token (its mode guards it) and is owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(a.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    d.stop();
    a.assert_clean();
}
