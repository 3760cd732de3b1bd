//! The index: watch events in, immutable [`Snapshot`]s out. Pure: no clients, sockets or clocks.

mod addresses;
pub mod authz;
mod build;
pub mod credentials;
mod delegate;
pub mod destination_rules;
mod endpoints;
mod host_index;
pub mod peer_authn;
pub mod published;
pub mod rate_limits;
pub mod snapshot;
mod update;

use std::collections::BTreeMap;

pub use destination_rules::ROOT_NAMESPACE;
pub use snapshot::{
    DestinationRuleModel, EndpointModel, RuleModel, ServiceModel, ServicePortModel, Snapshot, VirtualServiceModel,
    Visibility, is_wildcard,
};

use crate::source::{Event, Kind, Rejection, Resource, ResourceKey};
use update::Dirty;

/// Every object currently known, by identity, and the rejections of invalid ones.
#[derive(Debug, Default, Clone)]
pub struct Index {
    objects: BTreeMap<ResourceKey, Resource>,
    rejections: BTreeMap<ResourceKey, Rejection>,
    /// The last snapshot built, the next one's starting point.
    built: Option<Snapshot>,
    /// What changed since `built`.
    dirty: Dirty,
    /// Stamped on every snapshot (see [`Snapshot::trust_domain`]).
    trust_domain: Option<String>,
    /// Stamped on every snapshot (see [`Snapshot::root_namespace`]); `None`: [`ROOT_NAMESPACE`].
    root_namespace: Option<String>,
    /// Stamped on every snapshot (see [`Snapshot::secrets_unread`]).
    secrets_unread: bool,
}

impl Index {
    /// An empty index for a mesh with a CA of `trust_domain` (mutual TLS), or without one, whose mesh-wide rules
    /// and policies live in `root_namespace`.
    pub fn new(trust_domain: Option<String>, root_namespace: String) -> Self {
        Self { trust_domain, root_namespace: Some(root_namespace), ..Self::default() }
    }

    /// The same, for an operator that does not watch Secrets.
    pub fn without_secrets(self) -> Self {
        Self { secrets_unread: true, ..self }
    }

    /// Applies one event; returns whether anything changed.
    pub fn apply(&mut self, event: Event) -> bool {
        match event {
            Event::Applied(resource) => {
                let key = resource.key();
                let rejection_cleared = self.rejections.remove(&key).is_some();
                let previous = self.objects.insert(key.clone(), resource);
                let changed = previous.as_ref() != self.objects.get(&key);
                if changed {
                    self.dirty.note(&key, previous.as_ref(), self.objects.get(&key));
                }
                changed || rejection_cleared
            }
            Event::Deleted(key) => {
                let rejection_cleared = self.rejections.remove(&key).is_some();
                let previous = self.objects.remove(&key);
                if previous.is_some() {
                    self.dirty.note(&key, previous.as_ref(), None);
                }
                previous.is_some() || rejection_cleared
            }
            Event::Restarted { kind, namespace, objects } => {
                let changed = self.restart(kind, namespace.as_deref(), objects);
                self.dirty.everything |= changed;
                changed
            }
            Event::Rejected(rejection) => {
                self.rejections.insert(rejection.key.clone(), rejection.clone()).as_ref() != Some(&rejection)
            }
        }
    }

    fn restart(&mut self, kind: Kind, namespace: Option<&str>, objects: Vec<Resource>) -> bool {
        let in_scope = |k: &ResourceKey| k.kind == kind && namespace.is_none_or(|ns| k.namespace == ns);
        let fresh: BTreeMap<ResourceKey, Resource> = objects.into_iter().map(|r| (r.key(), r)).collect();
        let current: BTreeMap<&ResourceKey, &Resource> = self.objects.iter().filter(|(k, _)| in_scope(k)).collect();
        let unchanged = current.len() == fresh.len() && fresh.iter().all(|(k, v)| current.get(k) == Some(&v));
        let had_rejections = self.rejections.keys().any(in_scope);
        self.objects.retain(|k, _| !in_scope(k));
        self.rejections.retain(|k, _| !in_scope(k));
        self.objects.extend(fresh);
        !unchanged || had_rejections
    }

    /// The immutable view that translation reads: the last one brought up to date with what changed since, or
    /// (after a relist) built anew.
    pub fn snapshot(&mut self) -> Snapshot {
        let dirty = std::mem::take(&mut self.dirty);
        let mut snapshot = match self.built.take() {
            Some(mut built) if !dirty.everything => {
                update::update(&mut built, &self.objects, &dirty);
                built.rejections = self.rejections.clone();
                built
            }
            _ => build::build(self.objects.values(), &self.rejections, self.root_namespace()),
        };
        snapshot.trust_domain = self.trust_domain.clone();
        snapshot.secrets_unread = self.secrets_unread;
        self.built = Some(snapshot.clone());
        snapshot
    }

    fn root_namespace(&self) -> &str {
        self.root_namespace.as_deref().unwrap_or(ROOT_NAMESPACE)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// The snapshot of the objects in a YAML text, as the file source and index would make it.
#[cfg(test)]
pub(crate) fn snapshot_of_yaml(yaml: &str) -> Snapshot {
    let mut index = Index::default();
    for resource in crate::source::file::parse_file(std::path::Path::new("t.yaml"), yaml).resources {
        index.apply(Event::Applied(resource));
    }
    index.snapshot()
}

/// An index fed YAML texts one after another, as the file source feeds an edited directory: each text's objects
/// applied, those it no longer has deleted, and the snapshot brought up to date (not built anew), so what
/// translation takes over from one snapshot to the next is what it takes over in the operator.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct EditedYaml {
    index: Index,
    keys: std::collections::BTreeSet<ResourceKey>,
}

#[cfg(test)]
impl EditedYaml {
    pub(crate) fn snapshot(&mut self, yaml: &str) -> Snapshot {
        let resources = crate::source::file::parse_file(std::path::Path::new("t.yaml"), yaml).resources;
        let keys: std::collections::BTreeSet<ResourceKey> = resources.iter().map(Resource::key).collect();
        for gone in self.keys.difference(&keys) {
            self.index.apply(Event::Deleted(gone.clone()));
        }
        for resource in resources {
            self.index.apply(Event::Applied(resource));
        }
        self.keys = keys;
        self.index.snapshot()
    }
}
