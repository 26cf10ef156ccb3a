//! The workspace is shared through the host-side fs gateway: live both ways for `rw`, enforced on
//! the host for `ro`, `deny_read` and protected paths, and every change or denial is audited.

use airlock_testkit::{Airlock, text, wait_until};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

fn airlock() -> Airlock {
    Airlock::new(env!("CARGO_BIN_EXE_airlock"))
}

fn workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("host.txt"), "from host\n").unwrap();
    ws
}

fn policy(dir: &Path, body: &str) -> String {
    let p = dir.join("policy.toml");
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

fn audit(a: &Airlock) -> String {
    std::fs::read_to_string(a.audit_log()).unwrap()
}

#[test]
fn rw_is_live_both_ways() {
    let a = airlock();
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
    let log = audit(&a);
    assert!(
        log.contains(r#""kind":"fs.create","decision":"allow""#)
            && log.contains(r#""path":"g.txt""#),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn ro_holds_even_after_a_guest_remount() {
    let a = airlock();
    let ws = workspace();
    let p = policy(
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
    let log = audit(&a);
    assert!(
        log.contains(r#""decision":"deny""#) && log.contains(r#""path":"host.txt""#),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn deny_read_and_outside_symlinks_reveal_nothing() {
    let a = airlock();
    let ws = workspace();
    std::fs::write(ws.path().join(".env"), "API_KEY=secret-value\n").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "outside-secret\n").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), ws.path().join("link")).unwrap();
    let p = policy(
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
    let log = audit(&a);
    assert!(
        log.contains(r#""kind":"fs.open","decision":"deny""#) && log.contains(r#""path":".env""#),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn git_hooks_cannot_be_planted() {
    let a = airlock();
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
    let log = audit(&a);
    assert!(
        log.contains(r#"filesystem.protected \".git/hooks/**\""#),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn a_prepared_tree_cannot_be_renamed_into_dot_git() {
    // A hooks dir built under another name and moved into place as `.git` is refused too.
    let a = airlock();
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
    let log = audit(&a);
    assert!(
        log.contains(r#""kind":"fs.rename","decision":"deny""#),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn file_names_with_control_characters_are_escaped_in_show() {
    let a = airlock();
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
fn overlay_mode_is_refused_until_built() {
    let a = airlock();
    let ws = workspace();
    let p = policy(
        ws.path(),
        "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"overlay\"\n",
    );
    let out = a.run([
        "run",
        "--policy",
        &p,
        "--workspace",
        ws.path().to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("mode \"overlay\" is not supported by this build yet"),
        "{}",
        text(&out.stderr)
    );
    let _ = wait_until(Duration::from_secs(1), || true);
    a.assert_clean();
}
