//! The containerd shim (`containerd-shim-airlock-v2`) driven by a real containerd (Debian's
//! 1.6, its own root, state and socket in a temp dir): `ctr run` with output, exit status,
//! exec, kill and a terminal, nothing left after delete, profiles only from the admin's list;
//! and a CRI pod of two containers, driven by the checked-in CRI client, in one VM.

use airlock_testkit::audit::{Decision, kind};
use airlock_testkit::{Airlock, processes_mentioning, require_root, test_python, text, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const RUNTIME: &str = "io.containerd.airlock.v2";
const IMAGE: &str = "localhost/bb:latest";

use airlock_testkit::host_tool as tool;

/// An OCI archive of busybox with two tags: `latest` (Cmd `sh`) and `pause` (sleeps; the CRI
/// sandbox image).
#[allow(clippy::unwrap_used)]
fn build_image(dir: &Path) -> PathBuf {
    tool("umoci", &["init", "--layout", "img"], dir);
    tool("umoci", &["new", "--image", "img:latest"], dir);
    tool("umoci", &["unpack", "--image", "img:latest", "b"], dir);
    let root = dir.join("b/rootfs");
    for d in ["bin", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "sleep", "tty", "ps", "id", "ls", "true",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    tool("umoci", &["repack", "--image", "img:latest", "b"], dir);
    tool(
        "umoci",
        &["config", "--image", "img:latest", "--config.cmd", "sh"],
        dir,
    );
    tool(
        "umoci",
        &[
            "config",
            "--image",
            "img:latest",
            "--tag",
            "pause",
            "--config.cmd",
            "sleep",
            "--config.cmd",
            "1000000",
        ],
        dir,
    );
    let archive = dir.join("bb.tar");
    tool("tar", &["-C", "img", "-cf", "bb.tar", "."], dir);
    archive
}

/// A containerd of its own, with the shim of this build on its PATH; stopped when dropped.
struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Containerd {
    #[allow(clippy::unwrap_used)]
    fn start(airlock: &Airlock, cri: bool, shim_config: &str) -> Containerd {
        // Short path: containerd's and the shims' sockets live under it.
        let dir = tempfile::Builder::new()
            .prefix("ctd-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().display();
        let mut config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n[grpc]\n  address = \"{d}/c.sock\"\n"
        );
        if cri {
            config.push_str(
                r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/bb:pause"
  # Needed for runc (the default runtime) inside this machine's container.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.airlock]
      runtime_type = "io.containerd.airlock.v2"
      pod_annotations = ["io.airlock.*"]
"#,
            );
        } else {
            config.push_str("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n");
        }
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let shim_toml = dir.path().join("shim.toml");
        std::fs::write(
            &shim_toml,
            format!(
                "audit_dir = \"{}\"\n{shim_config}",
                airlock.audit_dir().display()
            ),
        )
        .unwrap();
        let bin_dir = Airlock::binary().parent().unwrap().to_path_buf();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .env("PATH", path)
            .env("AIRLOCK_SHIM_CONFIG", &shim_toml)
            .env("AIRLOCK_STATE_DIR", airlock.state_dir())
            .env("AIRLOCK_HOMES_DIR", airlock.homes_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd is missing: run ./scripts/setup --tests");
        let c = Containerd { dir, child };
        let up = wait_until(Duration::from_secs(30), || {
            c.ctr(&["version"]).status.success()
        });
        assert!(up, "containerd did not start: {}", c.log());
        c
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr ARGS` against this containerd, under a timeout (ctr 1.6 never closes piped stdin).
    fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_ns("default", args)
    }

    #[allow(clippy::unwrap_used)]
    fn ctr_ns(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["300", "ctr", "-a"])
            .arg(self.socket())
            .args(["-n", ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Mounts left under this containerd's directories.
    fn mounts(&self) -> Vec<String> {
        let dir = self.dir.path().display().to_string();
        std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&dir))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SAFETY: kill takes a pid and a signal number.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        for m in self.mounts().iter().rev() {
            if let Some(target) = m.split_whitespace().nth(1) {
                let _ = Command::new("umount").args(["-l", target]).status();
            }
        }
    }
}

fn qemus(airlock: &Airlock) -> usize {
    processes_mentioning(airlock.state_dir())
        .iter()
        .filter(|p| p.contains("qemu-system"))
        .count()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn ctr_runs_containers_in_vms_with_exec_kill_terminal_and_cleanup() {
    if !require_root("containerd, mounts and the VM") {
        return;
    }
    let airlock = Airlock::start();
    let work = tempfile::tempdir().unwrap();
    let archive = build_image(work.path());
    let policy = work.path().join("locked.toml");
    std::fs::write(
        &policy,
        "extends = \"container\"\n[process]\nseccomp = \"strict\"\n",
    )
    .unwrap();
    let ctd = Containerd::start(
        &airlock,
        false,
        &format!(
            "allowed_profiles = [\"locked\"]\n[policies]\nlocked = \"{}\"\n",
            policy.display()
        ),
    );
    ok(
        &ctd.ctr(&[
            "image",
            "import",
            "--base-name",
            "localhost/bb",
            archive.to_str().unwrap(),
        ]),
        "ctr image import",
    );

    // Output and exit status come back; the root is the image's, and writable.
    let out = ctd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        "c1",
        "sh",
        "-c",
        "cat /etc/passwd; echo written > /made; cat /made; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        text(&out.stderr),
        ctd.log()
    );
    assert_eq!(
        text(&out.stdout),
        "root:x:0:0:root:/root:/bin/sh\nwritten\n"
    );
    assert!(wait_until(Duration::from_secs(10), || qemus(&airlock) == 0));

    // A detached container: exec, ps, kill; the VM goes away at delete.
    ok(
        &ctd.ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            IMAGE,
            "c2",
            "sleep",
            "1000",
        ]),
        "ctr run -d",
    );
    assert_eq!(qemus(&airlock), 1);
    let out = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "c2",
        "sh",
        "-c",
        "echo in-exec; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "in-exec\n");
    let ps = ok(&ctd.ctr(&["task", "ps", "c2"]), "ctr task ps");
    assert_eq!(ps.lines().count(), 2, "{ps}");
    ok(
        &ctd.ctr(&["task", "kill", "-s", "SIGKILL", "c2"]),
        "ctr task kill",
    );
    let stopped = wait_until(Duration::from_secs(30), || {
        text(&ctd.ctr(&["task", "ls"]).stdout).contains("STOPPED")
    });
    assert!(stopped, "{}", text(&ctd.ctr(&["task", "ls"]).stdout));
    // The process died, and the VM went with it; the task's state stays for delete.
    assert!(
        wait_until(Duration::from_secs(20), || qemus(&airlock) == 0),
        "the VM outlived its container"
    );
    let listed = ok(&ctd.ctr(&["task", "ls"]), "ctr task ls");
    assert!(listed.contains("STOPPED"), "{listed}");
    ok(&ctd.ctr(&["task", "delete", "c2"]), "ctr task delete");
    ok(&ctd.ctr(&["container", "rm", "c2"]), "ctr container rm");
    assert!(
        wait_until(Duration::from_secs(10), || airlock
            .leftover_processes()
            .is_empty()),
        "left behind: {:?}",
        airlock.leftover_processes()
    );
    assert_eq!(ctd.mounts(), Vec::<String>::new());

    // A terminal: `script` gives ctr one, ctr gives the container one.
    let out = Command::new("timeout")
        .args(["300", "script", "-qec"])
        .arg(format!(
            "ctr -a {} run -t --rm --runtime {RUNTIME} {IMAGE} c3 sh -c 'tty; echo done'",
            ctd.socket().display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    assert!(
        out.status.success() && shown.contains("/dev/pts/") && shown.contains("done"),
        "{shown}"
    );

    // Profiles: an approved one applies; any other is refused, naming the approved ones.
    let out = ctd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--annotation",
        "io.airlock.profile=locked",
        IMAGE,
        "c4",
        "true",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ctd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--annotation",
        "io.airlock.profile=default",
        IMAGE,
        "c5",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(
            "profile \"default\" (annotation io.airlock.profile) is not approved on this node; approved: container, locked"
        ),
        "{}",
        text(&out.stderr)
    );
    let _ = ctd.ctr(&["container", "rm", "c5"]);
    assert!(wait_until(Duration::from_secs(10), || airlock
        .leftover_processes()
        .is_empty()));

    // Every container's VM kept an audit log: its root shared in, each process recorded.
    let logs = airlock.audit_logs();
    assert_eq!(
        logs.len(),
        4,
        "{:?}",
        logs.iter().map(|l| &l.0).collect::<Vec<_>>()
    );
    let all: Vec<_> = logs.iter().flat_map(|(_, l)| l.events()).collect();
    assert!(all.iter().any(|e| {
        e.kind == kind::SANDBOX_SHARE
            && e.detail
                .as_deref()
                .is_some_and(|d| d.contains("/run/airlock/containers/c2"))
    }));
    assert!(all.iter().any(|e| {
        e.kind == kind::PROC_EXEC
            && e.decision == Some(Decision::Allow)
            && e.proc
                .as_ref()
                .is_some_and(|p| p.argv == ["sh", "-c", "echo in-exec; exit 5"])
    }));
    assert!(all.iter().any(|e| {
        e.kind == kind::SANDBOX_START
            && e.detail
                .as_deref()
                .is_some_and(|d| d.contains("profile locked"))
    }));
    // `airlock audit show` reads them from the shim's audit dir.
    let first = logs[0].0.to_str().unwrap().to_string();
    let shown = ok(
        &airlock.run(["audit", "show", &first]),
        "airlock audit show",
    );
    assert!(shown.contains("containerd"), "{shown}");
}

#[test]
fn a_cri_pod_of_two_containers_shares_one_vm() {
    if !require_root("containerd, mounts and the VM") {
        return;
    }
    let airlock = Airlock::start();
    let work = tempfile::tempdir().unwrap();
    let archive = build_image(work.path());
    let ctd = Containerd::start(&airlock, true, "");
    ok(
        &ctd.ctr_ns(
            "k8s.io",
            &[
                "image",
                "import",
                "--base-name",
                "localhost/bb",
                archive.to_str().unwrap(),
            ],
        ),
        "ctr image import",
    );
    let logs = work.path().join("pod-logs");
    std::fs::create_dir(&logs).unwrap();
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cri/cri_client.py");
    let cri = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(test_python())
            .arg(&client)
            .arg(ctd.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = ok(&out, &format!("cri {args:?}\n{}", ctd.log()));
        serde_json::from_str(&stdout).unwrap()
    };
    let id = |v: serde_json::Value| v["id"].as_str().unwrap().to_string();
    let logs_s = logs.to_str().unwrap();
    let pod = id(cri(&["run-pod", "pod1", "airlock", logs_s]));
    assert_eq!(qemus(&airlock), 1, "the pause container boots the pod's VM");
    let mut containers = Vec::new();
    for name in ["a", "b"] {
        let c = id(cri(&[
            "create",
            &pod,
            "pod1",
            logs_s,
            name,
            IMAGE,
            &format!("{name}.log"),
            "sh",
            "-c",
            &format!("echo hello from {name}; sleep 6"),
        ]));
        cri(&["start", &c]);
        containers.push(c);
    }
    assert_eq!(qemus(&airlock), 1, "both containers run in the pod's VM");
    for c in &containers {
        let done = wait_until(Duration::from_secs(120), || {
            cri(&["status", c])["state"] == "CONTAINER_EXITED"
        });
        assert!(done, "{}", cri(&["status", c]));
        assert_eq!(cri(&["status", c])["exit_code"], 0);
    }
    for name in ["a", "b"] {
        let log = std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap();
        assert!(
            log.contains(&format!("stdout F hello from {name}")),
            "{log}"
        );
    }
    // The pod's one audit log holds both containers.
    let (_, log) = airlock.audit_logs().into_iter().next().unwrap();
    assert_eq!(
        log.of_kind(kind::SANDBOX_SHARE).count(),
        3,
        "pause, a and b"
    );
    cri(&["stop-pod", &pod]);
    cri(&["remove-pod", &pod]);
    assert!(
        wait_until(Duration::from_secs(20), || airlock
            .leftover_processes()
            .is_empty()),
        "left behind: {:?}",
        airlock.leftover_processes()
    );
    assert_eq!(ctd.mounts(), Vec::<String>::new());
}
