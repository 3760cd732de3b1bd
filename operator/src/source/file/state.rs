//! What the config directory holds, file by file, and what is in force: each file's last good state, with an
//! object defined in several files taken from the last of them in name order. A read of some files yields the
//! changes to what is in force, object by object, so an edit of one file costs the objects it touches, not the
//! directory. Pure: the caller reads the files.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use super::{FileRead, ParsedFile, Problem, parse_file};
use crate::source::{Event, Resource, ResourceKey};

#[derive(Debug, Default)]
pub struct DirectoryState {
    files: BTreeMap<PathBuf, FileState>,
    /// The files defining each object, in name order: the last one's definition is in force.
    owners: BTreeMap<ResourceKey, BTreeSet<PathBuf>>,
}

#[derive(Debug)]
struct FileState {
    content_hash: u64,
    /// Objects of the last version of the file that had no errors (or of the first version seen, minus its
    /// broken documents, when no version was ever good).
    in_force: BTreeMap<ResourceKey, Resource>,
}

/// Outcome of a read.
#[derive(Debug, Default)]
pub struct Update {
    /// What changed in force, one event per object (`Applied` or `Deleted`).
    pub events: Vec<Event>,
    /// Problems in files whose content changed since the last update; each is reported once.
    pub new_problems: Vec<Problem>,
    /// Notes (ignored kinds, duplicates) for changed files.
    pub new_notes: Vec<Problem>,
}

impl DirectoryState {
    /// Applies a fresh read of the whole directory (`path -> content`): files not in it are gone.
    pub fn update(&mut self, contents: &BTreeMap<PathBuf, FileRead>) -> Update {
        let gone = self.files.keys().filter(|path| !contents.contains_key(*path)).map(|path| (path.clone(), None));
        let mut changes: BTreeMap<PathBuf, Option<FileRead>> = gone.collect();
        changes.extend(contents.iter().map(|(path, read)| (path.clone(), Some(read.clone()))));
        self.update_files(&changes)
    }

    /// Applies fresh reads of some files (`None`: the file is gone); the other files stay as they were.
    pub fn update_files(&mut self, changes: &BTreeMap<PathBuf, Option<FileRead>>) -> Update {
        let mut update = Update::default();
        // What was in force for every object a changed file defines or defined, before any change.
        let mut before: BTreeMap<ResourceKey, Option<Resource>> = BTreeMap::new();
        let mut changed: BTreeSet<&Path> = BTreeSet::new();
        for (path, read) in changes {
            let next = match read {
                None if self.files.contains_key(path) => None,
                None => continue,
                Some(read) => {
                    let hash = content_hash(read);
                    if self.files.get(path).is_some_and(|f| f.content_hash == hash) {
                        continue;
                    }
                    Some(self.parse(path, read, hash, &mut update))
                }
            };
            changed.insert(path);
            let old_keys: Vec<ResourceKey> =
                self.files.get(path).map(|f| f.in_force.keys().cloned().collect()).unwrap_or_default();
            let new_keys: Vec<ResourceKey> =
                next.as_ref().map(|f| f.in_force.keys().cloned().collect()).unwrap_or_default();
            for key in old_keys.iter().chain(&new_keys) {
                if !before.contains_key(key) {
                    before.insert(key.clone(), self.in_force(key).cloned());
                }
            }
            self.replace(path, old_keys, new_keys, next);
        }
        for (key, was) in before {
            update.new_notes.extend(self.duplicate_notes(&key, &changed));
            match self.in_force(&key) {
                Some(now) if was.as_ref() != Some(now) => update.events.push(Event::Applied(now.clone())),
                None if was.is_some() => update.events.push(Event::Deleted(key)),
                _ => {}
            }
        }
        update
    }

    /// Every object in force, in key order.
    pub fn resources(&self) -> Vec<Resource> {
        self.owners.keys().filter_map(|key| self.in_force(key)).cloned().collect()
    }

    /// The new state of a file whose content is `read`: its objects, or its last good ones when it has errors.
    fn parse(&self, path: &Path, read: &FileRead, content_hash: u64, update: &mut Update) -> FileState {
        let parsed = match read {
            FileRead::Text(text) => parse_file(path, text),
            FileRead::Unreadable(why) => {
                ParsedFile { errors: vec![Problem::of_file(path, why.clone())], ..ParsedFile::default() }
            }
        };
        let in_force = match (self.files.get(path), parsed.errors.is_empty()) {
            (Some(previous), false) => previous.in_force.clone(),
            (previous, _) => {
                let mut in_force = BTreeMap::new();
                for resource in parsed.resources {
                    // An object the edit left as it was stays the one the index holds too, not a second copy.
                    let key = resource.key();
                    let resource = match previous.and_then(|previous| previous.in_force.get(&key)) {
                        Some(same) if *same == resource => same.clone(),
                        _ => resource,
                    };
                    if let Some(earlier) = in_force.insert(key, resource) {
                        let key = earlier.key();
                        let message = format!(
                            "{:?} {}/{} is defined twice in this file; the later definition is used",
                            key.kind, key.namespace, key.name
                        );
                        update.new_notes.push(Problem::of_file(path, message));
                    }
                }
                in_force
            }
        };
        update.new_problems.extend(parsed.errors);
        update.new_notes.extend(parsed.ignored);
        FileState { content_hash, in_force }
    }

    fn replace(
        &mut self,
        path: &Path,
        old_keys: Vec<ResourceKey>,
        new_keys: Vec<ResourceKey>,
        next: Option<FileState>,
    ) {
        for key in old_keys {
            if let Some(owners) = self.owners.get_mut(&key) {
                owners.remove(path);
                if owners.is_empty() {
                    self.owners.remove(&key);
                }
            }
        }
        for key in new_keys {
            self.owners.entry(key).or_default().insert(path.to_path_buf());
        }
        match next {
            Some(state) => self.files.insert(path.to_path_buf(), state),
            None => self.files.remove(path),
        };
    }

    fn in_force(&self, key: &ResourceKey) -> Option<&Resource> {
        let path = self.owners.get(key)?.last()?;
        self.files.get(path)?.in_force.get(key)
    }

    /// For an object several files define, a note per file that overrides an earlier one, when either changed.
    fn duplicate_notes(&self, key: &ResourceKey, changed: &BTreeSet<&Path>) -> Vec<Problem> {
        let Some(owners) = self.owners.get(key) else { return Vec::new() };
        let owners: Vec<&PathBuf> = owners.iter().collect();
        owners
            .windows(2)
            .filter(|pair| changed.contains(pair[0].as_path()) || changed.contains(pair[1].as_path()))
            .map(|pair| {
                let message = format!(
                    "{:?} {}/{} is also defined in {}; this file's definition is used",
                    key.kind,
                    key.namespace,
                    key.name,
                    pair[0].display()
                );
                Problem::of_file(pair[1], message)
            })
            .collect()
    }
}

fn content_hash(read: &FileRead) -> u64 {
    let mut hasher = DefaultHasher::new();
    read.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Kind;

    const SERVICE: &str =
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
    const GOOD_VS: &str = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n";
    const BAD_VS: &str = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: lots\n";

    fn dir(files: &[(&str, &str)]) -> BTreeMap<PathBuf, FileRead> {
        files.iter().map(|(n, t)| (PathBuf::from(n), FileRead::Text(t.to_string()))).collect()
    }

    fn one(path: &str, read: Option<&str>) -> BTreeMap<PathBuf, Option<FileRead>> {
        [(PathBuf::from(path), read.map(|t| FileRead::Text(t.to_string())))].into()
    }

    /// The events as `kind namespace/name` (applied) or `-kind namespace/name` (deleted).
    fn summary(update: &Update) -> Vec<String> {
        update
            .events
            .iter()
            .map(|event| match event {
                Event::Applied(r) => format!("{:?} {}/{}", r.kind(), r.key().namespace, r.key().name),
                Event::Deleted(k) => format!("-{:?} {}/{}", k.kind, k.namespace, k.name),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_broken_edit_keeps_the_files_last_good_state_and_is_reported_once() {
        let mut state = DirectoryState::default();
        let first = state.update(&dir(&[("svc.yaml", SERVICE), ("vs.yaml", GOOD_VS)]));
        assert_eq!(summary(&first), ["Service shop/reviews", "VirtualService shop/reviews"]);
        assert!(first.new_problems.is_empty());

        let broken = state.update(&dir(&[("svc.yaml", SERVICE), ("vs.yaml", BAD_VS)]));
        assert!(broken.events.is_empty(), "last good VirtualService must stay in force");
        assert_eq!(state.resources().len(), 2);
        assert_eq!(broken.new_problems.len(), 1);
        let message = broken.new_problems[0].to_string();
        assert!(message.starts_with("vs.yaml: document 1 (line 1): spec.http[0].route[0].weight:"), "{message}");

        let again = state.update(&dir(&[("svc.yaml", SERVICE), ("vs.yaml", BAD_VS)]));
        assert!(again.new_problems.is_empty(), "an unchanged broken file is not reported again");
        let fixed = state.update_files(&one("vs.yaml", Some(&GOOD_VS.replace("host: reviews}", "host: ratings}"))));
        assert_eq!(summary(&fixed), ["VirtualService shop/reviews"], "the fixed version is in force");
    }

    #[test]
    fn an_unreadable_file_is_reported_once_by_name_and_the_others_stay_in_force() {
        let mut state = DirectoryState::default();
        let mut contents = dir(&[("svc.yaml", SERVICE)]);
        contents.insert("noise.yaml".into(), FileRead::Unreadable("not UTF-8 text (invalid byte at offset 0)".into()));
        let first = state.update(&contents);
        assert_eq!(summary(&first), ["Service shop/reviews"], "the readable file is in force");
        assert_eq!(
            first.new_problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["noise.yaml: not UTF-8 text (invalid byte at offset 0)"]
        );
        contents.insert("vs.yaml".into(), FileRead::Text(GOOD_VS.into()));
        let edit = state.update(&contents);
        assert_eq!(summary(&edit), ["VirtualService shop/reviews"], "later edits of other files are followed");
        assert!(edit.new_problems.is_empty(), "the unreadable file is not reported again");
    }

    #[test]
    fn a_file_that_becomes_unreadable_keeps_its_last_good_state() {
        let mut state = DirectoryState::default();
        state.update(&dir(&[("svc.yaml", SERVICE), ("vs.yaml", GOOD_VS)]));
        let changes = [(PathBuf::from("vs.yaml"), Some(FileRead::Unreadable("permission denied".into())))].into();
        let update = state.update_files(&changes);
        assert!(update.events.is_empty());
        assert_eq!(state.resources().len(), 2);
        assert_eq!(update.new_problems.len(), 1);
    }

    #[test]
    fn reading_some_files_leaves_the_others_and_a_gone_file_takes_its_objects() {
        let mut state = DirectoryState::default();
        state.update(&dir(&[("svc.yaml", SERVICE)]));
        let added = state.update_files(&one("vs.yaml", Some(GOOD_VS)));
        assert_eq!(summary(&added), ["VirtualService shop/reviews"], "only what the read file changed");
        let removed = state.update_files(&one("svc.yaml", None));
        assert_eq!(summary(&removed), ["-Service shop/reviews"]);
        assert_eq!(state.resources()[0].kind(), Kind::VirtualService);
        assert!(state.update_files(&one("svc.yaml", None)).events.is_empty(), "gone already");
        let unchanged = state.update_files(&one("vs.yaml", Some(GOOD_VS)));
        assert!(unchanged.events.is_empty(), "the same content changes nothing");
    }

    #[test]
    fn an_object_an_edit_left_as_it_was_is_still_the_one_the_index_holds() {
        let service = |resource: &Resource| match resource {
            Resource::Service(service) => service.clone(),
            other => panic!("not a service: {other:?}"),
        };
        let mut state = DirectoryState::default();
        let first = state.update(&dir(&[("all.yaml", &format!("{SERVICE}---\n{GOOD_VS}"))]));
        let Event::Applied(sent) = &first.events[0] else { panic!("{first:?}") };
        let edited = format!("{SERVICE}---\n{}", GOOD_VS.replace("host: reviews}", "host: ratings}"));
        let edit = state.update_files(&one("all.yaml", Some(&edited)));
        assert_eq!(summary(&edit), ["VirtualService shop/reviews"]);
        let held = state.resources().into_iter().find(|r| r.kind() == Kind::Service).unwrap();
        assert!(std::sync::Arc::ptr_eq(&service(sent), &service(&held)), "one copy of the unchanged Service");
    }

    #[test]
    fn removing_a_file_removes_its_objects() {
        let mut state = DirectoryState::default();
        state.update(&dir(&[("svc.yaml", SERVICE), ("vs.yaml", GOOD_VS)]));
        let update = state.update(&dir(&[("svc.yaml", SERVICE)]));
        assert_eq!(summary(&update), ["-VirtualService shop/reviews"]);
        assert_eq!(state.resources().len(), 1);
    }

    #[test]
    fn a_new_broken_file_contributes_its_valid_documents() {
        let mut state = DirectoryState::default();
        let text = format!("{SERVICE}---\n{BAD_VS}");
        let update = state.update(&dir(&[("all.yaml", &text)]));
        assert_eq!(summary(&update), ["Service shop/reviews"]);
        assert_eq!(update.new_problems[0].document, 2);
        assert_eq!(update.new_problems[0].line, 6);
    }

    #[test]
    fn the_same_object_in_two_files_is_noted_and_the_later_file_wins() {
        let mut state = DirectoryState::default();
        let other = SERVICE.replace("port: 80", "port: 81");
        let update = state.update(&dir(&[("a.yaml", SERVICE), ("b.yaml", &other)]));
        assert_eq!(summary(&update), ["Service shop/reviews"]);
        assert!(update.new_notes[0].message.contains("also defined in a.yaml"));
        let port = |update: &Update| match &update.events[0] {
            Event::Applied(Resource::Service(svc)) => svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
            other => panic!("not a service: {other:?}"),
        };
        assert_eq!(port(&update), 81);
        let shadowed = state.update_files(&one("a.yaml", Some(&SERVICE.replace("port: 80", "port: 82"))));
        assert!(shadowed.events.is_empty(), "an edit of the overridden file changes nothing in force");
        assert_eq!(shadowed.new_notes.len(), 1, "but is noted");
        let uncovered = state.update_files(&one("b.yaml", None));
        assert_eq!(port(&uncovered), 82, "removing the later file puts the earlier one in force");
        let twice = format!("{SERVICE}---\n{other}");
        let update = state.update_files(&one("c.yaml", Some(&twice)));
        assert!(update.new_notes.iter().any(|n| n.message.contains("defined twice in this file")), "{update:?}");
    }
}
