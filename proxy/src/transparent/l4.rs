//! TCP and TLS routes for captured connections: a connection to a destination a listener's TCP route takes (by
//! address range, and for TLS by the server name of its ClientHello) goes to an endpoint of a weighted cluster of
//! that route, byte for byte; TLS passes through unterminated. Decided once per connection, so weights split
//! connections, as with Envoy's TCP proxy.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::Lookup;
use crate::config::l4::{l4_route, wants_server_name};
use crate::dataplane::Runtime;
use crate::hello::peek_hello;
use crate::http::Forwarder;
use crate::upstream::{ClusterTls, InFlight};

/// Where a routed connection goes: the cluster (for metrics and logs) and one of its endpoints.
pub struct L4Target {
    pub cluster: String,
    pub endpoint: SocketAddr,
    /// Counts the connection in flight at its endpoint (none for an original-destination cluster).
    pub lease: Option<InFlight>,
    /// The cluster's mutual TLS, when the endpoint runs a sidecar.
    pub tls: Option<std::sync::Arc<ClusterTls>>,
    /// The route's idle timeout: `None` the proxy's, zero none.
    pub idle_timeout: Option<Duration>,
}

/// The endpoint a TCP or TLS route sends this connection to; `None` when no such route takes it (it is then
/// handled as before: HTTP sniffing or passthrough), or the route's cluster has no endpoint.
pub async fn route(
    stream: &TcpStream,
    original: SocketAddr,
    forwarder: &Forwarder,
) -> Option<Result<L4Target, String>> {
    let wants_name = {
        let runtime = forwarder.runtime.borrow();
        let routes = runtime.config.l4_routes_for_port(original.port());
        if routes.is_empty() {
            return None;
        }
        wants_server_name(routes, original.ip())
    };
    let server_name = if wants_name { peek_hello(stream).await.and_then(|hello| hello.server_name) } else { None };
    let runtime = forwarder.runtime.borrow().clone();
    let routes = runtime.config.l4_routes_for_port(original.port());
    let route = l4_route(routes, original.ip(), server_name.as_deref())?;
    let roll = rand::random();
    let Some(target) = crate::config::routes::pick_weighted(&route.targets, roll) else {
        return Some(Err(format!("route {} has no target", route.name)));
    };
    Some(target_in(&runtime, &target.cluster, original, route.idle_timeout))
}

/// Where a TCP connection for a Service goes when no TCP route takes it, as Istio's sidecars send TCP for a
/// Service: not on as it was dialled in plaintext (which would skip mutual TLS, and a `STRICT` server would
/// refuse it), but to its cluster (`outbound|PORT||FQDN`). To the Service's cluster IP: balanced over its
/// endpoints; the Service is the one whose virtual host on the port claims the address
/// ([`weft_xds::names::virtual_host_name`]), asked for on demand when the proxy's scope does not hold it. To one
/// of its endpoints by address (a headless Service's pod): to that endpoint. Either way in mutual TLS when the
/// endpoint runs a sidecar. `None` when the address is neither: the connection then goes to it as dialled.
pub async fn service_target(original: SocketAddr, forwarder: &Forwarder) -> Option<Result<L4Target, String>> {
    let name = match service_at(&forwarder.runtime.borrow(), original) {
        ServiceAt::Found(target) => return Some(target),
        ServiceAt::Unknown => return None,
        ServiceAt::Ask(name) => name,
    };
    let settled = forwarder.on_demand.settle(&name, &forwarder.runtime).await;
    forwarder.metrics.on_demand(settled);
    match service_at(&forwarder.runtime.borrow(), original) {
        ServiceAt::Found(target) => Some(target),
        ServiceAt::Unknown | ServiceAt::Ask(_) => None,
    }
}

/// Whose address a TCP connection was sent to, as far as the config in force knows.
enum ServiceAt {
    Found(Result<L4Target, String>),
    /// Maybe a cluster IP of a Service the proxy does not hold yet: ask for this on-demand name.
    Ask(String),
    Unknown,
}

fn service_at(runtime: &Runtime, original: SocketAddr) -> ServiceAt {
    let Some(table) = runtime.config.route_table_for_port(original.port()) else { return ServiceAt::Unknown };
    let lookup = runtime.config.service_host_at(table, original.ip());
    if let Lookup::Found(host) = lookup {
        return match weft_xds::service_of_virtual_host(&host.name, &host.domains) {
            Some((service, port)) => {
                ServiceAt::Found(target_in(runtime, &weft_xds::cluster_name(service, port, ""), original, None))
            }
            None => ServiceAt::Unknown,
        };
    }
    if let Some(cluster) = runtime.endpoint_clusters.get(&original)
        && let Some(picked) = runtime.clusters.get(&**cluster).and_then(|c| c.balancer.endpoint_at(original))
    {
        let (endpoint, lease, tls) = picked;
        let cluster = cluster.to_string();
        return ServiceAt::Found(Ok(L4Target { cluster, endpoint, lease, tls, idle_timeout: None }));
    }
    match lookup {
        Lookup::Ask(name) => ServiceAt::Ask(name),
        Lookup::Found(_) | Lookup::Unknown => ServiceAt::Unknown,
    }
}

/// An endpoint of `cluster` for a connection to `original`.
fn target_in(
    runtime: &Runtime,
    cluster: &str,
    original: SocketAddr,
    idle_timeout: Option<Duration>,
) -> Result<L4Target, String> {
    match runtime.clusters.get(cluster).and_then(|c| c.balancer.pick(original)) {
        Some((endpoint, lease, tls)) => {
            Ok(L4Target { cluster: cluster.to_string(), endpoint, lease, tls, idle_timeout })
        }
        None => Err(format!("cluster {cluster} has no healthy endpoint")),
    }
}
