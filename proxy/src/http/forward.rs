//! One request through the proxy: route, pick a weighted target per request, balance, forward within the
//! request's deadlines, answer, count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, Version, header};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Incoming};

use super::authority::request_authority;
use super::headers::{port_of, strip_hop_by_hop};
use super::local_reply::LocalReply;
use super::passthrough::PASSTHROUGH_CLUSTER;
use super::timeouts::TimeoutKind;
use super::timeouts::stream::{Clocked, Deadlines, StreamClock, response_head};
use super::{Body, Forwarder};
use crate::BoxError;
use crate::balance::{NoEndpoints, ResponseFuture};
use crate::config::routes::RequestInfo;
use crate::config::{Lookup, ProxyConfig};
use crate::metrics::Direction;

/// The cluster label of requests the proxy answered itself before choosing a cluster.
const NO_CLUSTER: &str = "none";

/// Where the connection a request came on was headed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Sent to the proxy on purpose: the authority's port (else `default_port`) picks the route table.
    Explicit { default_port: u16 },
    /// Captured on its way to this address: its port picks the route table (as Envoy's listener per port), and a
    /// request no virtual host claims goes on to it unchanged.
    Original(SocketAddr),
}

/// Which upstream a request goes to.
#[derive(Debug, PartialEq, Eq)]
enum Upstream<'a> {
    Cluster {
        name: &'a str,
        timeout: Option<Duration>,
    },
    Original(SocketAddr),
    /// None yet: the host is one the proxy holds no config for; ask for this on-demand name, then route again.
    Ask(String),
}

/// Why a request was not started: a reply of the proxy's own, or a host to ask for first (the request comes back).
enum NotStarted<B> {
    Reply(LocalReply),
    Ask(String, Box<Request<B>>),
}

impl<B> From<LocalReply> for NotStarted<B> {
    fn from(reply: LocalReply) -> Self {
        Self::Reply(reply)
    }
}

struct Call {
    cluster: String,
    response: ResponseFuture,
    deadlines: Deadlines,
}

/// What a downstream request body may be: hyper's, or one wrapped on its way in.
pub trait RequestBody: HttpBody<Data = Bytes, Error: Into<BoxError>> + Send + Sync + Unpin + 'static {}

impl<B> RequestBody for B where B: HttpBody<Data = Bytes, Error: Into<BoxError>> + Send + Sync + Unpin + 'static {}

/// Forwards `request` by the current runtime config.
pub async fn handle<B: RequestBody>(
    request: Request<B>,
    forwarder: &Forwarder,
    destination: Destination,
) -> Response<Body> {
    let started = Instant::now();
    let clock = StreamClock::start();
    let runtime = forwarder.runtime.borrow().clone();
    let dispatched = match dispatch(request, &runtime, forwarder, destination, &clock, true) {
        Err(NotStarted::Ask(name, request)) => {
            drop(runtime);
            let settled = forwarder.on_demand.settle(&name, &forwarder.runtime).await;
            forwarder.metrics.on_demand(settled);
            let runtime = forwarder.runtime.borrow().clone();
            dispatch(*request, &runtime, forwarder, destination, &clock, false)
        }
        other => {
            drop(runtime);
            other
        }
    };
    let (cluster, response) = match dispatched {
        Ok(call) => (call.cluster, complete(call.response, clock, call.deadlines, forwarder).await),
        Err(NotStarted::Reply(reply)) => (NO_CLUSTER.to_string(), reply.into_response()),
        // Not asked twice: routed as an unknown host the second time.
        Err(NotStarted::Ask(..)) => (NO_CLUSTER.to_string(), LocalReply::NoRoute.into_response()),
    };
    forwarder.metrics.request(Direction::Outbound, &cluster, response.status(), started.elapsed());
    response
}

/// Routes the request and starts it towards its upstream; everything up to the first await. With `ask`, a host
/// the proxy holds no config for is handed back to be asked for on demand.
fn dispatch<B: RequestBody>(
    request: Request<B>,
    runtime: &crate::dataplane::Runtime,
    forwarder: &Forwarder,
    destination: Destination,
    clock: &Arc<StreamClock>,
    ask: bool,
) -> Result<Call, NotStarted<B>> {
    let authority =
        request_authority(request.version(), request.uri(), request.headers()).map_err(LocalReply::BadAuthority)?;
    match route(&request, authority.as_deref(), &runtime.config, destination, ask)? {
        Upstream::Ask(name) => Err(NotStarted::Ask(name, Box::new(request))),
        Upstream::Cluster { name, timeout } => {
            let balancer = runtime.clusters.get(name).ok_or(LocalReply::NoCluster)?;
            let authority = authority.as_deref().ok_or(LocalReply::MissingHost)?;
            let response = balancer.call(prepare(request, authority, clock));
            let deadlines = Deadlines { stream_idle: forwarder.timeouts.stream_idle, route: timeout };
            Ok(Call { cluster: name.to_string(), response, deadlines })
        }
        Upstream::Original(address) => {
            let authority = authority.unwrap_or_else(|| address.to_string());
            let response = forwarder.passthrough.call(address, prepare(request, &authority, clock));
            let deadlines = Deadlines { stream_idle: forwarder.timeouts.stream_idle, route: None };
            Ok(Call { cluster: PASSTHROUGH_CLUSTER.to_string(), response, deadlines })
        }
    }
}

/// The routing decision. Pure. With `ask`, a host the proxy holds no config for yet is to be asked for
/// ([`Upstream::Ask`]); without, it is routed as an unknown host.
fn route<'a, B>(
    request: &Request<B>,
    authority: Option<&str>,
    config: &'a ProxyConfig,
    destination: Destination,
    ask: bool,
) -> Result<Upstream<'a>, LocalReply> {
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
        Lookup::Ask(name) if ask => return Ok(Upstream::Ask(name)),
        Lookup::Ask(_) | Lookup::Unknown => return passthrough(),
    };
    let info =
        RequestInfo { host, path: request.uri().path(), method: request.method().as_str(), headers: request.headers() };
    let route = vhost.route(&info).ok_or(LocalReply::NoRoute)?;
    let cluster = route.action.pick(rand::random()).ok_or(LocalReply::NoCluster)?;
    Ok(Upstream::Cluster { name: cluster, timeout: route.action.timeout })
}

/// Awaits the upstream response head within the request's deadlines; failures and timeouts become the proxy's
/// own replies. The response body keeps running under the same deadlines.
async fn complete(
    call: ResponseFuture,
    clock: Arc<StreamClock>,
    deadlines: Deadlines,
    forwarder: &Forwarder,
) -> Response<Body> {
    let result = match response_head(call, &clock, deadlines).await {
        Ok(result) => result,
        Err(kind) => {
            forwarder.metrics.timeout(Direction::Outbound, kind);
            return timeout_reply(kind, &clock).into_response();
        }
    };
    match result {
        Ok(response) => finish(response, clock, deadlines, forwarder),
        Err(err) if err.is::<NoEndpoints>() => LocalReply::NoHealthyUpstream.into_response(),
        Err(err) => {
            tracing::debug!(error = %err, "upstream request failed");
            LocalReply::ConnectFailure.into_response()
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
fn prepare<B: RequestBody>(request: Request<B>, authority: &str, clock: &Arc<StreamClock>) -> Request<Body> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if let Ok(uri) = Uri::try_from(format!("http://{authority}{path}")) {
        parts.uri = uri;
    }
    parts.headers.remove(header::HOST);
    if parts.version != Version::HTTP_2
        && let Ok(host) = HeaderValue::from_str(authority)
    {
        parts.headers.insert(header::HOST, host);
    }
    strip_hop_by_hop(&mut parts.headers);
    Request::from_parts(parts, Clocked::request(body, clock.clone()).boxed())
}

fn finish(
    response: Response<Incoming>,
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
