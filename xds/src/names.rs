//! Resource naming conventions (Istio's, so operators reading a config dump feel at home).

use std::fmt;

/// `outbound|PORT|SUBSET|HOST`: one cluster per Service port and DestinationRule subset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterName {
    pub port: u16,
    /// Empty for the whole Service.
    pub subset: String,
    /// Service FQDN, `name.namespace.svc.cluster.local`.
    pub host: String,
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "outbound|{}|{}|{}", self.port, self.subset, self.host)
    }
}

impl ClusterName {
    /// Parses a name written by [`fmt::Display`]; `None` for any other shape.
    pub fn parse(name: &str) -> Option<Self> {
        let mut parts = name.split('|');
        let (direction, port, subset, host) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if direction != "outbound" || parts.next().is_some() || host.is_empty() {
            return None;
        }
        Some(Self { port: port.parse().ok()?, subset: subset.to_string(), host: host.to_string() })
    }
}

/// The cluster name for a Service FQDN, port and (possibly empty) subset.
pub fn cluster_name(host: &str, port: u16, subset: &str) -> String {
    ClusterName { port, subset: subset.to_string(), host: host.to_string() }.to_string()
}

/// The virtual host of a Service port in a route configuration: `FQDN:PORT`, Istio's name. Besides the Service's
/// names, its domains hold its cluster IP (with and without the port, as Istio's do), which is how a proxy knows
/// that a TCP connection to that address is for the Service: it goes to the Service's cluster
/// (`outbound|PORT||FQDN`), balanced, with mutual TLS to endpoints that run a sidecar.
pub fn virtual_host_name(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// The Service FQDN and port of a virtual host named by [`virtual_host_name`]; `None` for any other shape.
pub fn parse_virtual_host_name(name: &str) -> Option<(&str, u16)> {
    let (host, port) = name.rsplit_once(':')?;
    Some((host, port.parse().ok()?)).filter(|(host, _)| !host.is_empty() && !host.contains([':', '/']))
}

/// The Service FQDN a Service's virtual host is for, from its domains: the operator lists it first (so do Istio's
/// virtual hosts). A proxy holding the virtual host under another name (`PORT/HOST`, asked for on demand) finds
/// the Service's clusters by it. `None` when the first domain is not a plain host name.
pub fn service_of_domains(domains: &[String]) -> Option<&str> {
    let first = domains.first()?;
    let plain = !first.is_empty() && !first.contains([':', '*', '[', '/']);
    (plain && first.parse::<std::net::IpAddr>().is_err()).then_some(first.as_str())
}

/// The domain a virtual host carries for a Service's cluster IP, as clients write it in `Host` (IPv6 in brackets).
pub fn address_domain(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The address an [`address_domain`] (or an on-demand name's host) is, if it is one: `10.96.0.9`, `[fd00::9]`
/// (brackets optional).
pub fn domain_address(domain: &str) -> Option<std::net::IpAddr> {
    domain.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Outbound listener for a port, named like Istio's `0.0.0.0_9080`.
pub fn listener_name(port: u16) -> String {
    format!("0.0.0.0_{port}")
}

/// Route configuration shared by every Service on a port: named by the port number, as Istio does.
pub fn route_config_name(port: u16) -> String {
    port.to_string()
}

/// Most virtual hosts one proxy asks for on demand, counted apart for hosts that exist and hosts that do not:
/// beyond, a proxy stops asking (treating further hosts as unknown), so neither side's memory grows without
/// bound with what clients of a proxy send in `Host`.
pub const MAX_ON_DEMAND_NAMES: usize = 4096;

/// The on-demand (VHDS) resource name for the virtual host serving `host` in route configuration `route_config`:
/// `ROUTE_CONFIG/HOST`, Envoy's convention; the host as the client sent it, lower-cased. A host may be an address
/// ([`address_domain`]): a proxy asks so for the Service whose cluster IP a TCP connection was sent to.
pub fn on_demand_name(route_config: &str, host: &str) -> String {
    format!("{route_config}/{}", host.to_ascii_lowercase())
}

/// The route configuration and host of an on-demand resource name; `None` for any other shape.
pub fn parse_on_demand_name(name: &str) -> Option<(&str, &str)> {
    name.split_once('/').filter(|(config, host)| !config.is_empty() && !host.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_s_fqdn_is_the_first_of_its_virtual_host_s_domains() {
        let domains = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let fqdn = "store.data.svc.cluster.local";
        assert_eq!(service_of_domains(&domains(&[fqdn, "store.data", "10.96.0.9"])), Some(fqdn));
        assert_eq!(service_of_domains(&domains(&["10.96.0.9", fqdn])), None);
        assert_eq!(service_of_domains(&domains(&["store:80"])), None);
        assert_eq!(service_of_domains(&domains(&["*.data.svc.cluster.local"])), None);
        assert_eq!(service_of_domains(&[]), None);
    }

    #[test]
    fn cluster_names_round_trip() {
        let name = cluster_name("reviews.default.svc.cluster.local", 9080, "v2");
        assert_eq!(name, "outbound|9080|v2|reviews.default.svc.cluster.local");
        let parsed = ClusterName::parse(&name).unwrap();
        assert_eq!((parsed.port, parsed.subset.as_str()), (9080, "v2"));
        assert_eq!(ClusterName::parse("outbound|x||h"), None);
        assert_eq!(ClusterName::parse("inbound|80||h"), None);
    }

    #[test]
    fn virtual_host_names_round_trip() {
        let name = virtual_host_name("reviews.default.svc.cluster.local", 9080);
        assert_eq!(name, "reviews.default.svc.cluster.local:9080");
        assert_eq!(parse_virtual_host_name(&name), Some(("reviews.default.svc.cluster.local", 9080)));
        assert_eq!(parse_virtual_host_name("reviews"), None);
        assert_eq!(parse_virtual_host_name("reviews:http"), None);
        assert_eq!(parse_virtual_host_name(":80"), None);
        assert_eq!(parse_virtual_host_name("9080/reviews.default:9080"), None, "an on-demand resource name");
        assert_eq!(address_domain("10.96.0.7".parse().unwrap()), "10.96.0.7");
        assert_eq!(address_domain("fd00::7".parse().unwrap()), "[fd00::7]");
    }

    #[test]
    fn on_demand_names_round_trip() {
        let name = on_demand_name("9080", "Reviews.Shop:9080");
        assert_eq!(name, "9080/reviews.shop:9080");
        assert_eq!(parse_on_demand_name(&name), Some(("9080", "reviews.shop:9080")));
        assert_eq!(parse_on_demand_name("9080/"), None);
        assert_eq!(parse_on_demand_name("reviews"), None);
    }
}
