//! Status of Weft resources: `observedGeneration` and standard `metav1.Condition`s (`Accepted`, `ResolvedRefs`),
//! written by the operator so `kubectl get vs` tells users whether Weft took their rule.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type: the resource is valid and in force.
pub const ACCEPTED: &str = "Accepted";
/// Condition type: every host, subset and port the resource refers to exists.
pub const RESOLVED_REFS: &str = "ResolvedRefs";

/// The status the operator writes on a VirtualService or DestinationRule.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeftStatus {
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` and `ResolvedRefs`, one of each, merged by `type` under server-side apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl WeftStatus {
    /// The condition of `type_`, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}
