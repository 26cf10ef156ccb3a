//! Gateways in processes of their own.
//!
//! The egress gateway is the only host code that talks to the guest's network traffic, so it
//! does not run inside the supervisor: the supervisor starts `airlock __gateway egress` and
//! hands it the policy source (as text, on stdin), the listener the guest's tunnels arrive on
//! (fd 3) and nothing else. The gateway jails itself before it serves ([`confine`]): its own
//! uid, no capabilities, Landlock with no writable path, a seccomp allow-list. Its audit events
//! come back as JSON lines on its stdout, the only thing it can write to; the supervisor
//! parses them with bounds and records them.

pub mod confine;
pub mod egress;
pub mod fs;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A gateway's only channel to the supervisor: one JSON value per line on stdout.
#[derive(Default)]
pub struct JsonLines(std::sync::Mutex<()>);

impl JsonLines {
    /// Writes `value` as one line; best effort (a gone supervisor means the gateway is ending).
    pub fn send<T: serde::Serialize>(&self, value: &T) {
        use std::io::Write;
        if let Ok(mut line) = serde_json::to_vec(value) {
            line.push(b'\n');
            let _guard = self.0.lock();
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&line).and_then(|()| out.flush());
        }
    }
}

/// The policy a gateway loads: the source of the supervisor's policy, as text.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyText {
    /// The policy text.
    pub text: String,
    /// Where it came from (relative paths and `extends` resolve against it).
    pub origin: PathBuf,
    /// The bound workspace.
    pub workspace: Option<PathBuf>,
}

impl PolicyText {
    /// The source of `policy`.
    pub fn of(policy: &airlock_policy::Policy) -> PolicyText {
        let s = policy.source();
        PolicyText {
            text: s.text.clone(),
            origin: s.origin.clone(),
            workspace: s.workspace.clone(),
        }
    }

    /// Loads the same policy in this process.
    pub fn load(self) -> anyhow::Result<airlock_policy::Policy> {
        airlock_policy::PolicySource {
            text: self.text,
            origin: self.origin,
            workspace: self.workspace,
        }
        .load()
        .map_err(|e| anyhow::anyhow!("loading the policy: {e}"))
    }
}

/// A gateway process's `main`: runs `run` and maps an error to exit code 125 with its chain on
/// stderr (the gateway's log).
pub fn child_main(name: &str, run: fn() -> anyhow::Result<()>) -> u8 {
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("airlock {name} gateway: {e:#}");
            125
        }
    }
}

/// Longest spec or later input line a gateway accepts.
pub const MAX_SPEC: usize = 16 * 1024 * 1024;

/// In a gateway process: reads its spec (JSON, at most 16 MiB) from stdin to end of file.
pub fn read_spec<T: serde::de::DeserializeOwned>() -> anyhow::Result<T> {
    use anyhow::Context;
    use std::io::Read;
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_SPEC as u64)
        .read_to_end(&mut input)
        .context("reading the gateway spec")?;
    serde_json::from_slice(&input).context("parsing the gateway spec")
}

/// Longest event line a gateway may send; longer ones are dropped and counted as malformed.
pub const MAX_EVENT_LINE: usize = 64 * 1024;

/// The `airlock` binary to start gateways from: `$AIRLOCK_SELF`, else this executable, or the
/// `airlock` next to the `deps/` directory when this is a test or bench binary.
pub fn airlock_binary() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("AIRLOCK_SELF") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let is_airlock = exe.file_name().is_some_and(|n| n == "airlock");
    if is_airlock {
        return Ok(exe);
    }
    let sibling = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("airlock"))
        .filter(|p| p.is_file());
    sibling.ok_or_else(|| {
        io::Error::other(format!(
            "cannot find the airlock binary to start a gateway from {}; set AIRLOCK_SELF",
            exe.display()
        ))
    })
}

/// A running gateway process.
pub struct GatewayProcess {
    child: tokio::process::Child,
    /// Kept open for gateways that take more input after their spec (see [`Self::spawn_kept`]).
    stdin: Option<tokio::process::ChildStdin>,
    events: tokio::task::JoinHandle<u64>,
    name: &'static str,
}

impl GatewayProcess {
    /// Starts `airlock __gateway <name>` with `spec` on stdin, `fd` (if any) as its fd 3 and
    /// `log` as its stderr; every stdout line goes to `on_line`.
    pub fn spawn(
        name: &'static str,
        spec: Vec<u8>,
        fd: Option<OwnedFd>,
        log: &Path,
        on_line: impl Fn(&[u8]) + Send + 'static,
    ) -> io::Result<GatewayProcess> {
        let mut gw = Self::start(name, fd, log, on_line)?;
        if let Some(mut stdin) = gw.stdin.take() {
            tokio::spawn(async move {
                let _ = stdin.write_all(&spec).await;
                // Dropping stdin closes it: the gateway reads its spec to end of file.
            });
        }
        Ok(gw)
    }

    /// Like [`spawn`](Self::spawn), but writes `spec` as one line and keeps stdin open for
    /// [`send_line`](Self::send_line); closing it (at [`stop`](Self::stop)) ends the gateway.
    pub async fn spawn_kept<T: serde::Serialize>(
        name: &'static str,
        spec: &T,
        log: &Path,
        on_line: impl Fn(&[u8]) + Send + 'static,
    ) -> io::Result<GatewayProcess> {
        let mut gw = Self::start(name, None, log, on_line)?;
        gw.send_line(spec).await?;
        Ok(gw)
    }

    /// Writes `value` as one JSON line to the gateway's stdin.
    pub async fn send_line<T: serde::Serialize>(&mut self, value: &T) -> io::Result<()> {
        let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
        line.push(b'\n');
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other(format!("the {} gateway takes no input", self.name)))?;
        stdin.write_all(&line).await?;
        stdin.flush().await
    }

    fn start(
        name: &'static str,
        fd: Option<OwnedFd>,
        log: &Path,
        on_line: impl Fn(&[u8]) + Send + 'static,
    ) -> io::Result<GatewayProcess> {
        let mut cmd = tokio::process::Command::new(airlock_binary()?);
        cmd.arg("__gateway")
            .arg(name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?);
        airlock_vm::child::contain(&mut cmd);
        if let Some(raw) = fd.as_ref().map(AsRawFd::as_raw_fd) {
            // SAFETY: runs between fork and exec; dup2 and fcntl are async-signal-safe and act on
            // an fd this process owns (kept open by `fd` until spawn returns).
            // JUSTIFICATION: std offers no way to place an inherited fd at a fixed number.
            unsafe {
                cmd.pre_exec(move || {
                    if raw == 3 {
                        // Already in place: only clear close-on-exec.
                        if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                            return Err(io::Error::last_os_error());
                        }
                    } else if libc::dup2(raw, 3) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn()?;
        drop(fd);
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("gateway stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("gateway stdout"))?;
        let events = tokio::spawn(async move {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            let mut malformed = 0u64;
            loop {
                line.clear();
                match read_bounded_line(&mut reader, &mut line).await {
                    Ok(Some(true)) => on_line(&line),
                    Ok(Some(false)) => malformed += 1,
                    Ok(None) | Err(_) => break,
                }
            }
            malformed
        });
        Ok(GatewayProcess {
            child,
            stdin: Some(stdin),
            events,
            name,
        })
    }

    /// Waits until `path` exists (a gateway's socket), the process exits, or `timeout` passes.
    pub async fn wait_for(&mut self, path: &Path, timeout: std::time::Duration) -> io::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if path.exists() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "the {} gateway exited with {status}",
                    self.name
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "the {} gateway did not create {} within {} s",
                    self.name,
                    path.display(),
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Asks the gateway to stop (SIGTERM: it closes its connections and records them), waits
    /// up to `grace`, then kills it; returns once all its events were read.
    pub async fn stop(mut self, grace: std::time::Duration) {
        drop(self.stdin.take());
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(gateway = self.name, "did not stop in time; killed");
            let _ = self.child.kill().await;
        }
        match tokio::time::timeout(grace, &mut self.events).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::warn!(gateway = self.name, n, "malformed event lines dropped"),
            _ => self.events.abort(),
        }
    }
}

/// Reads one line of at most [`MAX_EVENT_LINE`] bytes into `line` (without the newline).
/// `Some(true)`: a line; `Some(false)`: an overlong line, skipped; `None`: end of stream.
async fn read_bounded_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> io::Result<Option<bool>> {
    let mut overlong = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if line.is_empty() && !overlong {
                None
            } else {
                Some(!overlong)
            });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !overlong {
            if line.len() + chunk.len() > MAX_EVENT_LINE {
                overlong = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let consumed = done.unwrap_or(buf.len());
        reader.consume(consumed);
        if done.is_some() {
            return Ok(Some(!overlong));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8]) -> Vec<Option<(bool, Vec<u8>)>> {
        let mut r = tokio::io::BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            match read_bounded_line(&mut r, &mut line).await.unwrap() {
                Some(ok) => out.push(Some((ok, line))),
                None => break,
            }
        }
        out
    }

    #[tokio::test]
    async fn bounded_lines() {
        let got = lines(b"one\ntwo\nlast").await;
        assert_eq!(
            got,
            vec![
                Some((true, b"one".to_vec())),
                Some((true, b"two".to_vec())),
                Some((true, b"last".to_vec()))
            ]
        );
        let mut long = vec![b'x'; MAX_EVENT_LINE + 1];
        long.extend_from_slice(b"\nok\n");
        let got = lines(&long).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Some((false, Vec::new())));
        assert_eq!(got[1], Some((true, b"ok".to_vec())));
    }
}
