//! `airlock run`: a command runs in a microVM with its own kernel; stdio, exit status, PTY,
//! signals and teardown behave as on a local shell.

use airlock_testkit::{Airlock, host_sha256, text};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

#[test]
fn runs_in_its_own_kernel() {
    let a = Airlock::start();
    let out = a.run(["run", "--", "uname", "-r"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let guest = text(&out.stdout).trim().to_string();
    let host = text(
        &std::process::Command::new("uname")
            .arg("-r")
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    assert!(!guest.is_empty());
    assert_ne!(guest, host, "the command must run under the guest kernel");
    assert!(
        guest.starts_with("6.1."),
        "guest kernel is built from linux-source-6.1: {guest}"
    );
    a.assert_clean();
}

#[test]
fn stdout_stderr_and_exit_status_pass_through() {
    let a = Airlock::start();
    let out = a.run(["run", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(text(&out.stdout), "out\n");
    assert!(
        text(&out.stderr).ends_with("err\n"),
        "stderr: {:?}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(7));
    a.assert_clean();
}

#[test]
fn large_stdin_arrives_intact() {
    let a = Airlock::start();
    let mut data = vec![0u8; 20_000_000];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut data))
        .unwrap();
    let want = host_sha256(&data);
    let out = a.run_with_input(&["run", "--", "sha256sum"], data);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{want}  -\n"));
    a.assert_clean();
}

#[test]
fn large_stdout_arrives_intact() {
    let a = Airlock::start();
    let out = a.run(["run", "--", "head", "-c", "20000000", "/dev/zero"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 20_000_000);
    assert_eq!(
        host_sha256(&out.stdout),
        host_sha256(&vec![0u8; 20_000_000])
    );
    a.assert_clean();
}

#[test]
fn tty_mode_gives_a_pty() {
    let a = Airlock::start();
    let out = a.run(["run", "-t", "--", "tty"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let tty = text(&out.stdout);
    assert!(
        tty.trim_end().starts_with("/dev/pts/"),
        "tty printed {tty:?}"
    );
    a.assert_clean();
}

#[test]
fn tty_mode_reports_window_size_and_status() {
    let a = Airlock::start();
    let out = a.run(["run", "-t", "--", "sh", "-c", "stty size; exit 3"]);
    // Without a terminal on our side the guest PTY gets the 24x80 default.
    assert_eq!(text(&out.stdout).trim_end(), "24 80");
    assert_eq!(out.status.code(), Some(3));
    a.assert_clean();
}

#[test]
fn missing_command_exits_127_with_a_message() {
    let a = Airlock::start();
    let out = a.run(["run", "--", "no-such-cmd"]);
    assert_eq!(out.status.code(), Some(127));
    let err = text(&out.stderr);
    assert!(
        err.contains("command not found in the guest") && err.contains("no-such-cmd"),
        "stderr: {err}"
    );
    a.assert_clean();
}

#[test]
fn env_and_workdir_are_applied() {
    let a = Airlock::start();
    check_env_and_workdir(&a);
    a.assert_clean();
}

/// Starts `airlock run -- sh -c SCRIPT` and returns once the script printed `started`.
pub(super) fn run_until_started(a: &Airlock, script: &str) -> std::process::Child {
    let mut child = a
        .command(["run", "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n");
    child
}

/// `run -e ... --workdir ...` reaches the command (also checked through a daemon).
pub(super) fn check_env_and_workdir(a: &Airlock) {
    let out = a.run([
        "run",
        "-e",
        "GREETING=hello world",
        "--workdir",
        "/tmp",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello world\n/tmp\n");
}

#[test]
fn a_missing_workdir_is_a_clear_error() {
    let a = Airlock::start();
    let out = a.run(["run", "--workdir", "/nonexistent", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("working directory \\\"/nonexistent\\\" does not exist"),
        "{}",
        text(&out.stderr)
    );
    a.assert_clean();
}

#[test]
fn death_by_signal_is_128_plus_n() {
    let a = Airlock::start();
    let out = a.run(["run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143));
    a.assert_clean();
}

#[test]
fn sigint_is_forwarded_and_everything_is_torn_down() {
    let a = Airlock::start();
    let mut child = run_until_started(&a, "echo started; exec sleep 100");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    // sleep died of the forwarded SIGINT: 128 + 2.
    assert_eq!(status.code(), Some(130));
    a.assert_clean();
}

#[test]
fn interrupt_at_any_phase_leaves_nothing_behind() {
    // The acceptance form: the signal may land during boot or while the command runs.
    let a = Airlock::start();
    let mut cmd = std::process::Command::new("timeout");
    cmd.args(["--preserve-status", "-s", "INT", "5"])
        .arg(Airlock::binary())
        .args(["run", "--", "sleep", "100"])
        .env("AIRLOCK_STATE_DIR", a.state_dir())
        .env("AIRLOCK_AUDIT_DIR", a.audit_dir())
        // Never a host daemon: this test is about a local run's phases.
        .env("AIRLOCK_SOCKET", a.socket())
        .current_dir(a.cwd())
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "stderr: {}",
        text(&out.stderr)
    );
    a.assert_clean();
}

#[test]
fn bad_arguments_name_the_problem() {
    let a = Airlock::start();
    let out = a.run(["run", "--workdir", "relative", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("'relative' must be an absolute path inside the guest"),
        "{}",
        text(&out.stderr)
    );
    let out = a.run(["run", "-e", "=x", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("non-empty KEY"),
        "{}",
        text(&out.stderr)
    );
    let out = a.run(["run"]);
    assert_eq!(out.status.code(), Some(125));
    a.assert_clean();
}

#[test]
fn a_guest_that_cannot_boot_reports_why() {
    let a = Airlock::start();
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"not a kernel").unwrap();
    let out = a
        .command(["run", "--", "true"])
        .env("AIRLOCK_KERNEL", junk.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(err.contains("the VM exited during boot"), "stderr: {err}");
    a.assert_clean();
}

#[test]
fn doctor_reports_the_accelerator_and_why() {
    let a = Airlock::start();
    let out = a.run(["doctor"]);
    let report = text(&out.stdout);
    let accel_line = report
        .lines()
        .find(|l| l.contains("accelerator"))
        .unwrap_or_default()
        .to_string();
    let expected = if std::path::Path::new("/sys/module/kvm_pvm").exists()
        || !std::path::Path::new("/dev/kvm").exists()
    {
        "tcg ("
    } else {
        "("
    };
    assert!(accel_line.contains(expected), "{report}");
    assert!(
        report.contains("qemu") && report.contains("QEMU emulator version"),
        "{report}"
    );
    assert!(
        report.contains("kernel") && report.contains("image tiny"),
        "{report}"
    );
}
