//! A proxy's resources encoded for the wire: per type, resource name -> `Any`.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use envoy_types::pb::google::protobuf::Any;
use weft_xds::{ResourceType, pack};

use crate::translate::ProxyResources;

/// Resource name -> packed resource, for one type.
pub type ResourceMap = BTreeMap<String, Any>;

/// Everything a proxy should hold, by type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedResources {
    pub by_type: BTreeMap<ResourceType, ResourceMap>,
}

impl From<&ProxyResources> for EncodedResources {
    fn from(r: &ProxyResources) -> Self {
        let mut by_type = BTreeMap::new();
        by_type.insert(ResourceType::Cluster, r.clusters.iter().map(|c| (c.name.clone(), pack(c))).collect());
        by_type.insert(ResourceType::Endpoint, r.endpoints.iter().map(|e| (e.cluster_name.clone(), pack(e))).collect());
        by_type.insert(ResourceType::Listener, r.listeners.iter().map(|l| (l.name.clone(), pack(l))).collect());
        by_type.insert(ResourceType::Route, r.routes.iter().map(|x| (x.name.clone(), pack(x))).collect());
        Self { by_type }
    }
}

impl EncodedResources {
    pub fn of_type(&self, kind: ResourceType) -> Option<&ResourceMap> {
        self.by_type.get(&kind)
    }
}

/// The resources a subscription asks for: all of them for a wildcard subscription, else those named.
pub fn select(all: &ResourceMap, wildcard: bool, names: &BTreeSet<String>) -> ResourceMap {
    if wildcard {
        all.clone()
    } else {
        all.iter().filter(|(name, _)| names.contains(*name)).map(|(n, a)| (n.clone(), a.clone())).collect()
    }
}

/// A version string that changes exactly when the content does, stable across operator replicas of one build.
pub fn version_of(resources: &ResourceMap) -> String {
    let mut hasher = DefaultHasher::new();
    for (name, any) in resources {
        name.hash(&mut hasher);
        any.type_url.hash(&mut hasher);
        any.value.hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}
