//! The private Docker engine: when a layer mounted over the image provides `dockerd` (the
//! `docker` layer, see [`crate::rootfs`]), the agent starts it at boot as root, outside every
//! command's cgroup and filters, and holds each command until the engine answers on its socket.
//!
//! The engine lives in this VM only: its socket is the guest's own `/run/docker.sock`, its data
//! is on the sandbox disk, and it reaches registries through the egress proxy like any other
//! process (the proxy variables are in its environment). Nothing of the host's Docker is used.

use crate::reaper::Reaper;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The engine binary, looked for in the layer and started from the merged root.
pub const DOCKERD: &str = "usr/sbin/dockerd";
/// Where the engine keeps images and containers: a directory of the sandbox disk (ext4) bound
/// here, since overlayfs cannot be the upper layer of the engine's own overlays.
pub const DATA_ROOT: &str = "/var/lib/docker";
/// The engine's API socket.
pub const SOCKET: &str = "/run/docker.sock";
/// The engine's output.
pub const LOG: &str = "/run/airlock/dockerd.log";
/// How long a command waits for the engine to answer (it starts in seconds, but under TCG on a
/// busy host it can take tens of them).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of the engine's log quoted when it does not come up.
const LOG_TAIL_LINES: usize = 20;
/// Most bytes of a `/_ping` reply read.
const PING_REPLY_MAX: u64 = 4096;
/// The group that may use the socket: the workload's (`agent`, gid 1000, in the Debian image).
const SOCKET_GROUP: &str = "agent";

/// The engine started at boot, or why it could not be started; unset without the layer.
static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

struct Engine {
    /// Exit status of `dockerd`, once it ends.
    exited: Mutex<Receiver<nix::sys::wait::WaitStatus>>,
    /// Set once the socket answered: later commands do not wait.
    ready: OnceLock<()>,
}

/// Starts `dockerd` with its output in [`LOG`]; a failure is kept for [`wait_ready`] to report.
/// Called once, after the root switch.
pub fn start(reaper: &Reaper) {
    let engine = spawn(reaper).map_err(|e| format!("starting /{DOCKERD}: {e}"));
    if let Err(e) = &engine {
        eprintln!("airlock-guest: {e}");
    }
    let _ = ENGINE.set(engine);
}

fn spawn(reaper: &Reaper) -> io::Result<Engine> {
    std::fs::create_dir_all("/run/airlock")?;
    let log = std::fs::File::create(LOG)?;
    let err = log.try_clone()?;
    let mut cmd = Command::new(format!("/{DOCKERD}"));
    cmd.args([
        "--host",
        &format!("unix://{SOCKET}"),
        "--group",
        SOCKET_GROUP,
    ])
    .args(["--data-root", DATA_ROOT])
    .env_clear()
    .env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    .env("HOME", "/root")
    // Pulls go through the egress gateway like every other connection.
    .envs(crate::proxy::PROXY_ENV)
    .stdin(Stdio::null())
    .stdout(log)
    .stderr(err)
    // Its own session: signals meant for a command's process group never reach it.
    .process_group(0);
    let (_child, exited) = reaper.spawn(|| {
        let child = cmd.spawn()?;
        let pid = child.id();
        Ok((child, pid))
    })?;
    Ok(Engine {
        exited: Mutex::new(exited),
        ready: OnceLock::new(),
    })
}

/// Returns once the engine answers, at once when there is none. The error says why it is not
/// usable, with the tail of its log.
pub fn wait_ready() -> Result<(), String> {
    let engine = match ENGINE.get() {
        None => return Ok(()),
        Some(Err(e)) => return Err(failure(e)),
        Some(Ok(engine)) => engine,
    };
    if engine.ready.get().is_some() {
        return Ok(());
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if ping().is_ok() {
            let _ = engine.ready.set(());
            return Ok(());
        }
        let exited = engine
            .exited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_recv();
        match exited {
            Ok(status) => return Err(failure(&format!("dockerd ended ({status:?})"))),
            Err(TryRecvError::Disconnected) => return Err(failure("dockerd ended")),
            Err(TryRecvError::Empty) => {}
        }
        if Instant::now() >= deadline {
            return Err(failure(&format!(
                "dockerd did not answer on {SOCKET} within {}s",
                READY_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn failure(what: &str) -> String {
    let log = std::fs::read(LOG).unwrap_or_default();
    format!(
        "the sandbox's Docker engine is not available: {what}; last lines of {LOG}:\n{}",
        log_tail(&String::from_utf8_lossy(&log), LOG_TAIL_LINES)
    )
}

/// The last `n` lines of `text`.
fn log_tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .get(lines.len().saturating_sub(n)..)
        .unwrap_or_default()
        .join("\n")
}

/// `GET /_ping` on the socket; Ok when the engine answers 200.
fn ping() -> io::Result<()> {
    let mut s = UnixStream::connect(SOCKET)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut reply = Vec::new();
    s.take(PING_REPLY_MAX).read_to_end(&mut reply)?;
    if answered_ok(&reply) {
        Ok(())
    } else {
        Err(io::Error::other("the engine did not answer 200"))
    }
}

/// Whether an HTTP reply's status line is `200`.
fn answered_ok(reply: &[u8]) -> bool {
    let line = reply.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    words.next().is_some_and(|v| v.starts_with(b"HTTP/1.")) && words.next() == Some(b"200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_replies_are_read_by_status_line() {
        assert!(answered_ok(
            b"HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\n\r\nOK"
        ));
        assert!(!answered_ok(b"HTTP/1.0 500 Internal Server Error\r\n\r\n"));
        assert!(!answered_ok(b"SSH-2.0-x 200\r\n"));
        assert!(!answered_ok(b""));
    }

    #[test]
    fn the_log_tail_keeps_the_last_lines() {
        assert_eq!(log_tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(log_tail("a\n", 5), "a");
        assert_eq!(log_tail("", 5), "");
    }
}
