//! Every run leaves a hash-chained, signed audit log that `airlock audit verify` checks and
//! `airlock audit show` renders safely; monitor rules act on events as they are recorded.

use airlock_testkit::audit::{Decision, Event, Source, from, fs_is, is, kind, net_is};
use airlock_testkit::{Airlock, text};
use std::path::{Path, PathBuf};

/// The raw lines of a log, for the tests that edit them to prove tampering is detected.
fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_run_is_recorded_and_verifies() {
    let a = Airlock::start();
    let out = a.run(["run", "--", "ls", "/"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = a.audit();
    let ls = |e: &Event| e.proc.as_ref().is_some_and(|p| p.argv == ["ls", "/"]);
    assert!(log.has(from(Source::Host, kind::SANDBOX_START)), "{log}");
    assert!(
        log.has(|e| is(kind::PROC_EXEC, Decision::Allow)(e) && e.source == Source::Host && ls(e)),
        "no host proc.exec allow of `ls /` in\n{log}"
    );
    assert!(log.has(from(Source::Guest, kind::PROC_EXEC)), "{log}");
    assert!(
        log.has(|e| ls(e) && e.proc.as_ref().unwrap().cwd.as_deref() == Some("/workspace")),
        "no `ls /` in /workspace in\n{log}"
    );
    assert!(log.has(from(Source::Guest, kind::PROC_EXIT)), "{log}");
    assert!(log.has(from(Source::Host, kind::SANDBOX_END)), "{log}");
    let log = a.audit_log();
    let v = a.run(["audit", "verify", log.to_str().unwrap()]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}{}",
        text(&v.stdout),
        text(&v.stderr)
    );
    assert!(text(&v.stdout).contains("sealed"), "{}", text(&v.stdout));
    a.assert_clean();
}

#[test]
fn tampering_is_detected_and_located() {
    let a = Airlock::start();
    let out = a.run(["run", "--", "sh", "-c", "echo a; echo b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = a.audit_log();
    let original = lines(&log);
    assert!(original.len() >= 5, "{original:?}");
    let checkpoints = PathBuf::from(format!("{}.checkpoints", log.display()));
    let dir = tempfile::tempdir().unwrap();
    let mut flipped = original.clone();
    flipped[2] = flipped[2].replacen("\"kind\":\"proc.exec\"", "\"kind\":\"proc.exed\"", 1);
    if flipped[2] == original[2] {
        flipped[2] = flipped[2].replacen('1', "2", 1);
    }
    let mut deleted = original.clone();
    deleted.remove(2);
    let mut swapped = original.clone();
    swapped.swap(2, 3);
    let mut truncated = original.clone();
    truncated.pop();
    for (name, body, seq) in [
        ("flipped", flipped, "seq 3"),
        ("deleted", deleted, "seq 3"),
        ("swapped", swapped, "seq 3"),
        ("truncated", truncated, "seq"),
    ] {
        let copy = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&copy, body.join("\n") + "\n").unwrap();
        std::fs::copy(&checkpoints, format!("{}.checkpoints", copy.display())).unwrap();
        let v = a.run(["audit", "verify", copy.to_str().unwrap()]);
        assert_eq!(
            v.status.code(),
            Some(1),
            "{name}: {}{}",
            text(&v.stdout),
            text(&v.stderr)
        );
        assert!(
            text(&v.stderr).contains("FAILED verification") && text(&v.stderr).contains(seq),
            "{name}: {}",
            text(&v.stderr)
        );
    }
    a.assert_clean();
}

#[test]
fn guest_text_is_escaped_in_show() {
    let a = Airlock::start();
    let evil = "name\nwith\x1b]0;title\x07and\u{202e}bidi";
    let out = a.run(["run", "--", "sh", "-c", "true", evil]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let show = a.run(["audit", "show", a.audit_log().to_str().unwrap()]);
    let shown = text(&show.stdout);
    assert!(
        !shown.contains('\x1b') && !shown.contains('\u{202e}') && !shown.contains('\x07'),
        "{shown:?}"
    );
    assert!(shown.contains("\\x1b]0;title"), "{shown}");
    // One line per record: the newline in the argument did not split a record.
    assert!(
        shown.lines().all(|l| l
            .trim_start()
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())),
        "{shown}"
    );
    a.assert_clean();
}

#[test]
fn monitor_rules_alert_and_kill() {
    let a = Airlock::start();
    let dir = tempfile::tempdir().unwrap();
    let alert = dir.path().join("alert.toml");
    std::fs::write(
        &alert,
        "[[monitor.rules]]\nkind = \"proc.exec\"\naction = \"alert\"\n",
    )
    .unwrap();
    let out = a.run(["run", "--policy", alert.to_str().unwrap(), "--", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("airlock: alert: monitor rule monitor.rules[0]")
            && err.contains("matched proc.exec"),
        "{err}"
    );
    let log = a.audit();
    assert!(log.has(|e| e.kind == kind::MONITOR_ALERT), "{log}");
    a.assert_clean();

    let a = Airlock::start();
    let kill = dir.path().join("kill.toml");
    std::fs::write(
        &kill,
        "[[monitor.rules]]\nkind = \"proc.exit\"\naction = \"kill\"\n",
    )
    .unwrap();
    // `true` exits at once (a guest proc.exit), while the command itself waits.
    let out = a.run([
        "run",
        "--policy",
        kill.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "/bin/true; sleep 1000",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("matched proc.exit"),
        "{}",
        text(&out.stderr)
    );
    let log = a.audit();
    assert!(log.has(|e| e.kind == kind::MONITOR_KILL), "{log}");
    let end = log.first(kind::SANDBOX_END);
    assert!(
        end.detail
            .as_deref()
            .is_some_and(|d| d.contains("matched proc.exit")),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn writes_denials_and_commands_of_one_run_are_on_record() {
    let a = Airlock::start();
    std::fs::write(a.cwd().join("notes.txt"), "old\n").unwrap();
    let out = a.run([
        "run", "--", "sh", "-c",
        "echo more >> notes.txt; echo new > made.txt; wget -q -O- http://evil.example/ 2>/dev/null; ls > /dev/null",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = a.audit();
    assert!(
        log.has(fs_is(kind::FS_WRITE, Decision::Allow, "notes.txt")),
        "{log}"
    );
    assert!(
        log.has(fs_is(kind::FS_CREATE, Decision::Allow, "made.txt")),
        "{log}"
    );
    assert!(
        log.has(
            |e| net_is(kind::NET_HTTP, Decision::Deny, "evil.example")(e)
                && e.rule.as_deref() == Some("network.default")
        ),
        "{log}"
    );
    // `ls` runs as a busybox applet in a forked shell; the guest reports it by name.
    assert!(
        log.has(|e| from(Source::Guest, kind::PROC_EXEC)(e)
            && e.proc
                .as_ref()
                .is_some_and(|p| p.argv.first().is_some_and(|a| a == "ls"))),
        "no proc.exec for ls in\n{log}"
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

#[test]
fn a_killed_run_leaves_a_log_that_verifies_up_to_its_last_record() {
    let a = Airlock::start();
    let mut child = a
        .command(["run", "--", "sh", "-c", "echo started; sleep 1000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "started\n");
    child.kill().unwrap(); // SIGKILL: no teardown, no final checkpoint
    child.wait().unwrap();
    let v = a.run(["audit", "verify", a.audit_log().to_str().unwrap()]);
    assert_eq!(
        v.status.code(),
        Some(2),
        "{}{}",
        text(&v.stdout),
        text(&v.stderr)
    );
    assert!(text(&v.stdout).starts_with("ok: "), "{}", text(&v.stdout));
    assert!(
        text(&v.stderr).contains("not sealed"),
        "{}",
        text(&v.stderr)
    );
    // The helpers died with airlock (PDEATHSIG).
    a.assert_processes_gone();
}

#[test]
fn events_follow_and_stats_of_a_finished_sandbox() {
    let a = Airlock::start();
    let out = a.run([
        "run",
        "--",
        "sh",
        "-c",
        "echo x > f; wget -q http://nope.example/ 2>/dev/null; true",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // -f ends by itself once it has printed the sandbox's end.
    let ev = a.run(["events", "-f"]);
    let shown = text(&ev.stdout);
    assert!(
        shown.contains("sandbox.start") && shown.contains("sandbox.end"),
        "{shown}"
    );
    let id = a
        .audit_log()
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let stats = a.run(["stats", &id]);
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(v["running"], false);
    assert!(v["fs_ops"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["denials"]["net"], 1, "{v}");
    let prom = a.run(["stats", &id, "--prometheus"]);
    assert!(
        text(&prom.stdout).contains(&format!(
            "airlock_denials_total{{sandbox=\"{id}\",area=\"net\"}} 1"
        )),
        "{}",
        text(&prom.stdout)
    );
    a.assert_clean();
}

#[test]
fn redactions_apply_before_anything_is_written() {
    let a = Airlock::start();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "extends = \"default\"\n[audit]\nredact = [\"sk-ant-[a-z0-9]+\"]\nredact_env = [\"MY_TOKEN\"]\n",
    )
    .unwrap();
    let out = a
        .command([
            "run",
            "--policy",
            p.to_str().unwrap(),
            "-e",
            "MY_TOKEN=tok-4242",
            "--",
            "sh",
            "-c",
            "echo sk-ant-abc123 tok-4242 > /dev/null",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The secrets are in no byte of the file (not only in no field): searched in the raw text.
    let raw = std::fs::read_to_string(a.audit_log()).unwrap();
    assert!(
        !raw.contains("sk-ant-abc123") && !raw.contains("tok-4242"),
        "{raw}"
    );
    let log = a.audit();
    assert!(
        log.has(|e| e.proc.as_ref().is_some_and(|p| p
            .argv
            .iter()
            .any(|arg| arg.contains("[REDACTED] [REDACTED]")))),
        "{log}"
    );
    a.assert_clean();
}
