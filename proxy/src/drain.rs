//! Graceful shutdown. On SIGTERM or SIGINT the proxy closes its data listeners (new connections are refused),
//! asks open HTTP connections to finish (hyper's graceful shutdown: in-flight requests complete, idle keep-alive
//! connections close, HTTP/2 gets GOAWAY), lets TCP connections run, and exits once all are done or the drain
//! timeout has passed.
//!
//! Its own signal rather than hyper-util's `GracefulShutdown`, because an HTTP connection also closes gracefully
//! for a reason of its own (the idle timeout) and so needs the signal as a future it can select on.

use std::time::Duration;

use tokio::sync::watch;

/// Every connection the data listeners accepted, until it ends.
#[derive(Debug)]
pub struct Drain {
    draining: watch::Sender<bool>,
}

/// A connection's membership in the [`Drain`]: hold it while the connection is open.
#[derive(Debug)]
pub struct ConnectionWatch(watch::Receiver<bool>);

impl ConnectionWatch {
    /// Completes once the proxy is draining.
    pub async fn draining(&mut self) {
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self { draining: watch::Sender::new(false) }
    }
}

impl Drain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a new connection.
    pub fn watcher(&self) -> ConnectionWatch {
        ConnectionWatch(self.draining.subscribe())
    }

    /// Connections still open.
    pub fn open(&self) -> usize {
        self.draining.receiver_count()
    }

    /// Tells HTTP connections to finish and waits up to `limit` for every connection to end. Whether they all did.
    pub async fn finish(self, limit: Duration) -> bool {
        self.draining.send_replace(true);
        tokio::time::timeout(limit, self.draining.closed()).await.is_ok()
    }
}
