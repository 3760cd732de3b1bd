//! Loopback addresses and ports for test processes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// A port that was free a moment ago on `ip` (the OS picks it; there is a small window for someone else to take
/// it before our process binds it, acceptable on a test machine).
pub fn free_port(ip: IpAddr) -> std::io::Result<SocketAddr> {
    TcpListener::bind(SocketAddr::new(ip, 0))?.local_addr()
}

pub fn localhost() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Waits until something accepts TCP connections on `address`.
pub async fn wait_for_port(address: SocketAddr, deadline: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < until, "nothing listening on {address} after {deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
