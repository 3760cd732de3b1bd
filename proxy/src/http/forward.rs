//! One request through the proxy: route, then answer as the route says (redirect, direct response) or pick a
//! weighted target and send the request along the route's layers ([`super::route`]) within the request's
//! deadlines; answer, count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Body as HttpBody;

use super::access_log::{Logged, UpstreamCluster};
use super::authority::{point_at, request_authority};
use super::headers::{port_of, strip_hop_by_hop};
use super::local_reply::LocalReply;
use super::passthrough::PASSTHROUGH_CLUSTER;
use super::route::direct::{redirect, respond};
use super::route::grpc::{is_grpc, request_timeout};
use super::route::{Addresses, PerTryTimeout, Routed};
use super::timeouts::TimeoutKind;
use super::timeouts::stream::{Clocked, Deadlines, StreamClock, response_head};
use super::{Body, Forwarder};
use crate::BoxError;
use crate::config::routes::RequestInfo;
use crate::config::{Action, Labels, Lookup, RouteEntry, RouteTable};
use crate::dataplane::Runtime;
use crate::metrics::{ClusterTally, Direction, RouteEvent};
use crate::telemetry::report;
use crate::upstream::{NoEndpoints, Overflow, ResponseFuture};

/// The cluster label of requests the proxy answered itself before choosing a cluster.
pub(super) const NO_CLUSTER: &str = "none";

/// Where the connection a request came on was headed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Sent to the proxy on purpose: the authority's port (else `default_port`) picks the route table.
    Explicit { default_port: u16 },
    /// Captured on its way to this address: its port picks the route table (as Envoy's listener per port), and a
    /// request no virtual host claims goes on to it (through its Service's cluster when it is a pod of one).
    Original(SocketAddr),
}

/// Which upstream a request goes to.
#[derive(Debug, PartialEq)]
enum Upstream<'a> {
    /// A route of the mesh's config.
    Route(&'a RouteEntry),
    Original(SocketAddr),
    /// None yet: the host is one the proxy holds no config for; ask for this on-demand name, then route again.
    /// `address`: the host is an address, asked for as one ([`address_virtual_host`]).
    Ask {
        name: String,
        address: bool,
    },
}

/// What a downstream request body may be: hyper's, or one wrapped on its way in.
pub trait RequestBody: HttpBody<Data = Bytes, Error: Into<BoxError>> + Send + Sync + Unpin + 'static {}

impl<B> RequestBody for B where B: HttpBody<Data = Bytes, Error: Into<BoxError>> + Send + Sync + Unpin + 'static {}

/// Forwards `request`, from the client at `client`, by the current runtime config.
pub async fn handle<B: RequestBody>(
    request: Request<B>,
    forwarder: &Forwarder,
    (destination, client): (Destination, SocketAddr),
) -> Response<Body> {
    let started = Instant::now();
    let logged = request.extensions().get::<Logged>().is_some();
    let grpc = is_grpc(request.headers());
    let authority = match request_authority(request.version(), request.uri(), request.headers()) {
        Ok(authority) => authority,
        Err(err) => return answered(forwarder, (started, grpc), LocalReply::BadAuthority(err).into_response_for(grpc)),
    };
    let runtime = forwarder.runtime.borrow().clone();
    let settled_runtime;
    let host = authority.as_ref().map(Authority::as_str);
    let decision = match route(&request, host, &runtime, &forwarder.labels, destination, true) {
        Ok(Upstream::Ask { name, address }) => {
            forwarder.ask(&name, address).await;
            settled_runtime = forwarder.runtime.borrow().clone();
            // Not asked twice: routed as an unknown host the second time.
            (route(&request, host, &settled_runtime, &forwarder.labels, destination, false), &settled_runtime)
        }
        other => (other, &runtime),
    };
    let (decision, runtime) = decision;
    let (tally, response) = match decision {
        Err(reply) => (forwarder.tallies.local.clone(), reply.into_response_for(grpc)),
        Ok(Upstream::Ask { .. }) => (forwarder.tallies.local.clone(), LocalReply::NoRoute.into_response_for(grpc)),
        Ok(Upstream::Original(address)) => {
            let authority = authority.or_else(|| Authority::try_from(address.to_string()).ok());
            to_original((request, authority), address, runtime, forwarder, grpc).await
        }
        Ok(Upstream::Route(entry)) => {
            let original = match destination {
                Destination::Original(address) => Some(address),
                Destination::Explicit { .. } => None,
            };
            let addresses = Addresses { client, original };
            follow(entry, (request, addresses), authority, runtime, forwarder, grpc).await
        }
    };
    let mut response = counted(forwarder, (started, grpc), &tally, response);
    if logged && &*tally.name != NO_CLUSTER {
        response.extensions_mut().insert(UpstreamCluster(tally.name.clone()));
    }
    response
}

fn answered(forwarder: &Forwarder, (started, grpc): (Instant, bool), response: Response<Body>) -> Response<Body> {
    counted(forwarder, (started, grpc), &forwarder.tallies.local, response)
}

/// Counts and reports a request to the cluster `tally` stands for, as it is answered.
fn counted(
    forwarder: &Forwarder,
    (started, grpc): (Instant, bool),
    tally: &ClusterTally,
    mut response: Response<Body>,
) -> Response<Body> {
    let took = started.elapsed();
    forwarder.metrics.outbound_request(tally, response.status(), took);
    let golden = &forwarder.metrics.golden;
    report::report_outbound(golden, (&tally.service, tally.in_mesh), &mut response, grpc, took);
    response
}

/// Does what a matched route says: answer a redirect or a direct response, or send the request along the
/// route's stack to a weighted target. Returns the cluster the request is counted under and the response.
async fn follow<B: RequestBody>(
    entry: &RouteEntry,
    (request, addresses): (Request<B>, Addresses),
    authority: Option<Authority>,
    runtime: &Runtime,
    forwarder: &Forwarder,
    grpc: bool,
) -> (Arc<ClusterTally>, Response<Body>) {
    let local = || forwarder.tallies.local.clone();
    let action = match &entry.action {
        Action::Forward(action) => action,
        Action::Redirect(to) => {
            let scheme = request.uri().scheme_str().unwrap_or("http");
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let authority = authority.as_ref().map_or("", Authority::as_str);
            return (local(), with_response_headers(entry, redirect(to, scheme, authority, path)));
        }
        Action::Respond(direct) => return (local(), with_response_headers(entry, respond(direct))),
    };
    let Some(target) = action.pick(rand::random()) else {
        return (local(), LocalReply::NoCluster.into_response_for(grpc));
    };
    let Some(cluster) = runtime.clusters.get(&target.cluster) else {
        let unknown = Arc::new(forwarder.metrics.outbound_cluster(&target.cluster));
        return (unknown, LocalReply::NoCluster.into_response_for(grpc));
    };
    let timeout = request_timeout(action.timeout, action.grpc_timeout, (request.headers(), grpc));
    let deadlines = Deadlines { stream_idle: forwarder.timeouts.stream_idle, route: timeout };
    let clock = StreamClock::start();
    let mut request = prepare(request, authority, &clock);
    report::tell_upstream(&forwarder.metrics.golden, cluster.tally.in_mesh, request.headers_mut());
    let routed = Routed { route: entry, action, target, balancer: &cluster.balancer, addresses };
    let call = super::route::send(routed, runtime, &forwarder.metrics, request);
    (cluster.tally.clone(), complete(call, clock, deadlines, forwarder, (&target.cluster, grpc)).await)
}

fn with_response_headers(entry: &RouteEntry, mut response: Response<Body>) -> Response<Body> {
    super::route::apply_headers(&entry.response_headers, response.headers_mut());
    response
}

/// A request no virtual host claims, to the address its client dialled. When that is a pod of a Service the proxy
/// holds (a headless Service's, dialled by its own name), through that Service's cluster, so over mutual TLS when
/// it runs a sidecar, as TCP to it goes; else passed through as it is (Istio's `PassthroughCluster`).
async fn to_original<B: RequestBody>(
    (request, authority): (Request<B>, Option<Authority>),
    address: SocketAddr,
    runtime: &Runtime,
    forwarder: &Forwarder,
    grpc: bool,
) -> (Arc<ClusterTally>, Response<Body>) {
    let clock = StreamClock::start();
    let mut request = prepare(request, authority, &clock);
    let cluster = runtime.endpoint_clusters.get(&address).and_then(|name| runtime.clusters.get(&**name));
    let cluster = cluster.filter(|cluster| cluster.balancer.has_endpoint(address));
    let tally = cluster.map_or_else(|| forwarder.tallies.passthrough.clone(), |c| c.tally.clone());
    report::tell_upstream(&forwarder.metrics.golden, tally.in_mesh, request.headers_mut());
    let (call, name): (ResponseFuture, Arc<str>) = match cluster {
        Some(cluster) => match cluster.balancer.send_to(address, request) {
            Ok(call) => (call, tally.name.clone()),
            Err(refused) => (Box::pin(std::future::ready(Err(refused))), tally.name.clone()),
        },
        None => (forwarder.passthrough.call(address, request), Arc::from(PASSTHROUGH_CLUSTER)),
    };
    let call = async { Ok(call.await?.map(|b| b.map_err(BoxError::from).boxed())) };
    let deadlines = Deadlines { stream_idle: forwarder.timeouts.stream_idle, route: None };
    (tally, complete(call, clock, deadlines, forwarder, (&name, grpc)).await)
}

/// The routing decision. Pure. With `ask`, a host the proxy holds no config for yet is to be asked for
/// ([`Upstream::Ask`]); without, it is routed as an unknown host.
fn route<'a, B>(
    request: &Request<B>,
    authority: Option<&str>,
    runtime: &'a Runtime,
    labels: &Labels,
    destination: Destination,
    ask: bool,
) -> Result<Upstream<'a>, LocalReply> {
    let config = &runtime.config;
    let (port, original) = match destination {
        Destination::Explicit { default_port } => {
            let authority = authority.ok_or(LocalReply::MissingHost)?;
            (port_of(authority).unwrap_or(default_port), None)
        }
        Destination::Original(address) => (address.port(), Some(address)),
    };
    let passthrough = || original.map(Upstream::Original).ok_or(LocalReply::NoRoute);
    let (Some(table), Some(host)) = (config.route_table_for_port(port), authority) else { return passthrough() };
    let vhost = match config.virtual_host(table, host) {
        Lookup::Found(vhost) => vhost,
        Lookup::Ask(name) if ask => return Ok(Upstream::Ask { name, address: false }),
        Lookup::Ask(_) => return passthrough(),
        Lookup::Unknown => match address_virtual_host(runtime, table, host, port) {
            Lookup::Found(vhost) => vhost,
            Lookup::Ask(name) if ask => return Ok(Upstream::Ask { name, address: true }),
            Lookup::Ask(_) | Lookup::Unknown => return passthrough(),
        },
    };
    let info = RequestInfo {
        host,
        path: request.uri().path(),
        query: request.uri().query(),
        method: request.method().as_str(),
        scheme: request.uri().scheme_str().unwrap_or("http"),
        headers: request.headers(),
        source_labels: labels,
    };
    vhost.route(&info).map(Upstream::Route).ok_or(LocalReply::NoRoute)
}

/// For a `Host` that is an address (`10.96.0.9`, `10.96.0.9:8080`, `[fd00::9]`), the virtual host of the Service
/// whose cluster IP it is, asked for by address when the proxy holds no such Service, as TCP sent there is
/// ([`crate::config::ProxyConfig::service_at`]: private addresses only). With the default namespace scope a client
/// calling another namespace's Service by cluster IP otherwise went as dialled, in plaintext, which a `STRICT`
/// server refuses. A pod's address is not taken for its Service's: the request goes to that pod, through its
/// Service's cluster (see `to_original`), so a pod of a Service the proxy holds is not asked for.
fn address_virtual_host<'a>(runtime: &'a Runtime, table: &'a RouteTable, host: &str, port: u16) -> Lookup<'a> {
    let Some(ip) = crate::config::ip_literal(host) else { return Lookup::Unknown };
    if runtime.endpoint_clusters.contains_key(&SocketAddr::new(ip, port)) {
        return Lookup::Unknown;
    }
    runtime.config.service_at(table, ip)
}

/// Awaits the response head within the request's deadlines; failures and timeouts become the proxy's own
/// replies (in gRPC's shape for gRPC requests). The response body keeps running under the same deadlines.
async fn complete(
    call: impl Future<Output = Result<Response<Body>, BoxError>>,
    clock: Arc<StreamClock>,
    deadlines: Deadlines,
    forwarder: &Forwarder,
    (cluster, grpc): (&str, bool),
) -> Response<Body> {
    let result = match response_head(call, &clock, deadlines).await {
        Ok(result) => result,
        Err(kind) => {
            forwarder.metrics.timeout(Direction::Outbound, kind);
            return timeout_reply(kind, &clock).into_response_for(grpc);
        }
    };
    match result {
        Ok(response) => finish(response, clock, deadlines, forwarder),
        Err(err) if err.is::<NoEndpoints>() => LocalReply::NoHealthyUpstream.into_response_for(grpc),
        Err(err) if err.is::<PerTryTimeout>() => LocalReply::Timeout.into_response_for(grpc),
        Err(err) if err.is::<Overflow>() => {
            forwarder.metrics.route_event(cluster, RouteEvent::Overflow);
            LocalReply::Overflow.into_response_for(grpc)
        }
        Err(err) => {
            tracing::debug!(error = %err, "upstream request failed");
            LocalReply::ConnectFailure.into_response_for(grpc)
        }
    }
}

/// The reply to a request whose deadline passed before the upstream answered: the client's fault (`408`) when its
/// own body stalled, else the upstream's (`504`).
fn timeout_reply(kind: TimeoutKind, clock: &StreamClock) -> LocalReply {
    match kind {
        TimeoutKind::StreamIdle if !clock.request_is_done() => LocalReply::ClientStreamTimeout,
        TimeoutKind::StreamIdle => LocalReply::UpstreamStreamTimeout,
        _ => LocalReply::Timeout,
    }
}

/// The request as sent upstream: the authority it was routed by, and only that one (`:authority` for HTTP/2,
/// a single `Host` for HTTP/1), no hop-by-hop headers.
fn prepare<B: RequestBody>(
    request: Request<B>,
    authority: Option<Authority>,
    clock: &Arc<StreamClock>,
) -> Request<Body> {
    let (mut parts, body) = request.into_parts();
    let with_host = parts.version != Version::HTTP_2;
    match authority {
        Some(authority) => point_at(&mut parts, authority, with_host),
        None => drop(parts.headers.remove(http::header::HOST)),
    }
    strip_hop_by_hop(&mut parts.headers);
    Request::from_parts(parts, Clocked::request(body, clock.clone()).boxed())
}

fn finish(
    response: Response<Body>,
    clock: Arc<StreamClock>,
    deadlines: Deadlines,
    forwarder: &Forwarder,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let metrics = forwarder.metrics.clone();
    let body = Clocked::response(body, clock, deadlines, move |kind| {
        tracing::debug!(timeout = kind.as_str(), "response cut short");
        metrics.timeout(Direction::Outbound, kind);
    });
    Response::from_parts(parts, body.boxed())
}

#[cfg(test)]
mod tests;
