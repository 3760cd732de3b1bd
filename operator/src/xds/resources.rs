//! A proxy's resources encoded for the wire: per type, resource name -> `Any`, with the type's version and a
//! digest of its names computed once. Types are shared (`Arc`) by every proxy that holds the same resources, so a
//! snapshot is encoded once per namespace, not once per proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use weft_xds::{ResourceType, pack};

use crate::translate::{ProxyResources, SharedResources};

/// Resource name -> packed resource, for one type. Shared (`Arc`): the scopes picked from one config, and the
/// configs that follow, point at the same encoded bytes instead of copying them.
pub type ResourceMap = BTreeMap<String, Arc<Any>>;

/// One type's resources, ready to send.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeResources {
    pub map: ResourceMap,
    /// Each resource's version (delta xDS): a digest of its encoding.
    pub hashes: BTreeMap<String, u64>,
    /// Changes exactly when the content does.
    pub version: String,
    /// Digest of the names: a subscription naming exactly these gets the whole map (see [`names_digest`]).
    pub names: u64,
    /// What changed since the previous config's resources of this type, computed once for every proxy.
    pub since: Option<Since>,
}

/// The difference from one version of a type to the next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Since {
    /// The version this is the difference from.
    pub version: String,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl TypeResources {
    pub fn new(map: ResourceMap) -> Arc<Self> {
        Arc::new(Self::build(map, None))
    }

    /// Like [`TypeResources::new`], also noting what changed since `previous`.
    pub fn new_since(map: ResourceMap, previous: Option<&TypeResources>) -> Arc<Self> {
        Arc::new(Self::build(map, previous))
    }

    /// Resources encoded one by one (a later one of the same name wins), noting what changed since `previous`.
    pub fn of_encoded<'a>(encoded: impl Iterator<Item = &'a Encoded>, previous: Option<&TypeResources>) -> Arc<Self> {
        let mut map = ResourceMap::new();
        let mut hashes = BTreeMap::new();
        for resource in encoded {
            map.insert(resource.name.clone(), resource.any.clone());
            hashes.insert(resource.name.clone(), resource.hash);
        }
        Arc::new(Self::with_hashes(map, hashes, previous))
    }

    /// `base` with more resources (each added, or replacing one of the same name).
    pub fn with_extras(base: &TypeResources, extras: &[Encoded]) -> Arc<Self> {
        Self::replacing(base, |_| false, extras)
    }

    /// `base` without the resources `removed` names, with `extras` added (or replacing one of the same name).
    pub fn replacing(base: &TypeResources, removed: impl Fn(&str) -> bool, extras: &[Encoded]) -> Arc<Self> {
        let (mut map, mut hashes) = (base.map.clone(), base.hashes.clone());
        map.retain(|name, _| !removed(name));
        hashes.retain(|name, _| !removed(name));
        for extra in extras {
            map.insert(extra.name.clone(), extra.any.clone());
            hashes.insert(extra.name.clone(), extra.hash);
        }
        Arc::new(Self::with_hashes(map, hashes, None))
    }

    fn build(map: ResourceMap, previous: Option<&TypeResources>) -> Self {
        let hashes: BTreeMap<String, u64> = map.iter().map(|(name, any)| (name.clone(), resource_hash(any))).collect();
        Self::with_hashes(map, hashes, previous)
    }

    fn with_hashes(map: ResourceMap, hashes: BTreeMap<String, u64>, previous: Option<&TypeResources>) -> Self {
        let version = version_of_hashes(&hashes);
        let names = names_digest(map.keys());
        let since = previous.map(|previous| Since {
            version: previous.version.clone(),
            changed: hashes
                .iter()
                .filter(|(n, h)| previous.hashes.get(*n) != Some(h))
                .map(|(n, _)| n.clone())
                .collect(),
            removed: previous.hashes.keys().filter(|n| !hashes.contains_key(*n)).cloned().collect(),
        });
        Self { map, hashes, version, names, since }
    }
}

/// One resource, encoded, with its version: what translation keeps per Service from one config to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub name: String,
    pub any: Arc<Any>,
    pub hash: u64,
}

impl Encoded {
    pub fn new<T: prost::Message + prost::Name>(name: String, message: &T) -> Self {
        let any = pack(message);
        Self { name, hash: resource_hash(&any), any: Arc::new(any) }
    }
}

/// The version of one encoded resource, stable across operator replicas of one build.
pub fn resource_hash(any: &Any) -> u64 {
    let mut hasher = DefaultHasher::new();
    any.type_url.hash(&mut hasher);
    any.value.hash(&mut hasher);
    hasher.finish()
}

/// A resource version as sent on the wire.
pub fn version_string(hash: u64) -> String {
    format!("{hash:016x}")
}

fn version_of_hashes(hashes: &BTreeMap<String, u64>) -> String {
    let mut hasher = DefaultHasher::new();
    for (name, hash) in hashes {
        name.hash(&mut hasher);
        hash.hash(&mut hasher);
    }
    version_string(hasher.finish())
}

/// Everything a proxy should hold, by type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedResources {
    pub by_type: BTreeMap<ResourceType, Arc<TypeResources>>,
}

/// The encoded form of [`SharedResources`]: the types every proxy shares.
#[derive(Debug, Clone)]
pub struct EncodedShared {
    pub clusters: Arc<TypeResources>,
    pub endpoints: Arc<TypeResources>,
    pub listeners: Arc<TypeResources>,
}

impl From<&SharedResources> for EncodedShared {
    fn from(r: &SharedResources) -> Self {
        Self {
            clusters: TypeResources::new(r.clusters.iter().map(|c| (c.name.clone(), Arc::new(pack(c)))).collect()),
            endpoints: TypeResources::new(
                r.endpoints.iter().map(|e| (e.cluster_name.clone(), Arc::new(pack(e)))).collect(),
            ),
            listeners: TypeResources::new(r.listeners.iter().map(|l| (l.name.clone(), Arc::new(pack(l)))).collect()),
        }
    }
}

impl EncodedResources {
    /// The shared types plus one namespace's routes.
    pub fn assemble(shared: &EncodedShared, routes: Arc<TypeResources>) -> Self {
        Self::of(shared.clusters.clone(), shared.endpoints.clone(), shared.listeners.clone(), routes)
    }

    /// The four wildcard-reachable types, no on-demand virtual hosts.
    pub fn of(
        clusters: Arc<TypeResources>,
        endpoints: Arc<TypeResources>,
        listeners: Arc<TypeResources>,
        routes: Arc<TypeResources>,
    ) -> Self {
        let by_type = BTreeMap::from([
            (ResourceType::Cluster, clusters),
            (ResourceType::Endpoint, endpoints),
            (ResourceType::Listener, listeners),
            (ResourceType::Route, routes),
        ]);
        Self { by_type }
    }

    pub fn of_type(&self, kind: ResourceType) -> Option<&Arc<TypeResources>> {
        self.by_type.get(&kind)
    }
}

impl From<&ProxyResources> for EncodedResources {
    fn from(r: &ProxyResources) -> Self {
        let shared = SharedResources {
            clusters: r.clusters.clone(),
            endpoints: r.endpoints.clone(),
            listeners: r.listeners.clone(),
        };
        Self::assemble(&EncodedShared::from(&shared), encode_routes(&r.routes, None))
    }
}

/// Route configurations, encoded, noting what changed since `previous`.
pub fn encode_routes(
    routes: &[envoy_types::pb::envoy::config::route::v3::RouteConfiguration],
    previous: Option<&TypeResources>,
) -> Arc<TypeResources> {
    TypeResources::new_since(routes.iter().map(|x| (x.name.clone(), Arc::new(pack(x)))).collect(), previous)
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
    version_of_hashes(&resources.iter().map(|(name, any)| (name.clone(), resource_hash(any))).collect())
}

/// A digest of a sorted list of names: equal digests mean (but for a 64-bit collision) the same names.
pub fn names_digest<'a>(names: impl Iterator<Item = &'a String>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for name in names {
        name.hash(&mut hasher);
    }
    hasher.finish()
}
