//! Checks of a rule's CORS policy (`http[].corsPolicy`).

use super::matching::check_required_match;
use super::{check_duration, http_header_name_is_invalid};
use crate::FieldError;
use crate::field_path::Path;
use crate::virtual_service::cors::CorsPolicy;

pub(super) fn check_cors(path: &Path, cors: &CorsPolicy, errors: &mut Vec<FieldError>) {
    for (i, origin) in cors.allow_origins.iter().enumerate() {
        check_required_match(&path.field("allowOrigins").index(i), origin, errors);
    }
    for (i, origin) in cors.allow_origin.iter().enumerate() {
        if origin.is_empty() {
            errors.push(path.field("allowOrigin").index(i).error("an origin must not be empty"));
        }
    }
    for (i, method) in cors.allow_methods.iter().enumerate() {
        // A method is an HTTP token, as a header name is.
        if http_header_name_is_invalid(method) {
            errors.push(path.field("allowMethods").index(i).error(format!("{method:?} is not an HTTP method")));
        }
    }
    for (field, names) in [("allowHeaders", &cors.allow_headers), ("exposeHeaders", &cors.expose_headers)] {
        for (i, name) in names.iter().enumerate() {
            if name != "*" && http_header_name_is_invalid(name) {
                errors.push(path.field(field).index(i).error(format!("{name:?} is not a valid HTTP header name")));
            }
        }
    }
    if let Some(age) = &cors.max_age
        && let Some(parsed) = check_duration(&path.field("maxAge"), age, errors)
        && parsed.subsec_nanos() != 0
    {
        errors.push(path.field("maxAge").error("maxAge is sent in whole seconds; write it without a fraction"));
    }
}
