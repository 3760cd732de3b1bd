//! Graceful shutdown. On SIGTERM or SIGINT the proxy closes its data listeners (new connections are refused),
//! asks open HTTP connections to finish (hyper-util's graceful shutdown: in-flight requests complete, idle
//! keep-alive connections close, HTTP/2 gets GOAWAY), lets TCP connections run, and exits once all are done or the
//! drain timeout has passed.

use std::time::Duration;

use hyper_util::server::graceful::{GracefulShutdown, Watcher};

/// Every connection the data listeners accepted, until it ends.
#[derive(Debug, Default)]
pub struct Drain {
    graceful: GracefulShutdown,
}

impl Drain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a new connection. Hold the watcher while the connection is open; an HTTP connection is served
    /// through [`Watcher::watch`] so that it hears about the shutdown.
    pub fn watcher(&self) -> Watcher {
        self.graceful.watcher()
    }

    /// Connections still open.
    pub fn open(&self) -> usize {
        self.graceful.count()
    }

    /// Tells HTTP connections to finish and waits up to `limit` for every connection to end. Whether they all did.
    pub async fn finish(self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.graceful.shutdown()).await.is_ok()
    }
}
