//! Plain TCP forwarding to a connection's original destination.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, copy_bidirectional};
use tokio::net::TcpStream;

use crate::metrics::Direction;

/// Envoy's default connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `destination` and copies bytes both ways until both sides are done.
pub async fn forward<D>(mut downstream: D, destination: SocketAddr, direction: Direction, peer: SocketAddr)
where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let direction = direction.as_str();
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(destination)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(direction, %peer, %destination, error = %err, "upstream connect failed");
            return;
        }
        Err(_) => {
            tracing::debug!(direction, %peer, %destination, "upstream connect timed out");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    match copy_bidirectional(&mut downstream, &mut upstream).await {
        Ok((sent, received)) => tracing::debug!(direction, %peer, %destination, sent, received, "tcp connection done"),
        Err(err) => tracing::debug!(direction, %peer, %destination, error = %err, "tcp connection ended with an error"),
    }
}
