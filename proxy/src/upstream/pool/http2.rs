//! HTTP/2 upstream connections: one per endpoint, shared by every request to it (hyper's sender waits for the
//! server's stream limit); with the cluster's `maxConcurrentStreams`, as many as it takes to keep each within
//! that many requests at once (Envoy's pool; unlike Envoy's, not bounded by `maxConnections`, and a server
//! limit below it makes requests wait on the connection rather than open another). Opened on first use, one at a
//! time: one request opens while the others that arrive meanwhile wait for it and take a stream on it if it has
//! room. Replaced once closed, spent, or idle past the timeout (no stream on it). A connection taken out of use
//! finishes the streams already on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{Request, Response};
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::http1::UpstreamBody;
use super::{Pool, StreamSlot, Streams, UpstreamPeer, Usage};
use crate::BoxError;
use crate::http::Body;
use crate::upstream::origination::Alpn;

/// The endpoint's open HTTP/2 connections, oldest first, and the lock one request holds while opening one.
#[derive(Default)]
pub(super) struct Shared {
    connections: Mutex<Vec<Connection>>,
    opening: tokio::sync::Mutex<()>,
    /// Numbers connections, so a request knows whether the one that failed it is still in use.
    opened: AtomicU64,
}

struct Connection {
    sender: SendRequest<Body>,
    usage: Usage,
    peer: UpstreamPeer,
    /// When a request last came to it, or when it was last found busy by the idle watcher.
    last_used: Instant,
    number: u64,
    streams: Arc<Streams>,
}

/// What a request takes of a shared connection.
struct Stream {
    sender: SendRequest<Body>,
    peer: UpstreamPeer,
    number: u64,
    slot: StreamSlot,
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
                    let slot = stream.slot;
                    return Ok(response.map(|body| UpstreamBody::shared(body, slot)));
                }
                Err(mut err) => match err.take_message() {
                    // The connection was closing and never took the request: another one sends it.
                    Some(unsent) if reused => {
                        self.http2.forget(stream.number);
                        request = unsent;
                    }
                    _ => return Err(err.into_error().into()),
                },
            }
        }
    }

    /// A stream on the oldest connection with room for one, counted against its limits; `None` when there is no
    /// usable one. Closed and spent connections are taken out of use on the way.
    fn take_stream(&self) -> Option<Stream> {
        let mut connections = self.http2.connections.lock().ok()?;
        // Closed and spent ones go (their senders dropped under the lock: a channel closing, nothing more).
        connections.retain(|connection| !connection.sender.is_closed() && !self.spent(&connection.usage));
        let has_room = |c: &Connection| self.max_streams.is_none_or(|max| c.streams.in_flight() < max);
        let index = connections.iter().position(has_room)?;
        let connection = &mut connections[index];
        connection.usage.requests += 1;
        connection.last_used = Instant::now();
        let stream = Stream {
            sender: connection.sender.clone(),
            peer: connection.peer.clone(),
            number: connection.number,
            slot: StreamSlot::take(&connection.streams),
        };
        // Counted when handed out (as Envoy counts streams), so concurrent requests do not all slip onto a
        // connection that their number spends.
        if self.spent(&connection.usage) {
            let spent = connections.remove(index);
            // Dropped outside the lock: dropping the last sender ends the connection once its streams are done.
            drop(connections);
            drop(spent);
        }
        Some(stream)
    }

    /// Opens a connection, or waits for the request already opening one and takes a stream on it if it has room.
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
        let number = self.http2.opened.fetch_add(1, Ordering::Relaxed);
        let mut usage = Usage::new();
        usage.requests = 1;
        let streams = Streams::new();
        let slot = StreamSlot::take(&streams);
        let stream = Stream { sender: sender.clone(), peer: peer.clone(), number, slot };
        if !self.spent(&usage)
            && let Ok(mut connections) = self.http2.connections.lock()
        {
            connections.push(Connection { sender, usage, peer, last_used: Instant::now(), number, streams });
        }
        self.watch_idle();
        Ok(stream)
    }
}

impl Shared {
    /// From when the idle timeout of the connection due first counts: since it went idle, or, for a busy one,
    /// since the idle watcher last found it busy.
    pub(super) fn next_check_from(&self) -> Option<Instant> {
        let connections = self.connections.lock().ok()?;
        connections.iter().map(|c| c.streams.idle_since(c.last_used).unwrap_or(c.last_used)).min()
    }

    /// Takes out of use the connections idle since `cutoff` or before: no request on them since, none ended
    /// since, none on them now (Envoy's idle timeout: a connection full of long streams is busy, not idle). A busy
    /// one is looked at again a whole timeout later, as if used now: the idle watcher then sleeps rather than
    /// finding it due again at once.
    pub(super) fn close_if_idle_since(&self, cutoff: Instant) {
        let now = Instant::now();
        self.take_out(|connection| match connection.streams.idle_since(connection.last_used) {
            Some(since) => since <= cutoff,
            None => {
                connection.last_used = now;
                false
            }
        });
    }

    /// Takes connection `number` out of use, if it still is in use.
    fn forget(&self, number: u64) {
        self.take_out(|connection| connection.number == number);
    }

    fn take_out(&self, condition: impl FnMut(&mut Connection) -> bool) {
        let Ok(mut connections) = self.connections.lock() else { return };
        let out: Vec<Connection> = connections.extract_if(.., condition).collect();
        // Dropped outside the lock: dropping the last sender ends the connection.
        drop(connections);
        drop(out);
    }

    /// How many connections are in use (for tests).
    #[cfg(test)]
    pub(super) fn open(&self) -> usize {
        self.connections.lock().map_or(0, |connections| connections.len())
    }
}
