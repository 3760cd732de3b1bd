//! Everything per upstream cluster: load balancing over its endpoints ([`members`]: power of two choices over peak-EWMA latency by default,
//! LEAST_REQUEST, RANDOM, ROUND_ROBIN), and the cluster's retry budget ([`budget`]). Endpoint changes from EDS
//! replace the member list; members that stay keep their connection pools and latency estimates.

mod budget;
mod endpoint;
mod members;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::{FutureExt, TryFutureExt};
use http::{Request, Response};
use hyper::body::Incoming;
use tower::ServiceExt;
use weft_xds::lb::LbAlgorithm;

pub use budget::{RetryBudget, RetryPermit};
pub use endpoint::Endpoint;
pub use members::InFlight;
use members::{Member, Members};

use crate::BoxError;
use crate::config::EndpointConfig;
use crate::http::Body;

/// The cluster has no healthy endpoint.
#[derive(Debug, thiserror::Error)]
#[error("no healthy upstream")]
pub struct NoEndpoints;

/// The response of one request to one endpoint.
pub type ResponseFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Incoming>, BoxError>> + Send + 'static>>;

/// A cluster's balancer: send requests with [`ClusterBalancer::call`], update endpoints with
/// [`ClusterBalancer::set_endpoints`].
pub struct ClusterBalancer {
    algorithm: LbAlgorithm,
    connect_timeout: Duration,
    members: Members,
    /// The healthy endpoints by address, to keep members (pools, estimates) across updates.
    by_address: Mutex<BTreeMap<SocketAddr, Arc<Member>>>,
    budget: RetryBudget,
}

impl ClusterBalancer {
    pub fn new(algorithm: LbAlgorithm, connect_timeout: Duration) -> Self {
        Self {
            algorithm,
            connect_timeout,
            members: Members::default(),
            by_address: Mutex::default(),
            budget: RetryBudget::default(),
        }
    }

    /// Whether this balancer can serve a cluster with these settings (otherwise a new one is built).
    pub fn fits(&self, algorithm: LbAlgorithm, connect_timeout: Duration) -> bool {
        self.algorithm == algorithm && self.connect_timeout == connect_timeout
    }

    /// Makes the healthy endpoints of `endpoints` the balancer's set, keeping the members that stay.
    pub fn set_endpoints(&self, endpoints: &[EndpointConfig]) {
        let Ok(mut current) = self.by_address.lock() else { return };
        let wanted: BTreeMap<SocketAddr, Arc<Member>> = endpoints
            .iter()
            .filter(|e| e.healthy)
            .map(|e| {
                let member = current
                    .get(&e.address)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Member::new(Endpoint::new(e.address, self.connect_timeout))));
                (e.address, member)
            })
            .collect();
        self.members.replace(wanted.values().cloned().collect());
        *current = wanted;
    }

    pub fn healthy_endpoints(&self) -> usize {
        self.members.snapshot().len()
    }

    /// The cluster's retry budget, shared by every route that sends to it.
    pub fn retry_budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// An endpoint for a TCP connection, counted as in flight while the lease lives.
    pub fn pick(&self) -> Option<(SocketAddr, InFlight)> {
        let (member, lease) = self.members.pick(self.algorithm, &[], rand::random())?;
        Some((member.address(), lease))
    }

    /// Sends a request to one endpoint chosen by the balancer, not one of `avoid` while others are left. Returns
    /// the endpoint and the response; the future owns what it needs, so callers can drop their config snapshot.
    pub fn call(
        &self,
        request: Request<Body>,
        avoid: &[SocketAddr],
    ) -> Result<(SocketAddr, ResponseFuture), NoEndpoints> {
        let (member, in_flight) = self.members.pick(self.algorithm, avoid, rand::random()).ok_or(NoEndpoints)?;
        let active = self.budget.request_started();
        // A combinator, not an async block: rustc cannot yet prove such a block `Send` for this body type.
        let future = member.endpoint.clone().oneshot(request).map_err(BoxError::from).map(move |result| {
            if result.is_ok() {
                in_flight.finish();
            }
            drop(active);
            result
        });
        Ok((member.address(), Box::pin(future)))
    }
}
