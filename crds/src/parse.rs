//! Turning untyped YAML/JSON documents into typed resources, with errors that name the offending field.

use serde::de::DeserializeOwned;

use crate::FieldError;

/// Deserializes `value` into `T`; on failure the error carries the field path (`spec.http[0].route`).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        FieldError::new(path, err.into_inner().to_string())
    })
}

/// One document of a multi-document YAML text, with where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlDocument {
    /// 1-based position among the documents of the text, counting empty ones, as `kubectl` users count them.
    pub index: usize,
    /// 1-based line where the document's content starts.
    pub line: usize,
    /// The parsed document; `Null` for an empty one.
    pub value: Result<serde_json::Value, String>,
}

/// Splits a multi-document YAML text on `---` lines and parses each document on its own, so one broken document
/// does not hide the others. Empty documents are left out.
pub fn yaml_documents(text: &str) -> Vec<YamlDocument> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut start_line = 1;
    let mut index = 1;
    let mut flush = |body: &str, line: usize, index: usize| {
        if body.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            return;
        }
        let value = serde_saphyr::from_str::<serde_json::Value>(body).map_err(|e| e.to_string());
        if matches!(value, Ok(serde_json::Value::Null)) {
            return;
        }
        documents.push(YamlDocument { index, line, value });
    };
    for (number, line) in text.lines().enumerate() {
        if is_document_separator(line) {
            flush(&current, start_line, index);
            if !(index == 1 && current.trim().is_empty()) {
                index += 1;
            }
            current.clear();
            start_line = number + 2;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&current, start_line, index);
    documents
}

fn is_document_separator(line: &str) -> bool {
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VirtualServiceSpec;
    use serde_json::json;

    #[test]
    fn unknown_field_is_an_error_naming_it() {
        let spec = json!({"hosts": ["reviews"], "http": [{"route": [], "retries": {"attempts": 3, "budget": "1s"}}]});
        let err = from_value::<VirtualServiceSpec>(spec).unwrap_err();
        assert_eq!(err.path, "http[0].retries.budget");
        assert!(err.message.contains("unknown field `budget`"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let spec = json!({"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}, "weight": "ten"}]}]});
        let err = from_value::<VirtualServiceSpec>(spec).unwrap_err();
        assert_eq!(err.path, "http[0].route[0].weight");
    }

    #[test]
    fn documents_are_numbered_as_written_and_parsed_independently() {
        let text = "---\na: 1\n---\n# only a comment\n---\nb: [\n---\nc: 3\n";
        let docs = yaml_documents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!((docs[0].index, docs[0].line), (1, 2));
        assert_eq!(docs[0].value, Ok(json!({"a": 1})));
        assert_eq!(docs[1].index, 3);
        assert!(docs[1].value.is_err());
        assert_eq!((docs[2].index, docs[2].line), (4, 8));
        assert_eq!(docs[2].value, Ok(json!({"c": 3})));
    }
}
