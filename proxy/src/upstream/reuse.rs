//! When an upstream connection stops taking requests: after `maxRequestsPerConnection` requests, or once older
//! than `maxConnectionDuration` (Envoy's `max_requests_per_connection`, `max_connection_duration`). Each
//! connection carries its [`Usage`] in hyper's connection metadata; after each response head the endpoint counts
//! the request and, when the connection is spent, poisons it so the pool hands it out no more (an HTTP/1.1
//! connection closes once its response is read; on HTTP/2, streams already started finish on it). A connection's
//! maximum duration is also enforced by a timer, so an idle one past it is not reused.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Extensions;
use hyper_util::client::legacy::connect::{CaptureConnection, Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
#[cfg(test)]
use tokio::net::TcpStream;

use super::tls::UpstreamIo;

use crate::config::cluster::Connections;

/// A cluster's limits on one connection's use; both `None`: reused without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReuseLimits {
    pub max_requests: Option<u32>,
    pub max_duration: Option<Duration>,
}

impl ReuseLimits {
    pub fn of(connections: &Connections) -> Option<Self> {
        let limits = Self { max_requests: connections.max_requests, max_duration: connections.max_duration };
        (limits.max_requests.is_some() || limits.max_duration.is_some()).then_some(limits)
    }

    /// Whether a connection that has carried `requests` and opened `age` ago takes no more. Pure.
    pub fn spent(&self, requests: u32, age: Duration) -> bool {
        self.max_requests.is_some_and(|max| requests >= max) || self.max_duration.is_some_and(|max| age >= max)
    }

    /// Counts the request that `capture` saw a connection for, and retires the connection when it is spent; on
    /// its first request, a connection with a maximum duration gets a timer that retires it then.
    pub fn account(&self, capture: CaptureConnection) {
        let (requests, opened) = {
            let metadata = capture.connection_metadata();
            let Some(connected) = metadata.as_ref() else { return };
            let mut extras = Extensions::new();
            connected.get_extras(&mut extras);
            let Some(usage) = extras.get::<Usage>() else { return };
            let requests = usage.requests.fetch_add(1, Ordering::Relaxed) + 1;
            if self.spent(requests, usage.opened.elapsed()) {
                connected.poison();
                return;
            }
            (requests, usage.opened)
        };
        if let (1, Some(max)) = (requests, self.max_duration) {
            tokio::spawn(async move {
                tokio::time::sleep_until((opened + max).into()).await;
                if let Some(connected) = capture.connection_metadata().as_ref() {
                    connected.poison();
                }
            });
        }
    }
}

/// One connection's age and request count.
#[derive(Debug, Clone)]
pub struct Usage {
    opened: Instant,
    requests: Arc<AtomicU32>,
}

/// The SPIFFE id of the server an upstream connection reached over mutual TLS; hyper's pool puts it on every
/// response that connection carries, for the golden metrics' `destination_principal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPrincipal(pub Arc<str>);

/// A TCP stream that reports its [`Usage`] (and its server's identity) to hyper's pool.
pub struct TrackedStream {
    stream: UpstreamIo,
    usage: Usage,
    principal: Option<UpstreamPrincipal>,
}

impl TrackedStream {
    pub fn new(stream: UpstreamIo) -> Self {
        let principal = stream.peer_principal().map(UpstreamPrincipal);
        Self { stream, usage: Usage { opened: Instant::now(), requests: Arc::default() }, principal }
    }

    #[cfg(test)]
    pub fn tcp(&self) -> &TcpStream {
        self.stream.tcp()
    }
}

impl Connection for TrackedStream {
    fn connected(&self) -> Connected {
        let connected = self.stream.tcp().connected().extra(self.usage.clone());
        match &self.principal {
            Some(principal) => connected.extra(principal.clone()),
            None => connected,
        }
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_spent_at_either_limit() {
        let requests = ReuseLimits { max_requests: Some(3), max_duration: None };
        assert!(!requests.spent(2, Duration::from_secs(3600)));
        assert!(requests.spent(3, Duration::ZERO));
        let age = ReuseLimits { max_requests: None, max_duration: Some(Duration::from_secs(60)) };
        assert!(!age.spent(1_000_000, Duration::from_secs(59)));
        assert!(age.spent(1, Duration::from_secs(60)));
        let unset = Connections::default();
        assert_eq!(ReuseLimits::of(&unset), None, "no limits: nothing to track");
    }
}
