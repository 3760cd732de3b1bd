//! weftctl: see what the mesh is doing. Reads the operator's debug API (`proxy-status`, `proxy-config`,
//! `route`), checks Weft resources (`analyze`) and the installation (`check`). Each command is a pure function from what was read to text, so the text
//! is tested without a cluster; `main.rs` only reads and prints.

#![forbid(unsafe_code)]

pub mod analyze;
pub mod check;
pub mod cli;
pub mod cluster_objects;
pub mod describe;
pub mod envoy_json;
pub mod proxy_config;
pub mod proxy_status;
pub mod route;
pub mod source;
pub mod table;
