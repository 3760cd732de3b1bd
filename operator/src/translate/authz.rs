//! AuthorizationPolicies to the rules a workload's inbound side enforces ([`weft_xds::authz`]), as Istio
//! translates them to Envoy's RBAC filter: one rule per policy rule; its `from` sources and `to` operations each
//! any-of, every field of one all-of, a `not*` field the negation of its any-of; `when` conditions on what is
//! asked join the permissions, those on who asks the principals. Principals are matched as SPIFFE ids
//! (`spiffe://` + the written `<trust-domain>/ns/<ns>/sa/<account>`), namespaces as the id's `/ns/<ns>/`
//! segment, hosts case-insensitively.
//!
//! Two views: HTTP requests get every test; connections that are not HTTP get Istio's TCP translation, where
//! what only HTTP has (hosts, methods, paths, request headers) cannot be tested: an `ALLOW` rule testing it is
//! left out (it never matches a connection), a `DENY` or `AUDIT` rule keeps its other tests (it matches more).
//! A rule validation would refuse is never translated with a test missing: it fails closed. Pure.

use weft_crds::AuthorizationAction;
use weft_crds::authorization_policy::{
    Condition, ConditionKey, Operation, Rule, Source, Wildcard, ip_block, port_number,
};
use weft_crds::validate::rule_is_enforceable;
use weft_xds::authz::{
    Authorization, Cidr, HeaderMatch, InboundAuthz, Layer, MatchKind, NamedRule, Permission, Principal, StringMatch,
};

use crate::index::authz::AuthorizationPolicyModel;

/// What the policies that apply to a workload enforce, in both views.
pub fn inbound_authz(policies: &[&AuthorizationPolicyModel]) -> InboundAuthz {
    InboundAuthz { http: view(policies, View::Http), tcp: view(policies, View::Tcp) }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Http,
    Tcp,
}

fn view(policies: &[&AuthorizationPolicyModel], view: View) -> Authorization {
    let mut authz = Authorization::default();
    for policy in policies {
        let layer: &mut Layer = match policy.spec.action {
            AuthorizationAction::Allow => &mut authz.allow,
            AuthorizationAction::Deny => &mut authz.deny,
            AuthorizationAction::Audit => &mut authz.audit,
            // Refused by validation; never in force.
            AuthorizationAction::Custom => continue,
        };
        let rules = if policy.dry_run { &mut layer.dry_run } else { &mut layer.enforced }.get_or_insert_with(Vec::new);
        let name: std::sync::Arc<str> = format!("{}/{}", policy.namespace, policy.name).into();
        for (index, rule) in policy.spec.rules.iter().flatten().enumerate() {
            if view == View::Tcp && policy.spec.action == AuthorizationAction::Allow && tests_http(rule) {
                continue;
            }
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            if rule_is_enforceable(rule) {
                rules.push(named_rule(name.clone(), index, rule, view));
            } else if policy.spec.action == AuthorizationAction::Deny {
                // Validation keeps such rules out; one that got here anyway fails closed: a DENY rule denies
                // everything, an ALLOW or AUDIT rule matches nothing.
                let (permissions, principals) = (vec![Permission::Any], vec![Principal::Any]);
                rules.push(NamedRule { policy: name.clone(), index, permissions, principals });
            }
        }
    }
    authz
}

/// Whether the rule tests something only an HTTP request has.
fn tests_http(rule: &Rule) -> bool {
    let operation_http = |op: &Operation| {
        [&op.hosts, &op.not_hosts, &op.methods, &op.not_methods, &op.paths, &op.not_paths].iter().any(|f| !f.is_empty())
    };
    rule.to.iter().filter_map(|t| t.operation.as_ref()).any(operation_http)
        || rule.when.iter().any(|c| ConditionKey::parse(&c.key).is_ok_and(|k| k.is_http_only()))
}

fn named_rule(policy: std::sync::Arc<str>, index: u32, rule: &Rule, view: View) -> NamedRule {
    let mut permissions = Vec::new();
    let mut principals = Vec::new();
    let operations: Vec<Permission> =
        rule.to.iter().filter_map(|t| t.operation.as_ref()).map(|op| operation(op, view)).collect();
    if !operations.is_empty() {
        permissions.push(Permission::Or(operations));
    }
    let sources: Vec<Principal> = rule.from.iter().filter_map(|f| f.source.as_ref()).map(source).collect();
    if !sources.is_empty() {
        principals.push(Principal::Or(sources));
    }
    for condition in &rule.when {
        condition_tests(condition, view, &mut permissions, &mut principals);
    }
    NamedRule {
        policy,
        index,
        permissions: vec![all_permissions(permissions)],
        principals: vec![all_principals(principals)],
    }
}

fn all_permissions(mut tests: Vec<Permission>) -> Permission {
    match tests.len() {
        0 => Permission::Any,
        1 => tests.remove(0),
        _ => Permission::And(tests),
    }
}

fn all_principals(mut tests: Vec<Principal>) -> Principal {
    match tests.len() {
        0 => Principal::Any,
        1 => tests.remove(0),
        _ => Principal::And(tests),
    }
}

/// Each field given, with its `not*` form negated; HTTP's fields only in the HTTP view.
fn operation(op: &Operation, view: View) -> Permission {
    let mut tests = Vec::new();
    let mut field = |values: &[String], negated: bool, test: &dyn Fn(&str) -> Option<Permission>| {
        let any: Vec<Permission> = values.iter().filter_map(|v| test(v)).collect();
        if !any.is_empty() {
            let any = Permission::Or(any);
            tests.push(if negated { Permission::Not(Box::new(any)) } else { any });
        }
    };
    let port = |v: &str| port_number(v).map(Permission::DestinationPort);
    field(&op.ports, false, &port);
    field(&op.not_ports, true, &port);
    if view == View::Http {
        let host = |v: &str| Some(Permission::Header(header(":authority", v, true)));
        let method = |v: &str| Some(Permission::Header(header(":method", v, false)));
        let path = |v: &str| Some(Permission::Path(string_match(v, false)));
        field(&op.hosts, false, &host);
        field(&op.not_hosts, true, &host);
        field(&op.methods, false, &method);
        field(&op.not_methods, true, &method);
        field(&op.paths, false, &path);
        field(&op.not_paths, true, &path);
    }
    all_permissions(tests)
}

fn source(source: &Source) -> Principal {
    let mut tests = Vec::new();
    let mut field = |values: &[String], negated: bool, test: &dyn Fn(&str) -> Option<Principal>| {
        let any: Vec<Principal> = values.iter().filter_map(|v| test(v)).collect();
        if !any.is_empty() {
            let any = Principal::Or(any);
            tests.push(if negated { Principal::Not(Box::new(any)) } else { any });
        }
    };
    let principal = |v: &str| Some(principal_match(v));
    let namespace = |v: &str| Some(namespace_match(v));
    let address = |v: &str| remote_ip(v);
    field(&source.principals, false, &principal);
    field(&source.not_principals, true, &principal);
    field(&source.namespaces, false, &namespace);
    field(&source.not_namespaces, true, &namespace);
    field(&source.ip_blocks, false, &address);
    field(&source.not_ip_blocks, true, &address);
    field(&source.remote_ip_blocks, false, &address);
    field(&source.not_remote_ip_blocks, true, &address);
    all_principals(tests)
}

/// A `when` condition's tests, on what is asked or on who asks; a request header's only in the HTTP view.
fn condition_tests(
    condition: &Condition,
    view: View,
    permissions: &mut Vec<Permission>,
    principals: &mut Vec<Principal>,
) {
    let Ok(key) = ConditionKey::parse(&condition.key) else { return };
    for (values, negated) in [(&condition.values, false), (&condition.not_values, true)] {
        if values.is_empty() {
            continue;
        }
        let on_who: Option<Vec<Principal>> = match key {
            ConditionKey::SourceIp | ConditionKey::RemoteIp => {
                Some(values.iter().filter_map(|v| remote_ip(v)).collect())
            }
            ConditionKey::SourceNamespace => Some(values.iter().map(|v| namespace_match(v)).collect()),
            ConditionKey::SourcePrincipal => Some(values.iter().map(|v| principal_match(v)).collect()),
            _ => None,
        };
        if let Some(any) = on_who {
            let any = Principal::Or(any);
            principals.push(if negated { Principal::Not(Box::new(any)) } else { any });
            continue;
        }
        let any: Vec<Permission> = match key {
            ConditionKey::DestinationPort => {
                values.iter().filter_map(|v| port_number(v)).map(Permission::DestinationPort).collect()
            }
            ConditionKey::RequestHeader(name) if view == View::Http => {
                values.iter().map(|v| Permission::Header(header(&name.to_ascii_lowercase(), v, false))).collect()
            }
            _ => continue,
        };
        let any = Permission::Or(any);
        permissions.push(if negated { Permission::Not(Box::new(any)) } else { any });
    }
}

/// A peer identity as written (`<trust-domain>/ns/<ns>/sa/<account>`, Istio's wildcards).
fn principal_match(value: &str) -> Principal {
    let spiffe = |rest: &str| format!("spiffe://{rest}");
    match Wildcard::of(value) {
        Some(Wildcard::Any) | None => Principal::Authenticated(None),
        Some(Wildcard::Exact(id)) => Principal::Authenticated(Some(StringMatch::new(MatchKind::Exact, spiffe(id)))),
        Some(Wildcard::Prefix(start)) => {
            Principal::Authenticated(Some(StringMatch::new(MatchKind::Prefix, spiffe(start))))
        }
        Some(Wildcard::Suffix(end)) => Principal::Authenticated(Some(StringMatch::new(MatchKind::Suffix, end))),
    }
}

/// A peer identity's namespace: the `/ns/<namespace>/` segment of its SPIFFE id.
fn namespace_match(value: &str) -> Principal {
    let contains = |segment: String| Principal::Authenticated(Some(StringMatch::new(MatchKind::Contains, segment)));
    match Wildcard::of(value) {
        Some(Wildcard::Any) | None => Principal::Authenticated(None),
        Some(Wildcard::Exact(ns)) => contains(format!("/ns/{ns}/")),
        Some(Wildcard::Prefix(start)) => contains(format!("/ns/{start}")),
        Some(Wildcard::Suffix(end)) => contains(format!("{end}/sa/")),
    }
}

fn remote_ip(value: &str) -> Option<Principal> {
    ip_block(value).map(|(address, prefix_len)| Principal::RemoteIp(Cidr { address, prefix_len }))
}

/// A header test with Istio's wildcards (`*` alone: present).
fn header(name: &str, value: &str, ignore_case: bool) -> HeaderMatch {
    let value = (value != "*").then(|| string_match(value, ignore_case));
    HeaderMatch { name: name.to_string(), value }
}

fn string_match(value: &str, ignore_case: bool) -> StringMatch {
    let (kind, text) = match Wildcard::of(value) {
        Some(Wildcard::Any) => (MatchKind::Prefix, ""),
        Some(Wildcard::Prefix(start)) => (MatchKind::Prefix, start),
        Some(Wildcard::Suffix(end)) => (MatchKind::Suffix, end),
        Some(Wildcard::Exact(_)) | None => (MatchKind::Exact, value),
    };
    StringMatch { kind, value: text.to_string(), ignore_case }
}

#[cfg(test)]
mod tests;
