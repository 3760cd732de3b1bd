//! Answers to on-demand names (VHDS, `PORT/HOST` and `PORT/ADDRESS`): each translated once per config and
//! namespace and shared by every proxy that asked for it (replicas of different workloads ask for many of the same
//! Services), and taken over from the config before when nothing it reads changed. A config change thus
//! translates again only the answers about Services whose routes it touches, not every answer of every proxy.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::index::Snapshot;
use crate::translate;
use crate::translate::changes::Changes;
use crate::translate::scope::{self, route_destinations};
use crate::xds::resources::Encoded;

/// The answer to one name for proxies of one namespace.
#[derive(Debug)]
pub(super) struct Answer {
    /// The Service answering (its virtual host, named as asked) and the port of that virtual host.
    pub fqdn: String,
    pub port: u16,
    pub virtual_host: Encoded,
    /// The Service and the hosts its routes send to: whose clusters the proxy needs.
    pub hosts: BTreeSet<String>,
}

/// A namespace and an on-demand name.
type NameKey = (String, String);

/// The answers of one config.
#[derive(Debug, Default)]
pub(super) struct Answers {
    by_name: HashMap<NameKey, Arc<Answer>>,
}

/// The answers of the config before and what changed since, to take unchanged answers from.
pub(super) type Before<'a> = Option<(&'a Answers, &'a Changes)>;

impl Answers {
    /// The answer to `name` for proxies in `namespace`; `None` when no Service answers to it.
    pub(super) fn answer(
        &mut self,
        snapshot: &Snapshot,
        namespace: &str,
        name: &str,
        before: Before<'_>,
    ) -> Option<Arc<Answer>> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(found) = self.by_name.get(&key) {
            return Some(found.clone());
        }
        let (service, port) = scope::on_demand_service(snapshot, namespace, name)?;
        let fqdn = service.fqdn();
        // The name still resolves to the same Service and port (a pod's address may now be another port's
        // endpoint), whose virtual host and destinations are as they were.
        let unchanged = |answer: &&Arc<Answer>| answer.fqdn == fqdn && answer.port == port;
        let carried = before.and_then(|(answers, changes)| {
            answers.by_name.get(&key).filter(unchanged).filter(|_| changes.spares_routes_of_host(&fqdn)).cloned()
        });
        let answer = carried.unwrap_or_else(|| {
            let host = translate::on_demand_virtual_host(snapshot, (service, port), namespace, name);
            let mut hosts: BTreeSet<String> = route_destinations(snapshot, &fqdn, namespace).into_iter().collect();
            hosts.insert(fqdn.clone());
            Arc::new(Answer { virtual_host: Encoded::new(name.to_string(), &host), hosts, fqdn, port })
        });
        self.by_name.insert(key, answer.clone());
        Some(answer)
    }

    /// Forgets the answers to names no proxy in `namespace` holds (by `held`): a proxy asking for one host after
    /// another leaves no trail.
    pub(super) fn retain(&mut self, held: impl Fn(&str, &str) -> bool) {
        self.by_name.retain(|(namespace, name), _| held(namespace, name));
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_name.len()
    }
}
