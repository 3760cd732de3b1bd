//! Which Services a proxy is sent config for. Pure.
//!
//! By default (`namespace` scope) a proxy holds the Services of its own namespace, the hosts the rules of its
//! namespace name, the Services those routes send to, and the Services with a port declared TCP (TCP names no
//! host to ask for, [`declared_tcp_services`]); any other Service it meets is asked for on demand
//! ([`on_demand_service`], VHDS over delta xDS) and then held too. That keeps a proxy's config, and the operator's
//! work per edit, proportional to what the proxy uses rather than to the mesh, without hand-written `Sidecar`
//! resources. The `on-demand` scope starts from the rules alone; `mesh` sends every proxy everything (Istio's
//! default without a Sidecar).

use std::collections::BTreeSet;

pub use weft_xds::ProxyScope;
use weft_xds::parse_on_demand_name;

use super::port_protocol::has_tcp_port;
use crate::index::{ServiceModel, Snapshot, VirtualServiceModel, Visibility};

/// The Service FQDNs a proxy in `namespace` holds before asking for more: the hosts of the VirtualServices that
/// name the namespace (its own ones exported to it, and those of other namespaces exported to it by name) and of
/// its DestinationRules, every destination of those hosts' routes as the namespace sees them, every destination
/// of tcp and tls rules ([`l4_destinations`]), every Service with a port declared TCP ([`declared_tcp_services`])
/// and, in the `namespace` scope, the Services of the namespace (and their destinations). `None` for the `mesh`
/// scope: everything.
pub fn initial_scope(snapshot: &Snapshot, namespace: &str, scope: ProxyScope) -> Option<BTreeSet<String>> {
    let mut hosts: BTreeSet<String> = match scope {
        ProxyScope::Mesh => return None,
        ProxyScope::OnDemand => BTreeSet::new(),
        ProxyScope::Namespace => {
            snapshot.services.values().filter(|s| s.namespace == namespace).map(|s| s.fqdn()).collect()
        }
    };
    let own_rules = snapshot.virtual_services.iter().filter(|vs| names_namespace(vs, namespace));
    hosts.extend(own_rules.flat_map(|vs| vs.hosts.iter().flat_map(|host| snapshot.hosts_named(host))));
    let own_policies = snapshot.destination_rules.iter().filter(|dr| dr.namespace == namespace);
    hosts.extend(own_policies.map(|dr| dr.host.clone()));
    // Before their routes' destinations are added: a Service held is held with where its HTTP routes send.
    hosts.extend(declared_tcp_services(snapshot));
    let destinations: Vec<String> =
        hosts.iter().flat_map(|host| route_destinations(snapshot, host, namespace)).collect();
    hosts.extend(destinations);
    hosts.extend(l4_destinations(snapshot));
    hosts.retain(|host| snapshot.services.contains_key(host));
    Some(hosts)
}

/// Whether a VirtualService is one of `namespace`'s own rules for scoping: in the namespace and visible there, or
/// exported to it by name. One exported to every namespace is each namespace's only where it lives: putting its
/// hosts in every scope would make every proxy hold the mesh.
fn names_namespace(vs: &VirtualServiceModel, namespace: &str) -> bool {
    match vs.visibility(namespace) {
        Some(Visibility::Exported) => true,
        Some(_) => vs.namespace == namespace,
        None => false,
    }
}

/// The Services with a port whose name declares TCP (`tcp`, `mysql`, ...), as FQDNs. Every proxy holds these, so
/// that TCP sent to their cluster IPs goes to their endpoints over mutual TLS: a TCP connection names no host to
/// ask for on demand, and asking for every address a client dials would tie its connections to the operator.
pub fn declared_tcp_services(snapshot: &Snapshot) -> BTreeSet<String> {
    snapshot.services.values().filter(|s| has_tcp_port(s)).map(|s| s.fqdn()).collect()
}

/// Where the tcp and tls rules of every namespace send, as FQDNs. Every proxy holds these Services: the rules'
/// filter chains are on the listeners all proxies share, and a connection, unlike an HTTP request, cannot wait
/// for a cluster asked for on demand.
pub fn l4_destinations(snapshot: &Snapshot) -> BTreeSet<String> {
    let with_rules = snapshot.virtual_services.iter().filter(|vs| vs.spec.has_l4_rules());
    let hosts: BTreeSet<String> =
        with_rules.flat_map(|vs| vs.hosts.iter().flat_map(|h| snapshot.hosts_named(h))).collect();
    hosts.into_iter().flat_map(|host| mesh_route_destinations(snapshot, &host)).collect()
}

/// The Services the routes of `host` send to for proxies in `namespace` (the destinations of the VirtualService
/// that routes it for them, of http, tcp and tls rules, mirrors included: a proxy needs their clusters as much as
/// those of `route[]`), as FQDNs.
pub fn route_destinations(snapshot: &Snapshot, host: &str, namespace: &str) -> Vec<String> {
    snapshot.virtual_service_for(host, namespace).map(|vs| destinations_of(snapshot, vs)).unwrap_or_default()
}

/// Where the rules of the VirtualService in force on the shared listeners for `host` send (see
/// [`Snapshot::mesh_virtual_service`]), as FQDNs.
pub fn mesh_route_destinations(snapshot: &Snapshot, host: &str) -> Vec<String> {
    snapshot.mesh_virtual_service(host).map(|vs| destinations_of(snapshot, vs)).unwrap_or_default()
}

/// Every destination of one VirtualService, as FQDNs.
pub fn destinations_of(snapshot: &Snapshot, vs: &VirtualServiceModel) -> Vec<String> {
    vs.destinations().map(|destination| snapshot.resolve_host(&destination.host, &vs.namespace)).collect()
}

/// The Service and port an on-demand resource name (`PORT/HOST`) asks for, as a proxy in `namespace` would reach
/// it: the host is one of the names the Service's virtual host answers to there (see `routes::domains`), with
/// no port or the route configuration's; or an address a proxy asks for when a TCP connection was sent there:
/// one of its cluster IPs (`10.96.0.9`, `[fd00::9]`), else one of its endpoints on that port (a pod dialled by
/// address, as clients of headless Services do).
pub fn on_demand_service<'a>(snapshot: &'a Snapshot, namespace: &str, name: &str) -> Option<(&'a ServiceModel, u16)> {
    let (route_config, host) = parse_on_demand_name(name)?;
    let port: u16 = route_config.parse().ok()?;
    let bare = match host.rsplit_once(':') {
        // `[fd00::9]`: the colons are the address's.
        Some(_) if host.ends_with(']') => host,
        Some((bare, written)) if written.parse::<u16>().ok()? == port => bare,
        Some(_) => return None,
        None => host,
    };
    let service: &ServiceModel = match weft_xds::domain_address(bare) {
        Some(ip) => match snapshot.service_with_cluster_ip(ip) {
            Some(service) => service,
            None => return endpoint_service(snapshot, std::net::SocketAddr::new(ip, port)),
        },
        // A short name resolves in the proxy's own namespace only, as its virtual host's domains say.
        None => snapshot.services.get(&snapshot.resolve_host(bare, namespace))?,
    };
    service.port(port).is_some().then_some((service, port))
}

/// A Service with an endpoint at `address`, and the Service port that endpoint serves (a Service port 80 may
/// forward to the pod's 8080, which a client dialling the pod reaches directly).
fn endpoint_service(snapshot: &Snapshot, address: std::net::SocketAddr) -> Option<(&ServiceModel, u16)> {
    let service = snapshot.service_with_endpoint(address)?;
    let at = |e: &crate::index::EndpointModel| e.address == address.ip() && e.port == address.port();
    let port = service.ports.iter().find(|p| p.endpoints.iter().any(at))?;
    Some((service, port.port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::snapshot_of_yaml as snapshot;

    fn service(name: &str, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{ports: [{{port: 80}}]}}\n---\n"
        )
    }

    const ROUTE_TO_PAYMENTS: &str = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: checkout, namespace: shop}\nspec:\n  hosts: [checkout]\n  http:\n  - route:\n    - destination: {host: payments.bank.svc.cluster.local}\n";

    #[test]
    fn services_with_a_port_declared_tcp_are_in_every_scope() {
        // `api` serves HTTP and TLS; its own rule sends part of its HTTP to `api-canary`.
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: mysql, namespace: db}\n\
                    spec: {ports: [{name: mysql, port: 3306}]}\n---\n\
                    apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: bank}\n\
                    spec: {ports: [{name: http, port: 80}, {name: https, port: 443}]}\n---\n\
                    apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: api, namespace: bank}\n\
                    spec: {hosts: [api], http: [{route: [{destination: {host: api-canary}, weight: 10}, {destination: {host: api}, weight: 90}]}]}\n---\n"
            .to_string()
            + &service("api-canary", "bank")
            + &service("cart", "shop")
            + &service("ledger", "bank");
        let snapshot = snapshot(&yaml);
        for scope in [ProxyScope::Namespace, ProxyScope::OnDemand] {
            let held = initial_scope(&snapshot, "shop", scope).unwrap_or_default();
            for host in ["mysql.db", "api.bank"] {
                assert!(held.contains(&format!("{host}.svc.cluster.local")), "{scope}: TCP names no host to ask for");
            }
            assert!(held.contains("api-canary.bank.svc.cluster.local"), "{scope}: with where its routes send");
            assert!(!held.contains("ledger.bank.svc.cluster.local"), "{scope}: an HTTP Service elsewhere is asked for");
        }
    }

    #[test]
    fn a_namespace_holds_its_services_and_what_its_rules_route_to() {
        let mesh = [service("checkout", "shop"), service("cart", "shop"), service("payments", "bank")];
        let mesh = format!("{}{}{}{ROUTE_TO_PAYMENTS}---\n", mesh[0], mesh[1], mesh[2]) + &service("ledger", "bank");
        let snapshot = snapshot(&mesh);
        let scope = |namespace, scope| -> Option<Vec<String>> {
            initial_scope(&snapshot, namespace, scope).map(|s| s.into_iter().collect())
        };
        assert_eq!(
            scope("shop", ProxyScope::Namespace).unwrap(),
            ["cart.shop.svc.cluster.local", "checkout.shop.svc.cluster.local", "payments.bank.svc.cluster.local"]
        );
        assert_eq!(
            scope("bank", ProxyScope::Namespace).unwrap(),
            ["ledger.bank.svc.cluster.local", "payments.bank.svc.cluster.local"]
        );
        assert_eq!(
            scope("shop", ProxyScope::OnDemand).unwrap(),
            ["checkout.shop.svc.cluster.local", "payments.bank.svc.cluster.local"],
            "what the namespace's rules name, and where they route"
        );
        assert_eq!(scope("bank", ProxyScope::OnDemand).unwrap(), Vec::<String>::new());
        assert_eq!(scope("shop", ProxyScope::Mesh), None, "everything");
    }

    #[test]
    fn mirrors_are_destinations_too() {
        let mirrored = ROUTE_TO_PAYMENTS.replace(
            "    - destination: {host: payments.bank.svc.cluster.local}\n",
            "    - destination: {host: payments.bank.svc.cluster.local}\n    mirror: {host: audit.bank}\n  - route: [{destination: {host: payments.bank}}]\n    mirrors: [{destination: {host: ledger.bank}}]\n---\n",
        );
        let mesh = mirrored + &service("checkout", "shop") + &service("payments", "bank") + &service("audit", "bank");
        let snapshot = snapshot(&(mesh + &service("ledger", "bank")));
        assert_eq!(
            route_destinations(&snapshot, "checkout.shop.svc.cluster.local", "web"),
            [
                "payments.bank.svc.cluster.local",
                "audit.bank.svc.cluster.local",
                "payments.bank.svc.cluster.local",
                "ledger.bank.svc.cluster.local"
            ]
        );
        let scope: Vec<String> = initial_scope(&snapshot, "shop", ProxyScope::OnDemand).unwrap().into_iter().collect();
        assert_eq!(
            scope,
            [
                "audit.bank.svc.cluster.local",
                "checkout.shop.svc.cluster.local",
                "ledger.bank.svc.cluster.local",
                "payments.bank.svc.cluster.local"
            ]
        );
    }

    #[test]
    fn every_proxy_holds_where_tcp_and_tls_rules_send() {
        let tcp = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: db, namespace: bank}\nspec: {hosts: [db], tcp: [{route: [{destination: {host: replica}}]}]}\n---\n";
        let mesh = tcp.to_string() + &service("db", "bank") + &service("replica", "bank") + &service("cart", "shop");
        let snapshot = snapshot(&mesh);
        let scope: Vec<String> = initial_scope(&snapshot, "shop", ProxyScope::OnDemand).unwrap().into_iter().collect();
        assert_eq!(scope, ["replica.bank.svc.cluster.local"], "a connection to db cannot wait for its cluster");
    }

    #[test]
    fn a_namespace_holds_only_the_rules_exported_to_it() {
        let rule = |name: &str, namespace: &str, export_to: &str, host: &str, to: &str| {
            format!(
                "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{exportTo: {export_to}, hosts: [{host}], http: [{{route: [{{destination: {{host: {to}}}}}]}}]}}\n---\n"
            )
        };
        let services = ["ledger", "audit", "archive", "payments"].map(|name| service(name, "bank")).concat();
        let mesh = services
            + &service("cart", "shop")
            + &rule("ledger", "bank", "[\".\"]", "ledger", "audit")
            + &rule("payments", "bank", "[shop]", "payments", "payments")
            + &rule("ledger-for-shop", "shop", "[\".\"]", "ledger.bank", "archive.bank");
        let snapshot = snapshot(&mesh);
        let scope = |namespace| -> Vec<String> {
            initial_scope(&snapshot, namespace, ProxyScope::OnDemand).unwrap().into_iter().collect()
        };
        assert_eq!(scope("bank"), ["audit.bank.svc.cluster.local", "ledger.bank.svc.cluster.local"], "its own");
        assert_eq!(
            scope("shop"),
            ["archive.bank.svc.cluster.local", "ledger.bank.svc.cluster.local", "payments.bank.svc.cluster.local"],
            "its own rule for ledger, not bank's, and the rule exported to it by name"
        );
        assert_eq!(scope("web"), Vec::<String>::new(), "nothing is exported to web");
        let ledger = "ledger.bank.svc.cluster.local";
        assert_eq!(route_destinations(&snapshot, ledger, "shop"), ["archive.bank.svc.cluster.local"]);
        assert_eq!(route_destinations(&snapshot, ledger, "bank"), ["audit.bank.svc.cluster.local"]);
        assert_eq!(route_destinations(&snapshot, ledger, "web"), Vec::<String>::new(), "the plain route");
    }

    #[test]
    fn on_demand_names_resolve_as_the_virtual_host_domains_do() {
        let snapshot = snapshot(&(service("payments", "bank") + &service("cart", "shop")));
        let found = |namespace, name| on_demand_service(&snapshot, namespace, name).map(|(s, p)| (s.fqdn(), p));
        let payments = Some(("payments.bank.svc.cluster.local".to_string(), 80));
        for name in
            ["80/payments.bank", "80/payments.bank:80", "80/payments.bank.svc", "80/payments.bank.svc.cluster.local"]
        {
            assert_eq!(found("shop", name), payments, "{name}");
        }
        assert_eq!(found("bank", "80/payments"), payments, "a short name in its own namespace");
        assert_eq!(found("shop", "80/payments"), None, "a short name does not reach another namespace");
        assert_eq!(found("shop", "80/payments.bank:81"), None, "another port");
        assert_eq!(found("shop", "81/payments.bank"), None, "no such port");
        assert_eq!(found("shop", "80/unknown.bank"), None);
        assert_eq!(found("shop", "cart"), None, "not an on-demand name");
    }

    /// A proxy asks by address for the Service a TCP connection was sent to: its cluster IPs, either family.
    #[test]
    fn an_on_demand_address_resolves_to_the_service_with_that_cluster_ip() {
        let store = "apiVersion: v1\nkind: Service\nmetadata: {name: store, namespace: data}\n\
                     spec: {clusterIP: 10.96.0.9, clusterIPs: [10.96.0.9, \"fd00::9\"], ports: [{port: 5432}]}\n---\n";
        let snapshot = snapshot(&(store.to_string() + &service("cart", "shop")));
        let found = |name| on_demand_service(&snapshot, "shop", name).map(|(s, p)| (s.fqdn(), p));
        let expected = Some(("store.data.svc.cluster.local".to_string(), 5432));
        for name in ["5432/10.96.0.9", "5432/10.96.0.9:5432", "5432/[fd00::9]", "5432/[fd00::9]:5432"] {
            assert_eq!(found(name), expected, "{name}");
        }
        assert_eq!(found("80/10.96.0.9"), None, "not a port of the Service");
        let headless = "apiVersion: v1\nkind: Service\nmetadata: {name: brokers, namespace: data}\n\
                        spec: {clusterIP: None, ports: [{name: tcp, port: 9092}]}\n---\n\
                        apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                        metadata: {name: brokers-1, namespace: data, labels: {kubernetes.io/service-name: brokers}}\n\
                        addressType: IPv4\nports: [{name: tcp, port: 9092}]\nendpoints: [{addresses: [10.1.0.7]}]\n";
        let snapshot = crate::index::snapshot_of_yaml(headless);
        let broker = |name| on_demand_service(&snapshot, "shop", name).map(|(s, p)| (s.fqdn(), p));
        assert_eq!(broker("9092/10.1.0.7"), Some(("brokers.data.svc.cluster.local".to_string(), 9092)), "a pod");
        assert_eq!(broker("9093/10.1.0.7"), None, "on another port");
        let forwarding = headless.replace("port: 9092}]}", "port: 80, targetPort: 9092}]}");
        let snapshot = crate::index::snapshot_of_yaml(&forwarding);
        let forwarded = on_demand_service(&snapshot, "shop", "9092/10.1.0.7").map(|(s, p)| (s.fqdn(), p));
        assert_eq!(
            forwarded,
            Some(("brokers.data.svc.cluster.local".to_string(), 80)),
            "the pod's port, not the Service's"
        );
        assert_eq!(found("5432/10.96.0.10"), None, "nobody's cluster IP");
        assert_eq!(found("5432/[fd00::9]:80"), None, "another port written");
    }
}
