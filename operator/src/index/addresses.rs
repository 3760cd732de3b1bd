//! Which Service an address belongs to, for a proxy that asks by address (TCP sent to an address it holds no
//! Service at): by cluster IP, else by endpoint (a pod dialled on one of its Services' ports). Kept with the
//! snapshot, brought up to date as each Service's model changes, so a lookup costs no scan of the mesh. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use super::snapshot::ServiceModel;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddressIndex {
    /// Every Service with each address, by name: an address can be two Services' (a pod in both, a cluster IP
    /// freed and taken again before the first Service's removal is seen).
    cluster_ips: BTreeMap<IpAddr, BTreeSet<String>>,
    endpoints: BTreeMap<SocketAddr, BTreeSet<String>>,
}

impl AddressIndex {
    /// The FQDN of the Service with cluster IP `ip`.
    pub fn with_cluster_ip(&self, ip: IpAddr) -> Option<&str> {
        self.cluster_ips.get(&ip).and_then(BTreeSet::first).map(String::as_str)
    }

    /// The FQDN of a Service with an endpoint at `address` (the pod's own port); the first by name when a pod's
    /// port serves several.
    pub fn with_endpoint(&self, address: SocketAddr) -> Option<&str> {
        self.endpoints.get(&address).and_then(BTreeSet::first).map(String::as_str)
    }

    /// Brings the index from Service `fqdn`'s addresses `before` to those `after`.
    pub fn update(&mut self, fqdn: &str, before: ServiceAddresses, after: ServiceAddresses) {
        reindex(&mut self.cluster_ips, fqdn, before.cluster_ips, after.cluster_ips);
        reindex(&mut self.endpoints, fqdn, before.endpoints, after.endpoints);
    }
}

/// The addresses one Service model puts in the index. Compared before the index is touched: most model changes
/// (an endpoint's readiness, labels) leave them as they were, and the index, shared with earlier snapshots, is
/// then not copied.
#[derive(Debug, Default, PartialEq)]
pub struct ServiceAddresses {
    cluster_ips: BTreeSet<IpAddr>,
    endpoints: BTreeSet<SocketAddr>,
}

impl ServiceAddresses {
    /// Those of `model`; none for a Service that is not there.
    pub fn of(model: Option<&ServiceModel>) -> Self {
        let Some(model) = model else { return Self::default() };
        let endpoints = model.ports.iter().flat_map(|p| &p.endpoints);
        Self {
            cluster_ips: model.cluster_ips.iter().copied().collect(),
            endpoints: endpoints.map(|e| SocketAddr::new(e.address, e.port)).collect(),
        }
    }
}

fn reindex<K: Ord + Copy>(
    index: &mut BTreeMap<K, BTreeSet<String>>,
    fqdn: &str,
    before: BTreeSet<K>,
    after: BTreeSet<K>,
) {
    for key in before.difference(&after) {
        if let Some(owners) = index.get_mut(key) {
            owners.remove(fqdn);
            if owners.is_empty() {
                index.remove(key);
            }
        }
    }
    for key in after.difference(&before) {
        index.entry(*key).or_default().insert(fqdn.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::snapshot_of_yaml;

    #[test]
    fn addresses_follow_their_services() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: data}\n\
                    spec: {clusterIP: None, ports: [{name: tcp-a, port: 7000}]}\n---\n\
                    apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                    metadata: {name: db-1, namespace: data, labels: {kubernetes.io/service-name: db}}\n\
                    addressType: IPv4\nports: [{name: tcp-a, port: 7000}]\nendpoints: [{addresses: [10.1.0.7]}]\n---\n\
                    apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: data}\n\
                    spec: {clusterIP: 10.96.0.3, ports: [{port: 80}]}\n";
        let snapshot = snapshot_of_yaml(yaml);
        let mut index = AddressIndex::default();
        for (fqdn, service) in snapshot.services.iter() {
            index.update(fqdn, ServiceAddresses::default(), ServiceAddresses::of(Some(service)));
        }
        let pod: SocketAddr = "10.1.0.7:7000".parse().unwrap_or(SocketAddr::from(([0; 4], 0)));
        assert_eq!(index.with_endpoint(pod), Some("db.data.svc.cluster.local"));
        assert_eq!(index.with_cluster_ip(pod.ip()), None, "a pod is no cluster IP");
        assert_eq!(index.with_cluster_ip("10.96.0.3".parse().unwrap_or(pod.ip())), Some("api.data.svc.cluster.local"));
        let db = &snapshot.services["db.data.svc.cluster.local"];
        index.update("db.data.svc.cluster.local", ServiceAddresses::of(Some(db)), ServiceAddresses::default());
        assert_eq!(index.with_endpoint(pod), None, "gone with its Service");
    }
}
