//! Which workload identities a cluster's mutual TLS accepts: those of the Service's endpoints that run a
//! sidecar, in its namespace (Istio's "service accounts of the service"). Pure.

use std::collections::BTreeSet;

use weft_xds::SpiffeId;

use crate::index::{ServiceModel, ServicePortModel};

/// The SPIFFE ids behind `port`'s endpoints, sorted, each once; empty when no endpoint runs a sidecar.
pub(super) fn peer_identities(service: &ServiceModel, port: &ServicePortModel, trust_domain: &str) -> Vec<String> {
    let accounts: BTreeSet<&str> = port.endpoints.iter().filter_map(|e| e.sidecar_account.as_deref()).collect();
    accounts.into_iter().map(|account| SpiffeId::new(trust_domain, &service.namespace, account).to_string()).collect()
}
