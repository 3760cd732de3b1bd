//! weft-operator: the control plane. Cluster state (from a directory of YAML files, or the Kubernetes API) flows
//! through `source` -> `index` (pure) -> immutable snapshot -> `translate` (pure, per proxy) -> `xds` (ADS server); `status` writes
//! conditions back onto the CRDs from the leader replica (`leader`).

#![forbid(unsafe_code)]

pub mod app;
pub mod ca;
pub mod debug;
pub mod health;
pub mod index;
pub mod leader;
pub mod metrics;
pub mod source;
pub mod status;
pub mod translate;
pub mod xds;
