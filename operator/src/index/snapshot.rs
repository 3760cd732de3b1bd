//! The immutable model of the mesh that translation reads: Services with their resolved endpoints, the routing
//! resources with their hosts resolved to FQDNs, and the PeerAuthentication policies.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use weft_crds::destination_rule::locality::Locality;
use weft_crds::virtual_service::exported_everywhere;
use weft_crds::virtual_service::l4::L4Route;
use weft_crds::{Destination, DestinationRuleSpec, HttpRoute, VirtualServiceSpec, WeftStatus};
use weft_xds::CLUSTER_DOMAIN;
use weft_xds::inbound::InboundPolicy;

use super::authz::AuthorizationPolicyModel;
use super::host_index::HostIndex;
use super::peer_authn::{PeerAuthenticationModel, inbound_policy};
use super::rate_limits::RateLimitPolicyModel;
use crate::source::{Rejection, ResourceKey};

/// Everything translation needs, at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Services by FQDN (`name.namespace.svc.cluster.local`); shared with the snapshots before and after that
    /// have the same model, so a snapshot after a change costs what changed. The map itself is shared too, until
    /// a Service's model changes: the next snapshot after a rule edit copies none of it.
    pub services: Arc<BTreeMap<String, Arc<ServiceModel>>>,
    /// Which Service each cluster IP and endpoint address belongs to (see [`Snapshot::service_with_cluster_ip`]).
    pub(super) addresses: Arc<super::addresses::AddressIndex>,
    /// In namespace/name order. Which one routes a host for a proxy is [`Snapshot::virtual_service_for`]. A rule
    /// that did not change keeps its model (the same `Arc`) from one snapshot to the next.
    pub virtual_services: Arc<Vec<Arc<VirtualServiceModel>>>,
    /// In namespace/name order, kept like the VirtualServices.
    pub destination_rules: Arc<Vec<Arc<DestinationRuleModel>>>,
    /// In namespace/name order. What applies to a workload is [`Snapshot::inbound_policy`].
    pub peer_authentications: Arc<Vec<PeerAuthenticationModel>>,
    /// In namespace/name order. What applies to a workload is [`super::authz::policies_for`].
    pub authorization_policies: Arc<Vec<AuthorizationPolicyModel>>,
    /// In namespace/name order. What applies to a workload is [`super::rate_limits::rate_limits_for`].
    pub rate_limit_policies: Arc<Vec<RateLimitPolicyModel>>,
    /// Labels of every pod, by `namespace/name`: a proxy's own identity.
    pub pod_labels: Arc<BTreeMap<String, BTreeMap<String, String>>>,
    /// The service account of every pod, by `namespace/name`: which workload identity may speak for it.
    pub pod_accounts: Arc<BTreeMap<String, String>>,
    /// The locality of every pod whose locality is known, by `namespace/name`: where a proxy runs.
    pub pod_localities: Arc<BTreeMap<String, Locality>>,
    /// The locality of every node with topology labels, by node name.
    pub node_localities: Arc<BTreeMap<String, Locality>>,
    /// What each Secret holds for a DestinationRule's `credentialName`, by `namespace/name`.
    pub credentials: Arc<super::credentials::Credentials>,
    /// Weft resources whose current version is invalid (their last good version, if any, is in the lists above).
    pub rejections: BTreeMap<ResourceKey, Rejection>,
    /// The mesh's trust domain when it has a CA: sidecars then talk mutual TLS to each other.
    pub trust_domain: Option<String>,
    /// The operator watches no Secrets (`--read-secrets false`): `credentials` is empty by choice.
    pub secrets_unread: bool,
    /// Where mesh-wide DestinationRules and PeerAuthentications live (see [`Snapshot::root_namespace`]).
    pub(super) root: String,
    /// The VirtualServices by host; translation looks a rule up per Service and proxy namespace.
    pub(super) vs_hosts: Arc<HostIndex>,
    /// The DestinationRules by host; which one applies for a proxy is [`Snapshot::destination_rule_for`].
    pub(super) dr_hosts: Arc<HostIndex>,
}

/// `Eq`: two snapshots sharing a model (one `Arc`) compare equal without looking inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceModel {
    pub name: String,
    pub namespace: String,
    /// `spec.clusterIPs` (or `spec.clusterIP`): the addresses clients connect to, one per IP family, which tcp and
    /// tls rules match connections on. Empty for a headless Service (`None`), or when none is allocated yet or
    /// they are not addresses.
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePortModel>,
    /// `spec.selector`: the pods it selects (none when empty); AuthorizationPolicy `targetRefs` apply to them.
    pub selector: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortModel {
    /// Port name; empty for the single unnamed port a Service may have.
    pub name: String,
    pub port: u16,
    pub endpoints: Vec<EndpointModel>,
}

/// One backend address for one Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointModel {
    pub address: IpAddr,
    pub port: u16,
    pub ready: bool,
    /// Labels of the pod behind the address (empty when unknown); DestinationRule subsets select on them.
    pub labels: BTreeMap<String, String>,
    /// The pod's service account when it runs a Weft sidecar (mutual TLS applies); `None`: no sidecar, or unknown.
    pub sidecar_account: Option<String>,
    /// Where the endpoint runs (see [`super::endpoints::workload_locality`]); empty when unknown.
    pub locality: Locality,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServiceModel {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// The status the object carries now.
    pub status: Option<WeftStatus>,
    /// `spec.hosts` resolved to FQDNs, in the same order.
    pub hosts: Vec<String>,
    pub spec: VirtualServiceSpec,
    /// The http rules in force: `spec.http` with each delegating rule replaced by its delegate's rules, merged
    /// (see [`super::delegate`]). What translation reads, rather than `spec.http`.
    pub http: Vec<HttpRoute>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRuleModel {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// The status the object carries now.
    pub status: Option<WeftStatus>,
    /// `spec.host` resolved to an FQDN, or the wildcard as written.
    pub host: String,
    pub spec: DestinationRuleSpec,
}

/// How a VirtualService is visible to the proxies of a namespace, in Istio's order of precedence for sidecars:
/// those of the proxy's namespace exported to it alone (`.` or its name), then those of other namespaces exported
/// to it by name, then those exported to every namespace (pilot's `VirtualServicesForGateway`: private, exported
/// to the namespace, public).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Visibility {
    Private,
    Exported,
    Public,
}

impl VirtualServiceModel {
    /// How proxies in `namespace` see it; `None`: they do not (it is not exported there).
    pub fn visibility(&self, namespace: &str) -> Option<Visibility> {
        let export_to = &self.spec.export_to;
        if exported_everywhere(export_to) {
            return Some(Visibility::Public);
        }
        let own = namespace == self.namespace;
        let named = |entry: &String| entry == namespace || (own && entry == ".");
        match export_to.iter().any(named) {
            true if own => Some(Visibility::Private),
            true => Some(Visibility::Exported),
            false => None,
        }
    }

    /// Equal but for what only status reports (status, generation).
    pub fn same_config(&self, other: &Self) -> bool {
        (&self.namespace, &self.name, &self.hosts, &self.spec, &self.http)
            == (&other.namespace, &other.name, &other.hosts, &other.spec, &other.http)
    }

    /// Every destination of its rules in force (http, with delegated ones, then tcp, then tls), mirrors included.
    /// A delegate's destinations are FQDNs already.
    pub fn destinations(&self) -> impl Iterator<Item = &Destination> {
        let http = self.http.iter().flat_map(HttpRoute::destinations);
        let tcp = self.spec.tcp.iter().flat_map(L4Route::destinations);
        http.chain(tcp).chain(self.spec.tls.iter().flat_map(L4Route::destinations))
    }
}

/// Whether two snapshots' models of a rule give the same config: at a glance when they share it (one `Arc`).
fn same_rule<T: RuleModel>(a: &Arc<T>, b: &Arc<T>) -> bool {
    Arc::ptr_eq(a, b) || a.same_config(b)
}

/// A routing rule as the index keeps it (VirtualService, DestinationRule): in lists in namespace/name order, found
/// by them, and compared by what translation reads.
pub trait RuleModel {
    fn namespace_name(&self) -> (&str, &str);
    fn same_config(&self, other: &Self) -> bool;
}

impl RuleModel for VirtualServiceModel {
    fn namespace_name(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }

    fn same_config(&self, other: &Self) -> bool {
        VirtualServiceModel::same_config(self, other)
    }
}

impl RuleModel for DestinationRuleModel {
    fn namespace_name(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }

    fn same_config(&self, other: &Self) -> bool {
        DestinationRuleModel::same_config(self, other)
    }
}

impl DestinationRuleModel {
    /// Equal but for what only status reports (status, generation).
    pub fn same_config(&self, other: &Self) -> bool {
        (&self.namespace, &self.name, &self.host, &self.spec)
            == (&other.namespace, &other.name, &other.host, &other.spec)
    }
}

impl ServiceModel {
    pub fn fqdn(&self) -> String {
        service_fqdn(&self.name, &self.namespace)
    }

    pub fn port(&self, number: u16) -> Option<&ServicePortModel> {
        self.ports.iter().find(|p| p.port == number)
    }
}

impl Snapshot {
    /// The Service with cluster IP `ip`.
    pub fn service_with_cluster_ip(&self, ip: IpAddr) -> Option<&ServiceModel> {
        self.services.get(self.addresses.with_cluster_ip(ip)?).map(Arc::as_ref)
    }

    /// A Service with an endpoint at `address` (a pod's own address and port).
    pub fn service_with_endpoint(&self, address: std::net::SocketAddr) -> Option<&ServiceModel> {
        self.services.get(self.addresses.with_endpoint(address)?).map(Arc::as_ref)
    }

    /// Resolves a host as written in a resource of `namespace` to a Service FQDN, Istio style: a short name is in
    /// the resource's namespace; `name.namespace` and `name.namespace.svc` are completed when such a Service exists.
    pub fn resolve_host(&self, host: &str, namespace: &str) -> String {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        // A wildcard is fully qualified as written, `*` included (Istio's `ResolveShortnameToFQDN`).
        if is_wildcard(&host) {
            return host;
        }
        if !host.contains('.') {
            return service_fqdn(&host, namespace);
        }
        let completions = [format!("{host}.{CLUSTER_DOMAIN}"), format!("{host}.cluster.local")];
        completions.into_iter().find(|c| self.services.contains_key(c)).unwrap_or(host)
    }

    /// Every VirtualService naming a host exactly, in namespace/name order.
    pub fn virtual_services_naming<'a>(
        &'a self,
        fqdn: &str,
    ) -> impl Iterator<Item = &'a VirtualServiceModel> + use<'a> {
        self.vs_hosts.naming(fqdn).iter().filter_map(|&i| self.virtual_services.get(i).map(Arc::as_ref))
    }

    /// Every VirtualService with a wildcard host matching a Service FQDN, with that host's length (longer is more
    /// specific), in namespace/name order.
    fn wildcards_matching(&self, fqdn: &str) -> Vec<(usize, &VirtualServiceModel)> {
        let matching = self.vs_hosts.wildcards_matching(fqdn);
        matching.filter_map(|(pattern, i)| Some((pattern.len(), self.virtual_services.get(i)?.as_ref()))).collect()
    }

    /// Every VirtualService that may route a Service FQDN, whatever the proxy: those naming it exactly, then those
    /// whose wildcard host matches it. Whatever may change which one routes it for some proxy changes this list.
    pub fn virtual_service_candidates(&self, fqdn: &str) -> Vec<&VirtualServiceModel> {
        self.virtual_services_naming(fqdn).chain(self.wildcards_matching(fqdn).into_iter().map(|(_, vs)| vs)).collect()
    }

    /// The VirtualService that routes a Service FQDN for proxies in `namespace`, if any, as Istio's sidecars pick
    /// it: one naming it exactly before any wildcard, the longest matching wildcard before shorter ones; then the
    /// most visible one (see [`Visibility`]); then the first in namespace/name order. (Istio takes the oldest
    /// among equals; Weft's index carries no creation time, and namespace/name order is as stable.)
    pub fn virtual_service_for(&self, fqdn: &str, namespace: &str) -> Option<&VirtualServiceModel> {
        let exact = self.virtual_services_naming(fqdn).filter_map(|vs| Some((vs.visibility(namespace)?, vs)));
        // `min_by_key` keeps the first of equal keys: namespace/name order among equals.
        if let Some((_, vs)) = exact.min_by_key(|(visibility, _)| *visibility) {
            return Some(vs);
        }
        let wildcards = self
            .wildcards_matching(fqdn)
            .into_iter()
            .filter_map(|(len, vs)| Some((len, vs.visibility(namespace)?, vs)));
        wildcards.min_by_key(|(len, visibility, _)| (std::cmp::Reverse(*len), *visibility)).map(|(_, _, vs)| vs)
    }

    /// The VirtualService whose tcp and tls rules shape the listeners every proxy shares for a Service: the one
    /// [`Self::virtual_service_for`] picks among those exported to every namespace (validation refuses tcp and
    /// tls rules in the others).
    pub fn mesh_virtual_service(&self, fqdn: &str) -> Option<&VirtualServiceModel> {
        let public = |vs: &&VirtualServiceModel| exported_everywhere(&vs.spec.export_to);
        if let Some(vs) = self.virtual_services_naming(fqdn).find(public) {
            return Some(vs);
        }
        let wildcards = self.wildcards_matching(fqdn).into_iter().filter(|(_, vs)| public(vs));
        wildcards.min_by_key(|(len, _)| std::cmp::Reverse(*len)).map(|(_, vs)| vs)
    }

    /// Whether some VirtualService has a wildcard host: it may apply to any Service.
    pub fn has_wildcard_rules(&self) -> bool {
        self.vs_hosts.has_wildcards()
    }

    /// The FQDNs of the Services a VirtualService host names: the one it names exactly (whether or not it exists)
    /// or, for a wildcard, every Service it matches.
    pub fn hosts_named(&self, host: &str) -> Vec<String> {
        if is_wildcard(host) {
            self.services.keys().filter(|fqdn| wildcard_matches(host, fqdn)).cloned().collect()
        } else {
            vec![host.to_string()]
        }
    }

    /// Whether translation would give the same config for both: everything but what only status reports (the
    /// objects' current status and generation, rejections). Status written back by the operator itself then
    /// costs no translation.
    pub fn same_config(&self, other: &Snapshot) -> bool {
        self.services == other.services
            && self.trust_domain == other.trust_domain
            && self.pod_labels == other.pod_labels
            && self.pod_localities == other.pod_localities
            && self.virtual_services.len() == other.virtual_services.len()
            && self.virtual_services.iter().zip(other.virtual_services.iter()).all(|(a, b)| same_rule(a, b))
            && self.destination_rules.len() == other.destination_rules.len()
            && self.destination_rules.iter().zip(other.destination_rules.iter()).all(|(a, b)| same_rule(a, b))
            && self.peer_authentications.len() == other.peer_authentications.len()
            && self.peer_authentications.iter().zip(other.peer_authentications.iter()).all(|(a, b)| a.same_config(b))
            && self.authorization_policies.len() == other.authorization_policies.len()
            && (self.authorization_policies.iter().zip(other.authorization_policies.iter()))
                .all(|(a, b)| a.same_config(b))
            && self.rate_limit_policies.len() == other.rate_limit_policies.len()
            && (self.rate_limit_policies.iter().zip(other.rate_limit_policies.iter())).all(|(a, b)| a.same_config(b))
            && self.named_credentials() == other.named_credentials()
    }

    /// The credentials the DestinationRules' `credentialName`s may read (their Secrets and `-cacert` Secrets),
    /// whether present or not: a change to any other Secret changes no config.
    fn named_credentials(&self) -> Vec<(String, Option<&Arc<super::credentials::TlsCredential>>)> {
        use super::credentials::{credential_key, secrets_read};
        let names = self.destination_rules.iter().flat_map(|dr| {
            let named = dr.spec.tls_settings().into_iter().filter_map(|(_, tls)| tls.credential_name.clone());
            named.flat_map(|name| secrets_read(&name)).map(|name| credential_key(&dr.namespace, &name))
        });
        names
            .map(|key| {
                let found = self.credentials.get(&key);
                (key, found)
            })
            .collect()
    }

    /// The inbound modes of a pod in `namespace` with `labels` (see [`super::peer_authn`]).
    pub fn inbound_policy(&self, namespace: &str, labels: &BTreeMap<String, String>) -> InboundPolicy {
        inbound_policy(&self.peer_authentications, self.root_namespace(), namespace, labels)
    }

    /// The mesh's root namespace (Istio's `rootNamespace`; the operator's own unless configured otherwise).
    pub fn root_namespace(&self) -> &str {
        if self.root.is_empty() { super::ROOT_NAMESPACE } else { &self.root }
    }

    /// Every host some VirtualService names exactly (wildcards aside, see [`Self::has_wildcard_rules`]), in order.
    pub fn routed_hosts(&self) -> impl Iterator<Item = &String> {
        self.vs_hosts.exact_hosts()
    }

    /// Every host some DestinationRule names exactly (wildcards aside), in order.
    pub fn policy_hosts(&self) -> impl Iterator<Item = &String> {
        self.dr_hosts.exact_hosts()
    }

    /// Fills the VirtualServices' host lookup; called once their list is final.
    pub(super) fn index_virtual_service_hosts(&mut self) {
        debug_assert!(in_order(self.virtual_services.iter().map(|vs| vs.namespace_name())));
        self.vs_hosts = Arc::new(HostIndex::of(self.virtual_services.iter().map(|vs| &vs.hosts)));
    }

    /// Fills the DestinationRules' host lookup; called once their list is final.
    pub(super) fn index_destination_rule_hosts(&mut self) {
        debug_assert!(in_order(self.destination_rules.iter().map(|dr| dr.namespace_name())));
        self.dr_hosts = Arc::new(HostIndex::of(self.destination_rules.iter().map(|dr| [&dr.host])));
    }
}

/// Rules are found by binary search and compared in step: each list is in namespace/name order.
fn in_order<'a>(names: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    let names: Vec<_> = names.collect();
    names.windows(2).all(|pair| pair[0] < pair[1])
}

/// Whether a host is a wildcard (`*`, `*.example.com`).
pub fn is_wildcard(host: &str) -> bool {
    host.starts_with('*')
}

/// Whether a wildcard host matches an FQDN: what follows the `*` ends it, and something comes before (Istio's
/// `host.Name.Matches`; `*.example.com` does not match `example.com`).
pub fn wildcard_matches(pattern: &str, fqdn: &str) -> bool {
    pattern.strip_prefix('*').is_some_and(|suffix| fqdn.len() > suffix.len() && fqdn.ends_with(suffix))
}

pub fn service_fqdn(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.{CLUSTER_DOMAIN}")
}

impl Snapshot {
    /// The Service port a destination means: the explicit one; else the Service's only port; else the port the
    /// request arrived on (Istio's rules).
    pub fn destination_port(&self, fqdn: &str, explicit: Option<u32>, route_port: u16) -> u16 {
        if let Some(port) = explicit.and_then(|p| u16::try_from(p).ok()) {
            return port;
        }
        match self.services.get(fqdn).map(|s| s.ports.as_slice()) {
            Some([only]) => only.port,
            _ => route_port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wildcard_matches;
    use crate::index::snapshot_of_yaml;

    fn rule(name: &str, namespace: &str, export_to: &str) -> String {
        format!(
            "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{exportTo: {export_to}, hosts: [ledger.bank.svc.cluster.local], http: [{{route: [{{destination: {{host: ledger.bank}}}}]}}]}}\n---\n"
        )
    }

    /// Istio's order for sidecars: the proxy's namespace's private rules, then those exported to it by name, then
    /// the public ones; the first (namespace/name order) among equals.
    #[test]
    fn a_proxy_takes_its_namespace_s_rule_then_one_exported_to_it_then_a_public_one() {
        let rules = [
            rule("a-public", "apps", "[\"*\"]"),
            rule("b-public", "apps", "[]"),
            rule("for-shop", "bank", "[shop, web]"),
            rule("own", "shop", "[\".\"]"),
            rule("public-in-shop", "shop", "[]"),
            rule("private", "web", "[web]"),
        ];
        let snapshot = snapshot_of_yaml(&rules.concat());
        let chosen = |namespace| {
            snapshot.virtual_service_for("ledger.bank.svc.cluster.local", namespace).map(|vs| vs.name.as_str())
        };
        assert_eq!(chosen("shop"), Some("own"), "private beats exported-to and public, even a public one of shop");
        assert_eq!(chosen("web"), Some("private"), "its own namespace named in full is private too");
        assert_eq!(chosen("bank"), Some("a-public"), "for-shop is not exported to bank: the first public one");
        let mesh = snapshot.mesh_virtual_service("ledger.bank.svc.cluster.local").map(|vs| vs.name.as_str());
        assert_eq!(mesh, Some("a-public"));
        let only_private = snapshot_of_yaml(&rule("own", "shop", "[\".\"]"));
        assert!(only_private.virtual_service_for("ledger.bank.svc.cluster.local", "shop").is_some());
        assert!(only_private.virtual_service_for("ledger.bank.svc.cluster.local", "bank").is_none());
        assert!(only_private.mesh_virtual_service("ledger.bank.svc.cluster.local").is_none());
    }

    fn wildcard(name: &str, namespace: &str, export_to: &str, host: &str) -> String {
        rule(name, namespace, export_to)
            .replace("hosts: [ledger.bank.svc.cluster.local]", &format!("hosts: [\"{host}\"]"))
    }

    #[test]
    fn an_exact_host_wins_over_a_wildcard_and_a_longer_wildcard_over_a_shorter_one() {
        let rules = [
            wildcard("any", "apps", "[]", "*"),
            wildcard("bank", "apps", "[]", "*.bank.svc.cluster.local"),
            wildcard("bank-for-shop", "shop", "[\".\"]", "*.bank.svc.cluster.local"),
            wildcard("ledgers", "apps", "[]", "*.ledger.bank.svc.cluster.local"),
            rule("exact", "apps", "[web]"),
        ];
        let snapshot = snapshot_of_yaml(&rules.concat());
        let chosen = |fqdn, namespace| snapshot.virtual_service_for(fqdn, namespace).map(|vs| vs.name.as_str());
        let ledger = "ledger.bank.svc.cluster.local";
        assert_eq!(chosen(ledger, "web"), Some("exact"), "an exact host visible to web");
        assert_eq!(chosen(ledger, "bank"), Some("bank"), "the exact one is not exported to bank");
        assert_eq!(chosen(ledger, "shop"), Some("bank-for-shop"), "the same wildcard: shop's own first");
        assert_eq!(chosen("v1.ledger.bank.svc.cluster.local", "shop"), Some("ledgers"), "the longest wildcard");
        assert_eq!(chosen("cart.shop.svc.cluster.local", "shop"), Some("any"), "* matches every host");
        assert_eq!(chosen("bank.svc.cluster.local", "bank"), Some("any"), "*.bank... needs a label before");
        assert_eq!(snapshot.mesh_virtual_service(ledger).map(|vs| vs.name.as_str()), Some("bank"));
        assert_eq!(snapshot.virtual_service_candidates(ledger).len(), 4, "exact, then every matching wildcard");
        assert!(wildcard_matches("*", "a") && !wildcard_matches("*.b", ".b") && wildcard_matches("*.b", "a.b"));
    }
}
