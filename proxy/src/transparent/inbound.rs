//! The inbound capture listener (:15006): connections to the pod arrive here, redirected by iptables, and go on
//! to the application at their original destination (the pod IP and port). The proxy's own connection is not
//! captured again: `weft-proxy init` exempts the proxy's UID. Forwarded as TCP, counted.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{destination_of, tcp};
use crate::counted::Counted;
use crate::drain::Drain;
use crate::listen::accept;
use crate::metrics::{Direction, Metrics, Mode};

/// Serves `listener` until the future is dropped; connections idle for `idle` are closed.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, idle: Option<Duration>, drain: &Drain) {
    loop {
        let (stream, peer) = accept(&listener).await;
        let watcher = drain.watcher();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let Some(original) = destination_of(&stream, peer, Direction::Inbound, &metrics) else { return };
            let io = Counted::new(stream, metrics.connection(Direction::Inbound, Mode::Tcp));
            tcp::forward(io, original, tcp::Flow { direction: Direction::Inbound, peer, idle, metrics: &metrics })
                .await;
            drop(watcher);
        });
    }
}
