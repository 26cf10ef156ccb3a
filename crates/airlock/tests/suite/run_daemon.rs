//! `airlock run` with a daemon on its socket: the sandbox comes from the daemon, the output and
//! exit status are those of a local run, and the sandbox is deleted on every path; `--no-daemon`,
//! `AIRLOCK_NO_DAEMON=1` and options only a local boot honours bypass it; a daemon's refusal is
//! reported, never silently worked around.

use super::daemon::json_of;
use super::pool::{pool, wait_ready};
use airlock_testkit::audit::kind;
use airlock_testkit::{Airlock, Daemon, text, write_policy};
use std::path::PathBuf;

const SCRIPT: &str = "echo out; echo err >&2; exit 3";

/// The detail of each log's `sandbox.end` record, by log file name.
fn end_details(a: &Airlock) -> Vec<(PathBuf, String)> {
    a.audit_logs()
        .into_iter()
        .map(|(path, log)| {
            let detail = log.first(kind::SANDBOX_END).detail.clone();
            (path, detail.unwrap_or_default())
        })
        .collect()
}

/// How many logs' sandboxes ended with exactly `detail`.
fn logs_ended(a: &Airlock, detail: &str) -> usize {
    end_details(a)
        .iter()
        .filter(|(_, d)| d.as_str() == detail)
        .count()
}

/// Asserts that the daemon knows no sandbox (every run deleted its own).
fn assert_none_left(d: &Daemon) {
    let (code, body) = d.curl("GET", "/v1/sandboxes", None);
    assert_eq!(code, 200, "{body}");
    let list = json_of(&body);
    assert_eq!(list["sandboxes"], serde_json::json!([]), "{body}");
}

#[test]
fn run_goes_through_the_daemon_and_no_daemon_bypasses_it() {
    let a = Airlock::start();
    let d = a.daemon(&[]);

    let out = a.run(["run", "--", "sh", "-c", SCRIPT]);
    assert_eq!(text(&out.stdout), "out\n");
    // Nothing but the command's own stderr: the daemon route prints nothing extra.
    assert_eq!(text(&out.stderr), "err\n");
    assert_eq!(out.status.code(), Some(3));
    // The daemon booted it (its teardown reason is the API's delete), and it is gone.
    let ends = end_details(&a);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].1, "deleted through the API", "{ends:?}");
    assert_none_left(&d);
    let verify = a.run(["audit", "verify", ends[0].0.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));

    // Forced local boots: same output, a local teardown reason, the daemon untouched.
    let out = a.run(["run", "--no-daemon", "--", "sh", "-c", SCRIPT]);
    assert_eq!(
        (text(&out.stdout), text(&out.stderr), out.status.code()),
        ("out\n".into(), "err\n".into(), Some(3))
    );
    let out = a
        .command(["run", "--", "sh", "-c", SCRIPT])
        .env("AIRLOCK_NO_DAEMON", "1")
        .output()
        .unwrap();
    assert_eq!(
        (text(&out.stdout), text(&out.stderr), out.status.code()),
        ("out\n".into(), "err\n".into(), Some(3))
    );
    let ends = end_details(&a);
    assert_eq!(ends.len(), 3, "{ends:?}");
    assert_eq!(logs_ended(&a, "deleted through the API"), 1, "{ends:?}");
    let local = ends
        .iter()
        .filter(|(_, d)| d.starts_with("command ended") && d.ends_with("airlock exits 3"))
        .count();
    assert_eq!(local, 2, "{ends:?}");
    assert_none_left(&d);
    a.assert_processes_gone();
    d.stop();
    a.assert_clean();
}

#[test]
fn run_claims_a_warm_guest_from_the_pool() {
    let a = Airlock::start();
    let d = a.daemon(&["--pool", "tiny=1"]);
    wait_ready(&d, 1);
    let out = a.run(["run", "--", "sh", "-c", SCRIPT]);
    assert_eq!(
        (text(&out.stdout), text(&out.stderr), out.status.code()),
        ("out\n".into(), "err\n".into(), Some(3))
    );
    assert_eq!(pool(&d)["claimed"], 1, "{}", pool(&d));
    let ends = end_details(&a);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].1, "deleted through the API", "{ends:?}");
    let log = airlock_testkit::audit::Log::read(&ends[0].0);
    assert!(log.has(|e| e.kind == kind::SANDBOX_BIND), "{log}");

    // What bench/pool.sh reads: the create reply's `pooled`, logged at debug level.
    wait_ready(&d, 1);
    let out = a
        .command(["run", "--", "true"])
        .env("AIRLOCK_LOG", "airlock::cmd::run=debug")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("sandbox from the daemon") && err.contains("pooled=true"),
        "{err}"
    );
    assert_eq!(pool(&d)["claimed"], 2, "{}", pool(&d));
    assert_none_left(&d);
    d.stop();
    a.assert_clean();
}

#[test]
fn run_through_the_daemon_bridges_stdin_env_workdir_tty_and_statuses() {
    let a = Airlock::start();
    let d = a.daemon(&[]);

    let out = a.run_with_input(&["run", "--", "wc", "-c"], vec![b'x'; 300_000]);
    assert_eq!(text(&out.stdout).trim(), "300000", "{}", text(&out.stderr));

    super::run::check_env_and_workdir(&a);

    // Without a terminal on our side the guest PTY gets the 24x80 default, as locally.
    let out = a.run(["run", "-t", "--", "sh", "-c", "stty size; tty; exit 4"]);
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("24 80\r\n/dev/pts/"),
        "{shown:?} {}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(4));

    let out = a.run(["run", "--", "no-such-cmd"]);
    assert_eq!(out.status.code(), Some(127));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("airlock: command not found in the guest: ")
            && err.contains("no-such-cmd")
            && err.lines().count() == 1,
        "{err}"
    );

    let out = a.run(["run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));

    // Every one of them came from the daemon and was deleted.
    assert_eq!(
        logs_ended(&a, "deleted through the API"),
        5,
        "{:?}",
        end_details(&a)
    );
    assert_none_left(&d);
    d.stop();
    a.assert_clean();
}

#[test]
fn signals_reach_the_command_and_the_sandbox_is_deleted() {
    let a = Airlock::start();
    let d = a.daemon(&[]);
    let started = |script: &str| super::run::run_until_started(&a, script);
    let interrupt = |child: &std::process::Child| {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    };

    // Forwarded: sleep dies of SIGINT, 128 + 2.
    let child = started("echo started; exec sleep 100");
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert_none_left(&d);

    // Ignored: after the grace period airlock gives up, says so and deletes the sandbox.
    let child = started("trap '' INT; echo started; sleep 100");
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "airlock: the command did not exit within 5 s of signal 2; stopping the sandbox\n"
    );
    assert_none_left(&d);
    assert_eq!(
        logs_ended(&a, "deleted through the API"),
        2,
        "{:?}",
        end_details(&a)
    );
    a.assert_processes_gone();
    d.stop();
    a.assert_clean();
}

#[test]
fn time_limits_and_kill_rules_exit_as_a_local_run_does() {
    let a = Airlock::start();
    let d = a.daemon(&[]);
    let dir = tempfile::tempdir().unwrap();

    let limited = write_policy(
        dir.path(),
        "extends = \"default\"\n[sandbox]\ntimeout = \"3s\"\n",
    );
    let out = a.run(["run", "--policy", &limited, "--", "sleep", "100"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "airlock: the sandbox reached its time limit of 3 s (sandbox.timeout); stopping it\n"
    );

    let kill = write_policy(
        dir.path(),
        "[[monitor.rules]]\nkind = \"proc.exit\"\naction = \"kill\"\n",
    );
    let out = a.run([
        "run",
        "--policy",
        &kill,
        "--",
        "sh",
        "-c",
        "/bin/true; sleep 1000",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("airlock: monitor rule monitor.rules[0] ")
            && err.contains(" matched proc.exit")
            && err.ends_with("; stopping the sandbox\n")
            && err.lines().count() == 1,
        "{err}"
    );
    // Both were the daemon's, stopped by it for those reasons, then deleted.
    let ends = end_details(&a);
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert!(
        ends.iter()
            .any(|(_, d)| d.starts_with("reached its maximum lifetime of 3 s"))
            && ends.iter().any(|(_, d)| {
                d.starts_with("monitor rule monitor.rules[0] ") && d.contains(" matched proc.exit")
            }),
        "{ends:?}"
    );
    assert_none_left(&d);
    d.stop();
    a.assert_clean();
}

#[test]
fn a_refusal_by_the_daemon_is_reported_not_worked_around() {
    let a = Airlock::start();
    let d = a.daemon(&["--max-sandboxes", "0"]);
    let out = a.run(["run", "--", "echo", "must not run"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(text(&out.stdout), "", "the command must not run anywhere");
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "airlock: the daemon on {} did not create the sandbox: ",
            a.socket().display()
        )) && err.contains("--max-sandboxes 0"),
        "{err}"
    );
    assert!(end_details(&a).is_empty(), "nothing booted");
    d.stop();
    a.assert_clean();
}

#[test]
fn overlay_policies_run_locally_with_a_note() {
    let a = Airlock::start();
    let d = a.daemon(&[]);
    let dir = tempfile::tempdir().unwrap();
    let overlays = tempfile::tempdir().unwrap();
    let p = write_policy(
        dir.path(),
        "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"overlay\"\n",
    );
    let run = a
        .command([
            "run",
            "--policy",
            &p,
            "--",
            "sh",
            "-c",
            "echo new > made.txt",
        ])
        .env("AIRLOCK_OVERLAY_DIR", overlays.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let err = text(&run.stderr);
    assert!(
        err.starts_with(&format!(
            "airlock: {p} has an overlay mount, kept for review on this host after the run; not using the daemon\n"
        )),
        "{err}"
    );
    // The local path's own end-of-run review note, and the overlay on this host.
    let id = err
        .split("airlock diff ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap_or_else(|| panic!("no review note in {err}"))
        .to_string();
    assert!(overlays.path().join(&id).is_dir());
    assert!(!a.cwd().join("made.txt").exists());
    assert_eq!(logs_ended(&a, "deleted through the API"), 0);
    let discard = a
        .command(["discard", &id])
        .env("AIRLOCK_OVERLAY_DIR", overlays.path())
        .output()
        .unwrap();
    assert!(discard.status.success(), "{}", text(&discard.stderr));
    assert_none_left(&d);
    d.stop();
    a.assert_clean();
}

#[test]
fn a_daemon_that_goes_away_leaves_run_local() {
    let a = Airlock::start();
    let d = a.daemon(&[]);
    d.stop();
    // The socket file may remain; nobody listens on it.
    let out = a.run(["run", "--", "sh", "-c", SCRIPT]);
    assert_eq!(
        (text(&out.stdout), text(&out.stderr), out.status.code()),
        ("out\n".into(), "err\n".into(), Some(3))
    );
    let ends = end_details(&a);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert!(ends[0].1.starts_with("command ended"), "{ends:?}");
    a.assert_clean();
}
