//! The index: watch events in, immutable [`Snapshot`]s out. Pure: no clients, sockets or clocks.

mod endpoints;
pub mod snapshot;

use std::collections::BTreeMap;

pub use snapshot::{
    DestinationRuleModel, EndpointModel, ServiceModel, ServicePortModel, Snapshot, VirtualServiceModel,
};

use crate::source::{Event, Resource, ResourceKey};

/// Every object currently known, by identity.
#[derive(Debug, Default, Clone)]
pub struct Index {
    objects: BTreeMap<ResourceKey, Resource>,
}

impl Index {
    /// Applies one event; returns whether anything changed.
    pub fn apply(&mut self, event: Event) -> bool {
        match event {
            Event::Applied(resource) => {
                let key = resource.key();
                self.objects.insert(key, resource.clone()).as_ref() != Some(&resource)
            }
            Event::Deleted(key) => self.objects.remove(&key).is_some(),
            Event::Restarted(kind, resources) => {
                let fresh: BTreeMap<ResourceKey, Resource> = resources.into_iter().map(|r| (r.key(), r)).collect();
                let current: BTreeMap<ResourceKey, Resource> =
                    self.objects.iter().filter(|(k, _)| k.kind == kind).map(|(k, v)| (k.clone(), v.clone())).collect();
                if current == fresh {
                    return false;
                }
                self.objects.retain(|k, _| k.kind != kind);
                self.objects.extend(fresh);
                true
            }
        }
    }

    /// Builds the immutable view that translation reads.
    pub fn snapshot(&self) -> Snapshot {
        snapshot::build(self.objects.values())
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}
