//! HTTP passthrough: requests on a mesh port that no virtual host claims go to the address the application
//! dialled, unchanged (Istio's `PassthroughCluster`). Connection pools are kept per destination.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::TryFutureExt;
use http::Request;
use tower::ServiceExt;

use super::Body;
use crate::config::cluster::Connections;
use crate::upstream::{Endpoint, ResponseFuture};

/// The cluster name passthrough requests are counted under, as in Istio.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// Envoy's default connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pools kept at most; beyond that the set starts over (idle pools close on their own after a minute anyway).
const MAX_DESTINATIONS: usize = 1024;

#[derive(Default)]
pub struct Passthrough {
    endpoints: Mutex<HashMap<SocketAddr, Endpoint>>,
}

impl Passthrough {
    /// Sends `request` (absolute URI, the client's authority kept) to `address`.
    pub fn call(&self, address: SocketAddr, request: Request<Body>) -> ResponseFuture {
        let endpoint = self.endpoint(address);
        Box::pin(endpoint.oneshot(request).map_err(Into::into))
    }

    /// The connection pool to `address`, for a caller that sends it many requests.
    pub fn endpoint(&self, address: SocketAddr) -> Endpoint {
        let Ok(mut endpoints) = self.endpoints.lock() else {
            return Endpoint::new(address, CONNECT_TIMEOUT, Connections::default(), None);
        };
        if endpoints.len() >= MAX_DESTINATIONS && !endpoints.contains_key(&address) {
            endpoints.clear();
        }
        endpoints
            .entry(address)
            .or_insert_with(|| Endpoint::new(address, CONNECT_TIMEOUT, Connections::default(), None))
            .clone()
    }
}
