//! TCP and TLS routes of a listener (Istio's `tcp[]` and `tls[]`, Envoy's filter chains with a TCP proxy): which
//! connections they take (destination address ranges, for TLS also the ClientHello's server name) and the
//! weighted clusters they go to. Pure.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use super::WeightedTarget;

/// One filter chain of a listener that proxies TCP to weighted clusters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct L4Route {
    pub name: String,
    /// Destination addresses it takes; empty: any.
    pub destinations: Vec<Cidr>,
    /// For TLS routes: the server names (SNI) it takes, exact or `*.suffix`.
    pub server_names: Vec<String>,
    /// Only TLS connections (a ClientHello first).
    pub tls: bool,
    pub targets: Vec<WeightedTarget>,
    /// Its connections' idle timeout: `None` the proxy's (`--idle-timeout`), zero none.
    #[serde(serialize_with = "super::policy::optional_ms")]
    pub idle_timeout: Option<Duration>,
}

/// An address range, `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u128::from(u32::from(net)) << 96, u128::from(u32::from(ip)) << 96, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    let prefix = u32::from(prefix.min(128));
    prefix == 0 || (a ^ b) >> (128 - prefix) == 0
}

/// How well a route's destinations fit an address: the longest matching prefix (`Some(0)` for "any").
fn fit(route: &L4Route, ip: IpAddr) -> Option<u8> {
    if route.destinations.is_empty() {
        return Some(0);
    }
    route.destinations.iter().filter(|c| c.contains(ip)).map(|c| c.prefix).max()
}

/// Whether `name` is among `patterns`: 2 for an exact match, 1 for a `*.suffix` one (Envoy prefers exact).
fn name_fit(patterns: &[String], name: &str) -> Option<u8> {
    let name = name.to_ascii_lowercase();
    if patterns.iter().any(|p| p.eq_ignore_ascii_case(&name)) {
        return Some(2);
    }
    let wildcard = |p: &String| {
        p.strip_prefix('*').is_some_and(|suffix| {
            suffix.starts_with('.') && name.ends_with(&suffix.to_ascii_lowercase()) && name.len() > suffix.len()
        })
    };
    patterns.iter().any(wildcard).then_some(1)
}

/// Whether any TLS route could take a connection to `ip` (so its ClientHello is worth reading).
pub fn wants_server_name(routes: &[L4Route], ip: IpAddr) -> bool {
    routes.iter().any(|r| r.tls && fit(r, ip).is_some())
}

/// The route a connection to `ip` takes, given the server name of its ClientHello (`None`: not TLS, or no SNI):
/// a TLS route whose server names match (exact before wildcard), else a TCP route; the most specific
/// destination range first.
pub fn l4_route<'a>(routes: &'a [L4Route], ip: IpAddr, server_name: Option<&str>) -> Option<&'a L4Route> {
    let tls = server_name.and_then(|sni| {
        // Reversed: `max_by_key` keeps the last of equals, and the first route written must win a tie.
        routes
            .iter()
            .rev()
            .filter(|r| r.tls)
            .filter_map(|r| Some(((name_fit(&r.server_names, sni)?, fit(r, ip)?), r)))
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, r)| r)
    });
    tls.or_else(|| {
        routes
            .iter()
            .rev()
            .filter(|r| !r.tls)
            .filter_map(|r| Some((fit(r, ip)?, r)))
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, r)| r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, destinations: &[(&str, u8)], server_names: &[&str], tls: bool) -> L4Route {
        L4Route {
            name: name.into(),
            destinations: destinations.iter().map(|(a, p)| Cidr { address: a.parse().unwrap(), prefix: *p }).collect(),
            server_names: server_names.iter().map(|s| s.to_string()).collect(),
            tls,
            targets: vec![WeightedTarget::new(name, 1)],
            idle_timeout: None,
        }
    }

    #[test]
    fn address_ranges_contain_what_their_prefix_says() {
        let net = Cidr { address: "10.96.0.0".parse().unwrap(), prefix: 12 };
        assert!(net.contains("10.100.3.4".parse().unwrap()));
        assert!(!net.contains("10.112.0.1".parse().unwrap()));
        assert!(Cidr { address: "0.0.0.0".parse().unwrap(), prefix: 0 }.contains("1.2.3.4".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let v6 = Cidr { address: "fd00::".parse().unwrap(), prefix: 8 };
        assert!(v6.contains("fd12::1".parse().unwrap()));
    }

    #[test]
    fn a_connection_takes_the_most_specific_route() {
        let routes = vec![
            route("db", &[("10.96.0.10", 32)], &[], false),
            route("subnet", &[("10.96.0.0", 16)], &[], false),
            route("login", &[("10.96.0.20", 32)], &["login.example.com"], true),
            route("wild", &[("10.96.0.20", 32)], &["*.example.com"], true),
        ];
        let name = |ip: &str, sni| l4_route(&routes, ip.parse().unwrap(), sni).map(|r| r.name.as_str());
        assert_eq!(name("10.96.0.10", None), Some("db"));
        assert_eq!(name("10.96.5.5", None), Some("subnet"));
        assert_eq!(name("10.97.0.1", None), None);
        assert_eq!(name("10.96.0.20", Some("LOGIN.example.com")), Some("login"), "exact before wildcard");
        assert_eq!(name("10.96.0.20", Some("shop.example.com")), Some("wild"));
        assert_eq!(name("10.96.0.20", Some("example.com")), Some("subnet"), "no TLS route: the TCP one");
        assert!(wants_server_name(&routes, "10.96.0.20".parse().unwrap()));
        let tie =
            vec![route("first", &[("10.96.0.30", 32)], &[], false), route("second", &[("10.96.0.30", 32)], &[], false)];
        assert_eq!(l4_route(&tie, "10.96.0.30".parse().unwrap(), None).map(|r| r.name.as_str()), Some("first"));
        assert!(!wants_server_name(&routes, "10.96.0.10".parse().unwrap()));
    }
}
