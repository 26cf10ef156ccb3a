//! The E2B-compatible API (`airlock daemon --e2b`): the official `e2b` Python SDK, unmodified,
//! creates sandboxes, runs commands, writes and reads files, is refused a `deny_read` file and
//! kills its sandboxes (sync and async clients), through `tests/e2b/sdk_check.py`. The Rust side
//! then checks that every E2B operation is in the sandbox's hash-chained audit log, exactly as
//! the daemon's own API records it, and that nothing of the sandboxes is left.

use super::daemon::json_of;
use airlock_testkit::audit::{Decision, fs_is, kind};
use airlock_testkit::{Airlock, test_python, text};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[test]
fn e2b_sdk_drives_airlock_sandboxes() {
    let a = Airlock::start();
    let secrets = tempfile::tempdir().unwrap();
    let token = "e2b-test-token-0123456789abcdef";
    let (token_file, addr) = token_and_addr(secrets.path(), token);
    let policy = secrets.path().join("e2b.toml");
    std::fs::write(
        &policy,
        "extends = \"default\"\n[sandbox]\nmemory = \"256MiB\"\n[filesystem]\ndeny_read = [\".env\"]\n",
    )
    .unwrap();
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join(".env"), "API_KEY=SECRET-value\n").unwrap();
    let d = a.daemon(&[
        "--e2b",
        &addr,
        "--token-file",
        token_file.to_str().unwrap(),
        "--e2b-policy",
        policy.to_str().unwrap(),
        "--e2b-workspace",
        ws.path().to_str().unwrap(),
    ]);

    let lines = sdk_check(&a, &d, &addr, token, &[]);
    let ids: Vec<String> = lines
        .iter()
        .filter_map(|l| l["sandbox"].as_str().map(String::from))
        .collect();
    assert_eq!(ids.len(), 2, "one sync and one async sandbox: {lines:?}");

    for id in &ids {
        let log = a.audit_of(id);
        // The commands ran through the daemon's exec: the guest recorded them.
        assert!(
            log.has(|e| e.kind == kind::PROC_EXEC
                && e.proc
                    .as_ref()
                    .is_some_and(|p| p.argv.iter().any(|arg| arg == "echo hi"))),
            "{log}"
        );
        // The denied read was refused by the policy, outside the guest, and recorded.
        assert!(
            log.has(fs_is(kind::FS_OPEN, Decision::Deny, ".env")),
            "{log}"
        );
        // kill() ended the sandbox and sealed its log.
        assert!(log.has(|e| e.kind == kind::SANDBOX_END), "{log}");
    }
    let sync_log = a.audit_of(ids.first().unwrap());
    assert!(
        sync_log.has(fs_is(kind::FS_CREATE, Decision::Allow, "hello.txt")),
        "{sync_log}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("hello.txt")).unwrap(),
        "hello from e2b\n"
    );
    // Killed sandboxes are forgotten by the daemon too.
    let (status, body) = d.curl("GET", "/v1/sandboxes", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["sandboxes"], serde_json::json!([]), "{body}");
    d.stop();
    a.assert_clean();
}

/// Runs `sdk_check.py ARGS` against the E2B listener at `addr`; its JSON lines.
fn sdk_check(
    a: &Airlock,
    d: &airlock_testkit::Daemon,
    addr: &str,
    token: &str,
    args: &[&str],
) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2b/sdk_check.py");
    let started = Instant::now();
    let out = Command::new(test_python())
        .arg(&script)
        .args(args)
        .env("E2B_API_KEY", token)
        .env("E2B_API_URL", format!("http://{addr}"))
        .env("E2B_SANDBOX_URL", format!("http://{addr}"))
        .env("AIRLOCK_SOCKET", a.socket())
        .env_remove("E2B_DEBUG")
        .env_remove("E2B_DOMAIN")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("running the e2b SDK script");
    let stdout = text(&out.stdout);
    eprintln!(
        "sdk_check.py {args:?} took {:.1?}:\n{stdout}{}",
        started.elapsed(),
        text(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the e2b SDK script failed ({}):\n{stdout}{}\ndaemon log:\n{}",
        out.status,
        text(&out.stderr),
        d.log_text()
    );
    let lines: Vec<_> = stdout.lines().map(json_of).collect();
    assert!(lines.iter().any(|l| l["ok"] == true), "{stdout}");
    lines
}

/// A token file (mode 0600) in `dir` and a free loopback address.
fn token_and_addr(dir: &Path, token: &str) -> (std::path::PathBuf, String) {
    (
        airlock_testkit::token_file(dir, token),
        airlock_testkit::free_loopback_addr(),
    )
}

#[test]
fn e2b_sandboxes_get_a_fresh_workspace_removed_by_kill() {
    let a = Airlock::start();
    let secrets = tempfile::tempdir().unwrap();
    let token = "e2b-test-token-fedcba9876543210";
    let (token_file, addr) = token_and_addr(secrets.path(), token);
    let d = a.daemon(&["--e2b", &addr, "--token-file", token_file.to_str().unwrap()]);
    let lines = sdk_check(&a, &d, &addr, token, &["default-workspace"]);
    let id = lines
        .iter()
        .find_map(|l| l["sandbox"].as_str())
        .unwrap()
        .to_string();
    let log = a.audit_of(&id);
    assert!(
        log.has(fs_is(kind::FS_CREATE, Decision::Allow, "made.txt")),
        "{log}"
    );
    assert!(log.has(|e| e.kind == kind::SANDBOX_END), "{log}");
    d.stop();
    a.assert_clean();
}

#[test]
fn e2b_flags_are_checked() {
    let a = Airlock::start();
    let out = a.run(["daemon", "--e2b", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--token-file"),
        "{}",
        text(&out.stderr)
    );
    let f = tempfile::NamedTempFile::new().unwrap();
    let out = a.run(["daemon", "--token-file", f.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--token-file is for --tcp or --e2b"),
        "{}",
        text(&out.stderr)
    );
}
