//! xDS conventions shared by the Weft operator (which serves them) and proxy (which consumes them): resource type
//! URLs and their push order, resource names (Istio's `outbound|PORT|SUBSET|HOST`), the proxy's node id, and
//! packing/unpacking of `Any`. Keeping them in one crate means the two sides cannot drift apart.

#![forbid(unsafe_code)]

pub mod authz;
pub mod ca;
pub mod detection;
pub mod filters;
pub mod identity;
pub mod inbound;
pub mod lb;
pub mod mtls;
pub mod names;
pub mod node;
pub mod origination;
pub mod provenance;
pub mod ratelimit;
pub mod resource;
pub mod scope;
pub mod source;

pub use envoy_types::pb;
pub use identity::SpiffeId;
pub use names::{
    ClusterName, MAX_ON_DEMAND_NAMES, address_domain, cluster_name, domain_address, listener_name, on_demand_name,
    parse_on_demand_name, parse_virtual_host_name, route_config_name, service_of_domains, virtual_host_name,
};
pub use node::ProxyNode;
pub use resource::{ResourceType, UnpackError, pack, unpack};
pub use scope::{ON_DEMAND_METADATA_KEY, ON_DEMAND_VHDS, ProxyScope, SCOPE_METADATA_KEY};

/// Domain suffix of Kubernetes Service FQDNs.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";
