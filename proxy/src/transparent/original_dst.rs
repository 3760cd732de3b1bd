//! The destination a captured connection was meant for, as the kernel recorded it before iptables redirected it
//! (`SO_ORIGINAL_DST`, read through socket2's safe API).

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::TcpStream;

/// Why a captured connection is refused instead of forwarded.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No NAT record: the connection was not redirected by capture rules.
    #[error("no original destination (was it redirected by weft-proxy init rules?): {0}")]
    NoOriginalDst(io::Error),
    /// The connection was made straight to the capture listener; forwarding it would reach the listener again.
    #[error("connection made directly to the capture listener {0} (forwarding would loop)")]
    Loop(SocketAddr),
}

impl Refusal {
    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoOriginalDst(_) => "no_original_dst",
            Self::Loop(_) => "loop",
        }
    }
}

/// The original destination of `stream`, accepted on a capture listener.
pub fn original_dst(stream: &TcpStream) -> Result<SocketAddr, Refusal> {
    let local = stream.local_addr().map_err(Refusal::NoOriginalDst)?;
    let socket = SockRef::from(stream);
    let recorded = if local.is_ipv4() { socket.original_dst_v4() } else { socket.original_dst_v6() };
    let original = recorded
        .map_err(Refusal::NoOriginalDst)?
        .as_socket()
        .ok_or_else(|| Refusal::NoOriginalDst(io::Error::other("not an IP address")))?;
    check_not_loop(original, local)
}

/// A connection that was not redirected has its own local address as "original" destination: the client dialled
/// the capture port itself (directly, or the proxy's own forwarded connection came back). Refuse it.
pub fn check_not_loop(original: SocketAddr, local: SocketAddr) -> Result<SocketAddr, Refusal> {
    if original == local { Err(Refusal::Loop(local)) } else { Ok(original) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_equal_to_the_listener_is_a_loop() {
        let listener: SocketAddr = "10.0.0.5:15001".parse().unwrap();
        assert!(matches!(check_not_loop(listener, listener), Err(Refusal::Loop(_))));
        let redirected: SocketAddr = "127.0.0.1:15001".parse().unwrap();
        let remote: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        assert_eq!(check_not_loop(remote, redirected).unwrap(), remote);
    }

    #[tokio::test]
    async fn a_connection_without_nat_has_no_usable_original_destination() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        // Without conntrack the lookup fails; with conntrack but no NAT it gives the listener's own address.
        assert!(original_dst(&accepted).is_err());
    }
}
