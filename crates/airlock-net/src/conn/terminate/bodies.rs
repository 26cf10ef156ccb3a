//! The bodies of terminated requests: the request body scanned for placeholders as it streams
//! (holding back just enough bytes that a placeholder split across frames is never forwarded
//! whole), and the response body counted and its request recorded when it ends.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::super::splice::Progress;
use crate::config::Shared;
use crate::secrets::Secrets;

/// Errors inside bodies.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type on both sides.
pub(super) type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A body of `text`.
pub(super) fn full(text: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(text.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Set once a request body carried a placeholder: the name of its credential.
pub(super) type Leak = Arc<OnceLock<String>>;

#[derive(Debug)]
struct PlaceholderInBody;

impl std::fmt::Display for PlaceholderInBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body carries a credential placeholder")
    }
}

impl std::error::Error for PlaceholderInBody {}

/// The guest's request body on its way upstream.
pub(super) struct Scanned {
    inner: Incoming,
    secrets: Arc<Secrets>,
    /// Bytes held back: the end of what arrived, shorter than the longest placeholder.
    tail: Vec<u8>,
    /// Trailers that arrived while `tail` still had to go out.
    trailers: Option<Frame<Bytes>>,
    done: bool,
    leak: Leak,
    /// Bytes of this request forwarded.
    sent: Arc<std::sync::atomic::AtomicU64>,
    progress: Arc<Progress>,
    shared: Arc<Shared>,
}

impl Scanned {
    pub(super) fn new(
        inner: Incoming,
        secrets: Arc<Secrets>,
        leak: Leak,
        sent: Arc<std::sync::atomic::AtomicU64>,
        progress: Arc<Progress>,
        shared: Arc<Shared>,
    ) -> Scanned {
        Scanned {
            inner,
            secrets,
            tail: Vec::new(),
            trailers: None,
            done: false,
            leak,
            sent,
            progress,
            shared,
        }
    }

    fn count(&self, n: usize) {
        self.sent
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.progress
            .up
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.shared.stats.add_up(n);
    }
}

impl Body for Scanned {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                if !this.tail.is_empty() {
                    let rest = std::mem::take(&mut this.tail);
                    this.count(rest.len());
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                }
                return Poll::Ready(this.trailers.take().map(Ok));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.done = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Box::new(e)))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let mut buf = std::mem::take(&mut this.tail);
                        buf.extend_from_slice(&data);
                        if let Some(s) = this.secrets.find(&buf) {
                            let _ = this.leak.set(s.credential.name.clone());
                            return Poll::Ready(Some(Err(Box::new(PlaceholderInBody))));
                        }
                        let keep = this.secrets.longest().saturating_sub(1).min(buf.len());
                        let tail = buf.split_off(buf.len() - keep);
                        this.tail = tail;
                        if !buf.is_empty() {
                            this.count(buf.len());
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))));
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body: what is held back goes first.
                        this.trailers = Some(frame);
                        this.done = true;
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.tail.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Exact when known: held-back bytes still all go out.
        self.inner.size_hint()
    }
}

/// The upstream's response body on its way to the guest; records the request once it ends
/// (or is dropped).
pub(super) struct Counted {
    inner: Incoming,
    record: Option<Box<dyn FnOnce(u64) + Send>>,
    bytes: u64,
    progress: Arc<Progress>,
    shared: Arc<Shared>,
}

impl Counted {
    pub(super) fn new(
        inner: Incoming,
        progress: Arc<Progress>,
        shared: Arc<Shared>,
        record: Box<dyn FnOnce(u64) + Send>,
    ) -> Counted {
        Counted {
            inner,
            record: Some(record),
            bytes: 0,
            progress,
            shared,
        }
    }

    fn finish(&mut self) {
        if let Some(record) = self.record.take() {
            record(self.bytes);
        }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish();
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len();
                    this.bytes = this
                        .bytes
                        .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
                    this.progress
                        .down
                        .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
                    this.shared.stats.add_down(n);
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish();
    }
}
