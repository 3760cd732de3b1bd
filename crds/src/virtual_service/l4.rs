//! The connection-level rules of a VirtualService: `tcp[]` (Istio's `TCPRoute`, matched on the destination address
//! and port) and `tls[]` (`TLSRoute`, matched on the TLS ClientHello's SNI as well, without terminating TLS).
//! Unlike HTTP rules they route whole connections: no per-request conditions, no rewrites, no retries.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Destination;

/// One TCP routing rule: conditions on a connection and where matching connections go.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// Conditions (ORed); each condition's fields are ANDed. No conditions matches every connection.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<L4MatchAttributes>,
    /// Weighted destinations of matching connections.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// One TLS routing rule: conditions on a TLS connection (its SNI) and where matching connections go.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    /// Conditions (ORed); each condition's fields are ANDed. Required: each names the SNI hosts it matches.
    #[serde(rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    /// Weighted destinations of matching connections.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// Conditions on a TCP connection; all set fields must match.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    /// Destination IPv4 or IPv6 addresses, with an optional prefix length (`a.b.c.d/xx` or `a.b.c.d`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// The Service port the connection is addressed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Labels of the calling workload. Not supported by Weft yet.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Names of gateways the rule applies to; Weft has only the mesh (`mesh`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Namespace of the calling workload. Not supported by Weft yet in tcp and tls rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

/// Conditions on a TLS connection; all set fields must match.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    /// Server names (SNI) to match: exact, or with a wildcard prefix (`*.example.com`). Required.
    pub sni_hosts: Vec<String>,
    /// Destination IPv4 or IPv6 addresses, with an optional prefix length (`a.b.c.d/xx` or `a.b.c.d`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// The Service port the connection is addressed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Labels of the calling workload. Not supported by Weft yet.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Names of gateways the rule applies to; Weft has only the mesh (`mesh`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Namespace of the calling workload. Not supported by Weft yet in tcp and tls rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

/// A destination and the share of matching connections it receives.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDestination {
    pub destination: Destination,
    /// Relative weight. With a single destination it may be omitted; with several, the weights are
    /// proportions of their sum (usually written to sum to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// What tcp and tls rules have alike, so that their checks and translation are written once.
pub trait L4Route {
    fn route(&self) -> &[RouteDestination];

    /// Every destination connections of this rule are sent to, in order.
    fn destinations(&self) -> impl Iterator<Item = &Destination> {
        self.route().iter().map(|r| &r.destination)
    }

    /// [`Self::destinations`] with each one's field path relative to the rule (`route[1].destination`).
    fn destination_fields(&self) -> impl Iterator<Item = (super::DestinationPlace, &Destination)> {
        self.route().iter().enumerate().map(|(i, r)| (super::DestinationPlace::Route(i), &r.destination))
    }
}

impl L4Route for TcpRoute {
    fn route(&self) -> &[RouteDestination] {
        &self.route
    }
}

impl L4Route for TlsRoute {
    fn route(&self) -> &[RouteDestination] {
        &self.route
    }
}

/// The conditions tcp and tls matches have alike.
pub trait L4Match {
    fn destination_subnets(&self) -> &[String];
    fn port(&self) -> Option<u32>;
    fn source_labels(&self) -> &BTreeMap<String, String>;
    fn gateways(&self) -> &[String];
    fn source_namespace(&self) -> Option<&str>;
}

macro_rules! l4_match {
    ($type:ty) => {
        impl L4Match for $type {
            fn destination_subnets(&self) -> &[String] {
                &self.destination_subnets
            }
            fn port(&self) -> Option<u32> {
                self.port
            }
            fn source_labels(&self) -> &BTreeMap<String, String> {
                &self.source_labels
            }
            fn gateways(&self) -> &[String] {
                &self.gateways
            }
            fn source_namespace(&self) -> Option<&str> {
                self.source_namespace.as_deref()
            }
        }
    };
}

l4_match!(L4MatchAttributes);
l4_match!(TlsMatchAttributes);

/// A `destinationSubnets` entry: an IP address with an optional prefix length (`10.0.0.0/8`, `10.0.0.1`,
/// `fd00::/8`), as the address and the prefix length (the address's full length when none is written). `None`
/// when it is not one.
pub fn parse_subnet(text: &str) -> Option<(std::net::IpAddr, u32)> {
    let (address, length) = match text.split_once('/') {
        Some((address, length)) => (address, Some(length)),
        None => (text, None),
    };
    let address: std::net::IpAddr = address.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let length = match length {
        // Only digits: `u32::from_str` would take a leading `+` as well.
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => l.parse().ok()?,
        Some(_) => return None,
        None => max,
    };
    (length <= max).then_some((address, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_addresses_with_an_optional_prefix_length() {
        let v4 = |s: &str| s.parse::<std::net::IpAddr>().ok();
        assert_eq!(parse_subnet("10.0.0.0/8"), v4("10.0.0.0").map(|a| (a, 8)));
        assert_eq!(parse_subnet("10.1.2.3"), v4("10.1.2.3").map(|a| (a, 32)));
        assert_eq!(parse_subnet("fd00::/8"), v4("fd00::").map(|a| (a, 8)));
        assert_eq!(parse_subnet("fd00::1"), v4("fd00::1").map(|a| (a, 128)));
        for bad in ["", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "10.0.0/8", "fd00::/129", "host/8"] {
            assert_eq!(parse_subnet(bad), None, "{bad}");
        }
    }
}
