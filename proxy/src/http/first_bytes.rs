//! A downstream connection's first bytes, read before anything else is made for it.
//!
//! hyper's connection state (its HTTP/1 and HTTP/2 machinery, sized for the larger) is most of what a
//! connection costs in memory. Made only once the client has sent something, a connection that is opened and
//! left idle (client pools, health checkers, a burst that never sends) holds a small task and its socket, as in
//! nginx, which allocates its request buffers on the first read. The bytes read while waiting are handed back
//! first by [`Prefixed`], so hyper sees the stream unchanged.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// At most this much is read before hyper starts: an HTTP/2 preface's length, all hyper reads itself to tell
/// the protocols apart.
const FIRST_READ: usize = 24;

/// The first bytes a client sent.
#[derive(Debug, Clone, Copy)]
pub struct FirstBytes {
    bytes: [u8; FIRST_READ],
    len: usize,
}

impl FirstBytes {
    /// Waits for the client's first bytes; `None` when it closed the connection (or it failed) first.
    pub async fn read<I: AsyncRead + Unpin>(io: &mut I) -> Option<Self> {
        let mut bytes = [0u8; FIRST_READ];
        match io.read(&mut bytes).await {
            Ok(0) | Err(_) => None,
            Ok(len) => Some(Self { bytes, len }),
        }
    }
}

/// A stream whose reads start with bytes already taken from it.
#[derive(Debug)]
pub struct Prefixed<I> {
    first: FirstBytes,
    /// How many of `first`'s bytes have been handed back.
    given: usize,
    io: I,
}

impl<I> Prefixed<I> {
    pub fn new(first: FirstBytes, io: I) -> Self {
        Self { first, given: 0, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let left = &this.first.bytes[this.given..this.first.len];
        if left.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let taken = left.len().min(buf.remaining());
        buf.put_slice(&left[..taken]);
        this.given += taken;
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn the_bytes_read_first_come_back_first_then_the_rest() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let request = b"GET /a-path-longer-than-the-first-read HTTP/1.1\r\nhost: x\r\n\r\n";
        client.write_all(request).await.unwrap();
        drop(client);
        let first = FirstBytes::read(&mut server).await.expect("bytes");
        assert!(first.len <= FIRST_READ);
        let mut whole = Vec::new();
        Prefixed::new(first, server).read_to_end(&mut whole).await.unwrap();
        assert_eq!(whole, request);
    }

    #[tokio::test]
    async fn a_client_that_closes_without_sending_is_no_connection_to_serve() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert!(FirstBytes::read(&mut server).await.is_none());
    }
}
