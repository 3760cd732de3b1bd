//! Delegation (`http[].delegate`, Istio's): a root VirtualService's rule hands its requests to the http rules of a
//! delegate, a VirtualService without hosts, one level deep. Resolved once per snapshot into each root's effective
//! rules ([`super::VirtualServiceModel::http`]), so that translation, scopes and change tracking read plain rules
//! and an edit of a delegate is an edit of its roots. Pure.
//!
//! As Istio's `mergeHTTPRoute`: each delegate rule's conditions are combined with the root rule's (every pair
//! that does not conflict, the delegate's fields winning where both are set; a delegate rule with a condition that
//! fits none of the root's is left out), and it takes what the root rule sets and it does not (timeout, retries,
//! fault, mirrors, rewrite, CORS, headers). A missing delegate, or one not exported to the root's namespace, gives
//! no rules: its requests go on to the root's next rule, as in Istio.

use std::collections::BTreeMap;

use weft_crds::{Destination, HttpMatchRequest, HttpRoute, StringMatch};

use super::VirtualServiceModel;

/// The effective http rules of `root`: its own, each delegating one replaced by its delegate's, merged.
/// `find(namespace, name)` is the delegate VirtualService (one without hosts); `qualify(host, namespace)` the
/// FQDN a destination host of that namespace means, as delegate rules keep resolving in their own namespace.
pub(super) fn effective_rules<'a>(
    root: &VirtualServiceModel,
    find: impl Fn(&str, &str) -> Option<&'a VirtualServiceModel>,
    qualify: impl Fn(&str, &str) -> String,
) -> Vec<HttpRoute> {
    let mut rules = Vec::with_capacity(root.spec.http.len());
    let delegates = root.spec.http.iter().any(|rule| rule.delegate.is_some());
    for (index, rule) in root.spec.http.iter().enumerate() {
        let Some(target) = &rule.delegate else {
            let mut rule = rule.clone();
            // Delegated rules shift the positions translation would name a rule after: name it after its own.
            if delegates && rule.name.is_none() {
                rule.name = Some(format!("{}.{}.http[{index}]", root.name, root.namespace));
            }
            rules.push(rule);
            continue;
        };
        let namespace = target.namespace.as_deref().unwrap_or(&root.namespace);
        let Some(delegate) = find(namespace, &target.name).filter(|d| d.visibility(&root.namespace).is_some()) else {
            continue;
        };
        for (i, leaf) in delegate.spec.http.iter().enumerate() {
            let mut leaf = leaf.clone();
            for destination in destinations_mut(&mut leaf) {
                destination.host = qualify(&destination.host, &delegate.namespace);
            }
            // Named after the delegate's rule, so that the proxy's config dump says where a route comes from.
            let own = leaf.name.take().unwrap_or_else(|| format!("{}.{}.http[{i}]", delegate.name, delegate.namespace));
            leaf.name = Some(own);
            if let Some(merged) = merge_rule(rule, leaf) {
                rules.push(merged);
            }
        }
    }
    rules
}

/// Where a delegate lives, as its roots name it: `(namespace, name)` -> the VirtualService, for those without hosts.
pub(super) fn delegates<'a>(
    all: impl Iterator<Item = &'a VirtualServiceModel>,
) -> BTreeMap<(&'a str, &'a str), &'a VirtualServiceModel> {
    all.filter(|vs| vs.spec.hosts.is_empty()).map(|vs| ((vs.namespace.as_str(), vs.name.as_str()), vs)).collect()
}

fn destinations_mut(rule: &mut HttpRoute) -> impl Iterator<Item = &mut Destination> {
    let routes = rule.route.iter_mut().map(|r| &mut r.destination);
    routes.chain(rule.mirror.iter_mut()).chain(rule.mirrors.iter_mut().map(|m| &mut m.destination))
}

/// A delegate rule under its root rule; `None` when their conditions conflict.
fn merge_rule(root: &HttpRoute, mut leaf: HttpRoute) -> Option<HttpRoute> {
    leaf.matches = merge_matches(&root.matches, &leaf.matches)?;
    leaf.name = match (&root.name, leaf.name.take()) {
        (Some(root), Some(own)) => Some(format!("{root}-{own}")),
        (root, own) => own.or_else(|| root.clone()),
    };
    inherit(&mut leaf.rewrite, &root.rewrite);
    inherit(&mut leaf.timeout, &root.timeout);
    inherit(&mut leaf.retries, &root.retries);
    inherit(&mut leaf.fault, &root.fault);
    inherit(&mut leaf.mirror, &root.mirror);
    inherit(&mut leaf.mirror_percent, &root.mirror_percent);
    inherit(&mut leaf.mirror_percentage, &root.mirror_percentage);
    inherit(&mut leaf.cors_policy, &root.cors_policy);
    inherit(&mut leaf.headers, &root.headers);
    if leaf.mirrors.is_empty() {
        leaf.mirrors = root.mirrors.clone();
    }
    Some(leaf)
}

fn inherit<T: Clone>(own: &mut Option<T>, root: &Option<T>) {
    if own.is_none() {
        own.clone_from(root);
    }
}

/// Istio's `mergeHTTPMatchRequests`: no conditions on one side take the other's; else every pair that does not
/// conflict, and a conflict when some delegate condition fits no root condition.
fn merge_matches(root: &[HttpMatchRequest], leaf: &[HttpMatchRequest]) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(leaf.to_vec());
    }
    if leaf.is_empty() {
        return Some(root.to_vec());
    }
    let mut merged = Vec::new();
    for own in leaf {
        let fitting: Vec<_> = root.iter().filter(|r| !conflicts(r, own)).map(|r| merge_match(r, own)).collect();
        if fitting.is_empty() {
            return None;
        }
        merged.extend(fitting);
    }
    Some(merged)
}

/// Istio's `hasConflict`: the two conditions cannot both hold, or the delegate's is not narrower.
fn conflicts(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let strings = [(&root.uri, &leaf.uri), (&root.scheme, &leaf.scheme), (&root.method, &leaf.method)];
    let strings = strings.into_iter().chain([(&root.authority, &leaf.authority)]);
    let mut conflict = strings.into_iter().any(|(r, l)| string_conflict(r.as_ref(), l.as_ref()));
    let maps = [(&root.headers, &leaf.headers), (&root.without_headers, &leaf.without_headers)];
    for (roots, leaves) in maps.into_iter().chain([(&root.query_params, &leaf.query_params)]) {
        conflict |= leaves.iter().any(|(key, l)| string_conflict(roots.get(key), Some(l)));
    }
    conflict |= root.ignore_uri_case.unwrap_or(false) != leaf.ignore_uri_case.unwrap_or(false);
    conflict |= matches!((root.port, leaf.port), (Some(r), Some(l)) if r != l);
    conflict |= root.source_namespace.is_some() && leaf.source_namespace != root.source_namespace;
    conflict |= leaf.source_labels.iter().any(|(k, v)| root.source_labels.get(k).is_some_and(|r| r != v));
    conflict
}

/// Istio's `stringMatchConflict`: a regex goes with nothing else; an exact root takes only itself or a prefix of
/// it; a prefix root only longer prefixes and exact values under it.
fn string_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else { return false };
    let set = |m: &StringMatch| m.exact.is_some() || m.prefix.is_some() || m.regex.is_some();
    if (root.regex.is_some() && set(leaf)) || (leaf.regex.is_some() && set(root)) {
        return true;
    }
    if let Some(exact) = &root.exact {
        if leaf.prefix.as_ref().is_some_and(|p| !exact.starts_with(p.as_str())) {
            return true;
        }
        if leaf.exact.as_ref().is_some_and(|e| e != exact) {
            return true;
        }
    }
    if let Some(prefix) = &root.prefix {
        let outside = |value: &Option<String>| value.as_ref().is_some_and(|v| !v.starts_with(prefix.as_str()));
        if outside(&leaf.prefix) || outside(&leaf.exact) {
            return true;
        }
    }
    false
}

/// Istio's `mergeHTTPMatchRequest`: the delegate's condition, with the root's fields where it sets none.
fn merge_match(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = leaf.clone();
    out.name = match (&root.name, &leaf.name) {
        (Some(root), Some(own)) => Some(format!("{root}-{own}")),
        (root, own) => own.clone().or_else(|| root.clone()),
    };
    inherit(&mut out.uri, &root.uri);
    inherit(&mut out.scheme, &root.scheme);
    inherit(&mut out.method, &root.method);
    inherit(&mut out.authority, &root.authority);
    inherit(&mut out.port, &root.port);
    inherit(&mut out.source_namespace, &root.source_namespace);
    inherit(&mut out.stat_prefix, &root.stat_prefix);
    inherit(&mut out.ignore_uri_case, &root.ignore_uri_case);
    // The delegate's entries win over the root's for the same key.
    let under = |root: &BTreeMap<String, StringMatch>, own: &BTreeMap<String, StringMatch>| {
        root.iter().chain(own).map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    out.headers = under(&root.headers, &leaf.headers);
    out.without_headers = under(&root.without_headers, &leaf.without_headers);
    out.query_params = under(&root.query_params, &leaf.query_params);
    let labels = root.source_labels.iter().chain(&leaf.source_labels);
    out.source_labels = labels.map(|(k, v)| (k.clone(), v.clone())).collect();
    if out.gateways.is_empty() {
        out.gateways.clone_from(&root.gateways);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> HttpRoute {
        weft_crds::parse::from_value(serde_saphyr::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn conditions_combine_as_istio_merges_them() {
        let root =
            rule("match: [{uri: {prefix: /api}, headers: {x-team: {exact: a}}}]\ndelegate: {name: d}\ntimeout: 2s");
        let narrower =
            rule("match: [{uri: {prefix: /api/v2}, method: {exact: GET}}]\nroute: [{destination: {host: r}}]");
        let merged = merge_rule(&root, narrower).unwrap();
        let expected = rule(
            "match: [{uri: {prefix: /api/v2}, method: {exact: GET}, headers: {x-team: {exact: a}}}]\nroute: [{destination: {host: r}}]\ntimeout: 2s",
        );
        assert_eq!(merged, expected, "the delegate's uri, the root's header, the root's timeout");
        let outside = rule("match: [{uri: {prefix: /web}}]\nroute: [{destination: {host: r}}]");
        assert_eq!(merge_rule(&root, outside), None, "a prefix outside the root's: the rule is left out");
        let anything = rule("route: [{destination: {host: r}}]\ntimeout: 5s");
        let merged = merge_rule(&root, anything).unwrap();
        assert_eq!((merged.matches, merged.timeout.as_deref()), (root.matches.clone(), Some("5s")), "its own timeout");
        let regex = rule("match: [{uri: {regex: /api/.*}}]\nroute: [{destination: {host: r}}]");
        assert_eq!(merge_rule(&root, regex), None, "a regex under a prefix");
    }

    #[test]
    fn string_conflicts_follow_istio() {
        let m = |yaml: &str| -> StringMatch { serde_saphyr::from_str(yaml).unwrap() };
        let conflict = |root: &str, leaf: &str| string_conflict(Some(&m(root)), Some(&m(leaf)));
        assert!(!conflict("{exact: /a/b}", "{prefix: /a}") && conflict("{exact: /a/b}", "{prefix: /c}"));
        assert!(!conflict("{exact: /a}", "{exact: /a}") && conflict("{exact: /a}", "{exact: /b}"));
        assert!(!conflict("{prefix: /a}", "{exact: /a/b}") && conflict("{prefix: /a}", "{exact: /b}"));
        assert!(conflict("{regex: .*}", "{regex: .*}"), "regexes cannot be combined");
        assert!(!string_conflict(None, Some(&m("{regex: .*}"))));
    }
}
