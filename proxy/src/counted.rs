//! A downstream connection that counts its bytes into metrics as they flow (the proxy's connection metrics, the
//! golden TCP metrics), so long-lived connections show up in `/metrics` while they are open, not only when they
//! close.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::ConnectionStats;
use crate::telemetry::tcp::TcpTally;

/// Where a connection's bytes are counted: read from downstream, written to it.
pub trait Tally: Unpin {
    fn received(&self, bytes: u64);
    fn sent(&self, bytes: u64);
}

impl Tally for ConnectionStats {
    fn received(&self, bytes: u64) {
        self.received.inc_by(bytes);
    }
    fn sent(&self, bytes: u64) {
        self.sent.inc_by(bytes);
    }
}

impl Tally for TcpTally {
    fn received(&self, bytes: u64) {
        self.received.inc_by(bytes);
    }
    fn sent(&self, bytes: u64) {
        self.sent.inc_by(bytes);
    }
}

pub struct Counted<T, S: Tally = ConnectionStats> {
    inner: T,
    stats: S,
}

impl<T, S: Tally> Counted<T, S> {
    pub fn new(inner: T, stats: S) -> Self {
        Self { inner, stats }
    }
}

impl<T: AsyncRead + Unpin, S: Tally> AsyncRead for Counted<T, S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            self.stats.received(read as u64);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin, S: Tally> AsyncWrite for Counted<T, S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = &result {
            self.stats.sent(*written as u64);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = &result {
            self.stats.sent(*written as u64);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
