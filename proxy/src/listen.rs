//! Binding and accepting on the proxy's listeners.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, thiserror::Error)]
#[error("binding {what} {address}: {source}")]
pub struct BindError {
    pub what: &'static str,
    pub address: SocketAddr,
    pub source: std::io::Error,
}

pub async fn bind(what: &'static str, address: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(address).await.map_err(|source| BindError { what, address, source })
}

/// The next connection, with Nagle off. Accept errors (out of file descriptors and the like) are logged and
/// retried after a short pause instead of spinning.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
