//! The workspace is shared through the host-side fs gateway: live both ways for `rw`, enforced on
//! the host for `ro`, `deny_read` and protected paths, and every change or denial is audited.

use airlock_testkit::audit::{Decision, fs_is, is, kind};
use airlock_testkit::{Airlock, text, write_policy};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

fn workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("host.txt"), "from host\n").unwrap();
    ws
}

#[test]
fn rw_is_live_both_ways() {
    let a = Airlock::start();
    let ws = workspace();
    let script = "cat host.txt; echo from guest > g.txt; echo wrote; \
                  while [ ! -f h2.txt ]; do sleep 0.1; done; cat h2.txt";
    let mut child = a
        .command([
            "run",
            "--workspace",
            ws.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "from host\n");
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "wrote\n");
    // The guest's write is on the host as soon as the guest says it wrote it.
    assert_eq!(
        std::fs::read_to_string(ws.path().join("g.txt")).unwrap(),
        "from guest\n"
    );
    std::fs::write(ws.path().join("h2.txt"), "second from host\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "second from host\n");
    assert!(child.wait().unwrap().success());
    let log = a.audit();
    assert!(
        log.has(fs_is(kind::FS_CREATE, Decision::Allow, "g.txt")),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn ro_holds_even_after_a_guest_remount() {
    let a = Airlock::start();
    let ws = workspace();
    let p = write_policy(
        ws.path(),
        "[process]\nuser = \"root\"\nseccomp = \"unconfined\"\nno_new_privs = false\n\
         [[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"ro\"\n",
    );
    let script = "mount -o remount,rw /workspace && echo remounted; \
                  echo evil > host.txt; echo write=$?; touch new.txt; echo create=$?";
    let out = a.run([
        "run",
        "--policy",
        &p,
        "--workspace",
        ws.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("remounted"),
        "guest root could remount: {stdout}"
    );
    assert!(
        stdout.contains("write=1") && stdout.contains("create=1"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("host.txt")).unwrap(),
        "from host\n"
    );
    assert!(!ws.path().join("new.txt").exists());
    let log = a.audit();
    assert!(
        log.has(|e| e.decision == Some(Decision::Deny)
            && e.fs.as_ref().is_some_and(|f| f.path == "host.txt")),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn deny_read_and_outside_symlinks_reveal_nothing() {
    let a = Airlock::start();
    let ws = workspace();
    std::fs::write(ws.path().join(".env"), "API_KEY=secret-value\n").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "outside-secret\n").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), ws.path().join("link")).unwrap();
    let p = write_policy(
        outside.path(),
        "extends = \"default\"\n[filesystem]\ndeny_read = [\".env\"]\n",
    );
    let out = a.run([
        "run",
        "--policy",
        &p,
        "--workspace",
        ws.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "ls -a; cat .env; echo env=$?; cat link; echo link=$?",
    ]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains(".env"), "the name may be listed: {stdout}");
    assert!(
        !stdout.contains("secret-value") && !stdout.contains("outside-secret"),
        "{stdout}"
    );
    assert!(
        stdout.contains("env=1") && stdout.contains("link=1"),
        "{stdout}"
    );
    let log = a.audit();
    assert!(
        log.has(fs_is(kind::FS_OPEN, Decision::Deny, ".env")),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn git_hooks_cannot_be_planted() {
    let a = Airlock::start();
    let ws = workspace();
    std::fs::create_dir(ws.path().join(".git")).unwrap();
    std::fs::write(ws.path().join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    let script = "mkdir -p .git/hooks; echo mkdir=$?; \
                  echo x > .git/hooks/pre-commit; echo direct=$?; \
                  mv .git .g; echo mvgit=$?; \
                  echo '#!/bin/sh' > prepared; mv prepared .git/hooks/pre-commit; echo rename=$?; \
                  ln -s ../../prepared .git/hooks/pre-push 2>/dev/null; echo symlink=$?; \
                  echo x >> .git/config; echo config=$?";
    let out = a.run([
        "run",
        "--workspace",
        ws.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ]);
    let stdout = text(&out.stdout);
    for step in [
        "mkdir=1",
        "direct=1",
        "mvgit=1",
        "rename=1",
        "symlink=1",
        "config=1",
    ] {
        assert!(stdout.contains(step), "{step} expected in {stdout}");
    }
    assert!(
        !ws.path().join(".git/hooks").exists(),
        "nothing was created under .git/hooks"
    );
    assert!(!ws.path().join(".git/config").exists());
    assert!(
        ws.path().join(".git/HEAD").exists(),
        ".git was not moved away"
    );
    let log = a.audit();
    assert!(
        log.has(|e| e.rule.as_deref() == Some(r#"filesystem.protected ".git/hooks/**""#)),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn a_prepared_tree_cannot_be_renamed_into_dot_git() {
    // A hooks dir built under another name and moved into place as `.git` is refused too.
    let a = Airlock::start();
    let ws = workspace();
    let out = a.run([
        "run", "--workspace", ws.path().to_str().unwrap(), "--", "sh", "-c",
        "mkdir -p .g/hooks && echo x > .g/hooks/pre-commit; echo prepared=$?; mv .g .git; echo mv=$?",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("prepared=0") && stdout.contains("mv=1"),
        "{stdout}"
    );
    assert!(!ws.path().join(".git").exists());
    assert!(ws.path().join(".g/hooks/pre-commit").exists());
    let log = a.audit();
    assert!(log.has(is(kind::FS_RENAME, Decision::Deny)), "{log}");
    a.assert_clean();
}

#[test]
fn file_names_with_control_characters_are_escaped_in_show() {
    let a = Airlock::start();
    let ws = workspace();
    let out = a.run([
        "run",
        "--workspace",
        ws.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "touch \"$(printf 'evil\\nname\\033]0;pwned\\007')\"",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let show = a.run([
        "audit",
        "show",
        a.audit_log().to_str().unwrap(),
        "--kind",
        "fs.*",
    ]);
    let shown = text(&show.stdout);
    assert!(shown.contains("evil\\nname\\x1b]0;pwned\\x07"), "{shown}");
    assert!(
        !shown.contains('\x1b') && !shown.contains('\x07'),
        "{shown:?}"
    );
    assert_eq!(shown.lines().count(), 1, "{shown}");
    a.assert_clean();
}

#[test]
fn overlay_keeps_the_host_untouched_until_apply() {
    let a = Airlock::start();
    let ws = workspace();
    std::fs::create_dir(ws.path().join("src")).unwrap();
    std::fs::write(ws.path().join("src/lib.rs"), "fn one() {}\nfn two() {}\n").unwrap();
    let before = tree(ws.path());
    let overlays = tempfile::tempdir().unwrap();
    let p = write_policy(
        overlays.path(),
        "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"overlay\"\n",
    );
    let airlock_ov = |args: &[&str]| {
        a.command(args)
            .env("AIRLOCK_OVERLAY_DIR", overlays.path())
            .output()
            .unwrap()
    };
    let out = airlock_ov(&[
        "run",
        "--policy",
        &p,
        "--workspace",
        ws.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "printf 'fn one() {}\\nfn three() {}\\n' > src/lib.rs; rm host.txt; echo new > added.txt; cat src/lib.rs",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "fn one() {}\nfn three() {}\n",
        "the guest sees its own writes"
    );
    assert_eq!(
        tree(ws.path()),
        before,
        "the host tree is byte-identical until apply"
    );
    let err = text(&out.stderr);
    let id = err
        .split("airlock diff ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap()
        .to_string();

    let diff = airlock_ov(&["diff", &id]);
    let shown = text(&diff.stdout);
    for line in [
        "A added.txt",
        "D host.txt",
        "M src/lib.rs",
        "-fn two() {}",
        "+fn three() {}",
    ] {
        assert!(shown.contains(line), "{line} missing from\n{shown}");
    }
    let apply = airlock_ov(&["apply", &id]);
    assert_eq!(
        apply.status.code(),
        Some(0),
        "{}{}",
        text(&apply.stdout),
        text(&apply.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("src/lib.rs")).unwrap(),
        "fn one() {}\nfn three() {}\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("added.txt")).unwrap(),
        "new\n"
    );
    assert!(!ws.path().join("host.txt").exists());
    let discard = airlock_ov(&["discard", &id]);
    assert!(discard.status.success(), "{}", text(&discard.stderr));
    assert!(!overlays.path().join(&id).exists());
    a.assert_clean();
}

#[test]
fn apply_waits_for_the_sandbox_to_end() {
    use std::io::BufRead;
    let a = Airlock::start();
    let ws = workspace();
    let overlays = tempfile::tempdir().unwrap();
    let p = write_policy(
        overlays.path(),
        "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"overlay\"\n",
    );
    let mut child = a
        .command([
            "run",
            "--policy",
            &p,
            "--workspace",
            ws.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo started; sleep 4",
        ])
        .env("AIRLOCK_OVERLAY_DIR", overlays.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Keep both pipes open until airlock exits: it still writes to them.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut err_line = String::new();
    stderr.read_line(&mut err_line).unwrap();
    let id = err_line.split_whitespace().nth(2).unwrap().to_string();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    // Wait for the first stats publication, which marks the sandbox as running.
    let stats = a.state_dir().join(&id).join("stats.json");
    assert!(airlock_testkit::wait_until(
        std::time::Duration::from_secs(10),
        || stats.exists()
    ));
    let apply = a
        .command(["apply", &id])
        .env("AIRLOCK_OVERLAY_DIR", overlays.path())
        .output()
        .unwrap();
    assert_eq!(apply.status.code(), Some(125));
    assert!(
        text(&apply.stderr).contains("still running"),
        "{}",
        text(&apply.stderr)
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
    a.assert_clean();
}

/// Every file under `dir` with its bytes, for byte-for-byte comparisons.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}
