//! Load balancing over a cluster's endpoints. The default is tower's power-of-two-choices over peak-EWMA latency
//! (`p2c::Balance` + `PeakEwma`); LEAST_REQUEST is P2C over in-flight requests, RANDOM is P2C with a constant
//! load (so a uniform pick), ROUND_ROBIN is [`round_robin::RoundRobin`]. Endpoint changes from EDS are fed to the
//! balancer as discovery changes, so latency estimates and pooled connections survive updates.

mod endpoint;
mod round_robin;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, Constant, Load, PeakEwma, PendingRequests};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};
use weft_xds::lb::LbAlgorithm;

pub use endpoint::Endpoint;
use round_robin::RoundRobin;

use crate::BoxError;
use crate::config::EndpointConfig;
use crate::http::Body;

/// Latency assumed for an endpoint that has not answered yet.
const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How quickly old latency observations fade.
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// Requests waiting for the balancer's worker, per cluster.
const BUFFER_CAPACITY: usize = 1024;

/// The cluster has no healthy endpoint.
#[derive(Debug, thiserror::Error)]
#[error("no healthy upstream")]
pub struct NoEndpoints;

type Upstream = BoxCloneSyncService<Request<Body>, Response<Incoming>, BoxError>;
type Update = Box<dyn Fn(Change<SocketAddr, Endpoint>) + Send + Sync>;

/// A cluster's balancer: send requests with [`ClusterBalancer::call`], update endpoints with
/// [`ClusterBalancer::set_endpoints`].
pub struct ClusterBalancer {
    algorithm: LbAlgorithm,
    connect_timeout: Duration,
    service: Upstream,
    update: Update,
    endpoints: Mutex<BTreeSet<SocketAddr>>,
    healthy: AtomicUsize,
}

impl ClusterBalancer {
    /// Must run inside a tokio runtime (P2C balancers run on a worker task).
    pub fn new(algorithm: LbAlgorithm, connect_timeout: Duration) -> Self {
        let (service, update) = match algorithm {
            LbAlgorithm::PeakEwma => {
                p2c(|e| PeakEwma::new(e, DEFAULT_RTT, EWMA_DECAY.as_nanos() as f64, CompleteOnResponse::default()))
            }
            LbAlgorithm::LeastRequest => p2c(|e| PendingRequests::new(e, CompleteOnResponse::default())),
            LbAlgorithm::Random => p2c(|e| Constant::new(e, 0u8)),
            LbAlgorithm::RoundRobin => {
                let list = RoundRobin::default();
                let updater = list.clone();
                let update: Update = Box::new(move |change| match change {
                    Change::Insert(_, endpoint) => updater.insert(endpoint),
                    Change::Remove(address) => updater.remove(address),
                });
                (BoxCloneSyncService::new(list), update)
            }
        };
        Self { algorithm, connect_timeout, service, update, endpoints: Mutex::default(), healthy: AtomicUsize::new(0) }
    }

    /// Whether this balancer can serve a cluster with these settings (otherwise a new one is built).
    pub fn fits(&self, algorithm: LbAlgorithm, connect_timeout: Duration) -> bool {
        self.algorithm == algorithm && self.connect_timeout == connect_timeout
    }

    /// Makes the healthy endpoints of `endpoints` the balancer's set, adding and removing only what changed.
    pub fn set_endpoints(&self, endpoints: &[EndpointConfig]) {
        let wanted: BTreeSet<SocketAddr> = endpoints.iter().filter(|e| e.healthy).map(|e| e.address).collect();
        let Ok(mut current) = self.endpoints.lock() else { return };
        for gone in current.difference(&wanted) {
            (self.update)(Change::Remove(*gone));
        }
        for new in wanted.difference(&current) {
            (self.update)(Change::Insert(*new, Endpoint::new(*new, self.connect_timeout)));
        }
        self.healthy.store(wanted.len(), Ordering::Relaxed);
        *current = wanted;
    }

    pub fn healthy_endpoints(&self) -> usize {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sends a request to one endpoint chosen by the balancer. The future owns what it needs, so callers can
    /// drop their config snapshot while the request is in flight.
    pub fn call(&self, request: Request<Body>) -> ResponseFuture {
        // A P2C balancer with no endpoints waits for one to appear; answer at once instead. (An endpoint set
        // emptied between this check and the call waits for the route timeout.)
        if self.healthy_endpoints() == 0 {
            return Box::pin(std::future::ready(Err(NoEndpoints.into())));
        }
        Box::pin(self.service.clone().oneshot(request))
    }
}

/// The response of [`ClusterBalancer::call`].
pub type ResponseFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Incoming>, BoxError>> + Send + 'static>>;

/// A P2C balancer over endpoints wrapped by `measure` (which decides what "load" means).
fn p2c<S, F>(measure: F) -> (Upstream, Update)
where
    F: Fn(Endpoint) -> S + Send + Sync + 'static,
    S: Service<Request<Body>, Response = Response<Incoming>> + Load + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    <S as Load>::Metric: std::fmt::Debug,
{
    let (tx, rx) = mpsc::unbounded_channel::<Result<Change<SocketAddr, S>, Infallible>>();
    let balance = Balance::new(UnboundedReceiverStream::new(rx));
    let service = BoxCloneSyncService::new(Buffer::new(balance, BUFFER_CAPACITY));
    let update: Update = Box::new(move |change| {
        let change = match change {
            Change::Insert(address, endpoint) => Change::Insert(address, measure(endpoint)),
            Change::Remove(address) => Change::Remove(address),
        };
        // The receiver lives as long as the balancer's worker, which lives as long as `service`.
        let _ = tx.send(Ok(change));
    });
    (service, update)
}
