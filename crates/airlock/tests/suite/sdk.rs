//! The Python SDK (`sdk/python`) against a real daemon: installs it with
//! `pip install ./sdk/python` into a fresh venv (the acceptance), type-checks it as
//! installed, then runs its pytest suite, which boots real sandboxes through the daemon's unix
//! socket and its TCP listener.

use super::daemon::json_of;
use airlock_testkit::{Airlock, test_python, text};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The type checker run over the installed package (its oldest supported target is 3.10, so
/// 3.9 compatibility is left to the syntax the SDK restricts itself to).
const MYPY: &str = "mypy==2.4.1";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `cmd`, panicking with its output when it fails.
fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: spawning: {e}"));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{all}",
        out.status
    );
    all
}

/// The pytest pins of `scripts/test-requirements.txt` (what the test venv has).
fn pytest_pins() -> Vec<String> {
    let req = std::fs::read_to_string(repo().join("scripts/test-requirements.txt")).unwrap();
    let pins: Vec<String> = req
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("pytest"))
        .map(String::from)
        .collect();
    assert!(
        pins.iter().any(|p| p.starts_with("pytest-asyncio")),
        "{pins:?}"
    );
    pins
}

#[test]
fn python_sdk_suite_passes_against_a_real_daemon() {
    let a = Airlock::start();
    let secrets = tempfile::tempdir().unwrap();
    let token = "sdk-test-token-0123456789abcdef";
    let token_file = airlock_testkit::token_file(secrets.path(), token);
    let addr = airlock_testkit::free_loopback_addr();
    let d = a.daemon(&["--tcp", &addr, "--token-file", token_file.to_str().unwrap()]);

    // A fresh venv with nothing but the SDK and its dependencies, installed as a user would.
    let started = Instant::now();
    let venv = tempfile::tempdir().unwrap();
    let python = venv.path().join("bin/python");
    run(
        "creating the venv",
        Command::new(test_python())
            .args(["-m", "venv"])
            .arg(venv.path()),
    );
    let pip = |what: &str, args: &[&str]| {
        run(
            what,
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(args)
                .current_dir(repo()),
        )
    };
    pip("pip install ./sdk/python", &["./sdk/python"]);
    let pins = pytest_pins();
    pip(
        "installing pytest",
        &pins.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    pip("installing mypy", &[MYPY]);
    eprintln!("venv ready in {:.1?}", started.elapsed());

    // The package as installed is typed (py.typed, strict annotations), and so are its tools.
    let mypy = |what: &str, args: &[&str]| {
        run(
            what,
            Command::new(&python)
                .args([
                    "-m",
                    "mypy",
                    "--cache-dir=/dev/null",
                    "--python-version=3.10",
                ])
                .args(args)
                .current_dir(repo().join("sdk/python")),
        )
    };
    mypy("mypy --strict -p airlock", &["--strict", "-p", "airlock"]);
    mypy("mypy --strict tools", &["--strict", "tools"]);
    mypy("mypy tests", &["tests"]);

    let started = Instant::now();
    let out = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-v",
            "-rA",
            "-p",
            "no:cacheprovider",
            "tests",
        ])
        .current_dir(repo().join("sdk/python"))
        .env("AIRLOCK_SOCKET", a.socket())
        .env("AIRLOCK_TEST_TCP_URL", format!("http://{addr}"))
        .env("AIRLOCK_TEST_TOKEN", token)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("AIRLOCK_TEST_IMAGE")
        .output()
        .expect("running pytest");
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    eprintln!("pytest took {:.1?}:\n{report}", started.elapsed());
    assert!(
        out.status.success(),
        "pytest failed ({}):\n{report}\ndaemon log:\n{}",
        out.status,
        d.log_text()
    );
    // Every test ran: none skipped or expected to fail.
    let summary = report.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed")
            && !summary.contains("skipped")
            && !summary.contains("xfail")
            && !summary.contains("deselected"),
        "{summary}"
    );

    // The SDK deleted every sandbox it made, and no VM or gateway is left.
    let (code, body) = d.curl("GET", "/v1/sandboxes", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_of(&body)["sandboxes"], serde_json::json!([]), "{body}");
    a.assert_processes_gone();
    d.stop();
    a.assert_clean();
}
