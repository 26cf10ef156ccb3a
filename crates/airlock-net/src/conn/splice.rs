//! The splice: moves bytes between the guest and the upstream both ways, counts them, watches
//! for the idle timeout, and (plain HTTP) forwards exactly the request body its framing
//! announces and picks the response status out of the first bytes back.
//!
//! Called by the CONNECT flow (`tunnel.rs`, everything until EOF) and the plain-HTTP flow
//! (`http.rs`, only the body) once the upstream is connected. Both directions run as two
//! futures under one `select!` on the connection's task, with no extra tasks, so dropping the
//! connection's future (shutdown) stops both; the counts live in [`Progress`] so they can still
//! be read after that.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::request::{self, ChunkedBody};

/// Buffer size of each direction of a splice.
const RELAY_BUF_LEN: usize = 64 * 1024;

/// Bytes relayed so far, readable after the connection's future was dropped (shutdown).
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub(super) up: AtomicU64,
    pub(super) down: AtomicU64,
    /// HTTP status of the upstream response; 0 until seen.
    pub(super) status: AtomicU64,
}

/// The request body still to forward.
#[derive(Debug)]
pub(super) enum Body {
    Length(u64),
    Chunked(ChunkedBody),
}

impl Body {
    fn is_done(&self) -> bool {
        match self {
            Self::Length(n) => *n == 0,
            Self::Chunked(c) => c.is_done(),
        }
    }

    /// How much of `data` belongs to the body.
    fn take(&mut self, data: &[u8]) -> Result<usize, request::ChunkedError> {
        match self {
            Self::Length(n) => {
                let take = usize::try_from(*n).map_or(data.len(), |n| n.min(data.len()));
                *n -= len_u64(take);
                Ok(take)
            }
            Self::Chunked(c) => c.feed(data),
        }
    }
}

/// What flows from the guest to upstream.
pub(super) enum UpMode {
    /// Everything until the guest's EOF (CONNECT tunnels).
    Stream,
    /// Exactly the request body; then nothing more (plain HTTP).
    Body(Body),
}

/// How a splice ended.
#[derive(Debug)]
pub(super) enum RelayEnd {
    /// Both sides finished (tunnel), or the upstream finished its response (HTTP).
    Done,
    /// No byte moved either way for the idle timeout.
    Idle,
    /// The guest side failed.
    Client(io::Error),
    /// The upstream side failed.
    Upstream(io::Error),
    /// The chunked request body was malformed; forwarding stopped.
    BadBody(request::ChunkedError),
}

impl RelayEnd {
    pub(super) fn log(&self, what: &'static str) {
        match self {
            Self::Done => tracing::debug!("{what}"),
            Self::Idle => tracing::debug!("{what}: idle timeout"),
            Self::Client(e) => tracing::debug!(error = %e, "{what}: guest side failed"),
            Self::Upstream(e) => tracing::debug!(error = %e, "{what}: upstream side failed"),
            Self::BadBody(e) => tracing::debug!(error = %e, "{what}: malformed body"),
        }
    }
}

enum UpError {
    Client(io::Error),
    Upstream(io::Error),
    BadBody(request::ChunkedError),
}

/// Splices `client` and `upstream`, first sending `pending` (bytes the guest sent after the
/// head) upstream. Bytes are counted in `progress` and the gateway's stats as they move.
pub(super) async fn relay<S>(
    client: &mut S,
    mut upstream: TcpStream,
    pending: Vec<u8>,
    mode: UpMode,
    idle: Duration,
    progress: &Progress,
    stats: &crate::config::Stats,
) -> RelayEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let t0 = Instant::now();
    let last = AtomicU64::new(0);
    let touch = || {
        let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        last.store(ms, Ordering::Relaxed);
    };
    let (mut ur, mut uw) = upstream.split();
    let (mut cr, mut cw) = tokio::io::split(client);
    let stream_mode = matches!(mode, UpMode::Stream);
    let status_wanted = !stream_mode;

    let up = async {
        let mut buf = vec![0u8; RELAY_BUF_LEN];
        match mode {
            UpMode::Stream => {
                if !pending.is_empty() {
                    uw.write_all(&pending).await.map_err(UpError::Upstream)?;
                    progress
                        .up
                        .fetch_add(len_u64(pending.len()), Ordering::Relaxed);
                    stats.add_up(pending.len());
                }
                loop {
                    let n = cr.read(&mut buf).await.map_err(UpError::Client)?;
                    if n == 0 {
                        let _ = uw.shutdown().await;
                        return Ok(());
                    }
                    touch();
                    let data = buf.get(..n).unwrap_or_default();
                    uw.write_all(data).await.map_err(UpError::Upstream)?;
                    progress.up.fetch_add(len_u64(n), Ordering::Relaxed);
                    stats.add_up(n);
                }
            }
            UpMode::Body(mut body) => {
                if !pending.is_empty() && !body.is_done() {
                    let take = body.take(&pending).map_err(UpError::BadBody)?;
                    let part = pending.get(..take).unwrap_or_default();
                    uw.write_all(part).await.map_err(UpError::Upstream)?;
                    progress.up.fetch_add(len_u64(take), Ordering::Relaxed);
                    stats.add_up(take);
                }
                while !body.is_done() {
                    let n = cr.read(&mut buf).await.map_err(UpError::Client)?;
                    if n == 0 {
                        return Err(UpError::Client(io::ErrorKind::UnexpectedEof.into()));
                    }
                    touch();
                    let data = buf.get(..n).unwrap_or_default();
                    let take = body.take(data).map_err(UpError::BadBody)?;
                    let part = data.get(..take).unwrap_or_default();
                    uw.write_all(part).await.map_err(UpError::Upstream)?;
                    progress.up.fetch_add(len_u64(take), Ordering::Relaxed);
                    stats.add_up(take);
                }
                Ok(())
            }
        }
    };

    let down = async {
        let mut buf = vec![0u8; RELAY_BUF_LEN];
        let mut first = status_wanted;
        loop {
            let n = ur.read(&mut buf).await.map_err(RelayEnd::Upstream)?;
            if n == 0 {
                let _ = cw.shutdown().await;
                return Ok::<(), RelayEnd>(());
            }
            touch();
            let data = buf.get(..n).unwrap_or_default();
            if first {
                let (status, more) = request::scan_status(data);
                if let Some(status) = status {
                    progress.status.store(u64::from(status), Ordering::Relaxed);
                }
                first = more;
            }
            cw.write_all(data).await.map_err(RelayEnd::Client)?;
            progress.down.fetch_add(len_u64(n), Ordering::Relaxed);
            stats.add_down(n);
        }
    };

    tokio::pin!(up, down);
    let mut up_done = false;
    let mut down_done = false;
    let tick_every = (idle / 4).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(tick_every);
    loop {
        tokio::select! {
            r = &mut up, if !up_done => {
                up_done = true;
                match r {
                    Ok(()) if down_done => return RelayEnd::Done,
                    Ok(()) => {}
                    Err(UpError::Client(e)) => return RelayEnd::Client(e),
                    Err(UpError::Upstream(e)) => return RelayEnd::Upstream(e),
                    Err(UpError::BadBody(e)) => return RelayEnd::BadBody(e),
                }
            }
            r = &mut down, if !down_done => {
                down_done = true;
                match r {
                    Ok(()) if up_done || !stream_mode => return RelayEnd::Done,
                    Ok(()) => {}
                    Err(end) => return end,
                }
            }
            _ = tick.tick() => {
                let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
                let now = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
                if now.saturating_sub(last.load(Ordering::Relaxed)) >= idle_ms {
                    return RelayEnd::Idle;
                }
            }
        }
    }
}

pub(super) fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
