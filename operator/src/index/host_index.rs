//! Rules by the hosts they name: the lookup behind "which VirtualServices (DestinationRules) may apply to this
//! Service". Built from a rule list in namespace/name order, as positions into it; shared between snapshots
//! (`Arc`) and built again only when its list changed, so an edit of one VirtualService leaves the
//! DestinationRules' index as it was, and an endpoint change leaves both. Pure.

use std::collections::BTreeMap;

use super::snapshot::{is_wildcard, wildcard_matches};

/// Positions of rules in their list, by the hosts they name.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct HostIndex {
    /// Host FQDN -> positions of every rule naming it exactly, in order (a rule naming a host twice once).
    exact: BTreeMap<String, Vec<usize>>,
    /// Wildcard hosts (`*.example.com`, `*`) and the position of the rule naming each, in order.
    wildcards: Vec<(String, usize)>,
}

impl HostIndex {
    /// The index of rules whose hosts are, rule by rule in list order, `hosts`.
    pub(super) fn of<'a, H>(hosts: impl Iterator<Item = H>) -> Self
    where
        H: IntoIterator<Item = &'a String>,
    {
        let mut index = Self::default();
        for (i, named) in hosts.enumerate() {
            for host in named {
                if is_wildcard(host) {
                    index.wildcards.push((host.clone(), i));
                    continue;
                }
                let positions = index.exact.entry(host.clone()).or_default();
                if positions.last() != Some(&i) {
                    positions.push(i);
                }
            }
        }
        index
    }

    /// The positions of the rules naming `fqdn` exactly, in order.
    pub(super) fn naming(&self, fqdn: &str) -> &[usize] {
        self.exact.get(fqdn).map(Vec::as_slice).unwrap_or_default()
    }

    /// The wildcard hosts matching `fqdn`, with the position of the rule naming each, in order.
    pub(super) fn wildcards_matching<'a>(&'a self, fqdn: &'a str) -> impl Iterator<Item = (&'a str, usize)> + 'a {
        let matching = self.wildcards.iter().filter(move |(pattern, _)| wildcard_matches(pattern, fqdn));
        matching.map(|(pattern, i)| (pattern.as_str(), *i))
    }

    /// Whether some rule has a wildcard host.
    pub(super) fn has_wildcards(&self) -> bool {
        !self.wildcards.is_empty()
    }

    /// Every host some rule names exactly, in order.
    pub(super) fn exact_hosts(&self) -> impl Iterator<Item = &String> {
        self.exact.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_found_by_exact_host_and_by_matching_wildcard_in_list_order() {
        let hosts: Vec<Vec<String>> = vec![
            vec!["a.shop.svc.cluster.local".into(), "a.shop.svc.cluster.local".into()],
            vec!["*.shop.svc.cluster.local".into(), "b.shop.svc.cluster.local".into()],
            vec!["a.shop.svc.cluster.local".into()],
            vec!["*".into()],
        ];
        let index = HostIndex::of(hosts.iter());
        assert_eq!(index.naming("a.shop.svc.cluster.local"), [0, 2], "a rule naming a host twice counts once");
        assert_eq!(index.naming("b.shop.svc.cluster.local"), [1]);
        assert!(index.naming("c.shop.svc.cluster.local").is_empty());
        let wildcards: Vec<_> = index.wildcards_matching("c.shop.svc.cluster.local").collect();
        assert_eq!(wildcards, [("*.shop.svc.cluster.local", 1), ("*", 3)]);
        assert_eq!(index.wildcards_matching("c.bank.svc.cluster.local").count(), 1, "only `*`");
        assert!(index.has_wildcards());
        assert_eq!(index.exact_hosts().count(), 2);
    }
}
