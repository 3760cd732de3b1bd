//! What a proxy holds of one resource type, as the delta server knows it (name -> version), and the names it
//! subscribed to. A proxy in step holds exactly one shared version of the type, and subscribes to exactly its
//! names; then only a pointer to that version is kept, so a thousand proxies in step cost nothing per resource.
//! Each gets a copy of its own only when it differs (a NACK, a subscription of its own, a reconnect with other
//! versions), and goes back to sharing once in step again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::resources::TypeResources;

#[derive(Debug, Clone, Default)]
pub struct Held {
    /// When set: exactly the resources of this shared version (and `own` is empty).
    shared: Option<Arc<TypeResources>>,
    own: BTreeMap<String, u64>,
}

impl Held {
    /// Exactly the resources of `all`.
    pub fn shared(all: Arc<TypeResources>) -> Self {
        Self { shared: Some(all), own: BTreeMap::new() }
    }

    #[cfg(test)]
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        match &self.shared {
            Some(all) => all.hashes.get(name).copied(),
            None => self.own.get(name).copied(),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn names(&self) -> Box<dyn Iterator<Item = &String> + '_> {
        match &self.shared {
            Some(all) => Box::new(all.hashes.keys()),
            None => Box::new(self.own.keys()),
        }
    }

    pub fn insert(&mut self, name: String, hash: u64) -> Option<u64> {
        self.own().insert(name, hash)
    }

    pub fn remove(&mut self, name: &str) -> Option<u64> {
        if !self.contains(name) {
            return None;
        }
        self.own().remove(name)
    }

    /// A map of its own, copied from the shared version when there is one.
    fn own(&mut self) -> &mut BTreeMap<String, u64> {
        if let Some(all) = self.shared.take() {
            self.own = all.hashes.clone();
        }
        &mut self.own
    }
}

/// Resource names subscribed to: the names of a shared version of the type, or a set of their own.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// When set: exactly the names of this shared version (and `own` is empty).
    shared: Option<Arc<TypeResources>>,
    own: BTreeSet<String>,
}

impl Names {
    /// From now on exactly the names of `all` (the caller knows they are the same).
    pub fn share(&mut self, all: Arc<TypeResources>) {
        self.shared = Some(all);
        self.own.clear();
    }

    #[cfg(test)]
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    pub fn contains(&self, name: &str) -> bool {
        match &self.shared {
            Some(all) => all.hashes.contains_key(name),
            None => self.own.contains(name),
        }
    }

    pub fn len(&self) -> usize {
        self.shared.as_ref().map_or(self.own.len(), |all| all.hashes.len())
    }

    /// In order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = &String> + '_> {
        match &self.shared {
            Some(all) => Box::new(all.hashes.keys()),
            None => Box::new(self.own.iter()),
        }
    }

    pub fn insert(&mut self, name: String) -> bool {
        if self.contains(&name) {
            return false;
        }
        self.own().insert(name)
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.contains(name) && self.own().remove(name)
    }

    /// The names as a set of their own.
    pub fn to_set(&self) -> BTreeSet<String> {
        self.iter().cloned().collect()
    }

    fn own(&mut self) -> &mut BTreeSet<String> {
        if let Some(all) = self.shared.take() {
            self.own = all.hashes.keys().cloned().collect();
        }
        &mut self.own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_version_is_read_through_and_copied_only_when_changed() {
        let all = Arc::new(TypeResources {
            hashes: BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 2)]),
            ..TypeResources::default()
        });
        let mut held = Held::shared(all.clone());
        assert_eq!((held.get("a"), held.get("c")), (Some(1), None));
        assert_eq!(held.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(held.remove("c"), None);
        assert!(held.is_shared(), "nothing to remove: still shared");
        assert_eq!(held.insert("a".into(), 3), Some(1));
        assert!(!held.is_shared(), "its own copy");
        assert_eq!((held.get("a"), held.get("b")), (Some(3), Some(2)), "changed where it was changed");
        assert_eq!(all.hashes["a"], 1, "the shared version is untouched");
    }
}
