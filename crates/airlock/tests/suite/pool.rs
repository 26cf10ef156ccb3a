//! The daemon's warm pool: guests booted unbound, claimed by creates (binding recorded), never
//! reused, refilled, recycled past the TTL, and reaped after the daemon is killed.

use super::daemon::{exec_stream, json_of};
use airlock_testkit::audit::{Source, from, kind};
use airlock_testkit::{Airlock, Daemon, text, wait_until};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// The status of the daemon's pool of tiny guests (`GET /v1/pool`).
pub(super) fn pool(d: &Daemon) -> Value {
    let (code, body) = d.curl("GET", "/v1/pool", None);
    assert_eq!(code, 200, "{body}");
    json_of(&body)["images"][0].clone()
}

/// Waits until the pool holds `n` ready guests and none booting.
pub(super) fn wait_ready(d: &Daemon, n: u64) {
    assert!(
        wait_until(Duration::from_secs(180), || {
            let p = pool(d);
            p["ready"] == n && p["booting"] == 0
        }),
        "pool never reached {n} ready guests: {}\n{}",
        pool(d),
        d.log_text()
    );
}

/// The warm guests' state dirs (real dirs, not the claimed sandboxes' symlinks).
fn guest_dirs(a: &Airlock) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(a.state_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| !p.is_symlink() && p.is_dir() && !p.ends_with("daemon"))
        .collect();
    dirs.sort();
    dirs
}

fn create(d: &Daemon, body: &Value) -> Value {
    let (code, resp) = d.curl("POST", "/v1/sandboxes", Some(&body.to_string()));
    assert_eq!(code, 201, "{resp}");
    json_of(&resp)
}

/// Runs `argv` in sandbox `id` through the API: (stdout, stderr, exit object).
fn exec(d: &Daemon, id: &str, argv: &[&str]) -> (String, String, Value) {
    let (code, body) = d.curl(
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some(&json!({ "argv": argv }).to_string()),
    );
    assert_eq!(code, 200, "{body}");
    exec_stream(&body)
}

#[test]
fn claims_bind_late_are_recorded_and_never_reused() {
    let a = Airlock::start();
    let d = a.daemon(&["--pool", "tiny=2"]);
    wait_ready(&d, 2);
    let warm = guest_dirs(&a);
    assert_eq!(warm.len(), 2, "{warm:?}");

    let ws = a.cwd().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let info = create(&d, &json!({ "workspace": ws }));
    assert_eq!(info["pooled"], true, "{info}");
    let id = info["id"].as_str().unwrap().to_string();
    // The claimed guest keeps its dir; the sandbox id names it through a link.
    let link = a.state_dir().join(&id);
    assert!(link.is_symlink(), "{}", link.display());
    let claimed = std::fs::canonicalize(&link).unwrap();
    assert!(warm.contains(&claimed), "{claimed:?} not in {warm:?}");

    // The share was bound at the claim: writes reach the host.
    let (out, err, exit) = exec(
        &d,
        &id,
        &["sh", "-c", "echo bound > /workspace/f && cat /workspace/f"],
    );
    assert_eq!((out.as_str(), err.as_str()), ("bound\n", ""), "{exit}");
    assert_eq!(std::fs::read_to_string(ws.join("f")).unwrap(), "bound\n");

    let log = a.audit_of(&id);
    let detail = |k: &str| log.first(k).detail.clone().unwrap_or_default();
    assert!(detail(kind::SANDBOX_START).contains("warm guest"), "{log}");
    assert!(
        detail(kind::SANDBOX_BIND).contains(&format!("{} at /workspace (rw)", ws.display())),
        "{log}"
    );

    let (code, body) = d.curl("DELETE", &format!("/v1/sandboxes/{id}"), None);
    assert_eq!(code, 204, "{body}");
    assert!(!claimed.exists(), "the claimed guest's dir is gone");
    assert!(!link.is_symlink(), "its link is gone");

    // Refilled with new guests; the claimed one never comes back.
    wait_ready(&d, 2);
    let p = pool(&d);
    assert_eq!(p["claimed"], 1, "{p}");
    let again = create(&d, &json!({ "workspace": ws }));
    assert_eq!(again["pooled"], true, "{again}");
    let second = std::fs::canonicalize(a.state_dir().join(again["id"].as_str().unwrap())).unwrap();
    assert_ne!(second, claimed);

    // A create the warm guests do not fit (other memory size) boots cold.
    let cold = create(&d, &json!({ "workspace": ws, "memory_mib": 256 }));
    assert_eq!(cold["pooled"], false, "{cold}");
    assert!(
        !a.state_dir()
            .join(cold["id"].as_str().unwrap())
            .is_symlink()
    );

    d.stop();
    a.assert_clean();
}

#[test]
fn an_unbound_filesystem_device_refuses_the_guest() {
    let a = Airlock::start();
    let d = a.daemon(&["--pool", "tiny=1"]);
    wait_ready(&d, 1);
    // Root in the guest, without seccomp or Landlock, so only the device itself can refuse.
    let policy = "extends = \"default\"\n[process]\nuser = \"root\"\nseccomp = \"unconfined\"\nno_new_privs = false\n";
    let info = create(
        &d,
        &json!({ "workspace": a.cwd(), "policy": policy, "policy_origin": "/api/root.toml" }),
    );
    assert_eq!(info["pooled"], true, "{info}");
    let id = info["id"].as_str().unwrap();
    // The pool's guests have two filesystem devices; this policy binds one. The other one
    // answers nothing but errors: the guest cannot reach anything through it.
    let (out, err, exit) = exec(
        &d,
        id,
        &[
            "sh",
            "-c",
            "mkdir -p /mnt/spare && mount -t virtiofs fs1 /mnt/spare; ls /mnt/spare; echo ls=$?",
        ],
    );
    assert!(out.contains("ls=1"), "{out} {err} {exit}");
    let log = a.audit_of(id);
    assert!(
        log.has(|e| from(Source::Guest, kind::PROC_EXEC)(e)
            && e.proc
                .as_ref()
                .is_some_and(|p| p.argv.iter().any(|arg| arg.contains("fs1")))),
        "the attempt is not in the audit log:\n{log}"
    );
    d.stop();
    a.assert_clean();
}

#[test]
fn warm_guests_past_the_ttl_are_replaced() {
    let a = Airlock::start();
    let d = a.daemon(&["--pool", "tiny=1", "--pool-ttl", "2s"]);
    wait_ready(&d, 1);
    let first = guest_dirs(&a);
    assert!(
        wait_until(Duration::from_secs(180), || {
            let p = pool(&d);
            p["recycled"].as_u64().unwrap_or(0) >= 1 && p["ready"] == 1
        }),
        "{}",
        pool(&d)
    );
    let now = guest_dirs(&a);
    assert!(
        first.iter().all(|f| !now.contains(f)),
        "{first:?} still there: {now:?}"
    );
    d.stop();
    a.assert_clean();
}

#[test]
fn a_killed_daemon_s_warm_and_claimed_guests_are_reaped() {
    let a = Airlock::start();
    let d = a.daemon(&["--pool", "tiny=1"]);
    wait_ready(&d, 1);
    let info = create(&d, &json!({ "workspace": a.cwd() }));
    assert_eq!(info["pooled"], true, "{info}");
    let id = info["id"].as_str().unwrap().to_string();
    // Let the refill start, so a warm guest is up or booting when the daemon dies.
    assert!(wait_until(Duration::from_secs(30), || {
        let p = pool(&d);
        p["ready"] == 1 || p["booting"] == 1
    }));
    d.kill();
    a.assert_processes_gone();

    let d = a.daemon(&[]);
    let log = d.log_text();
    assert!(log.contains(&format!("reaped sandbox {id}")), "{log}");
    assert!(
        guest_dirs(&a).is_empty() && !a.state_dir().join(&id).is_symlink(),
        "{:?}",
        guest_dirs(&a)
    );
    let records = a.audit_of(&id);
    let last = &records.records.last().expect("records").event;
    assert_eq!(last.kind, kind::SANDBOX_END, "{records}");
    let (code, _) = d.curl("GET", "/v1/pool", None);
    assert_eq!(code, 404, "no pool without --pool");
    d.stop();
    a.assert_clean();
}

#[test]
fn bad_pool_flags_are_refused_precisely() {
    let a = Airlock::start();
    for (args, want) in [
        (vec!["--pool", "tiny"], "expected IMAGE=N"),
        (vec!["--pool", "tiny=many"], "is not a number of guests"),
        (vec!["--pool", "../x=1"], "is not an image name"),
        (vec!["--pool", "tiny=1", "--pool", "tiny=2"], "given twice"),
        (vec!["--pool", "tiny=1", "--pool-ttl", "0"], "--pool-ttl"),
    ] {
        let mut argv = vec!["daemon", "--socket"];
        let sock = a.cwd().join("bad.sock");
        argv.push(sock.to_str().unwrap());
        argv.extend(args.iter().copied());
        let out = a.run(&argv);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        assert!(
            text(&out.stderr).contains(want),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
