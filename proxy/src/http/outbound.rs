//! The explicit outbound listener (without `--transparent`): applications send HTTP to it on purpose, and each
//! request is routed by its `Host` / `:authority`.

use std::sync::Arc;

use tokio::net::TcpListener;

use super::{Destination, Forwarder, serve_connection};
use crate::counted::Counted;
use crate::drain::Drain;
use crate::listen::accept;
use crate::metrics::{Direction, Mode};

/// Serves `listener` until the future is dropped; `default_port` is the Service port meant by a `Host` without
/// a port.
pub async fn serve(listener: TcpListener, forwarder: Arc<Forwarder>, default_port: u16, drain: &Drain) {
    loop {
        let (stream, peer) = accept(&listener).await;
        let stats = forwarder.metrics.connection(Direction::Outbound, Mode::Http);
        let downstream = (Destination::Explicit { default_port }, peer);
        tokio::spawn(serve_connection(Counted::new(stream, stats), forwarder.clone(), downstream, drain.watcher()));
    }
}
