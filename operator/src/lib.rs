//! weft-operator: the control plane. Cluster state (from a directory of YAML files, or the Kubernetes API) flows
//! through `source` -> `index` (pure) -> immutable snapshot -> `translate` (pure, per proxy) -> `xds` (ADS server).

#![forbid(unsafe_code)]

pub mod app;
pub mod index;
pub mod source;
pub mod translate;
pub mod xds;
