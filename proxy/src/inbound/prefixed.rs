//! Reading a connection's first bytes to tell its protocol, then handing the connection on as if nothing had
//! been read. A plain socket could be peeked instead, but a terminated TLS stream cannot, and one way for both
//! keeps the inbound path simple. (hyper has such a type, `Rewind`, but keeps it private.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::transparent::sniff::{Sniffed, sniff};

/// How much is read at most to tell: enough for a request line.
const SNIFF_BYTES: usize = 1024;

/// An I/O whose first bytes were read already: they are read again first.
pub struct Prefixed<I> {
    prefix: Bytes,
    inner: I,
}

/// Reads from `io` until [`sniff`] can tell what it carries, the peer stops sending, or `limit` passes (then:
/// not HTTP, as for a server-first protocol whose client waits for the server).
pub async fn sniff_io<I: AsyncRead + Unpin>(mut io: I, limit: Duration) -> (Sniffed, Prefixed<I>) {
    let deadline = Instant::now() + limit;
    let mut buffer = BytesMut::with_capacity(SNIFF_BYTES);
    let verdict = loop {
        let read = tokio::time::timeout_at(deadline, io.read_buf(&mut buffer)).await;
        let full = buffer.len() >= SNIFF_BYTES;
        match read {
            Ok(Ok(n)) if n > 0 => match sniff(&buffer, full) {
                Sniffed::NeedMore if !full => {}
                verdict => break verdict,
            },
            // Closed, failed or silent: whatever came so far goes on as it is.
            _ => break Sniffed::Other,
        }
    };
    (verdict, Prefixed { prefix: buffer.freeze(), inner: io })
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn what_was_read_to_tell_is_read_again() {
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await.unwrap();
        let (verdict, mut io) = sniff_io(server, Duration::from_secs(5)).await;
        assert_eq!(verdict, Sniffed::Http1);
        client.write_all(b"more").await.unwrap();
        drop(client);
        let mut all = String::new();
        io.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "GET / HTTP/1.1\r\nhost: a\r\n\r\nmore");
    }

    #[tokio::test]
    async fn a_silent_client_is_not_http_and_loses_nothing() {
        let (mut client, server) = tokio::io::duplex(4096);
        let (verdict, mut io) = sniff_io(server, Duration::from_millis(50)).await;
        assert_eq!(verdict, Sniffed::Other);
        client.write_all(b"\x00\x01").await.unwrap();
        let mut two = [0u8; 2];
        io.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"\x00\x01");
    }
}
