//! HTTP/2 upstream connections: one per endpoint, shared by every request to it (hyper's sender waits for the
//! server's stream limit). Opened on first use, by one request while the others that arrive meanwhile wait for
//! it; replaced once closed, spent, or idle past the timeout. A connection taken out of use finishes the
//! streams already on it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{Request, Response};
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::http1::UpstreamBody;
use super::{Pool, UpstreamPeer, Usage};
use crate::BoxError;
use crate::http::Body;
use crate::upstream::origination::Alpn;

/// The endpoint's HTTP/2 connection, if one is open, and the lock one request holds while opening it.
#[derive(Default)]
pub(super) struct Shared {
    current: Mutex<Option<Connection>>,
    opening: tokio::sync::Mutex<()>,
    /// Numbers connections, so a request knows whether the one that failed it is still the current one.
    opened: std::sync::atomic::AtomicU64,
}

struct Connection {
    sender: SendRequest<Body>,
    usage: Usage,
    peer: UpstreamPeer,
    last_used: Instant,
    number: u64,
}

/// What a request takes of the shared connection.
struct Stream {
    sender: SendRequest<Body>,
    peer: UpstreamPeer,
    number: u64,
}

impl Pool {
    pub(super) async fn send_http2(
        self: Arc<Self>,
        mut request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        loop {
            let (mut stream, reused) = match self.take_stream() {
                Some(stream) => (stream, true),
                None => (Box::pin(self.connect_http2()).await?, false),
            };
            match stream.sender.try_send_request(request).await {
                Ok(mut response) => {
                    response.extensions_mut().insert(stream.peer);
                    return Ok(response.map(UpstreamBody::shared));
                }
                Err(mut err) => match err.take_message() {
                    // The connection was closing and never took the request: a new one sends it.
                    Some(unsent) if reused => {
                        self.http2.forget(stream.number);
                        request = unsent;
                    }
                    _ => return Err(err.into_error().into()),
                },
            }
        }
    }

    /// A stream on the current connection, counted against its limits; `None` when there is no usable one.
    fn take_stream(&self) -> Option<Stream> {
        let mut current = self.http2.current.lock().ok()?;
        let connection = current.as_mut()?;
        if connection.sender.is_closed() || self.spent(&connection.usage) {
            *current = None;
            return None;
        }
        connection.usage.requests += 1;
        connection.last_used = Instant::now();
        let stream =
            Stream { sender: connection.sender.clone(), peer: connection.peer.clone(), number: connection.number };
        // Counted when handed out (as Envoy counts streams), so concurrent requests do not all slip onto a
        // connection that their number spends.
        if self.spent(&connection.usage) {
            *current = None;
        }
        Some(stream)
    }

    /// Opens the endpoint's connection, or waits for the request already opening it.
    async fn connect_http2(self: &Arc<Self>) -> Result<Stream, BoxError> {
        // A connection its first request spends is never shared: each request opens its own, without waiting.
        let shared = !self.limits.is_some_and(|limits| matches!(limits.max_requests, Some(0 | 1)));
        let _opening = match shared {
            true => Some(self.http2.opening.lock().await),
            false => None,
        };
        if let Some(stream) = self.take_stream() {
            return Ok(stream);
        }
        let io = self.dial.connect(Alpn::Http2).await?;
        let peer = UpstreamPeer { address: self.dial.address, principal: io.peer_principal() };
        let (sender, connection) = Builder::new(TokioExecutor::new()).handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "upstream HTTP/2 connection ended with an error");
            }
        });
        let number = self.http2.opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut usage = Usage::new();
        usage.requests = 1;
        let stream = Stream { sender: sender.clone(), peer: peer.clone(), number };
        if !self.spent(&usage)
            && let Ok(mut current) = self.http2.current.lock()
        {
            *current = Some(Connection { sender, usage, peer, last_used: Instant::now(), number });
        }
        self.watch_idle();
        Ok(stream)
    }
}

impl Shared {
    /// When the current connection last took a request.
    pub(super) fn last_used(&self) -> Option<Instant> {
        self.current.lock().ok()?.as_ref().map(|connection| connection.last_used)
    }

    /// Takes the connection out of use if no request has come since `cutoff`.
    pub(super) fn close_if_idle_since(&self, cutoff: Instant) {
        self.take_if(|connection| connection.last_used <= cutoff);
    }

    /// Takes connection `number` out of use, if it is still the current one.
    fn forget(&self, number: u64) {
        self.take_if(|connection| connection.number == number);
    }

    fn take_if(&self, condition: impl FnOnce(&Connection) -> bool) {
        let Ok(mut current) = self.current.lock() else { return };
        let closed = current.take_if(|connection| condition(connection));
        // Dropped outside the lock: dropping the last sender ends the connection.
        drop(current);
        drop(closed);
    }
}
