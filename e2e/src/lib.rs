//! weft-e2e: whole-mesh scenarios. The harness starts real Weft processes (standalone operator, proxies, echo
//! backends) on loopback, drives traffic through them and measures what users would notice. Used by the
//! integration tests, `make demo` and `make bench`.

#![forbid(unsafe_code)]

pub mod binaries;
pub mod canary;
pub mod captured_path;
pub mod chart;
pub mod cluster_mesh;
pub mod http_client;
pub mod load;
pub mod mesh;
pub mod net;
pub mod netns;
pub mod netns_mesh;
pub mod process;
pub mod remote_load;
pub mod rivals;
pub mod route_lookup;
pub mod scale;
pub mod scenario;
pub mod sidecar;
pub mod stats;
pub mod two_hop;
pub mod vip;
