//! The connection pool of one upstream endpoint, written for the request path instead of hyper_util's
//! general-purpose client: HTTP/1.1 connections each carry one request at a time and wait in a stack of idle
//! ones ([`http1`]); HTTP/2 requests share one connection per endpoint, or several within the cluster's stream
//! limit ([`http2`]). Nothing is spawned per request: an HTTP/1.1 connection goes back to the stack when its
//! response body ends ([`UpstreamBody`]).
//!
//! What the pool guarantees: a request that a reused keep-alive connection closed before taking is sent again
//! on another connection (the server closing an idle connection is not an error the client sees); connections
//! idle past the cluster's `idleTimeout` are closed; a connection stops taking requests after the cluster's
//! `maxRequestsPerConnection` or `maxConnectionDuration` ([`super::reuse`]); each response carries the
//! [`UpstreamPeer`] that answered it.

mod connect;
mod http1;
mod http2;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::{Request, Response};

pub use connect::{ConnectError, Dial};
pub use http1::UpstreamBody;

use super::reuse::ReuseLimits;
use crate::BoxError;
use crate::http::Body;

/// Who answered a response: the endpoint's address and, over mutual TLS, the server's SPIFFE id (for the
/// access log, traces and the golden metrics' `destination_principal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPeer {
    pub address: SocketAddr,
    pub principal: Option<Arc<str>>,
}

/// One connection's age and the requests it has been given.
#[derive(Debug, Clone, Copy)]
struct Usage {
    opened: Instant,
    requests: u32,
}

impl Usage {
    fn new() -> Self {
        Self { opened: Instant::now(), requests: 0 }
    }
}

/// The pools of one endpoint.
pub struct Pool {
    dial: Dial,
    limits: Option<ReuseLimits>,
    idle_timeout: Duration,
    /// Idle HTTP/1.1 connections beyond this many are closed when returned (nginx's `keepalive`).
    max_idle: usize,
    /// Requests at once on one HTTP/2 connection before another is opened; `None`: one connection.
    max_streams: Option<usize>,
    http1: Mutex<http1::Http1State>,
    http2: http2::Shared,
    /// Whether a task is watching for idle connections to close.
    reaping: AtomicBool,
}

impl Pool {
    pub fn new(dial: Dial, limits: Option<ReuseLimits>, idle_timeout: Duration, max_idle: usize) -> Self {
        Self {
            dial,
            limits,
            idle_timeout,
            max_idle,
            max_streams: None,
            http1: Mutex::default(),
            http2: http2::Shared::default(),
            reaping: AtomicBool::new(false),
        }
    }

    /// Keeps each HTTP/2 connection within `max` requests at once (the cluster's `maxConcurrentStreams`).
    pub fn with_max_streams(mut self, max: Option<u32>) -> Self {
        self.max_streams = max.map(|max| usize::try_from(max.max(1)).unwrap_or(usize::MAX));
        self
    }

    pub fn address(&self) -> SocketAddr {
        self.dial.address
    }

    pub fn secured(&self) -> bool {
        self.dial.tls.is_some()
    }

    /// Sends `request` over HTTP/2 or HTTP/1 (the request's version must already say which HTTP/1).
    pub async fn send(
        self: Arc<Self>,
        request: Request<Body>,
        http2: bool,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        if http2 { self.send_http2(request).await } else { self.send_http1(request).await }
    }

    /// Whether a connection takes no more requests.
    fn spent(&self, usage: &Usage) -> bool {
        self.limits.is_some_and(|limits| limits.spent(usage.requests, usage.opened.elapsed()))
    }

    /// Makes sure a task closes connections once idle past the timeout; it ends when none is left idle.
    fn watch_idle(self: &Arc<Self>) {
        if self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        if !spawn_detached(reap(Arc::downgrade(self))) {
            self.reaping.store(false, Ordering::Release);
        }
    }

    /// When the next idle connection's timeout falls, if any is idle.
    fn next_idle_deadline(&self) -> Option<Instant> {
        let http1 = self.http1.lock().ok().and_then(|state| state.idle.first().map(|oldest| oldest.since));
        [http1, self.http2.next_check_from()].into_iter().flatten().min().map(|since| since + self.idle_timeout)
    }

    /// Closes the connections idle since before `now` less the idle timeout.
    fn close_idle(&self, now: Instant) {
        let Some(cutoff) = now.checked_sub(self.idle_timeout) else { return };
        let expired: Vec<_> = match self.http1.lock() {
            // Oldest first: the stack is pushed in the order connections went idle.
            Ok(mut state) => {
                let keep_from = state.idle.partition_point(|entry| entry.since <= cutoff);
                state.idle.drain(..keep_from).collect()
            }
            Err(_) => Vec::new(),
        };
        self.http2.close_if_idle_since(cutoff);
        // Dropped outside the lock: dropping a sender ends its connection.
        drop(expired);
    }
}

/// The requests on one shared HTTP/2 connection whose response has not ended yet, and when the last one ended:
/// its idle time counts from then (Envoy's), not from when a request last came to it.
pub(super) struct Streams {
    in_flight: AtomicUsize,
    counted_from: Instant,
    /// When a stream last ended, in nanoseconds since `counted_from`.
    last_end: AtomicU64,
}

impl Streams {
    fn new() -> Arc<Self> {
        Arc::new(Self { in_flight: AtomicUsize::new(0), counted_from: Instant::now(), last_end: AtomicU64::new(0) })
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Since when no request has been on the connection, given when one last came to it; `None` while busy.
    fn idle_since(&self, last_used: Instant) -> Option<Instant> {
        if self.in_flight() > 0 {
            return None;
        }
        let last_end = self.counted_from + Duration::from_nanos(self.last_end.load(Ordering::Acquire));
        Some(last_used.max(last_end))
    }
}

/// One request's place on a shared HTTP/2 connection, counted until its response ends (or fails, or is dropped).
pub(super) struct StreamSlot(Arc<Streams>);

impl StreamSlot {
    fn take(streams: &Arc<Streams>) -> Self {
        streams.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(streams.clone())
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        // The end is noted before the count falls: whoever then sees no stream on the connection sees this end.
        let since = u64::try_from(self.0.counted_from.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.last_end.fetch_max(since, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `task` on the current runtime, if there is one: a response body can be dropped while the runtime shuts
/// down, when there is nothing left to run it on (nor a reason to). Whether it was spawned.
fn spawn_detached(task: impl Future<Output = ()> + Send + 'static) -> bool {
    let runtime = tokio::runtime::Handle::try_current();
    if let Ok(runtime) = &runtime {
        runtime.spawn(task);
    }
    runtime.is_ok()
}

/// The idle-connection watcher of one pool: holds it only weakly, so a pool that is dropped (its endpoint left
/// the cluster) takes its connections with it.
async fn reap(pool: Weak<Pool>) {
    loop {
        let deadline = match pool.upgrade() {
            None => return,
            Some(pool) => match pool.next_idle_deadline() {
                Some(deadline) => deadline,
                None => {
                    pool.reaping.store(false, Ordering::Release);
                    // A connection that went idle while this was deciding to stop saw the flag still set.
                    if pool.next_idle_deadline().is_none() || pool.reaping.swap(true, Ordering::AcqRel) {
                        return;
                    }
                    continue;
                }
            },
        };
        tokio::time::sleep_until(deadline.into()).await;
        match pool.upgrade() {
            Some(pool) => pool.close_idle(Instant::now()),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests;
