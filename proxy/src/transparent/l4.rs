//! TCP and TLS routes for captured connections: a connection to a destination a listener's TCP route takes (by
//! address range, and for TLS by the server name of its ClientHello) goes to an endpoint of a weighted cluster of
//! that route, byte for byte; TLS passes through unterminated. Decided once per connection, so weights split
//! connections, as with Envoy's TCP proxy. TCP no route takes goes to the Service it was sent to, when the
//! address is a Service's ([`service_target`]).

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
/// endpoints; the Service is the one whose virtual host on the port claims the address, held or asked for by
/// address ([`service_target_asked`]). To one of its endpoints by address (a headless Service's pod), held or
/// asked for: to that endpoint. Either way in mutual TLS when the endpoint runs a sidecar. `None` when the
/// address is neither, as far as the proxy knows now: the connection goes as dialled.
pub fn service_target(original: SocketAddr, forwarder: &Forwarder) -> Option<Result<L4Target, String>> {
    let runtime = forwarder.runtime.borrow();
    let table = runtime.config.route_table_for_port(original.port())?;
    if let Lookup::Found(host) = runtime.config.service_at(table, original.ip()) {
        let service = weft_xds::parse_virtual_host_name(&host.name).map(|(service, _)| service);
        // Asked for on demand, it is held under the name it was asked by: the Service is its first domain.
        let service = service.or_else(|| weft_xds::service_of_domains(&host.domains))?;
        let cluster = weft_xds::cluster_name(service, original.port(), "");
        return Some(target_in(&runtime, &cluster, original, None));
    }
    let cluster = runtime.endpoint_clusters.get(&original)?;
    let (endpoint, lease, tls) = runtime.clusters.get(&**cluster)?.balancer.endpoint_at(original)?;
    Some(Ok(L4Target { cluster: cluster.to_string(), endpoint, lease, tls, idle_timeout: None }))
}

/// [`service_target`] for an address the proxy holds no Service at yet: asks the control plane which Service has
/// that cluster IP or endpoint (once per address: the answer, or that there is none, is kept like an on-demand
/// host), waits for it (and the Service's clusters) as a request waits for an on-demand host, then looks again.
/// `None` without asking when the port's routes are not scoped (the proxy holds the whole mesh), the address is
/// known to be nobody's, the proxy has asked for as many addresses as it may, or its xDS stream is down (a
/// connection does not wait out an outage of the control plane: it goes as dialled). This ties the first connection to each new address on a mesh port to
/// the control plane (a few milliseconds); TCP to a Service outside the proxy's scope otherwise went as
/// dialled, in plaintext, which a `STRICT` server refuses.
pub async fn service_target_asked(original: SocketAddr, forwarder: &Forwarder) -> Option<Result<L4Target, String>> {
    let name = {
        let runtime = forwarder.runtime.borrow();
        let table = runtime.config.route_table_for_port(original.port())?;
        match runtime.config.service_at(table, original.ip()) {
            Lookup::Ask(name) => name,
            // Nothing to ask, or arrived since the caller looked: as the proxy knows it now.
            Lookup::Found(_) | Lookup::Unknown => {
                drop(runtime);
                return service_target(original, forwarder);
            }
        }
    };
    forwarder.ask(&name, true).await?;
    service_target(original, forwarder)
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
