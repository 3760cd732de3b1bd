//! HTTP/1.1 upstream connections: each carries one request at a time. Idle ones wait in a stack (the most
//! recently used is reused first, so the others age out); a connection is given back by its response body once
//! that has been read to the end (or dropped: hyper drains a small remainder, e.g. of a `503` a retry dropped,
//! and closes the connection otherwise), without a task of its own.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http::uri::{Authority, Parts, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::{Pool, StreamSlot, UpstreamPeer, Usage};
use crate::BoxError;
use crate::http::Body;
use crate::upstream::origination::Alpn;

/// The endpoint's idle HTTP/1.1 connections, and the requests dialling a new one that would take one given
/// back first.
#[derive(Default)]
pub(super) struct Http1State {
    pub(super) idle: Vec<Idle>,
    waiting: VecDeque<oneshot::Sender<Connection>>,
}

/// Waiting requests beyond which those that stopped waiting are cleared out.
const WAITING_SWEEP: usize = 64;

/// A connection in the idle stack, and since when.
pub(super) struct Idle {
    pub(super) since: Instant,
    connection: Connection,
}

/// One HTTP/1.1 connection as the pool holds it.
struct Connection {
    sender: SendRequest<Body>,
    usage: Usage,
    peer: UpstreamPeer,
}

impl Pool {
    pub(super) async fn send_http1(
        self: Arc<Self>,
        mut request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        to_origin_form(&mut request);
        loop {
            let (mut connection, reused) = match self.idle_http1() {
                Ok(connection) => (connection, true),
                // Boxed: the connect and TLS handshake futures are large and only needed now and then.
                Err(given) => Box::pin(self.clone().connect_or_take(given)).await?,
            };
            connection.usage.requests += 1;
            match connection.sender.try_send_request(request).await {
                Ok(mut response) => {
                    response.extensions_mut().insert(connection.peer.clone());
                    // A connection that switched protocols belongs to the upgrade now.
                    let reusable = response.status() != StatusCode::SWITCHING_PROTOCOLS;
                    let giveback = reusable.then(|| (self.clone(), connection));
                    return Ok(response.map(|body| UpstreamBody { body, giveback, slot: None }));
                }
                Err(mut err) => match err.take_message() {
                    // A kept-alive connection closed before it took the request: another one sends it.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(err.into_error().into()),
                },
            }
        }
    }

    /// The most recently used idle connection still open and within its limits; else where a connection given
    /// back from now on is handed.
    fn idle_http1(&self) -> Result<Connection, oneshot::Receiver<Connection>> {
        let Ok(mut state) = self.http1.lock() else { return Err(oneshot::channel().1) };
        while let Some(Idle { connection, .. }) = state.idle.pop() {
            if connection.sender.is_ready() && !self.spent(&connection.usage) {
                return Ok(connection);
            }
        }
        // Made only when waiting: a request that finds an idle connection allocates nothing here.
        let (handed, given) = oneshot::channel();
        if state.waiting.len() >= WAITING_SWEEP {
            state.waiting.retain(|waiter| !waiter.is_closed());
        }
        state.waiting.push_back(handed);
        Err(given)
    }

    /// A new connection, or one given back before it is open, as hyper_util's client did: under a burst,
    /// requests are served by connections that finish their exchange rather than wait on connects (which the
    /// server's accept backlog may stall or refuse). A connect that loses finishes on its own and parks its
    /// connection. Whether the connection was used before.
    async fn connect_or_take(
        self: Arc<Self>,
        mut given: oneshot::Receiver<Connection>,
    ) -> Result<(Connection, bool), BoxError> {
        let mut connecting = Box::pin(self.clone().connect_http1());
        tokio::select! {
            biased;
            Ok(connection) = &mut given => {
                let _ = super::spawn_detached(async move {
                    if let Ok(opened) = connecting.await {
                        self.park(opened);
                    }
                });
                Ok((connection, true))
            }
            opened = &mut connecting => {
                given.close();
                // Handed one just as the connect finished: it goes back rather than closing with the receiver.
                if let Ok(handed) = given.try_recv() {
                    self.park(handed);
                }
                Ok((opened?, false))
            }
        }
    }

    async fn connect_http1(self: Arc<Self>) -> Result<Connection, BoxError> {
        let io = self.dial.connect(Alpn::Http1).await?;
        let peer = UpstreamPeer { address: self.dial.address, principal: io.peer_principal() };
        let (sender, connection) = http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(error = %err, "upstream HTTP/1.1 connection ended with an error");
            }
        });
        Ok(Connection { sender, usage: Usage::new(), peer })
    }

    /// Takes back a connection whose exchange is over.
    fn give_back(self: Arc<Self>, mut connection: Connection) {
        if self.spent(&connection.usage) || connection.sender.is_closed() {
            return;
        }
        if connection.sender.is_ready() {
            return self.park(connection);
        }
        // The request body is still going, hyper is draining a response body dropped unread, or the connection has
        // not caught up yet: parked once it can take another request, if that comes within the idle timeout.
        let _ = super::spawn_detached(async move {
            let ready = tokio::time::timeout(self.idle_timeout, connection.sender.ready()).await;
            if matches!(ready, Ok(Ok(()))) {
                self.park(connection);
            }
        });
    }

    /// Hands the connection to a request waiting for one, else puts it in the idle stack.
    fn park(self: Arc<Self>, mut connection: Connection) {
        let Ok(mut state) = self.http1.lock() else { return };
        while let Some(waiter) = state.waiting.pop_front() {
            match waiter.send(connection) {
                Ok(()) => return,
                Err(returned) => connection = returned,
            }
        }
        if state.idle.len() >= self.max_idle {
            drop(state);
            return;
        }
        state.idle.push(Idle { since: Instant::now(), connection });
        drop(state);
        self.watch_idle();
    }
}

/// The request as an HTTP/1.1 server reads it: a `Host` header (from the URI when the client sent none, as
/// HTTP/2 clients do) and the path alone in the request line.
fn to_origin_form(request: &mut Request<Body>) {
    let uri = request.uri();
    if let Some(authority) = uri.authority()
        && !request.headers().contains_key(header::HOST)
        && let Some(host) = host_header(authority, uri.scheme())
    {
        request.headers_mut().insert(header::HOST, host);
    }
    if request.method() == Method::CONNECT {
        // Authority-form: `CONNECT host:port`.
        if let Some(authority) = request.uri().authority().and_then(|a| a.as_str().parse::<Uri>().ok()) {
            *request.uri_mut() = authority;
        }
        return;
    }
    let origin_form = match request.uri().path_and_query() {
        Some(path) if path.as_str() != "/" => {
            let mut parts = Parts::default();
            parts.path_and_query = Some(path.clone());
            Uri::from_parts(parts).ok()
        }
        _ => None,
    };
    *request.uri_mut() = origin_form.unwrap_or_else(|| Uri::from_static("/"));
}

/// The host, and the port unless it is the scheme's default.
fn host_header(authority: &Authority, scheme: Option<&Scheme>) -> Option<HeaderValue> {
    let default_port = if scheme == Some(&Scheme::HTTPS) { 443 } else { 80 };
    let value = match authority.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", authority.host()),
        _ => authority.host().to_string(),
    };
    HeaderValue::from_str(&value).ok()
}

/// An upstream response body. Over HTTP/1.1 it holds its connection, and gives it back to the pool when the
/// body has been read to its end.
/// Over HTTP/2 it holds its request's place on the shared connection until then.
pub struct UpstreamBody {
    body: Incoming,
    giveback: Option<(Arc<Pool>, Connection)>,
    slot: Option<StreamSlot>,
}

impl UpstreamBody {
    /// A body whose connection is not the pool's to take back (HTTP/2: the connection is shared).
    pub(super) fn shared(body: Incoming, slot: StreamSlot) -> Self {
        Self { body, giveback: None, slot: Some(slot) }
    }

    fn release(&mut self) {
        self.slot = None;
        if let Some((pool, connection)) = self.giveback.take() {
            pool.give_back(connection);
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            // A broken exchange: the connection goes with it.
            Some(Err(_)) => (this.giveback, this.slot) = (None, None),
            // Trailers end a body; a server stops reading after them, as after the last data.
            Some(Ok(frame)) if frame.is_trailers() || this.body.is_end_stream() => this.release(),
            None => this.release(),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    /// A body read to its end, known to be empty, or dropped unread: the pool takes the connection once hyper has
    /// it ready again (it is closed instead when hyper cannot drain the rest).
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};

    fn request(uri: &str) -> Request<Body> {
        Request::get(uri).body(Empty::new().map_err(|never| match never {}).boxed()).unwrap()
    }

    #[test]
    fn an_http1_request_names_its_host_and_sends_only_the_path() {
        let mut asked = request("http://reviews.shop:9080/api?x=1");
        to_origin_form(&mut asked);
        assert_eq!(asked.uri(), "/api?x=1");
        assert_eq!(asked.headers()[header::HOST], "reviews.shop:9080");

        let mut default_port = request("http://reviews.shop:80/");
        to_origin_form(&mut default_port);
        assert_eq!(default_port.uri(), "/");
        assert_eq!(default_port.headers()[header::HOST], "reviews.shop");

        let mut connect = request("http://reviews.shop:443/");
        *connect.method_mut() = Method::CONNECT;
        to_origin_form(&mut connect);
        assert_eq!(connect.uri(), "reviews.shop:443", "authority-form");

        let mut kept = request("http://reviews.shop/");
        kept.headers_mut().insert(header::HOST, HeaderValue::from_static("as-the-client-said"));
        to_origin_form(&mut kept);
        assert_eq!(kept.headers()[header::HOST], "as-the-client-said");
    }
}
