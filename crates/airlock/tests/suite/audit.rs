//! Every run leaves a hash-chained, signed audit log that `airlock audit verify` checks and
//! `airlock audit show` renders safely; monitor rules act on events as they are recorded.

use airlock_testkit::{Airlock, text};
use std::path::{Path, PathBuf};

struct Run {
    a: Airlock,
}

impl Run {
    fn new() -> Run {
        Run {
            a: Airlock::new(env!("CARGO_BIN_EXE_airlock")),
        }
    }

    fn airlock(&self, args: &[&str]) -> std::process::Output {
        self.a.command(args).output().unwrap()
    }

    fn log(&self) -> PathBuf {
        self.a.audit_log()
    }
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_run_is_recorded_and_verifies() {
    let r = Run::new();
    let out = r.airlock(&["run", "--", "ls", "/"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = r.log();
    let records = lines(&log).join("\n");
    for needle in [
        r#""source":"host","kind":"sandbox.start""#,
        r#""source":"host","kind":"proc.exec","decision":"allow","proc":{"argv":["ls","/"]"#,
        r#""source":"guest","kind":"proc.exec""#,
        r#""argv":["ls","/"],"cwd":"/workspace""#,
        r#""source":"guest","kind":"proc.exit""#,
        r#""source":"host","kind":"sandbox.end""#,
    ] {
        assert!(records.contains(needle), "missing {needle} in\n{records}");
    }
    let v = r.airlock(&["audit", "verify", log.to_str().unwrap()]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}{}",
        text(&v.stdout),
        text(&v.stderr)
    );
    assert!(text(&v.stdout).contains("sealed"), "{}", text(&v.stdout));
    r.a.assert_clean();
}

#[test]
fn tampering_is_detected_and_located() {
    let r = Run::new();
    let out = r.airlock(&["run", "--", "sh", "-c", "echo a; echo b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = r.log();
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
        let v = r.airlock(&["audit", "verify", copy.to_str().unwrap()]);
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
    r.a.assert_clean();
}

#[test]
fn guest_text_is_escaped_in_show() {
    let r = Run::new();
    let evil = "name\nwith\x1b]0;title\x07and\u{202e}bidi";
    let out = r.airlock(&["run", "--", "sh", "-c", "true", evil]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let show = r.airlock(&["audit", "show", r.log().to_str().unwrap()]);
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
    r.a.assert_clean();
}

#[test]
fn monitor_rules_alert_and_kill() {
    let r = Run::new();
    let dir = tempfile::tempdir().unwrap();
    let alert = dir.path().join("alert.toml");
    std::fs::write(
        &alert,
        "[[monitor.rules]]\nkind = \"proc.exec\"\naction = \"alert\"\n",
    )
    .unwrap();
    let out = r.airlock(&["run", "--policy", alert.to_str().unwrap(), "--", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("airlock: alert: monitor rule monitor.rules[0]")
            && err.contains("matched proc.exec"),
        "{err}"
    );
    assert!(
        std::fs::read_to_string(r.log())
            .unwrap()
            .contains("\"kind\":\"monitor.alert\"")
    );
    r.a.assert_clean();

    let r = Run::new();
    let kill = dir.path().join("kill.toml");
    std::fs::write(
        &kill,
        "[[monitor.rules]]\nkind = \"proc.exit\"\naction = \"kill\"\n",
    )
    .unwrap();
    // `true` exits at once (a guest proc.exit), while the command itself waits.
    let out = r.airlock(&[
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
    let records = std::fs::read_to_string(r.log()).unwrap();
    assert!(records.contains("\"kind\":\"monitor.kill\""), "{records}");
    assert!(
        records.contains("\"kind\":\"sandbox.end\"") && records.contains("matched proc.exit"),
        "{records}"
    );
    r.a.assert_clean();
}

#[test]
fn writes_denials_and_commands_of_one_run_are_on_record() {
    let r = Run::new();
    std::fs::write(r.a.cwd().join("notes.txt"), "old\n").unwrap();
    let out = r.airlock(&[
        "run", "--", "sh", "-c",
        "echo more >> notes.txt; echo new > made.txt; wget -q -O- http://evil.example/ 2>/dev/null; ls > /dev/null",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = std::fs::read_to_string(r.log()).unwrap();
    for needle in [
        r#""kind":"fs.write","decision":"allow""#,
        r#""path":"notes.txt""#,
        r#""kind":"fs.create","decision":"allow""#,
        r#""kind":"net.http","decision":"deny","rule":"network.default""#,
        r#""host":"evil.example""#,
    ] {
        assert!(log.contains(needle), "missing {needle} in\n{log}");
    }
    // `ls` runs as a busybox applet in a forked shell; the guest reports it by name.
    assert!(
        log.lines()
            .any(|l| l.contains(r#""source":"guest","kind":"proc.exec""#)
                && l.contains(r#""argv":["ls""#)),
        "no proc.exec for ls in\n{log}"
    );
    let v = r.airlock(&["audit", "verify", r.log().to_str().unwrap()]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}{}",
        text(&v.stdout),
        text(&v.stderr)
    );
    r.a.assert_clean();
}

#[test]
fn a_killed_run_leaves_a_log_that_verifies_up_to_its_last_record() {
    let r = Run::new();
    let mut child =
        r.a.command(["run", "--", "sh", "-c", "echo started; sleep 1000"])
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
    let v = r.airlock(&["audit", "verify", r.log().to_str().unwrap()]);
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
    r.a.assert_processes_gone();
}

#[test]
fn events_follow_and_stats_of_a_finished_sandbox() {
    let r = Run::new();
    let out = r.airlock(&[
        "run",
        "--",
        "sh",
        "-c",
        "echo x > f; wget -q http://nope.example/ 2>/dev/null; true",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // -f ends by itself once it has printed the sandbox's end.
    let ev = r.airlock(&["events", "-f"]);
    let shown = text(&ev.stdout);
    assert!(
        shown.contains("sandbox.start") && shown.contains("sandbox.end"),
        "{shown}"
    );
    let id = r.log().file_stem().unwrap().to_string_lossy().into_owned();
    let stats = r.airlock(&["stats", &id]);
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(v["running"], false);
    assert!(v["fs_ops"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["denials"]["net"], 1, "{v}");
    let prom = r.airlock(&["stats", &id, "--prometheus"]);
    assert!(
        text(&prom.stdout).contains(&format!(
            "airlock_denials_total{{sandbox=\"{id}\",area=\"net\"}} 1"
        )),
        "{}",
        text(&prom.stdout)
    );
    r.a.assert_clean();
}

#[test]
fn redactions_apply_before_anything_is_written() {
    let r = Run::new();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "extends = \"default\"\n[audit]\nredact = [\"sk-ant-[a-z0-9]+\"]\nredact_env = [\"MY_TOKEN\"]\n",
    )
    .unwrap();
    let out =
        r.a.command([
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
    let log = std::fs::read_to_string(r.log()).unwrap();
    assert!(
        !log.contains("sk-ant-abc123") && !log.contains("tok-4242"),
        "{log}"
    );
    assert!(log.contains("[REDACTED] [REDACTED]"), "{log}");
    r.a.assert_clean();
}
