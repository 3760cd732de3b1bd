//! Connection-level timeouts, kept by the downstream connection's I/O itself ([`TimedIo`]) so they cost nothing
//! per request: the HTTP/1 request-header timeout (armed by the first byte of a request, answered `408`) and the
//! idle timeout (no request in flight and no bytes either way; the connection then closes gracefully, with GOAWAY
//! for HTTP/2, see [`Activity::idle_expired`]). The HTTP service tells the I/O when requests start and end through
//! the shared [`Activity`]: a request is in flight until both its body and its response's body are done.
//!
//! A request's guard also adds up its body bytes each way, for the access log and for the golden metrics' body
//! sizes ([`InFlight::report_sizes`]), observed when the request is over.
//!
//! hyper's own `header_read_timeout` is not used: it also runs while a keep-alive connection waits for its next
//! request, and it closes the connection without a response.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::{TimeoutKind, Timeouts};
use crate::metrics::{Direction, Metrics};
use crate::telemetry::BodySizes;

/// What the proxy answers a client whose request headers did not arrive in time (Envoy's wording).
const REQUEST_HEADERS_TIMEOUT_REPLY: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n\
content-length: 23\r\nconnection: close\r\nx-weft-local-reply: true\r\n\r\nrequest header timeout\n";
const H2_PREFACE_START: &[u8] = b"PRI ";

/// A connection's signs of life, shared by its I/O and its requests.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    /// When bytes last moved either way, in nanoseconds since `base`.
    last_io: AtomicU64,
    in_flight: AtomicUsize,
    /// Requests started so far: a request-header timer armed before a request started is void.
    started: AtomicU64,
    /// A request switched protocols (`101`): the bytes that follow are a tunnel's, not requests.
    switched: AtomicBool,
    /// Told once the idle timeout has passed.
    idle: Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            last_io: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            switched: AtomicBool::new(false),
            idle: Notify::new(),
        })
    }

    fn touch(&self) {
        self.last_io.store(self.base.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    fn idle_deadline(&self, limit: Duration) -> Instant {
        self.base + Duration::from_nanos(self.last_io.load(Ordering::Relaxed)) + limit
    }

    /// A request was received; it is in flight until the returned guard and all its clones are dropped (held by
    /// the request's body and its response's body).
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = RequestGuard {
            activity: self.clone(),
            body_bytes: [AtomicU64::new(0), AtomicU64::new(0)],
            sizes: OnceLock::new(),
        };
        InFlight { guard: Arc::new(guard) }
    }

    /// Completes when the connection has had no request and no bytes for the idle timeout: time to close it
    /// gracefully.
    pub async fn idle_expired(&self) {
        self.idle.notified().await;
    }

    /// Acquire: a request that ended is seen with the activity it touched on its way out.
    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Completes once nothing has moved for `limit` (for plain TCP forwarding, which has no requests).
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let deadline = self.idle_deadline(limit);
            if deadline <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A request in flight on a connection; dropping the last clone ends the request.
#[derive(Debug, Clone)]
pub struct InFlight {
    guard: Arc<RequestGuard>,
}

/// Which body of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request = 0,
    Response = 1,
}

impl InFlight {
    /// The data bytes of one of the request's bodies so far.
    pub fn body_bytes(&self, side: Side) -> u64 {
        self.guard.body_bytes[side as usize].load(Ordering::Relaxed)
    }

    /// Once the request is over, its body sizes go to `sizes`.
    pub fn report_sizes(&self, sizes: BodySizes) {
        let _ = self.guard.sizes.set(sizes);
    }

    /// The request is answered `101`: from now on the connection carries the protocol switched to, whose bytes
    /// start no request-header timeout (it would cut a WebSocket after its first quiet spell, with a `408`
    /// written into it).
    pub fn switched_protocols(&self) {
        self.guard.activity.switched.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct RequestGuard {
    activity: Arc<Activity>,
    /// By [`Side`].
    body_bytes: [AtomicU64; 2],
    sizes: OnceLock<BodySizes>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if let Some(sizes) = self.sizes.take() {
            let [request, response] = &self.body_bytes;
            sizes.observe(request.load(Ordering::Relaxed), response.load(Ordering::Relaxed));
        }
        self.activity.touch();
        // The connection's idle timer is not woken: it is always armed no later than the connection can fall
        // idle, and looks again when it fires (see `TimedIo::poll_timers`). Waking it here cost every request
        // another pass over the connection.
        self.activity.in_flight.fetch_sub(1, Ordering::Release);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Too few bytes yet to tell HTTP/1 from the HTTP/2 preface.
    Unknown,
    Http1,
    Http2,
    /// Not HTTP (plain TCP forwarding): bytes are only counted as activity.
    Opaque,
}

/// A downstream connection's I/O with the connection-level timeouts. On expiry it ends the connection: reads
/// return end-of-file (after a `408` for a request-header timeout), so the HTTP server closes it.
pub struct TimedIo<I> {
    io: I,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
    direction: Direction,
    protocol: Protocol,
    first_bytes: Vec<u8>,
    /// Set by the first byte of a request's headers: the request count then, and when the headers are due.
    headers_due: Option<(u64, Instant)>,
    /// Kept for the connection's life and moved lazily (see [`poll_deadline`]): setting a timer per request cost
    /// more than the rest of the timeouts together.
    header_timer: Option<Pin<Box<Sleep>>>,
    idle_timer: Option<Pin<Box<Sleep>>>,
    expired: bool,
    /// The last write could not complete: the client is not reading, and hyper may still hold part of a response.
    write_blocked: bool,
}

impl<I> TimedIo<I> {
    /// An HTTP connection (outbound): request-header and idle timeouts.
    pub fn http(io: I, activity: Arc<Activity>, timeouts: Timeouts, metrics: Arc<Metrics>) -> Self {
        Self::new(io, activity, timeouts, (metrics, Direction::Outbound), Protocol::Unknown)
    }

    /// A plain TCP connection: only records activity, for [`Activity::idle_for`].
    pub fn opaque(io: I, activity: Arc<Activity>, metrics: Arc<Metrics>, direction: Direction) -> Self {
        let off = Timeouts { request_headers: None, stream_idle: None, idle: None };
        Self::new(io, activity, off, (metrics, direction), Protocol::Opaque)
    }

    fn new(
        io: I,
        activity: Arc<Activity>,
        timeouts: Timeouts,
        (metrics, direction): (Arc<Metrics>, Direction),
        protocol: Protocol,
    ) -> Self {
        activity.touch();
        Self {
            io,
            activity,
            timeouts,
            metrics,
            direction,
            protocol,
            first_bytes: Vec::new(),
            headers_due: None,
            header_timer: None,
            idle_timer: None,
            expired: false,
            write_blocked: false,
        }
    }

    fn on_write(&mut self, result: &Poll<io::Result<usize>>) {
        self.write_blocked = result.is_pending();
        if matches!(result, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.touch();
        }
    }

    fn on_read(&mut self, bytes: &[u8]) {
        self.activity.touch();
        if self.protocol != Protocol::Opaque && self.activity.switched.load(Ordering::Relaxed) {
            self.protocol = Protocol::Opaque;
            self.headers_due = None;
        }
        // Blank lines between requests are allowed (RFC 9112 section 2.2) and start nothing.
        let bytes = bytes.trim_ascii_start();
        if bytes.is_empty() {
            return;
        }
        if self.protocol == Protocol::Unknown {
            self.detect_protocol(bytes);
        }
        let may_time_headers = matches!(self.protocol, Protocol::Unknown | Protocol::Http1);
        if let Some(limit) = self.timeouts.request_headers
            && may_time_headers
            && self.headers_due.is_none()
            && !self.activity.busy()
        {
            let started = self.activity.started.load(Ordering::Relaxed);
            self.headers_due = Some((started, Instant::now() + limit));
        }
    }

    fn detect_protocol(&mut self, bytes: &[u8]) {
        let wanted = H2_PREFACE_START.len() - self.first_bytes.len();
        self.first_bytes.extend_from_slice(&bytes[..bytes.len().min(wanted)]);
        let seen = self.first_bytes.as_slice();
        if !H2_PREFACE_START.starts_with(seen) {
            self.protocol = Protocol::Http1;
        } else if seen.len() == H2_PREFACE_START.len() {
            self.protocol = Protocol::Http2;
            self.headers_due = None;
        }
    }

    /// Polls the timers while the connection waits for bytes; which one fired, if any.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Option<TimeoutKind> {
        if let Some((started, due)) = self.headers_due {
            if self.activity.started.load(Ordering::Relaxed) != started {
                self.headers_due = None;
            } else if poll_deadline(&mut self.header_timer, due, cx) {
                return Some(TimeoutKind::RequestHeaders);
            }
        }
        let limit = self.timeouts.idle?;
        if !poll_deadline(&mut self.idle_timer, self.activity.idle_deadline(limit), cx) {
            return None;
        }
        if self.activity.busy() {
            // A request in flight holds the connection however quiet it is: the idle clock starts again now, so
            // the look below arms the timer a whole limit ahead, no later than the connection can fall idle.
            self.activity.touch();
        }
        // Looked at again: the last request may also have ended (and moved the deadline) since it was read.
        if !poll_deadline(&mut self.idle_timer, self.activity.idle_deadline(limit), cx) {
            return None;
        }
        self.timeouts.idle = None;
        Some(TimeoutKind::Idle)
    }
}

/// Whether `deadline` has passed, with `timer` armed to wake the task by then. The timer is moved only when it would
/// fire too late, or when it fired before `deadline` (armed for an earlier request, or before the last bytes moved):
/// deadlines that move later with every request cost nothing until the timer fires.
fn poll_deadline(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    while timer.as_mut().poll(cx).is_ready() {
        if timer.deadline() >= deadline {
            return true;
        }
        timer.as_mut().reset(deadline);
    }
    false
}

impl<I: AsyncWrite + Unpin> TimedIo<I> {
    /// Writes the `408` without waiting: a client too slow to send its headers may be too slow to read this. Not
    /// when an earlier write is stuck: the rest of the previous response may still be on its way.
    fn reply_request_timeout(&mut self, cx: &mut Context<'_>) {
        if self.write_blocked {
            return;
        }
        let mut rest = REQUEST_HEADERS_TIMEOUT_REPLY;
        while !rest.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, rest) {
                Poll::Ready(Ok(written)) if written > 0 => rest = &rest[written..],
                _ => break,
            }
        }
        let _ = Pin::new(&mut self.io).poll_flush(cx);
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for TimedIo<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let (start, end) = (before, buf.filled().len());
                    this.on_read(&buf.filled()[start..end]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match this.poll_timers(cx) {
                None => Poll::Pending,
                Some(kind) => {
                    this.metrics.timeout(this.direction, kind);
                    tracing::debug!(timeout = kind.as_str(), "closing downstream connection");
                    if kind == TimeoutKind::Idle {
                        // Closed gracefully by the connection's owner (HTTP/2 gets GOAWAY).
                        this.activity.idle.notify_one();
                        return Poll::Pending;
                    }
                    this.reply_request_timeout(cx);
                    this.expired = true;
                    Poll::Ready(Ok(()))
                }
            },
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for TimedIo<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.on_write(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.on_write(&result);
        result
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

/// A request's or response's body that keeps its request in flight (see [`Activity::request_started`]) until it
/// is done or dropped, adding up its data bytes.
pub struct InFlightBody<B> {
    inner: B,
    in_flight: InFlight,
    side: Side,
}

impl<B> InFlightBody<B> {
    pub fn new(inner: B, in_flight: InFlight, side: Side) -> Self {
        Self { inner, in_flight, side }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let counter = &this.in_flight.guard.body_bytes[this.side as usize];
            counter.fetch_add(bytes::Buf::remaining(data) as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
