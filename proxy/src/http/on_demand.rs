//! On-demand discovery on the request path. A proxy holds config for its own namespace and what it has already
//! called; a request for any other host first asks the control plane for that host's virtual host (VHDS over
//! the delta ADS stream) and waits, a bounded time, until the answer and the clusters it routes to have arrived.
//! Later requests find it in the config. A host the control plane does not know is remembered as such, and goes
//! where an unknown host always goes (passthrough to the original destination, or 404).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::dataplane::Runtime;

/// How long a request waits for the control plane's answer: Envoy's default for on-demand discovery.
pub const ON_DEMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long traffic sent to an address waits for the control plane's answer about it: shorter than a request
/// waits for a host, since a slow control plane would otherwise hold up every new connection to a new address;
/// past it the traffic goes as it was sent and a later connection finds the answer.
pub const ADDRESS_TIMEOUT: Duration = Duration::from_secs(1);

/// Names waiting to be asked for (the xDS client asks for each once).
pub const PENDING_ASKS: usize = 256;

/// The request path's handle on on-demand discovery.
#[derive(Debug, Clone)]
pub struct OnDemand {
    asks: mpsc::Sender<String>,
    timeout: Duration,
}

/// How a wait for an on-demand answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The answer (a virtual host, or "no such host") is in the config.
    Answered,
    /// No answer in time: the request goes on as for an unknown host.
    TimedOut,
    /// Not asked: the xDS client is gone.
    NotAsked,
}

impl Settled {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::TimedOut => "timeout",
            Self::NotAsked => "not_asked",
        }
    }
}

impl OnDemand {
    /// A handle whose questions arrive on the returned receiver (read by the xDS client).
    pub fn new(timeout: Duration) -> (Self, mpsc::Receiver<String>) {
        let (asks, questions) = mpsc::channel(PENDING_ASKS);
        (Self { asks, timeout }, questions)
    }

    /// Asks for the on-demand virtual host `name` and waits until the runtime can route it, or the timeout.
    pub async fn settle(&self, name: &str, runtime: &watch::Receiver<Arc<Runtime>>) -> Settled {
        let mut runtime = runtime.clone();
        // The runtime's balancers are built from its config: a settled config means routable clusters.
        let settled = |r: &Arc<Runtime>| r.config.on_demand_settled(name);
        if settled(&runtime.borrow_and_update()) {
            return Settled::Answered;
        }
        // A full queue means many requests asked at once, likely for this very host: wait for the answer too.
        if let Err(mpsc::error::TrySendError::Closed(_)) = self.asks.try_send(name.to_string()) {
            return Settled::NotAsked;
        }
        match tokio::time::timeout(self.timeout, runtime.wait_for(settled)).await {
            Ok(Ok(_)) => Settled::Answered,
            _ => Settled::TimedOut,
        }
    }
}
