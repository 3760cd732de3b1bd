//! Which DestinationRule applies to a Service for proxies of a namespace, as Istio's sidecars look it up. Pure.
//!
//! Istio's lookup (DestinationRule reference, `exportTo`; "Cross-namespace configuration sharing": the client
//! namespace, then the service namespace, then the configuration root namespace): a proxy in namespace C takes,
//! for a Service of namespace S,
//!
//! 1. a rule of C visible to C itself (`exportTo` unset, `*`, `.` or C),
//! 2. else a rule of S exported to C (`*`, or C by name; `.` only when C is S),
//! 3. else a rule of the root namespace ([`ROOT_NAMESPACE`]) exported to C,
//!
//! and within one namespace the most specific host: the Service named exactly, then the longest matching
//! wildcard (`*.bank.svc.cluster.local` before `*`); the first in namespace/name order among equals. (Istio
//! merges several rules of one namespace for one host; Weft takes the first.) A namespace that is not C, S or
//! the root namespace is never looked in, whatever its rules' `exportTo` says.
//!
//! A rule with a `workloadSelector` is for the pods of its namespace it selects only, ahead of every other rule
//! for them; it is not in that lookup, and its `exportTo` does not matter.

use std::collections::BTreeMap;
use std::sync::Arc;

use weft_crds::virtual_service::exported_everywhere;
use weft_xds::CLUSTER_DOMAIN;

use super::snapshot::{DestinationRuleModel, Snapshot, is_wildcard};

/// Istio's configuration root namespace (`meshConfig.rootNamespace`, `istio-system` by default): the rules of
/// this namespace are the mesh-wide defaults. Weft's default; the operator's `--root-namespace` (its own
/// namespace in the chart) sets it.
pub const ROOT_NAMESPACE: &str = "weft-system";

impl DestinationRuleModel {
    /// Whether proxies in `namespace` may apply it (its `exportTo`); `None` stands for a namespace that neither
    /// holds rules nor is named by any (it sees only those exported to every namespace).
    pub fn visible_to(&self, namespace: Option<&str>) -> bool {
        if exported_everywhere(&self.spec.export_to) {
            return true;
        }
        let Some(namespace) = namespace else { return false };
        let own = namespace == self.namespace;
        self.spec.export_to.iter().any(|entry| entry == namespace || (own && entry == "."))
    }
}

impl Snapshot {
    /// Every DestinationRule whose host matches a Service FQDN, exact ones first then wildcards, each in
    /// namespace/name order: whatever may change which rule applies to it for some proxy changes this list.
    pub fn destination_rule_candidates(&self, fqdn: &str) -> Vec<&DestinationRuleModel> {
        let exact = self.dr_hosts.naming(fqdn).iter().copied();
        let positions = exact.chain(self.dr_hosts.wildcards_matching(fqdn).map(|(_, i)| i));
        positions.filter_map(|i| self.destination_rules.get(i).map(Arc::as_ref)).collect()
    }

    /// The DestinationRule that applies to a Service FQDN for proxies in `namespace`, in Istio's lookup order (see
    /// the module's documentation).
    pub fn destination_rule_for(&self, fqdn: &str, namespace: &str) -> Option<&DestinationRuleModel> {
        self.lookup(fqdn, Some(namespace))
    }

    /// The DestinationRule that applies to a Service FQDN for proxies of a namespace holding no rules and named
    /// by none: the Service's namespace's public one, else the root namespace's. What most namespaces see, so
    /// what the clusters every proxy shares are made of.
    pub fn default_destination_rule(&self, fqdn: &str) -> Option<&DestinationRuleModel> {
        self.lookup(fqdn, None)
    }

    /// The Services (FQDN) for which proxies in `namespace` apply another DestinationRule than the default one,
    /// with the rule they apply (`None`: none at all). Empty for most namespaces.
    pub fn own_destination_rules(&self, namespace: &str) -> BTreeMap<String, Option<&DestinationRuleModel>> {
        let relevant = self
            .destination_rules
            .iter()
            .filter(|dr| dr.spec.workload_selector.is_none())
            .filter(|dr| dr.namespace == namespace || dr.spec.export_to.iter().any(|entry| entry == namespace));
        let hosts: std::collections::BTreeSet<String> =
            relevant.flat_map(|dr| self.hosts_named(&dr.host)).filter(|h| self.services.contains_key(h)).collect();
        let same = |a: Option<&DestinationRuleModel>, b: Option<&DestinationRuleModel>| match (a, b) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        hosts
            .into_iter()
            .filter_map(|fqdn| {
                let own = self.destination_rule_for(&fqdn, namespace);
                (!same(own, self.default_destination_rule(&fqdn))).then_some((fqdn, own))
            })
            .collect()
    }

    /// The Services (FQDN) to which a pod of `namespace` with `labels` applies a rule of its own: a rule of its
    /// namespace whose `workloadSelector` matches the pod, which Istio applies ahead of the others (the most
    /// specific host, then the first in name order). Empty for most pods.
    pub fn workload_destination_rules(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> BTreeMap<String, &DestinationRuleModel> {
        let selects = |dr: &&DestinationRuleModel| {
            dr.namespace == namespace
                && dr
                    .spec
                    .workload_selector
                    .as_ref()
                    .is_some_and(|s| s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
        };
        let mut chosen = BTreeMap::new();
        for dr in self.destination_rules.iter().map(Arc::as_ref).filter(selects) {
            for fqdn in self.hosts_named(&dr.host).into_iter().filter(|h| self.services.contains_key(h)) {
                let candidates = self.destination_rule_candidates(&fqdn).into_iter().filter(selects);
                if let Some(best) = most_specific(candidates) {
                    chosen.insert(fqdn, best);
                }
            }
        }
        chosen
    }

    fn lookup(&self, fqdn: &str, client: Option<&str>) -> Option<&DestinationRuleModel> {
        let candidates = self.destination_rule_candidates(fqdn);
        if candidates.is_empty() {
            return None;
        }
        let service_namespace = self.services.get(fqdn).map(|s| s.namespace.as_str()).or_else(|| namespace_of(fqdn));
        let root = Some(self.root_namespace());
        // Each namespace once, in order (no list made: this runs for every Service at every translation).
        let order = [
            client,
            service_namespace.filter(|s| Some(*s) != client),
            root.filter(|r| Some(*r) != client && Some(*r) != service_namespace),
        ];
        // As Istio: in each namespace of the order, the most specific rule for the host, if it is visible to the
        // client's namespace; a hidden one passes the choice on to the next namespace (not to a less specific
        // rule of its own). Rules for some pods only ([`Snapshot::workload_destination_rules`]) are not in this
        // lookup.
        let for_every_pod = |dr: &&DestinationRuleModel| dr.spec.workload_selector.is_none();
        order.into_iter().flatten().find_map(|namespace| {
            most_specific(candidates.iter().copied().filter(for_every_pod).filter(|dr| dr.namespace == namespace))
                .filter(|dr| dr.visible_to(client))
        })
    }
}

/// The rule with the most specific host: exact before wildcard, a longer wildcard before a shorter one, the first
/// among equals.
fn most_specific<'a>(rules: impl Iterator<Item = &'a DestinationRuleModel>) -> Option<&'a DestinationRuleModel> {
    let specificity = |dr: &DestinationRuleModel| if is_wildcard(&dr.host) { dr.host.len() } else { usize::MAX };
    // A later rule replaces the best so far only when strictly more specific: the first among equals wins.
    rules.fold(None, |best, dr| match best {
        Some(best) if specificity(best) >= specificity(dr) => Some(best),
        _ => Some(dr),
    })
}

/// The namespace of a Service FQDN (`name.namespace.svc.cluster.local`).
fn namespace_of(fqdn: &str) -> Option<&str> {
    let (_, namespace) = fqdn.strip_suffix(CLUSTER_DOMAIN)?.strip_suffix('.')?.split_once('.')?;
    (!namespace.contains('.')).then_some(namespace)
}

#[cfg(test)]
mod tests {
    use super::ROOT_NAMESPACE;
    use crate::index::snapshot_of_yaml;

    fn service(name: &str, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{ports: [{{port: 80}}]}}\n---\n"
        )
    }

    fn rule(name: &str, namespace: &str, host: &str, export_to: &str) -> String {
        format!(
            "apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{host: \"{host}\", exportTo: {export_to}}}\n---\n"
        )
    }

    const LEDGER: &str = "ledger.bank.svc.cluster.local";

    /// Istio's lookup: the client's namespace, then the Service's, then the root namespace; within one, the most
    /// specific host; a rule must be exported to the client's namespace.
    #[test]
    fn a_proxy_applies_its_namespace_s_rule_then_the_service_s_then_the_root_s() {
        let mesh = [
            service("ledger", "bank"),
            service("audit", "bank"),
            rule("bank-public", "bank", "ledger", "[]"),
            rule("bank-private", "bank", "audit", "[\".\"]"),
            rule("shop-own", "shop", "*.bank.svc.cluster.local", "[\".\"]"),
            rule("for-web", "ops", "ledger.bank", "[web]"),
            rule("default", ROOT_NAMESPACE, "*", "[]"),
            rule("web-hidden", "web", "ledger.bank", "[bank]"),
        ]
        .concat();
        let snapshot = snapshot_of_yaml(&mesh);
        let chosen = |fqdn: &str, namespace: &str| snapshot.destination_rule_for(fqdn, namespace).map(|d| &*d.name);
        let audit = "audit.bank.svc.cluster.local";
        assert_eq!(chosen(LEDGER, "shop"), Some("shop-own"), "the client's namespace first, even a wildcard");
        assert_eq!(chosen(LEDGER, "bank"), Some("bank-public"), "the Service's namespace");
        assert_eq!(chosen(LEDGER, "cart"), Some("bank-public"), "the Service's namespace's public rule");
        assert_eq!(chosen(audit, "bank"), Some("bank-private"), "private to bank");
        assert_eq!(chosen(audit, "cart"), Some("default"), "bank's is private: the root namespace's");
        assert_eq!(chosen(LEDGER, "web"), Some("bank-public"), "web's own rule is not exported to web itself");
        assert_eq!(chosen("cart.shop.svc.cluster.local", "shop"), Some("default"), "the root namespace's `*`");
        assert_eq!(snapshot.default_destination_rule(audit).map(|d| &*d.name), Some("default"));
        // ops exports its rule to web, but ops is on nobody's lookup path.
        assert_eq!(snapshot.destination_rule_candidates(LEDGER).len(), 5, "exact ones, then wildcards");
        let own = |namespace| -> Vec<(String, Option<String>)> {
            let own = snapshot.own_destination_rules(namespace);
            own.into_iter().map(|(fqdn, dr)| (fqdn, dr.map(|d| d.name.clone()))).collect()
        };
        assert_eq!(own("shop"), [(audit.into(), Some("shop-own".into())), (LEDGER.into(), Some("shop-own".into()))]);
        assert_eq!(own("bank"), [(audit.to_string(), Some("bank-private".to_string()))], "ledger: as everywhere");
        assert_eq!(own("web"), [], "web's rule is not for web, ops's not on web's path");
        assert_eq!(own("cart"), [], "nothing of its own");
    }

    #[test]
    fn within_a_namespace_the_exact_host_then_the_longest_wildcard_then_name_order() {
        let mesh = [
            service("ledger", "bank"),
            service("v1", "bank"),
            rule("a-any", "bank", "*", "[]"),
            rule("b-bank", "bank", "*.bank.svc.cluster.local", "[]"),
            rule("c-svc", "bank", "*.svc.cluster.local", "[]"),
            rule("d-ledger", "bank", "ledger", "[]"),
            rule("e-ledger", "bank", "ledger", "[]"),
        ]
        .concat();
        let snapshot = snapshot_of_yaml(&mesh);
        let chosen = |fqdn: &str| snapshot.destination_rule_for(fqdn, "cart").map(|d| &*d.name);
        assert_eq!(chosen(LEDGER), Some("d-ledger"), "exact, the first of two");
        assert_eq!(chosen("v1.bank.svc.cluster.local"), Some("b-bank"), "the longest wildcard");
        assert_eq!(chosen("gone.bank.svc.cluster.local"), Some("b-bank"), "a host without a Service: its name");
        assert_eq!(chosen("other.bank.svc.cluster.local"), Some("b-bank"));
        assert_eq!(chosen("example.com"), None, "bank's `*` matches, but bank is not on its lookup path");
        assert_eq!(snapshot.destination_rule_for("example.com", "bank").map(|d| &*d.name), Some("a-any"));
    }

    #[test]
    fn a_hidden_most_specific_rule_passes_the_choice_to_the_next_namespace() {
        let mesh = [
            service("ledger", "bank"),
            rule("exact-private", "bank", "ledger", "[\".\"]"),
            rule("wildcard-public", "bank", "*.bank.svc.cluster.local", "[]"),
            rule("default", ROOT_NAMESPACE, "*", "[]"),
        ]
        .concat();
        let snapshot = snapshot_of_yaml(&mesh);
        let chosen = |namespace: &str| snapshot.destination_rule_for(LEDGER, namespace).map(|d| &*d.name);
        assert_eq!(chosen("bank"), Some("exact-private"));
        // As Istio: bank's most specific rule is not exported to cart, so bank gives cart none, not its wildcard.
        assert_eq!(chosen("cart"), Some("default"));
    }
}
