//! A routed request's path to its cluster, as a stack of tower layers configured from the route's plain config:
//!
//! ```text
//! cors (preflights) -> fault (delay, abort) -> headers (route's and destination's set/add/remove) -> rewrite (path, authority)
//!   -> mirror (fire-and-forget copies) -> retry (policy, budget, backoff, per-try timeout)
//!   -> sticky (the hash cookie a client lacks) -> attempt (balancer)
//! ```
//!
//! Each layer is present only when its route asks for it, so a plain route pays for none of them. The layers
//! borrow the config they were built from; the stack lives for one request. Redirects and direct responses are
//! answered without a stack ([`direct`]).

mod cors;
pub mod direct;
mod fault;
pub mod grpc;
mod hash;
mod headers;
mod mirror;
pub mod replay;
mod retry;
mod rewrite;
mod stack;
mod sticky;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};

pub use headers::apply as apply_headers;
pub use retry::PerTryTimeout;
use stack::Step;
pub use stack::{Next, RouteStep};

use super::Body;
use crate::BoxError;
use crate::config::policy::HashPolicy;
use crate::config::{RouteAction, RouteEntry, WeightedTarget};
use crate::dataplane::Runtime;
use crate::metrics::Metrics;
use crate::upstream::ClusterBalancer;

/// What the stack answers: a response head (upstream's or the proxy's own), or why there is none.
pub type RouteFuture<'a> = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send + 'a>>;

/// Where a request goes, once routed: the route, its action, the weighted target picked and that cluster; and
/// where it comes from.
pub struct Routed<'a> {
    pub route: &'a RouteEntry,
    pub action: &'a RouteAction,
    pub target: &'a WeightedTarget,
    pub balancer: &'a ClusterBalancer,
    pub addresses: Addresses,
}

/// The client a request came from and, when its connection was captured, where the client dialled: what hashing
/// on the client (`useSourceIp`, a generated cookie) and original-destination clusters need, on every attempt and
/// mirror. Passed along with the request rather than in its extensions, which cost allocations on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub client: SocketAddr,
    pub original: Option<SocketAddr>,
}

/// Sends `request` (prepared for upstream: authority set, hop-by-hop headers gone) along the route's stack.
pub fn send<'a>(
    routed: Routed<'a>,
    runtime: &'a Runtime,
    metrics: &'a Arc<Metrics>,
    request: Request<Body>,
) -> RouteFuture<'a> {
    Box::pin(async move {
        // Lives as long as the request, so the layers borrow it: nothing is allocated to share it.
        let tried = Tried::default();
        through_stack(routed, (runtime, metrics), &tried, request).await
    })
}

/// Sends `request` through the route's layers around one attempt. Boxed here (a `dyn` future), so the future
/// `send` awaits it in is `Send` without the compiler having to prove that for every layer's future.
fn through_stack<'a>(
    routed: Routed<'a>,
    (runtime, metrics): (&'a Runtime, &'a Arc<Metrics>),
    tried: &'a Tried,
    request: Request<Body>,
) -> RouteFuture<'a> {
    let Routed { route, action, target, balancer, addresses } = routed;
    let cluster = target.cluster.as_str();
    let avoids = action.retry.as_ref().is_some_and(|policy| policy.other_hosts);
    let attempt = Attempt { balancer, hash_policy: &action.hash_policy, tried: avoids.then_some(tried), addresses };
    let stack = ServiceBuilder::new()
        .option_layer(route.cors.as_ref().map(cors::CorsLayer::new).map(Step::new))
        .option_layer(route.fault.as_ref().map(|f| fault::FaultLayer::new(f, cluster, metrics)).map(Step::new))
        .option_layer(headers::HeadersLayer::new(route, target).map(Step::new))
        .option_layer(rewrite::RewriteLayer::new(&action.rewrite, &route.path).map(Step::new))
        .option_layer(
            (!action.mirrors.is_empty())
                .then(|| Step::new(mirror::MirrorLayer::new(&action.mirrors, (runtime, metrics), addresses.original))),
        )
        .option_layer(action.retry.as_ref().map(|p| Step::new(retry::RetryLayer::new(p, balancer, cluster, metrics))))
        .option_layer(sticky::StickyLayer::new(&action.hash_policy, addresses.client).map(Step::new))
        .service(attempt);
    Box::pin(stack.oneshot(request))
}

/// The endpoints already tried for one request, so that a retry can go elsewhere.
#[derive(Default)]
struct Tried(Mutex<Vec<SocketAddr>>);

impl Tried {
    fn addresses(&self) -> Vec<SocketAddr> {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn push(&self, address: SocketAddr) {
        if let Ok(mut tried) = self.0.lock() {
            tried.push(address);
        }
    }
}

/// One attempt: an endpoint of the cluster chosen by its balancer (avoiding those `tried`, when the retry policy
/// says so; by the request's hash key under consistent hashing).
#[derive(Clone, Copy)]
struct Attempt<'a> {
    balancer: &'a ClusterBalancer,
    hash_policy: &'a [HashPolicy],
    tried: Option<&'a Tried>,
    addresses: Addresses,
}

impl<'a> tower::Service<Request<Body>> for Attempt<'a> {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = RouteFuture<'a>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let avoid = self.tried.map(Tried::addresses).unwrap_or_default();
        let key = hash::key(self.hash_policy, &request, self.addresses.client);
        let (endpoint, response) = match self.balancer.call(request, &avoid, key, self.addresses.original) {
            Ok(call) => call,
            Err(not_sent) => return Box::pin(std::future::ready(Err(not_sent))),
        };
        if let Some(tried) = self.tried {
            tried.push(endpoint);
        }
        Box::pin(async move { Ok(response.await?.map(|body| body.map_err(BoxError::from).boxed())) })
    }
}

/// A copy of a request's method, URI, version and headers with `body` (no extensions).
fn copy_request(head: &http::request::Parts, body: Body) -> Request<Body> {
    let mut request = Request::new(body);
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = head.uri.clone();
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers.clone();
    request
}
