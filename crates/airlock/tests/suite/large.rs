//! Workspaces of any size: trees far larger than the host's open-file limit work, the fs
//! gateway's descriptors stay bounded while the guest walks them, the policy's open-file limit
//! is enforced and recorded once, and a node the host swaps for a symlink is never followed.
//! Every test runs airlock with `ulimit -n` 20,000, as on a common host.

use airlock_testkit::audit::{Decision, fs_is, kind};
use airlock_testkit::{Airlock, require_root, text, write_policy};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The host's open-file limit in these tests.
const NOFILE: u64 = 20_000;

/// `dirs` folders of `per_dir` one-line files each under `root`.
fn tree(root: &Path, dirs: usize, per_dir: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("{d:04}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..per_dir {
            std::fs::write(dir.join(format!("{f:03}.txt")), format!("{d}/{f}\n")).unwrap();
        }
    }
}

/// Files under `root`, counted on the host.
fn count_files(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                n += 1;
            }
        }
    }
    n
}

/// Samples the descriptors of this test's fs gateways until stopped; keeps the largest count.
struct FdWatch {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicUsize>,
    seen: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl FdWatch {
    fn start(a: &Airlock) -> FdWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicBool::new(false));
        let (s, m, w) = (stop.clone(), max.clone(), seen.clone());
        let state = a.state_dir().to_path_buf();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for pid in airlock_testkit::gateway_pids(&state, "fs") {
                    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                        w.store(true, Ordering::Relaxed);
                        m.fetch_max(dir.count(), Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        FdWatch {
            stop,
            max,
            seen,
            thread,
        }
    }

    /// Stops sampling; the largest descriptor count seen.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        assert!(
            self.seen.load(Ordering::Relaxed),
            "the fs gateway was never sampled"
        );
        self.max.load(Ordering::Relaxed)
    }
}

/// The fs gateway's descriptors stay within its budget: the inodes it keeps for the guest
/// (`airlock_fs::MAX_RESIDENT`), the few files the commands here hold open, and its own.
fn assert_within_budget(max_fds: usize) {
    eprintln!("largest fs gateway descriptor count: {max_fds}");
    assert!(
        max_fds <= airlock_fs::MAX_RESIDENT + 100,
        "the fs gateway held {max_fds} descriptors"
    );
}

/// A policy that shares `ws` read-write; `extra` is appended.
fn share_policy(dir: &Path, ws: &Path, extra: &str) -> String {
    write_policy(
        dir,
        &format!(
            "[[filesystem.mounts]]\nhost = {:?}\nguest = \"/workspace\"\nmode = \"rw\"\n{extra}",
            ws.display().to_string()
        ),
    )
}

/// [`share_policy`] running commands as root without `no_new_privs` or a seccomp profile, so
/// the command can drop the guest's caches (and with them the nodes the gateway holds).
///
/// Two vCPUs, so the commands below can keep several requests in flight: under emulation
/// (TCG) the guest's side of each request costs more than the gateway's.
fn root_policy(dir: &Path, ws: &Path) -> String {
    share_policy(
        dir,
        ws,
        "\n[sandbox]\ncpus = 2\n\n[process]\nuser = \"root\"\nno_new_privs = false\n\
         seccomp = \"unconfined\"\n",
    )
}

#[test]
fn a_200k_file_tree_is_found_read_and_statted_twice() {
    let a = Airlock::start().with_nofile(NOFILE);
    let ws = tempfile::tempdir().unwrap();
    tree(ws.path(), 2_000, 100);
    let dir = tempfile::tempdir().unwrap();
    let policy = root_policy(dir.path(), ws.path());
    // `pass CMD` runs CMD over every file, five folders' worth at a time (by the folder
    // name's last digit); a failed file would show in the counts.
    let script = "set -e; \
        pass() { for g in 01 23 45 67 89; do \
          find /workspace/*[$g] -type f -exec \"$@\" {} + & done; wait; }; \
        echo files $(find /workspace -type f | wc -l); \
        echo lines $(pass cat | wc -l); \
        echo stat1 $(pass stat -c %i | wc -l); \
        sync; echo 3 > /proc/sys/vm/drop_caches; \
        echo stat2 $(pass stat -c %i | wc -l)";
    let watch = FdWatch::start(&a);
    let out = a.run(["run", "--policy", &policy, "--", "sh", "-c", script]);
    let max_fds = watch.finish();
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "files 200000\nlines 200000\nstat1 200000\nstat2 200000\n",
        "stderr: {}",
        text(&out.stderr)
    );
    // A descriptor per inode would have needed 202,000.
    assert_within_budget(max_fds);
    a.assert_clean();
}

#[test]
fn fifty_thousand_files_written_in_the_guest_are_all_there() {
    let a = Airlock::start().with_nofile(NOFILE);
    let ws = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = root_policy(dir.path(), ws.path());
    // Two writers, 250 packages each.
    let script = "set -e; mkdir /workspace/node_modules; cd /workspace/node_modules; \
        write() { i=$1; while [ $i -lt $2 ]; do mkdir p$i; j=0; \
          while [ $j -lt 100 ]; do echo $i.$j > p$i/f$j; j=$((j+1)); done; i=$((i+1)); done; }; \
        write 0 250 & write 250 500 & wait; \
        sync; echo 3 > /proc/sys/vm/drop_caches; \
        echo guest $(find /workspace/node_modules -type f | wc -l)";
    let watch = FdWatch::start(&a);
    let out = a.run(["run", "--policy", &policy, "--", "sh", "-c", script]);
    let max_fds = watch.finish();
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "guest 50000\n");
    assert_eq!(count_files(&ws.path().join("node_modules")), 50_000);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("node_modules/p499/f99")).unwrap(),
        "499.99\n"
    );
    assert_within_budget(max_fds);
    a.assert_clean();
}

#[test]
fn debian_git_status_on_a_100k_file_repository() {
    super::image::debian_image();
    let a = Airlock::start().with_nofile(NOFILE);
    let ws = tempfile::tempdir().unwrap();
    tree(ws.path(), 1_000, 100);
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
            .args(args)
            .current_dir(ws.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "tree"]);
    let watch = FdWatch::start(&a);
    let out = a.run([
        "run",
        "--image",
        "debian",
        "--workspace",
        ws.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "git status --porcelain | wc -l && git ls-files | wc -l",
    ]);
    let max_fds = watch.finish();
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0\n100000\n", "{}", text(&out.stderr));
    assert_within_budget(max_fds);
    a.assert_clean();
}

#[test]
fn the_policy_open_file_limit_is_enforced_and_recorded_once() {
    let a = Airlock::start().with_nofile(NOFILE);
    let ws = tempfile::tempdir().unwrap();
    tree(ws.path(), 1, 60);
    let dir = tempfile::tempdir().unwrap();
    let policy = share_policy(dir.path(), ws.path(), "\n[filesystem]\nmax_open = 32\n");
    // `tail -f` holds every file it could open until the timeout; the rest it reports.
    let script = "cd /workspace/0000 && timeout 5 tail -f *.txt > /dev/null 2> /tmp/err; \
                  echo refused $(grep -c 'Too many open files' /tmp/err)";
    let out = a.run(["run", "--policy", &policy, "--", "sh", "-c", script]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let refused: usize = stdout
        .trim()
        .strip_prefix("refused ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    // 32 open at most (the shell's own files on the share count too): the other 28 or more
    // of the 60 were refused.
    assert!((28..60).contains(&refused), "refused {refused}");
    let log = a.audit();
    let limits: Vec<_> = log.of_kind(kind::FS_LIMIT).collect();
    assert_eq!(limits.len(), 1, "{log}");
    assert_eq!(limits[0].decision, Some(Decision::Deny));
    assert_eq!(limits[0].count, Some(32));
    assert_eq!(limits[0].rule.as_deref(), Some("filesystem.max_open"));
    a.assert_clean();
}

#[test]
fn a_name_swapped_for_a_symlink_while_the_guest_holds_it_is_never_followed() {
    if !require_root("the fs gateway's file handles") {
        return;
    }
    let a = Airlock::start().with_nofile(NOFILE);
    let base = tempfile::tempdir().unwrap();
    let ws = base.path().join("ws");
    let outside = base.path().join("outside");
    std::fs::create_dir_all(ws.join("d")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(ws.join("d/f"), "inside\n").unwrap();
    std::fs::create_dir_all(outside.join("evil")).unwrap();
    std::fs::write(outside.join("evil/f"), "host secret\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = share_policy(dir.path(), &ws, "");
    // The guest holds the directory as its working directory, waits, then reads through it.
    let mut child = a
        .command([
            "run",
            "--policy",
            &policy,
            "--",
            "sh",
            "-c",
            "cd /workspace/d && cat f && echo ready && read x && cat f; echo rc=$?",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut seen = String::new();
    while !seen.contains("ready") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no ready: {seen}");
        seen.push_str(&line);
    }
    assert_eq!(seen, "inside\nready\n");
    // On the host: the directory leaves the share, and its name becomes a symlink to a
    // directory outside holding a file of the same name.
    std::fs::rename(ws.join("d"), outside.join("d")).unwrap();
    std::os::unix::fs::symlink(outside.join("evil"), ws.join("d")).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    stdout.read_to_string_lossy(&mut rest);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(!rest.contains("host secret"), "followed: {rest}");
    assert!(!rest.contains("inside"), "read the moved file: {rest}");
    assert!(rest.contains("rc=1"), "{rest}");
    let log = a.audit();
    let refused = log
        .find(fs_is(kind::FS_OPEN, Decision::Deny, "d/f"))
        .unwrap_or_else(|| panic!("no refusal recorded:\n{log}"));
    assert_eq!(refused.rule.as_deref(), Some("gateway.identity"));
    assert_eq!(refused.reason.as_deref(), Some("replaced_on_host"));
    a.assert_clean();
}

/// Reads what is left of a buffered reader, lossily.
trait ReadRest {
    fn read_to_string_lossy(&mut self, out: &mut String);
}

impl<R: std::io::Read> ReadRest for BufReader<R> {
    fn read_to_string_lossy(&mut self, out: &mut String) {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(self, &mut bytes);
        out.push_str(&String::from_utf8_lossy(&bytes));
    }
}
