//! The xDS resource types Weft serves, their type URLs, and `Any` packing.

use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

/// A resource type of the ADS stream, in make-before-break push order: clusters and their endpoints exist before
/// the listeners and routes that refer to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    Route,
    /// One virtual host asked for on demand (VHDS): named `ROUTE_CONFIG/HOST` (see [`crate::names::on_demand_name`]).
    VirtualHost,
}

impl ResourceType {
    /// Every type, in push order.
    pub const ALL: [ResourceType; 5] = [Self::Cluster, Self::Endpoint, Self::Listener, Self::Route, Self::VirtualHost];

    pub const fn type_url(self) -> &'static str {
        match self {
            Self::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            Self::Endpoint => "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            Self::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            Self::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            Self::VirtualHost => "type.googleapis.com/envoy.config.route.v3.VirtualHost",
        }
    }

    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// Short name for logs and metrics (Envoy's CDS/EDS/LDS/RDS/VHDS).
    pub const fn short_name(self) -> &'static str {
        match self {
            Self::Cluster => "CDS",
            Self::Endpoint => "EDS",
            Self::Listener => "LDS",
            Self::Route => "RDS",
            Self::VirtualHost => "VHDS",
        }
    }

    /// Whether an empty resource name list means "everything" (SotW wildcard types) rather than "nothing".
    pub const fn is_wildcard_type(self) -> bool {
        matches!(self, Self::Cluster | Self::Listener)
    }
}

/// Packs a message into `Any` with its canonical type URL.
pub fn pack<T: Message + Name>(message: &T) -> Any {
    Any { type_url: T::type_url(), value: message.encode_to_vec() }
}

/// Why an `Any` could not be turned back into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnpackError {
    #[error("expected type {expected}, got {actual}")]
    WrongType { expected: String, actual: String },
    #[error("malformed {type_url}: {message}")]
    Decode { type_url: String, message: String },
}

/// Decodes an `Any` after checking it holds a `T`.
pub fn unpack<T: Message + Name + Default>(any: &Any) -> Result<T, UnpackError> {
    let expected = T::type_url();
    if any.type_url != expected {
        return Err(UnpackError::WrongType { expected, actual: any.type_url.clone() });
    }
    T::decode(any.value.as_slice())
        .map_err(|e| UnpackError::Decode { type_url: any.type_url.clone(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::listener::v3::Listener;

    #[test]
    fn type_urls_match_the_protobuf_names() {
        assert_eq!(ResourceType::Cluster.type_url(), Cluster::type_url());
        assert_eq!(ResourceType::Listener.type_url(), Listener::type_url());
        for t in ResourceType::ALL {
            assert_eq!(ResourceType::from_type_url(t.type_url()), Some(t));
        }
    }

    #[test]
    fn unpack_checks_the_type_before_decoding() {
        let any = pack(&Cluster { name: "c".into(), ..Default::default() });
        assert_eq!(unpack::<Cluster>(&any).map(|c| c.name), Ok("c".to_string()));
        assert!(matches!(unpack::<Listener>(&any), Err(UnpackError::WrongType { .. })));
        let garbage = Any { type_url: Cluster::type_url(), value: vec![0xff, 0xff, 0xff] };
        assert!(matches!(unpack::<Cluster>(&garbage), Err(UnpackError::Decode { .. })));
    }
}
