//! Transparent mode: listeners for traffic that `weft-proxy init`'s iptables rules redirect to the proxy. The
//! original destination (`SO_ORIGINAL_DST`) says where each connection was going; outbound connections are served
//! by a TCP or TLS route when one takes them, else as HTTP when the port is a mesh port and the first bytes are
//! HTTP, else forwarded as TCP. Inbound connections are served by [`crate::inbound`].

mod l4;
pub mod original_dst;
pub mod outbound;
pub mod sniff;
pub(crate) mod tcp;

use tokio::net::TcpStream;

use crate::metrics::{Direction, Metrics};
use original_dst::original_dst;

/// The original destination of a captured connection, or `None` (counted and logged) when it must be refused.
pub(crate) fn destination_of(
    stream: &TcpStream,
    peer: std::net::SocketAddr,
    direction: Direction,
    metrics: &Metrics,
) -> Option<std::net::SocketAddr> {
    match original_dst(stream) {
        Ok(original) => Some(original),
        Err(refusal) => {
            metrics.refused(direction, refusal.reason());
            tracing::warn!(direction = direction.as_str(), %peer, error = %refusal, "refusing connection");
            None
        }
    }
}
