//! The policy's `[process]` and `[sandbox]` settings reach the workload inside the guest.

use airlock_testkit::audit::{Source, kind};
use airlock_testkit::{Airlock, text};
use std::io::Write;

/// `airlock run --policy <a file holding policy> -- cmd...`.
fn run_policy(a: &Airlock, policy: &str, cmd: &[&str]) -> std::process::Output {
    let p = policy_file(policy);
    let mut args = vec!["run", "--policy", p.path().to_str().unwrap(), "--"];
    args.extend_from_slice(cmd);
    a.run(args)
}

fn policy_file(body: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(body.as_bytes()).unwrap();
    f
}

#[test]
fn default_profile_runs_unprivileged_under_seccomp() {
    let a = Airlock::start();
    let script = "id -u; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; \
                  unshare -U true 2>&1; echo unshare=$?; touch /etc/x 2>/dev/null; echo etc=$?; \
                  touch ~/ok && echo home=ok";
    let out = a.run(["run", "--", "sh", "-c", script]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "1000", "{stdout}");
    assert!(stdout.contains("NoNewPrivs:\t1"), "{stdout}");
    assert!(stdout.contains("Seccomp:\t2"), "{stdout}");
    assert!(
        stdout.contains("Operation not permitted"),
        "unshare must be refused with EPERM: {stdout}"
    );
    assert!(stdout.contains("unshare=1"), "{stdout}");
    assert!(
        stdout.contains("etc=1"),
        "the agent user cannot write system dirs: {stdout}"
    );
    assert!(
        stdout.contains("home=ok"),
        "the agent user owns its home: {stdout}"
    );
    a.assert_clean();
}

#[test]
fn an_explicitly_unconfined_root_policy_is_honoured() {
    let a = Airlock::start();
    let out = run_policy(
        &a,
        "[process]\nuser = \"root\"\nseccomp = \"unconfined\"\nno_new_privs = false\n",
        &["sh", "-c", "id -u; grep -E '^Seccomp:' /proc/self/status"],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0\nSeccomp:\t0\n");
    a.assert_clean();
}

#[test]
fn the_policy_timeout_stops_the_sandbox() {
    let a = Airlock::start();
    let out = run_policy(&a, "[sandbox]\ntimeout = \"2s\"\n", &["sleep", "1000"]);
    assert_eq!(out.status.code(), Some(124));
    assert!(
        text(&out.stderr).contains("reached its time limit of 2 s (sandbox.timeout)"),
        "{}",
        text(&out.stderr)
    );
    let log = a.audit();
    let end = log.first(kind::SANDBOX_END);
    assert!(
        end.detail
            .as_deref()
            .is_some_and(|d| d.contains("time limit of 2 s")),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn a_full_disk_is_enospc_in_the_guest_and_costs_the_host_at_most_the_limit() {
    let a = Airlock::start();
    let p = policy_file("[sandbox]\ndisk = \"64MiB\"\n");
    let out = a.run([
        "run",
        "--keep",
        "--policy",
        p.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        // Not zeros: the engine turns zero writes into holes (detect-zeroes), so they cost nothing.
        "yes airlock | dd of=/tmp/fill bs=64k; echo dd=$?",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("dd=1"), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("No space left on device"),
        "{}",
        text(&out.stderr)
    );
    // The disk file is the only host storage the guest can fill.
    let disks: Vec<_> = walk(a.state_dir())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "disk.img"))
        .collect();
    assert_eq!(disks.len(), 1, "{disks:?}");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&disks[0]).unwrap();
    assert_eq!(meta.len(), 64 * 1024 * 1024);
    assert!(
        meta.blocks() * 512 <= 64 * 1024 * 1024,
        "host blocks {} exceed the limit",
        meta.blocks() * 512
    );
    assert!(
        meta.blocks() * 512 > 32 * 1024 * 1024,
        "the guest's writes did reach the disk"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_memory_hog_is_oom_killed_inside_the_guest_and_reported() {
    let a = Airlock::start();
    // Three 60 MiB buffers in a 128 MiB guest: the guest kernel must kill one.
    let script = "for i in 1 2 3; do dd if=/dev/zero of=/dev/null bs=60M count=20 2>/dev/null & done; \
                  wait; echo survived";
    let out = run_policy(
        &a,
        "[sandbox]\nmemory = \"128MiB\"\n",
        &["sh", "-c", script],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "survived\n", "the shell itself lives on");
    let err = text(&out.stderr);
    assert!(err.contains("the guest ran out of memory"), "{err}");
    let log = a.audit();
    let oom = log.first(kind::PROC_OOM);
    assert!(
        oom.detail
            .as_deref()
            .is_some_and(|d| d.contains("OOM killer ended")),
        "{log}"
    );
    // The host still runs sandboxes after the guest's OOM.
    let again = a.run(["run", "--", "true"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    a.assert_clean();
}

#[test]
fn landlock_keeps_even_a_root_workload_writing_only_where_it_may() {
    let a = Airlock::start();
    let script = "id -u; touch /etc/evil 2>&1; echo etc=$?; touch /tmp/ok && echo tmp=ok; \
                  touch /workspace/ok && echo ws=ok; touch /root/ok && echo home=ok; \
                  echo x > /dev/null && echo devnull=ok";
    let out = run_policy(
        &a,
        "extends = \"default\"\n[process]\nuser = \"root\"\n",
        &["sh", "-c", script],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("0\n"), "{stdout}");
    assert!(stdout.contains("Permission denied"), "{stdout}");
    assert!(stdout.contains("etc=1"), "{stdout}");
    for ok in ["tmp=ok", "ws=ok", "home=ok", "devnull=ok"] {
        assert!(stdout.contains(ok), "{ok} missing: {stdout}");
    }
    assert!(
        a.cwd().join("ok").exists(),
        "the workspace write reached the host"
    );
    a.assert_clean();
}

#[test]
fn policy_limits_size_the_vm() {
    let a = Airlock::start();
    let out = run_policy(
        &a,
        "[sandbox]\ncpus = 2\nmemory = \"300MiB\"\n",
        &["sh", "-c", "nproc; grep MemTotal /proc/meminfo"],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("2\n"), "{stdout}");
    let kib: u64 = stdout.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(
        (200_000..=307_200).contains(&kib),
        "MemTotal {kib} kB for a 300 MiB guest"
    );
    a.assert_clean();
}

#[test]
fn a_policy_the_build_cannot_enforce_is_refused() {
    let a = Airlock::start();
    let out = run_policy(&a, "[sandbox]\nimage = \"nosuch\"\n", &["true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(
        err.contains("sandbox.image = \"nosuch\"") && err.contains("image nosuch is not built"),
        "{err}"
    );
    let p = policy_file(
        "[[monitor.rules]]\nkind = \"net.*\"\ndecision = \"deny\"\naction = \"pause\"\n",
    );
    let out = a.run(["run", "--policy", p.path().to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("uses action \"pause\", which this build cannot enforce"),
        "{}",
        text(&out.stderr)
    );
    a.assert_clean();
}

#[test]
fn an_invalid_policy_lists_every_error_and_boots_nothing() {
    let a = Airlock::start();
    let p = policy_file("[network]\nallow = [\"*\"]\n[sandbox]\ncpus = 0\n");
    let out = a.run(["run", "--policy", p.path().to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    let path = p.path().display().to_string();
    assert!(
        err.contains(&format!("{path}:2:10: network.allow[0]")),
        "{err}"
    );
    assert!(err.contains(&format!("{path}:4:8: sandbox.cpus")), "{err}");
    a.assert_clean();
}

#[test]
fn a_fork_bomb_hits_the_pids_limit_and_airlock_returns() {
    let a = Airlock::start();
    // Only shell builtins after the bomb: the command's own group is full.
    let script = "read cg < /proc/self/cgroup; read max < /sys/fs/cgroup${cg#0::}/pids.max; \
                  echo \"limit $max\"; bomb() { bomb | bomb & }; bomb 2>/dev/null; \
                  i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; \
                  read ev < /sys/fs/cgroup${cg#0::}/pids.events; echo \"$ev\"";
    let out = run_policy(
        &a,
        "[sandbox]\npids = 40\ntimeout = \"120s\"\n",
        &["sh", "-c", script],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("limit 40\nmax "), "{stdout}");
    let hits: u64 = stdout
        .lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("max ")
        .parse()
        .unwrap();
    assert!(hits > 0, "the limit was never reached: {stdout}");
    a.assert_clean();
}

#[test]
fn the_engine_runs_jailed_unprivileged_and_under_seccomp_filters() {
    let a = Airlock::start();
    let (mut child, line) = held_run(
        &a,
        &["run", "--", "sh", "-c", "echo started; read _ || true"],
    );
    assert_eq!(line, "started\n");
    let procs = airlock_testkit::processes_mentioning(a.state_dir());
    // The vsock backend parses the guest's virtqueues too: no capabilities, filtered.
    let backend = procs
        .iter()
        .find(|p| p.contains("vhost-device-vsock"))
        .expect("the vsock backend");
    let backend_status = std::fs::read_to_string(format!(
        "/proc/{}/status",
        backend.split(':').next().unwrap()
    ))
    .unwrap();
    for want in ["CapEff:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"] {
        assert!(backend_status.contains(want), "{want}: {backend_status}");
    }
    let qemu = procs
        .into_iter()
        .find(|p| p.contains("qemu-system"))
        .expect("the engine process");
    let pid = qemu.split(':').next().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("CapBnd:"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2", "QEMU's -sandbox filter is on");
    assert_eq!(
        field("Seccomp_filters:"),
        "3",
        "our deny-list and clone3 filter under QEMU's -sandbox"
    );
    if nix::unistd::getuid().is_root() {
        let ns = |p: &str, kind: &str| std::fs::read_link(format!("/proc/{p}/ns/{kind}")).unwrap();
        for kind in ["net", "mnt", "pid", "ipc", "uts"] {
            assert_ne!(
                ns(pid, kind),
                ns("self", kind),
                "the engine has its own {kind} namespace"
            );
        }
        let uid: u32 = field("Uid:")
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(uid >= airlock_jail::JAIL_UID_BASE, "unprivileged uid {uid}");
        assert!(
            field("NSpid:").ends_with("\t1"),
            "QEMU is PID 1 of its pid namespace: {}",
            field("NSpid:")
        );
        // Its root holds the system binaries and the sandbox's own files, nothing of the host's.
        let root: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/root"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for absent in ["home", "var", "proc", "sys", "boot", "opt", "srv"] {
            assert!(
                !root.iter().any(|e| e == absent),
                "{absent} in jail: {root:?}"
            );
        }
        assert!(
            std::fs::read_dir(format!("/proc/{pid}/root/etc"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .all(|n| n == "ld.so.cache"),
            "only the loader cache from /etc"
        );
        // The host's /usr is read-only inside.
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let usr = mounts
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/usr"))
            .expect("/usr mounted in the jail");
        assert!(
            usr.split_whitespace().nth(5).unwrap().starts_with("ro"),
            "{usr}"
        );
        // Host cgroup limits: guest memory + 512 MiB, 256 tasks (v1 here, v2 elsewhere).
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let group = |controller: &str| {
            cgroups.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, c, path) = (f.next()?, f.next()?, f.next()?);
                let hit = if controller.is_empty() {
                    c.is_empty()
                } else {
                    c.split(',').any(|x| x == controller)
                };
                (hit && path.contains("/airlock-")).then(|| path.to_string())
            })
        };
        let read = |path: String| std::fs::read_to_string(path).unwrap().trim().to_string();
        let (memory, pids) = if let Some(g) = group("") {
            (
                read(format!("/sys/fs/cgroup{g}/memory.max")),
                read(format!("/sys/fs/cgroup{g}/pids.max")),
            )
        } else {
            (
                read(format!(
                    "/sys/fs/cgroup/memory{}/memory.limit_in_bytes",
                    group("memory").expect("engine in an airlock memory cgroup")
                )),
                read(format!(
                    "/sys/fs/cgroup/pids{}/pids.max",
                    group("pids").expect("engine in an airlock pids cgroup")
                )),
            )
        };
        assert_eq!(memory, (1024u64 * 1024 * 1024).to_string());
        assert_eq!(pids, "256");
    }
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    a.assert_clean();
}

/// Builds the syscall probe (tests/probe/syscalls.c) static into `dir`.
fn build_probe(dir: &std::path::Path) {
    build_c_probe("syscalls.c", &dir.join("probe"));
}

/// Builds `tests/probe/<source>` static at `out`, to run in the guest.
pub(super) fn build_c_probe(source: &str, out: &std::path::Path) {
    let src = format!("{}/tests/probe/{source}", env!("CARGO_MANIFEST_DIR"));
    let built = std::process::Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(out)
        .arg(&src)
        .output()
        .expect("cc (gcc, installed by scripts/setup) builds the probe");
    assert!(built.status.success(), "cc {src}: {}", text(&built.stderr));
}

fn probe(a: &Airlock, policy: &str) -> std::collections::BTreeMap<String, i32> {
    let out = run_policy(a, policy, &["/workspace/probe"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| {
            let (name, errno) = l.split_once(' ').unwrap();
            (name.to_string(), errno.parse().unwrap())
        })
        .collect()
}

#[test]
fn the_seccomp_profiles_refuse_kernel_attack_surface_with_eperm() {
    const EPERM: i32 = 1;
    let a = Airlock::start();
    build_probe(a.cwd());
    let default = probe(&a, "extends = \"default\"\n");
    for call in [
        "keyctl",
        "add_key",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "unshare_user",
        "mount",
        "init_module",
        "tiocsti",
    ] {
        assert_eq!(default[call], EPERM, "{call} under default: {default:?}");
    }
    assert_eq!(default["ptrace"], 0, "default allows ptrace: {default:?}");
    // Each refusal is in the audit log, reported by the guest agent.
    let log = a.audit();
    for call in [
        "keyctl",
        "add_key",
        "bpf",
        "unshare",
        "mount",
        "io_uring_setup",
        "ioctl",
    ] {
        let needle = format!("syscall {call} refused with EPERM");
        let deny = log
            .find(|e| e.detail.as_deref().is_some_and(|d| d.contains(&needle)))
            .unwrap_or_else(|| panic!("no policy.deny for {call} in:\n{log}"));
        assert_eq!(deny.kind, kind::POLICY_DENY, "{deny:?}");
        assert_eq!(deny.source, Source::Guest, "{deny:?}");
        assert_eq!(deny.rule.as_deref(), Some("process.seccomp"), "{deny:?}");
    }
    let root = probe(&a, "extends = \"default\"\n[process]\nuser = \"root\"\n");
    assert_eq!(root["raw_socket"], 0, "root may open raw sockets: {root:?}");
    let strict = probe(
        &a,
        "extends = \"default\"\n[process]\nuser = \"root\"\nseccomp = \"strict\"\n",
    );
    assert_eq!(strict["ptrace"], EPERM, "{strict:?}");
    assert_eq!(strict["raw_socket"], EPERM, "{strict:?}");
    assert_eq!(strict["keyctl"], EPERM, "{strict:?}");
    a.assert_clean();
}

#[test]
fn a_required_protection_the_host_lacks_refuses_the_run() {
    let a = Airlock::start();
    let out = run_policy(
        &a,
        "[sandbox]\nrequire = [\"host-cgroups\", \"kvm\"]\n",
        &["true"],
    );
    let kvm = airlock_vm::accel::probe().accel == airlock_vm::Accel::Kvm;
    if kvm {
        assert!(out.status.success(), "{}", text(&out.stderr));
    } else {
        assert_eq!(out.status.code(), Some(125));
        let err = text(&out.stderr);
        assert!(
            err.contains("sandbox.require: this host cannot give the required protection \"kvm\""),
            "{err}"
        );
        assert!(
            std::fs::read_dir(a.state_dir()).unwrap().next().is_none(),
            "nothing was started"
        );
    }
    a.assert_clean();
}

#[test]
fn the_egress_gateway_runs_in_its_own_jailed_process() {
    let a = Airlock::start();
    let (mut child, line) = held_run(
        &a,
        &[
            "run",
            "--keep",
            "--",
            "sh",
            "-c",
            "echo started; read _ || true",
        ],
    );
    assert_eq!(line, "started\n");
    let gateway = gateway_pid(child.id(), "egress");
    let status = std::fs::read_to_string(format!("/proc/{gateway}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2", "seccomp allow-list installed");
    if nix::unistd::getuid().is_root() {
        let uid: u32 = field("Uid:")
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(uid >= airlock_jail::JAIL_UID_BASE, "own uid: {uid}");
        assert_eq!(field("CapBnd:"), "0000000000000000", "{status}");
    }
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let log = walk(a.state_dir())
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "egress.log"))
        .expect("egress.log kept");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("Landlock fully enforced"), "{log}");
}

/// The pid of this run's gateway process of `kind` (`airlock __gateway <kind>`).
/// Starts `airlock ARGS` with stdin and stdout piped and returns it with its first output line.
/// The commands read stdin, so the sandbox lives until the test closes it, having looked.
fn held_run(a: &Airlock, args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = a
        .command(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

fn gateway_pid(airlock_pid: u32, kind: &str) -> u32 {
    let needle = format!("__gateway\0{kind}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit(") ").next().and_then(|r| r.split(' ').nth(1));
            cmd.windows(needle.len()).any(|w| w == needle.as_bytes())
                && ppid == Some(airlock_pid.to_string().as_str())
        })
        .unwrap_or_else(|| panic!("no {kind} gateway process"))
}

#[test]
fn the_fs_gateway_sees_only_its_share_and_keeps_only_file_capabilities() {
    let a = Airlock::start();
    std::fs::write(a.cwd().join("hello"), "hi").unwrap();
    let (mut child, line) = held_run(
        &a,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "cat /workspace/hello; echo; read _ || true",
        ],
    );
    assert_eq!(line, "hi\n", "the share is served");
    let pid = gateway_pid(child.id(), "fs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2", "seccomp allow-list installed");
    if nix::unistd::getuid().is_root() {
        // chown, dac_override, fowner, fsetid, setgid, setuid; no dac_read_search, no mknod.
        assert_eq!(field("CapEff:"), "00000000000000db", "{status}");
        assert_eq!(field("CapBnd:"), "00000000000000db", "{status}");
        // Its root: the share (on /bind/share), the socket's dir and /proc; nothing else.
        let top: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/root"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for absent in ["etc", "usr", "home", "root", "var", "bin"] {
            assert!(
                !top.iter().any(|e| e == absent),
                "{absent} visible: {top:?}"
            );
        }
        let inside = format!("/proc/{pid}/root/bind/share");
        assert!(std::path::Path::new(&inside).join("hello").exists());
        let share = std::fs::canonicalize(a.cwd()).unwrap();
        let at_host_path = format!("/proc/{pid}/root{}", share.display());
        assert!(!std::path::Path::new(&at_host_path).exists());
    }
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    a.assert_clean();
}
