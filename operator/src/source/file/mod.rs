//! Standalone mode: every `*.yaml`/`*.yml` file of a directory, re-read when the directory changes.
//!
//! A file that fails to parse or validate is reported once (per distinct content) with file, document and field
//! path, and the last good state of that file stays in force; the other files are unaffected.

use std::collections::{BTreeMap, BTreeSet, hash_map::DefaultHasher};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use weft_crds::parse::yaml_documents;

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

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
    /// Applies a fresh read of the directory (`path -> text`); pure.
    pub fn update(&mut self, contents: &BTreeMap<PathBuf, String>) -> Update {
        let mut update = Update::default();
        let mut changed: BTreeSet<&Path> = BTreeSet::new();
        self.files.retain(|path, _| contents.contains_key(path));
        for (path, text) in contents {
            let hash = content_hash(text);
            if self.files.get(path).is_some_and(|f| f.content_hash == hash) {
                continue;
            }
            changed.insert(path);
            let parsed = parse_file(path, text);
            let in_force = match (self.files.get(path), parsed.errors.is_empty()) {
                (Some(previous), false) => previous.in_force.clone(),
                _ => parsed.resources,
            };
            update.new_problems.extend(parsed.errors);
            update.new_notes.extend(parsed.ignored);
            self.files.insert(path.clone(), FileState { content_hash: hash, in_force });
        }
        let mut merged: BTreeMap<ResourceKey, (PathBuf, Resource)> = BTreeMap::new();
        for (path, state) in &self.files {
            for resource in &state.in_force {
                if let Some((earlier, _)) = merged.insert(resource.key(), (path.clone(), resource.clone()))
                    && (changed.contains(path.as_path()) || changed.contains(earlier.as_path()))
                {
                    let key = resource.key();
                    update.new_notes.push(Problem {
                        file: path.clone(),
                        document: 0,
                        line: 0,
                        message: format!(
                            "{:?} {}/{} is also defined in {}; this file's definition is used",
                            key.kind,
                            key.namespace,
                            key.name,
                            earlier.display()
                        ),
                    });
                }
            }
        }
        update.resources = merged.into_values().map(|(_, r)| r).collect();
        update
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

fn content_hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// Reads every YAML file directly in `dir`.
pub fn read_dir(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, String>> {
    let mut contents = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if is_yaml && !hidden && path.is_file() {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    contents.insert(path, text);
                }
                // A file deleted between listing and reading is simply gone.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(contents)
}

/// Bursts of file-system events closer together than this are read as one change (editors write in steps).
const SETTLE: Duration = Duration::from_millis(30);

/// Watches `dir` and sends the whole state as [`Event`]s after every change, until `events` is closed.
pub async fn watch_dir(dir: PathBuf, events: mpsc::Sender<Vec<Event>>) -> Result<(), FileSourceError> {
    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = changed_tx.send(());
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let mut state = DirectoryState::default();
    let mut last_sent: Option<Vec<Resource>> = None;
    loop {
        match read_dir(&dir) {
            Ok(contents) => {
                let update = state.update(&contents);
                report(&update);
                if last_sent.as_ref() != Some(&update.resources) {
                    if events.send(as_events(&update.resources)).await.is_err() {
                        return Ok(());
                    }
                    last_sent = Some(update.resources);
                }
            }
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot read config directory; keeping last state")
            }
        }
        if changed_rx.recv().await.is_none() {
            return Ok(());
        }
        // Let the rest of a burst arrive, then read once.
        while let Ok(Some(())) = tokio::time::timeout(SETTLE, changed_rx.recv()).await {}
    }
}

fn report(update: &Update) {
    for problem in &update.new_problems {
        tracing::error!(
            file = %problem.file.display(),
            document = problem.document,
            line = problem.line,
            "{problem}; the file's last good state stays in force"
        );
    }
    for note in &update.new_notes {
        tracing::info!(file = %note.file.display(), "{note}");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("watching the config directory: {0}")]
    Watch(#[from] notify::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str =
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
    const GOOD_VS: &str = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n";
    const BAD_VS: &str = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: lots\n";

    fn dir(files: &[(&str, &str)]) -> BTreeMap<PathBuf, String> {
        files.iter().map(|(n, t)| (PathBuf::from(n), t.to_string())).collect()
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
