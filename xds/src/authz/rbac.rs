//! [`Authorization`] on the wire: one Envoy RBAC filter per action that has policies, in Istio's order (`DENY`,
//! then `ALLOW`, then `AUDIT` as Envoy's `LOG`), enforced rules in `rules` and dry-run ones in `shadow_rules`,
//! one Envoy policy per AuthorizationPolicy rule named as Istio names it (`ns[NS]-policy[NAME]-rule[I]`).
//! [`network_filters`] and [`http_filters`] build them for a TCP and an HTTP filter chain;
//! [`parse_network_filters`] and [`parse_http_filters`] (through [`parse`]) read them back, refusing what
//! cannot be enforced exactly (regexes, metadata, other matchers) with a message.

use std::net::IpAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission as PbPermission, Policy, Principal as PbPrincipal, Rbac as RbacRules, permission, principal,
    rbac::Action as PbAction,
};
use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher::HeaderMatchSpecifier};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{HttpFilter, http_filter};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    PathMatcher, StringMatcher, path_matcher, string_matcher::MatchPattern,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::{
    Action, Authorization, Cidr, HeaderMatch, Layer, MatchKind, NamedRule, Permission, Principal, StringMatch,
};

/// Envoy's name of the network (TCP) RBAC filter.
pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
/// Envoy's name of the HTTP RBAC filter.
pub const HTTP_RBAC: &str = "envoy.filters.http.rbac";
/// Prefix of the statistics Envoy keeps for the filters (Istio's).
const STAT_PREFIX: &str = "weft_authz.";

/// The network RBAC filters enforcing `authz` on a TCP filter chain, before its `tcp_proxy`.
pub fn network_filters(authz: &Authorization) -> Vec<Filter> {
    layers(authz)
        .map(|(rules, shadow_rules)| {
            let config =
                NetworkRbac { rules, shadow_rules, stat_prefix: STAT_PREFIX.to_string(), ..Default::default() };
            Filter {
                name: NETWORK_RBAC.to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(crate::pack(&config))),
            }
        })
        .collect()
}

/// The HTTP RBAC filters enforcing `authz` in an HTTP connection manager, before its router.
pub fn http_filters(authz: &Authorization) -> Vec<HttpFilter> {
    layers(authz)
        .map(|(rules, shadow_rules)| {
            let config = HttpRbac {
                rules,
                shadow_rules,
                shadow_rules_stat_prefix: STAT_PREFIX.to_string(),
                ..Default::default()
            };
            HttpFilter {
                name: HTTP_RBAC.to_string(),
                config_type: Some(http_filter::ConfigType::TypedConfig(crate::pack(&config))),
                ..Default::default()
            }
        })
        .collect()
}

/// Per action that has policies: its enforced rules and its dry-run rules.
fn layers(authz: &Authorization) -> impl Iterator<Item = (Option<RbacRules>, Option<RbacRules>)> + '_ {
    [(Action::Deny, &authz.deny), (Action::Allow, &authz.allow), (Action::Audit, &authz.audit)]
        .into_iter()
        .filter(|(_, layer)| layer.enforced.is_some() || layer.dry_run.is_some())
        .map(|(action, layer)| {
            let rules = |rules: &Option<Vec<NamedRule>>| rules.as_ref().map(|rules| rbac_rules(action, rules));
            (rules(&layer.enforced), rules(&layer.dry_run))
        })
}

fn rbac_rules(action: Action, rules: &[NamedRule]) -> RbacRules {
    let action = match action {
        Action::Allow => PbAction::Allow,
        Action::Deny => PbAction::Deny,
        Action::Audit => PbAction::Log,
    };
    let policies = rules
        .iter()
        .map(|rule| {
            let policy = Policy {
                permissions: rule.permissions.iter().map(pb_permission).collect(),
                principals: rule.principals.iter().map(pb_principal).collect(),
                ..Default::default()
            };
            (policy_name(rule), policy)
        })
        .collect();
    RbacRules { action: action as i32, policies, ..Default::default() }
}

/// Istio's name of a rule's Envoy policy.
fn policy_name(rule: &NamedRule) -> String {
    let (namespace, name) = rule.policy.split_once('/').unwrap_or(("", &rule.policy));
    format!("ns[{namespace}]-policy[{name}]-rule[{}]", rule.index)
}

/// The policy and rule index a name built by [`policy_name`] stands for; another name stands for itself.
fn named(name: &str) -> (Arc<str>, u32) {
    let parsed = (|| {
        let rest = name.strip_prefix("ns[")?;
        let (namespace, rest) = rest.split_once("]-policy[")?;
        let (policy, rest) = rest.rsplit_once("]-rule[")?;
        let index = rest.strip_suffix(']')?.parse().ok()?;
        Some((format!("{namespace}/{policy}").into(), index))
    })();
    parsed.unwrap_or_else(|| (name.into(), 0))
}

fn pb_permission(permission: &Permission) -> PbPermission {
    use permission::Rule;
    let set = |all: &[Permission]| permission::Set { rules: all.iter().map(pb_permission).collect() };
    let rule = match permission {
        Permission::Any => Rule::Any(true),
        Permission::And(all) => Rule::AndRules(set(all)),
        Permission::Or(any) => Rule::OrRules(set(any)),
        Permission::Not(inner) => Rule::NotRule(Box::new(pb_permission(inner))),
        Permission::DestinationPort(port) => Rule::DestinationPort(u32::from(*port)),
        Permission::Path(matcher) => {
            Rule::UrlPath(PathMatcher { rule: Some(path_matcher::Rule::Path(pb_string(matcher))) })
        }
        Permission::Header(header) => Rule::Header(pb_header(header)),
    };
    PbPermission { rule: Some(rule) }
}

fn pb_principal(principal: &Principal) -> PbPrincipal {
    use principal::Identifier;
    let set = |all: &[Principal]| principal::Set { ids: all.iter().map(pb_principal).collect() };
    let identifier = match principal {
        Principal::Any => Identifier::Any(true),
        Principal::And(all) => Identifier::AndIds(set(all)),
        Principal::Or(any) => Identifier::OrIds(set(any)),
        Principal::Not(inner) => Identifier::NotId(Box::new(pb_principal(inner))),
        Principal::Authenticated(name) => {
            Identifier::Authenticated(principal::Authenticated { principal_name: name.as_ref().map(pb_string) })
        }
        Principal::RemoteIp(cidr) => Identifier::DirectRemoteIp(CidrRange {
            address_prefix: cidr.address.to_string(),
            prefix_len: Some(UInt32Value { value: u32::from(cidr.prefix_len) }),
        }),
        Principal::Header(header) => Identifier::Header(pb_header(header)),
    };
    PbPrincipal { identifier: Some(identifier) }
}

fn pb_header(header: &HeaderMatch) -> HeaderMatcher {
    let specifier = match &header.value {
        None => HeaderMatchSpecifier::PresentMatch(true),
        Some(matcher) => HeaderMatchSpecifier::StringMatch(pb_string(matcher)),
    };
    HeaderMatcher { name: header.name.clone(), header_match_specifier: Some(specifier), ..Default::default() }
}

fn pb_string(matcher: &StringMatch) -> StringMatcher {
    let value = matcher.value.clone();
    let pattern = match matcher.kind {
        MatchKind::Exact => MatchPattern::Exact(value),
        MatchKind::Prefix => MatchPattern::Prefix(value),
        MatchKind::Suffix => MatchPattern::Suffix(value),
        MatchKind::Contains => MatchPattern::Contains(value),
    };
    StringMatcher { match_pattern: Some(pattern), ignore_case: matcher.ignore_case }
}

/// What the network RBAC filters `filters` (a chain's, before its `tcp_proxy`) enforce; any other filter is
/// refused with a message naming it and `place`.
pub fn parse_network_filters(filters: &[Filter], place: &str) -> Result<Authorization, String> {
    let configs = filters
        .iter()
        .map(|filter| match (&filter.name[..], &filter.config_type) {
            (NETWORK_RBAC, Some(filter::ConfigType::TypedConfig(any))) => {
                crate::unpack::<NetworkRbac>(any).map_err(|e| e.to_string())
            }
            (name, _) => Err(format!("filter {name:?} is not supported {place}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    parse(configs.iter().map(|c| (c.rules.as_ref(), c.shadow_rules.as_ref())))
}

/// What the HTTP RBAC filters `filters` (an HTTP connection manager's, before its router) enforce; any other
/// filter is refused with a message naming it and `place`.
pub fn parse_http_filters(filters: &[HttpFilter], place: &str) -> Result<Authorization, String> {
    let configs = filters
        .iter()
        .map(|filter| match (&filter.name[..], &filter.config_type) {
            (HTTP_RBAC, Some(http_filter::ConfigType::TypedConfig(any))) => {
                crate::unpack::<HttpRbac>(any).map_err(|e| e.to_string())
            }
            (name, _) => Err(format!("HTTP filter {name:?} is not supported {place}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    parse(configs.iter().map(|c| (c.rules.as_ref(), c.shadow_rules.as_ref())))
}

/// The authorization the RBAC filters of one filter chain enforce, each given as its (`rules`,
/// `shadow_rules`); a message naming what cannot be enforced exactly.
pub fn parse<'a>(
    filters: impl IntoIterator<Item = (Option<&'a RbacRules>, Option<&'a RbacRules>)>,
) -> Result<Authorization, String> {
    let mut authz = Authorization::default();
    let mut actions_seen = Vec::new();
    for (rules, shadow) in filters {
        let Some(action) = rules.or(shadow).map(|r| r.action) else { continue };
        if shadow.is_some_and(|s| s.action != action) {
            return Err("an RBAC filter's rules and shadow_rules have different actions".to_string());
        }
        let (action, layer) = match PbAction::try_from(action) {
            Ok(PbAction::Allow) => (Action::Allow, &mut authz.allow),
            Ok(PbAction::Deny) => (Action::Deny, &mut authz.deny),
            Ok(PbAction::Log) => (Action::Audit, &mut authz.audit),
            Err(_) => return Err(format!("RBAC action {action} is not supported")),
        };
        if actions_seen.contains(&action) {
            return Err(format!("more than one RBAC filter with action {action:?}"));
        }
        actions_seen.push(action);
        *layer = Layer { enforced: rules.map(named_rules).transpose()?, dry_run: shadow.map(named_rules).transpose()? };
    }
    Ok(authz)
}

fn named_rules(rules: &RbacRules) -> Result<Vec<NamedRule>, String> {
    if rules.audit_logging_options.is_some() {
        return Err("RBAC audit_logging_options are not supported".to_string());
    }
    let mut named: Vec<NamedRule> = rules
        .policies
        .iter()
        .map(|(name, policy)| {
            if policy.condition.is_some() || policy.checked_condition.is_some() {
                return Err(format!("RBAC policy {name:?}: CEL conditions are not supported"));
            }
            let (policy_name, index) = named(name);
            let context = |e: String| format!("RBAC policy {name:?}: {e}");
            Ok(NamedRule {
                policy: policy_name,
                index,
                permissions: policy.permissions.iter().map(permission_of).collect::<Result<_, _>>().map_err(context)?,
                principals: policy.principals.iter().map(principal_of).collect::<Result<_, _>>().map_err(context)?,
            })
        })
        .collect::<Result<_, _>>()?;
    // The wire's map has no order; the first matching rule is reported, so the order must be the same each time.
    named.sort_by(|a, b| (&a.policy, a.index).cmp(&(&b.policy, b.index)));
    Ok(named)
}

fn permission_of(pb: &PbPermission) -> Result<Permission, String> {
    use permission::Rule;
    let all = |set: &permission::Set| set.rules.iter().map(permission_of).collect::<Result<Vec<_>, _>>();
    Ok(match &pb.rule {
        Some(Rule::Any(true)) => Permission::Any,
        Some(Rule::AndRules(set)) => Permission::And(all(set)?),
        Some(Rule::OrRules(set)) => Permission::Or(all(set)?),
        Some(Rule::NotRule(inner)) => Permission::Not(Box::new(permission_of(inner)?)),
        Some(Rule::DestinationPort(port)) => Permission::DestinationPort(
            u16::try_from(*port).map_err(|_| format!("destination_port {port} is not a port"))?,
        ),
        Some(Rule::UrlPath(PathMatcher { rule: Some(path_matcher::Rule::Path(m)) })) => Permission::Path(string_of(m)?),
        Some(Rule::Header(header)) => Permission::Header(header_of(header)?),
        other => return Err(format!("permission {other:?} is not supported")),
    })
}

fn principal_of(pb: &PbPrincipal) -> Result<Principal, String> {
    use principal::Identifier;
    let all = |set: &principal::Set| set.ids.iter().map(principal_of).collect::<Result<Vec<_>, _>>();
    Ok(match &pb.identifier {
        Some(Identifier::Any(true)) => Principal::Any,
        Some(Identifier::AndIds(set)) => Principal::And(all(set)?),
        Some(Identifier::OrIds(set)) => Principal::Or(all(set)?),
        Some(Identifier::NotId(inner)) => Principal::Not(Box::new(principal_of(inner)?)),
        Some(Identifier::Authenticated(auth)) => {
            Principal::Authenticated(auth.principal_name.as_ref().map(string_of).transpose()?)
        }
        Some(Identifier::DirectRemoteIp(cidr) | Identifier::RemoteIp(cidr)) => Principal::RemoteIp(cidr_of(cidr)?),
        Some(Identifier::Header(header)) => Principal::Header(header_of(header)?),
        other => return Err(format!("principal {other:?} is not supported")),
    })
}

fn header_of(header: &HeaderMatcher) -> Result<HeaderMatch, String> {
    if header.invert_match || header.treat_missing_header_as_empty {
        return Err(format!(
            "header {:?}: invert_match and treat_missing_header_as_empty are not supported",
            header.name
        ));
    }
    let value = match &header.header_match_specifier {
        Some(HeaderMatchSpecifier::PresentMatch(true)) => None,
        Some(HeaderMatchSpecifier::StringMatch(m)) => Some(string_of(m)?),
        other => return Err(format!("header {:?}: match {other:?} is not supported", header.name)),
    };
    Ok(HeaderMatch { name: header.name.to_ascii_lowercase(), value })
}

fn string_of(matcher: &StringMatcher) -> Result<StringMatch, String> {
    let (kind, value) = match &matcher.match_pattern {
        Some(MatchPattern::Exact(v)) => (MatchKind::Exact, v),
        Some(MatchPattern::Prefix(v)) => (MatchKind::Prefix, v),
        Some(MatchPattern::Suffix(v)) => (MatchKind::Suffix, v),
        Some(MatchPattern::Contains(v)) => (MatchKind::Contains, v),
        other => return Err(format!("string match {other:?} is not supported")),
    };
    Ok(StringMatch { kind, value: value.clone(), ignore_case: matcher.ignore_case })
}

fn cidr_of(range: &CidrRange) -> Result<Cidr, String> {
    let address: IpAddr =
        range.address_prefix.parse().map_err(|_| format!("{:?} is not an IP address", range.address_prefix))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = range.prefix_len.as_ref().map_or(max, |p| p.value);
    if prefix_len > max {
        return Err(format!("prefix length {prefix_len} is too long for {address}"));
    }
    Ok(Cidr { address, prefix_len: u8::try_from(prefix_len).unwrap_or(u8::MAX) })
}
