//! `corsPolicy` as the route's configuration of Envoy's CORS filter (`typed_per_filter_config`), as Istio
//! writes it: origins as string matchers, lists comma-joined, the max age in seconds.

use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy as EnvoyCors;
use envoy_types::pb::google::protobuf::BoolValue;
use weft_crds::duration::parse_duration;
use weft_crds::virtual_service::cors::{CorsPolicy, UnmatchedPreflights};

use super::matching::string_matcher;

pub(super) fn cors_policy(cors: &CorsPolicy) -> EnvoyCors {
    let exact = cors
        .allow_origin
        .iter()
        .map(|origin| weft_crds::StringMatch { exact: Some(origin.clone()), ..Default::default() });
    let origins: Vec<_> = cors.allow_origins.iter().cloned().chain(exact).filter_map(|m| string_matcher(&m)).collect();
    let max_age = cors.max_age.as_deref().and_then(|age| parse_duration(age).ok()).map(|age| age.as_secs().to_string());
    EnvoyCors {
        allow_origin_string_match: origins,
        allow_methods: cors.allow_methods.join(","),
        allow_headers: cors.allow_headers.join(","),
        expose_headers: cors.expose_headers.join(","),
        max_age: max_age.unwrap_or_default(),
        allow_credentials: cors.allow_credentials.map(|value| BoolValue { value }),
        forward_not_matching_preflights: Some(BoolValue {
            value: cors.unmatched_preflights != Some(UnmatchedPreflights::Ignore),
        }),
        ..Default::default()
    }
}
