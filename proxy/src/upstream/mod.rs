//! Everything per upstream cluster: balancing over its endpoints ([`members`]: power of two choices over
//! peak-EWMA latency by default, LEAST_REQUEST, RANDOM, ROUND_ROBIN), its limits (Envoy's circuit breakers: over
//! them, [`Overflow`]), its retry budget ([`budget`]) and outlier detection ([`outlier`], [`health`]). Endpoint
//! changes from EDS replace the member list; members that stay keep their pools, estimates and outlier state.
//! Endpoints in priority levels (locality failover) are picked level by level, and in locality-weighted clusters
//! locality by locality ([`priority`]).

mod budget;
mod by_address;
mod endpoint;
mod hashing;
mod health;
mod maglev;
mod members;
mod origination;
mod outlier;
mod pool;
mod priority;
mod reuse;
mod ring;
mod tls;
mod warmup;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response, Version};
use weft_xds::lb::LbAlgorithm;

pub use budget::{RetryBudget, RetryPermit};
pub use by_address::AddressPools;
pub use endpoint::Endpoint;
pub use members::InFlight;
use members::{Member, Members, Pick, Within};
pub use ring::hash_of;

use crate::BoxError;
use crate::config::cluster::{Connections, Limits, SlowStart};
use crate::config::{ClusterConfig, EndpointConfig};
use crate::http::Body;
use crate::identity::CredentialsRx;
use hashing::Hashing;
use health::Health;
pub use origination::Alpn;
use outlier::Outcome;
pub use pool::{ConnectError, UpstreamBody, UpstreamPeer};
pub use tls::{ClusterTls, UpstreamIo};

/// What each request reads of the cluster's config: its limits, slow start, locality weighting.
#[derive(Debug, Clone, Copy, Default)]
struct Settings {
    limits: Limits,
    slow_start: Option<SlowStart>,
    locality_weighted: bool,
}

/// One locality (group) of the cluster's endpoint assignment.
#[derive(Debug, Clone, Copy, Default)]
struct Locality {
    priority: u32,
    weight: u32,
    /// Its endpoints, healthy or not.
    total: usize,
}

/// The cluster has no healthy endpoint.
#[derive(Debug, thiserror::Error)]
#[error("no healthy upstream")]
pub struct NoEndpoints;

/// The response of one request to one endpoint.
pub type ResponseFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<UpstreamBody>, BoxError>> + Send + 'static>>;

/// The cluster's limits were reached: answered `503` at once (Envoy's overflow).
#[derive(Debug, thiserror::Error)]
#[error("upstream overflow")]
pub struct Overflow;

/// A cluster's balancer: send requests with [`ClusterBalancer::call`], update endpoints with
/// [`ClusterBalancer::set_endpoints`] and policies with [`ClusterBalancer::configure`].
pub struct ClusterBalancer {
    algorithm: LbAlgorithm,
    connect_timeout: Duration,
    connections: Connections,
    hashing: Option<Hashing>,
    members: Members,
    /// The healthy endpoints by address, to keep members (pools, estimates) across updates.
    by_address: Mutex<BTreeMap<SocketAddr, Arc<Member>>>,
    budget: RetryBudget,
    /// Read by every request, changed by config: one lock for both.
    settings: RwLock<Settings>,
    health: Arc<Health>,
    /// The assignment's localities: priority, weight and endpoint count (healthy or not) of each.
    localities: RwLock<Arc<Vec<Locality>>>,
    /// Mutual TLS to the endpoints that run a sidecar.
    tls: Arc<ClusterTls>,
    /// An original-destination cluster's pools, by the address each request's client dialled.
    original: Option<AddressPools>,
}

impl ClusterBalancer {
    /// `credentials`: the proxy's workload certificate, for mutual TLS; `None`: plaintext only.
    pub fn new(cluster: &ClusterConfig, credentials: Option<CredentialsRx>) -> Self {
        let tls = Arc::new(ClusterTls::new(credentials));
        let original = cluster
            .original_destination
            .then(|| AddressPools::new(cluster.connect_timeout, cluster.connections, Some(tls.clone())));
        let balancer = Self {
            algorithm: cluster.lb,
            connect_timeout: cluster.connect_timeout,
            connections: cluster.connections,
            hashing: Hashing::of(cluster.lb, cluster.hash_size),
            members: Members::default(),
            by_address: Mutex::default(),
            budget: RetryBudget::default(),
            settings: RwLock::default(),
            health: Arc::default(),
            localities: RwLock::default(),
            tls,
            original,
        };
        balancer.configure(cluster);
        balancer
    }

    /// Whether this balancer can serve `cluster` (otherwise a new one is built): the same balancing and
    /// connection settings. Limits and policies are taken over by [`Self::configure`].
    pub fn fits(&self, cluster: &ClusterConfig) -> bool {
        self.algorithm == cluster.lb
            && self.connect_timeout == cluster.connect_timeout
            && self.connections == cluster.connections
            && self.hashing == Hashing::of(cluster.lb, cluster.hash_size)
            && self.original.is_some() == cluster.original_destination
    }

    /// Takes the cluster's limits, retry budget and outlier detection, keeping endpoints and their state.
    pub fn configure(&self, cluster: &ClusterConfig) {
        if let Ok(mut settings) = self.settings.write() {
            *settings = Settings {
                limits: cluster.limits,
                slow_start: cluster.slow_start,
                locality_weighted: cluster.locality_weighted,
            };
        }
        self.budget.configure(cluster.retry_budget, cluster.limits.max_retries);
        self.health.configure(cluster.outlier, cluster.panic_threshold);
        self.tls.configure(cluster.mtls.as_ref(), cluster.origination.as_ref());
    }

    /// Makes the healthy endpoints of `endpoints` the balancer's set, keeping the members that stay.
    pub fn set_endpoints(&self, endpoints: &[EndpointConfig]) {
        let Ok(mut current) = self.by_address.lock() else { return };
        let every_endpoint = self.tls.covers_every_endpoint();
        let wanted: BTreeMap<SocketAddr, Arc<Member>> = endpoints
            .iter()
            .filter(|e| e.healthy)
            .map(|e| {
                // An endpoint whose pod gained or lost its sidecar needs new connections.
                let secured = e.mtls || every_endpoint;
                let member =
                    current.get(&e.address).filter(|m| m.endpoint.secured() == secured).cloned().unwrap_or_else(|| {
                        let tls = secured.then(|| self.tls.clone());
                        Arc::new(Member::new(Endpoint::new(e.address, self.connect_timeout, self.connections, tls)))
                    });
                (e.address, member)
            })
            .collect();
        for endpoint in endpoints.iter().filter(|e| e.healthy) {
            if let Some(member) = wanted.get(&endpoint.address) {
                member.place(endpoint.priority, endpoint.locality);
            }
        }
        let count = endpoints.iter().map(|e| e.locality as usize + 1).max().unwrap_or(0);
        let mut localities = vec![Locality::default(); count];
        for endpoint in endpoints {
            let locality = &mut localities[endpoint.locality as usize];
            (locality.priority, locality.weight) = (endpoint.priority, endpoint.locality_weight);
            locality.total += 1;
        }
        if let Ok(mut current) = self.localities.write() {
            *current = Arc::new(localities);
        }
        self.members.replace(wanted.values().cloned().collect(), self.hashing);
        self.health.retain(|address| wanted.contains_key(address));
        *current = wanted;
    }

    /// The endpoints a pick goes to (`None`: all; with priority levels, one level; with locality weights, one
    /// locality) and the ejected endpoints it leaves out: none in panic (see [`priority`]).
    fn narrowing(&self, roll: u64) -> (Option<Within>, Vec<SocketAddr>) {
        let localities = self.localities.read().map(|l| l.clone()).unwrap_or_default();
        let weighted = self.settings().locality_weighted;
        let levels = localities.iter().map(|l| l.priority as usize + 1).max().unwrap_or(0);
        if levels <= 1 && !weighted {
            return (None, self.health.ejected(self.healthy_endpoints()));
        }
        let ejected = self.health.ejected_now();
        let mut healthy = vec![0usize; localities.len()];
        for member in self.members.snapshot().iter().filter(|m| !ejected.contains(&m.address())) {
            if let Some(count) = healthy.get_mut(member.locality() as usize) {
                *count += 1;
            }
        }
        let mut level_health = vec![priority::Level::default(); levels];
        for (locality, healthy) in localities.iter().zip(&healthy) {
            let level = &mut level_health[locality.priority as usize];
            (level.total, level.healthy) = (level.total + locality.total, level.healthy + healthy);
        }
        let choice = priority::choose(&level_health, self.health.panic_threshold(), roll);
        let leave_out = if choice.panic { Vec::new() } else { ejected };
        let level = u32::try_from(choice.level).unwrap_or_default();
        if !weighted {
            return (Some(Within::Level(level)), leave_out);
        }
        let in_level: Vec<(usize, (u32, priority::Level))> = (localities.iter().zip(&healthy).enumerate())
            .filter(|(_, (l, _))| l.priority == level)
            .map(|(i, (l, healthy))| (i, (l.weight, priority::Level { total: l.total, healthy: *healthy })))
            .collect();
        let weights: Vec<(u32, priority::Level)> = in_level.iter().map(|(_, w)| *w).collect();
        // A second uniform number from the roll's other bits.
        let uniform = (roll.rotate_left(32) >> 11) as f64 / (1u64 << 53) as f64;
        let within = match priority::choose_locality(&weights, choice.panic, uniform) {
            Some(chosen) => Within::Locality(u32::try_from(in_level[chosen].0).unwrap_or_default()),
            None => Within::Level(level),
        };
        (Some(within), leave_out)
    }

    pub fn healthy_endpoints(&self) -> usize {
        self.members.snapshot().len()
    }

    /// The cluster's retry budget, shared by every route that sends to it.
    pub fn retry_budget(&self) -> &RetryBudget {
        &self.budget
    }

    fn settings(&self) -> Settings {
        // A writer cannot panic while holding it; read the value even so.
        self.settings.read().map_or_else(|poisoned| *poisoned.into_inner(), |s| *s)
    }

    /// An endpoint for a TCP connection to `original` (what its client dialled), counted as in flight while the
    /// lease lives, with the cluster's mutual TLS when the endpoint runs a sidecar. An original-destination
    /// cluster gives `original` itself.
    pub fn pick(&self, original: SocketAddr) -> Option<(SocketAddr, Option<InFlight>, Option<Arc<ClusterTls>>)> {
        if self.original.is_some() {
            return Some((original, None, self.tls.covers_every_endpoint().then(|| self.tls.clone())));
        }
        let (within, ejected) = self.narrowing(rand::random());
        let pick =
            Pick { avoid: &ejected, roll: rand::random(), key: None, warmup: self.settings().slow_start, within };
        let (member, lease) = self.members.pick(self.algorithm, pick)?;
        let tls = member.endpoint.secured().then(|| self.tls.clone());
        Some((member.address(), Some(lease), tls))
    }

    /// The endpoint at `address`, when it is one of the cluster's, for a TCP connection its client dialled it by
    /// (a pod IP, as clients of a headless Service do): counted in flight while the lease lives, with the
    /// cluster's mutual TLS when it runs a sidecar.
    pub fn endpoint_at(&self, address: SocketAddr) -> Option<(SocketAddr, Option<InFlight>, Option<Arc<ClusterTls>>)> {
        let member = self.members.at(address)?;
        let tls = member.endpoint.secured().then(|| self.tls.clone());
        Some((address, Some(InFlight::start(member)), tls))
    }

    /// Whether the endpoint at `address` is one of the cluster's (healthy ones).
    pub fn has_endpoint(&self, address: SocketAddr) -> bool {
        self.members.at(address).is_some()
    }

    /// [`Overflow`] when the cluster is at its limit of requests in flight for `request`'s protocol.
    fn admit(&self, request: &Request<Body>, settings: &Settings) -> Result<(), BoxError> {
        let limit = settings.limits.max_in_flight(request.version() == Version::HTTP_2);
        match self.budget.active() as u64 >= limit {
            true => Err(Overflow.into()),
            false => Ok(()),
        }
    }

    /// Sends `request` to the endpoint at `address`, one of the cluster's (a client dialled a pod by its address):
    /// over its pool, in mutual TLS when it runs a sidecar, within the cluster's limits ([`Overflow`] over them),
    /// counted in flight. [`NoEndpoints`] when the cluster has no endpoint there (any more).
    pub fn send_to(&self, address: SocketAddr, request: Request<Body>) -> Result<ResponseFuture, BoxError> {
        self.admit(&request, &self.settings())?;
        let member = self.members.at(address).ok_or(NoEndpoints)?;
        let in_flight = InFlight::start(member.clone());
        let active = self.budget.request_started();
        let future = member.endpoint.send(request).map(move |result| {
            if result.is_ok() {
                in_flight.finish();
            }
            drop(active);
            result
        });
        Ok(Box::pin(future))
    }

    /// Sends a request to one endpoint chosen by the balancer: not an ejected one, nor one of `avoid` while
    /// others are left. Returns the endpoint and the response; the future owns what it needs, so callers can drop
    /// their config snapshot. Over the cluster's limits, [`Overflow`] at once.
    /// With consistent hashing, `key` (the request's hash) picks the endpoint.
    pub fn call(
        &self,
        request: Request<Body>,
        avoid: &[SocketAddr],
        key: Option<u64>,
        original: Option<SocketAddr>,
    ) -> Result<(SocketAddr, ResponseFuture), BoxError> {
        let settings = self.settings();
        self.admit(&request, &settings)?;
        let slow_start = settings.slow_start;
        if let Some(pools) = &self.original {
            let address = original.ok_or(NoEndpoints)?;
            return Ok(original_destination(pools, (address, request), self.budget.request_started()));
        }
        let total = self.healthy_endpoints();
        let (within, mut leave_out) = self.narrowing(rand::random());
        leave_out.extend_from_slice(avoid);
        let pick = Pick { avoid: &leave_out, roll: rand::random(), key, warmup: slow_start, within };
        let (member, in_flight) = self.members.pick(self.algorithm, pick).ok_or(NoEndpoints)?;
        let active = self.budget.request_started();
        let (address, health) = (member.address(), self.health.clone());
        let watching = health.is_watching();
        // A combinator, not an async block: rustc cannot yet prove such a block `Send` for this body type.
        let future = member.endpoint.send(request).map(move |result| {
            if watching {
                health.record(address, outcome(&result), total);
            }
            if result.is_ok() {
                in_flight.finish();
            }
            drop(active);
            result
        });
        Ok((address, Box::pin(future)))
    }
}

/// Sends a request of an original-destination cluster to `address`, where its client dialled.
fn original_destination(
    pools: &AddressPools,
    (address, request): (SocketAddr, Request<Body>),
    active: impl Send + 'static,
) -> (SocketAddr, ResponseFuture) {
    let future = pools.endpoint(address).send(request).map(move |result| {
        drop(active);
        result
    });
    (address, Box::pin(future))
}

/// How a request ended, for outlier detection.
fn outcome(result: &Result<Response<UpstreamBody>, BoxError>) -> Outcome {
    match result {
        Ok(response) if response.status().is_server_error() => Outcome::ServerError(response.status().as_u16()),
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::LocalOriginFailure,
    }
}
