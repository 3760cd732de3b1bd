//! weft-proxy: the sidecar. An ADS client ([`xds`]) turns xDS into plain config ([`config`]), the data plane
//! ([`dataplane`]) keeps a balancer per cluster ([`balance`]), and listeners forward HTTP by it ([`http`]).

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod balance;
pub mod config;
pub mod dataplane;
pub mod http;
pub mod xds;

/// Errors crossing tower and hyper boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
