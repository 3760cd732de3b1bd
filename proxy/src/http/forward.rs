//! One request through the proxy: route, pick a weighted target per request, balance, forward, answer, count.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::headers::{authority, port_of, strip_hop_by_hop};
use super::local_reply::LocalReply;
use super::passthrough::PASSTHROUGH_CLUSTER;
use super::{Body, Forwarder};
use crate::balance::{NoEndpoints, ResponseFuture};
use crate::config::ProxyConfig;
use crate::config::routes::RequestInfo;
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
    Cluster { name: &'a str, timeout: Option<Duration> },
    Original(SocketAddr),
}

struct Call {
    cluster: String,
    response: ResponseFuture,
    timeout: Option<Duration>,
}

/// Forwards `request` by the current runtime config.
pub async fn handle(request: Request<Incoming>, forwarder: &Forwarder, destination: Destination) -> Response<Body> {
    let started = Instant::now();
    let runtime = forwarder.runtime.borrow().clone();
    let dispatched = dispatch(request, &runtime, forwarder, destination);
    drop(runtime);
    let (cluster, response) = match dispatched {
        Ok(call) => (call.cluster, complete(call.response, call.timeout).await),
        Err(reply) => (NO_CLUSTER.to_string(), reply.into_response()),
    };
    forwarder.metrics.request(Direction::Outbound, &cluster, response.status(), started.elapsed());
    response
}

/// Routes the request and starts it towards its upstream; everything up to the first await.
fn dispatch(
    request: Request<Incoming>,
    runtime: &crate::dataplane::Runtime,
    forwarder: &Forwarder,
    destination: Destination,
) -> Result<Call, LocalReply> {
    let authority = authority(&request);
    match route(&request, authority.as_deref(), &runtime.config, destination)? {
        Upstream::Cluster { name, timeout } => {
            let balancer = runtime.clusters.get(name).ok_or(LocalReply::NoCluster)?;
            let authority = authority.as_deref().ok_or(LocalReply::MissingHost)?;
            let response = balancer.call(prepare(request, authority));
            Ok(Call { cluster: name.to_string(), response, timeout })
        }
        Upstream::Original(address) => {
            let authority = authority.unwrap_or_else(|| address.to_string());
            let response = forwarder.passthrough.call(address, prepare(request, &authority));
            Ok(Call { cluster: PASSTHROUGH_CLUSTER.to_string(), response, timeout: None })
        }
    }
}

/// The routing decision. Pure.
fn route<'a, B>(
    request: &Request<B>,
    authority: Option<&str>,
    config: &'a ProxyConfig,
    destination: Destination,
) -> Result<Upstream<'a>, LocalReply> {
    let (port, original) = match destination {
        Destination::Explicit { default_port } => {
            let authority = authority.ok_or(LocalReply::MissingHost)?;
            (port_of(authority).unwrap_or(default_port), None)
        }
        Destination::Original(address) => (address.port(), Some(address)),
    };
    let passthrough = || original.map(Upstream::Original).ok_or(LocalReply::NoRoute);
    let Some(table) = config.route_table_for_port(port) else { return passthrough() };
    let Some(host) = authority else { return passthrough() };
    let Some(vhost) = table.virtual_host(host) else { return passthrough() };
    let info =
        RequestInfo { host, path: request.uri().path(), method: request.method().as_str(), headers: request.headers() };
    let route = vhost.route(&info).ok_or(LocalReply::NoRoute)?;
    let cluster = route.action.pick(rand::random()).ok_or(LocalReply::NoCluster)?;
    Ok(Upstream::Cluster { name: cluster, timeout: route.action.timeout })
}

/// Awaits the upstream response within the route's timeout; failures become the proxy's own replies.
async fn complete(call: ResponseFuture, timeout: Option<Duration>) -> Response<Body> {
    let result = match timeout {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => return LocalReply::Timeout.into_response(),
        },
        None => call.await,
    };
    match result {
        Ok(response) => finish(response),
        Err(err) if err.is::<NoEndpoints>() => LocalReply::NoHealthyUpstream.into_response(),
        Err(err) => {
            tracing::debug!(error = %err, "upstream request failed");
            LocalReply::ConnectFailure.into_response()
        }
    }
}

/// The request as sent upstream: absolute URI keeping the client's authority, no hop-by-hop headers.
fn prepare(request: Request<Incoming>, authority: &str) -> Request<Body> {
    let (mut parts, body) = request.into_parts();
    if parts.version != Version::HTTP_2 || parts.uri.authority().is_none() {
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        if let Ok(uri) = Uri::try_from(format!("http://{authority}{path}")) {
            parts.uri = uri;
        }
    }
    strip_hop_by_hop(&mut parts.headers);
    Request::from_parts(parts, body.map_err(Into::into).boxed())
}

fn finish(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.map_err(Into::into).boxed())
}

#[cfg(test)]
mod tests;
