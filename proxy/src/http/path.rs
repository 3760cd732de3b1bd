//! Path normalization before policies look at a path (Istio's default `BASE`, Envoy's `normalize_path`): dot
//! segments removed as RFC 3986 §5.2.4 says, with a percent-encoded dot (`%2e`) taken as a dot, so that
//! `/public/../admin` or `/public/%2e%2e/admin` is decided, and forwarded, as `/admin`. Slashes are not merged
//! and nothing else is decoded (`BASE` does neither). Pure.

use std::borrow::Cow;

use http::Uri;
use http::uri::PathAndQuery;

/// `path` without dot segments; borrowed when it has none.
pub fn normalize(path: &str) -> Cow<'_, str> {
    let Some(rest) = path.strip_prefix('/') else { return Cow::Borrowed(path) };
    let lower = |s: &str| s.contains("%2e") || s.contains("%2E");
    let dotted = rest.split('/').any(|segment| segment == "." || segment == "..") || lower(path);
    if !dotted {
        return Cow::Borrowed(path);
    }
    let decoded = path.replace("%2e", ".").replace("%2E", ".");
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                kept.pop();
            }
            other => {
                kept.push(other);
                continue;
            }
        }
        // `/a/b/..` is `/a/`: the directory stays a directory.
        if last {
            kept.push("");
        }
    }
    Cow::Owned(format!("/{}", kept.join("/")))
}

/// The request's path normalized in place (its query kept); `uri` unchanged when there was nothing to do.
pub fn normalize_uri(uri: &mut Uri) {
    let Cow::Owned(path) = normalize(uri.path()) else { return };
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(normalized) = PathAndQuery::try_from(path_and_query) {
        parts.path_and_query = Some(normalized);
        if let Ok(rebuilt) = Uri::from_parts(parts) {
            *uri = rebuilt;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_removed_as_rfc_3986_says() {
        let cases = [
            ("/a/b/c", "/a/b/c"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2E/admin", "/admin"),
            ("/a/./b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../../x", "/x"),
            ("//a//b", "//a//b"),
            ("/a..b/.c", "/a..b/.c"),
            ("*", "*"),
        ];
        for (path, expected) in cases {
            assert_eq!(normalize(path), expected, "{path}");
        }
        assert!(matches!(normalize("/plain/path"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_query_is_kept() {
        let mut uri: Uri = "/x/../admin?user=a/../b".parse().unwrap();
        normalize_uri(&mut uri);
        assert_eq!(uri, "/admin?user=a/../b");
        let mut absolute: Uri = "http://h:80/a/./b".parse().unwrap();
        normalize_uri(&mut absolute);
        assert_eq!(absolute, "http://h:80/a/b");
    }
}
