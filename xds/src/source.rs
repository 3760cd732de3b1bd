//! Matching on the client's own labels (Istio's `match[].sourceLabels`). Route configurations are shared by every
//! proxy of a namespace, so the operator does not decide per pod: it writes each label as a
//! `RouteMatch.dynamic_metadata` matcher on the metadata namespace [`SOURCE_METADATA`], and each proxy, which
//! holds its own pod's labels there (`labels.<key>`), keeps the routes whose labels it carries. An Envoy would
//! do the same with a filter setting that metadata (e.g. `envoy.filters.http.set_metadata`).

use envoy_types::pb::envoy::r#type::matcher::v3::{
    MetadataMatcher, StringMatcher, ValueMatcher, metadata_matcher::PathSegment,
    metadata_matcher::path_segment::Segment, string_matcher::MatchPattern, value_matcher,
};

/// The dynamic-metadata namespace holding the client workload's identity.
pub const SOURCE_METADATA: &str = "weft.source";
/// Under [`SOURCE_METADATA`]: the struct of the pod's labels.
pub const LABELS_KEY: &str = "labels";

/// The matcher for "the client's label `key` is `value`".
pub fn source_label_matcher(key: &str, value: &str) -> MetadataMatcher {
    let segment = |k: &str| PathSegment { segment: Some(Segment::Key(k.to_string())) };
    MetadataMatcher {
        filter: SOURCE_METADATA.to_string(),
        path: vec![segment(LABELS_KEY), segment(key)],
        value: Some(ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::StringMatch(StringMatcher {
                match_pattern: Some(MatchPattern::Exact(value.to_string())),
                ignore_case: false,
            })),
        }),
        invert: false,
    }
}

/// The `(key, value)` a [`source_label_matcher`] asks for; a message saying why otherwise.
pub fn parse_source_label(matcher: &MetadataMatcher) -> Result<(String, String), String> {
    if matcher.filter != SOURCE_METADATA {
        return Err(format!("metadata namespace {:?}: only {SOURCE_METADATA:?} is supported", matcher.filter));
    }
    let keys: Vec<Option<&str>> =
        matcher.path.iter().map(|s| s.segment.as_ref().map(|Segment::Key(k)| k.as_str())).collect();
    let [Some(LABELS_KEY), Some(key)] = keys.as_slice() else {
        return Err(format!("{SOURCE_METADATA} metadata: the path must be [{LABELS_KEY}, KEY]"));
    };
    let value = match matcher.value.as_ref().and_then(|v| v.match_pattern.as_ref()) {
        Some(value_matcher::MatchPattern::StringMatch(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(value)),
            ignore_case: false,
        })) if !matcher.invert => value.clone(),
        _ => return Err(format!("{SOURCE_METADATA} label {key:?}: only an exact, not inverted, match is supported")),
    };
    Ok((key.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_matcher_reads_back_as_written_and_others_are_refused() {
        let matcher = source_label_matcher("version", "v2");
        assert_eq!(parse_source_label(&matcher), Ok(("version".to_string(), "v2".to_string())));
        let other = MetadataMatcher { filter: "envoy.lb".into(), ..matcher.clone() };
        assert!(parse_source_label(&other).unwrap_err().contains("only \"weft.source\""));
        let inverted = MetadataMatcher { invert: true, ..matcher.clone() };
        assert!(parse_source_label(&inverted).unwrap_err().contains("exact, not inverted"));
        let short = MetadataMatcher { path: matcher.path[..1].to_vec(), ..matcher };
        assert!(parse_source_label(&short).unwrap_err().contains("path must be"));
    }
}
