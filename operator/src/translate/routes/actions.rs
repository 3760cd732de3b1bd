//! What a rule does: forward (`RouteAction`: destinations, timeout, retries, mirrors, rewrites), redirect
//! (`RedirectAction`) or answer itself (`DirectResponseAction`).

use envoy_types::pb::envoy::config::core::v3::{DataSource, RuntimeFractionalPercent, data_source};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, RouteAction, WeightedCluster, redirect_action, route_action,
    weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use envoy_types::pb::google::protobuf::UInt32Value;
use weft_crds::duration::parse_duration;
use weft_crds::virtual_service::actions::decode_base64;
use weft_crds::virtual_service::{HttpDirectResponse, HttpRedirect};
use weft_crds::{Destination, HttpRoute};
use weft_xds::cluster_name;

use super::super::duration;
use super::fault::fraction;
use super::headers::HeaderEdits;
use super::matching::regex;
use super::retry::retry_policy;
use crate::index::{Snapshot, VirtualServiceModel};

/// The cluster a destination means for a request that arrived on `port`.
pub(in crate::translate) fn cluster_of(
    snapshot: &Snapshot,
    vs: &VirtualServiceModel,
    d: &Destination,
    port: u16,
) -> String {
    let host = snapshot.resolve_host(&d.host, &vs.namespace);
    let dest_port = snapshot.destination_port(&host, d.port.map(|p| p.number), port);
    cluster_name(&host, dest_port, d.subset.as_deref().unwrap_or_default())
}

/// Forwarding to the rule's destinations, for `port` and proxies in a namespace. With several, each weighted
/// cluster carries its destination's header edits; a single destination's are put on the route by the caller.
pub(super) fn route_action(
    snapshot: &Snapshot,
    vs: &VirtualServiceModel,
    rule: &HttpRoute,
    (port, namespace): (u16, &str),
) -> RouteAction {
    let cluster_specifier = match rule.route.as_slice() {
        [only] => route_action::ClusterSpecifier::Cluster(cluster_of(snapshot, vs, &only.destination, port)),
        destinations => route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: destinations
                .iter()
                .map(|dest| {
                    let edits = HeaderEdits::of(dest.headers.as_ref());
                    ClusterWeight {
                        name: cluster_of(snapshot, vs, &dest.destination, port),
                        weight: Some(UInt32Value { value: u32::try_from(dest.weight.unwrap_or(0)).unwrap_or(0) }),
                        request_headers_to_add: edits.request_add,
                        request_headers_to_remove: edits.request_remove,
                        response_headers_to_add: edits.response_add,
                        response_headers_to_remove: edits.response_remove,
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        }),
    };
    // Istio's default is no timeout; Envoy's would be 15 s, so zero ("disabled") is always written.
    let timeout = rule.timeout.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or_default();
    let first = rule.route.first().map(|d| cluster_of(snapshot, vs, &d.destination, port)).unwrap_or_default();
    let mut action = forwarding(cluster_specifier, timeout);
    // Istio: the hash policy of the (first) destination's DestinationRule, the one the proxy applies.
    action.hash_policy = super::super::clusters::hash_policy(snapshot, &first, namespace);
    action.retry_policy = retry_policy(rule.retries.as_ref());
    action.request_mirror_policies = mirror_policies(snapshot, vs, rule, port);
    if let Some(rewrite) = &rule.rewrite {
        action.prefix_rewrite = rewrite.uri.clone().unwrap_or_default();
        action.regex_rewrite = rewrite
            .uri_regex_rewrite
            .as_ref()
            .map(|r| RegexMatchAndSubstitute { pattern: Some(regex(&r.pattern)), substitution: r.rewrite.clone() });
        action.host_rewrite_specifier =
            rewrite.authority.clone().map(route_action::HostRewriteSpecifier::HostRewriteLiteral);
    }
    action
}

/// Forwarding with Istio's defaults: `timeout` (zero: none), the same as the cap on a gRPC client's
/// `grpc-timeout`, and the default retry policy.
pub(super) fn forwarding(
    cluster_specifier: route_action::ClusterSpecifier,
    timeout: std::time::Duration,
) -> RouteAction {
    RouteAction {
        cluster_specifier: Some(cluster_specifier),
        timeout: Some(duration(timeout)),
        max_stream_duration: Some(route_action::MaxStreamDuration {
            grpc_timeout_header_max: Some(duration(timeout)),
            ..Default::default()
        }),
        retry_policy: retry_policy(None),
        ..Default::default()
    }
}

/// One policy per mirror, as the contract with the proxy says. An explicit 0% is kept as a policy that never
/// fires (Istio leaves it out; the effect is the same).
fn mirror_policies(
    snapshot: &Snapshot,
    vs: &VirtualServiceModel,
    rule: &HttpRoute,
    port: u16,
) -> Vec<route_action::RequestMirrorPolicy> {
    let single = rule.mirror.as_ref().map(|mirror| {
        let share = rule.mirror_percentage.map(|p| p.value).or(rule.mirror_percent.map(f64::from));
        (mirror, share)
    });
    let several = rule.mirrors.iter().map(|m| (&m.destination, m.percentage.map(|p| p.value)));
    single
        .into_iter()
        .chain(several)
        .map(|(destination, share)| route_action::RequestMirrorPolicy {
            cluster: cluster_of(snapshot, vs, destination, port),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(fraction(share.unwrap_or(100.0))),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

pub(super) fn redirect_action(redirect: &HttpRedirect) -> RedirectAction {
    use redirect_action::RedirectResponseCode as Code;
    let code = match redirect.redirect_code {
        Some(302) => Code::Found,
        Some(303) => Code::SeeOther,
        Some(307) => Code::TemporaryRedirect,
        Some(308) => Code::PermanentRedirect,
        _ => Code::MovedPermanently,
    };
    RedirectAction {
        host_redirect: redirect.authority.clone().unwrap_or_default(),
        port_redirect: redirect.port.unwrap_or(0),
        scheme_rewrite_specifier: redirect.scheme.clone().map(redirect_action::SchemeRewriteSpecifier::SchemeRedirect),
        path_rewrite_specifier: redirect.uri.clone().map(redirect_action::PathRewriteSpecifier::PathRedirect),
        response_code: code as i32,
        ..Default::default()
    }
}

pub(super) fn direct_response_action(response: &HttpDirectResponse) -> DirectResponseAction {
    let body = response.body.as_ref().and_then(|body| {
        let specifier = match (&body.string, &body.bytes) {
            (Some(text), _) => data_source::Specifier::InlineString(text.clone()),
            (None, Some(bytes)) => data_source::Specifier::InlineBytes(decode_base64(bytes)?),
            (None, None) => return None,
        };
        Some(DataSource { specifier: Some(specifier), ..Default::default() })
    });
    DirectResponseAction { status: response.status, body, ..Default::default() }
}
