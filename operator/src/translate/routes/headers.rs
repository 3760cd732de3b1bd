//! Header operations (`headers.request` / `headers.response` of a rule or a destination) as Envoy's
//! `*_headers_to_add` / `*_headers_to_remove`.

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
};
use weft_crds::virtual_service::{HeaderOperations, Headers};

/// What one set of `Headers` adds and removes, on requests and on responses.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct HeaderEdits {
    pub request_add: Vec<HeaderValueOption>,
    pub request_remove: Vec<String>,
    pub response_add: Vec<HeaderValueOption>,
    pub response_remove: Vec<String>,
}

impl HeaderEdits {
    pub(super) fn of(headers: Option<&Headers>) -> Self {
        let Some(headers) = headers else { return Self::default() };
        let (request_add, request_remove) = operations(headers.request.as_ref());
        let (response_add, response_remove) = operations(headers.response.as_ref());
        Self { request_add, request_remove, response_add, response_remove }
    }

    /// `self`'s edits, then `other`'s (a rule's, then its single destination's).
    pub(super) fn then(mut self, other: Self) -> Self {
        self.request_add.extend(other.request_add);
        self.request_remove.extend(other.request_remove);
        self.response_add.extend(other.response_add);
        self.response_remove.extend(other.response_remove);
        self
    }
}

/// `set` overwrites (or adds), `add` appends (or adds), as Istio translates them.
fn operations(operations: Option<&HeaderOperations>) -> (Vec<HeaderValueOption>, Vec<String>) {
    let Some(operations) = operations else { return (Vec::new(), Vec::new()) };
    let set = operations.set.iter().map(|(k, v)| option(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd));
    let add = operations.add.iter().map(|(k, v)| option(k, v, HeaderAppendAction::AppendIfExistsOrAdd));
    (set.chain(add).collect(), operations.remove.clone())
}

fn option(key: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue { key: key.to_string(), value: value.to_string(), ..Default::default() }),
        append_action: action as i32,
        ..Default::default()
    }
}
