//! Per-request deadlines: the stream idle timeout (no progress either way) and the route timeout (Istio's
//! `http[].timeout`, Envoy's route `timeout`: from the end of the request to the end of the response).
//!
//! A [`StreamClock`] is shared by the request body on its way up ([`Clocked::request`]: marks progress and the
//! request's end), the wait for the response head ([`response_head`]) and the response body on its way down
//! ([`Clocked::response`]). Before the response head, an expired deadline becomes the proxy's own reply (`504`,
//! or `408` when the client's body is what stalled); after it, the response body ends with an error, which resets
//! the HTTP/2 stream or closes the HTTP/1 connection, as Envoy does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::TimeoutKind;

const NOT_YET: u64 = u64::MAX;

/// One request's progress: when bytes last moved either way, and when the request ended.
#[derive(Debug)]
pub struct StreamClock {
    base: Instant,
    last: AtomicU64,
    request_done: AtomicU64,
    /// Wakes the wait for the response head when the request ends (the route timeout starts then).
    done: Notify,
    /// Wakes a response body already flowing when the request ends, for the same reason.
    done_waker: AtomicWaker,
}

impl StreamClock {
    pub fn start() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            last: AtomicU64::new(0),
            request_done: AtomicU64::new(NOT_YET),
            done: Notify::new(),
            done_waker: AtomicWaker::new(),
        })
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn touch(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    fn mark_request_done(&self) {
        if self.request_done.compare_exchange(NOT_YET, self.now(), Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.done.notify_one();
            self.done_waker.wake();
        }
    }

    pub fn request_is_done(&self) -> bool {
        self.request_done.load(Ordering::Relaxed) != NOT_YET
    }

    fn idle_deadline(&self, limit: Duration) -> Instant {
        self.base + Duration::from_nanos(self.last.load(Ordering::Relaxed)) + limit
    }

    fn route_deadline(&self, timeout: Duration) -> Option<Instant> {
        let done = self.request_done.load(Ordering::Relaxed);
        (done != NOT_YET).then(|| self.base + Duration::from_nanos(done) + timeout)
    }
}

/// The deadlines of one request: the stream idle timeout and the route's timeout, each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deadlines {
    pub stream_idle: Option<Duration>,
    pub route: Option<Duration>,
}

impl Deadlines {
    /// The earliest deadline now, and which timeout it is.
    fn next(&self, clock: &StreamClock) -> Option<(Instant, TimeoutKind)> {
        let idle = self.stream_idle.map(|limit| (clock.idle_deadline(limit), TimeoutKind::StreamIdle));
        let route = self.route.and_then(|t| clock.route_deadline(t)).map(|at| (at, TimeoutKind::Route));
        idle.into_iter().chain(route).min_by_key(|(at, _)| *at)
    }
}

/// Awaits `head` (the upstream's response head) within the deadlines; `Err` names the timeout that fired.
pub async fn response_head<T>(
    head: impl Future<Output = T>,
    clock: &StreamClock,
    deadlines: Deadlines,
) -> Result<T, TimeoutKind> {
    let mut head = std::pin::pin!(head);
    loop {
        // In this order: a request ending in between leaves a stored notification, never a missed deadline.
        let waits_for_request = deadlines.route.is_some() && !clock.request_is_done();
        let next = deadlines.next(clock);
        tokio::select! {
            result = &mut head => return Ok(result),
            () = sleep_until(next.map(|(at, _)| at)) => {
                // Progress may have moved the deadline since it was computed.
                if let Some((at, kind)) = deadlines.next(clock) && at <= Instant::now() {
                    return Err(kind);
                }
            }
            () = clock.done.notified(), if waits_for_request => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A deadline that passed while a response body was still flowing.
#[derive(Debug, thiserror::Error)]
#[error("{} timeout while streaming", .0.as_str())]
pub struct BodyTimeout(pub TimeoutKind);

/// A body on its way through the proxy, keeping its request's clock.
pub struct Clocked<B> {
    inner: B,
    clock: Arc<StreamClock>,
    role: Role,
}

enum Role {
    /// Client to upstream: progress, and the request's end.
    Request,
    /// Upstream to client: progress, under the deadlines.
    Response {
        deadlines: Deadlines,
        timer: Option<Pin<Box<Sleep>>>,
        on_timeout: Box<dyn Fn(TimeoutKind) + Send + Sync>,
    },
}

impl<B: HttpBody> Clocked<B> {
    pub fn request(inner: B, clock: Arc<StreamClock>) -> Self {
        if inner.is_end_stream() {
            clock.mark_request_done();
        }
        Self { inner, clock, role: Role::Request }
    }

    /// `on_timeout` is told (once) which deadline ended the body.
    pub fn response(
        inner: B,
        clock: Arc<StreamClock>,
        deadlines: Deadlines,
        on_timeout: impl Fn(TimeoutKind) + Send + Sync + 'static,
    ) -> Self {
        let role = Role::Response { deadlines, timer: None, on_timeout: Box::new(on_timeout) };
        Self { inner, clock, role }
    }

    /// For a response: whether a deadline has passed while the body waits; arms the timer otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<TimeoutKind> {
        let Role::Response { deadlines, timer, on_timeout } = &mut self.role else { return None };
        if deadlines.route.is_some() && !self.clock.request_is_done() {
            // The route timeout starts when the request ends, which may be after the response started.
            self.clock.done_waker.register(cx.waker());
        }
        let (at, kind) = deadlines.next(&self.clock)?;
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        if timer.as_mut().poll(cx).is_ready() {
            on_timeout(kind);
            return Some(kind);
        }
        None
    }
}

impl<B> HttpBody for Clocked<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<crate::BoxError>,
{
    type Data = Bytes;
    type Error = crate::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.clock.touch();
                if matches!(this.role, Role::Request) && this.inner.is_end_stream() {
                    this.clock.mark_request_done();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => {
                if matches!(this.role, Role::Request) {
                    this.clock.mark_request_done();
                }
                Poll::Ready(None)
            }
            Poll::Pending => match this.expired(cx) {
                Some(kind) => Poll::Ready(Some(Err(Box::new(BodyTimeout(kind))))),
                None => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_silent_upstream_is_cut_by_the_stream_idle_timeout() {
        let clock = StreamClock::start();
        let deadlines = Deadlines { stream_idle: Some(Duration::from_secs(300)), route: None };
        let started = Instant::now();
        let result = response_head(std::future::pending::<()>(), &clock, deadlines).await;
        assert_eq!(result, Err(TimeoutKind::StreamIdle));
        assert_eq!(started.elapsed(), Duration::from_secs(300));
    }

    #[tokio::test(start_paused = true)]
    async fn the_route_timeout_runs_from_the_end_of_the_request() {
        let clock = StreamClock::start();
        let deadlines = Deadlines { stream_idle: None, route: Some(Duration::from_secs(2)) };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
        let mut upload =
            Clocked::request(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)), clock.clone());
        let uploader = tokio::spawn(async move { while upload.frame().await.is_some() {} });
        let started = Instant::now();
        let waiting = tokio::spawn({
            let clock = clock.clone();
            async move { response_head(std::future::pending::<()>(), &clock, deadlines).await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        tx.send(Ok(Frame::data(Bytes::from_static(b"last")))).await.unwrap();
        drop(tx);
        assert_eq!(waiting.await.unwrap(), Err(TimeoutKind::Route));
        assert_eq!(started.elapsed(), Duration::from_secs(7), "5 s of upload, then the 2 s route timeout");
        uploader.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_body_that_stalls_ends_with_an_error() {
        let clock = StreamClock::start();
        let deadlines = Deadlines { stream_idle: Some(Duration::from_secs(10)), route: None };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
        let fired = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = fired.clone();
        let mut body = Clocked::response(
            StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            clock,
            deadlines,
            move |kind| record.lock().unwrap().push(kind),
        );
        tx.send(Ok(Frame::data(Bytes::from_static(b"head of body")))).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "stream_idle timeout while streaming");
        assert_eq!(*fired.lock().unwrap(), [TimeoutKind::StreamIdle]);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn the_route_timeout_starts_when_a_request_ends_after_its_response_began() {
        let clock = StreamClock::start();
        let deadlines = Deadlines { stream_idle: None, route: Some(Duration::from_secs(2)) };
        let (upload_tx, upload_rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
        let mut upload =
            Clocked::request(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(upload_rx)), clock.clone());
        let (_download_tx, download_rx) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
        let mut download = Clocked::response(
            StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(download_rx)),
            clock.clone(),
            deadlines,
            |_| {},
        );
        let started = Instant::now();
        let downloading = tokio::spawn(async move { download.frame().await.map(|f| f.map(|_| ())) });
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!downloading.is_finished(), "no route deadline before the request ends");
        drop(upload_tx);
        assert!(upload.frame().await.is_none());
        let err = downloading.await.unwrap().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "route timeout while streaming");
        assert_eq!(started.elapsed(), Duration::from_secs(5), "3 s until the request ended, then 2 s");
    }

    #[tokio::test]
    async fn a_body_less_request_is_done_at_once() {
        let clock = StreamClock::start();
        let _body = Clocked::request(Full::new(Bytes::new()), clock.clone());
        assert!(clock.request_is_done());
    }
}
