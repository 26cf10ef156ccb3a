//! The guest's side of a connection as a socket, and the zero-copy pump between two sockets.
//!
//! Why: relaying through a user-space buffer costs two extra memory copies per byte, which on
//! loopback is most of the gateway's time. [`pump`] moves bytes socket → kernel pipe → socket
//! with `splice(2)`, so a large response never enters the gateway's memory. Everything here
//! works on shared references through tokio's readiness API, so both directions of one
//! connection run at once on the connection's task.
//!
//! Used by `splice.rs`; the accept loop (`serve.rs`) hands over TCP or Unix streams only.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags};
use nix::sys::socket::Shutdown;
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::{TcpStream, UnixStream};

/// Capacity asked for each pipe: what one pair of `splice` calls can move.
const PIPE_LEN: usize = 256 * 1024;
/// Buffer of the copying fallback, used when the kernel refuses a pipe or a splice.
const COPY_LEN: usize = 64 * 1024;

/// A connected stream socket, driven through readiness on a shared reference.
pub(crate) trait Socket: AsFd + Sync {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Runs `f` (a non-blocking call on this socket); a `WouldBlock` clears the readiness.
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

macro_rules! socket_impl {
    ($t:ty) => {
        impl Socket for $t {
            fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
                <$t>::readable(self)
            }
            fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
                <$t>::writable(self)
            }
            fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                <$t>::try_read(self, buf)
            }
            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$t>::try_write(self, buf)
            }
            fn try_io<R>(
                &self,
                interest: Interest,
                f: impl FnOnce() -> io::Result<R>,
            ) -> io::Result<R> {
                <$t>::try_io(self, interest, f)
            }
        }
    };
}
socket_impl!(TcpStream);
socket_impl!(UnixStream);

/// What the gateway serves: a stream socket from its listener.
pub(crate) trait GuestStream:
    AsyncRead + AsyncWrite + Socket + Unpin + Send + 'static
{
}
impl<T: AsyncRead + AsyncWrite + Socket + Unpin + Send + 'static> GuestStream for T {}

/// Reads what `s` has; 0 at end of stream.
pub(crate) async fn read<S: Socket>(s: &S, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        s.readable().await?;
        match s.try_read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return r,
        }
    }
}

/// Writes all of `buf` to `s`.
pub(crate) async fn write_all<S: Socket>(s: &S, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Half-closes `s` for writing (best effort: the peer may be gone already).
pub(crate) fn shutdown_write<S: Socket>(s: &S) {
    let _ = nix::sys::socket::shutdown(s.as_fd().as_raw_fd(), Shutdown::Write);
}

/// Which end of a [`pump`] failed.
#[derive(Debug)]
pub(crate) enum PumpError {
    From(io::Error),
    To(io::Error),
}

/// How [`pump`] moves bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Move {
    /// `splice(2)` through a pipe; a copy when the kernel refuses the pipe or the first splice.
    Splice,
    /// Through a user-space buffer.
    Copy,
}

/// Moves everything `from` sends to `to` until `from`'s end of stream, then half-closes `to`.
/// `moved` is told each count as it reaches `to`.
pub(crate) async fn pump<F: Socket, T: Socket>(
    from: &F,
    to: &T,
    how: Move,
    mut moved: impl FnMut(usize) + Send,
) -> Result<(), PumpError> {
    if how == Move::Copy {
        return copy(from, to, moved).await;
    }
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    let Ok((pipe_out, pipe_in)) = pipe() else {
        return copy(from, to, moved).await;
    };
    let mut spliced_any = false;
    loop {
        let n = loop {
            from.readable().await.map_err(PumpError::From)?;
            let r = from.try_io(Interest::READABLE, || {
                nix::fcntl::splice(from, None, &pipe_in, None, PIPE_LEN, flags)
                    .map_err(io::Error::from)
            });
            match r {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if !spliced_any && e.raw_os_error() == Some(libc::EINVAL) => {
                    // A socket type without splice support: nothing was taken from it yet.
                    return copy(from, to, moved).await;
                }
                Err(e) => return Err(PumpError::From(e)),
            }
        };
        if n == 0 {
            shutdown_write(to);
            return Ok(());
        }
        spliced_any = true;
        let mut left = n;
        while left > 0 {
            to.writable().await.map_err(PumpError::To)?;
            let r = to.try_io(Interest::WRITABLE, || {
                nix::fcntl::splice(&pipe_out, None, to, None, left, flags).map_err(io::Error::from)
            });
            match r {
                Ok(0) => return Err(PumpError::To(io::ErrorKind::WriteZero.into())),
                Ok(m) => {
                    left = left.saturating_sub(m);
                    moved(m);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(PumpError::To(e)),
            }
        }
    }
}

/// A non-blocking pipe `(read end, write end)`, grown to [`PIPE_LEN`] where the kernel allows.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (out, inp) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let len = libc::c_int::try_from(PIPE_LEN).unwrap_or(libc::c_int::MAX);
    // Refused beyond the per-user pipe quota: the default size still works, only slower.
    let _ = nix::fcntl::fcntl(inp.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(len));
    Ok((out, inp))
}

/// [`pump`] through a user-space buffer.
async fn copy<F: Socket, T: Socket>(
    from: &F,
    to: &T,
    mut moved: impl FnMut(usize) + Send,
) -> Result<(), PumpError> {
    let mut buf = vec![0u8; COPY_LEN];
    loop {
        let n = read(from, &mut buf).await.map_err(PumpError::From)?;
        if n == 0 {
            shutdown_write(to);
            return Ok(());
        }
        write_all(to, buf.get(..n).unwrap_or_default())
            .await
            .map_err(PumpError::To)?;
        moved(n);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TCP pair and a Unix pair, pumped into each other, carry every byte in order and pass
    /// the end of stream on.
    #[tokio::test]
    async fn pump_carries_every_byte_and_the_end_of_stream_across_socket_kinds() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut tcp_client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let tcp_server = accepted.unwrap().0;
        let tcp_client = tcp_client.as_mut().unwrap();

        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        for how in [Move::Splice, Move::Copy] {
            let (unix_a, mut unix_b) = UnixStream::pair().unwrap();
            let mut count = 0usize;
            let relay = pump(&tcp_server, &unix_a, how, |n| count += n);
            let send = async {
                tcp_client.write_all(&data).await.unwrap();
            };
            let receive = async {
                let mut got = vec![0u8; data.len()];
                unix_b.read_exact(&mut got).await.unwrap();
                got
            };
            // The relay runs until the sender's end of stream, sent after the last round.
            let (relayed, got) = tokio::select! {
                r = relay => panic!("{how:?}: relay ended before the data: {r:?}"),
                got = async { tokio::join!(send, receive).1 } => (count, got),
            };
            assert!(got == data, "{how:?}: bytes changed on the way");
            assert_eq!(relayed, data.len(), "{how:?}: count");
        }
        let (unix_a, mut unix_b) = UnixStream::pair().unwrap();
        tcp_client.shutdown().await.unwrap();
        pump(&tcp_server, &unix_a, Move::Splice, |_| {})
            .await
            .unwrap();
        let mut rest = Vec::new();
        unix_b.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the end of stream passed on: {rest:?}");

        // The other way, Unix to TCP, as a guest's upload takes.
        let (mut unix_a, unix_b) = UnixStream::pair().unwrap();
        let relay = pump(&unix_b, &tcp_server, Move::Splice, |_| {});
        let send = async {
            unix_a.write_all(&data).await.unwrap();
            unix_a.shutdown().await.unwrap();
        };
        let receive = async {
            let mut got = Vec::new();
            tcp_client.read_to_end(&mut got).await.unwrap();
            got
        };
        let (relayed, (), got) = tokio::join!(relay, send, receive);
        relayed.unwrap();
        assert!(
            got == data,
            "Unix to TCP: bytes changed or the end of stream was lost"
        );
    }

    /// A peer that has gone is reported on the side it went from.
    #[tokio::test]
    async fn pump_names_the_side_that_failed() {
        let (from_a, mut from_b) = UnixStream::pair().unwrap();
        let (to_a, to_b) = UnixStream::pair().unwrap();
        drop(to_b);
        from_b.write_all(b"data").await.unwrap();
        let r = pump(&from_a, &to_a, Move::Splice, |_| {}).await;
        assert!(matches!(r, Err(PumpError::To(_))), "{r:?}");
    }
}
