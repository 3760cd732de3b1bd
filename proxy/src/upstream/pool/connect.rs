//! Opening one upstream connection: TCP to the endpoint's address (whatever the request's authority says), with
//! the cluster's connect timeout and keepalive, `TCP_NODELAY`, then the cluster's TLS when it has one. A failure
//! here is a [`ConnectError`], the one error the retry policy's `connect-failure` matches.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::cluster::Keepalive;
use crate::upstream::origination::Alpn;
use crate::upstream::tls::{ClusterTls, UpstreamIo};

/// The connection could not be made (TCP or the TLS handshake): nothing of the request was sent.
#[derive(Debug, thiserror::Error)]
#[error("connect to {address}: {source}")]
pub struct ConnectError {
    pub address: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// How to reach one endpoint.
#[derive(Clone)]
pub struct Dial {
    pub address: SocketAddr,
    pub timeout: Duration,
    pub keepalive: Option<Keepalive>,
    pub tls: Option<Arc<ClusterTls>>,
}

impl Dial {
    /// A new connection to the endpoint; `alpn` is what TLS origination offers.
    pub async fn connect(&self, alpn: Alpn) -> Result<UpstreamIo, ConnectError> {
        self.open(alpn).await.map_err(|source| ConnectError { address: self.address, source })
    }

    async fn open(&self, alpn: Alpn) -> io::Result<UpstreamIo> {
        let address = self.address;
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(address))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))??;
        stream.set_nodelay(true)?;
        if let Some(keepalive) = self.keepalive {
            socket2::SockRef::from(&stream).set_tcp_keepalive(&tcp_keepalive(keepalive))?;
        }
        match &self.tls {
            Some(tls) => tls.secure(stream, self.timeout, alpn).await,
            None => Ok(UpstreamIo::Plain(stream)),
        }
    }
}

/// The socket option for a cluster's keepalive settings (unset parts: the system's).
fn tcp_keepalive(k: Keepalive) -> socket2::TcpKeepalive {
    let mut keepalive = socket2::TcpKeepalive::new();
    if let Some(time) = k.time {
        keepalive = keepalive.with_time(time);
    }
    if let Some(interval) = k.interval {
        keepalive = keepalive.with_interval(interval);
    }
    if let Some(probes) = k.probes {
        keepalive = keepalive.with_retries(probes);
    }
    keepalive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upstream_connections_get_the_clusters_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let keepalive =
            Keepalive { probes: Some(4), time: Some(Duration::from_secs(10)), interval: Some(Duration::from_secs(3)) };
        let dial = Dial {
            address: listener.local_addr().unwrap(),
            timeout: Duration::from_secs(1),
            keepalive: Some(keepalive),
            tls: None,
        };
        let io = dial.connect(Alpn::Http1).await.unwrap();
        let socket = socket2::SockRef::from(io.tcp());
        assert!(socket.keepalive().unwrap());
        assert!(io.tcp().nodelay().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(10));
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 4);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error_naming_the_address() {
        // Bound then closed: nothing listens there.
        let address = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let dial = Dial { address, timeout: Duration::from_secs(1), keepalive: None, tls: None };
        let err = dial.connect(Alpn::Http1).await.err().unwrap();
        assert_eq!(err.address, address);
        assert_eq!(err.source.kind(), io::ErrorKind::ConnectionRefused);
        assert!(err.to_string().starts_with(&format!("connect to {address}")));
    }
}
