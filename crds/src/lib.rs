//! Weft's custom resources: `networking.weft.dev/v1alpha1` VirtualService and DestinationRule,
//! `security.weft.dev/v1alpha1` PeerAuthentication, AuthorizationPolicy and HTTPLocalRateLimitPolicy; every kind registered once in [`kinds`].
//!
//! Field names and meanings follow Istio's `networking.istio.io/v1` for every field Weft supports, so an
//! Istio user's YAML works after changing `apiVersion`. Every struct denies unknown fields: a field Weft does
//! not support yet is an error that names it, never silently dropped. Rules the schema cannot express (weights,
//! regexes, duplicate subsets, durations) live in [`validate`], shared by the operator and the webhook.

#![forbid(unsafe_code)]

pub mod authorization_policy;
pub mod destination_rule;
pub mod duration;
pub mod field_path;
pub mod kinds;
pub mod manifests;
pub mod parse;
pub mod peer_authentication;
pub mod rate_limit;
pub mod spec;
pub mod status;
pub mod validate;
pub mod virtual_service;

pub use authorization_policy::{AuthorizationAction, AuthorizationPolicy, AuthorizationPolicySpec};
pub use destination_rule::{
    DestinationRule, DestinationRuleSpec, LoadBalancerSettings, SimpleLb, Subset, TrafficPolicy,
};
pub use field_path::FieldError;
pub use peer_authentication::{MtlsMode, MutualTls, PeerAuthentication, PeerAuthenticationSpec};
pub use rate_limit::{HttpLocalRateLimitPolicy, HttpLocalRateLimitPolicySpec};
pub use status::WeftStatus;
pub use virtual_service::{
    Destination, HttpMatchRequest, HttpRoute, HttpRouteDestination, PortSelector, StringMatch, VirtualService,
    VirtualServiceSpec,
};

/// API group of the traffic kinds (VirtualService, DestinationRule).
pub const GROUP: &str = "networking.weft.dev";
/// API version of every Weft CRD.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the traffic kinds as written in YAML.
pub const API_VERSION: &str = "networking.weft.dev/v1alpha1";
/// API group of the security kinds (PeerAuthentication, AuthorizationPolicy).
pub const SECURITY_GROUP: &str = "security.weft.dev";
/// `apiVersion` of the security kinds as written in YAML.
pub const SECURITY_API_VERSION: &str = "security.weft.dev/v1alpha1";
