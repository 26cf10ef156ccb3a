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

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::socket::{self, Move, PumpError, Socket};
use crate::request::{self, ChunkedBody};

/// Buffer for a plain-HTTP request body, which the gateway reads to find its end.
const BODY_BUF_LEN: usize = 64 * 1024;
/// Buffer for a plain-HTTP response until its status line has been read.
const STATUS_BUF_LEN: usize = 16 * 1024;

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
///
/// Streams move with [`socket::pump`] as `how` says; the request body of plain HTTP and the
/// first bytes of its response always pass through a buffer, since the gateway reads their
/// framing.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per flow, all named"
)]
pub(super) async fn relay<S: Socket>(
    client: &S,
    upstream: TcpStream,
    pending: Vec<u8>,
    mode: UpMode,
    how: Move,
    idle: Duration,
    progress: &Progress,
    stats: &crate::config::Stats,
) -> RelayEnd {
    let t0 = Instant::now();
    let last = AtomicU64::new(0);
    let touch = || {
        let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        last.store(ms, Ordering::Relaxed);
    };
    let upstream = &upstream;
    let stream_mode = matches!(mode, UpMode::Stream);
    let status_wanted = !stream_mode;
    let count_up = |n: usize| {
        touch();
        progress.up.fetch_add(len_u64(n), Ordering::Relaxed);
        stats.add_up(n);
    };
    let count_down = |n: usize| {
        touch();
        progress.down.fetch_add(len_u64(n), Ordering::Relaxed);
        stats.add_down(n);
    };

    let up = async {
        match mode {
            UpMode::Stream => {
                if !pending.is_empty() {
                    socket::write_all(upstream, &pending)
                        .await
                        .map_err(UpError::Upstream)?;
                    count_up(pending.len());
                }
                socket::pump(client, upstream, how, count_up)
                    .await
                    .map_err(|e| match e {
                        PumpError::From(e) => UpError::Client(e),
                        PumpError::To(e) => UpError::Upstream(e),
                    })
            }
            UpMode::Body(mut body) => {
                if !pending.is_empty() && !body.is_done() {
                    let take = body.take(&pending).map_err(UpError::BadBody)?;
                    let part = pending.get(..take).unwrap_or_default();
                    socket::write_all(upstream, part)
                        .await
                        .map_err(UpError::Upstream)?;
                    count_up(take);
                }
                let mut buf = Vec::new();
                while !body.is_done() {
                    buf.resize(BODY_BUF_LEN, 0);
                    let n = socket::read(client, &mut buf)
                        .await
                        .map_err(UpError::Client)?;
                    if n == 0 {
                        return Err(UpError::Client(io::ErrorKind::UnexpectedEof.into()));
                    }
                    let data = buf.get(..n).unwrap_or_default();
                    let take = body.take(data).map_err(UpError::BadBody)?;
                    let part = data.get(..take).unwrap_or_default();
                    socket::write_all(upstream, part)
                        .await
                        .map_err(UpError::Upstream)?;
                    count_up(take);
                }
                Ok(())
            }
        }
    };

    let down = async {
        if status_wanted {
            // Until the status line is seen, bytes pass through a buffer to be read.
            let mut buf = vec![0u8; STATUS_BUF_LEN];
            loop {
                let n = socket::read(upstream, &mut buf)
                    .await
                    .map_err(RelayEnd::Upstream)?;
                if n == 0 {
                    socket::shutdown_write(client);
                    return Ok::<(), RelayEnd>(());
                }
                let data = buf.get(..n).unwrap_or_default();
                let (status, more) = request::scan_status(data);
                if let Some(status) = status {
                    progress.status.store(u64::from(status), Ordering::Relaxed);
                }
                socket::write_all(client, data)
                    .await
                    .map_err(RelayEnd::Client)?;
                count_down(n);
                if !more {
                    break;
                }
            }
        }
        socket::pump(upstream, client, how, count_down)
            .await
            .map_err(|e| match e {
                PumpError::From(e) => RelayEnd::Upstream(e),
                PumpError::To(e) => RelayEnd::Client(e),
            })
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
