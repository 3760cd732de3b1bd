//! Standalone mode: every `*.yaml`/`*.yml` file of a directory, followed through edits ([`watch`]), read one
//! file at a time ([`read`]), and folded here into the resources in force.
//!
//! A file that cannot be read, parsed or validated is reported once (per distinct content) with file, document and
//! field path, and the last good state of that file stays in force; the other files are unaffected.

pub mod read;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet, hash_map::DefaultHasher};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use weft_crds::parse::yaml_documents;

pub use read::FileRead;
pub use watch::watch_dir;

use super::decode::{Decoded, decode_document};
use super::{Event, Kind, Resource, ResourceKey};

/// Something wrong with one document of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based document index within the file.
    pub document: usize,
    /// 1-based line where the document starts.
    pub line: usize,
    pub message: String,
}

impl Problem {
    /// A problem with the file as a whole rather than one of its documents.
    fn of_file(file: &Path, message: String) -> Self {
        Self { file: file.to_path_buf(), document: 0, line: 0, message }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.document == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(f, "{}: document {} (line {}): {}", self.file.display(), self.document, self.line, self.message)
    }
}

/// The result of parsing one file's text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedFile {
    pub resources: Vec<Resource>,
    pub errors: Vec<Problem>,
    /// Documents of kinds the operator does not watch.
    pub ignored: Vec<Problem>,
}

/// Parses every document of a file; pure.
pub fn parse_file(file: &Path, text: &str) -> ParsedFile {
    let mut parsed = ParsedFile::default();
    for doc in yaml_documents(text) {
        let problem =
            |message: String| Problem { file: file.to_path_buf(), document: doc.index, line: doc.line, message };
        let value = match doc.value {
            Ok(value) => value,
            Err(message) => {
                parsed.errors.push(problem(format!("invalid YAML: {message}")));
                continue;
            }
        };
        match decode_document(value) {
            Ok(Decoded::Resources(resources)) => parsed.resources.extend(resources),
            Ok(Decoded::Ignored { api_version, kind }) => {
                parsed.ignored.push(problem(format!("{kind} ({api_version}) is not a kind Weft reads; ignored")))
            }
            Err(errors) => parsed.errors.extend(errors.into_iter().map(|e| problem(e.to_string()))),
        }
    }
    parsed
}

/// What the directory holds, file by file, remembering each file's last good state.
#[derive(Debug, Default)]
pub struct DirectoryState {
    files: BTreeMap<PathBuf, FileState>,
}

#[derive(Debug)]
struct FileState {
    content_hash: u64,
    /// Resources of the last version of the file that had no errors (or of the first version seen, minus its
    /// broken documents, when no version was ever good).
    in_force: Vec<Resource>,
}

/// Outcome of [`DirectoryState::update`].
#[derive(Debug, Default)]
pub struct Update {
    /// Every resource in force, across files, with duplicates resolved (last file in name order wins).
    pub resources: Vec<Resource>,
    /// Problems in files whose content changed since the last update; each is reported once.
    pub new_problems: Vec<Problem>,
    /// Notes (ignored kinds, duplicates) for changed files.
    pub new_notes: Vec<Problem>,
}

impl DirectoryState {
    /// Applies a fresh read of the whole directory (`path -> content`): files not in it are gone. Pure.
    pub fn update(&mut self, contents: &BTreeMap<PathBuf, FileRead>) -> Update {
        self.files.retain(|path, _| contents.contains_key(path));
        let changes = contents.iter().map(|(path, read)| (path.clone(), Some(read.clone()))).collect();
        self.update_files(&changes)
    }

    /// Applies fresh reads of some files (`None`: the file is gone); the other files stay as they were. Pure.
    pub fn update_files(&mut self, changes: &BTreeMap<PathBuf, Option<FileRead>>) -> Update {
        let mut update = Update::default();
        let mut changed: BTreeSet<&Path> = BTreeSet::new();
        for (path, read) in changes {
            let Some(read) = read else {
                if self.files.remove(path).is_some() {
                    changed.insert(path);
                }
                continue;
            };
            let hash = content_hash(read);
            if self.files.get(path).is_some_and(|f| f.content_hash == hash) {
                continue;
            }
            changed.insert(path);
            let parsed = match read {
                FileRead::Text(text) => parse_file(path, text),
                FileRead::Unreadable(why) => {
                    ParsedFile { errors: vec![Problem::of_file(path, why.clone())], ..ParsedFile::default() }
                }
            };
            let in_force = match (self.files.get(path), parsed.errors.is_empty()) {
                (Some(previous), false) => previous.in_force.clone(),
                _ => parsed.resources,
            };
            update.new_problems.extend(parsed.errors);
            update.new_notes.extend(parsed.ignored);
            self.files.insert(path.clone(), FileState { content_hash: hash, in_force });
        }
        let (resources, notes) = self.merged(&changed);
        update.resources = resources;
        update.new_notes.extend(notes);
        update
    }

    /// Every resource in force, duplicates resolved (last file in name order wins); notes about duplicates that
    /// involve a changed file.
    fn merged(&self, changed: &BTreeSet<&Path>) -> (Vec<Resource>, Vec<Problem>) {
        let mut notes = Vec::new();
        let mut merged: BTreeMap<ResourceKey, (&Path, &Resource)> = BTreeMap::new();
        for (path, state) in &self.files {
            for resource in &state.in_force {
                if let Some((earlier, _)) = merged.insert(resource.key(), (path.as_path(), resource))
                    && (changed.contains(path.as_path()) || changed.contains(earlier))
                {
                    let key = resource.key();
                    notes.push(Problem::of_file(
                        path,
                        format!(
                            "{:?} {}/{} is also defined in {}; this file's definition is used",
                            key.kind,
                            key.namespace,
                            key.name,
                            earlier.display()
                        ),
                    ));
                }
            }
        }
        (merged.into_values().map(|(_, r)| r.clone()).collect(), notes)
    }
}

/// The full state as one relist per kind, which is what a directory re-read is.
pub fn as_events(resources: &[Resource]) -> Vec<Event> {
    Kind::ALL
        .into_iter()
        .map(|kind| Event::Restarted {
            kind,
            namespace: None,
            objects: resources.iter().filter(|r| r.kind() == kind).cloned().collect(),
        })
        .collect()
}

fn content_hash(read: &FileRead) -> u64 {
    let mut hasher = DefaultHasher::new();
    read.hash(&mut hasher);
    hasher.finish()
}

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("watching the config directory {}: {source}", dir.display())]
    Watch { dir: PathBuf, source: notify::Error },
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str =
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
    const GOOD_VS: &str = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n";
    const BAD_VS: &str = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: lots\n";

    fn dir(files: &[(&str, &str)]) -> BTreeMap<PathBuf, FileRead> {
        files.iter().map(|(n, t)| (PathBuf::from(n), FileRead::Text(t.to_string()))).collect()
    }

    #[test]
    fn a_broken_edit_keeps_the_files_last_good_state_and_is_reported_once() {
        let mut state = DirectoryState::default();
        let first = state.update(&dir(&[("svc.yaml", SERVICE), ("vs.yaml", GOOD_VS)]));
        assert_eq!(first.resources.len(), 2);
        assert!(first.new_problems.is_empty());

        let broken = state.update(&dir(&[("svc.yaml", SERVICE), ("vs.yaml", BAD_VS)]));
        assert_eq!(broken.resources, first.resources, "last good VirtualService must stay in force");
        assert_eq!(broken.new_problems.len(), 1);
        let message = broken.new_problems[0].to_string();
        assert!(message.starts_with("vs.yaml: document 1 (line 1): spec.http[0].route[0].weight:"), "{message}");

        let again = state.update(&dir(&[("svc.yaml", SERVICE), ("vs.yaml", BAD_VS)]));
        assert!(again.new_problems.is_empty(), "an unchanged broken file is not reported again");
    }

    #[test]
    fn an_unreadable_file_is_reported_once_by_name_and_the_others_stay_in_force() {
        let mut state = DirectoryState::default();
        let mut contents = dir(&[("svc.yaml", SERVICE)]);
        contents.insert("noise.yaml".into(), FileRead::Unreadable("not UTF-8 text (invalid byte at offset 0)".into()));
        let first = state.update(&contents);
        assert_eq!(first.resources.len(), 1, "the readable file is in force");
        assert_eq!(
            first.new_problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["noise.yaml: not UTF-8 text (invalid byte at offset 0)"]
        );
        contents.insert("vs.yaml".into(), FileRead::Text(GOOD_VS.into()));
        let edit = state.update(&contents);
        assert_eq!(edit.resources.len(), 2, "later edits of other files are followed");
        assert!(edit.new_problems.is_empty(), "the unreadable file is not reported again");
    }

    #[test]
    fn a_file_that_becomes_unreadable_keeps_its_last_good_state() {
        let mut state = DirectoryState::default();
        state.update(&dir(&[("svc.yaml", SERVICE), ("vs.yaml", GOOD_VS)]));
        let changes = [(PathBuf::from("vs.yaml"), Some(FileRead::Unreadable("permission denied".into())))].into();
        let update = state.update_files(&changes);
        assert_eq!(update.resources.len(), 2);
        assert_eq!(update.new_problems.len(), 1);
    }

    #[test]
    fn reading_some_files_leaves_the_others_and_a_gone_file_takes_its_objects() {
        let mut state = DirectoryState::default();
        state.update(&dir(&[("svc.yaml", SERVICE)]));
        let added = state.update_files(&[(PathBuf::from("vs.yaml"), Some(FileRead::Text(GOOD_VS.into())))].into());
        assert_eq!(added.resources.len(), 2);
        let removed = state.update_files(&[(PathBuf::from("svc.yaml"), None)].into());
        assert_eq!(removed.resources.len(), 1);
        assert_eq!(removed.resources[0].kind(), Kind::VirtualService);
    }

    #[test]
    fn weights_past_envoys_limit_and_rules_without_routes_are_refused_with_the_field_path() {
        let huge = GOOD_VS.replace(
            "    - destination: {host: reviews}\n",
            &"    - destination: {host: reviews}\n      weight: 2147483647\n".repeat(3),
        );
        let parsed = parse_file(Path::new("vs.yaml"), &huge);
        let messages: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "vs.yaml: document 1 (line 1): spec.http[0].route: the weights add up to 6442450941, more than 4294967295 (the largest total Envoy accepts)"
            ]
        );
        let empty =
            "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [r]}\n";
        let parsed = parse_file(Path::new("vs.yaml"), empty);
        assert!(
            parsed.errors[0].message.starts_with("spec.http: at least one HTTP route is required"),
            "{:?}",
            parsed.errors
        );
    }

    #[test]
    fn removing_a_file_removes_its_objects() {
        let mut state = DirectoryState::default();
        state.update(&dir(&[("svc.yaml", SERVICE), ("vs.yaml", GOOD_VS)]));
        let update = state.update(&dir(&[("svc.yaml", SERVICE)]));
        assert_eq!(update.resources.len(), 1);
    }

    #[test]
    fn a_new_broken_file_contributes_its_valid_documents() {
        let mut state = DirectoryState::default();
        let text = format!("{SERVICE}---\n{BAD_VS}");
        let update = state.update(&dir(&[("all.yaml", &text)]));
        assert_eq!(update.resources.len(), 1);
        assert_eq!(update.new_problems[0].document, 2);
        assert_eq!(update.new_problems[0].line, 6);
    }

    #[test]
    fn the_same_object_in_two_files_is_noted_and_the_later_file_wins() {
        let mut state = DirectoryState::default();
        let other = SERVICE.replace("port: 80", "port: 81");
        let update = state.update(&dir(&[("a.yaml", SERVICE), ("b.yaml", &other)]));
        assert_eq!(update.resources.len(), 1);
        assert!(update.new_notes[0].message.contains("also defined in a.yaml"));
        let Resource::Service(svc) = &update.resources[0] else { panic!("not a service") };
        assert_eq!(svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port, 81);
    }
}
