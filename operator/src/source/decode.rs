//! Untyped documents -> typed [`Resource`]s: the kind looked up in [`super::kinds`], field-path errors, CRD
//! validation.

use serde_json::Value;
use weft_crds::FieldError;

use super::Resource;
use super::kinds::KindInfo;

/// What one document turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// Objects of watched kinds (a `List` may hold several).
    Resources(Vec<Resource>),
    /// A kind the operator does not watch; harmless, reported as a note.
    Ignored { api_version: String, kind: String },
}

/// Turns one document into resources. Every error names the field it is about.
pub fn decode_document(value: Value) -> Result<Decoded, Vec<FieldError>> {
    let api_version = string_field(&value, "apiVersion");
    let kind = string_field(&value, "kind");
    if (api_version.as_str(), kind.as_str()) == ("v1", "List") {
        return decode_list(value);
    }
    let Some(info) = KindInfo::find(&api_version, &kind) else {
        return match weft_crds::kinds::foreign_counterpart(&api_version, &kind) {
            Some(weft) => Err(vec![FieldError::new(
                "apiVersion",
                format!("{kind} of {api_version:?} is {}'s; use apiVersion {:?}", weft.origin.0, weft.api_version),
            )]),
            None if api_version.is_empty() => Err(vec![FieldError::new("apiVersion", "apiVersion is required")]),
            None if kind.is_empty() => Err(vec![FieldError::new("kind", "kind is required")]),
            None => Ok(Decoded::Ignored { api_version, kind }),
        };
    };
    let value = match info.crd() {
        // The spec first, with every problem at once; then the rest of the object around the good spec.
        Some(crd) => {
            let spec = (crd.check)(value.get("spec").unwrap_or(&Value::Null))?;
            with_spec(value, spec)
        }
        None => value,
    };
    let resource = (info.wrap)(value).map_err(one)?;
    if resource.key().name.is_empty() {
        return Err(vec![FieldError::new("metadata.name", "metadata.name is required")]);
    }
    Ok(Decoded::Resources(vec![resource]))
}

fn decode_list(value: Value) -> Result<Decoded, Vec<FieldError>> {
    let Value::Object(mut list) = value else { return Ok(Decoded::Resources(Vec::new())) };
    let items = match list.remove("items") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(vec![FieldError::new("items", "items must be a list")]),
    };
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match decode_document(item) {
            Ok(Decoded::Resources(r)) => resources.extend(r),
            Ok(Decoded::Ignored { .. }) => {}
            Err(errs) => errors.extend(errs.into_iter().map(|e| {
                let path = if e.path.is_empty() { format!("items[{i}]") } else { format!("items[{i}].{}", e.path) };
                FieldError::new(path, e.message)
            })),
        }
    }
    if errors.is_empty() { Ok(Decoded::Resources(resources)) } else { Err(errors) }
}

fn string_field(value: &Value, name: &str) -> String {
    value.get(name).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn one(error: FieldError) -> Vec<FieldError> {
    vec![error]
}

/// The object with its spec replaced by the checked one (unknown fields left out).
fn with_spec(mut object: Value, spec: Value) -> Value {
    if let Value::Object(fields) = &mut object {
        fields.insert("spec".to_string(), spec);
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_invalid_virtual_service_names_the_field() {
        let doc = json!({
            "apiVersion": "networking.weft.dev/v1alpha1", "kind": "VirtualService",
            "metadata": {"name": "reviews"},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}, "weight": -5}]}]}
        });
        let errors = decode_document(doc).unwrap_err();
        assert_eq!(errors[0].path, "spec.http[0].route[0].weight");
    }

    #[test]
    fn istio_api_version_gets_a_hint() {
        let doc = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "r"}});
        let errors = decode_document(doc).unwrap_err();
        assert!(errors[0].message.contains("networking.weft.dev/v1alpha1"), "{}", errors[0]);
        let doc =
            json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "p"}});
        let errors = decode_document(doc).unwrap_err();
        assert!(errors[0].message.contains("security.weft.dev/v1alpha1"), "{}", errors[0]);
    }

    #[test]
    fn other_kinds_are_ignored_and_lists_are_unpacked() {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
        assert!(matches!(decode_document(deployment), Ok(Decoded::Ignored { .. })));
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}}
        ]});
        let Ok(Decoded::Resources(items)) = decode_document(list) else { panic!("list not decoded") };
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn a_missing_name_is_an_error() {
        let doc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {}});
        assert_eq!(decode_document(doc).unwrap_err()[0].path, "metadata.name");
    }
}
