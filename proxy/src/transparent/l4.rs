//! TCP and TLS routes for captured connections: a connection to a destination a listener's TCP route takes (by
//! address range, and for TLS by the server name of its ClientHello) goes to an endpoint of a weighted cluster of
//! that route, byte for byte; TLS passes through unterminated. Decided once per connection, so weights split
//! connections, as with Envoy's TCP proxy.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::l4::{l4_route, wants_server_name};
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
    let picked = runtime.clusters.get(&target.cluster).and_then(|cluster| cluster.balancer.pick(original));
    Some(match picked {
        Some((endpoint, lease, tls)) => {
            let cluster = target.cluster.clone();
            Ok(L4Target { cluster, endpoint, lease, tls, idle_timeout: route.idle_timeout })
        }
        None => Err(format!("cluster {} has no healthy endpoint", target.cluster)),
    })
}
