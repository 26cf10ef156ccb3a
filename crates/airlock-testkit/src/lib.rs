//! Test helpers for airlock's integration tests (a `publish = false` dev-dependency).
//!
//! [`Airlock`] runs the real `airlock` binary with a private state dir, so each test can check
//! afterwards that nothing it started is left: no process whose command line names that dir, and
//! no sandbox directory inside it. [`audit`] reads audit logs as typed records, so tests assert on
//! fields; [`upstream`] starts small HTTP servers for the egress tests; [`require_root`] makes a
//! test that needs root fail where it should have it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod audit;
pub mod models;
pub mod pty;
pub mod tls;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `airlock` binary under test with an isolated state dir.
pub struct Airlock {
    bin: PathBuf,
    state: tempfile::TempDir,
    audit: tempfile::TempDir,
    cwd: tempfile::TempDir,
    /// Holds the daemon socket (`AIRLOCK_SOCKET`), so no test talks to a host daemon, and the
    /// egress CA (`AIRLOCK_CA_DIR`).
    sock: tempfile::TempDir,
    /// Agent homes (`AIRLOCK_HOMES_DIR`), so no test reads or leaves one in the user's.
    homes: tempfile::TempDir,
    /// `RLIMIT_NOFILE` (soft and hard) airlock runs with, if set.
    nofile: Option<u64>,
}

impl Airlock {
    /// The `airlock` binary of this build: `$AIRLOCK_BIN`, else the `airlock` next to the
    /// running test's `deps/` directory (`target/<profile>/airlock`).
    pub fn binary() -> PathBuf {
        if let Some(p) = std::env::var_os("AIRLOCK_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("the test binary");
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("airlock"))
            .expect("target dir");
        assert!(
            bin.is_file(),
            "{} is missing: build it first (cargo test builds it for the airlock crate's tests)",
            bin.display()
        );
        bin
    }

    /// The binary of this build ([`Airlock::binary`]) with a private state dir.
    pub fn start() -> Airlock {
        Airlock::new(Airlock::binary())
    }

    /// Wraps the binary at `bin`.
    pub fn new(bin: impl Into<PathBuf>) -> Airlock {
        // Short path: unix socket paths inside it must stay under 108 bytes.
        let state = tempfile::Builder::new()
            .prefix("al-")
            .tempdir_in("/tmp")
            .expect("state dir");
        let audit = tempfile::tempdir().expect("audit dir");
        let cwd = tempfile::tempdir().expect("working dir");
        let sock = tempfile::Builder::new()
            .prefix("als-")
            .tempdir_in("/tmp")
            .expect("socket dir");
        let homes = tempfile::tempdir().expect("homes dir");
        Airlock {
            bin: bin.into(),
            state,
            audit,
            cwd,
            sock,
            homes,
            nofile: None,
        }
    }

    /// Runs airlock with `RLIMIT_NOFILE` at `limit` (soft and hard), as on a host whose
    /// `ulimit -n` is that.
    pub fn with_nofile(mut self, limit: u64) -> Airlock {
        self.nofile = Some(limit);
        self
    }

    /// The directory airlock runs in, and so the default workspace: empty, private to the test.
    pub fn cwd(&self) -> &Path {
        self.cwd.path()
    }

    /// The audit dir handed to airlock (`AIRLOCK_AUDIT_DIR`).
    pub fn audit_dir(&self) -> &Path {
        self.audit.path()
    }

    /// The records of the only audit log written so far, parsed and hash-checked.
    pub fn audit(&self) -> audit::Log {
        audit::Log::read(&self.audit_log())
    }

    /// The records of sandbox `id`'s audit log, parsed and hash-checked.
    pub fn audit_of(&self, id: &str) -> audit::Log {
        audit::Log::read(&self.audit_dir().join(format!("{id}.jsonl")))
    }

    /// Every audit log written so far with its records, by path.
    pub fn audit_logs(&self) -> Vec<(PathBuf, audit::Log)> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.audit.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        logs.sort();
        logs.into_iter()
            .map(|p| {
                let log = audit::Log::read(&p);
                (p, log)
            })
            .collect()
    }

    /// The only audit log written so far.
    pub fn audit_log(&self) -> PathBuf {
        let logs: Vec<PathBuf> = std::fs::read_dir(self.audit.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        assert_eq!(logs.len(), 1, "expected one audit log, found {logs:?}");
        logs[0].clone()
    }

    /// The daemon socket handed to airlock (`AIRLOCK_SOCKET`).
    pub fn socket(&self) -> PathBuf {
        self.sock.path().join("airlock.sock")
    }

    /// Starts `airlock daemon ARGS` and waits until its socket accepts connections.
    pub fn daemon(&self, args: &[&str]) -> Daemon {
        self.daemon_with_env(args, &[])
    }

    /// [`Airlock::daemon`] with extra environment variables (e.g. `AIRLOCK_OVERLAY_DIR`).
    pub fn daemon_with_env(&self, args: &[&str], envs: &[(&str, &Path)]) -> Daemon {
        let log = self.sock.path().join(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let child = self
            .command(["daemon"].iter().chain(args))
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning airlock daemon");
        let mut d = Daemon {
            child,
            log,
            socket: self.socket(),
        };
        // The first daemon of a run may build the guest kernel.
        let up = wait_until(Duration::from_secs(600), || {
            std::os::unix::net::UnixStream::connect(&d.socket).is_ok()
                || d.child.try_wait().unwrap().is_some()
        });
        assert!(
            up && d.child.try_wait().unwrap().is_none(),
            "the daemon did not come up: {}",
            d.log_text()
        );
        d
    }

    /// Where airlock keeps agent homes in this test.
    pub fn homes_dir(&self) -> &Path {
        self.homes.path()
    }

    /// The state dir handed to airlock.
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// A `Command` for `airlock ARGS` with the state dir set and stdin closed.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("AIRLOCK_STATE_DIR", self.state.path())
            .env("AIRLOCK_AUDIT_DIR", self.audit.path())
            .env("AIRLOCK_SOCKET", self.socket())
            .env("AIRLOCK_HOMES_DIR", self.homes.path())
            .env("AIRLOCK_CA_DIR", self.sock.path().join("ca"))
            .current_dir(self.cwd.path())
            .stdin(Stdio::null());
        if let Some(limit) = self.nofile {
            use std::os::unix::process::CommandExt;
            let rlim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: runs between fork and exec; setrlimit is async-signal-safe and reads one
            // `rlimit` copied into the closure.
            unsafe {
                c.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        c
    }

    /// Pids of this test's `airlock __gateway KIND` processes (see [`gateway_pids`]).
    pub fn gateway_pids(&self, kind: &str) -> Vec<u32> {
        gateway_pids(self.state.path(), kind)
    }

    /// Runs `airlock ARGS` to completion.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command(args).output().expect("running airlock")
    }

    /// Runs `airlock ARGS` with `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: Vec<u8>) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning airlock");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("waiting for airlock");
        writer.join().unwrap();
        out
    }

    /// Processes still running whose command line mentions this state dir.
    pub fn leftover_processes(&self) -> Vec<String> {
        processes_mentioning(self.state.path())
    }

    /// Entries left in the state dir.
    pub fn leftover_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.state.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// Asserts that no process mentioning the state dir survives (files may remain, e.g. after
    /// airlock itself was killed).
    pub fn assert_processes_gone(&self) {
        let ok = wait_until(Duration::from_secs(5), || {
            self.leftover_processes().is_empty()
        });
        assert!(ok, "processes left behind: {:?}", self.leftover_processes());
    }

    /// Asserts that nothing airlock started is left: processes get a short time to be reaped.
    pub fn assert_clean(&self) {
        let ok = wait_until(Duration::from_secs(5), || {
            self.leftover_processes().is_empty()
        });
        assert!(ok, "processes left behind: {:?}", self.leftover_processes());
        assert!(
            self.leftover_files().is_empty(),
            "files left behind: {:?}",
            self.leftover_files()
        );
    }
}

/// A running `airlock daemon`; killed (SIGKILL) if still running when dropped.
pub struct Daemon {
    child: std::process::Child,
    log: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed on stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `curl` on its socket: `curl -sS --unix-socket SOCK -X METHOD [-d BODY] http://airlock/PATH`,
    /// returning the HTTP status and the body.
    pub fn curl(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "300", "--unix-socket"])
            .arg(&self.socket)
            .args(["-X", method, "-w", "\n%{http_code}"]);
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let out = c
            .arg(format!("http://airlock{path}"))
            .output()
            .expect("running curl");
        let text = text(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Sends SIGKILL and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit; returns its stderr.
    pub fn stop(mut self) -> String {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on the pid of our own live child; no memory is involved.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        let log = self.log_text();
        assert!(status.success(), "daemon exited {status}: {log}");
        log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pids of the running `airlock __gateway KIND` processes started with state dir `state` (they
/// carry it as `AIRLOCK_STATE_DIR` in their environment; reading that needs root for the
/// jailed, non-dumpable gateways).
pub fn gateway_pids(state: &Path, kind: &str) -> Vec<u32> {
    let state = format!("AIRLOCK_STATE_DIR={}", state.display());
    let want = format!("__gateway\0{kind}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(&want) {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v == state.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// `pid: cmdline` of every process whose command line contains `needle`.
pub fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == me {
            continue;
        }
        // Zombies have an empty cmdline and hold nothing; a gone process reads as an error.
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// For a test that needs root: fails (with what is missing) when the test is not root, so a CI
/// run without root is a failure rather than a silent skip. `AIRLOCK_TESTS_ALLOW_NON_ROOT=1` turns
/// the failure into a skip for developers running as an ordinary user; the function then returns
/// false and the test returns early.
pub fn require_root(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let allowed = std::env::var("AIRLOCK_TESTS_ALLOW_NON_ROOT").is_ok_and(|v| v == "1");
    assert!(
        allowed,
        "this test needs root ({what}); run the suite as root, or set \
         AIRLOCK_TESTS_ALLOW_NON_ROOT=1 to skip it"
    );
    eprintln!("skipped: needs root ({what})");
    false
}

/// Writes `body` to `dir/policy.toml` and returns that path, for `--policy`.
pub fn write_policy(dir: &Path, body: &str) -> String {
    let p = dir.join("policy.toml");
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a host tool the tests need (`umoci`, `skopeo`, `tar`) in `cwd`; panics with its stderr
/// when it fails, or with the setup command when it is missing.
pub fn host_tool(cmd: &str, args: &[&str], cwd: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is missing ({e}): run ./scripts/setup --tests"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        text(&out.stderr)
    );
}

/// Lossy UTF-8 of a byte buffer, for assertions.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// SHA-256 of `bytes` as printed by `sha256sum`, using the host tool.
pub fn host_sha256(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    let mut stdin = child.stdin.take().unwrap();
    let data = bytes.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The Python of the test venv that `scripts/setup --tests` fills (pytest, the MCP and e2b
/// clients, the SDK's dependencies). `AIRLOCK_TEST_VENV` overrides its place. Panics with the
/// command to run when the venv is missing, so a CI machine without it fails loudly.
pub fn test_python() -> PathBuf {
    let venv = std::env::var_os("AIRLOCK_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/airlock/test-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `./scripts/setup --tests` first",
        python.display()
    );
    python
}

/// Writes `token` to `dir/token`, mode 0600 as the daemon requires, and returns its path.
pub fn token_file(dir: &Path, token: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A loopback address (`127.0.0.1:PORT`) whose port was free a moment ago.
pub fn free_loopback_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}
