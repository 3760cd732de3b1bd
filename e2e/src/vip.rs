//! A Service VIP stand-in for tests: accepts TCP on one address and forwards each connection to the first backend
//! that accepts it, as kube-proxy sends a reconnecting proxy to a surviving operator replica.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Vip {
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl Vip {
    /// Listens on a free loopback port and forwards to `backends`, trying them in order.
    pub async fn start(backends: Vec<SocketAddr>) -> std::io::Result<Self> {
        let listener = TcpListener::bind((crate::net::localhost(), 0)).await?;
        let address = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let backends = backends.clone();
                tokio::spawn(async move {
                    for backend in backends {
                        if let Ok(mut upstream) = TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            return;
                        }
                    }
                });
            }
        });
        Ok(Self { address, task })
    }
}

impl Drop for Vip {
    fn drop(&mut self) {
        self.task.abort();
    }
}
