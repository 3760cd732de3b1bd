//! Standalone mode: every `*.yaml`/`*.yml` file of a directory, followed through edits ([`watch`]), read one
//! file at a time ([`read`]), parsed here, and folded into the resources in force ([`state`]).
//!
//! A file that cannot be read, parsed or validated is reported once (per distinct content) with file, document and
//! field path, and the last good state of that file stays in force; the other files are unaffected.

pub mod read;
pub mod state;
pub mod watch;

use std::path::{Path, PathBuf};

use weft_crds::parse::yaml_documents;

pub use read::FileRead;
pub use state::{DirectoryState, Update};
pub use watch::watch_dir;

use super::decode::{Decoded, decode_document};
use super::{Event, Kind, Resource};

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

/// The full state as one relist per kind, which is what a directory re-read is.
pub fn as_events(resources: &[Resource]) -> Vec<Event> {
    Kind::all()
        .map(|kind| Event::Restarted {
            kind,
            namespace: None,
            objects: resources.iter().filter(|r| r.kind() == kind).cloned().collect(),
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("watching the config directory {}: {source}", dir.display())]
    Watch { dir: PathBuf, source: notify::Error },
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_VS: &str = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n";

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
        assert!(parsed.errors[0].message.starts_with("spec: at least one route is required"), "{:?}", parsed.errors);
    }
}
