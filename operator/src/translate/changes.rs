//! What a new snapshot changes for translation, so that only that is translated again: the Services whose
//! clusters and endpoint assignments may differ, those whose virtual hosts may, and whether the scopes may. Pure.
//!
//! The dependencies, from the translation functions:
//! - a Service's clusters and endpoints: the Service (ports, endpoints and their pods' labels) and every
//!   DestinationRule that may apply to it (exactly or by wildcard; which one does depends on the proxy's namespace
//!   and their `exportTo`);
//! - its virtual hosts: its ports and cluster IP, every VirtualService naming it or matching it by wildcard
//!   (which one routes it depends on the proxy's namespace and their `exportTo`), and for each destination of
//!   those, which Service the name resolves to, (for a destination without a port) that Service's ports, and
//!   (hash policies) its DestinationRules; without a VirtualService, its own DestinationRules;
//! - the scopes: which Services exist and which declare a TCP port, the hosts, namespaces, `exportTo` and
//!   destinations of the rules, and where tcp and tls rules send;
//! - which route configurations there are: the set of ports of all Services;
//! - the listeners: that set of ports, which of them every Service declares HTTP (or TCP) on, and the tcp and tls
//!   rules (see [`listeners_differ`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use weft_crds::virtual_service::{TcpRoute, TlsRoute};

use super::port_protocol::{has_tcp_port, http_ports, tcp_ports};
use super::ports;
use super::scope::{destinations_of, l4_destinations, mesh_route_destinations};
use crate::index::{DestinationRuleModel, RuleModel, ServiceModel, Snapshot, VirtualServiceModel, is_wildcard};

/// What translation must redo after a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Services (FQDN) whose clusters or endpoint assignments may differ.
    pub clusters: BTreeSet<String>,
    /// Services whose virtual hosts may differ.
    pub routes: BTreeSet<String>,
    /// Whether which Services a proxy holds may differ.
    pub scopes: bool,
    /// Whether the set of ports differs: every proxy has a listener and a route configuration per port.
    pub ports: bool,
    /// Whether the listeners may differ: the set of ports, or what the tcp and tls rules' filter chains read.
    pub listeners: bool,
}

impl Changes {
    /// Whether the clusters and endpoint assignments of `hosts` are as they were.
    pub fn spares_clusters_of(&self, hosts: &BTreeSet<String>) -> bool {
        !touches(&self.clusters, hosts)
    }

    /// Whether the virtual hosts of `host` are as they were (on a port that is still there).
    pub fn spares_routes_of_host(&self, host: &str) -> bool {
        !self.ports && !self.routes.contains(host)
    }

    /// Whether route configurations holding the virtual hosts of `hosts` (and no others) are as they were.
    pub fn spares_routes_of(&self, hosts: &BTreeSet<String>) -> bool {
        !self.ports && !touches(&self.routes, hosts)
    }
}

fn touches(changed: &BTreeSet<String>, hosts: &BTreeSet<String>) -> bool {
    changed.iter().any(|host| hosts.contains(host))
}

/// What differs from `before` to `after`, for translation.
pub fn between(before: &Snapshot, after: &Snapshot) -> Changes {
    let mut changes = Changes::default();
    let reshaped = compare_services(before, after, &mut changes);
    compare_policies(before, after, &mut changes);
    compare_rules(before, after, &mut changes);
    if !reshaped.is_empty() {
        changes.ports = ports(before) != ports(after);
        // A Service that came, went or changed ports changes the routes that send to it: the name may resolve
        // elsewhere now, and a destination without a port takes the Service's only one.
        for host in rule_hosts(before, after) {
            let (was, is) = (candidates(before, host), candidates(after, host));
            if was != is {
                changes.scopes = true;
            }
            if was != is || is.iter().flat_map(|c| &c.3).any(|destination| reshaped.contains(destination)) {
                changes.routes.insert(host.clone());
            }
        }
    }
    // A port whose Services all declare HTTP (or all TCP) is served without detecting the protocol; a renamed port
    // may change that.
    let detection_changed =
        !reshaped.is_empty() && (http_ports(before) != http_ports(after) || tcp_ports(before) != tcp_ports(after));
    changes.listeners = changes.ports || detection_changed || listeners_differ(before, after);
    // Every scope holds where tcp and tls rules send; what they read differs whenever that may.
    changes.scopes |= changes.listeners && l4_destinations(before) != l4_destinations(after);
    changes
}

/// Whether what the tcp and tls filter chains read differs (the set of ports aside): the VirtualServices with such
/// rules (names, hosts, rules), which of them is in force for each of their hosts, where their rules send (names
/// resolve to other Services as Services come and go), and the cluster IPs and ports of those hosts and
/// destinations. Costs nothing in a mesh without tcp and tls rules.
fn listeners_differ(before: &Snapshot, after: &Snapshot) -> bool {
    let (was, is) = (l4_rules(before), l4_rules(after));
    if was != is {
        return true;
    }
    let in_force = |snapshot: &Snapshot, host: &str| {
        snapshot.mesh_virtual_service(host).map(|vs| (vs.namespace.clone(), vs.name.clone()))
    };
    // Only the cluster IP and the port numbers of a Service shape chains (its endpoints do not).
    let shape = |snapshot: &Snapshot, fqdn: &str| {
        snapshot.services.get(fqdn).map(|s| (s.cluster_ips.clone(), s.ports.iter().map(|p| p.port).collect::<Vec<_>>()))
    };
    // The DestinationRule of a destination sets its chains' idle timeout.
    fn rule<'a>(snapshot: &'a Snapshot, fqdn: &str) -> Option<&'a weft_crds::DestinationRuleSpec> {
        snapshot.default_destination_rule(fqdn).map(|dr| &dr.spec)
    }
    // A wildcard host names the Services it matches, in either snapshot.
    let named = |host: &String| before.hosts_named(host).into_iter().chain(after.hosts_named(host));
    let hosts: BTreeSet<String> = is.iter().flat_map(|(_, _, hosts, _, _)| hosts.iter()).flat_map(named).collect();
    hosts.iter().any(|host| {
        let (sent_to, sends_to) = (mesh_route_destinations(before, host), mesh_route_destinations(after, host));
        in_force(before, host) != in_force(after, host)
            || sent_to != sends_to
            || std::iter::once(host).chain(&sends_to).any(|fqdn| shape(before, fqdn) != shape(after, fqdn))
            || sends_to.iter().any(|fqdn| rule(before, fqdn) != rule(after, fqdn))
    })
}

/// The VirtualServices with tcp or tls rules, as far as the filter chains read them.
type L4Rules<'a> = Vec<(&'a String, &'a String, &'a Vec<String>, &'a Vec<TcpRoute>, &'a Vec<TlsRoute>)>;

fn l4_rules(snapshot: &Snapshot) -> L4Rules<'_> {
    let with_rules = snapshot.virtual_services.iter().filter(|vs| vs.spec.has_l4_rules());
    with_rules.map(|vs| (&vs.namespace, &vs.name, &vs.hosts, &vs.spec.tcp, &vs.spec.tls)).collect()
}

/// Notes Services that changed; returns those that came, went or changed ports.
fn compare_services(before: &Snapshot, after: &Snapshot, changes: &mut Changes) -> BTreeSet<String> {
    let same_shape = |a: Option<&ServiceModel>, b: Option<&ServiceModel>| match (a, b) {
        (Some(a), Some(b)) => same_lists(&a.ports, &b.ports, |x, y| x.port == y.port && x.name == y.name),
        (a, b) => a.is_none() && b.is_none(),
    };
    let mut reshaped = BTreeSet::new();
    for (fqdn, was, is) in differing_services(before, after) {
        changes.clusters.insert(fqdn.clone());
        if !same_shape(was, is) {
            changes.routes.insert(fqdn.clone());
            reshaped.insert(fqdn.clone());
            // Every scope holds the Services with a port declared TCP; a renamed port may make one such.
            let tcp = |s: Option<&ServiceModel>| s.is_some_and(has_tcp_port);
            changes.scopes |= was.is_none() || is.is_none() || tcp(was) != tcp(is);
        } else if was.map(|s| &s.cluster_ips) != is.map(|s| &s.cluster_ips) {
            // Its virtual hosts claim its cluster IP.
            changes.routes.insert(fqdn.clone());
        }
    }
    reshaped
}

/// The Services that came, went or changed between two snapshots, with their models before and after; a model
/// the two share (one `Arc`, as the index keeps an unchanged Service's) passed over without looking inside. A
/// change costs a step per Service, not a comparison of every model.
fn differing_services<'a>(
    before: &'a Snapshot,
    after: &'a Snapshot,
) -> Vec<(&'a String, Option<&'a ServiceModel>, Option<&'a ServiceModel>)> {
    let mut differing = Vec::new();
    in_step(before.services.iter(), after.services.iter(), |fqdn, was, is| {
        if !matches!((was, is), (Some(a), Some(b)) if Arc::ptr_eq(a, b) || a == b) {
            differing.push((fqdn, was.map(Arc::as_ref), is.map(Arc::as_ref)));
        }
    });
    differing
}

/// The rules that came, went or changed between two lists in namespace/name order, as they were and as they
/// are; a model the two share (one `Arc`, as the index keeps an unchanged rule's) passed over.
fn differing_rules<'a, T: RuleModel>(before: &'a [Arc<T>], after: &'a [Arc<T>]) -> Vec<&'a T> {
    let mut differing = Vec::new();
    let keyed = |rule: &'a Arc<T>| (rule.namespace_name(), rule);
    in_step(before.iter().map(keyed), after.iter().map(keyed), |_, was, is| {
        if !matches!((was, is), (Some(a), Some(b)) if Arc::ptr_eq(a, b) || a.same_config(b)) {
            differing.extend(was.into_iter().chain(is).map(Arc::as_ref));
        }
    });
    differing
}

/// Walks two sequences sorted by distinct keys in step, calling `each` once per key with what either side has.
fn in_step<'a, K: Ord, T: 'a>(
    before: impl Iterator<Item = (K, &'a T)>,
    after: impl Iterator<Item = (K, &'a T)>,
    mut each: impl FnMut(K, Option<&'a T>, Option<&'a T>),
) {
    use std::cmp::Ordering;
    let (mut was, mut is) = (before.peekable(), after.peekable());
    loop {
        let order = match (was.peek(), is.peek()) {
            (None, None) => return,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        match order {
            Ordering::Less => was.next().into_iter().for_each(|(key, a)| each(key, Some(a), None)),
            Ordering::Greater => is.next().into_iter().for_each(|(key, b)| each(key, None, Some(b))),
            Ordering::Equal => {
                if let (Some((key, a)), Some((_, b))) = (was.next(), is.next()) {
                    each(key, Some(a), Some(b));
                }
            }
        }
    }
}

fn compare_policies(before: &Snapshot, after: &Snapshot, changes: &mut Changes) {
    // Only the hosts of rules that differ may have other candidates: a change costs its rules, not the mesh's.
    let differing = differing_rules(&before.destination_rules, &after.destination_rules);
    let mut hosts: BTreeSet<&String> = differing.iter().map(|dr| &dr.host).filter(|h| !is_wildcard(h)).collect();
    // A wildcard rule may apply to any Service (one that comes or goes is compared too).
    if differing.iter().any(|dr| is_wildcard(&dr.host)) {
        hosts.extend(before.policy_hosts().chain(after.policy_hosts()));
        hosts.extend(before.services.keys().chain(after.services.keys()));
    }
    for host in hosts {
        // Every rule that may apply to the host for some namespace: which one does depends on all of them.
        let (was, is) = (before.destination_rule_candidates(host), after.destination_rule_candidates(host));
        if !same_lists(&was, &is, |a, b| a.same_config(b)) {
            changes.clusters.insert(host.clone());
            // Routes carry the hash policy of their destination's rule (consistent hashing): the host's own
            // default route, and the routes that send to it.
            changes.routes.insert(host.clone());
            // A wildcard sender shapes the virtual hosts of the Services it matches, in either snapshot.
            let senders = after.virtual_services.iter().filter(|vs| destinations_of(after, vs).contains(host));
            let named = |h: &String| before.hosts_named(h).into_iter().chain(after.hosts_named(h));
            let senders: Vec<String> = senders.flat_map(|vs| vs.hosts.iter().flat_map(named)).collect();
            changes.routes.extend(senders);
        }
    }
    // A DestinationRule puts its host in its namespace's scope, whether or not it is the one in force.
    let same_scope = |a: &Arc<DestinationRuleModel>, b: &Arc<DestinationRuleModel>| {
        Arc::ptr_eq(a, b) || (a.namespace == b.namespace && a.host == b.host)
    };
    changes.scopes |= !same_lists(&before.destination_rules, &after.destination_rules, same_scope);
}

fn compare_rules(before: &Snapshot, after: &Snapshot, changes: &mut Changes) {
    // Only the hosts of rules that differ may have other candidates.
    let differing = differing_rules(&before.virtual_services, &after.virtual_services);
    let hosts: BTreeSet<&String> = match differing.iter().flat_map(|vs| &vs.hosts).any(|h| is_wildcard(h)) {
        true => rule_hosts(before, after),
        false => differing.iter().flat_map(|vs| &vs.hosts).collect(),
    };
    for host in hosts {
        let (was, is): (Vec<_>, Vec<_>) =
            (before.virtual_service_candidates(host), after.virtual_service_candidates(host));
        if !same_lists(&was, &is, |a, b| a.same_config(b)) {
            changes.routes.insert(host.clone());
            changes.scopes |= candidates(before, host) != candidates(after, host);
        }
    }
    // A VirtualService puts its hosts in the scopes of the namespaces it names, whether or not it is the one in
    // force.
    let same_scope = |a: &Arc<VirtualServiceModel>, b: &Arc<VirtualServiceModel>| {
        Arc::ptr_eq(a, b) || (&a.namespace, &a.hosts, &a.spec.export_to) == (&b.namespace, &b.hosts, &b.spec.export_to)
    };
    changes.scopes |= !same_lists(&before.virtual_services, &after.virtual_services, same_scope);
}

/// The hosts whose virtual hosts a VirtualService may shape, in either snapshot: those one names exactly and, when
/// one has a wildcard host, every Service (it may match any; a Service that comes or goes is compared too).
fn rule_hosts<'a>(before: &'a Snapshot, after: &'a Snapshot) -> BTreeSet<&'a String> {
    let mut hosts: BTreeSet<&String> = before.routed_hosts().chain(after.routed_hosts()).collect();
    if before.has_wildcard_rules() || after.has_wildcard_rules() {
        hosts.extend(before.services.keys().chain(after.services.keys()));
    }
    hosts
}

/// What a scope reads of the VirtualServices naming `host`: which one routes it for a namespace (their names and
/// `exportTo`) and where each sends, as FQDNs.
type Candidate<'a> = (&'a String, &'a String, &'a Vec<String>, Vec<String>);

fn candidates<'a>(snapshot: &'a Snapshot, host: &str) -> Vec<Candidate<'a>> {
    let naming = snapshot.virtual_service_candidates(host).into_iter();
    naming.map(|vs| (&vs.namespace, &vs.name, &vs.spec.export_to, destinations_of(snapshot, vs))).collect()
}

fn same_lists<T>(a: &[T], b: &[T], same: impl Fn(&T, &T) -> bool) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::snapshot_of_yaml as snapshot;

    const MESH: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {selector: {app: reviews}, ports: [{port: 80}]}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: r1, namespace: shop, labels: {app: reviews}}\nstatus: {podIP: 10.0.0.1}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {name: ratings, namespace: shop}\nspec: {ports: [{port: 80}]}\n---\n\
apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\n\
spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}, weight: 90}, {destination: {host: ratings}, weight: 10}]}]}\n";

    fn fqdns(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| format!("{n}.shop.svc.cluster.local")).collect()
    }

    #[test]
    fn each_kind_of_change_asks_for_what_depends_on_it() {
        let base = snapshot(MESH);
        assert_eq!(between(&base, &base), Changes::default(), "nothing");
        let weights = between(&base, &snapshot(&MESH.replace("weight: 90", "weight: 80").replace("10}", "20}")));
        assert_eq!(weights, Changes { routes: fqdns(&["reviews"]), ..Changes::default() }, "a weight edit");
        let endpoint = between(&base, &snapshot(&MESH.replace("10.0.0.1", "10.0.0.2")));
        assert_eq!(endpoint, Changes { clusters: fqdns(&["reviews"]), ..Changes::default() }, "an endpoint");
        let port =
            between(
                &base,
                &snapshot(&MESH.replace(
                    "ports: [{port: 80}]}\n---\napiVersion: net",
                    "ports: [{port: 81}]}\n---\napiVersion: net",
                )),
            );
        assert_eq!(port.clusters, fqdns(&["ratings"]));
        assert_eq!(port.routes, fqdns(&["ratings", "reviews"]), "and the routes that send to it");
        assert!(port.ports && !port.scopes, "a new port, the same Services");
        let gone = between(&base, &snapshot(&MESH.replace("name: ratings", "name: stars")));
        assert!(gone.scopes, "a Service gone and one new");
        let destination = between(&base, &snapshot(&MESH.replace("host: ratings}", "host: reviews}")));
        assert!(destination.scopes && destination.clusters.is_empty(), "a rule sending elsewhere");
        let mirror =
            between(&base, &snapshot(&MESH.replace("weight: 10}]}]}", "weight: 10}], mirror: {host: stars}}]}")));
        assert!(mirror.scopes && mirror.routes == fqdns(&["reviews"]), "a new mirror is a new destination");
        assert!(weights.spares_clusters_of(&fqdns(&["ratings"])) && weights.spares_routes_of(&fqdns(&["ratings"])));
        assert!(!weights.spares_routes_of(&fqdns(&["reviews"])));
        assert!(weights.spares_clusters_of(&fqdns(&["reviews"])), "a weight edit spares clusters");
        assert!(port.listeners && !weights.listeners && !endpoint.listeners, "HTTP rules shape no listener");
        let private = between(&base, &snapshot(&MESH.replace("spec: {hosts", "spec: {exportTo: [\".\"], hosts")));
        assert!(private.scopes && private.routes == fqdns(&["reviews"]), "who sees a rule");
        assert!(!private.listeners);
        let wildcard = MESH.to_string()
            + "---\napiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: all, namespace: ops}\nspec: {hosts: [\"*.shop.svc.cluster.local\"], http: [{route: [{destination: {host: reviews.shop}}], timeout: 1s}]}\n";
        let appears = between(&base, &snapshot(&wildcard));
        assert_eq!(appears.routes, fqdns(&["ratings", "reviews"]), "every Service the wildcard matches");
        let edited = between(&snapshot(&wildcard), &snapshot(&wildcard.replace("timeout: 1s", "timeout: 2s")));
        assert_eq!(edited.routes, fqdns(&["ratings", "reviews"]));
        assert!(!edited.scopes, "a timeout sends nowhere new");
    }

    #[test]
    fn a_destination_rule_changes_the_clusters_of_every_service_it_may_apply_to() {
        let base = snapshot(MESH);
        let rule = |namespace: &str, host: &str, export_to: &str| {
            format!(
                "{MESH}---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: r, namespace: {namespace}}}\nspec: {{host: \"{host}\", exportTo: {export_to}}}\n"
            )
        };
        let elsewhere = between(&base, &snapshot(&rule("web", "reviews.shop", "[\".\"]")));
        assert_eq!(elsewhere.clusters, fqdns(&["reviews"]), "a rule of another namespace, for that one only");
        assert!(elsewhere.scopes, "it puts its host in web's scope");
        let wildcard = between(&base, &snapshot(&rule("weft-system", "*.shop.svc.cluster.local", "[]")));
        assert_eq!(wildcard.clusters, fqdns(&["ratings", "reviews"]), "every Service the wildcard matches");
        assert_eq!(wildcard.routes, fqdns(&["ratings", "reviews"]), "their routes carry its hash policy");
        let private = snapshot(&rule("web", "reviews.shop", "[\".\"]"));
        let exported = between(&private, &snapshot(&rule("web", "reviews.shop", "[shop]")));
        assert_eq!(exported.clusters, fqdns(&["reviews"]), "who applies it");
    }

    const TCP: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\nspec: {clusterIP: 10.96.0.9, ports: [{port: 3306}]}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {name: replica, namespace: shop}\nspec: {clusterIP: 10.96.0.8, ports: [{port: 3306}]}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: shop}\nspec: {clusterIP: 10.96.0.7, ports: [{name: a, port: 3306}, {name: b, port: 3307}]}\n---\n\
apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: db, namespace: shop}\n\
spec: {hosts: [db], tcp: [{route: [{destination: {host: db}, weight: 90}, {destination: {host: replica}, weight: 10}]}]}\n";

    #[test]
    fn what_tcp_and_tls_rules_read_changes_the_listeners() {
        let base = snapshot(TCP);
        assert!(!between(&base, &base).listeners);
        let listeners = |edited: String| between(&base, &snapshot(&edited)).listeners;
        assert!(listeners(TCP.replace("weight: 90", "weight: 80")), "a tcp weight edit");
        assert!(listeners(TCP.replace("10.96.0.9", "10.96.0.19")), "the host's cluster IP");
        let replica_port = TCP.replace(
            "10.96.0.8, ports: [{port: 3306}]",
            "10.96.0.8, ports: [{name: a, port: 3306}, {name: b, port: 3307}]",
        );
        assert!(!between(&base, &snapshot(&replica_port)).ports, "the same set of ports");
        assert!(listeners(replica_port), "a destination without a port now takes the connection's port");
        assert!(!listeners(TCP.replace("10.96.0.7", "10.96.0.17")), "a Service the rules do not name");
        let earlier = TCP.to_string()
            + "---\napiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: a, namespace: shop}\nspec: {hosts: [db], http: [{route: [{destination: {host: db}}]}]}\n";
        assert!(listeners(earlier), "another VirtualService in force for the host");
        let idle = TCP.to_string()
            + "---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: db, namespace: shop}\nspec: {host: db, trafficPolicy: {connectionPool: {tcp: {idleTimeout: 5m}}}}\n";
        assert!(listeners(idle), "a destination's DestinationRule (its idle timeout)");
    }

    #[test]
    fn declaring_http_on_every_service_of_a_port_changes_its_listener() {
        let base = snapshot(MESH);
        let one = MESH.replace("app: reviews}, ports: [{port: 80}]", "app: reviews}, ports: [{name: http, port: 80}]");
        let both = one.replace("spec: {ports: [{port: 80}]}", "spec: {ports: [{name: http-api, port: 80}]}");
        assert!(one != MESH && both != one);
        let renamed_one = between(&base, &snapshot(&one));
        assert!(!renamed_one.listeners, "ratings on port 80 still declares nothing: the port still detects");
        assert!(between(&snapshot(&one), &snapshot(&both)).listeners, "now every Service on 80 declares HTTP");
        assert!(between(&snapshot(&both), &snapshot(&one)).listeners, "and back");
    }
}
