//! Kubernetes label syntax, for the fields that select workloads by label (`match[].sourceLabels`, subset
//! `labels`): a selector with a key or value no pod can carry would silently select nothing.

use std::collections::BTreeMap;

use crate::FieldError;
use crate::field_path::Path;

/// Each key and value of `labels` against Kubernetes' label syntax.
pub(super) fn check_labels(path: &Path, labels: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    for (key, value) in labels {
        if let Err(problem) = label_key(key) {
            errors.push(path.key(key).error(format!("label key {key:?} {problem}")));
        }
        if !is_label_value(value) {
            errors.push(path.key(key).error(format!(
                "label value {value:?} must be at most 63 characters of letters, digits, '-', '_' or '.', \
                 starting and ending with a letter or digit"
            )));
        }
    }
}

/// `[prefix/]name`: the prefix a DNS subdomain, the name as a label value but not empty.
fn label_key(key: &str) -> Result<(), &'static str> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if !is_dns_subdomain(prefix) {
                return Err("has a prefix that is not a DNS subdomain (lowercase letters, digits, '-', '.')");
            }
            name
        }
        None => key,
    };
    if name.is_empty() || !is_label_value(name) {
        return Err("must be [prefix/]name with a name of at most 63 letters, digits, '-', '_' or '.', \
                    starting and ending with a letter or digit");
    }
    Ok(())
}

fn is_label_value(value: &str) -> bool {
    let edges_ok = |b: Option<&u8>| b.is_none_or(u8::is_ascii_alphanumeric);
    value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && edges_ok(value.as_bytes().first())
        && edges_ok(value.as_bytes().last())
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(super::is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_follow_kubernetes_label_syntax() {
        for key in ["app", "app.kubernetes.io/name", "version", "a_b.c-d", "weft.dev/x"] {
            assert_eq!(label_key(key), Ok(()), "{key}");
        }
        for key in ["", "-app", "app-", "Bad.Prefix/app", "x/", "/app", &"a".repeat(64), "a b"] {
            assert!(label_key(key).is_err(), "{key:?}");
        }
        for value in ["", "v1", "V1.2_3-x"] {
            assert!(is_label_value(value), "{value:?}");
        }
        for value in ["-v1", "v1.", "v 1", &"v".repeat(64)] {
            assert!(!is_label_value(value), "{value:?}");
        }
    }
}
