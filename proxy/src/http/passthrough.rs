//! HTTP passthrough: requests on a mesh port that no virtual host claims go to the address the application
//! dialled, unchanged (Istio's `PassthroughCluster`), unless it is a pod of a Service the proxy holds
//! (`forward::to_original`). Connection pools are kept per destination.

use std::net::SocketAddr;
use std::time::Duration;

use http::Request;

use super::Body;
use crate::upstream::{AddressPools, Endpoint, ResponseFuture};

/// The cluster name passthrough requests are counted under, as in Istio.
pub use weft_xds::detection::PASSTHROUGH_CLUSTER;
/// Envoy's default connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Passthrough {
    pools: AddressPools,
}

impl Default for Passthrough {
    fn default() -> Self {
        Self { pools: AddressPools::new(CONNECT_TIMEOUT, Default::default(), None) }
    }
}

impl Passthrough {
    /// Sends `request` (absolute URI, the client's authority kept) to `address`.
    pub fn call(&self, address: SocketAddr, request: Request<Body>) -> ResponseFuture {
        Box::pin(self.endpoint(address).send(request))
    }

    /// The connection pool to `address`, for a caller that sends it many requests.
    pub fn endpoint(&self, address: SocketAddr) -> Endpoint {
        self.pools.endpoint(address)
    }
}
