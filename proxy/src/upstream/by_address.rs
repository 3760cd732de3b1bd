//! Connection pools kept per address, for requests that go where their client dialled rather than to a
//! balanced endpoint: passthrough to a destination no route claims, and original-destination clusters
//! (DestinationRule `PASSTHROUGH`). Bounded: past [`MAX_ADDRESSES`] the set starts over (idle pools close on their
//! own after a minute anyway).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ClusterTls, Endpoint};
use crate::config::cluster::Connections;

/// Pools kept at most.
const MAX_ADDRESSES: usize = 1024;

/// Each address's pool, and whether its connections go through the cluster's TLS.
pub struct AddressPools {
    endpoints: Mutex<HashMap<(SocketAddr, bool), Endpoint>>,
    connect_timeout: Duration,
    connections: Connections,
    tls: Option<Arc<ClusterTls>>,
}

impl AddressPools {
    pub fn new(connect_timeout: Duration, connections: Connections, tls: Option<Arc<ClusterTls>>) -> Self {
        Self { endpoints: Mutex::default(), connect_timeout, connections, tls }
    }

    /// The pool to `address`, made on first use. An address is not known to run a sidecar, so its connections go
    /// through the cluster's TLS only when that covers every endpoint (`ISTIO_MUTUAL`, TLS origination), as
    /// Envoy applies a cluster's `transport_socket` but not its `tlsMode` matches to an original destination.
    pub fn endpoint(&self, address: SocketAddr) -> Endpoint {
        let tls = self.tls.as_ref().filter(|tls| tls.covers_every_endpoint());
        let key = (address, tls.is_some());
        let make = || Endpoint::new(address, self.connect_timeout, self.connections, tls.cloned());
        let Ok(mut endpoints) = self.endpoints.lock() else { return make() };
        if endpoints.len() >= MAX_ADDRESSES && !endpoints.contains_key(&key) {
            endpoints.clear();
        }
        endpoints.entry(key).or_insert_with(make).clone()
    }
}
