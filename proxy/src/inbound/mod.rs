//! The inbound side: connections from other workloads to this pod's application. With `--transparent` they
//! arrive on the capture listener (:15006) and go on to their original destination; in explicit mode they
//! arrive on an `--inbound LISTEN=APP` port and go on to APP. Either way a sidecar's mutual TLS is terminated
//! here ([`mtls`]) and the application gets plaintext on its own port; plaintext clients are served too
//! (Istio's PERMISSIVE mode, the default). Forwarded as TCP, counted.

pub mod mtls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::counted::Counted;
use crate::drain::Drain;
use crate::identity::CredentialsRx;
use crate::listen::accept;
use crate::metrics::{Direction, Metrics, Mode};
use crate::transparent::{destination_of, tcp};
use mtls::Accepted;

/// What every inbound connection needs.
#[derive(Clone)]
pub struct Inbound {
    pub metrics: Arc<Metrics>,
    /// Connections idle this long are closed.
    pub idle: Option<Duration>,
    /// The workload certificate to terminate mutual TLS with; `None`: plaintext only.
    pub credentials: Option<CredentialsRx>,
}

impl Inbound {
    /// Serves `listener` until the future is dropped. `app`: where connections go; `None`, to their original
    /// destination (captured by iptables).
    pub async fn serve(&self, listener: TcpListener, app: Option<SocketAddr>, drain: &Drain) {
        loop {
            let (stream, peer) = accept(&listener).await;
            let watcher = drain.watcher();
            let this = self.clone();
            tokio::spawn(async move {
                let metrics = &this.metrics;
                let destination = match app {
                    Some(app) => app,
                    None => match destination_of(&stream, peer, Direction::Inbound, metrics) {
                        Some(original) => original,
                        None => return,
                    },
                };
                let credentials = this.credentials.as_ref().and_then(|rx| rx.borrow().clone());
                let flow = tcp::Flow { direction: Direction::Inbound, peer, idle: this.idle, metrics };
                match mtls::accept(stream, credentials.as_deref(), metrics).await {
                    Accepted::Plaintext(stream) => {
                        let io = Counted::new(stream, metrics.connection(Direction::Inbound, Mode::Tcp));
                        tcp::forward(io, destination, flow).await;
                    }
                    Accepted::Mutual { stream, peer_identity } => {
                        tracing::debug!(%peer, peer_identity = %peer_identity, %destination, "inbound mutual TLS");
                        let io = Counted::new(stream, metrics.connection(Direction::Inbound, Mode::Tcp));
                        tcp::forward(io, destination, flow).await;
                    }
                    Accepted::Failed => {}
                }
                drop(watcher);
            });
        }
    }
}
