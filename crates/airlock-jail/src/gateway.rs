//! airlock's gateway processes, as the supervisor and the gateway each see them.
//!
//! A gateway is airlock's own binary started as `airlock __gateway NAME` ([`airlock_binary`]),
//! through [`spawn`](crate::spawn) with [`Confinement::SelfJailed`](crate::Confinement): it
//! reads its spec on stdin, jails itself ([`SelfJail`](crate::SelfJail)) and serves. Its only
//! channel back is one JSON value per line on stdout ([`JsonLines`]); the supervisor reads
//! those with a length bound ([`GatewayProcess`]) and parses them with the gateway's own
//! strict parser. Its stderr is its log.

use crate::{Confinement, JailError, ProcessSpec};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Why a gateway process could not be started or spoken to.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The airlock binary to start it from was not found.
    #[error("cannot find the airlock binary to start a gateway from {}; set AIRLOCK_SELF", exe.display())]
    NoBinary {
        /// The running executable.
        exe: PathBuf,
    },
    /// Its log could not be created.
    #[error("creating the {name} gateway's log {}", log.display())]
    Log {
        /// The gateway.
        name: &'static str,
        /// The log file.
        log: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// It could not be started.
    #[error("starting the {name} gateway")]
    Spawn {
        /// The gateway.
        name: &'static str,
        /// Cause.
        #[source]
        source: JailError,
    },
    /// It exited while it was waited for.
    #[error("the {name} gateway exited with {status}")]
    Exited {
        /// The gateway.
        name: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// It did not get ready in time.
    #[error("the {name} gateway did not create {} within {secs} s", path.display())]
    Timeout {
        /// The gateway.
        name: &'static str,
        /// The file it should have made.
        path: PathBuf,
        /// Seconds waited.
        secs: u64,
    },
    /// It takes no more input.
    #[error("the {name} gateway takes no input")]
    NoInput {
        /// The gateway.
        name: &'static str,
    },
    /// Talking to it failed.
    #[error("talking to the {name} gateway")]
    Io {
        /// The gateway.
        name: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

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

/// A gateway process's `main`: runs `run` and maps an error to exit code 125 with its chain of
/// causes on stderr (the gateway's log).
pub fn child_main<E: std::error::Error>(name: &str, run: impl FnOnce() -> Result<(), E>) -> u8 {
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("airlock {name} gateway: {}", crate::error_chain(&e));
            125
        }
    }
}

/// Longest spec or later input line a gateway accepts.
pub const MAX_SPEC: usize = 16 * 1024 * 1024;

/// Why a gateway process could not read its spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Reading stdin failed.
    #[error("reading the gateway spec")]
    Read(#[source] io::Error),
    /// It is not the JSON expected.
    #[error("parsing the gateway spec")]
    Parse(#[source] serde_json::Error),
}

/// In a gateway process: reads its spec (JSON, at most [`MAX_SPEC`] bytes) from stdin to end of
/// file.
pub fn read_spec<T: serde::de::DeserializeOwned>() -> Result<T, SpecError> {
    use std::io::Read;
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_SPEC as u64)
        .read_to_end(&mut input)
        .map_err(SpecError::Read)?;
    serde_json::from_slice(&input).map_err(SpecError::Parse)
}

/// Longest event line a gateway may send. Every field of an event is bounded before it is
/// sent (paths by the fs gateway's 16 KiB limit, request targets by the egress parser's 8 KiB
/// line), and JSON at most sextuples a byte (`\u001b`), so a real event fits with room to
/// spare; a longer line is a broken gateway, handed on as an empty line so that the owner
/// records it as malformed.
pub const MAX_EVENT_LINE: usize = 256 * 1024;

/// The `airlock` binary to start gateways from: `$AIRLOCK_SELF`, else this executable, or the
/// `airlock` next to the `deps/` directory when this is a test or bench binary.
pub fn airlock_binary() -> Result<PathBuf, GatewayError> {
    if let Some(p) = std::env::var_os("AIRLOCK_SELF") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|_| GatewayError::NoBinary {
        exe: PathBuf::from("/proc/self/exe"),
    })?;
    let is_airlock = exe.file_name().is_some_and(|n| n == "airlock");
    if is_airlock {
        return Ok(exe);
    }
    let sibling = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("airlock"))
        .filter(|p| p.is_file());
    sibling.ok_or(GatewayError::NoBinary { exe })
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
    ) -> Result<GatewayProcess, GatewayError> {
        let mut gw = Self::start(name, fd, log, on_line)?;
        if let Some(mut stdin) = gw.stdin.take() {
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                let _ = stdin.write_all(&spec).await;
                // Dropping stdin closes it: the gateway reads its spec to end of file.
            }));
        }
        Ok(gw)
    }

    /// Like [`spawn`](Self::spawn), but writes `spec` as one line and keeps stdin open for
    /// [`send_line`](Self::send_line); closing it (at [`stop`](Self::stop)) ends the gateway.
    pub async fn spawn_kept<T: serde::Serialize>(
        name: &'static str,
        spec: &T,
        fd: Option<OwnedFd>,
        log: &Path,
        on_line: impl Fn(&[u8]) + Send + 'static,
    ) -> Result<GatewayProcess, GatewayError> {
        let mut gw = Self::start(name, fd, log, on_line)?;
        gw.send_line(spec).await?;
        Ok(gw)
    }

    /// Takes the gateway's stdin (kept open by [`spawn_kept`](Self::spawn_kept)) to write
    /// later lines from elsewhere; the gateway then ends at SIGTERM only.
    pub fn take_input(&mut self) -> Option<tokio::process::ChildStdin> {
        self.stdin.take()
    }

    /// Writes `value` as one JSON line to the gateway's stdin.
    pub async fn send_line<T: serde::Serialize>(&mut self, value: &T) -> Result<(), GatewayError> {
        let name = self.name;
        let io = |source| GatewayError::Io { name, source };
        let mut line = serde_json::to_vec(value).map_err(|e| io(e.into()))?;
        line.push(b'\n');
        let stdin = self.stdin.as_mut().ok_or(GatewayError::NoInput { name })?;
        stdin.write_all(&line).await.map_err(io)?;
        stdin.flush().await.map_err(io)
    }

    fn start(
        name: &'static str,
        fd: Option<OwnedFd>,
        log: &Path,
        on_line: impl Fn(&[u8]) + Send + 'static,
    ) -> Result<GatewayProcess, GatewayError> {
        let stderr = std::fs::File::create(log).map_err(|source| GatewayError::Log {
            name,
            log: log.to_path_buf(),
            source,
        })?;
        let mut spec = ProcessSpec::new(airlock_binary()?, Confinement::SelfJailed);
        spec.args = vec!["__gateway".into(), name.into()];
        spec.stdin = Stdio::piped();
        spec.stdout = Stdio::piped();
        spec.stderr = stderr.into();
        spec.fd3 = fd;
        // Raised here, before the gateway drops the privilege to: the filesystem gateway holds
        // a descriptor per file the guest has open (and per inode where file handles are not
        // supported).
        spec.nofile = Some(crate::rlimit::nofile_ceiling());
        let mut child =
            crate::spawn(spec).map_err(|source| GatewayError::Spawn { name, source })?;
        let missing = |what: &str| GatewayError::Io {
            name,
            source: io::Error::other(format!("no {what} pipe")),
        };
        let stdin = child.stdin.take().ok_or_else(|| missing("stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| missing("stdout"))?;
        // The reader logs in the span of whoever started the gateway (its sandbox).
        let events = tokio::spawn(tracing::Instrument::in_current_span(async move {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            let mut malformed = 0u64;
            loop {
                line.clear();
                match read_bounded_line(&mut reader, &mut line).await {
                    Ok(Some(true)) => on_line(&line),
                    Ok(Some(false)) => {
                        malformed += 1;
                        on_line(b"");
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            malformed
        }));
        Ok(GatewayProcess {
            child,
            stdin: Some(stdin),
            events,
            name,
        })
    }

    /// Waits until `path` exists (a gateway's socket), the process exits, or `timeout` passes.
    pub async fn wait_for(
        &mut self,
        path: &Path,
        timeout: std::time::Duration,
    ) -> Result<(), GatewayError> {
        let name = self.name;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if path.exists() {
                return Ok(());
            }
            let exited = self
                .child
                .try_wait()
                .map_err(|source| GatewayError::Io { name, source })?;
            if let Some(status) = exited {
                return Err(GatewayError::Exited { name, status });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(GatewayError::Timeout {
                    name,
                    path: path.to_path_buf(),
                    secs: timeout.as_secs(),
                });
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
mod proptests;

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
