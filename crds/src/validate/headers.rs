//! Checks of header operations (`headers.request`/`headers.response`, on a rule or a destination).

use super::http_header_name_is_invalid;
use crate::FieldError;
use crate::field_path::Path;
use crate::virtual_service::{HeaderOperations, Headers};

pub(super) fn check_headers(path: &Path, headers: &Headers, errors: &mut Vec<FieldError>) {
    for (field, operations) in [("request", &headers.request), ("response", &headers.response)] {
        if let Some(operations) = operations {
            check_operations(&path.field(field), operations, errors);
        }
    }
}

fn check_operations(path: &Path, operations: &HeaderOperations, errors: &mut Vec<FieldError>) {
    for (field, values) in [("set", &operations.set), ("add", &operations.add)] {
        for (name, value) in values {
            let header_path = path.field(field).key(name);
            check_name(&header_path, name, errors);
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                errors.push(header_path.error("a header value must not contain CR, LF or NUL"));
            }
            if has_substitution(value) {
                errors.push(header_path.error(
                    "Envoy's %VARIABLE% substitutions in header values are not supported by Weft yet (write a literal % as %%)",
                ));
            }
        }
    }
    for (i, name) in operations.remove.iter().enumerate() {
        check_name(&path.field("remove").index(i), name, errors);
    }
}

/// Pseudo-headers and `Host` are the request line, not headers the proxy may edit: Istio refuses them too
/// (except as another way to write `rewrite.authority`, which Weft asks to be written as that).
fn check_name(path: &Path, name: &str, errors: &mut Vec<FieldError>) {
    if name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case(":authority") {
        errors.push(path.error(format!(
            "the authority cannot be changed with a header operation in Weft yet; use rewrite.authority ({name:?})"
        )));
    } else if name.starts_with(':') {
        errors.push(path.error(format!("pseudo-header {name:?} cannot be changed")));
    } else if http_header_name_is_invalid(name) {
        errors.push(path.error(format!("{name:?} is not a valid HTTP header name")));
    }
}

/// Whether a header value uses Envoy's `%...%` substitutions: a `%` that is not half of an escaped `%%`.
pub fn has_substitution(value: &str) -> bool {
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        if !rest[at + 1..].starts_with('%') {
            return true;
        }
        rest = &rest[at + 2..];
    }
    false
}
