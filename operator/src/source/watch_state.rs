//! What a Kubernetes watch tells the index, as a pure state machine per watched kind and scope:
//!
//! - a watch (re)start is buffered until the list is complete and then replaces that kind atomically, so a lost
//!   watch or an API server restart neither loses nor duplicates objects;
//! - an invalid Weft resource becomes a [`Rejection`] while its last good version stays in force, also across
//!   relists.

use std::collections::BTreeMap;

use super::{Event, Kind, Rejection, Resource, ResourceKey};

/// An object as the watch delivered it, already decoded: valid, or rejected with field errors.
pub type Decoded = Result<Resource, Box<Rejection>>;

/// A decoded object after [`WatchState::remember`].
enum Remembered {
    Good(Resource),
    /// Rejected; with the last good version, which stays in force.
    Rejected(Box<Rejection>, Option<Resource>),
}

/// kube-runtime's watcher events, with decoded objects.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Init,
    InitApply(Decoded),
    InitDone,
    Apply(Decoded),
    Delete(ResourceKey),
}

#[derive(Debug)]
pub struct WatchState {
    kind: Kind,
    namespace: Option<String>,
    /// Objects and rejections seen since `Init`, until `InitDone`.
    relist: Option<(Vec<Resource>, Vec<Rejection>)>,
    last_good: BTreeMap<ResourceKey, Resource>,
    synced: bool,
}

impl WatchState {
    /// State for the watch of `kind` in `namespace` (`None`: all namespaces).
    pub fn new(kind: Kind, namespace: Option<String>) -> Self {
        Self { kind, namespace, relist: None, last_good: BTreeMap::new(), synced: false }
    }

    /// Whether a complete list has been delivered at least once.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The index events one watch event causes.
    pub fn on(&mut self, event: WatchEvent) -> Vec<Event> {
        match event {
            WatchEvent::Init => {
                self.relist = Some((Vec::new(), Vec::new()));
                Vec::new()
            }
            WatchEvent::InitApply(decoded) => {
                let remembered = self.remember(decoded);
                if let Some((objects, rejections)) = &mut self.relist {
                    match remembered {
                        Remembered::Good(resource) => objects.push(resource),
                        Remembered::Rejected(rejection, last_good) => {
                            objects.extend(last_good);
                            rejections.push(*rejection);
                        }
                    }
                }
                Vec::new()
            }
            WatchEvent::InitDone => self.finish_relist(),
            WatchEvent::Apply(decoded) => match self.remember(decoded) {
                Remembered::Good(resource) => vec![Event::Applied(resource)],
                Remembered::Rejected(rejection, _) => vec![Event::Rejected(*rejection)],
            },
            WatchEvent::Delete(key) => {
                self.last_good.remove(&key);
                vec![Event::Deleted(key)]
            }
        }
    }

    /// Records a valid object as the last good one; for a rejection, returns the last good version to keep.
    fn remember(&mut self, decoded: Decoded) -> Remembered {
        match decoded {
            Ok(resource) => {
                self.last_good.insert(resource.key(), resource.clone());
                Remembered::Good(resource)
            }
            Err(rejection) => {
                let last_good = self.last_good.get(&rejection.key).cloned();
                Remembered::Rejected(rejection, last_good)
            }
        }
    }

    fn finish_relist(&mut self) -> Vec<Event> {
        let (objects, rejections) = self.relist.take().unwrap_or_default();
        let listed: Vec<&ResourceKey> = rejections.iter().map(|r| &r.key).collect();
        let present: Vec<ResourceKey> = objects.iter().map(Resource::key).collect();
        self.last_good.retain(|key, _| present.contains(key) || listed.contains(&key));
        self.synced = true;
        let mut events = vec![Event::Restarted { kind: self.kind, namespace: self.namespace.clone(), objects }];
        events.extend(rejections.into_iter().map(Event::Rejected));
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::decode::{Decoded as Doc, decode_document};
    use serde_json::json;

    fn vs(name: &str, weight: i64) -> Decoded {
        let value = json!({
            "apiVersion": "networking.weft.dev/v1alpha1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "shop", "generation": weight},
            "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}, "weight": weight}]}]}
        });
        match decode_document(value) {
            Ok(Doc::Resources(mut r)) => Ok(r.remove(0)),
            Ok(Doc::Ignored { .. }) => unreachable!(),
            Err(errors) => Err(Box::new(Rejection {
                key: ResourceKey { kind: Kind::VirtualService, namespace: "shop".into(), name: name.into() },
                generation: Some(weight),
                errors,
                status: None,
            })),
        }
    }

    fn names(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Applied(r) => format!("applied {}", r.key().name),
                Event::Deleted(k) => format!("deleted {}", k.name),
                Event::Restarted { objects, .. } => {
                    format!("restarted [{}]", objects.iter().map(|o| o.key().name).collect::<Vec<_>>().join(" "))
                }
                Event::Rejected(r) => format!("rejected {} gen {:?}", r.key.name, r.generation),
            })
            .collect()
    }

    #[test]
    fn a_relist_is_delivered_whole_at_the_end() {
        let mut state = WatchState::new(Kind::VirtualService, None);
        assert!(state.on(WatchEvent::Init).is_empty());
        assert!(state.on(WatchEvent::InitApply(vs("a", 1))).is_empty());
        assert!(state.on(WatchEvent::InitApply(vs("b", 1))).is_empty());
        assert!(!state.is_synced());
        assert_eq!(names(&state.on(WatchEvent::InitDone)), ["restarted [a b]"]);
        assert!(state.is_synced());
    }

    #[test]
    fn an_invalid_update_is_rejected_and_the_last_good_version_survives_a_relist() {
        let mut state = WatchState::new(Kind::VirtualService, None);
        assert_eq!(names(&state.on(WatchEvent::Apply(vs("a", 10)))), ["applied a"]);
        assert_eq!(names(&state.on(WatchEvent::Apply(vs("a", -1)))), ["rejected a gen Some(-1)"]);
        // The watch restarts; the object is still invalid. Its last good version stays, and so does the rejection.
        state.on(WatchEvent::Init);
        state.on(WatchEvent::InitApply(vs("a", -1)));
        let events = state.on(WatchEvent::InitDone);
        assert_eq!(names(&events), ["restarted [a]", "rejected a gen Some(-1)"]);
        let Event::Restarted { objects, .. } = &events[0] else { unreachable!() };
        let Resource::VirtualService(kept) = &objects[0] else { unreachable!() };
        assert_eq!(kept.spec.http[0].route[0].weight, Some(10), "the last good version is the one in force");
    }

    #[test]
    fn objects_deleted_while_the_watch_was_down_disappear_with_the_relist() {
        let mut state = WatchState::new(Kind::VirtualService, Some("shop".into()));
        state.on(WatchEvent::Apply(vs("a", 1)));
        state.on(WatchEvent::Apply(vs("gone", 1)));
        state.on(WatchEvent::Init);
        state.on(WatchEvent::InitApply(vs("a", 1)));
        let events = state.on(WatchEvent::InitDone);
        assert_eq!(names(&events), ["restarted [a]"]);
        assert!(matches!(&events[0], Event::Restarted { namespace: Some(ns), .. } if ns == "shop"));
        assert_eq!(names(&state.on(WatchEvent::Delete(vs("a", 1).unwrap().key()))), ["deleted a"]);
    }
}
