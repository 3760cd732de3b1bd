//! The protocol a Service port declares by its name, Istio's `<protocol>[-<suffix>]` convention: it picks the
//! HTTP version sent upstream ([`super::clusters`]) and whether the outbound listener of that port number must
//! detect a connection's protocol from its first bytes, or can take it for HTTP or for TCP at once
//! ([`super::listeners`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::index::{ServiceModel, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortProtocol {
    Http1,
    Http2,
    /// No HTTP protocol declared: unnamed, unknown, or a non-HTTP one (`tcp-`, `tls-`, `mysql-`, ...).
    Undeclared,
}

impl PortProtocol {
    pub fn of(port_name: &str) -> Self {
        let protocol = port_name.split('-').next().unwrap_or_default();
        let is = |name: &str| protocol.eq_ignore_ascii_case(name);
        if is("http2") || is("grpc") {
            Self::Http2
        } else if is("http") {
            Self::Http1
        } else {
            Self::Undeclared
        }
    }
}

/// Whether a port's name declares a protocol other than HTTP, one Istio forwards as TCP (`tcp`, `tls`, `https`,
/// `mongo`, `mysql`, `redis`, with or without a suffix, any case).
pub(crate) fn declares_tcp(port_name: &str) -> bool {
    let protocol = port_name.split('-').next().unwrap_or_default();
    ["tcp", "tls", "https", "mongo", "mysql", "redis"].iter().any(|p| protocol.eq_ignore_ascii_case(p))
}

/// Whether some port of `service` declares a protocol other than HTTP ([`declares_tcp`]).
pub(crate) fn has_tcp_port(service: &ServiceModel) -> bool {
    service.ports.iter().any(|port| declares_tcp(&port.name))
}

/// The port numbers on which every Service port declares a protocol other than HTTP ([`declares_tcp`]): there the
/// listener can take every connection for TCP at once, without waiting to see whether it is HTTP (which keeps a
/// server-first protocol's client waiting for the detection timeout).
pub(crate) fn tcp_ports(snapshot: &Snapshot) -> BTreeSet<u16> {
    ports_where_every_name(snapshot, declares_tcp)
}

/// The port numbers on which every Service port declares HTTP (HTTP/1.1, HTTP/2 or gRPC): only there can the one
/// listener of the port serve HTTP without looking at the first bytes (a Service that does not declare it may
/// carry a server-first protocol there, which would wait forever for a client that waits for it). One pass over
/// the Services, whatever the number of ports.
pub(crate) fn http_ports(snapshot: &Snapshot) -> BTreeSet<u16> {
    ports_where_every_name(snapshot, |name| PortProtocol::of(name) != PortProtocol::Undeclared)
}

/// The port numbers where the name of every Service port with that number says `declares`, in one pass.
fn ports_where_every_name(snapshot: &Snapshot, declares: impl Fn(&str) -> bool) -> BTreeSet<u16> {
    let mut every: BTreeMap<u16, bool> = BTreeMap::new();
    for port in snapshot.services.values().flat_map(|s| s.ports.iter()) {
        *every.entry(port.port).or_insert(true) &= declares(&port.name);
    }
    every.into_iter().filter_map(|(port, all)| all.then_some(port)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::snapshot_of_yaml;
    use weft_xds::detection::{DETECTION_TIMEOUT, Detection, detection_of};

    #[test]
    fn a_port_detects_unless_every_service_on_it_declares_http() {
        let snapshot = snapshot_of_yaml(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: shop}\n\
             spec: {ports: [{name: http, port: 80}, {name: tcp-db, port: 3306}, {name: grpc, port: 9000}]}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: shop}\n\
             spec: {ports: [{name: grpc-api, port: 80}, {port: 9000}]}\n",
        );
        let detection = |port: u16| {
            let listener =
                crate::translate::listeners(&snapshot).into_iter().find(|l| l.name == format!("0.0.0.0_{port}"));
            listener.map(|l| detection_of(&l))
        };
        assert_eq!(detection(80), Some(Detection::Off), "HTTP/1.1 and gRPC declared: HTTP at once");
        assert_eq!(detection(3306), Some(Detection::Within(Some(DETECTION_TIMEOUT))), "a TCP port");
        assert_eq!(detection(9000), Some(Detection::Within(Some(DETECTION_TIMEOUT))), "one Service declares nothing");
        assert_eq!(http_ports(&snapshot), BTreeSet::from([80]), "no other port, and none where no Service is");
    }

    #[test]
    fn a_port_is_tcp_when_every_service_on_it_declares_a_tcp_protocol() {
        let snapshot = snapshot_of_yaml(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: shop}\n\
             spec: {ports: [{name: mysql, port: 3306}, {name: tcp-cache, port: 6379}, {name: tls, port: 443}]}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: shop}\n\
             spec: {ports: [{name: Redis-main, port: 6379}, {port: 443}, {name: http, port: 80}]}\n",
        );
        assert_eq!(tcp_ports(&snapshot), BTreeSet::from([3306, 6379]), "443: one Service declares nothing");
        for (name, tcp) in [("tcp", true), ("TLS-x", true), ("https", true), ("mongo", true), ("http", false)] {
            assert_eq!(declares_tcp(name), tcp, "{name}");
        }
        assert!(!declares_tcp("") && !declares_tcp("tcpx") && !declares_tcp("grpc"));
    }

    #[test]
    fn the_name_prefix_declares_the_protocol_in_any_case() {
        let cases = [
            ("http", PortProtocol::Http1),
            ("HTTP-web", PortProtocol::Http1),
            ("http2", PortProtocol::Http2),
            ("grpc-api", PortProtocol::Http2),
            ("grpc-web", PortProtocol::Http2),
            ("tcp-db", PortProtocol::Undeclared),
            ("https", PortProtocol::Undeclared),
            ("web", PortProtocol::Undeclared),
            ("", PortProtocol::Undeclared),
        ];
        for (name, protocol) in cases {
            assert_eq!(PortProtocol::of(name), protocol, "{name:?}");
        }
    }
}
