//! The vsock device: the rust-vmm `vhost-device-vsock` backend in hybrid mode, and the host side
//! of its unix-socket protocol.
//!
//! Hybrid vsock maps guest vsock to host unix sockets: the host connects to `<uds>` and writes
//! `CONNECT <port>\n` to reach a guest listener; a guest connecting to the host's `<port>` lands
//! on the host listener at `<uds>_<port>`.

use crate::qemu::find_in_path;
use airlock_jail::{Confinement, HelperJail, JailError, ProcessSpec};
use airlock_proto::GUEST_CID;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const BINARY: &str = "vhost-device-vsock";
/// Longest accepted reply to `CONNECT` (`OK <port>\n`).
const MAX_REPLY: usize = 32;

/// Why the vsock device failed.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The backend binary is not installed.
    #[error(
        "{BINARY} not found in PATH or ~/.cargo/bin; install it with: cargo install --locked vhost-device-vsock"
    )]
    NotInstalled,
    /// The backend could not be jailed or started.
    #[error("starting the vsock backend")]
    Start(#[source] JailError),
    /// The backend exited before it listened.
    #[error("{} exited with {status} before listening", binary.display())]
    Exited {
        /// The backend binary.
        binary: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The backend did not listen in time.
    #[error("{} did not create {} within 10 s", binary.display(), socket.display())]
    Timeout {
        /// The backend binary.
        binary: PathBuf,
        /// The socket it should have made.
        socket: PathBuf,
    },
    /// I/O with the backend or through it.
    #[error("vsock {context}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The backend refused or garbled a `CONNECT`.
    #[error("vsock connect to guest port {port}: unexpected reply \"{reply}\"")]
    Refused {
        /// Guest port.
        port: u32,
        /// What came back (escaped).
        reply: String,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> VsockError {
    let context = context.into();
    move |source| VsockError::Io { context, source }
}

/// Finds the backend binary (`$AIRLOCK_VHOST_VSOCK`, `$PATH`, then `~/.cargo/bin`).
pub fn locate_backend() -> Result<PathBuf, VsockError> {
    if let Some(p) = std::env::var_os("AIRLOCK_VHOST_VSOCK") {
        return Ok(p.into());
    }
    find_in_path(BINARY)
        .or_else(|| {
            let home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
            Some(home.join("bin").join(BINARY)).filter(|p| p.is_file())
        })
        .ok_or(VsockError::NotInstalled)
}

/// A running vsock backend for one VM.
#[derive(Debug)]
pub struct VsockBackend {
    child: tokio::process::Child,
    /// vhost-user socket for QEMU.
    pub socket: PathBuf,
    /// Hybrid vsock base path for the host side.
    pub uds: PathBuf,
}

impl VsockBackend {
    /// Starts the backend with its sockets in `dir`, and waits until QEMU can connect.
    pub async fn start(dir: &Path, log: &Path) -> Result<VsockBackend, VsockError> {
        let binary = locate_backend()?;
        let socket = dir.join("vhost-vsock.sock");
        let uds = dir.join("vsock");
        let log = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
        // It parses the guest's virtqueues: no capabilities, no_new_privs, the engine's filter,
        // writes only to its own directory.
        let jail = HelperJail::prepare(dir).map_err(VsockError::Start)?;
        let mut spec = ProcessSpec::new(&binary, Confinement::Helper(jail));
        spec.args = vec![
            "--vm".into(),
            format!(
                "guest-cid={GUEST_CID},socket={},uds-path={}",
                socket.display(),
                uds.display()
            )
            .into(),
        ];
        spec.stderr = log.into();
        let mut child = airlock_jail::spawn(spec).map_err(VsockError::Start)?;
        // The backend creates its listening socket after parsing arguments; QEMU needs it to exist.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Some(status) = child.try_wait().map_err(io("waiting for backend"))? {
                return Err(VsockError::Exited { binary, status });
            }
            if Instant::now() > deadline {
                return Err(VsockError::Timeout { binary, socket });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(VsockBackend { child, socket, uds })
    }

    /// Host pid of the backend.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the backend.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Listens for guest connections to host `port`.
    pub fn listen(&self, port: u32) -> Result<UnixListener, VsockError> {
        let path = PathBuf::from(format!("{}_{port}", self.uds.display()));
        UnixListener::bind(&path).map_err(io(format!("listening on {}", path.display())))
    }

    /// Connects to a guest listener on `port`.
    pub async fn connect(&self, port: u32) -> Result<UnixStream, VsockError> {
        connect(&self.uds, port).await
    }
}

/// How long [`close_gently`] waits for the guest to close its end.
pub const GENTLE_CLOSE_TIME: Duration = Duration::from_secs(5);
/// How much of the guest's input [`close_gently`] reads and discards at most.
const GENTLE_CLOSE_BYTES: usize = 64 * 1024;

/// Ends a guest-facing stream so the guest sees it end.
///
/// Why not just drop it: if the host closes a stream while guest data sits unread in it, the
/// backend's next read fails with `ECONNRESET`, and `vhost-device-vsock` 0.3 then stops
/// watching the stream without telling the guest, whose `read` waits forever. So this
/// half-closes (the backend reads end-of-stream and sends the guest its shutdown), then reads
/// and discards until the guest closes too, for at most [`GENTLE_CLOSE_TIME`] and 64 KiB.
/// Returns whether the guest closed its end in that time.
pub async fn close_gently(mut stream: UnixStream, within: Duration) -> bool {
    let ended = tokio::time::timeout(within, async {
        stream.shutdown().await.ok()?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained <= GENTLE_CLOSE_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) => return Some(()),
                Ok(n) => drained += n,
                Err(_) => return None,
            }
        }
        None
    })
    .await;
    matches!(ended, Ok(Some(())))
}

/// Connects through the hybrid socket `uds` to guest `port`.
pub async fn connect(uds: &Path, port: u32) -> Result<UnixStream, VsockError> {
    let mut s = UnixStream::connect(uds)
        .await
        .map_err(io(format!("connecting to {}", uds.display())))?;
    s.write_all(format!("CONNECT {port}\n").as_bytes())
        .await
        .map_err(io("sending CONNECT"))?;
    // Read the reply byte by byte: anything after the newline is guest data.
    let mut reply = Vec::with_capacity(MAX_REPLY);
    loop {
        let b = s
            .read_u8()
            .await
            .map_err(io(format!("reading CONNECT reply for port {port}")))?;
        if b == b'\n' {
            break;
        }
        reply.push(b);
        if reply.len() > MAX_REPLY {
            break;
        }
    }
    match parse_reply(&reply) {
        Some(_) => Ok(s),
        None => Err(VsockError::Refused {
            port,
            reply: String::from_utf8_lossy(&reply).escape_debug().to_string(),
        }),
    }
}

/// Parses `OK <host port>`.
fn parse_reply(reply: &[u8]) -> Option<u32> {
    std::str::from_utf8(reply)
        .ok()?
        .strip_prefix("OK ")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"OK 1073741824"), Some(1073741824));
        assert_eq!(parse_reply(b"OK"), None);
        assert_eq!(parse_reply(b"ERR"), None);
        assert_eq!(parse_reply(b"OK x"), None);
    }

    /// What the backend sees of the host's end: the reason for [`close_gently`].
    #[tokio::test]
    async fn a_gentle_close_ends_the_stream_where_a_drop_resets_it() {
        // Dropped with unread input: the other side's read fails, as the backend's does.
        let (host, mut backend) = UnixStream::pair().unwrap();
        backend.write_all(b"{\"ready\":{}}\n").await.unwrap();
        drop(host);
        let mut buf = [0u8; 64];
        let err = backend.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);

        // Closed gently: the other side reads end-of-stream, then closes, and the host knows.
        let (host, mut backend) = UnixStream::pair().unwrap();
        backend.write_all(b"{\"ready\":{}}\n").await.unwrap();
        let closing = tokio::spawn(close_gently(host, Duration::from_secs(5)));
        assert_eq!(backend.read(&mut buf).await.unwrap(), 0);
        backend
            .write_all(b"more input, read and discarded")
            .await
            .unwrap();
        drop(backend);
        assert!(closing.await.unwrap(), "the guest's close was seen");
    }

    #[tokio::test]
    async fn a_gentle_close_gives_up_on_a_guest_that_keeps_its_end_open() {
        let (host, mut backend) = UnixStream::pair().unwrap();
        let t0 = Instant::now();
        assert!(!close_gently(host, Duration::from_millis(200)).await);
        assert!(t0.elapsed() >= Duration::from_millis(200));
        let mut buf = [0u8; 8];
        assert_eq!(
            backend.read(&mut buf).await.unwrap(),
            0,
            "and the stream is closed"
        );
    }

    #[tokio::test]
    async fn connect_speaks_the_hybrid_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("v");
        let listener = UnixListener::bind(&uds).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut line = vec![0u8; 13];
            s.read_exact(&mut line).await.unwrap();
            assert_eq!(&line, b"CONNECT 1024\n");
            s.write_all(b"OK 5\nhello").await.unwrap();
        });
        let mut s = connect(&uds, 1024).await.unwrap();
        let mut rest = String::new();
        s.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "hello");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn refusal_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("v");
        let listener = UnixListener::bind(&uds).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 13];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"\x1b[31mNO\n").await.unwrap();
        });
        let err = connect(&uds, 1024).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "vsock connect to guest port 1024: unexpected reply \"\\u{1b}[31mNO\""
        );
    }
}
