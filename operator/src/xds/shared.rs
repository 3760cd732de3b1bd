//! Translations shared by every stream: for the current config, the resources all proxies get alike are
//! translated and encoded once, and the routes once per namespace (they differ only by the namespace's short
//! names). A stream for a proxy then costs only the diff against what that proxy holds.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;
use weft_xds::ProxyNode;

use super::resources::{EncodedResources, EncodedShared, TypeResources, encode_routes};
use crate::index::published::Published;
use crate::translate;

/// The cache of the current config's translations.
#[derive(Default)]
pub struct Translations {
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    /// [`Published::config`] of what is cached.
    config: u64,
    shared: Option<EncodedShared>,
    routes: HashMap<String, Arc<TypeResources>>,
    /// The previous config's, to note what changed since (delta streams in step send only that).
    previous_shared: Option<EncodedShared>,
    previous_routes: HashMap<String, Arc<TypeResources>>,
}

impl Translations {
    /// The resources `node` should hold under `published`. Waits (asynchronously) while another stream
    /// translates the same config.
    pub async fn for_proxy(&self, published: &Published, node: &ProxyNode) -> Arc<EncodedResources> {
        let mut cache = self.cache.lock().await;
        if published.config < cache.config {
            // A stream still catching up with an older config: translate without disturbing the cache.
            drop(cache);
            return Arc::new(translate_for(published, node));
        }
        if published.config > cache.config {
            let previous = std::mem::take(&mut *cache);
            *cache = Cache {
                config: published.config,
                previous_shared: previous.shared,
                previous_routes: previous.routes,
                ..Cache::default()
            };
        }
        let snapshot = &published.snapshot;
        let Cache { shared, routes, previous_shared, previous_routes, .. } = &mut *cache;
        let shared = shared
            .get_or_insert_with(|| EncodedShared::since(&translate::shared(snapshot), previous_shared.as_ref()))
            .clone();
        let namespace = &node.namespace;
        let routes = routes
            .entry(namespace.clone())
            .or_insert_with(|| {
                encode_routes(
                    &translate::routes_for(snapshot, namespace),
                    previous_routes.get(namespace).map(|r| r.as_ref()),
                )
            })
            .clone();
        Arc::new(EncodedResources::assemble(&shared, routes))
    }
}

fn translate_for(published: &Published, node: &ProxyNode) -> EncodedResources {
    EncodedResources::from(&translate::translate(&published.snapshot, node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::source::Event;
    use crate::source::file::parse_file;
    use weft_xds::ResourceType;

    fn published(config: u64, yaml: &str) -> Published {
        let mut index = Index::default();
        for resource in parse_file(std::path::Path::new("t.yaml"), yaml).resources {
            index.apply(Event::Applied(resource));
        }
        Published { snapshot: index.snapshot(), at: std::time::Instant::now(), config }
    }

    fn proxy(name: &str, namespace: &str) -> ProxyNode {
        ProxyNode { pod_name: name.into(), namespace: namespace.into(), ip: None }
    }

    const MESH: &str =
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {ports: [{port: 80}]}\n";

    #[tokio::test]
    async fn proxies_share_one_translation_per_namespace_and_config() {
        let translations = Translations::default();
        let current = published(1, MESH);
        let a = translations.for_proxy(&current, &proxy("a", "shop")).await;
        let b = translations.for_proxy(&current, &proxy("b", "shop")).await;
        let c = translations.for_proxy(&current, &proxy("c", "web")).await;
        let of = |r: &EncodedResources, kind| r.of_type(kind).cloned().unwrap();
        assert!(Arc::ptr_eq(&of(&a, ResourceType::Route), &of(&b, ResourceType::Route)), "same namespace, same routes");
        assert!(!Arc::ptr_eq(&of(&a, ResourceType::Route), &of(&c, ResourceType::Route)));
        assert_ne!(of(&a, ResourceType::Route).version, of(&c, ResourceType::Route).version, "short names differ");
        assert!(Arc::ptr_eq(&of(&a, ResourceType::Cluster), &of(&c, ResourceType::Cluster)), "clusters are shared");
        assert_eq!(*a, EncodedResources::from(&translate::translate(&current.snapshot, &proxy("a", "shop"))));
        let next = published(2, &MESH.replace("port: 80", "port: 81"));
        let d = translations.for_proxy(&next, &proxy("d", "shop")).await;
        assert_ne!(of(&d, ResourceType::Cluster).version, of(&a, ResourceType::Cluster).version, "a new config");
    }
}
