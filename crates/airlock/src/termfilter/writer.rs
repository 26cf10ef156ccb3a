//! [`TermFilter`] in front of an `AsyncWrite`: what the supervisor writes of the guest's
//! output is filtered, then written on.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

use super::TermFilter;

/// Writes through a [`TermFilter`] (or unchanged without one), counting removed sequences in a
/// counter the caller keeps.
pub struct FilteredWriter<W> {
    inner: W,
    filter: Option<TermFilter>,
    removed: Arc<AtomicU64>,
    /// Filtered bytes not yet written, from `pos`.
    buf: Vec<u8>,
    pos: usize,
}

impl<W: AsyncWrite + Unpin> FilteredWriter<W> {
    /// Filters when `filter` is true; adds the removed sequences to `removed`.
    pub fn new(inner: W, filter: bool, removed: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            filter: filter.then(TermFilter::new),
            removed,
            buf: Vec::new(),
            pos: 0,
        }
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(rest) = self.buf.get(self.pos..).filter(|r| !r.is_empty()) {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n;
        }
        self.buf.clear();
        self.pos = 0;
        Poll::Ready(Ok(()))
    }

    fn count(&self, before: u64) {
        if let Some(f) = &self.filter {
            self.removed
                .fetch_add(f.removed().saturating_sub(before), Ordering::Relaxed);
        }
    }
}

/// This process's stdout and stderr, each behind its own filter when `filter` is true, and the
/// count of sequences both removed.
pub fn stdio(
    filter: bool,
) -> (
    FilteredWriter<tokio::io::Stdout>,
    FilteredWriter<tokio::io::Stderr>,
    Arc<AtomicU64>,
) {
    let removed = Arc::new(AtomicU64::new(0));
    (
        FilteredWriter::new(tokio::io::stdout(), filter, Arc::clone(&removed)),
        FilteredWriter::new(tokio::io::stderr(), filter, Arc::clone(&removed)),
        removed,
    )
}

impl<W: AsyncWrite + Unpin> AsyncWrite for FilteredWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let Some(filter) = &mut this.filter else {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        };
        let before = filter.removed();
        filter.feed(data, &mut this.buf);
        this.count(before);
        // The whole of `data` is taken; what the inner writer cannot take yet goes out on the
        // next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(filter) = &mut this.filter {
            let before = filter.removed();
            filter.finish(&mut this.buf);
            this.count(before);
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn filters_what_is_written_and_counts_removals() {
        let removed = Arc::new(AtomicU64::new(0));
        let mut out = Vec::new();
        {
            let mut w = FilteredWriter::new(&mut out, true, removed.clone());
            w.write_all(b"a\x1b]52;c;aGk=\x07b\x1b]2;t").await.unwrap();
            w.write_all(b"itle\x1b\\\x1b[31mred\x1b]8;;u\x07")
                .await
                .unwrap();
            w.shutdown().await.unwrap();
        }
        assert_eq!(out, b"ab\x1b[31mred\x1b]8;;u\x07");
        assert_eq!(removed.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn without_the_filter_bytes_pass_unchanged() {
        let removed = Arc::new(AtomicU64::new(0));
        let mut out = Vec::new();
        let text = b"a\x1b]52;c;aGk=\x07\x1b]2;t\x07";
        let mut w = FilteredWriter::new(&mut out, false, removed.clone());
        w.write_all(text).await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(out, text);
        assert_eq!(removed.load(Ordering::Relaxed), 0);
    }
}
