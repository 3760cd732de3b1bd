//! The virtual hosts a proxy asked for on demand (VHDS), by resource name (`ROUTE_CONFIG/HOST`), each the host
//! or `None` (the control plane knows no such host). Counted by kind (a host name, or an address a TCP connection
//! was sent to) and outcome as they come and go, so whether the proxy may ask for one more is known without
//! looking through them on the request path.

use std::collections::BTreeMap;
use std::ops::Index;

use serde::Serialize;
use weft_xds::MAX_ON_DEMAND_NAMES;

use super::routes::VirtualHost;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct OnDemandHosts {
    hosts: BTreeMap<String, Option<VirtualHost>>,
    /// Found and absent names, for host names (`[0]`) and addresses (`[1]`).
    #[serde(skip)]
    counts: [(usize, usize); 2],
}

impl OnDemandHosts {
    pub fn get(&self, name: &str) -> Option<&Option<VirtualHost>> {
        self.hosts.get(name)
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Holds the answer for `name`: its virtual host, or that there is none.
    pub fn insert(&mut self, name: String, host: Option<VirtualHost>) {
        let kind = usize::from(is_address_name(&name));
        self.count(kind, host.is_some(), 1);
        if let Some(before) = self.hosts.insert(name, host) {
            self.count(kind, before.is_some(), -1);
        }
    }

    /// The control plane took back its answer for `name`: remembered as absent, so requests stop asking; except an
    /// address that had a Service (a pod gone, a Service deleted), which is forgotten so its absence does not hold
    /// a place in the budget for good as pods come and go: whether the proxy should stop following it.
    pub fn answer_removed(&mut self, name: &str) -> bool {
        let kind = usize::from(is_address_name(name));
        if kind == 1 && self.hosts.get(name).is_some_and(Option::is_some) {
            self.hosts.remove(name);
            self.count(kind, true, -1);
            return true;
        }
        self.insert(name.to_string(), None);
        false
    }

    /// Takes `name` for absent unless an answer is held.
    pub fn absent_unless_known(&mut self, name: &str) {
        if !self.hosts.contains_key(name) {
            self.insert(name.to_string(), None);
        }
    }

    /// Whether this proxy asks for no more host names (or, with `address`, no more addresses):
    /// [`MAX_ON_DEMAND_NAMES`] found, or as many found absent (so that hosts nobody serves, which clients may send
    /// at will, and the addresses they dial, do not use up what real Services need).
    pub fn full(&self, address: bool) -> bool {
        let (found, absent) = self.counts[usize::from(address)];
        found >= MAX_ON_DEMAND_NAMES || absent >= MAX_ON_DEMAND_NAMES
    }

    fn count(&mut self, kind: usize, found: bool, by: isize) {
        let (found_count, absent_count) = &mut self.counts[kind];
        let counter = if found { found_count } else { absent_count };
        *counter = counter.saturating_add_signed(by);
    }
}

impl Index<&str> for OnDemandHosts {
    type Output = Option<VirtualHost>;

    fn index(&self, name: &str) -> &Self::Output {
        &self.hosts[name]
    }
}

/// Whether an on-demand name asks for an address rather than a host name.
fn is_address_name(name: &str) -> bool {
    weft_xds::parse_on_demand_name(name).is_some_and(|(_, host)| super::is_ip_literal(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_answers_as_they_change() {
        let mut hosts = OnDemandHosts::default();
        let host = || VirtualHost { name: "h".into(), domains: Vec::new(), routes: Vec::new() };
        hosts.insert("80/ledger.bank".into(), Some(host()));
        hosts.insert("80/10.0.0.1".into(), None);
        hosts.absent_unless_known("80/ledger.bank");
        assert_eq!(hosts.counts, [(1, 0), (0, 1)], "an answer held is kept");
        hosts.insert("80/ledger.bank".into(), None);
        hosts.insert("80/10.0.0.1".into(), Some(host()));
        assert_eq!(hosts.counts, [(0, 1), (1, 0)]);
        assert_eq!(hosts.len(), 2);
        assert!(hosts.answer_removed("80/10.0.0.1"), "an address whose Service went: forgotten");
        assert_eq!((hosts.counts, hosts.get("80/10.0.0.1")), ([(0, 1), (0, 0)], None));
        assert!(!hosts.answer_removed("80/10.0.0.2"), "an address nobody has: remembered");
        assert!(!hosts.answer_removed("80/ledger.bank"), "a host name: remembered");
        assert_eq!(hosts.counts, [(0, 1), (0, 1)]);
    }
}
